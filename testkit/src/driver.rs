//! The command vocabulary of the tests: each helper sends one command as the given user
//! through the real gRPC client, expects it to succeed and returns the course's new version.

use course_proto::v1::course_command_service_client::CourseCommandServiceClient;
use course_proto::v1::{self};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::as_user;

/// Anything that answers the command RPCs (an in-process command-svc, a child process).
pub trait Commands {
    /// A command client.
    fn commands(&self) -> CourseCommandServiceClient<Channel>;
}

impl<T: Commands + ?Sized> Commands for &T {
    fn commands(&self) -> CourseCommandServiceClient<Channel> {
        (**self).commands()
    }
}

/// A course request with the tests' usual texts and no `command_id`.
pub fn create_request(max_participants: u32) -> v1::CreateCourseRequest {
    v1::CreateCourseRequest {
        command_id: None,
        title: "Event sourcing in Rust".into(),
        description: "Aggregates, projections and the outbox".into(),
        category: "Programming".into(),
        max_participants,
        expected_version: None,
    }
}

/// A JoinCourse request without `command_id` or `expected_version`.
pub fn join_request(course_id: &str) -> v1::JoinCourseRequest {
    v1::JoinCourseRequest { course_id: course_id.to_owned(), ..Default::default() }
}

/// Creates a course as `instructor`; returns its id.
pub async fn create_course(
    svc: &impl Commands,
    instructor: Uuid,
    request: v1::CreateCourseRequest,
) -> String {
    svc.commands()
        .create_course(as_user(instructor, request))
        .await
        .expect("course created")
        .into_inner()
        .course_id
}

/// Creates a course (with [`create_request`]) and moves it to Presenting, or on to Active
/// when `activate`; returns its id.
pub async fn open_course(
    svc: &impl Commands,
    instructor: Uuid,
    max: u32,
    activate: bool,
) -> String {
    let id = create_course(svc, instructor, create_request(max)).await;
    present(svc, instructor, &id).await;
    if activate {
        self::activate(svc, instructor, &id).await;
    }
    id
}

/// ChangeCourseTitle.
pub async fn change_title(
    svc: &impl Commands,
    instructor: Uuid,
    course_id: &str,
    title: &str,
) -> u64 {
    let request = v1::ChangeCourseTitleRequest {
        course_id: course_id.into(),
        title: title.into(),
        ..Default::default()
    };
    svc.commands()
        .change_course_title(as_user(instructor, request))
        .await
        .expect("title changed")
        .into_inner()
        .version
}

/// ChangeCourseDescription.
pub async fn change_description(
    svc: &impl Commands,
    instructor: Uuid,
    course_id: &str,
    description: &str,
) -> u64 {
    let request = v1::ChangeCourseDescriptionRequest {
        course_id: course_id.into(),
        description: description.into(),
        ..Default::default()
    };
    svc.commands()
        .change_course_description(as_user(instructor, request))
        .await
        .expect("description changed")
        .into_inner()
        .version
}

/// PresentCourse.
pub async fn present(svc: &impl Commands, instructor: Uuid, course_id: &str) -> u64 {
    let request = v1::PresentCourseRequest { course_id: course_id.into(), ..Default::default() };
    svc.commands()
        .present_course(as_user(instructor, request))
        .await
        .expect("presented")
        .into_inner()
        .version
}

/// ActivateCourse.
pub async fn activate(svc: &impl Commands, instructor: Uuid, course_id: &str) -> u64 {
    let request = v1::ActivateCourseRequest { course_id: course_id.into(), ..Default::default() };
    svc.commands()
        .activate_course(as_user(instructor, request))
        .await
        .expect("activated")
        .into_inner()
        .version
}

/// CompleteCourse.
pub async fn complete(svc: &impl Commands, instructor: Uuid, course_id: &str) -> u64 {
    let request = v1::CompleteCourseRequest { course_id: course_id.into(), ..Default::default() };
    svc.commands()
        .complete_course(as_user(instructor, request))
        .await
        .expect("completed")
        .into_inner()
        .version
}

/// JoinCourse.
pub async fn join(svc: &impl Commands, user: Uuid, course_id: &str) -> u64 {
    svc.commands()
        .join_course(as_user(user, join_request(course_id)))
        .await
        .expect("joined")
        .into_inner()
        .version
}

/// LeaveCourse.
pub async fn leave(svc: &impl Commands, user: Uuid, course_id: &str) -> u64 {
    let request = v1::LeaveCourseRequest { course_id: course_id.into(), ..Default::default() };
    svc.commands().leave_course(as_user(user, request)).await.expect("left").into_inner().version
}

/// CommentCourse; returns (version, comment id).
pub async fn comment(
    svc: &impl Commands,
    user: Uuid,
    course_id: &str,
    text: &str,
) -> (u64, String) {
    let request = v1::CommentCourseRequest {
        course_id: course_id.into(),
        text: text.into(),
        ..Default::default()
    };
    let response = svc
        .commands()
        .comment_course(as_user(user, request))
        .await
        .expect("commented")
        .into_inner();
    (response.version, response.comment_id)
}

/// AddSection titled `title` (description and video URL derived from it).
pub async fn add_section(
    svc: &impl Commands,
    instructor: Uuid,
    course_id: &str,
    title: &str,
) -> u64 {
    let request = v1::AddSectionRequest {
        course_id: course_id.into(),
        title: title.into(),
        description: format!("About {title}"),
        video_url: format!("https://videos.example/{}.mp4", title.replace(' ', "-")),
        ..Default::default()
    };
    svc.commands()
        .add_section(as_user(instructor, request))
        .await
        .expect("section added")
        .into_inner()
        .version
}
