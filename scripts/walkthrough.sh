#!/usr/bin/env bash
# The README's grpcurl walkthrough as a script: all ten use cases and the error codes, through
# server reflection only (no .proto files). `make test` runs it against a live command-svc and
# fails on any unexpected answer.
#
#   AUTH_JWT_SECRET=... scripts/walkthrough.sh [host:port]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ADDR="${1:-localhost:50051}"
GRPCURL="${GRPCURL:-$root/.tools/bin/grpcurl}"
COMMAND_SVC="${COMMAND_SVC:-$root/target/debug/command-svc}"
: "${AUTH_JWT_SECRET:?set AUTH_JWT_SECRET to the secret command-svc verifies tokens with}"

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'WALKTHROUGH FAILED: %s\n' "$*" >&2; exit 1; }
uuid() { cat /proc/sys/kernel/random/uuid; }
token() { "$COMMAND_SVC" token --sub "$1"; }

# call TOKEN METHOD JSON -> prints the JSON response
call() {
  # -rpc-header: the token goes with the call, not with the reflection requests grpcurl makes first.
  "$GRPCURL" -plaintext -rpc-header "authorization: Bearer $1" -d "$3" "$ADDR" "course.v1.CourseCommandService/$2"
}
# expect_error CODE TOKEN METHOD JSON
expect_error() {
  local out
  if out=$(call "$2" "$3" "$4" 2>&1); then fail "$3 should fail with $1 but answered $out"; fi
  grep -q "Code: $1" <<<"$out" || fail "$3 should fail with $1 but said: $out"
  printf '%s\n' "$out"
}

INSTRUCTOR=$(uuid); ALICE=$(uuid); BOB=$(uuid)
T_INSTRUCTOR=$(token "$INSTRUCTOR"); T_ALICE=$(token "$ALICE"); T_BOB=$(token "$BOB")

step "services, discovered by reflection"
services=$("$GRPCURL" -plaintext "$ADDR" list)
echo "$services"
grep -q course.v1.CourseCommandService <<<"$services" || fail "reflection does not list the command service"
"$GRPCURL" -plaintext "$ADDR" describe course.v1.CourseCommandService.JoinCourse
"$GRPCURL" -plaintext -d '{"service":"course.v1.CourseCommandService"}' "$ADDR" grpc.health.v1.Health/Check | grep -q SERVING \
  || fail "health is not SERVING"

step "1. CreateCourse (the caller becomes the instructor)"
out=$(call "$T_INSTRUCTOR" CreateCourse '{"title":"Event sourcing in Rust","description":"Aggregates, projections, outbox","category":"Programming","max_participants":2}')
echo "$out"
COURSE=$(jq -r .courseId <<<"$out")
[ "$(jq -r .version <<<"$out")" = 1 ] || fail "a new course is at version 1"

step "2. ChangeCourseTitle"
call "$T_INSTRUCTOR" ChangeCourseTitle "{\"course_id\":\"$COURSE\",\"title\":\"Event sourcing with Rust\"}" | tee /dev/stderr | jq -e '.version == "2"' >/dev/null

step "3. ChangeCourseDescription"
call "$T_INSTRUCTOR" ChangeCourseDescription "{\"course_id\":\"$COURSE\",\"description\":\"From commands to read models\"}" | jq -e '.version == "3"' >/dev/null

step "4. AddSection"
out=$(call "$T_INSTRUCTOR" AddSection "{\"course_id\":\"$COURSE\",\"title\":\"Intro\",\"video_url\":\"https://videos.example/intro.mp4\"}")
echo "$out"
jq -e '.position == 1 and (.sectionId | length) == 36' >/dev/null <<<"$out" || fail "AddSection answer"

step "5. PresentCourse"
call "$T_INSTRUCTOR" PresentCourse "{\"course_id\":\"$COURSE\"}" | jq -e '.version == "5"' >/dev/null

step "6. JoinCourse (Alice and Bob)"
call "$T_ALICE" JoinCourse "{\"course_id\":\"$COURSE\"}" | jq -e '.version == "6"' >/dev/null
call "$T_BOB" JoinCourse "{\"course_id\":\"$COURSE\"}" | jq -e '.version == "7"' >/dev/null

step "7. ActivateCourse"
call "$T_INSTRUCTOR" ActivateCourse "{\"course_id\":\"$COURSE\"}" | jq -e '.version == "8"' >/dev/null

