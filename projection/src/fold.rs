//! The pure fold from events to a course's read-model summary. Both read models store the same
//! [`CourseSummary`]; what each stores besides it (indexes, sections, comments) is described by
//! the [`Change`] the fold returns.

use chrono::{DateTime, Utc};
use course_domain::{CourseStatus, Event};
use uuid::Uuid;

/// An event as the projections see it: the domain event plus where it sits.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Unique id.
    pub event_id: Uuid,
    /// The course.
    pub course_id: Uuid,
    /// Version of the course after this event.
    pub version: u64,
    /// Position in global order.
    pub global_position: u64,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The event.
    pub event: Event,
}

/// What both read models know of a course.
#[derive(Debug, Clone, PartialEq)]
pub struct CourseSummary {
    /// The course.
    pub course_id: Uuid,
    /// Version applied.
    pub version: u64,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Category.
    pub category: String,
    /// Status.
    pub status: CourseStatus,
    /// Instructor.
    pub instructor_id: Uuid,
    /// 0 means no limit.
    pub max_participants: u32,
    /// Sections so far.
    pub section_count: u32,
    /// Current participants.
    pub participant_count: u32,
    /// Comments so far.
    pub comment_count: u32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A section as read models show it.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionView {
    /// Id.
    pub section_id: Uuid,
    /// 1-based position.
    pub position: u32,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Video URL.
    pub video_url: String,
    /// When added.
    pub added_at: DateTime<Utc>,
}

/// A comment as read models show it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommentView {
    /// Id.
    pub comment_id: Uuid,
    /// Course.
    pub course_id: Uuid,
    /// Author.
    pub author_id: Uuid,
    /// Text.
    pub text: String,
    /// When posted.
    pub posted_at: DateTime<Utc>,
}

/// What an event changed besides the summary fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The course appeared.
    Created,
    /// Title or description changed.
    DetailsChanged,
    /// The status moved.
    StatusChanged {
        /// Old status.
        from: CourseStatus,
    },
    /// A section was added.
    SectionAdded(SectionView),
    /// A participant joined.
    ParticipantJoined {
        /// Who.
        user_id: Uuid,
        /// When.
        joined_at: DateTime<Utc>,
    },
    /// A participant left.
    ParticipantLeft {
        /// Who.
        user_id: Uuid,
    },
    /// A comment was posted.
    Commented(CommentView),
}

/// An event that does not fit the summary it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    /// Not the next version.
    #[error("course {course_id}: version {got} does not follow {have}")]
    NotNext {
        /// Course.
        course_id: Uuid,
        /// Version applied so far.
        have: u64,
        /// Version of the event.
        got: u64,
    },
    /// An event other than CourseCreated for a course the read model does not have.
    #[error("course {0}: {1} before CourseCreated")]
    NotCreated(Uuid, &'static str),
}

/// Applies `event` to `current` (None: the course is not in the read model yet).
pub fn apply(
    current: Option<&CourseSummary>,
    event: &StoredEvent,
) -> Result<(CourseSummary, Change), FoldError> {
    let have = current.map_or(0, |c| c.version);
    if event.version != have + 1 {
        return Err(FoldError::NotNext { course_id: event.course_id, have, got: event.version });
    }
    let at = event.occurred_at;
    let Some(current) = current else {
        return match &event.event {
            Event::CourseCreated {
                instructor_id,
                title,
                description,
                category,
                max_participants,
            } => Ok((
                CourseSummary {
                    course_id: event.course_id,
                    version: event.version,
                    title: title.clone(),
                    description: description.clone(),
                    category: category.clone(),
                    status: CourseStatus::Created,
                    instructor_id: *instructor_id,
                    max_participants: *max_participants,
                    section_count: 0,
                    participant_count: 0,
                    comment_count: 0,
                    created_at: at,
                    updated_at: at,
                },
                Change::Created,
            )),
            other => Err(FoldError::NotCreated(event.course_id, other.event_type())),
        };
    };
    let mut next = current.clone();
    next.version = event.version;
    next.updated_at = at;
    let change = match &event.event {
        Event::CourseCreated { .. } => {
            return Err(FoldError::NotNext {
                course_id: event.course_id,
                have,
                got: event.version,
            });
        }
        Event::CourseTitleChanged { title } => {
            next.title.clone_from(title);
            Change::DetailsChanged
        }
        Event::CourseDescriptionChanged { description } => {
            next.description.clone_from(description);
            Change::DetailsChanged
        }
        Event::CoursePresented {} => status(&mut next, CourseStatus::Presenting),
        Event::CourseActivated {} => status(&mut next, CourseStatus::Active),
        Event::CourseCompleted {} => status(&mut next, CourseStatus::Completed),
        Event::SectionAdded { section_id, position, title, description, video_url } => {
            next.section_count += 1;
            Change::SectionAdded(SectionView {
                section_id: *section_id,
                position: *position,
                title: title.clone(),
                description: description.clone(),
                video_url: video_url.clone(),
                added_at: at,
            })
        }
        Event::UserJoinedCourse { user_id } => {
            next.participant_count += 1;
            Change::ParticipantJoined { user_id: *user_id, joined_at: at }
        }
        Event::UserLeftCourse { user_id } => {
            next.participant_count = next.participant_count.saturating_sub(1);
            Change::ParticipantLeft { user_id: *user_id }
        }
        Event::CourseCommented { comment_id, author_id, text } => {
            next.comment_count += 1;
            Change::Commented(CommentView {
                comment_id: *comment_id,
                course_id: event.course_id,
                author_id: *author_id,
                text: text.clone(),
                posted_at: at,
            })
        }
    };
    Ok((next, change))
}

