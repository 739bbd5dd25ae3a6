//! Opaque page tokens: the sort key of the last item of a page, so the next page starts right
//! after it however the data changes meanwhile (stable cursor pagination, no offsets).

use crate::store::{CommentCursor, CourseCursor};

const COURSES: &str = "c1";
const COMMENTS: &str = "m1";

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
