//! Input rules shared by every edge. Each function trims its input, counts characters (not
//! bytes), and returns the cleaned value or a message that names the rule.

use crate::MAX_PARTICIPANTS_LIMIT;

fn text(raw: &str, min: usize, max: usize) -> Result<String, String> {
    // NUL and other control characters (line breaks and tabs aside) are never text: PostgreSQL
    // refuses NUL, and the others hide in logs and displays.
    if raw.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err("must not contain control characters".to_owned());
    }
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    if chars < min || chars > max {
        return Err(if min == 0 {
            format!("must be at most {max} characters (got {chars})")
        } else if min == 1 && chars == 0 {
            format!("must not be empty (1-{max} characters)")
        } else {
            format!("must be {min}-{max} characters (got {chars})")
        });
    }
    Ok(trimmed.to_owned())
}

/// Course or section title: 1-200 characters.
pub fn title(raw: &str) -> Result<String, String> {
    text(raw, 1, 200)
}

/// Course description: 1-5000 characters.
pub fn description(raw: &str) -> Result<String, String> {
    text(raw, 1, 5000)
}

/// Section description: 0-5000 characters.
pub fn section_description(raw: &str) -> Result<String, String> {
    text(raw, 0, 5000)
}

/// Category: 1-100 characters.
pub fn category(raw: &str) -> Result<String, String> {
    text(raw, 1, 100)
}

/// Comment: 1-2000 characters.
pub fn comment(raw: &str) -> Result<String, String> {
    text(raw, 1, 2000)
}

/// 0 (no limit) to [`MAX_PARTICIPANTS_LIMIT`].
pub fn max_participants(raw: u32) -> Result<u32, String> {
    if raw > MAX_PARTICIPANTS_LIMIT {
        Err(format!("must be 0 (no limit) to {MAX_PARTICIPANTS_LIMIT} (got {raw})"))
    } else {
        Ok(raw)
    }
}

/// An absolute http or https URL with a host, at most 2000 characters.
pub fn video_url(raw: &str) -> Result<String, String> {
    let trimmed = text(raw, 1, 2000)?;
    let url =
        url::Url::parse(&trimmed).map_err(|e| format!("must be an absolute http(s) URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must use http or https, not {}", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    Ok(trimmed)
}

/// A UUID in its usual text form. The refusal quotes at most the first 40 characters of the
/// input (escaped), never a whole payload.
pub fn uuid(raw: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(raw.trim()).map_err(|_| {
        let shown: String = raw.chars().take(40).collect();
        let more = if raw.chars().nth(40).is_some() { "…" } else { "" };
        format!("must be a UUID (got {shown:?}{more})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_characters_after_trimming() {
        assert_eq!(title("  Rust  "), Ok("Rust".to_owned()));
        assert!(title(&"é".repeat(200)).is_ok(), "200 two-byte characters fit");
        assert!(title(&"é".repeat(201)).is_err());
        assert!(title("   ").is_err());
        assert!(description(&"x".repeat(5001)).is_err());
        assert!(category(&"x".repeat(101)).is_err());
        assert!(comment(&"x".repeat(2000)).is_ok());
        assert!(comment("").is_err());
        assert_eq!(section_description("  "), Ok(String::new()));
    }

    #[test]
    fn max_participants_is_bounded() {
        assert_eq!(max_participants(0), Ok(0));
        assert_eq!(max_participants(100_000), Ok(100_000));
        assert!(max_participants(100_001).is_err());
    }

    #[test]
    fn video_urls_must_be_absolute_http_or_https() {
        assert!(video_url("https://videos.example/a.mp4").is_ok());
        assert!(video_url("http://localhost:8080/v").is_ok());
        for bad in ["", "videos.example/a", "ftp://x/y", "javascript:alert(1)", "https://"] {
            assert!(video_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uuids_are_parsed_strictly() {
        assert!(uuid("0191d1c2-2f5e-7c39-9f7d-3c1b8a8e1a01").is_ok());
        assert!(uuid("not-a-uuid").is_err());
    }

    #[test]
    fn a_malformed_uuid_is_quoted_only_in_part() {
        let message = uuid(&format!("x{}", "secret".repeat(1000))).expect_err("refused");
        assert!(message.len() < 80, "{message}");
        assert!(uuid("abc").expect_err("refused").contains("\"abc\""));
    }

    #[test]
    fn nul_and_other_control_characters_are_refused_but_line_breaks_are_text() {
        assert!(title("a\0b").is_err());
        assert!(comment("hi\u{1b}[2J").is_err());
        assert!(category("x\u{7f}").is_err());
        assert!(description("line one\nline two\tend").is_ok());
        assert!(comment("two\r\nlines").is_ok());
    }
}