fn status(summary: &mut CourseSummary, to: CourseStatus) -> Change {
    let from = summary.status;
    summary.status = to;
    Change::StatusChanged { from }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + second, 0).expect("valid")
    }

    fn event(version: u64, event: Event) -> StoredEvent {
        StoredEvent {
            event_id: Uuid::now_v7(),
            course_id: Uuid::from_u128(42),
            version,
            global_position: version * 10,
            occurred_at: at(version as i64),
            event,
        }
    }

    fn created() -> CourseSummary {
        let e = event(
            1,
            Event::CourseCreated {
                instructor_id: Uuid::from_u128(1),
                title: "Rust".into(),
                description: "Ownership".into(),
                category: "Programming".into(),
                max_participants: 5,
            },
        );
        apply(None, &e).expect("created").0
    }

    #[test]
    fn course_created_starts_a_summary() {
        let summary = created();
        assert_eq!(summary.version, 1);
        assert_eq!(summary.status, CourseStatus::Created);
        assert_eq!((summary.title.as_str(), summary.category.as_str()), ("Rust", "Programming"));
        assert_eq!(summary.created_at, at(1));
        assert_eq!(summary.participant_count, 0);
    }

    #[test]
    fn title_and_description_changes_replace_the_text() {
        let (s, change) = apply(
            Some(&created()),
            &event(2, Event::CourseTitleChanged { title: "Rust 2".into() }),
        )
        .expect("applies");
        assert_eq!((s.title.as_str(), s.version, s.updated_at), ("Rust 2", 2, at(2)));
        assert_eq!(change, Change::DetailsChanged);
        let (s, _) = apply(
            Some(&s),
            &event(3, Event::CourseDescriptionChanged { description: "Borrowing".into() }),
        )
        .expect("applies");
        assert_eq!(s.description, "Borrowing");
    }

    #[test]
    fn status_events_move_the_status_and_say_from_where() {
        let (s, change) =
            apply(Some(&created()), &event(2, Event::CoursePresented {})).expect("ok");
        assert_eq!(
            (s.status, change),
            (CourseStatus::Presenting, Change::StatusChanged { from: CourseStatus::Created })
        );
        let (s, _) = apply(Some(&s), &event(3, Event::CourseActivated {})).expect("ok");
        assert_eq!(s.status, CourseStatus::Active);
        let (s, change) = apply(Some(&s), &event(4, Event::CourseCompleted {})).expect("ok");
        assert_eq!(
            (s.status, change),
            (CourseStatus::Completed, Change::StatusChanged { from: CourseStatus::Active })
        );
    }

    #[test]
    fn a_section_counts_and_carries_its_details() {
        let e = event(
            2,
            Event::SectionAdded {
                section_id: Uuid::from_u128(9),
                position: 1,
                title: "Intro".into(),
                description: "".into(),
                video_url: "https://v.example/1".into(),
            },
        );
        let (s, change) = apply(Some(&created()), &e).expect("ok");
        assert_eq!(s.section_count, 1);
        match change {
            Change::SectionAdded(section) => {
                assert_eq!((section.position, section.added_at), (1, at(2)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn joins_and_leaves_keep_the_participant_count() {
        let user = Uuid::from_u128(7);
        let (s, change) =
            apply(Some(&created()), &event(2, Event::UserJoinedCourse { user_id: user }))
                .expect("ok");
        assert_eq!(s.participant_count, 1);
        assert_eq!(change, Change::ParticipantJoined { user_id: user, joined_at: at(2) });
        let (s, change) =
            apply(Some(&s), &event(3, Event::UserLeftCourse { user_id: user })).expect("ok");
        assert_eq!(s.participant_count, 0);
        assert_eq!(change, Change::ParticipantLeft { user_id: user });
    }

    #[test]
    fn a_comment_counts_and_carries_its_text() {
        let e = event(
            2,
            Event::CourseCommented {
                comment_id: Uuid::from_u128(3),
                author_id: Uuid::from_u128(7),
                text: "Nice".into(),
            },
        );
        let (s, change) = apply(Some(&created()), &e).expect("ok");
        assert_eq!(s.comment_count, 1);
        assert!(matches!(change, Change::Commented(c) if c.text == "Nice" && c.posted_at == at(2)));
    }

    #[test]
    fn only_the_next_version_applies() {
        let summary = created();
        let err = apply(Some(&summary), &event(3, Event::CoursePresented {})).expect_err("gap");
        assert_eq!(err, FoldError::NotNext { course_id: Uuid::from_u128(42), have: 1, got: 3 });
        let err = apply(Some(&summary), &event(1, Event::CoursePresented {})).expect_err("old");
        assert!(matches!(err, FoldError::NotNext { .. }));
    }

    #[test]
    fn an_event_before_course_created_is_refused() {
        let err = apply(None, &event(1, Event::CoursePresented {})).expect_err("no course");
        assert!(matches!(err, FoldError::NotCreated(_, "CoursePresented")));
    }
}
