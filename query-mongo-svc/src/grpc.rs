//! `course.v1.CourseQueryService` over the MongoDB read model: validation and the reads (the
//! served generation, waits, paging and error mapping are `projection::read_side`'s).

use course_domain::{CourseStatus, validation};
use course_proto::v1::{self, course_query_service_server::CourseQueryService};
use platform::auth::Identity;
use platform::grpc::Violations;
use projection::read_side::{QueryError, ReadSide, caller, page_size};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::page_token;
use crate::store::{
    CommentCursor, CourseCursor, CourseDoc, MongoReadModel, ParticipantDoc, SearchFilter,
};

/// Longest search text, in characters.
const MAX_QUERY_CHARS: usize = 200;
/// Participants a GetCourseDetails answer carries at most (the largest ListParticipants page):
/// ListParticipants continues after them.
pub const FIRST_PARTICIPANTS: usize = 100;

/// The read RPCs over the MongoDB read model.
#[derive(Clone)]
pub struct CourseQueryApi {
    reads: ReadSide<MongoReadModel>,
}

fn query_words(raw: &str) -> Result<Vec<String>, String> {
    let chars = raw.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(format!("must be at most {MAX_QUERY_CHARS} characters (got {chars})"));
    }
    if raw.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(raw.split_whitespace().map(str::to_owned).collect())
}

fn status_filter(raw: i32) -> Result<CourseStatus, String> {
    v1::CourseStatus::try_from(raw)
        .ok()
        .and_then(|s| CourseStatus::try_from(s).ok())
        .ok_or_else(|| format!("must be a course status other than UNSPECIFIED (got {raw})"))
}

/// Finishes validation: INVALID_ARGUMENT with every violation, or the checked values.
fn finish<T>(violations: Violations, values: Option<T>) -> Result<T, QueryError> {
    violations.finish().map_err(QueryError::Invalid)?;
    values.ok_or_else(|| QueryError::Invalid(Status::invalid_argument("invalid request")))
}

fn status_of(name: &str) -> i32 {
    v1::CourseStatus::from_str_name(name).unwrap_or(v1::CourseStatus::Unspecified) as i32
}

impl CourseQueryApi {
    pub fn new(reads: ReadSide<MongoReadModel>) -> Self {
        Self { reads }
    }

    /// The served generation and `course_id`'s document in it, once the read model reached
    /// `min_version` of the course (when given); NOT_FOUND when the course is not there.
    async fn course_at(
        &self,
        course_id: Uuid,
        min_version: Option<u64>,
    ) -> Result<(u32, CourseDoc), QueryError> {
        self.reads.wait_for_version(course_id, min_version).await?;
        let generation = self.reads.active().await?;
        let course = self
            .model()
            .course(generation, course_id)
            .await?
            .ok_or(QueryError::CourseNotFound(course_id))?;
        Ok((generation, course))
    }

    fn model(&self) -> &MongoReadModel {
        self.reads.model()
    }

    /// Whether `caller` may see who is in `course` and what they wrote: its instructor, a
    /// current participant, or an operator.
    async fn may_see_members(
        &self,
        generation: u32,
        caller: Option<&Identity>,
        course: &CourseDoc,
    ) -> Result<bool, QueryError> {
        let Some(caller) = caller else { return Ok(false) };
        if caller.is_operator() {
            return Ok(true);
        }
        let Some(user) = caller.user else { return Ok(false) };
        if course.instructor_id == user.to_string() {
            return Ok(true);
        }
        let Ok(course_id) = Uuid::parse_str(&course.id) else { return Ok(false) };
        Ok(self.model().is_participant(generation, course_id, user).await?)
    }

