use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Command, DomainError, Event, MAX_SECTIONS};

/// Shape of [`Course`] as stored in snapshots. Bump it whenever a field of [`Course`],
/// [`Section`] or [`CourseStatus`] changes meaning or shape: snapshots of another shape are
/// ignored and the course is rebuilt from its events (and snapshotted again in the new shape).
pub const SNAPSHOT_SCHEMA: i32 = 1;

/// Lifecycle of a course.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CourseStatus {
    /// Just created.
    Created,
    /// Open for enrolment.
    Presenting,
    /// Running.
    Active,
    /// Finished.
    Completed,
}

impl fmt::Display for CourseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CourseStatus::Created => "Created",
            CourseStatus::Presenting => "Presenting",
            CourseStatus::Active => "Active",
            CourseStatus::Completed => "Completed",
        })
    }
}

/// A section of a course, as far as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// Stable id.
    pub id: Uuid,
    /// 1-based position.
    pub position: u32,
}

/// The course aggregate: the state the rules need, rebuilt from events (or from a snapshot
/// of [`SNAPSHOT_SCHEMA`] and the events after it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Course {
    /// Number of events applied; 0 means the course does not exist.
    pub version: u64,
    /// `None` until created.
    pub status: Option<CourseStatus>,
    /// The instructor.
    pub instructor_id: Uuid,
    /// Current title.
    pub title: String,
    /// Current description.
    pub description: String,
    /// Category.
    pub category: String,
    /// 0 means no limit.
    pub max_participants: u32,
    /// Sections in order.
    pub sections: Vec<Section>,
    /// Current participants.
    pub participants: HashSet<Uuid>,
    /// Comments posted.
    pub comment_count: u64,
}

