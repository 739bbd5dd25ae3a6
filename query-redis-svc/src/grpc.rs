//! `course.v1.CatalogQueryService` over the Redis read model.

use std::time::Duration;

use course_domain::{CourseStatus, validation};
use course_proto::timestamp;
use course_proto::v1::{self, catalog_query_service_server::CatalogQueryService};
use platform::auth::Identity;
use platform::grpc::Violations;
use projection::fold::CourseSummary;
use projection::wait::{self, WaitError};
use projection::{Progress, ReadModel, ReadModelError};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::store::{Joined, RedisReadModel};

/// Default page size.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Largest page size; larger requests are served this many.
pub const MAX_PAGE_SIZE: usize = 100;

/// The catalog's read RPCs.
#[derive(Clone)]
pub struct CatalogApi {
    model: RedisReadModel,
    progress: Progress,
    wait_timeout: Duration,
}

impl CatalogApi {
    pub fn new(model: RedisReadModel, progress: Progress, wait_timeout: Duration) -> Self {
        Self { model, progress, wait_timeout }
    }

    /// Whether `caller` may see who is in `course`: its instructor, a current participant, or
    /// an operator.
    async fn may_see_members(
        &self,
        generation: u32,
        caller: &Identity,
        instructor: Uuid,
        course: Uuid,
    ) -> Result<bool, Status> {
        if caller.is_operator() {
            return Ok(true);
        }
        let Some(user) = caller.user else { return Ok(false) };
        if user == instructor {
            return Ok(true);
        }
        let mut after = None;
        loop {
            let page = self
                .model
                .enrolments(generation, user, after.as_ref(), MAX_PAGE_SIZE)
                .await
                .map_err(storage)?;
            if page.iter().any(|joined| joined.id == course) {
                return Ok(true);
            }
            if page.len() < MAX_PAGE_SIZE {
                return Ok(false);
            }
            after = page.last().cloned();
        }
    }

    async fn active(&self) -> Result<u32, Status> {
        Ok(self.model.generations().await.map_err(storage)?.active)
    }

    async fn wait_version(&self, course: Uuid, min_version: Option<u64>) -> Result<(), Status> {
        match min_version {
            Some(min) if min > 0 => {
                wait::for_version(&self.model, &self.progress, course, min, self.wait_timeout)
                    .await
                    .map_err(behind)
            }
            _ => Ok(()),
        }
    }

    async fn wait_position(&self, min_position: Option<u64>) -> Result<(), Status> {
        match min_position {
            Some(min) if min > 0 => {
                wait::for_position(&self.model, &self.progress, min, self.wait_timeout)
                    .await
                    .map_err(behind)
            }
            _ => Ok(()),
        }
    }
}

fn storage(err: ReadModelError) -> Status {
    match err {
        ReadModelError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "redis unavailable");
            Status::unavailable("the read model is unavailable; retry later")
        }
        ReadModelError::Unexpected(cause) => {
            tracing::error!(error = %cause, "read model error");
            Status::internal("internal error")
        }
    }
}

fn behind(err: WaitError) -> Status {
    match err {
        WaitError::Behind { .. } => Status::unavailable(err.to_string()),
        WaitError::ReadModel(err) => storage(err),
    }
}