    /// Up to `size` participants of `course_id` after the join at `after`, and the token of
    /// the next page (empty on the last).
    async fn participant_page(
        &self,
        generation: u32,
        course_id: Uuid,
        after: u64,
        size: usize,
    ) -> Result<(Vec<v1::CourseParticipant>, String), QueryError> {
        let limit = i64::try_from(size).unwrap_or(i64::MAX).saturating_add(1);
        let mut page = self.model().participants(generation, course_id, after, limit).await?;
        let next = if page.len() > size {
            page.truncate(size);
            page.last()
                .map(|last: &ParticipantDoc| {
                    page_token::participants(&last.course_id, last.version)
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((page.into_iter().map(crate::store::participant_proto).collect(), next))
    }

    #[tracing::instrument(skip_all, fields(course_id = %request.course_id), err(level = "info", Display))]
    async fn course_details(
        &self,
        caller: Option<&Identity>,
        request: v1::GetCourseDetailsRequest,
    ) -> Result<v1::GetCourseDetailsResponse, QueryError> {
        let mut violations = Violations::new();
        let course_id = violations.check("course_id", validation::uuid(&request.course_id));
        let course_id = finish(violations, course_id)?;
        let (generation, course) = self.course_at(course_id, request.min_version).await?;
        let members_visible = self.may_see_members(generation, caller, &course).await?;
        let mut course = course.into_proto();
        // The count is public; who is in the course is not.
        if members_visible && course.participant_count > 0 {
            let (participants, next) =
                self.participant_page(generation, course_id, 0, FIRST_PARTICIPANTS).await?;
            course.participants = participants;
            course.participants_next_page_token = next;
        }
        Ok(v1::GetCourseDetailsResponse { course: Some(course) })
    }

    #[tracing::instrument(skip_all, fields(course_id = %request.course_id), err(level = "info", Display))]
    async fn participants(
        &self,
        caller: Option<&Identity>,
        request: v1::ListParticipantsRequest,
    ) -> Result<v1::ListParticipantsResponse, QueryError> {
        let mut violations = Violations::new();
        let course_id = violations.check("course_id", validation::uuid(&request.course_id));
        let size = violations.check("page_size", page_size(request.page_size));
        let after = course_id.and_then(|course_id| {
            violations.check(
                "page_token",
                page_token::parse_participants(&request.page_token, &course_id.to_string()),
            )
        });
        let checked = (|| Some((course_id?, size?, after?)))();
        let (course_id, size, after) = finish(violations, checked)?;
        let (generation, course) = self.course_at(course_id, request.min_version).await?;
        let (participants, next_page_token) =
            if self.may_see_members(generation, caller, &course).await? {
                self.participant_page(generation, course_id, after, size as usize).await?
            } else {
                (Vec::new(), String::new())
            };
        Ok(v1::ListParticipantsResponse {
            participants,
            next_page_token,
            participant_count: u32::try_from(course.participant_count).unwrap_or_default(),
            version: u64::try_from(course.version).unwrap_or_default(),
        })
    }

    #[tracing::instrument(skip_all, err(level = "info", Display))]
    async fn search(
        &self,
        request: v1::SearchCoursesRequest,
    ) -> Result<v1::SearchCoursesResponse, QueryError> {
        let mut violations = Violations::new();
        let words = violations.check("query", query_words(&request.query));
        let status = request.status.map(|raw| violations.check("status", status_filter(raw)));
        let instructor = request
            .instructor_id
            .as_deref()
            .map(|raw| violations.check("instructor_id", validation::uuid(raw)));
        let category = request
            .category
            .as_deref()
            .map(|raw| violations.check("category", validation::category(raw)));
        let size = violations.check("page_size", page_size(request.page_size));
        let cursor = violations.check("page_token", page_token::parse_courses(&request.page_token));
        let checked = (|| {
            Some((
                words?,
                status.map_or(Some(None), |s| s.map(Some))?,
                instructor.map_or(Some(None), |i| i.map(Some))?,
                category.map_or(Some(None), |c| c.map(Some))?,
                size?,
                cursor?,
            ))
        })();
        let (words, status, instructor_id, category, size, cursor) = finish(violations, checked)?;
        self.reads.wait_for_position(request.min_position).await?;
        let filter = SearchFilter { words, status, instructor_id, category };
        let mut courses = self
            .model()
            .search(self.reads.active().await?, &filter, cursor.as_ref(), i64::from(size) + 1)
            .await?;
        let next_page_token = if courses.len() > size as usize {
            courses.truncate(size as usize);
            courses
                .last()
                .map(|last| {
                    page_token::courses(&CourseCursor {
                        created_at_millis: last.created_at.timestamp_millis(),
                        course_id: last.id.clone(),
                    })
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(v1::SearchCoursesResponse {
            courses: courses
                .into_iter()
                // Counts only: `into_proto` carries no participants.
                .map(CourseDoc::into_proto)
                .collect(),
            next_page_token,
        })
    }

    #[tracing::instrument(skip_all, fields(course_id = %request.course_id), err(level = "info", Display))]
    async fn comments(
        &self,
        caller: &Identity,
        request: v1::ListCourseCommentsRequest,
    ) -> Result<v1::ListCourseCommentsResponse, QueryError> {
        let mut violations = Violations::new();
        let course_id = violations.check("course_id", validation::uuid(&request.course_id));
        let size = violations.check("page_size", page_size(request.page_size));
        let cursor =
            violations.check("page_token", page_token::parse_comments(&request.page_token));
        let checked = (|| Some((course_id?, size?, cursor?)))();
        let (course_id, size, cursor) = finish(violations, checked)?;
        let (generation, course) = self.course_at(course_id, request.min_version).await?;
        if !self.may_see_members(generation, Some(caller), &course).await? {
            return Err(QueryError::PermissionDenied(
                "a course's comments are visible to its instructor and participants only"
                    .to_owned(),
            ));
        }
        let mut comments = self
            .model()
            .comments(generation, course_id, cursor.as_ref(), i64::from(size) + 1)
            .await?;
        let next_page_token = if comments.len() > size as usize {
            comments.truncate(size as usize);
            comments
                .last()
                .map(|last| {
                    page_token::comments(&CommentCursor {
                        posted_at_millis: last.posted_at.timestamp_millis(),
                        comment_id: last.id.clone(),
                    })
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(v1::ListCourseCommentsResponse {
            comments: comments.into_iter().map(|c| c.into_proto()).collect(),
            next_page_token,
        })
    }

    #[tracing::instrument(skip_all, err(level = "info", Display))]
    async fn enrollments(
        &self,
        caller: &Identity,
        request: v1::ListUserEnrollmentsRequest,
    ) -> Result<v1::ListUserEnrollmentsResponse, QueryError> {
        let mut violations = Violations::new();
        let user = match request.user_id.as_deref() {
            None => caller.user.or_else(|| {
                violations
                    .check::<Uuid>("user_id", Err("required when the caller is not a user".into()))
            }),
            Some(raw) => violations.check("user_id", validation::uuid(raw)),
        };
        let size = violations.check("page_size", page_size(request.page_size));
        let cursor =
            violations.check("page_token", page_token::parse_enrollments(&request.page_token));
        let checked = (|| Some((user?, size?, cursor?)))();
        let (user, size, cursor) = finish(violations, checked)?;
        if caller.user != Some(user) && !caller.is_operator() {
            return Err(QueryError::PermissionDenied(
                "only your own enrolments are visible".to_owned(),
            ));
        }
        self.reads.wait_for_position(request.min_position).await?;
        let (enrollments, next) = self
            .model()
            .enrollments(self.reads.active().await?, user, cursor.as_ref(), size as usize)
            .await?;
        Ok(v1::ListUserEnrollmentsResponse {
            next_page_token: next.as_ref().map(page_token::enrollments).unwrap_or_default(),
            enrollments: enrollments
                .into_iter()
                .map(|e| v1::Enrollment {
                    course_id: e.course_id,
                    title: e.title,
                    status: status_of(&e.status),
                    joined_at: Some(course_proto::timestamp(crate::store::chrono_time(
                        e.joined_at,
                    ))),
                })
                .collect(),
        })
    }

    #[tracing::instrument(skip_all, err(level = "info", Display))]
    async fn stats(
        &self,
        request: v1::GetPlatformStatsRequest,
    ) -> Result<v1::GetPlatformStatsResponse, QueryError> {
        self.reads.wait_for_position(request.min_position).await?;
        let stats = self.model().stats(self.reads.active().await?).await?;
        let counts = |pairs: Vec<(String, u64)>| {
            pairs.into_iter().map(|(key, count)| v1::Count { key, count }).collect()
        };
        Ok(v1::GetPlatformStatsResponse {
            total_courses: stats.total_courses,
            courses_by_status: counts(stats.by_status),
            courses_by_category: counts(stats.by_category),
            total_participants: stats.total_participants,
            total_comments: stats.total_comments,
        })
    }
}

#[tonic::async_trait]
impl CourseQueryService for CourseQueryApi {
    async fn get_course_details(
        &self,
        request: Request<v1::GetCourseDetailsRequest>,
    ) -> Result<Response<v1::GetCourseDetailsResponse>, Status> {
        let caller = platform::server::caller(&request).cloned();
        Ok(Response::new(self.course_details(caller.as_ref(), request.into_inner()).await?))
    }

    async fn list_participants(
        &self,
        request: Request<v1::ListParticipantsRequest>,
    ) -> Result<Response<v1::ListParticipantsResponse>, Status> {
        let caller = platform::server::caller(&request).cloned();
        Ok(Response::new(self.participants(caller.as_ref(), request.into_inner()).await?))
    }

    async fn search_courses(
        &self,
        request: Request<v1::SearchCoursesRequest>,
    ) -> Result<Response<v1::SearchCoursesResponse>, Status> {
        Ok(Response::new(self.search(request.into_inner()).await?))
    }

    async fn list_course_comments(
        &self,
        request: Request<v1::ListCourseCommentsRequest>,
    ) -> Result<Response<v1::ListCourseCommentsResponse>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(self.comments(&caller, request.into_inner()).await?))
    }

    async fn list_user_enrollments(
        &self,
        request: Request<v1::ListUserEnrollmentsRequest>,
    ) -> Result<Response<v1::ListUserEnrollmentsResponse>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(self.enrollments(&caller, request.into_inner()).await?))
    }

    async fn get_platform_stats(
        &self,
        request: Request<v1::GetPlatformStatsRequest>,
    ) -> Result<Response<v1::GetPlatformStatsResponse>, Status> {
        Ok(Response::new(self.stats(request.into_inner()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_split_into_words_and_bounded() {
        assert_eq!(query_words("  Rust   async "), Ok(vec!["Rust".into(), "async".into()]));
        assert_eq!(query_words(""), Ok(vec![]));
        assert!(query_words(&"x".repeat(201)).is_err());
        assert!(query_words("a\0b").is_err());
    }

    #[test]
    fn an_unspecified_or_unknown_status_filter_is_refused() {
        assert_eq!(status_filter(3), Ok(CourseStatus::Active));
        assert!(status_filter(0).is_err());
        assert!(status_filter(42).is_err());
    }
}
