//! How the catalog stores a course summary (one Redis hash) and a membership (a sorted-set
//! member `{joined_ms}:{id}` that sorts by time), and a dead letter (one hash).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use course_domain::CourseStatus;
use projection::dead_letter::DeadLetter;
use projection::fold::CourseSummary;
use uuid::Uuid;

/// A participant or enrolment entry: `{joined_ms}:{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The other side's id (user for participants, course for enrolments).
    pub id: Uuid,
    /// When.
    pub joined_at: DateTime<Utc>,
}

pub(crate) fn member(joined_at: DateTime<Utc>, id: Uuid) -> String {
    format!("{:013}:{id}", joined_at.timestamp_millis().max(0))
}

impl Joined {
    /// Parses a zset member; `None` for anything else (a tampered page token, for example).
    pub fn parse(member: &str) -> Option<Joined> {
        let (ms, id) = member.split_once(':')?;
        if ms.len() != 13 {
            return None;
        }
        Some(Joined {
            id: Uuid::parse_str(id).ok()?,
            joined_at: DateTime::from_timestamp_millis(ms.parse().ok()?)?,
        })
    }

    /// The zset member again (page tokens).
    pub fn member(&self) -> String {
        member(self.joined_at, self.id)
    }
}

/// The statuses in the order the index script numbers them (1-4).
pub(crate) const STATUSES: [CourseStatus; 4] = [
    CourseStatus::Created,
    CourseStatus::Presenting,
    CourseStatus::Active,
    CourseStatus::Completed,
];

/// A status's number in [`STATUSES`], from 1.
pub(crate) fn status_number(status: CourseStatus) -> usize {
    STATUSES.iter().position(|s| *s == status).map_or(1, |i| i + 1)
}

pub(crate) fn status_name(status: CourseStatus) -> &'static str {
    match status {
        CourseStatus::Created => "Created",
        CourseStatus::Presenting => "Presenting",
        CourseStatus::Active => "Active",
        CourseStatus::Completed => "Completed",
    }
}

fn parse_status(raw: &str) -> Option<CourseStatus> {
    Some(match raw {
        "Created" => CourseStatus::Created,
        "Presenting" => CourseStatus::Presenting,
        "Active" => CourseStatus::Active,
        "Completed" => CourseStatus::Completed,
        _ => return None,
    })
}

pub(crate) fn summary_fields(s: &CourseSummary) -> Vec<(&'static str, String)> {
    vec![
        ("course_id", s.course_id.to_string()),
        ("version", s.version.to_string()),
        ("title", s.title.clone()),
        ("description", s.description.clone()),
        ("category", s.category.clone()),
        ("status", status_name(s.status).to_owned()),
        ("instructor_id", s.instructor_id.to_string()),
        ("max_participants", s.max_participants.to_string()),
        ("section_count", s.section_count.to_string()),
        ("participant_count", s.participant_count.to_string()),
        ("comment_count", s.comment_count.to_string()),
        ("created_at", s.created_at.timestamp_millis().to_string()),
        ("updated_at", s.updated_at.timestamp_millis().to_string()),
    ]
}

pub(crate) fn parse_summary(hash: &HashMap<String, String>) -> Option<CourseSummary> {
    let get = |field: &str| hash.get(field).map(String::as_str);
    let number = |field: &str| get(field)?.parse::<u64>().ok();
    let time = |field: &str| DateTime::from_timestamp_millis(get(field)?.parse().ok()?);
    Some(CourseSummary {
        course_id: Uuid::parse_str(get("course_id")?).ok()?,
        version: number("version")?,
        title: get("title")?.to_owned(),
        description: get("description")?.to_owned(),
        category: get("category")?.to_owned(),
        status: parse_status(get("status")?)?,
        instructor_id: Uuid::parse_str(get("instructor_id")?).ok()?,
        max_participants: number("max_participants")? as u32,
        section_count: number("section_count")? as u32,
        participant_count: number("participant_count")? as u32,
        comment_count: number("comment_count")? as u32,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
    })
}

pub(crate) fn parse_dead_letter(
    position: u64,
    hash: &HashMap<String, String>,
) -> Option<DeadLetter> {
    let get = |field: &str| hash.get(field).cloned().unwrap_or_default();
    Some(DeadLetter {
        position,
        event_id: get("event_id"),
        course_id: get("course_id"),
        version: get("version").parse().ok()?,
        reason: get("reason"),
        recorded_at: DateTime::from_timestamp_millis(get("recorded_at").parse().ok()?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_members_sort_by_time_and_round_trip() {
        let a = Joined {
            id: Uuid::now_v7(),
            joined_at: DateTime::from_timestamp_millis(5).expect("t"),
        };
        let b = Joined {
            id: Uuid::now_v7(),
            joined_at: DateTime::from_timestamp_millis(1_700_000_000_000).expect("t"),
        };
        assert!(a.member() < b.member());
        assert_eq!(Joined::parse(&a.member()), Some(a));
        assert_eq!(Joined::parse("nonsense"), None);
        assert_eq!(Joined::parse("12:not-a-uuid"), None);
    }
}
