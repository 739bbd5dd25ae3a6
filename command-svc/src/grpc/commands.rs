//! `course.v1.CourseCommandService`: request validation and mapping to domain commands.

use course_domain::{Command, validation};
use course_proto::affinity::COURSE_ID_HEADER;
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

impl CommandApi {
    pub fn new(commands: CourseCommands, readiness: Readiness) -> Self {
        Self { commands, readiness }
    }

    /// The one path of every command: the caller the server shell authenticated, the shared
    /// fields and the command's own validated, then the use case, then the response.
    async fn handle<R: CommandRequest>(
        &self,
        request: Request<R>,
    ) -> Result<Response<R::Response>, Status> {
        let actor = platform::server::user(&request)?;
        let metadata = request.metadata();
        let body = request.get_ref();
        let mut violations = Violations::new();
        let course_id = match body.course_id() {
            Some(raw) => violations.check("course_id", validation::uuid(raw)),
            None => Some(Uuid::now_v7()),
        };
        let command_id = match body.command_id() {
            Some(raw) => violations.check("command_id", validation::uuid(raw)).map(Some),
            None => Some(None),
        };
        // A gateway may route on this header (course_proto::affinity): it must name the
        // request's course. A new course has no id yet, so CreateCourse ignores it.
        if let (Some(header), Some(raw)) = (metadata.get(COURSE_ID_HEADER), body.course_id()) {
            let named = header.to_str().ok().and_then(|h| Uuid::parse_str(h).ok());
            if course_id.is_some() && named != course_id {
                violations.check::<()>(
                    COURSE_ID_HEADER,
                    Err(format!("names another course than course_id {raw:?}")),
                );
            }
        }
        let command = body.command(&mut violations);
        violations.finish()?;
        let (Some(course_id), Some(command_id)) = (course_id, command_id) else {
            return Err(Status::internal("validation passed without values"));
        };
        self.readiness.check()?;

        let mut hasher = Sha256::new();
        hasher.update(R::METHOD.as_bytes());
        hasher.update(actor.as_bytes());
        hasher.update(body.encode_to_vec());
        let ctx = CommandContext {
            actor,
            command_id,
            expected_version: body.expected_version(),
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
        let outcome = self.commands.execute(course_id, ctx, command).await?;
        Ok(Response::new(R::response(outcome)))
    }
}

/// A command request: the fields every command shares, its own validation into a domain
/// [`Command`], and its response.
trait CommandRequest: Message {
    /// The RPC's name (part of the idempotency fingerprint).
    const METHOD: &'static str;
    type Response;
    /// `None` for a new course (its id is made here).
    fn course_id(&self) -> Option<&str>;
    fn command_id(&self) -> Option<&str>;
    fn expected_version(&self) -> Option<u64>;
    /// The domain command; problems are added to `violations`.
    fn command(&self, violations: &mut Violations) -> Command;
    fn response(outcome: Outcome) -> Self::Response;
}

/// The shared fields of a request about an existing course.
macro_rules! about_a_course {
    () => {
        fn course_id(&self) -> Option<&str> {
            Some(&self.course_id)
        }
        fn command_id(&self) -> Option<&str> {
            self.command_id.as_deref()
        }
        fn expected_version(&self) -> Option<u64> {
            self.expected_version
        }
    };
}

/// A command with no fields of its own, answered with the course id and version.
macro_rules! plain_command {
    ($request:ty, $response:ty, $method:literal, $command:expr) => {
        impl CommandRequest for $request {
            const METHOD: &'static str = $method;
            type Response = $response;
            about_a_course!();
            fn command(&self, _: &mut Violations) -> Command {
                $command
            }
            fn response(outcome: Outcome) -> Self::Response {
                <$response>::from_version(outcome)
            }
        }
    };
}

/// Responses that carry only the course id and its new version.
trait FromVersion {
    fn from_version(outcome: Outcome) -> Self;
}

macro_rules! version_response {
    ($($response:ty),*) => {$(
        impl FromVersion for $response {
            fn from_version(outcome: Outcome) -> Self {
                Self { course_id: outcome.course_id.to_string(), version: outcome.version }
            }
        }
    )*};
}

version_response!(
    v1::CreateCourseResponse,
    v1::ChangeCourseTitleResponse,
    v1::ChangeCourseDescriptionResponse,
    v1::PresentCourseResponse,
    v1::ActivateCourseResponse,
    v1::CompleteCourseResponse,
    v1::JoinCourseResponse,
    v1::LeaveCourseResponse
);

plain_command!(
    v1::PresentCourseRequest,
    v1::PresentCourseResponse,
    "PresentCourse",
    Command::Present
);
plain_command!(
    v1::ActivateCourseRequest,
    v1::ActivateCourseResponse,
    "ActivateCourse",
    Command::Activate
);
plain_command!(
    v1::CompleteCourseRequest,
    v1::CompleteCourseResponse,
    "CompleteCourse",
    Command::Complete
);
plain_command!(v1::JoinCourseRequest, v1::JoinCourseResponse, "JoinCourse", Command::Join);
plain_command!(v1::LeaveCourseRequest, v1::LeaveCourseResponse, "LeaveCourse", Command::Leave);

impl CommandRequest for v1::CreateCourseRequest {
    const METHOD: &'static str = "CreateCourse";
    type Response = v1::CreateCourseResponse;
    fn course_id(&self) -> Option<&str> {
        None
    }
    fn command_id(&self) -> Option<&str> {
        self.command_id.as_deref()
    }
    fn expected_version(&self) -> Option<u64> {
        self.expected_version
    }
    fn command(&self, v: &mut Violations) -> Command {
        if self.expected_version.is_some_and(|e| e != 0) {
            v.check::<()>("expected_version", Err("a new course is at version 0".into()));
        }
        Command::CreateCourse {
            title: text(v, "title", validation::title(&self.title)),
            description: text(v, "description", validation::description(&self.description)),
            category: text(v, "category", validation::category(&self.category)),
            max_participants: v
                .check("max_participants", validation::max_participants(self.max_participants))
                .unwrap_or_default(),
        }
    }
    fn response(outcome: Outcome) -> Self::Response {
        v1::CreateCourseResponse::from_version(outcome)
    }
}

impl CommandRequest for v1::ChangeCourseTitleRequest {
    const METHOD: &'static str = "ChangeCourseTitle";
    type Response = v1::ChangeCourseTitleResponse;
    about_a_course!();
    fn command(&self, v: &mut Violations) -> Command {
        Command::ChangeTitle { title: text(v, "title", validation::title(&self.title)) }
    }
    fn response(outcome: Outcome) -> Self::Response {
        v1::ChangeCourseTitleResponse::from_version(outcome)
    }
}

impl CommandRequest for v1::ChangeCourseDescriptionRequest {
    const METHOD: &'static str = "ChangeCourseDescription";
    type Response = v1::ChangeCourseDescriptionResponse;
    about_a_course!();
    fn command(&self, v: &mut Violations) -> Command {
        Command::ChangeDescription {
            description: text(v, "description", validation::description(&self.description)),
        }
    }
    fn response(outcome: Outcome) -> Self::Response {
        v1::ChangeCourseDescriptionResponse::from_version(outcome)
    }
}

impl CommandRequest for v1::AddSectionRequest {
    const METHOD: &'static str = "AddSection";
    type Response = v1::AddSectionResponse;
    about_a_course!();
    fn command(&self, v: &mut Violations) -> Command {
        Command::AddSection {
            section_id: Uuid::now_v7(),
            title: text(v, "title", validation::title(&self.title)),
            description: text(v, "description", validation::section_description(&self.description)),
            video_url: text(v, "video_url", validation::video_url(&self.video_url)),
        }
    }
    fn response(outcome: Outcome) -> Self::Response {
        v1::AddSectionResponse {
            course_id: outcome.course_id.to_string(),
            version: outcome.version,
            section_id: outcome.section_id.map(|id| id.to_string()).unwrap_or_default(),
            position: outcome.position.unwrap_or_default(),
        }
    }
}

impl CommandRequest for v1::CommentCourseRequest {
    const METHOD: &'static str = "CommentCourse";
    type Response = v1::CommentCourseResponse;
    about_a_course!();
    fn command(&self, v: &mut Violations) -> Command {
        Command::Comment {
            comment_id: Uuid::now_v7(),
            text: text(v, "text", validation::comment(&self.text)),
        }
    }
    fn response(outcome: Outcome) -> Self::Response {
        v1::CommentCourseResponse {
            course_id: outcome.course_id.to_string(),
            version: outcome.version,
            comment_id: outcome.comment_id.map(|id| id.to_string()).unwrap_or_default(),
        }
    }
}

fn text(violations: &mut Violations, field: &str, result: Result<String, String>) -> String {
    violations.check(field, result).unwrap_or_default()
}

/// Every RPC is the one generic path.
macro_rules! rpcs {
    ($($name:ident: $request:ty => $response:ty;)*) => {
        #[tonic::async_trait]
        impl CourseCommandService for CommandApi {
            $(
                async fn $name(&self, request: Request<$request>) -> Result<Response<$response>, Status> {
                    self.handle(request).await
                }
            )*
        }
    };
}

rpcs! {
    create_course: v1::CreateCourseRequest => v1::CreateCourseResponse;
    change_course_title: v1::ChangeCourseTitleRequest => v1::ChangeCourseTitleResponse;
    change_course_description: v1::ChangeCourseDescriptionRequest => v1::ChangeCourseDescriptionResponse;
    present_course: v1::PresentCourseRequest => v1::PresentCourseResponse;
    activate_course: v1::ActivateCourseRequest => v1::ActivateCourseResponse;
    complete_course: v1::CompleteCourseRequest => v1::CompleteCourseResponse;
    add_section: v1::AddSectionRequest => v1::AddSectionResponse;
    join_course: v1::JoinCourseRequest => v1::JoinCourseResponse;
    leave_course: v1::LeaveCourseRequest => v1::LeaveCourseResponse;
    comment_course: v1::CommentCourseRequest => v1::CommentCourseResponse;
}
