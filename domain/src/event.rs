use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Something that happened to a course. Stored as `event_type` + a JSON payload, and published
/// as the protobuf `course.v1.EventEnvelope`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum Event {
    /// The course was created by `instructor_id`.
    CourseCreated {
        /// The instructor.
        instructor_id: Uuid,
        /// Title.
        title: String,
        /// Description.
        description: String,
        /// Category.
        category: String,
        /// 0 means no limit.
        max_participants: u32,
    },
    /// New title.
    CourseTitleChanged {
        /// The title.
        title: String,
    },
    /// New description.
    CourseDescriptionChanged {
        /// The description.
        description: String,
    },
    /// Created -> Presenting.
    CoursePresented {},
    /// Presenting -> Active.
    CourseActivated {},
    /// Active -> Completed.
    CourseCompleted {},
    /// A section was appended at `position` (1-based).
    SectionAdded {
        /// Stable id.
        section_id: Uuid,
        /// 1-based position.
        position: u32,
        /// Title.
        title: String,
        /// Description.
        description: String,
        /// http(s) URL.
        video_url: String,
    },
    /// A user joined.
    UserJoinedCourse {
        /// The user.
        user_id: Uuid,
    },
    /// A user left.
    UserLeftCourse {
        /// The user.
        user_id: Uuid,
    },
    /// A comment was posted.
    CourseCommented {
        /// Id of the comment.
        comment_id: Uuid,
        /// The author.
        author_id: Uuid,
        /// The text.
        text: String,
    },
}

/// A stored payload could not be turned back into an [`Event`].
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    /// No upcaster knows this (type, schema version).
    #[error("unknown schema version {schema_version} of event type {event_type}")]
    UnknownSchema {
        /// Stored type.
        event_type: String,
        /// Stored schema version.
        schema_version: i32,
    },
    /// The payload does not fit the type.
    #[error("malformed {event_type} payload: {source}")]
    Malformed {
        /// Stored type.
        event_type: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

impl Event {
    /// The type name stored and published with the event.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::CourseCreated { .. } => "CourseCreated",
            Event::CourseTitleChanged { .. } => "CourseTitleChanged",
            Event::CourseDescriptionChanged { .. } => "CourseDescriptionChanged",
            Event::CoursePresented {} => "CoursePresented",
            Event::CourseActivated {} => "CourseActivated",
            Event::CourseCompleted {} => "CourseCompleted",
            Event::SectionAdded { .. } => "SectionAdded",
            Event::UserJoinedCourse { .. } => "UserJoinedCourse",
            Event::UserLeftCourse { .. } => "UserLeftCourse",
            Event::CourseCommented { .. } => "CourseCommented",
        }
    }

    /// Current schema version of this event type's payload. Bump it when the payload's shape
    /// changes and add a step to [`Event::upcast`] that turns the old shape into the new.
    pub fn schema_version(&self) -> i32 {
        match self {
            // v1 (the seed) had no category.
            Event::CourseCreated { .. } => 2,
            _ => 1,
        }
    }

    /// The payload as stored: JSON without the type tag.
    pub fn to_payload(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut map)) => map.remove("payload").unwrap_or(Value::Null),
            // Serializing a derive(Serialize) enum of strings, numbers and UUIDs cannot fail.
            _ => Value::Null,
        }
    }

    /// Rebuilds an event from its stored form, upcasting older payload shapes first.
    pub fn from_stored(
        event_type: &str,
        schema_version: i32,
        payload: Value,
    ) -> Result<Event, EventDecodeError> {
        let payload = Self::upcast(event_type, schema_version, payload)?;
        let tagged = serde_json::json!({ "event_type": event_type, "payload": payload });
        serde_json::from_value(tagged).map_err(|source| EventDecodeError::Malformed {
            event_type: event_type.to_owned(),
            source,
        })
    }

    /// Upcasting chain keyed by (event type, schema version): each step lifts a payload one
    /// version; the loop runs until the current version.
    fn upcast(
        event_type: &str,
        mut schema_version: i32,
        mut payload: Value,
    ) -> Result<Value, EventDecodeError> {
        loop {
            payload = match (event_type, schema_version) {
                ("CourseCreated", 2) => return Ok(payload),
                ("CourseCreated", 1) => {
                    let mut payload = payload;
                    if let Value::Object(map) = &mut payload {
                        map.entry("category")
                            .or_insert_with(|| Value::String("General".to_owned()));
                    }
                    payload
                }
                (
                    "CourseTitleChanged"
                    | "CourseDescriptionChanged"
                    | "CoursePresented"
                    | "CourseActivated"
                    | "CourseCompleted"
                    | "SectionAdded"
                    | "UserJoinedCourse"
                    | "UserLeftCourse"
                    | "CourseCommented",
                    1,
                ) => return Ok(payload),
                _ => {
                    return Err(EventDecodeError::UnknownSchema {
                        event_type: event_type.to_owned(),
                        schema_version,
                    });
                }
            };
            schema_version += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_event_round_trips_through_its_stored_form() {
        let id = Uuid::now_v7();
        let events = vec![
            Event::CourseCreated {
                instructor_id: id,
                title: "t".into(),
                description: "d".into(),
                category: "c".into(),
                max_participants: 3,
            },
            Event::CourseTitleChanged { title: "t2".into() },
            Event::CourseDescriptionChanged { description: "d2".into() },
            Event::CoursePresented {},
            Event::CourseActivated {},
            Event::CourseCompleted {},
            Event::SectionAdded {
                section_id: id,
                position: 1,
                title: "s".into(),
                description: "".into(),
                video_url: "https://v.example/1".into(),
            },
            Event::UserJoinedCourse { user_id: id },
            Event::UserLeftCourse { user_id: id },
            Event::CourseCommented { comment_id: id, author_id: id, text: "hi".into() },
        ];
        for event in events {
            let back =
                Event::from_stored(event.event_type(), event.schema_version(), event.to_payload())
                    .expect("decodes");
            assert_eq!(back, event);
        }
    }

    #[test]
    fn a_version_1_course_created_payload_is_upcast_with_a_default_category() {
        let instructor = Uuid::now_v7();
        let old = json!({
            "instructor_id": instructor,
            "title": "Rust",
            "description": "Ownership",
            "max_participants": 0
        });
        let event = Event::from_stored("CourseCreated", 1, old).expect("upcasts");
        assert_eq!(
            event,
            Event::CourseCreated {
                instructor_id: instructor,
                title: "Rust".into(),
                description: "Ownership".into(),
                category: "General".into(),
                max_participants: 0,
            }
        );
    }

    #[test]
    fn an_unknown_schema_version_is_an_error_not_a_guess() {
        let err = Event::from_stored("CourseCreated", 9, json!({})).expect_err("refused");
        assert!(matches!(err, EventDecodeError::UnknownSchema { schema_version: 9, .. }));
        let err = Event::from_stored("Nope", 1, json!({})).expect_err("refused");
        assert!(matches!(err, EventDecodeError::UnknownSchema { .. }));
    }

    #[test]
    fn a_payload_missing_a_field_is_malformed() {
        let err = Event::from_stored("CourseTitleChanged", 1, json!({})).expect_err("refused");
        assert!(matches!(err, EventDecodeError::Malformed { .. }));
    }
}
