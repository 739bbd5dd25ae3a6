//! `course.v1.CourseCommandService`: request validation and mapping to domain commands.

use course_domain::{Command, validation};
use course_proto::v1::{self, course_command_service_server::CourseCommandService};
use platform::grpc::Violations;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::app::{CommandContext, CourseCommands, Outcome};
use crate::readiness::Readiness;

/// The gRPC face of [`CourseCommands`].
#[derive(Clone)]
pub struct CommandApi {
    commands: CourseCommands,
    readiness: Readiness,
}

/// The parts every command request shares.
struct Envelope<'a> {
    method: &'static str,
    course_id: Option<&'a str>,
    command_id: Option<&'a str>,
    expected_version: Option<u64>,
}

impl CommandApi {
    pub fn new(commands: CourseCommands, readiness: Readiness) -> Self {
        Self { commands, readiness }
    }

    /// Takes the caller the server shell authenticated, validates the shared fields and the
    /// command's own (`build`), then runs it.
    async fn run<M: Message>(
        &self,
        request: &Request<M>,
        envelope: Envelope<'_>,
        build: impl FnOnce(&mut Violations) -> Command,
    ) -> Result<Outcome, Status> {
        let actor = platform::server::user(request)?;
        let metadata = request.metadata();
        let request = request.get_ref();
        let mut violations = Violations::new();
        let course_id = match envelope.course_id {
            Some(raw) => violations.check("course_id", validation::uuid(raw)),
            None => Some(Uuid::now_v7()),
        };
        let command_id = match envelope.command_id {
            Some(raw) => violations.check("command_id", validation::uuid(raw)).map(Some),
            None => Some(None),
        };
        let command = build(&mut violations);
        violations.finish()?;
        let (Some(course_id), Some(command_id)) = (course_id, command_id) else {
            return Err(Status::internal("validation passed without values"));
        };
        self.readiness.check()?;

        let mut hasher = Sha256::new();
        hasher.update(envelope.method.as_bytes());
        hasher.update(actor.as_bytes());
        hasher.update(request.encode_to_vec());
        let ctx = CommandContext {
            actor,
            command_id,
            expected_version: envelope.expected_version,
            fingerprint: hasher.finalize().to_vec(),
            correlation_id: metadata
                .get("x-correlation-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| Uuid::parse_str(v).ok()),
            // The command span's own context, so consumers continue this trace; without a
            // tracer, whatever the caller sent.
            traceparent: platform::propagation::traceparent(&tracing::Span::current()).or_else(
                || metadata.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned),
            ),
        };
        Ok(self.commands.execute(course_id, ctx, command).await?)
    }
}

fn text(violations: &mut Violations, field: &str, result: Result<String, String>) -> String {
    violations.check(field, result).unwrap_or_default()
}

#[tonic::async_trait]
impl CourseCommandService for CommandApi {
    async fn create_course(
        &self,
        request: Request<v1::CreateCourseRequest>,
    ) -> Result<Response<v1::CreateCourseResponse>, Status> {
        let r = request.get_ref();
        let envelope = Envelope {
            method: "CreateCourse",
            course_id: None,
            command_id: r.command_id.as_deref(),
            expected_version: r.expected_version,
        };
        let outcome = self
            .run(&request, envelope, |v| {
                if r.expected_version.is_some_and(|e| e != 0) {
                    v.check::<()>("expected_version", Err("a new course is at version 0".into()));
                }
                Command::CreateCourse {
                    title: text(v, "title", validation::title(&r.title)),
                    description: text(v, "description", validation::description(&r.description)),
                    category: text(v, "category", validation::category(&r.category)),
                    max_participants: v
                        .check("max_participants", validation::max_participants(r.max_participants))
                        .unwrap_or_default(),
                }
            })
            .await?;
        Ok(Response::new(v1::CreateCourseResponse {
            course_id: outcome.course_id.to_string(),
            version: outcome.version,
        }))
    }

    async fn change_course_title(
        &self,
        request: Request<v1::ChangeCourseTitleRequest>,
    ) -> Result<Response<v1::ChangeCourseTitleResponse>, Status> {
        let r = request.get_ref();
        let envelope = Envelope {
            method: "ChangeCourseTitle",
            course_id: Some(&r.course_id),
            command_id: r.command_id.as_deref(),
            expected_version: r.expected_version,
        };
        let outcome = self
            .run(&request, envelope, |v| Command::ChangeTitle {
                title: text(v, "title", validation::title(&r.title)),
            })
            .await?;
        Ok(Response::new(v1::ChangeCourseTitleResponse {
            course_id: outcome.course_id.to_string(),
            version: outcome.version,
        }))
    }

    async fn change_course_description(
        &self,
        request: Request<v1::ChangeCourseDescriptionRequest>,
    ) -> Result<Response<v1::ChangeCourseDescriptionResponse>, Status> {
        let r = request.get_ref();
        let envelope = Envelope {
            method: "ChangeCourseDescription",
            course_id: Some(&r.course_id),
            command_id: r.command_id.as_deref(),
            expected_version: r.expected_version,
        };
        let outcome = self
            .run(&request, envelope, |v| Command::ChangeDescription {
                description: text(v, "description", validation::description(&r.description)),
            })
            .await?;
        Ok(Response::new(v1::ChangeCourseDescriptionResponse {
            course_id: outcome.course_id.to_string(),
            version: outcome.version,
        }))
    }