impl Course {
    /// Rebuilds a course from its events in version order.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Course {
        let mut course = Course::default();
        for event in events {
            course.apply(event);
        }
        course
    }

    /// The course as a snapshot document of shape [`SNAPSHOT_SCHEMA`].
    pub fn to_snapshot(&self) -> serde_json::Value {
        // Strings, numbers, UUIDs and enums of unit variants: serialization cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The course a snapshot describes, or `None` when it was taken in another shape (or
    /// cannot be read): the caller then rebuilds from events instead.
    pub fn from_snapshot(schema: i32, state: serde_json::Value) -> Option<Course> {
        if schema != SNAPSHOT_SCHEMA {
            return None;
        }
        serde_json::from_value(state).ok()
    }

    /// True once CourseCreated has been applied.
    pub fn exists(&self) -> bool {
        self.status.is_some()
    }

    /// Changes state only; every decision was made in [`Course::handle`].
    pub fn apply(&mut self, event: &Event) {
        self.version += 1;
        match event {
            Event::CourseCreated {
                instructor_id,
                title,
                description,
                category,
                max_participants,
            } => {
                self.status = Some(CourseStatus::Created);
                self.instructor_id = *instructor_id;
                self.title.clone_from(title);
                self.description.clone_from(description);
                self.category.clone_from(category);
                self.max_participants = *max_participants;
            }
            Event::CourseTitleChanged { title } => self.title.clone_from(title),
            Event::CourseDescriptionChanged { description } => {
                self.description.clone_from(description)
            }
            Event::CoursePresented {} => self.status = Some(CourseStatus::Presenting),
            Event::CourseActivated {} => self.status = Some(CourseStatus::Active),
            Event::CourseCompleted {} => self.status = Some(CourseStatus::Completed),
            Event::SectionAdded { section_id, position, .. } => {
                self.sections.push(Section { id: *section_id, position: *position })
            }
            Event::UserJoinedCourse { user_id } => {
                self.participants.insert(*user_id);
            }
            Event::UserLeftCourse { user_id } => {
                self.participants.remove(user_id);
            }
            Event::CourseCommented { .. } => self.comment_count += 1,
        }
    }

    /// Decides what `actor` issuing `command` produces. An empty vector means the command
    /// succeeds without changing anything (for example a title set to its current value).
    pub fn handle(&self, actor: Uuid, command: &Command) -> Result<Vec<Event>, DomainError> {
        let status = match (self.status, command) {
            (None, Command::CreateCourse { title, description, category, max_participants }) => {
                return Ok(vec![Event::CourseCreated {
                    instructor_id: actor,
                    title: title.clone(),
                    description: description.clone(),
                    category: category.clone(),
                    max_participants: *max_participants,
                }]);
            }
            (Some(_), Command::CreateCourse { .. }) => {
                return Err(DomainError::CourseAlreadyExists);
            }
            (None, _) => return Err(DomainError::CourseNotFound),
            (Some(status), _) => status,
        };
        match command {
            Command::CreateCourse { .. } => Err(DomainError::CourseAlreadyExists),
            Command::ChangeTitle { title } => {
                self.require_instructor(actor)?;
                self.require_not_completed(status)?;
                Ok(if *title == self.title {
                    vec![]
                } else {
                    vec![Event::CourseTitleChanged { title: title.clone() }]
                })
            }
            Command::ChangeDescription { description } => {
                self.require_instructor(actor)?;
                self.require_not_completed(status)?;
                Ok(if *description == self.description {
                    vec![]
                } else {
                    vec![Event::CourseDescriptionChanged { description: description.clone() }]
                })
            }
            Command::Present => {
                self.require_instructor(actor)?;
                transition(status, CourseStatus::Created, CourseStatus::Presenting)?;
                Ok(vec![Event::CoursePresented {}])
            }
            Command::Activate => {
                self.require_instructor(actor)?;
                transition(status, CourseStatus::Presenting, CourseStatus::Active)?;
                Ok(vec![Event::CourseActivated {}])
            }
            Command::Complete => {
                self.require_instructor(actor)?;
                transition(status, CourseStatus::Active, CourseStatus::Completed)?;
                Ok(vec![Event::CourseCompleted {}])
            }
            Command::AddSection { section_id, title, description, video_url } => {
                self.require_instructor(actor)?;
                self.require_not_completed(status)?;
                if self.sections.len() >= MAX_SECTIONS {
                    return Err(DomainError::SectionLimitReached { max: MAX_SECTIONS });
                }
                Ok(vec![Event::SectionAdded {
                    section_id: *section_id,
                    position: self.sections.len() as u32 + 1,
                    title: title.clone(),
                    description: description.clone(),
                    video_url: video_url.clone(),
                }])
            }
            Command::Join => {
                if !matches!(status, CourseStatus::Presenting | CourseStatus::Active) {
                    return Err(DomainError::NotOpenForEnrolment { status });
                }
                if actor == self.instructor_id {
                    return Err(DomainError::InstructorCannotJoin);
                }
                if self.participants.contains(&actor) {
                    return Err(DomainError::AlreadyParticipant);
                }
                if self.max_participants != 0
                    && self.participants.len() >= self.max_participants as usize
                {
                    return Err(DomainError::CourseFull { max: self.max_participants });
                }
                Ok(vec![Event::UserJoinedCourse { user_id: actor }])
            }
            Command::Leave => {
                if !self.participants.contains(&actor) {
                    return Err(DomainError::NotParticipant);
                }
                self.require_not_completed(status)?;
                Ok(vec![Event::UserLeftCourse { user_id: actor }])
            }
            Command::Comment { comment_id, text } => {
                if actor != self.instructor_id && !self.participants.contains(&actor) {
                    return Err(DomainError::NotParticipantOrInstructor);
                }
                if !matches!(status, CourseStatus::Active | CourseStatus::Completed) {
                    return Err(DomainError::NotOpenForComments { status });
                }
                Ok(vec![Event::CourseCommented {
                    comment_id: *comment_id,
                    author_id: actor,
                    text: text.clone(),
                }])
            }
        }
    }

    fn require_instructor(&self, actor: Uuid) -> Result<(), DomainError> {
        if actor == self.instructor_id { Ok(()) } else { Err(DomainError::NotInstructor) }
    }

    fn require_not_completed(&self, status: CourseStatus) -> Result<(), DomainError> {
        if status == CourseStatus::Completed { Err(DomainError::CourseCompleted) } else { Ok(()) }
    }
}

