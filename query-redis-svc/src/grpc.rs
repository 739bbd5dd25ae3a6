//! `course.v1.CatalogQueryService` over the Redis read model: validation and the reads (the
//! served generation, waits, paging and error mapping are `projection::read_side`'s).

use course_domain::{CourseStatus, validation};
use course_proto::timestamp;
use course_proto::v1::{self, catalog_query_service_server::CatalogQueryService};
use platform::auth::Identity;
use platform::grpc::Violations;
use projection::ReadModel;
use projection::fold::CourseSummary;
use projection::read_side::{self, MAX_PAGE_SIZE, QueryError, ReadSide, caller, page_size};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::store::{Joined, RedisReadModel};

/// `ListPopularCourses` limit when the request leaves it at 0.
const DEFAULT_POPULAR: u32 = 10;

/// The catalog's read RPCs.
#[derive(Clone)]
pub struct CatalogApi {
    reads: ReadSide<RedisReadModel>,
}

/// Finishes validation: INVALID_ARGUMENT with every violation, or the checked values.
fn finish<T>(violations: Violations, values: Option<T>) -> Result<T, QueryError> {
    violations.finish().map_err(QueryError::Invalid)?;
    values.ok_or_else(|| QueryError::Invalid(Status::invalid_argument("invalid request")))
}

impl CatalogApi {
    pub fn new(reads: ReadSide<RedisReadModel>) -> Self {
        Self { reads }
    }

    fn model(&self) -> &RedisReadModel {
        self.reads.model()
    }

    /// Whether `caller` may see who is in `course`: its instructor, a current participant, or
    /// an operator.
    async fn may_see_members(
        &self,
        generation: u32,
        caller: &Identity,
        instructor: Uuid,
        course: Uuid,
    ) -> Result<bool, QueryError> {
        if caller.is_operator() {
            return Ok(true);
        }
        let Some(user) = caller.user else { return Ok(false) };
        if user == instructor {
            return Ok(true);
        }
        let page_size = MAX_PAGE_SIZE as usize;
        let mut after = None;
        loop {
            let page = self.model().enrolments(generation, user, after.as_ref(), page_size).await?;
            if page.iter().any(|joined| joined.id == course) {
                return Ok(true);
            }
            if page.len() < page_size {
                return Ok(false);
            }
            after = page.last().cloned();
        }
    }

    #[tracing::instrument(skip_all, fields(course_id = %request.course_id), err(level = "info", Display))]
    async fn course(
        &self,
        request: v1::GetCourseRequest,
    ) -> Result<v1::GetCourseResponse, QueryError> {
        let mut violations = Violations::new();
        let course = violations.check("course_id", validation::uuid(&request.course_id));
        let course = finish(violations, course)?;
        self.reads.wait_for_version(course, request.min_version).await?;
        let generation = self.reads.active().await?;
        let found = self.model().summary(generation, course).await?;
        let found = found.ok_or(QueryError::CourseNotFound(course))?;
        Ok(v1::GetCourseResponse { course: Some(summary(&found)) })
    }

