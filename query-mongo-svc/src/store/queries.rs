//! The read side: documents, search, comments, enrolments and statistics of one generation.

use course_domain::CourseStatus;
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use projection::ReadModelError;
use serde::Deserialize;
use uuid::Uuid;

use std::collections::HashMap;

use super::documents::{CommentDoc, CourseDoc, category_key, status_name};
use super::participants::{JOINED, ParticipantDoc, participation_id};
use super::read_model::int;
use super::{MongoReadModel, classify};

/// Where a page of courses continues: after this (created_at, id) in newest-first order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseCursor {
    pub created_at_millis: i64,
    pub course_id: String,
}

/// Where a page of comments continues: after this (posted_at, id) in newest-first order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentCursor {
    pub posted_at_millis: i64,
    pub comment_id: String,
}

/// What SearchCourses asks for, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// Every word must appear in the title, description or category (case-insensitively).
    pub words: Vec<String>,
    pub status: Option<CourseStatus>,
    pub instructor_id: Option<Uuid>,
    /// Exact, case-insensitive.
    pub category: Option<String>,
}

/// A course a user is in.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrollment {
    pub course_id: String,
    pub title: String,
    pub status: String,
    pub joined_at: bson::DateTime,
}

/// Counts computed by the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformStats {
    pub total_courses: u64,
    /// Every status, in lifecycle order, with its count (zero included).
    pub by_status: Vec<(String, u64)>,
    /// Largest first, then by name.
    pub by_category: Vec<(String, u64)>,
    pub total_participants: u64,
    pub total_comments: u64,
}

/// Where a page of enrolments continues: after this (joined_at, course) in most recently
/// joined first order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentCursor {
    pub joined_at_millis: i64,
    pub course_id: String,
}

#[derive(Deserialize)]
struct TitleRow {
    #[serde(rename = "_id")]
    id: String,
    title: String,
    status: String,
}