fn transition(
    from: CourseStatus,
    required: CourseStatus,
    to: CourseStatus,
) -> Result<(), DomainError> {
    if from == required {
        Ok(())
    } else {
        Err(DomainError::InvalidTransition { from, to, required })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn instructor() -> Uuid {
        Uuid::from_u128(1)
    }
    fn alice() -> Uuid {
        Uuid::from_u128(2)
    }
    fn bob() -> Uuid {
        Uuid::from_u128(3)
    }

    fn created(max_participants: u32) -> Event {
        Event::CourseCreated {
            instructor_id: instructor(),
            title: "Rust".into(),
            description: "Ownership and borrowing".into(),
            category: "Programming".into(),
            max_participants,
        }
    }

    /// given(events) -> when(actor, command) -> result
    fn given(events: &[Event]) -> Course {
        Course::from_events(events)
    }

    fn presenting() -> Vec<Event> {
        vec![created(0), Event::CoursePresented {}]
    }
    fn active() -> Vec<Event> {
        vec![created(0), Event::CoursePresented {}, Event::CourseActivated {}]
    }
    fn completed() -> Vec<Event> {
        let mut events = active();
        events.push(Event::CourseCompleted {});
        events
    }
    fn with(mut events: Vec<Event>, more: &[Event]) -> Vec<Event> {
        events.extend_from_slice(more);
        events
    }
    fn joined(user: Uuid) -> Event {
        Event::UserJoinedCourse { user_id: user }
    }
    fn add_section() -> Command {
        Command::AddSection {
            section_id: Uuid::from_u128(99),
            title: "Intro".into(),
            description: "".into(),
            video_url: "https://videos.example/intro".into(),
        }
    }
    fn comment() -> Command {
        Command::Comment { comment_id: Uuid::from_u128(77), text: "Great".into() }
    }

    #[test]
    fn a_snapshot_restores_the_same_course() {
        let course = given(&with(
            active(),
            &[joined(alice()), joined(bob()), Event::UserLeftCourse { user_id: bob() }],
        ));
        let restored = Course::from_snapshot(SNAPSHOT_SCHEMA, course.to_snapshot());
        assert_eq!(restored, Some(course));
    }

    #[test]
    fn a_snapshot_of_another_shape_is_ignored() {
        let course = given(&presenting());
        assert_eq!(Course::from_snapshot(SNAPSHOT_SCHEMA + 1, course.to_snapshot()), None);
        // Same schema number but a document that does not fit (an older shape, a bug).
        let foreign = serde_json::json!({ "version": 2, "state": "Presenting" });
        assert_eq!(Course::from_snapshot(SNAPSHOT_SCHEMA, foreign), None);
    }

    #[test]
    fn creating_a_course_makes_the_caller_its_instructor() {
        let cmd = Command::CreateCourse {
            title: "Rust".into(),
            description: "Ownership and borrowing".into(),
            category: "Programming".into(),
            max_participants: 0,
        };
        assert_eq!(given(&[]).handle(instructor(), &cmd), Ok(vec![created(0)]));
    }

    #[test]
    fn creating_an_existing_course_is_refused() {
        let cmd = Command::CreateCourse {
            title: "x".into(),
            description: "y".into(),
            category: "z".into(),
            max_participants: 0,
        };
        let err = given(&[created(0)]).handle(instructor(), &cmd).expect_err("refused");
        assert_eq!(err, DomainError::CourseAlreadyExists);
    }

    #[test]
    fn any_command_on_a_missing_course_is_not_found() {
        for cmd in [Command::Present, Command::Join, Command::Leave, comment(), add_section()] {
            let err = given(&[]).handle(alice(), &cmd).expect_err("refused");
            assert_eq!(err, DomainError::CourseNotFound);
            assert_eq!(err.kind(), ErrorKind::NotFound);
        }
    }

    #[test]
    fn the_instructor_changes_title_and_description() {
        let course = given(&[created(0)]);
        assert_eq!(
            course.handle(instructor(), &Command::ChangeTitle { title: "Rust 2".into() }),
            Ok(vec![Event::CourseTitleChanged { title: "Rust 2".into() }])
        );
        assert_eq!(
            course.handle(instructor(), &Command::ChangeDescription { description: "New".into() }),
            Ok(vec![Event::CourseDescriptionChanged { description: "New".into() }])
        );
    }

    #[test]
    fn setting_the_same_title_or_description_succeeds_with_no_event() {
        let course = given(&[created(0)]);
        assert_eq!(
            course.handle(instructor(), &Command::ChangeTitle { title: "Rust".into() }),
            Ok(vec![])
        );
        assert_eq!(
            course.handle(
                instructor(),
                &Command::ChangeDescription { description: "Ownership and borrowing".into() }
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn only_the_instructor_changes_the_course() {
        let course = given(&active());
        for cmd in [
            Command::ChangeTitle { title: "x".into() },
            Command::ChangeDescription { description: "x".into() },
            Command::Present,
            Command::Activate,
            Command::Complete,
            add_section(),
        ] {
            let err = course.handle(alice(), &cmd).expect_err("refused");
            assert_eq!(err, DomainError::NotInstructor, "{cmd:?}");
            assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        }
    }

    #[test]
    fn a_completed_course_refuses_title_description_and_sections() {
        let course = given(&completed());
        for cmd in [
            Command::ChangeTitle { title: "x".into() },
            Command::ChangeDescription { description: "x".into() },
            add_section(),
        ] {
            let err = course.handle(instructor(), &cmd).expect_err("refused");
            assert_eq!(err, DomainError::CourseCompleted, "{cmd:?}");
            assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
        }
    }

    #[test]
    fn the_lifecycle_moves_forward_one_step_at_a_time() {
        assert_eq!(
            given(&[created(0)]).handle(instructor(), &Command::Present),
            Ok(vec![Event::CoursePresented {}])
        );
        assert_eq!(
            given(&presenting()).handle(instructor(), &Command::Activate),
            Ok(vec![Event::CourseActivated {}])
        );
        assert_eq!(
            given(&active()).handle(instructor(), &Command::Complete),
            Ok(vec![Event::CourseCompleted {}])
        );
        let course = given(&completed());
        assert_eq!(course.status, Some(CourseStatus::Completed));
        assert_eq!(course.version, 4);
    }

    #[test]
    fn every_out_of_order_transition_is_refused() {
        let cases: Vec<(Vec<Event>, Command)> = vec![
            (vec![created(0)], Command::Activate),
            (vec![created(0)], Command::Complete),
            (presenting(), Command::Present),
            (presenting(), Command::Complete),
            (active(), Command::Present),
            (active(), Command::Activate),
            (completed(), Command::Present),
            (completed(), Command::Activate),
            (completed(), Command::Complete),
        ];
        for (events, cmd) in cases {
            let err = given(&events).handle(instructor(), &cmd).expect_err("refused");
            assert!(matches!(err, DomainError::InvalidTransition { .. }), "{cmd:?}: {err}");
            assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
        }
    }

    #[test]
    fn sections_get_consecutive_positions() {
        let course = given(&[created(0)]);
        let events = course.handle(instructor(), &add_section()).expect("allowed");
        assert!(matches!(events[..], [Event::SectionAdded { position: 1, .. }]));
        let course = given(&with(vec![created(0)], &events));
        let events = course.handle(instructor(), &add_section()).expect("allowed");
        assert!(matches!(events[..], [Event::SectionAdded { position: 2, .. }]));
    }

    #[test]
    fn the_hundred_and_first_section_is_refused() {
        let mut events = vec![created(0)];
        for i in 0..MAX_SECTIONS {
            events.push(Event::SectionAdded {
                section_id: Uuid::from_u128(1000 + i as u128),
                position: i as u32 + 1,
                title: "s".into(),
                description: "".into(),
                video_url: "https://v.example".into(),
            });
        }
        let err = given(&events).handle(instructor(), &add_section()).expect_err("refused");
        assert_eq!(err, DomainError::SectionLimitReached { max: MAX_SECTIONS });
    }

    #[test]
    fn users_join_presenting_and_active_courses() {
        for events in [presenting(), active()] {
            assert_eq!(given(&events).handle(alice(), &Command::Join), Ok(vec![joined(alice())]));
        }
    }

    #[test]
    fn joining_a_created_or_completed_course_is_refused() {
        for events in [vec![created(0)], completed()] {
            let err = given(&events).handle(alice(), &Command::Join).expect_err("refused");
            assert!(matches!(err, DomainError::NotOpenForEnrolment { .. }));
        }
    }

    #[test]
    fn the_instructor_cannot_join_their_own_course() {
        let err = given(&presenting()).handle(instructor(), &Command::Join).expect_err("refused");
        assert_eq!(err, DomainError::InstructorCannotJoin);
    }

    #[test]
    fn joining_twice_is_refused() {
        let err = given(&with(presenting(), &[joined(alice())]))
            .handle(alice(), &Command::Join)
            .expect_err("refused");
        assert_eq!(err, DomainError::AlreadyParticipant);
    }

    #[test]
    fn joining_a_full_course_is_refused() {
        let events = vec![created(1), Event::CoursePresented {}, joined(alice())];
        let err = given(&events).handle(bob(), &Command::Join).expect_err("refused");
        assert_eq!(err, DomainError::CourseFull { max: 1 });
    }

    #[test]
    fn a_seat_freed_by_leaving_can_be_taken() {
        let events = vec![
            created(1),
            Event::CoursePresented {},
            joined(alice()),
            Event::UserLeftCourse { user_id: alice() },
        ];
        assert_eq!(given(&events).handle(bob(), &Command::Join), Ok(vec![joined(bob())]));
    }

    #[test]
    fn a_participant_leaves() {
        assert_eq!(
            given(&with(active(), &[joined(alice())])).handle(alice(), &Command::Leave),
            Ok(vec![Event::UserLeftCourse { user_id: alice() }])
        );
    }

    #[test]
    fn leaving_without_being_a_participant_is_refused() {
        let err = given(&active()).handle(alice(), &Command::Leave).expect_err("refused");
        assert_eq!(err, DomainError::NotParticipant);
    }

    #[test]
    fn leaving_a_completed_course_is_refused() {
        let events = with(with(active(), &[joined(alice())]), &[Event::CourseCompleted {}]);
        let err = given(&events).handle(alice(), &Command::Leave).expect_err("refused");
        assert_eq!(err, DomainError::CourseCompleted);
    }

    #[test]
    fn participants_and_the_instructor_comment_on_active_and_completed_courses() {
        let base = with(active(), &[joined(alice())]);
        for events in [base.clone(), with(base, &[Event::CourseCompleted {}])] {
            let course = given(&events);
            for actor in [alice(), instructor()] {
                assert_eq!(
                    course.handle(actor, &comment()),
                    Ok(vec![Event::CourseCommented {
                        comment_id: Uuid::from_u128(77),
                        author_id: actor,
                        text: "Great".into()
                    }])
                );
            }
        }
    }

    #[test]
    fn outsiders_and_former_participants_cannot_comment() {
        let events = with(active(), &[joined(alice()), Event::UserLeftCourse { user_id: alice() }]);
        let course = given(&events);
        for actor in [alice(), bob()] {
            let err = course.handle(actor, &comment()).expect_err("refused");
            assert_eq!(err, DomainError::NotParticipantOrInstructor);
            assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        }
    }

    #[test]
    fn comments_on_a_course_that_is_not_yet_active_are_refused() {
        for events in [vec![created(0)], with(presenting(), &[joined(alice())])] {
            let err = given(&events).handle(instructor(), &comment()).expect_err("refused");
            assert!(matches!(err, DomainError::NotOpenForComments { .. }));
        }
    }

    #[test]
    fn applying_events_tracks_participants_and_comments() {
        let events = with(
            active(),
            &[
                joined(alice()),
                joined(bob()),
                Event::UserLeftCourse { user_id: alice() },
                Event::CourseCommented {
                    comment_id: Uuid::from_u128(5),
                    author_id: bob(),
                    text: "x".into(),
                },
            ],
        );
        let course = given(&events);
        assert_eq!(course.participants, HashSet::from([bob()]));
        assert_eq!(course.comment_count, 1);
        assert_eq!(course.version, 7);
    }
}
