/**
 * The whole story through the TypeScript SDK, against a running mesh.
 *
 * An instructor creates a course, adds two sections, presents and activates it; Alice and Bob
 * join, Alice comments (sent twice with one commandId: stored once), Bob leaves. Then the course
 * is read from both query services with read-your-writes (minVersion = the last command's version).
 * Prints each step, and as its last line a JSON summary that scripts/sdk-test.sh checks.
 *
 *   AUTH_JWT_SECRET=... COMMAND_ADDR=127.0.0.1:50051 REDIS_QUERY_ADDR=127.0.0.1:50052 \
 *     MONGO_QUERY_ADDR=127.0.0.1:50053 node dist/examples/walkthrough.js
 */
import { randomUUID } from "node:crypto";
import { credentials } from "@grpc/grpc-js";
import { SignJWT } from "jose";
import { CourseCommands, catalogQuery, courseQuery, events, retryUnavailable, unary } from "course-platform-sdk";

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`set ${name}`);
  return value;
};

/** A development HS256 token: `sub` is the user's UUID; command-svc verifies it with the same secret. */
async function token(userId: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime("10m")
    .sign(new TextEncoder().encode(env("AUTH_JWT_SECRET")));
}

async function main(): Promise<void> {
  const commandAddr = env("COMMAND_ADDR", "127.0.0.1:50051");
  const redisAddr = env("REDIS_QUERY_ADDR", "127.0.0.1:50052");
  const mongoAddr = env("MONGO_QUERY_ADDR", "127.0.0.1:50053");
  const [instructorId, aliceId, bobId] = [randomUUID(), randomUUID(), randomUUID()];

  const instructorToken = await token(instructorId);
  const instructor = CourseCommands.connect(commandAddr, instructorToken);
  const alice = instructor.asUser(await token(aliceId));
  const bob = instructor.asUser(await token(bobId));

  const created = await instructor.createCourse({
    title: "Event sourcing in TypeScript",
    description: "Commands, events and read models",
    category: "Programming",
    maxParticipants: 10,
  });
  const courseId = created.courseId;
  console.log(`created course ${courseId} (version ${created.version})`);
  for (const [title, videoUrl] of [
    ["Intro", "https://videos.example/intro.mp4"],
    ["Projections", "https://videos.example/projections.mp4"],
  ]) {
    const added = await instructor.addSection({ courseId, title, videoUrl });
    console.log(`added section ${added.position} '${title}' (version ${added.version})`);
  }
  console.log(`presented (version ${(await instructor.presentCourse({ courseId })).version})`);
  console.log(`activated (version ${(await instructor.activateCourse({ courseId })).version})`);
  console.log(`alice joined (version ${(await alice.joinCourse({ courseId })).version})`);
  console.log(`bob joined (version ${(await bob.joinCourse({ courseId })).version})`);

  const comment = { courseId, commandId: randomUUID(), text: "Great start" };
  const first = await alice.commentCourse(comment);
  const again = await alice.commentCourse(comment); // same commandId: answered from the command log, not stored twice
  console.log(`alice commented ${first.commentId} (version ${first.version}); resent with the same commandId: ${again.commentId}`);
  const version = (await bob.leaveCourse({ courseId })).version;
  console.log(`bob left (version ${version})`);
  instructor.close();

  const catalog = new catalogQuery.CatalogQueryServiceClient(redisAddr, credentials.createInsecure());
  const details = new courseQuery.CourseQueryServiceClient(mongoAddr, credentials.createInsecure());
  try {
    // Read-your-writes: each query waits until its read model has applied `version`.
    const summary = (
      await retryUnavailable(() =>
        unary(catalog, catalog.getCourse, catalogQuery.GetCourseRequest.fromPartial({ courseId, minVersion: version })),
      )
    ).course!;
    const { participants } = await retryUnavailable(() =>
      unary(
        catalog,
        catalog.listCourseParticipants,
        catalogQuery.ListCourseParticipantsRequest.fromPartial({ courseId, minVersion: version }),
        { token: instructorToken },
      ),
    );
    console.log(
      `query-redis-svc: '${summary.title}' ${events.courseStatusToJSON(summary.status)} v${summary.version}, ` +
        `${summary.sectionCount} sections, ${summary.participantCount} participant(s), ${summary.commentCount} comment(s)`,
    );

    const doc = (
      await retryUnavailable(() =>
        unary(details, details.getCourseDetails, courseQuery.GetCourseDetailsRequest.fromPartial({ courseId, minVersion: version }), {
          token: instructorToken,
        }),
      )
    ).course!;
    const { comments } = await retryUnavailable(() =>
      unary(
        details,
        details.listCourseComments,
        courseQuery.ListCourseCommentsRequest.fromPartial({ courseId, minVersion: version }),
        { token: instructorToken },
      ),
    );
    console.log(
      `query-mongo-svc: '${doc.title}' ${events.courseStatusToJSON(doc.status)} v${doc.version}, ` +
        `sections ${JSON.stringify(doc.sections.map((s) => s.title))}, participants ${JSON.stringify(doc.participants.map((p) => p.userId))}, ` +
        `comments ${JSON.stringify(comments.map((c) => c.text))}`,
    );

    console.log(
      JSON.stringify({
        sdk: "typescript",
        course_id: courseId,
        version,
        instructor_id: instructorId,
        alice_id: aliceId,
        bob_id: bobId,
        duplicate_comment_id_equal: first.commentId === again.commentId,
        catalog: {
          status: events.courseStatusToJSON(summary.status),
          version: summary.version,
          instructor_id: summary.instructorId,
          section_count: summary.sectionCount,
          participant_count: summary.participantCount,
          comment_count: summary.commentCount,
          participants: participants.map((p) => p.userId),
        },
        details: {
          status: events.courseStatusToJSON(doc.status),
          version: doc.version,
          instructor_id: doc.instructorId,
          sections: doc.sections.map((s) => s.title),
          participant_count: doc.participantCount,
          participants: doc.participants.map((p) => p.userId),
          comment_count: doc.commentCount,
          comments: comments.map((c) => ({ author_id: c.authorId, text: c.text })),
        },
      }),
    );
  } finally {
    catalog.close();
    details.close();
  }
}

main().catch((error) => {
  console.error("walkthrough failed:", error);
  process.exit(1);
});