    #[tracing::instrument(skip_all, err(level = "info", Display))]
    async fn courses(
        &self,
        request: v1::ListCoursesRequest,
    ) -> Result<v1::ListCoursesResponse, QueryError> {
        let mut violations = Violations::new();
        let status = status_filter(&mut violations, request.status);
        let instructor = request
            .instructor_id
            .as_deref()
            .and_then(|raw| violations.check("instructor_id", validation::uuid(raw)));
        let limit = violations.check("page_size", page_size(request.page_size));
        let after = match request.page_token.as_str() {
            "" => None,
            raw => violations.check(
                "page_token",
                Uuid::parse_str(raw).map_err(|_| "not a page token from this service".to_owned()),
            ),
        };
        let limit = finish(violations, limit)? as usize;
        self.reads.wait_for_position(request.min_position).await?;
        let generation = self.reads.active().await?;
        let courses =
            self.model().list_courses(generation, status, instructor, after, limit).await?;
        let next_page_token = if courses.len() == limit {
            courses.last().map(|c| c.course_id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(v1::ListCoursesResponse {
            courses: courses.iter().map(summary).collect(),
            next_page_token,
        })
    }

    #[tracing::instrument(skip_all, err(level = "info", Display))]
    async fn popular(
        &self,
        request: v1::ListPopularCoursesRequest,
    ) -> Result<v1::ListPopularCoursesResponse, QueryError> {
        let mut violations = Violations::new();
        let status = status_filter(&mut violations, request.status);
        let limit = violations.check("limit", read_side::limit(request.limit, DEFAULT_POPULAR));
        let limit = finish(violations, limit)? as usize;
        self.reads.wait_for_position(request.min_position).await?;
        let generation = self.reads.active().await?;
        let courses = self.model().popular(generation, status, limit).await?;
        Ok(v1::ListPopularCoursesResponse { courses: courses.iter().map(summary).collect() })
    }

    #[tracing::instrument(skip_all, fields(course_id = %request.course_id), err(level = "info", Display))]
    async fn participants(
        &self,
        caller: &Identity,
        request: v1::ListCourseParticipantsRequest,
    ) -> Result<v1::ListCourseParticipantsResponse, QueryError> {
        let mut violations = Violations::new();
        let course = violations.check("course_id", validation::uuid(&request.course_id));
        let limit = violations.check("page_size", page_size(request.page_size));
        let after = joined_token(&mut violations, &request.page_token);
        let (course, limit) = finish(violations, (|| Some((course?, limit?)))())?;
        let limit = limit as usize;
        self.reads.wait_for_version(course, request.min_version).await?;
        let generation = self.reads.active().await?;
        let Some(found) = self.model().summary(generation, course).await? else {
            return Err(QueryError::CourseNotFound(course));
        };
        if !self.may_see_members(generation, caller, found.instructor_id, course).await? {
            return Err(QueryError::PermissionDenied(
                "a course's participants are visible to its instructor and participants only"
                    .to_owned(),
            ));
        }
        let page = self.model().participants(generation, course, after.as_ref(), limit).await?;
        let next_page_token = if page.len() == limit {
            page.last().map(Joined::member).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(v1::ListCourseParticipantsResponse {
            participants: page
                .iter()
                .map(|p| v1::Participant {
                    user_id: p.id.to_string(),
                    joined_at: Some(timestamp(p.joined_at)),
                })
                .collect(),
            next_page_token,
        })
    }

    #[tracing::instrument(skip_all, err(level = "info", Display))]
    async fn user_courses(
        &self,
        caller: &Identity,
        request: v1::ListUserCoursesRequest,
    ) -> Result<v1::ListUserCoursesResponse, QueryError> {
        let mut violations = Violations::new();
        let user = match request.user_id.as_deref() {
            Some(raw) => violations.check("user_id", validation::uuid(raw)),
            None => caller.user.or_else(|| {
                violations
                    .check::<Uuid>("user_id", Err("required when the caller is not a user".into()))
            }),
        };
        let limit = violations.check("page_size", page_size(request.page_size));
        let after = joined_token(&mut violations, &request.page_token);
        let (user, limit) = finish(violations, (|| Some((user?, limit?)))())?;
        let limit = limit as usize;
        if caller.user != Some(user) && !caller.is_operator() {
            return Err(QueryError::PermissionDenied(
                "a user's enrolments are visible to that user only".to_owned(),
            ));
        }
        self.reads.wait_for_position(request.min_position).await?;
        let generation = self.reads.active().await?;
        let page = self.model().enrolments(generation, user, after.as_ref(), limit).await?;
        let ids: Vec<Uuid> = page.iter().map(|j| j.id).collect();
        let summaries = self.model().summaries(generation, &ids).await?;
        let courses = page
            .iter()
            .filter_map(|joined| {
                let course = summaries.iter().find(|s| s.course_id == joined.id)?;
                Some(v1::UserCourse {
                    course: Some(summary(course)),
                    joined_at: Some(timestamp(joined.joined_at)),
                })
            })
            .collect();
        let next_page_token = if page.len() == limit {
            page.last().map(Joined::member).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(v1::ListUserCoursesResponse { courses, next_page_token })
    }
}

fn status_filter(v: &mut Violations, raw: Option<i32>) -> Option<CourseStatus> {
    let raw = raw?;
    let status = v.check(
        "status",
        v1::CourseStatus::try_from(raw).map_err(|_| format!("unknown status {raw}")),
    )?;
    CourseStatus::try_from(status).ok()
}

fn summary(s: &CourseSummary) -> v1::CourseSummary {
    v1::CourseSummary {
        course_id: s.course_id.to_string(),
        title: s.title.clone(),
        description: s.description.clone(),
        category: s.category.clone(),
        status: v1::CourseStatus::from(s.status) as i32,
        instructor_id: s.instructor_id.to_string(),
        max_participants: s.max_participants,
        section_count: s.section_count,
        participant_count: s.participant_count,
        comment_count: s.comment_count,
        version: s.version,
        created_at: Some(timestamp(s.created_at)),
        updated_at: Some(timestamp(s.updated_at)),
    }
}

fn joined_token(v: &mut Violations, raw: &str) -> Option<Joined> {
    if raw.is_empty() {
        return None;
    }
    v.check(
        "page_token",
        Joined::parse(raw).ok_or_else(|| "not a page token from this service".to_owned()),
    )
}

#[tonic::async_trait]
impl CatalogQueryService for CatalogApi {
    async fn get_course(
        &self,
        request: Request<v1::GetCourseRequest>,
    ) -> Result<Response<v1::GetCourseResponse>, Status> {
        Ok(Response::new(self.course(request.into_inner()).await?))
    }

    async fn list_courses(
        &self,
        request: Request<v1::ListCoursesRequest>,
    ) -> Result<Response<v1::ListCoursesResponse>, Status> {
        Ok(Response::new(self.courses(request.into_inner()).await?))
    }

    async fn list_popular_courses(
        &self,
        request: Request<v1::ListPopularCoursesRequest>,
    ) -> Result<Response<v1::ListPopularCoursesResponse>, Status> {
        Ok(Response::new(self.popular(request.into_inner()).await?))
    }

    async fn list_course_participants(
        &self,
        request: Request<v1::ListCourseParticipantsRequest>,
    ) -> Result<Response<v1::ListCourseParticipantsResponse>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(self.participants(&caller, request.into_inner()).await?))
    }

    async fn list_user_courses(
        &self,
        request: Request<v1::ListUserCoursesRequest>,
    ) -> Result<Response<v1::ListUserCoursesResponse>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(self.user_courses(&caller, request.into_inner()).await?))
    }
}
