use uuid::Uuid;

/// What a caller asks of a course. Text fields are already validated (see [`crate::validation`]);
/// ids the command creates (sections, comments) are chosen by the caller of [`crate::Course::handle`]
/// so that deciding stays deterministic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create the course; the actor becomes its instructor.
    CreateCourse {
        /// Validated title.
        title: String,
        /// Validated description.
        description: String,
        /// Validated category.
        category: String,
        /// 0 means no limit.
        max_participants: u32,
    },
    /// Change the title.
    ChangeTitle {
        /// Validated new title.
        title: String,
    },
    /// Change the description.
    ChangeDescription {
        /// Validated new description.
        description: String,
    },
    /// Created -> Presenting.
    Present,
    /// Presenting -> Active.
    Activate,
    /// Active -> Completed.
    Complete,
    /// Append a section.
    AddSection {
        /// Id the new section gets.
        section_id: Uuid,
        /// Validated title.
        title: String,
        /// Validated description (may be empty).
        description: String,
        /// Validated http(s) URL.
        video_url: String,
    },
    /// The actor joins.
    Join,
    /// The actor leaves.
    Leave,
    /// The actor comments.
    Comment {
        /// Id the new comment gets.
        comment_id: Uuid,
        /// Validated text.
        text: String,
    },
}

impl Command {
    /// Short name used in logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateCourse { .. } => "CreateCourse",
            Command::ChangeTitle { .. } => "ChangeCourseTitle",
            Command::ChangeDescription { .. } => "ChangeCourseDescription",
            Command::Present => "PresentCourse",
            Command::Activate => "ActivateCourse",
            Command::Complete => "CompleteCourse",
            Command::AddSection { .. } => "AddSection",
            Command::Join => "JoinCourse",
            Command::Leave => "LeaveCourse",
            Command::Comment { .. } => "CommentCourse",
        }
    }
}
