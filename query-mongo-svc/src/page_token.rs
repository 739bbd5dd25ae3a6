//! Opaque page tokens: the sort key of the last item of a page, so the next page starts right
//! after it however the data changes meanwhile (stable cursor pagination, no offsets).

use crate::store::{CommentCursor, CourseCursor, EnrollmentCursor};

const COURSES: &str = "c1";
const COMMENTS: &str = "m1";
const PARTICIPANTS: &str = "p1";
const ENROLLMENTS: &str = "e1";

/// Why a page token is refused (safe to show the caller).
pub const INVALID: &str = "is not a page token from a previous response of this call";

fn encode(kind: &str, millis: i64, id: &str) -> String {
    format!("{kind}:{millis}:{id}").bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode<'a>(kind: &str, token: &'a str, buffer: &'a mut String) -> Option<(i64, &'a str)> {
    if !token.len().is_multiple_of(2) || token.len() > 512 {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    *buffer = String::from_utf8(bytes).ok()?;
    let mut parts = buffer.splitn(3, ':');
    if parts.next()? != kind {
        return None;
    }
    let millis = parts.next()?.parse().ok()?;
    let id = parts.next()?;
    uuid::Uuid::parse_str(id).ok()?;
    Some((millis, id))
}

/// The token that continues after `cursor`.
pub fn courses(cursor: &CourseCursor) -> String {
    encode(COURSES, cursor.created_at_millis, &cursor.course_id)
}

/// The token that continues after `cursor`.
pub fn comments(cursor: &CommentCursor) -> String {
    encode(COMMENTS, cursor.posted_at_millis, &cursor.comment_id)
}

/// `None` for the empty token (first page).
pub fn parse_courses(token: &str) -> Result<Option<CourseCursor>, String> {
    if token.is_empty() {
        return Ok(None);
    }
    let mut buffer = String::new();
    let (millis, id) = decode(COURSES, token, &mut buffer).ok_or_else(|| INVALID.to_owned())?;
    Ok(Some(CourseCursor { created_at_millis: millis, course_id: id.to_owned() }))
}

/// `None` for the empty token (first page).
pub fn parse_comments(token: &str) -> Result<Option<CommentCursor>, String> {
    if token.is_empty() {
        return Ok(None);
    }
    let mut buffer = String::new();
    let (millis, id) = decode(COMMENTS, token, &mut buffer).ok_or_else(|| INVALID.to_owned())?;
    Ok(Some(CommentCursor { posted_at_millis: millis, comment_id: id.to_owned() }))
}

/// The token that continues a course's participants after the join at `version`.
pub fn participants(course_id: &str, version: i64) -> String {
    encode(PARTICIPANTS, version, course_id)
}

/// The join version a page of `course_id`'s participants continues after (`0`: the first
/// page). A token of another course is refused.
pub fn parse_participants(token: &str, course_id: &str) -> Result<u64, String> {
    if token.is_empty() {
        return Ok(0);
    }
    let mut buffer = String::new();
    let (version, id) =
        decode(PARTICIPANTS, token, &mut buffer).ok_or_else(|| INVALID.to_owned())?;
    if !id.eq_ignore_ascii_case(course_id) {
        return Err("is a page token of another course".to_owned());
    }
    u64::try_from(version).map_err(|_| INVALID.to_owned())
}

/// The token that continues after `cursor`.
pub fn enrollments(cursor: &EnrollmentCursor) -> String {
    encode(ENROLLMENTS, cursor.joined_at_millis, &cursor.course_id)
}

/// `None` for the empty token (first page).
pub fn parse_enrollments(token: &str) -> Result<Option<EnrollmentCursor>, String> {
    if token.is_empty() {
        return Ok(None);
    }
    let mut buffer = String::new();
    let (millis, id) = decode(ENROLLMENTS, token, &mut buffer).ok_or_else(|| INVALID.to_owned())?;
    Ok(Some(EnrollmentCursor { joined_at_millis: millis, course_id: id.to_owned() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let cursor = CourseCursor {
            created_at_millis: 1_700_000_000_123,
            course_id: uuid::Uuid::now_v7().to_string(),
        };
        assert_eq!(parse_courses(&courses(&cursor)), Ok(Some(cursor)));
        let cursor =
            CommentCursor { posted_at_millis: -5, comment_id: uuid::Uuid::now_v7().to_string() };
        assert_eq!(parse_comments(&comments(&cursor)), Ok(Some(cursor)));
        assert_eq!(parse_courses(""), Ok(None));
        let course = uuid::Uuid::now_v7().to_string();
        assert_eq!(parse_participants(&participants(&course, 42), &course), Ok(42));
        assert_eq!(parse_participants("", &course), Ok(0));
        let cursor = EnrollmentCursor { joined_at_millis: 7, course_id: course.clone() };
        assert_eq!(parse_enrollments(&enrollments(&cursor)), Ok(Some(cursor)));
    }

    #[test]
    fn a_participants_token_is_for_its_own_course_only() {
        let course = uuid::Uuid::now_v7().to_string();
        let other = uuid::Uuid::now_v7().to_string();
        assert!(parse_participants(&participants(&course, 3), &other).is_err());
        assert!(parse_participants(&participants(&course, -3), &course).is_err());
        let enrollment =
            enrollments(&EnrollmentCursor { joined_at_millis: 1, course_id: course.clone() });
        assert!(parse_participants(&enrollment, &course).is_err());
        assert!(parse_enrollments(&participants(&course, 3)).is_err());
    }

    #[test]
    fn garbage_and_tokens_of_the_other_call_are_refused() {
        let comment = comments(&CommentCursor {
            posted_at_millis: 1,
            comment_id: uuid::Uuid::nil().to_string(),
        });
        assert!(parse_courses(&comment).is_err());
        for bad in ["zz", "abc", "6331", "63313a783a79", "😀😀"] {
            assert!(parse_courses(bad).is_err(), "{bad}");
        }
    }
}
