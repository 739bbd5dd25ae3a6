/**
 * Node.js client of the course platform (gRPC package `course.v1`).
 *
 * The generated ts-proto messages and @grpc/grpc-js clients are re-exported per .proto file
 * (`commands`, `events`, `catalogQuery`, `courseQuery`, `eventStore`, `projectionAdmin`; also
 * importable as `course-platform-sdk/course/v1/<file>`). This module adds only what every caller
 * would otherwise write by hand: bearer-token metadata, promise-returning calls, a fresh
 * `commandId` (idempotency key) per command, and bounded retries of `UNAVAILABLE`.
 */
import { randomUUID } from "node:crypto";
import {
  type CallOptions,
  type ChannelCredentials,
  type Client,
  type ClientUnaryCall,
  Metadata,
  type ServiceError,
  credentials,
  status,
} from "@grpc/grpc-js";

import * as commands from "./gen/course/v1/commands.js";

export * as commands from "./gen/course/v1/commands.js";
export * as events from "./gen/course/v1/events.js";
export * as catalogQuery from "./gen/course/v1/catalog_query.js";
export * as courseQuery from "./gen/course/v1/course_query.js";
export * as eventStore from "./gen/course/v1/event_store.js";
export * as projectionAdmin from "./gen/course/v1/projection_admin.js";

/** A unary method of a generated client, in its (request, metadata, options, callback) form. */
export type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** Per-call settings. */
export interface CallSettings {
  /** Sent as `authorization: Bearer <token>`. */
  token?: string;
  /** Deadline in milliseconds from now (default 10000). */
  deadlineMs?: number;
  /** Sent as `x-course-id` (COURSE_ID_HEADER), for a gateway that routes by course. */
  courseId?: string;
}

/** `authorization: Bearer <token>` metadata. */
export function bearer(token: string): Metadata {
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}

/**
 * Calls a unary method of a generated client and returns a promise:
 * `await unary(catalog, catalog.getCourse, GetCourseRequest.fromPartial({ courseId }))`.
 */
export function unary<Req, Res>(
  client: Client,
  method: UnaryMethod<Req, Res>,
  request: Req,
  settings: CallSettings = {},
): Promise<Res> {
  const metadata = settings.token ? bearer(settings.token) : new Metadata();
  if (settings.courseId) metadata.set(COURSE_ID_HEADER, settings.courseId);
  const deadline = new Date(Date.now() + (settings.deadlineMs ?? 10_000));
  return new Promise((resolve, reject) => {
    method.call(client, request, metadata, { deadline }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

/** Whether an error is a gRPC status error with this code. */
export function isStatus(error: unknown, code: status): error is ServiceError {
  return typeof error === "object" && error !== null && (error as ServiceError).code === code;
}

/**
 * Runs `call`; on `UNAVAILABLE` retries up to `attempts` times in all, backing off exponentially
 * from `backoffMs`. Any other error, or the last one, is thrown. Use it for reads, e.g. a
 * read-your-writes query (`minVersion`) that answered UNAVAILABLE because the read model was behind.
 */
export async function retryUnavailable<T>(call: () => Promise<T>, attempts = 5, backoffMs = 200): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!isStatus(error, status.UNAVAILABLE) || attempt >= attempts - 1) throw error;
      await new Promise((resolve) => setTimeout(resolve, backoffMs * 2 ** attempt));
    }
  }
}

/** A request of CourseCommandService given as a plain object; unset fields take their defaults. */
type Input<T> = Partial<T>;

/** The metadata a gateway hashes on to send one course's commands to one command-svc replica. */
export const COURSE_ID_HEADER = "x-course-id";

/**
 * The replica (`0..replicas`) that serves `courseId`'s commands: FNV-1a 64 of the id's 16 bytes,
 * then jump consistent hash — the same function as the Rust SDK's
 * `course_proto::affinity::replica_for` and Python's `course_sdk.replica_for`. List the replicas
 * in a stable order (e.g. a StatefulSet's `command-svc-0`, `-1`, …). An id that is not a UUID goes
 * to replica 0 (which refuses it like any other).
 */