fn page_size(raw: u32) -> usize {
    match raw as usize {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
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
    #[tracing::instrument(skip_all, fields(course_id = %request.get_ref().course_id))]
    async fn get_course(
        &self,
        request: Request<v1::GetCourseRequest>,
    ) -> Result<Response<v1::GetCourseResponse>, Status> {
        let r = request.into_inner();
        let course = validation::uuid(&r.course_id)
            .map_err(|e| platform::grpc::invalid_field("course_id", e))?;
        self.wait_version(course, r.min_version).await?;
        let generation = self.active().await?;
        let found = self.model.summary(generation, course).await.map_err(storage)?;
        let found = found.ok_or_else(|| Status::not_found("course not found"))?;
        Ok(Response::new(v1::GetCourseResponse { course: Some(summary(&found)) }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_courses(
        &self,
        request: Request<v1::ListCoursesRequest>,
    ) -> Result<Response<v1::ListCoursesResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        let status = status_filter(&mut v, r.status);
        let instructor = r
            .instructor_id
            .as_deref()
            .and_then(|raw| v.check("instructor_id", validation::uuid(raw)));
        let after = match r.page_token.as_str() {
            "" => None,
            raw => v.check(
                "page_token",
                Uuid::parse_str(raw).map_err(|_| "not a page token from this service".to_owned()),
            ),
        };
        v.finish()?;
        self.wait_position(r.min_position).await?;
        let limit = page_size(r.page_size);
        let generation = self.active().await?;
        let courses = self
            .model
            .list_courses(generation, status, instructor, after, limit)
            .await
            .map_err(storage)?;
        let next_page_token = if courses.len() == limit {
            courses.last().map(|c| c.course_id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(v1::ListCoursesResponse {
            courses: courses.iter().map(summary).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_popular_courses(
        &self,
        request: Request<v1::ListPopularCoursesRequest>,
    ) -> Result<Response<v1::ListPopularCoursesResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        let status = status_filter(&mut v, r.status);
        v.finish()?;
        self.wait_position(r.min_position).await?;
        let limit = match r.limit as usize {
            0 => 10,
            n => n.min(MAX_PAGE_SIZE),
        };
        let generation = self.active().await?;
        let courses = self.model.popular(generation, status, limit).await.map_err(storage)?;
        Ok(Response::new(v1::ListPopularCoursesResponse {
            courses: courses.iter().map(summary).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(course_id = %request.get_ref().course_id))]
    async fn list_course_participants(
        &self,
        request: Request<v1::ListCourseParticipantsRequest>,
    ) -> Result<Response<v1::ListCourseParticipantsResponse>, Status> {
        let caller = platform::server::caller(&request).cloned().ok_or_else(|| {
            Status::unauthenticated("missing `authorization: Bearer <token>` metadata")
        })?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let course = v.check("course_id", validation::uuid(&r.course_id));
        let after = joined_token(&mut v, &r.page_token);
        v.finish()?;
        let Some(course) = course else { return Err(Status::invalid_argument("course_id")) };
        self.wait_version(course, r.min_version).await?;
        let generation = self.active().await?;
        let Some(found) = self.model.summary(generation, course).await.map_err(storage)? else {
            return Err(Status::not_found("course not found"));
        };
        if !self.may_see_members(generation, &caller, found.instructor_id, course).await? {
            return Err(Status::permission_denied(
                "a course's participants are visible to its instructor and participants only",
            ));
        }
        let limit = page_size(r.page_size);
        let page = self
            .model
            .participants(generation, course, after.as_ref(), limit)
            .await
            .map_err(storage)?;
        let next_page_token = if page.len() == limit {
            page.last().map(Joined::member).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(v1::ListCourseParticipantsResponse {
            participants: page
                .iter()
                .map(|p| v1::Participant {
                    user_id: p.id.to_string(),
                    joined_at: Some(timestamp(p.joined_at)),
                })
                .collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_user_courses(
        &self,
        request: Request<v1::ListUserCoursesRequest>,
    ) -> Result<Response<v1::ListUserCoursesResponse>, Status> {
        let caller = platform::server::caller(&request).cloned().ok_or_else(|| {
            Status::unauthenticated("missing `authorization: Bearer <token>` metadata")
        })?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let user = match r.user_id.as_deref() {
            Some(raw) => v.check("user_id", validation::uuid(raw)),
            None => caller.user.or_else(|| {
                v.check::<Uuid>("user_id", Err("required when the caller is not a user".into()))
            }),
        };
        let after = joined_token(&mut v, &r.page_token);
        v.finish()?;
        let Some(user) = user else { return Err(Status::invalid_argument("user_id")) };
        if caller.user != Some(user) && !caller.is_operator() {
            return Err(Status::permission_denied(
                "a user's enrolments are visible to that user only",
            ));
        }
        self.wait_position(r.min_position).await?;
        let generation = self.active().await?;
        let limit = page_size(r.page_size);
        let page = self
            .model
            .enrolments(generation, user, after.as_ref(), limit)
            .await
            .map_err(storage)?;
        let ids: Vec<Uuid> = page.iter().map(|j| j.id).collect();
        let summaries = self.model.summaries(generation, &ids).await.map_err(storage)?;
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
        Ok(Response::new(v1::ListUserCoursesResponse { courses, next_page_token }))
    }
}