step "8. CommentCourse"
call "$T_ALICE" CommentCourse "{\"course_id\":\"$COURSE\",\"text\":\"Loving the outbox part\"}" | tee /dev/stderr | jq -e '(.commentId | length) == 36' >/dev/null

step "9. LeaveCourse"
call "$T_BOB" LeaveCourse "{\"course_id\":\"$COURSE\"}" | jq -e '.version == "10"' >/dev/null

step "10. CompleteCourse"
call "$T_INSTRUCTOR" CompleteCourse "{\"course_id\":\"$COURSE\"}" | jq -e '.version == "11"' >/dev/null

step "idempotency: the same command_id twice answers the same and writes once"
CMD=$(uuid)
first=$(call "$T_ALICE" CommentCourse "{\"course_id\":\"$COURSE\",\"command_id\":\"$CMD\",\"text\":\"once\"}")
again=$(call "$T_ALICE" CommentCourse "{\"course_id\":\"$COURSE\",\"command_id\":\"$CMD\",\"text\":\"once\"}")
[ "$first" = "$again" ] || fail "retry answered differently: $first vs $again"

step "the events, read back through EventStoreService.ReadStream"
T_OPERATOR=$("$COMMAND_SVC" token --sub walkthrough-operator --role operator)
events=$("$GRPCURL" -plaintext -H "authorization: Bearer $T_OPERATOR" -d "{\"course_id\":\"$COURSE\"}" "$ADDR" course.v1.EventStoreService/ReadStream | jq -s -c '[.[].event.eventType]')
echo "$events"
[ "$events" = '["CourseCreated","CourseTitleChanged","CourseDescriptionChanged","SectionAdded","CoursePresented","UserJoinedCourse","UserJoinedCourse","CourseActivated","CourseCommented","UserLeftCourse","CourseCompleted","CourseCommented"]' ] \
  || fail "unexpected event stream"

step "the event store is for services and operators: anonymous -> UNAUTHENTICATED, a user -> PERMISSION_DENIED"
# grpcurl exits non-zero on an error status; the answer is what is checked.
anonymous=$("$GRPCURL" -plaintext -d "{\"course_id\":\"$COURSE\"}" "$ADDR" course.v1.EventStoreService/ReadStream 2>&1 || true)
grep -q Unauthenticated <<<"$anonymous" || fail "anonymous ReadStream was not refused: $anonymous"
as_user=$("$GRPCURL" -plaintext -H "authorization: Bearer $T_ALICE" -d "{\"course_id\":\"$COURSE\"}" "$ADDR" course.v1.EventStoreService/ReadStream 2>&1 || true)
grep -q PermissionDenied <<<"$as_user" || fail "a user's ReadStream was not refused: $as_user"

step "errors: no token -> UNAUTHENTICATED"
expect_error Unauthenticated "not-a-token" PresentCourse "{\"course_id\":\"$COURSE\"}"
step "errors: bad input -> INVALID_ARGUMENT with field violations"
expect_error InvalidArgument "$T_ALICE" CreateCourse '{"title":"","description":"d","category":"c","max_participants":100001}' | grep -q fieldViolations \
  || fail "no field violations in the details"
step "errors: unknown course -> NOT_FOUND"
expect_error NotFound "$T_ALICE" JoinCourse "{\"course_id\":\"$(uuid)\"}"
step "errors: not the instructor -> PERMISSION_DENIED"
expect_error PermissionDenied "$T_BOB" CommentCourse "{\"course_id\":\"$COURSE\",\"text\":\"I left\"}"
step "errors: rule broken -> FAILED_PRECONDITION"
expect_error FailedPrecondition "$T_BOB" JoinCourse "{\"course_id\":\"$COURSE\"}"
step "errors: stale expected_version -> ABORTED"
expect_error Aborted "$T_ALICE" CommentCourse "{\"course_id\":\"$COURSE\",\"expected_version\":3,\"text\":\"late\"}"
step "errors: command_id reused for another request -> ALREADY_EXISTS"
expect_error AlreadyExists "$T_ALICE" CommentCourse "{\"course_id\":\"$COURSE\",\"command_id\":\"$CMD\",\"text\":\"twice\"}"

printf '\nwalkthrough passed: 10 use cases and 7 error codes\n'
