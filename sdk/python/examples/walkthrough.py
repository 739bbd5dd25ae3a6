"""The whole story through the Python SDK, against a running mesh.

An instructor creates a course, adds two sections, presents and activates it; Alice and Bob join,
Alice comments (sent twice with one command_id: stored once), Bob leaves. Then the course is read
from both query services with read-your-writes (min_version = the last command's version).
Prints each step, and as its last line a JSON summary that scripts/sdk-test.sh checks.

    AUTH_JWT_SECRET=... COMMAND_ADDR=127.0.0.1:50051 REDIS_QUERY_ADDR=127.0.0.1:50052 \
        MONGO_QUERY_ADDR=127.0.0.1:50053 python examples/walkthrough.py

Needs `pip install course-platform-sdk[examples]` (pyjwt mints the development tokens).
"""

import json
import os
import time
import uuid

import grpc
import jwt

from course.v1 import catalog_query_pb2 as catalog
from course.v1 import catalog_query_pb2_grpc as catalog_grpc
from course.v1 import commands_pb2 as cmd
from course.v1 import course_query_pb2 as details
from course.v1 import course_query_pb2_grpc as details_grpc
from course.v1 import events_pb2 as events
from course_sdk import CourseCommands, bearer, new_command_id, retry_unavailable


def token(user_id: str) -> str:
    """A development HS256 token: `sub` is the user's UUID; command-svc verifies it with the same secret."""
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + 600}, os.environ["AUTH_JWT_SECRET"], algorithm="HS256")


def main() -> None:
    command_addr = os.environ.get("COMMAND_ADDR", "127.0.0.1:50051")
    redis_addr = os.environ.get("REDIS_QUERY_ADDR", "127.0.0.1:50052")
    mongo_addr = os.environ.get("MONGO_QUERY_ADDR", "127.0.0.1:50053")
    instructor_id, alice_id, bob_id = (str(uuid.uuid4()) for _ in range(3))

    with grpc.insecure_channel(command_addr) as command_channel:
        instructor = CourseCommands(command_channel, token(instructor_id))
        alice = instructor.as_user(token(alice_id))
        bob = instructor.as_user(token(bob_id))

        created = instructor.create_course(
            cmd.CreateCourseRequest(
                title="Event sourcing in Python",
                description="Commands, events and read models",
                category="Programming",
                max_participants=10,
            )
        )
        course_id = created.course_id
        print(f"created course {course_id} (version {created.version})")
        for title, url in (("Intro", "https://videos.example/intro.mp4"), ("Projections", "https://videos.example/projections.mp4")):
            added = instructor.add_section(cmd.AddSectionRequest(course_id=course_id, title=title, video_url=url))
            print(f"added section {added.position} {title!r} (version {added.version})")
        print(f"presented (version {instructor.present_course(cmd.PresentCourseRequest(course_id=course_id)).version})")
        print(f"activated (version {instructor.activate_course(cmd.ActivateCourseRequest(course_id=course_id)).version})")
        print(f"alice joined (version {alice.join_course(cmd.JoinCourseRequest(course_id=course_id)).version})")
        print(f"bob joined (version {bob.join_course(cmd.JoinCourseRequest(course_id=course_id)).version})")

        comment = cmd.CommentCourseRequest(course_id=course_id, command_id=new_command_id(), text="Great start")
        first = alice.comment_course(comment)
        again = alice.comment_course(comment)  # same command_id: answered from the command log, not stored twice
        print(f"alice commented {first.comment_id} (version {first.version}); resent with the same command_id: {again.comment_id}")
        left = bob.leave_course(cmd.LeaveCourseRequest(course_id=course_id))
        version = left.version
        print(f"bob left (version {version})")

    with grpc.insecure_channel(redis_addr) as redis_channel, grpc.insecure_channel(mongo_addr) as mongo_channel:
        catalog_client = catalog_grpc.CatalogQueryServiceStub(redis_channel)
        details_client = details_grpc.CourseQueryServiceStub(mongo_channel)

        # Read-your-writes: each query waits until its read model has applied `version`.
        summary = retry_unavailable(
            lambda: catalog_client.GetCourse(catalog.GetCourseRequest(course_id=course_id, min_version=version), timeout=10)
        ).course
        participants = retry_unavailable(
            lambda: catalog_client.ListCourseParticipants(
                catalog.ListCourseParticipantsRequest(course_id=course_id, min_version=version),
                timeout=10,
                metadata=bearer(token(instructor_id)),  # participant lists: instructor and participants only
            )
        ).participants
        print(
            f"query-redis-svc: {summary.title!r} {events.CourseStatus.Name(summary.status)} v{summary.version}, "
            f"{summary.section_count} sections, {summary.participant_count} participant(s), {summary.comment_count} comment(s)"
        )

        doc = retry_unavailable(
            lambda: details_client.GetCourseDetails(
                details.GetCourseDetailsRequest(course_id=course_id, min_version=version),
                timeout=10,
                metadata=bearer(token(instructor_id)),
            )
        ).course
        comments = retry_unavailable(
            lambda: details_client.ListCourseComments(
                details.ListCourseCommentsRequest(course_id=course_id, min_version=version),
                timeout=10,
                metadata=bearer(token(instructor_id)),
            )
        ).comments
        print(
            f"query-mongo-svc: {doc.title!r} {events.CourseStatus.Name(doc.status)} v{doc.version}, "
            f"sections {[s.title for s in doc.sections]}, participants {[p.user_id for p in doc.participants]}, "
            f"comments {[c.text for c in comments]}"
        )

    print(
        json.dumps(
            {
                "sdk": "python",
                "course_id": course_id,
                "version": version,
                "instructor_id": instructor_id,
                "alice_id": alice_id,
                "bob_id": bob_id,
                "duplicate_comment_id_equal": first.comment_id == again.comment_id,
                "catalog": {
                    "status": events.CourseStatus.Name(summary.status),
                    "version": summary.version,
                    "instructor_id": summary.instructor_id,
                    "section_count": summary.section_count,
                    "participant_count": summary.participant_count,
                    "comment_count": summary.comment_count,
                    "participants": [p.user_id for p in participants],
                },
                "details": {
                    "status": events.CourseStatus.Name(doc.status),
                    "version": doc.version,
                    "instructor_id": doc.instructor_id,
                    "sections": [s.title for s in doc.sections],
                    "participant_count": doc.participant_count,
                    "participants": [p.user_id for p in doc.participants],
                    "comment_count": doc.comment_count,
                    "comments": [{"author_id": c.author_id, "text": c.text} for c in comments],
                },
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