    async fn present_course(
        &self,
        request: Request<v1::PresentCourseRequest>,
    ) -> Result<Response<v1::PresentCourseResponse>, Status> {
        let r = request.get_ref();
        let envelope = Envelope {
            method: "PresentCourse",
            course_id: Some(&r.course_id),
            command_id: r.command_id.as_deref(),
            expected_version: r.expected_version,
        };
        let outcome = self.run(&request, envelope, |_| Command::Present).await?;
        Ok(Response::new(v1::PresentCourseResponse {
            course_id: outcome.course_id.to_string(),
            version: outcome.version,
        }))
    }

    async fn activate_course(
        &self,
        request: Request<v1::ActivateCourseRequest>,
    ) -> Result<Response<v1::ActivateCourseResponse>, Status> {
        let r = request.get_ref();
        let envelope = Envelope {
            method: "ActivateCourse",
            course_id: Some(&r.course_id),
            command_id: r.command_id.as_deref(),
            expected_version: r.expected_version,
        };
        let outcome = self.run(&request, envelope, |_| Command::Activate).await?;
        Ok(Response::new(v1::ActivateCourseResponse {
            course_id: outcome.course_id.to_string(),
            version: outcome.version,
        }))
    }

    async fn complete_course(
        &self,
        request: Request<v1::CompleteCourseRequest>,
    ) -> Result<Response<v1::CompleteCourseResponse>, Status> {
        let r = request.get_ref();
        let envelope = Envelope {
            method: "CompleteCourse",
            course_id: Some(&r.course_id),
            command_id: r.command_id.as_deref(),
            expected_version: r.expected_version,
        };
        let outcome = self.run(&request, envelope, |_| Command::Complete).await?;
        Ok(Response::new(v1::CompleteCourseResponse {
            course_id: outcome.course_id.to_string(),
            version: outcome.version,
        }))
    }

    async fn add_section(
        &self,
        request: Request<v1::AddSectionRequest>,
    ) -> Result<Response<v1::AddSectionResponse>, Status> {
        let r = request.get_ref();
        let envelope = Envelope {
            method: "AddSection",
            course_id: Some(&r.course_id),
            command_id: r.command_id.as_deref(),
            expected_version: r.expected_version,
        };
        let outcome = self
            .run(&request, envelope, |v| Command::AddSection {
                section_id: Uuid::now_v7(),
                title: text(v, "title", validation::title(&r.title)),
                description: text(
                    v,
                    "description",
                    validation::section_description(&r.description),
                ),
                video_url: text(v, "video_url", validation::video_url(&r.video_url)),
            })
            .await?;
        Ok(Response::new(v1::AddSectionResponse {
            course_id: outcome.course_id.to_string(),
            version: outcome.version,
            section_id: outcome.section_id.map(|id| id.to_string()).unwrap_or_default(),
            position: outcome.position.unwrap_or_default(),
        }))
    }

    async fn join_course(
        &self,
        request: Request<v1::JoinCourseRequest>,
    ) -> Result<Response<v1::JoinCourseResponse>, Status> {
        let r = request.get_ref();
        let envelope = Envelope {
            method: "JoinCourse",
            course_id: Some(&r.course_id),
            command_id: r.command_id.as_deref(),
            expected_version: r.expected_version,
        };
        let outcome = self.run(&request, envelope, |_| Command::Join).await?;
        Ok(Response::new(v1::JoinCourseResponse {
            course_id: outcome.course_id.to_string(),
            version: outcome.version,
        }))
    }

    async fn leave_course(
        &self,
        request: Request<v1::LeaveCourseRequest>,
    ) -> Result<Response<v1::LeaveCourseResponse>, Status> {
        let r = request.get_ref();
        let envelope = Envelope {
            method: "LeaveCourse",
            course_id: Some(&r.course_id),
            command_id: r.command_id.as_deref(),
            expected_version: r.expected_version,
        };
        let outcome = self.run(&request, envelope, |_| Command::Leave).await?;
        Ok(Response::new(v1::LeaveCourseResponse {
            course_id: outcome.course_id.to_string(),
            version: outcome.version,
        }))
    }

    async fn comment_course(
        &self,
        request: Request<v1::CommentCourseRequest>,
    ) -> Result<Response<v1::CommentCourseResponse>, Status> {
        let r = request.get_ref();
        let envelope = Envelope {
            method: "CommentCourse",
            course_id: Some(&r.course_id),
            command_id: r.command_id.as_deref(),
            expected_version: r.expected_version,
        };
        let outcome = self
            .run(&request, envelope, |v| Command::Comment {
                comment_id: Uuid::now_v7(),
                text: text(v, "text", validation::comment(&r.text)),
            })
            .await?;
        Ok(Response::new(v1::CommentCourseResponse {
            course_id: outcome.course_id.to_string(),
            version: outcome.version,
            comment_id: outcome.comment_id.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }
}