export function replicaFor(courseId: string, replicas: number): number {
  const hex = courseId.replace(/-/g, "").toLowerCase();
  if (replicas <= 0 || !/^[0-9a-f]{32}$/.test(hex)) return 0;
  const mask = (1n << 64n) - 1n;
  let key = 0xcbf29ce484222325n;
  for (let i = 0; i < 32; i += 2) {
    key = ((key ^ BigInt(parseInt(hex.slice(i, i + 2), 16))) * 0x100000001b3n) & mask;
  }
  let bucket = -1;
  let jump = 0;
  while (jump < replicas) {
    bucket = jump;
    key = (key * 2862933555777941757n + 1n) & mask;
    jump = Math.floor((bucket + 1) * (2147483648 / (Number(key >> 33n) + 1)));
  }
  return bucket;
}

/**
 * CourseCommandService as one caller (the token's subject). Each method takes the request's
 * fields; a command about an existing course carries its id as `x-course-id` metadata for a
 * gateway to route on (see `replicaFor`); when `commandId` is not given a fresh UUID is used, so a retry after `UNAVAILABLE` (or a
 * lost answer) is deduplicated by the server instead of applied twice.
 */
export class CourseCommands {
  constructor(
    readonly client: commands.CourseCommandServiceClient,
    private readonly token: string,
    private readonly options: { deadlineMs?: number; attempts?: number } = {},
  ) {}

  /** Connects to command-svc (plaintext unless `channelCredentials` says otherwise). */
  static connect(address: string, token: string, channelCredentials: ChannelCredentials = credentials.createInsecure()) {
    return new CourseCommands(new commands.CourseCommandServiceClient(address, channelCredentials), token);
  }

  /** The same connection and settings, acting as another user. */
  asUser(token: string): CourseCommands {
    return new CourseCommands(this.client, token, this.options);
  }

  /** Closes the connection (shared with every `asUser` copy). */
  close(): void {
    this.client.close();
  }

  private send<Req extends { commandId?: string | undefined; courseId?: string }, Res>(
    method: UnaryMethod<Req, Res>,
    request: Req,
  ): Promise<Res> {
    const message = { ...request, commandId: request.commandId ?? randomUUID() };
    const settings = { token: this.token, deadlineMs: this.options.deadlineMs, courseId: request.courseId || undefined };
    return retryUnavailable(
      () => unary(this.client, method, message, settings),
      this.options.attempts ?? 3,
    );
  }

  /** Creates a course; the caller becomes its instructor. */
  createCourse(request: Input<commands.CreateCourseRequest>) {
    return this.send(this.client.createCourse, commands.CreateCourseRequest.fromPartial(request));
  }
  changeCourseTitle(request: Input<commands.ChangeCourseTitleRequest>) {
    return this.send(this.client.changeCourseTitle, commands.ChangeCourseTitleRequest.fromPartial(request));
  }
  changeCourseDescription(request: Input<commands.ChangeCourseDescriptionRequest>) {
    return this.send(this.client.changeCourseDescription, commands.ChangeCourseDescriptionRequest.fromPartial(request));
  }
  presentCourse(request: Input<commands.PresentCourseRequest>) {
    return this.send(this.client.presentCourse, commands.PresentCourseRequest.fromPartial(request));
  }
  activateCourse(request: Input<commands.ActivateCourseRequest>) {
    return this.send(this.client.activateCourse, commands.ActivateCourseRequest.fromPartial(request));
  }
  completeCourse(request: Input<commands.CompleteCourseRequest>) {
    return this.send(this.client.completeCourse, commands.CompleteCourseRequest.fromPartial(request));
  }
  addSection(request: Input<commands.AddSectionRequest>) {
    return this.send(this.client.addSection, commands.AddSectionRequest.fromPartial(request));
  }
  joinCourse(request: Input<commands.JoinCourseRequest>) {
    return this.send(this.client.joinCourse, commands.JoinCourseRequest.fromPartial(request));
  }
  leaveCourse(request: Input<commands.LeaveCourseRequest>) {
    return this.send(this.client.leaveCourse, commands.LeaveCourseRequest.fromPartial(request));
  }
  commentCourse(request: Input<commands.CommentCourseRequest>) {
    return this.send(this.client.commentCourse, commands.CommentCourseRequest.fromPartial(request));
  }
}
