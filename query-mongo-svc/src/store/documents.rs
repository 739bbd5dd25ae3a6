//! The stored shape of the read model, and its conversions from the fold and to protobuf.
//!
//! Ids are UUID text and times BSON DateTimes (millisecond precision), so that documents read
//! well in a shell; the status is stored by its protobuf name (`COURSE_STATUS_ACTIVE`), which is
//! also the key `GetPlatformStats` reports.

use chrono::{DateTime, Utc};
use course_domain::CourseStatus;
use course_proto::v1;
use mongodb::bson::{self, Document, doc};
use projection::fold::{CommentView, CourseSummary, SectionView};
use serde::{Deserialize, Serialize};

use super::participants::ParticipantDoc;
use uuid::Uuid;

/// A course in `courses_g{n}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub title: String,
    pub description: String,
    pub category: String,
    /// Lower-cased category, for the exact case-insensitive category filter.
    pub category_key: String,
    pub status: String,
    pub instructor_id: String,
    pub max_participants: i64,
    pub section_count: i64,
    pub participant_count: i64,
    pub comment_count: i64,
    pub version: i64,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    /// Absent when projected out (summaries, search results).
    #[serde(default)]
    pub sections: Vec<SectionDoc>,
}

/// An element of `sections`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionDoc {
    pub section_id: String,
    pub position: i64,
    pub title: String,
    pub description: String,
    pub video_url: String,
    pub added_at: bson::DateTime,
}

/// A comment in `comments_g{n}`, keyed by its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommentDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub course_id: String,
    pub author_id: String,
    pub text: String,
    pub posted_at: bson::DateTime,
}

/// A stored document that does not read back as the read model wrote it.
#[derive(Debug, thiserror::Error)]
#[error("malformed read-model document: {0}")]
pub struct Malformed(pub String);

/// A BSON DateTime of `at` (millisecond precision).
pub fn bson_time(at: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(at.timestamp_millis())
}

pub fn chrono_time(at: bson::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or_default()
}

fn timestamp(at: bson::DateTime) -> prost_types::Timestamp {
    course_proto::timestamp(chrono_time(at))
}

pub fn status_name(status: CourseStatus) -> &'static str {
    v1::CourseStatus::from(status).as_str_name()
}

fn parse_status(name: &str) -> Result<CourseStatus, Malformed> {
    v1::CourseStatus::from_str_name(name)
        .and_then(|s| CourseStatus::try_from(s).ok())
        .ok_or_else(|| Malformed(format!("unknown status {name:?}")))
}

fn parse_uuid(raw: &str, field: &str) -> Result<Uuid, Malformed> {
    Uuid::parse_str(raw).map_err(|_| Malformed(format!("{field} is not a UUID: {raw:?}")))
}

fn count(value: i64, field: &str) -> Result<u32, Malformed> {
    u32::try_from(value).map_err(|_| Malformed(format!("{field} out of range: {value}")))
}

/// Lower-cased category key.
pub fn category_key(category: &str) -> String {
    category.to_lowercase()
}

/// The summary fields as a `$set` document (every field the fold owns, so a save writes the
/// whole summary).
pub fn summary_fields(summary: &CourseSummary) -> Document {
    doc! {
        "title": &summary.title,
        "description": &summary.description,
        "category": &summary.category,
        "category_key": category_key(&summary.category),
        "status": status_name(summary.status),
        "instructor_id": summary.instructor_id.to_string(),
        "max_participants": i64::from(summary.max_participants),
        "section_count": i64::from(summary.section_count),
        "participant_count": i64::from(summary.participant_count),
        "comment_count": i64::from(summary.comment_count),
        "version": version(summary.version),
        "created_at": bson_time(summary.created_at),
        "updated_at": bson_time(summary.updated_at),
    }
}

/// Versions are stored as Int64.
pub fn version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

impl CourseDoc {
    /// A new course document (no sections or participants yet).
    pub fn new(summary: &CourseSummary) -> Self {
        Self {
            id: summary.course_id.to_string(),
            title: summary.title.clone(),
            description: summary.description.clone(),
            category: summary.category.clone(),
            category_key: category_key(&summary.category),
            status: status_name(summary.status).to_owned(),
            instructor_id: summary.instructor_id.to_string(),
            max_participants: i64::from(summary.max_participants),
            section_count: i64::from(summary.section_count),
            participant_count: i64::from(summary.participant_count),
            comment_count: i64::from(summary.comment_count),
            version: version(summary.version),
            created_at: bson_time(summary.created_at),
            updated_at: bson_time(summary.updated_at),
            sections: Vec::new(),
        }
    }

