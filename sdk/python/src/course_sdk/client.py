"""Bearer metadata, command ids and bounded retries over the generated course.v1 stubs."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Optional, Tuple, TypeVar

import grpc

from course.v1 import commands_pb2 as pb
from course.v1 import commands_pb2_grpc

Metadata = Tuple[Tuple[str, str], ...]
T = TypeVar("T")
M = TypeVar("M")


def bearer(token: str) -> Metadata:
    """gRPC metadata carrying ``authorization: Bearer <token>``."""
    return (("authorization", f"Bearer {token}"),)


COURSE_ID_HEADER = "x-course-id"
"""The metadata a gateway hashes on to send one course's commands to one command-svc replica."""


def replica_for(course_id: str, replicas: int) -> int:
    """The replica (``0..replicas``) that serves ``course_id``'s commands: FNV-1a 64 of the id's
    16 bytes, then jump consistent hash — the same function as the Rust SDK's
    ``course_proto::affinity::replica_for`` and the TypeScript ``replicaFor``. List the replicas in
    a stable order (e.g. a StatefulSet's ``command-svc-0``, ``-1``, …). An id that is not a UUID
    goes to replica 0 (which refuses it like any other)."""
    if replicas <= 0:
        return 0
    try:
        data = uuid.UUID(course_id).bytes
    except ValueError:
        return 0
    mask = (1 << 64) - 1
    key = 0xCBF29CE484222325
    for byte in data:
        key = ((key ^ byte) * 0x100000001B3) & mask
    bucket, jump = -1, 0
    while jump < replicas:
        bucket = jump
        key = (key * 2862933555777941757 + 1) & mask
        jump = int((bucket + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return bucket


def new_command_id() -> str:
    """A fresh idempotency key (UUID) for one command."""
    return str(uuid.uuid4())


def retry_unavailable(call: Callable[[], T], attempts: int = 5, backoff: float = 0.2) -> T:
    """Runs ``call``; on ``UNAVAILABLE`` retries up to ``attempts`` times in all, with exponential
    backoff starting at ``backoff`` seconds. Any other error, or the last one, is raised."""
    for attempt in range(attempts):
        try:
            return call()
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else None
            if code != grpc.StatusCode.UNAVAILABLE or attempt == attempts - 1:
                raise
            time.sleep(backoff * (2**attempt))
    raise AssertionError("unreachable")


class CourseCommands:
    """``CourseCommandService`` as one caller (the token's subject).

    Every method takes the generated request message and returns the generated response. A
    command about an existing course carries its id as ``x-course-id`` metadata for a gateway to
    route on (see :func:`replica_for`). The request is copied; when it has no ``command_id`` the
    copy gets a fresh one, so a retry after
    ``UNAVAILABLE`` (or a lost answer) is deduplicated by the server instead of applied twice.
    Errors are raised as ``grpc.RpcError`` with the status codes listed in the README.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        token: str,
        *,
        timeout: Optional[float] = 10.0,
        attempts: int = 3,
    ) -> None:
        self._channel = channel
        self._stub = commands_pb2_grpc.CourseCommandServiceStub(channel)
        self._metadata = bearer(token)
        self._timeout = timeout
        self._attempts = attempts

    def as_user(self, token: str) -> "CourseCommands":
        """The same channel and settings, acting as another user."""
        return CourseCommands(self._channel, token, timeout=self._timeout, attempts=self._attempts)

    def _send(self, method: Callable[..., Any], request: M) -> Any:
        message: Any = type(request)()
        message.CopyFrom(request)
        if not message.HasField("command_id"):
            message.command_id = new_command_id()
        metadata = self._metadata
        course_id = getattr(message, "course_id", "")
        if course_id:
            metadata = metadata + ((COURSE_ID_HEADER, course_id),)
        return retry_unavailable(
            lambda: method(message, metadata=metadata, timeout=self._timeout),
            attempts=self._attempts,
        )

    def create_course(self, request: pb.CreateCourseRequest) -> pb.CreateCourseResponse:
        """Creates a course; the caller becomes its instructor."""
        return self._send(self._stub.CreateCourse, request)

    def change_course_title(self, request: pb.ChangeCourseTitleRequest) -> pb.ChangeCourseTitleResponse:
        return self._send(self._stub.ChangeCourseTitle, request)

    def change_course_description(
        self, request: pb.ChangeCourseDescriptionRequest
    ) -> pb.ChangeCourseDescriptionResponse:
        return self._send(self._stub.ChangeCourseDescription, request)

    def present_course(self, request: pb.PresentCourseRequest) -> pb.PresentCourseResponse:
        return self._send(self._stub.PresentCourse, request)

    def activate_course(self, request: pb.ActivateCourseRequest) -> pb.ActivateCourseResponse:
        return self._send(self._stub.ActivateCourse, request)

    def complete_course(self, request: pb.CompleteCourseRequest) -> pb.CompleteCourseResponse:
        return self._send(self._stub.CompleteCourse, request)

    def add_section(self, request: pb.AddSectionRequest) -> pb.AddSectionResponse:
        return self._send(self._stub.AddSection, request)

    def join_course(self, request: pb.JoinCourseRequest) -> pb.JoinCourseResponse:
        return self._send(self._stub.JoinCourse, request)

    def leave_course(self, request: pb.LeaveCourseRequest) -> pb.LeaveCourseResponse:
        return self._send(self._stub.LeaveCourse, request)

    def comment_course(self, request: pb.CommentCourseRequest) -> pb.CommentCourseResponse:
        return self._send(self._stub.CommentCourse, request)