/// `raw` as a regular expression that matches exactly that text: every ASCII punctuation
/// character is escaped (a backslash before a non-alphanumeric character is a literal in PCRE,
/// which MongoDB uses), so user input is never a pattern.
pub fn escape_regex(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() * 2);
    for c in raw.chars() {
        if c.is_ascii_punctuation() || c.is_ascii_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn contains_word(field: &str, word: &str) -> Document {
    doc! { field: { "$regex": escape_regex(word), "$options": "i" } }
}

/// Newest first: strictly after `(at, id)` in `(at desc, _id desc)` order.
fn after(field: &str, at_millis: i64, id: &str) -> Document {
    let at = bson::DateTime::from_millis(at_millis);
    doc! { "$or": [
        { field: { "$lt": at } },
        { field: at, "_id": { "$lt": id } },
    ] }
}

/// The MongoDB filter of a search.
pub fn search_filter(filter: &SearchFilter, cursor: Option<&CourseCursor>) -> Document {
    let mut all: Vec<Bson> = Vec::new();
    for word in &filter.words {
        all.push(Bson::Document(doc! { "$or": [
            contains_word("title", word),
            contains_word("description", word),
            contains_word("category", word),
        ] }));
    }
    if let Some(status) = filter.status {
        all.push(Bson::Document(doc! { "status": status_name(status) }));
    }
    if let Some(instructor) = filter.instructor_id {
        all.push(Bson::Document(doc! { "instructor_id": instructor.to_string() }));
    }
    if let Some(category) = &filter.category {
        all.push(Bson::Document(doc! { "category_key": category_key(category) }));
    }
    if let Some(cursor) = cursor {
        all.push(Bson::Document(after("created_at", cursor.created_at_millis, &cursor.course_id)));
    }
    if all.is_empty() {
        doc! {}
    } else {
        doc! { "$and": all }
    }
}

impl MongoReadModel {
    /// The course document (its participants are in `participants_g{n}`).
    pub async fn course(
        &self,
        generation: u32,
        course_id: Uuid,
    ) -> Result<Option<CourseDoc>, ReadModelError> {
        self.generation(generation)
            .courses
            .find_one(doc! { "_id": course_id.to_string() })
            // The array documents written before `participants_g{n}` had.
            .projection(doc! { "participants": 0 })
            .await
            .map_err(classify)
    }

    /// Up to `limit` courses matching `filter`, newest first, after `cursor`; without sections
    /// and participants.
    pub async fn search(
        &self,
        generation: u32,
        filter: &SearchFilter,
        cursor: Option<&CourseCursor>,
        limit: i64,
    ) -> Result<Vec<CourseDoc>, ReadModelError> {
        self.generation(generation)
            .courses
            .find(search_filter(filter, cursor))
            .sort(doc! { "created_at": -1, "_id": -1 })
            .limit(limit)
            // Counts only, whatever the size of the courses.
            .projection(doc! { "sections": 0, "participants": 0 })
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)
    }

    /// Up to `limit` comments of a course, newest first, after `cursor`.
    pub async fn comments(
        &self,
        generation: u32,
        course_id: Uuid,
        cursor: Option<&CommentCursor>,
        limit: i64,
    ) -> Result<Vec<CommentDoc>, ReadModelError> {
        let mut filter = doc! { "course_id": course_id.to_string() };
        if let Some(cursor) = cursor {
            filter.extend(after("posted_at", cursor.posted_at_millis, &cursor.comment_id));
        }
        self.generation(generation)
            .comments
            .find(filter)
            .sort(doc! { "posted_at": -1, "_id": -1 })
            .limit(limit)
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)
    }

    /// Up to `size` courses `user` is a participant of, most recently joined first, after
    /// `cursor`, and where the next page starts if there is one: a page of the user's
    /// participations, then the titles of those courses in one query.
    pub async fn enrollments(
        &self,
        generation: u32,
        user: Uuid,
        cursor: Option<&EnrollmentCursor>,
        size: usize,
    ) -> Result<(Vec<Enrollment>, Option<EnrollmentCursor>), ReadModelError> {
        let user = user.to_string();
        let mut all = vec![Bson::Document(doc! { "user_id": &user, "state": JOINED })];
        if let Some(cursor) = cursor {
            let id = participation_id(&cursor.course_id, &user);
            all.push(Bson::Document(after("joined_at", cursor.joined_at_millis, &id)));
        }
        let g = self.generation(generation);
        let mut page: Vec<ParticipantDoc> = g
            .participants
            .clone_with_type::<ParticipantDoc>()
            .find(doc! { "$and": all })
            .sort(doc! { "joined_at": -1, "_id": -1 })
            .limit(i64::try_from(size).unwrap_or(i64::MAX).saturating_add(1))
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        let next = if page.len() > size {
            page.truncate(size);
            page.last().map(|last| EnrollmentCursor {
                joined_at_millis: last.joined_at.timestamp_millis(),
                course_id: last.course_id.clone(),
            })
        } else {
            None
        };
        if page.is_empty() {
            return Ok((Vec::new(), next));
        }
        let ids: Vec<&str> = page.iter().map(|p| p.course_id.as_str()).collect();
        let titles: Vec<TitleRow> = g
            .courses
            .clone_with_type::<TitleRow>()
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! { "title": 1, "status": 1 })
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        let mut titles: HashMap<String, TitleRow> =
            titles.into_iter().map(|t| (t.id.clone(), t)).collect();
        // A participation is written just before its course's update: a course not there yet
        // is left out of this page rather than shown without a title.
        let enrollments = page
            .into_iter()
            .filter_map(|p| {
                let course = titles.remove(&p.course_id)?;
                Some(Enrollment {
                    course_id: course.id,
                    title: course.title,
                    status: course.status,
                    joined_at: p.joined_at,
                })
            })
            .collect();
        Ok((enrollments, next))
    }

    /// Counts by status and category, participants and comments, aggregated by MongoDB.
    pub async fn stats(&self, generation: u32) -> Result<PlatformStats, ReadModelError> {
        let g = self.generation(generation);
        let courses = g.courses.clone_with_type::<Document>();
        let by_status: Vec<Document> = courses
            .aggregate([doc! { "$group": {
                "_id": "$status",
                "count": { "$sum": 1 },
                "participants": { "$sum": "$participant_count" },
            } }])
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        let by_category: Vec<Document> = courses
            .aggregate([
                doc! { "$group": { "_id": "$category", "count": { "$sum": 1 } } },
                doc! { "$sort": { "count": -1, "_id": 1 } },
            ])
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        let total_comments = g.comments.count_documents(doc! {}).await.map_err(classify)?;

        let mut stats = PlatformStats { total_comments, ..Default::default() };
        for status in [
            CourseStatus::Created,
            CourseStatus::Presenting,
            CourseStatus::Active,
            CourseStatus::Completed,
        ] {
            let name = status_name(status);
            let group = by_status.iter().find(|d| d.get_str("_id") == Ok(name));
            let count = int(group.and_then(|d| d.get("count")));
            stats.total_courses += count;
            stats.total_participants += int(group.and_then(|d| d.get("participants")));
            stats.by_status.push((name.to_owned(), count));
        }
        stats.by_category = by_category
            .iter()
            .filter_map(|d| Some((d.get_str("_id").ok()?.to_owned(), int(d.get("count")))))
            .collect();
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_metacharacters_are_escaped_and_words_kept() {
        assert_eq!(escape_regex(".*"), r"\.\*");
        assert_eq!(escape_regex("("), r"\(");
        assert_eq!(escape_regex("C++"), r"C\+\+");
        assert_eq!(escape_regex("a|b$^[x]{2}\\"), r"a\|b\$\^\[x\]\{2\}\\");
        assert_eq!(escape_regex("Straße"), "Straße");
    }

    #[test]
    fn every_word_must_match_one_of_the_text_fields() {
        let filter = SearchFilter { words: vec!["rust".into(), ".*".into()], ..Default::default() };
        let built = search_filter(&filter, None);
        let all = built.get_array("$and").expect("$and");
        assert_eq!(all.len(), 2);
        let second = all[1].as_document().expect("doc").get_array("$or").expect("$or");
        let title = second[0].as_document().expect("doc").get_document("title").expect("title");
        assert_eq!(title.get_str("$regex"), Ok(r"\.\*"));
        assert_eq!(title.get_str("$options"), Ok("i"));
    }

    #[test]
    fn an_operator_looking_query_is_only_ever_a_regex_of_its_text() {
        let filter = SearchFilter { words: vec![r#"{"$ne":null}"#.into()], ..Default::default() };
        let built = search_filter(&filter, None);
        let word = built.get_array("$and").expect("$and")[0].as_document().expect("doc").clone();
        let title = word.get_array("$or").expect("$or")[0].as_document().expect("doc").clone();
        let regex = title.get_document("title").expect("title").get_str("$regex").expect("regex");
        assert_eq!(regex, r#"\{\"\$ne\"\:null\}"#);
    }

    #[test]
    fn no_words_and_no_filters_match_everything() {
        assert_eq!(search_filter(&SearchFilter::default(), None), doc! {});
    }

    #[test]
    fn filters_and_the_cursor_are_all_required() {
        let filter = SearchFilter {
            words: vec![],
            status: Some(CourseStatus::Active),
            instructor_id: Some(Uuid::nil()),
            category: Some("Programming".into()),
        };
        let cursor = CourseCursor { created_at_millis: 5, course_id: "b".into() };
        let built = search_filter(&filter, Some(&cursor));
        let all = built.get_array("$and").expect("$and");
        assert_eq!(all.len(), 4);
        assert_eq!(
            all[2].as_document().and_then(|d| d.get_str("category_key").ok()),
            Some("programming")
        );
    }
}