    /// The fold's view of the stored course.
    pub fn summary(&self) -> Result<CourseSummary, Malformed> {
        Ok(CourseSummary {
            course_id: parse_uuid(&self.id, "_id")?,
            version: u64::try_from(self.version)
                .map_err(|_| Malformed(format!("negative version {}", self.version)))?,
            title: self.title.clone(),
            description: self.description.clone(),
            category: self.category.clone(),
            status: parse_status(&self.status)?,
            instructor_id: parse_uuid(&self.instructor_id, "instructor_id")?,
            max_participants: count(self.max_participants, "max_participants")?,
            section_count: count(self.section_count, "section_count")?,
            participant_count: count(self.participant_count, "participant_count")?,
            comment_count: count(self.comment_count, "comment_count")?,
            created_at: chrono_time(self.created_at),
            updated_at: chrono_time(self.updated_at),
        })
    }

    /// The protobuf form, with sections in position order and no participants (the caller
    /// adds a page of them, see [`participant_proto`]).
    pub fn into_proto(self) -> v1::CourseDetails {
        let status =
            v1::CourseStatus::from_str_name(&self.status).unwrap_or(v1::CourseStatus::Unspecified);
        let mut sections = self.sections;
        sections.sort_by_key(|s| s.position);
        v1::CourseDetails {
            course_id: self.id,
            title: self.title,
            description: self.description,
            category: self.category,
            status: status as i32,
            instructor_id: self.instructor_id,
            max_participants: u32::try_from(self.max_participants).unwrap_or_default(),
            sections: sections.into_iter().map(SectionDoc::into_proto).collect(),
            participants: Vec::new(),
            participants_next_page_token: String::new(),
            participant_count: u32::try_from(self.participant_count).unwrap_or_default(),
            comment_count: u32::try_from(self.comment_count).unwrap_or_default(),
            version: u64::try_from(self.version).unwrap_or_default(),
            created_at: Some(timestamp(self.created_at)),
            updated_at: Some(timestamp(self.updated_at)),
        }
    }
}

/// A stored participant in its protobuf form.
pub fn participant_proto(participant: ParticipantDoc) -> v1::CourseParticipant {
    v1::CourseParticipant {
        user_id: participant.user_id,
        joined_at: Some(timestamp(participant.joined_at)),
    }
}

impl SectionDoc {
    pub fn new(section: &SectionView) -> Self {
        Self {
            section_id: section.section_id.to_string(),
            position: i64::from(section.position),
            title: section.title.clone(),
            description: section.description.clone(),
            video_url: section.video_url.clone(),
            added_at: bson_time(section.added_at),
        }
    }

    fn into_proto(self) -> v1::Section {
        v1::Section {
            section_id: self.section_id,
            position: u32::try_from(self.position).unwrap_or_default(),
            title: self.title,
            description: self.description,
            video_url: self.video_url,
            added_at: Some(timestamp(self.added_at)),
        }
    }
}

impl CommentDoc {
    pub fn new(comment: &CommentView) -> Self {
        Self {
            id: comment.comment_id.to_string(),
            course_id: comment.course_id.to_string(),
            author_id: comment.author_id.to_string(),
            text: comment.text.clone(),
            posted_at: bson_time(comment.posted_at),
        }
    }

    pub fn into_proto(self) -> v1::Comment {
        v1::Comment {
            comment_id: self.id,
            course_id: self.course_id,
            author_id: self.author_id,
            text: self.text,
            posted_at: Some(timestamp(self.posted_at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> CourseSummary {
        let at = DateTime::from_timestamp(1_700_000_000, 123_000_000).expect("valid");
        CourseSummary {
            course_id: Uuid::now_v7(),
            version: 7,
            title: "Rust".into(),
            description: "Ownership".into(),
            category: "Programming".into(),
            status: CourseStatus::Active,
            instructor_id: Uuid::now_v7(),
            max_participants: 10,
            section_count: 2,
            participant_count: 3,
            comment_count: 4,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn a_course_document_gives_back_the_summary_it_was_made_from() {
        let summary = summary();
        assert_eq!(CourseDoc::new(&summary).summary().expect("reads back"), summary);
    }

    #[test]
    fn the_status_is_stored_under_its_protobuf_name() {
        let doc = CourseDoc::new(&summary());
        assert_eq!(doc.status, "COURSE_STATUS_ACTIVE");
        assert_eq!(doc.category_key, "programming");
        assert_eq!(summary_fields(&summary()).get_str("status"), Ok("COURSE_STATUS_ACTIVE"));
    }

    #[test]
    fn sections_come_out_in_position_order() {
        let mut doc = CourseDoc::new(&summary());
        let at = bson::DateTime::from_millis(0);
        for position in [2, 1, 3] {
            doc.sections.push(SectionDoc {
                section_id: Uuid::now_v7().to_string(),
                position,
                title: format!("S{position}"),
                description: String::new(),
                video_url: "https://v.example/1".into(),
                added_at: at,
            });
        }
        let positions: Vec<u32> = doc.into_proto().sections.iter().map(|s| s.position).collect();
        assert_eq!(positions, vec![1, 2, 3]);
    }

    #[test]
    fn a_stored_document_that_does_not_parse_is_reported_not_guessed() {
        let mut doc = CourseDoc::new(&summary());
        doc.status = "ARCHIVED".into();
        assert!(doc.summary().is_err());
    }
}
