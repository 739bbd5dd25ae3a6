"""Python client of the course platform (gRPC package ``course.v1``).

The generated modules are importable as ``course.v1.<file>_pb2`` (messages) and
``course.v1.<file>_pb2_grpc`` (stubs), e.g. ``course.v1.catalog_query_pb2_grpc.CatalogQueryServiceStub``.
This package adds only what every caller would otherwise write by hand:

- :func:`bearer` — the ``authorization: Bearer <JWT>`` metadata every command (and the per-user
  queries) needs;
- :class:`CourseCommands` — ``CourseCommandService`` for one caller: attaches the token, gives
  every command a fresh ``command_id`` (idempotency key) and retries ``UNAVAILABLE`` with that
  same id, which the server deduplicates;
- :func:`replica_for` and ``COURSE_ID_HEADER`` — command affinity: which command-svc replica
  serves a course (the same function in every SDK), and the header a gateway can hash on;
- :func:`retry_unavailable` — bounded retries for reads, e.g. a read-your-writes query
  (``min_version``) that answered ``UNAVAILABLE`` because the read model was still behind.
"""

from .client import (
    COURSE_ID_HEADER,
    CourseCommands,
    bearer,
    new_command_id,
    replica_for,
    retry_unavailable,
)

__all__ = [
    "COURSE_ID_HEADER",
    "CourseCommands",
    "bearer",
    "new_command_id",
    "replica_for",
    "retry_unavailable",
]
