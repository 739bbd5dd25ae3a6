//! Conversions between domain types and their protobuf form.

use course_domain::{CourseStatus, Event};
use uuid::Uuid;

use crate::v1;
use crate::v1::event_envelope::Payload;

impl From<CourseStatus> for v1::CourseStatus {
    fn from(status: CourseStatus) -> Self {
        match status {
            CourseStatus::Created => v1::CourseStatus::Created,
            CourseStatus::Presenting => v1::CourseStatus::Presenting,
            CourseStatus::Active => v1::CourseStatus::Active,
            CourseStatus::Completed => v1::CourseStatus::Completed,
        }
    }
}

impl TryFrom<v1::CourseStatus> for CourseStatus {
    type Error = PayloadError;
    fn try_from(status: v1::CourseStatus) -> Result<Self, Self::Error> {
        Ok(match status {
            v1::CourseStatus::Created => CourseStatus::Created,
            v1::CourseStatus::Presenting => CourseStatus::Presenting,
            v1::CourseStatus::Active => CourseStatus::Active,
            v1::CourseStatus::Completed => CourseStatus::Completed,
            v1::CourseStatus::Unspecified => return Err(PayloadError::UnspecifiedStatus),
        })
    }
}

impl From<&Event> for Payload {
    fn from(event: &Event) -> Self {
        match event.clone() {
            Event::CourseCreated {
                instructor_id,
                title,
                description,
                category,
                max_participants,
            } => Payload::CourseCreated(v1::CourseCreated {
                instructor_id: instructor_id.to_string(),
                title,
                description,
                category,
                max_participants,
            }),
            Event::CourseTitleChanged { title } => {
                Payload::CourseTitleChanged(v1::CourseTitleChanged { title })
            }
            Event::CourseDescriptionChanged { description } => {
                Payload::CourseDescriptionChanged(v1::CourseDescriptionChanged { description })
            }
            Event::CoursePresented {} => Payload::CoursePresented(v1::CoursePresented {}),
            Event::CourseActivated {} => Payload::CourseActivated(v1::CourseActivated {}),
            Event::CourseCompleted {} => Payload::CourseCompleted(v1::CourseCompleted {}),
            Event::SectionAdded { section_id, position, title, description, video_url } => {
                Payload::SectionAdded(v1::SectionAdded {
                    section_id: section_id.to_string(),
                    position,
                    title,
                    description,
                    video_url,
                })
            }
            Event::UserJoinedCourse { user_id } => {
                Payload::UserJoinedCourse(v1::UserJoinedCourse { user_id: user_id.to_string() })
            }
            Event::UserLeftCourse { user_id } => {
                Payload::UserLeftCourse(v1::UserLeftCourse { user_id: user_id.to_string() })
            }
            Event::CourseCommented { comment_id, author_id, text } => {
                Payload::CourseCommented(v1::CourseCommented {
                    comment_id: comment_id.to_string(),
                    author_id: author_id.to_string(),
                    text,
                })
            }
        }
    }
}

/// A protobuf event that does not make a valid domain event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// The envelope has no payload (or one this build does not know).
    Missing,
    /// A field that must hold a UUID does not.
    BadUuid(&'static str),
    /// A status of 0.
    UnspecifiedStatus,
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadError::Missing => f.write_str("event envelope has no known payload"),
            PayloadError::BadUuid(field) => write!(f, "field {field} is not a UUID"),
            PayloadError::UnspecifiedStatus => f.write_str("course status is unspecified"),
        }
    }
}

impl std::error::Error for PayloadError {}

fn uuid(raw: &str, field: &'static str) -> Result<Uuid, PayloadError> {
    Uuid::parse_str(raw).map_err(|_| PayloadError::BadUuid(field))
}

impl TryFrom<&Payload> for Event {
    type Error = PayloadError;
    fn try_from(payload: &Payload) -> Result<Self, Self::Error> {
        Ok(match payload.clone() {
            Payload::CourseCreated(p) => Event::CourseCreated {
                instructor_id: uuid(&p.instructor_id, "instructor_id")?,
                title: p.title,
                description: p.description,
                category: p.category,
                max_participants: p.max_participants,
            },
            Payload::CourseTitleChanged(p) => Event::CourseTitleChanged { title: p.title },
            Payload::CourseDescriptionChanged(p) => {
                Event::CourseDescriptionChanged { description: p.description }
            }
            Payload::CoursePresented(_) => Event::CoursePresented {},
            Payload::CourseActivated(_) => Event::CourseActivated {},
            Payload::CourseCompleted(_) => Event::CourseCompleted {},
            Payload::SectionAdded(p) => Event::SectionAdded {
                section_id: uuid(&p.section_id, "section_id")?,
                position: p.position,
                title: p.title,
                description: p.description,
                video_url: p.video_url,
            },
            Payload::UserJoinedCourse(p) => {
                Event::UserJoinedCourse { user_id: uuid(&p.user_id, "user_id")? }
            }
            Payload::UserLeftCourse(p) => {
                Event::UserLeftCourse { user_id: uuid(&p.user_id, "user_id")? }
            }
            Payload::CourseCommented(p) => Event::CourseCommented {
                comment_id: uuid(&p.comment_id, "comment_id")?,
                author_id: uuid(&p.author_id, "author_id")?,
                text: p.text,
            },
        })
    }
}

impl TryFrom<&v1::EventEnvelope> for Event {
    type Error = PayloadError;
    fn try_from(envelope: &v1::EventEnvelope) -> Result<Self, Self::Error> {
        envelope.payload.as_ref().ok_or(PayloadError::Missing)?.try_into()
    }
}

/// Converts a chrono time to a protobuf timestamp.
pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}
