use crate::CourseStatus;

/// How an edge should report a [`DomainError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The course does not exist.
    NotFound,
    /// The course already exists.
    AlreadyExists,
    /// The actor may not do this.
    PermissionDenied,
    /// A business rule refuses it in the course's current state.
    FailedPrecondition,
}

/// A business rule a command broke. The messages name the rule and are safe to show to callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The course does not exist.
    #[error("course not found")]
    CourseNotFound,
    /// CreateCourse on an existing id.
    #[error("course already exists")]
    CourseAlreadyExists,
    /// Only the instructor may do this.
    #[error("only the course's instructor may do this")]
    NotInstructor,
    /// Comments come from participants and the instructor.
    #[error("only current participants and the instructor may comment")]
    NotParticipantOrInstructor,
    /// Nothing changes a completed course but comments.
    #[error("the course is completed and can no longer be changed")]
    CourseCompleted,
    /// The lifecycle is Created -> Presenting -> Active -> Completed.
    #[error("a course can only move from {required} to {to}, but it is {from}")]
    InvalidTransition {
        /// Current status.
        from: CourseStatus,
        /// Status the command moves to.
        to: CourseStatus,
        /// Status the command needs.
        required: CourseStatus,
    },
    /// At most [`crate::MAX_SECTIONS`] sections.
    #[error("a course has at most {max} sections")]
    SectionLimitReached {
        /// The limit.
        max: usize,
    },
    /// Joining needs Presenting or Active.
    #[error("users can join only a presenting or active course, but it is {status}")]
    NotOpenForEnrolment {
        /// Current status.
        status: CourseStatus,
    },
    /// The instructor teaches, not attends.
    #[error("the instructor cannot join their own course")]
    InstructorCannotJoin,
    /// Joining twice.
    #[error("the user is already a participant")]
    AlreadyParticipant,
    /// Capacity reached.
    #[error("the course is full ({max} participants)")]
    CourseFull {
        /// The course's max_participants.
        max: u32,
    },
    /// Leaving without having joined.
    #[error("the user is not a participant")]
    NotParticipant,
    /// Comments need Active or Completed.
    #[error("comments are open only on active or completed courses, but it is {status}")]
    NotOpenForComments {
        /// Current status.
        status: CourseStatus,
    },
}

impl DomainError {
    /// The category an edge maps this error to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DomainError::CourseNotFound => ErrorKind::NotFound,
            DomainError::CourseAlreadyExists => ErrorKind::AlreadyExists,
            DomainError::NotInstructor | DomainError::NotParticipantOrInstructor => {
                ErrorKind::PermissionDenied
            }
            _ => ErrorKind::FailedPrecondition,
        }
    }
}
