//! The catalog's reads: summaries, the course indexes, participants and enrolments.

use course_domain::CourseStatus;
use fred::prelude::{ClientLike, SortedSetsInterface};
use fred::types::{ClusterHash, CustomCommand};
use projection::fold::CourseSummary;
use projection::{ReadModel, ReadModelError};
use uuid::Uuid;

use super::records::{Joined, status_name};
use super::{RedisReadModel, classify};

impl RedisReadModel {
    async fn zrange_lex(
        &self,
        key: &str,
        after: Option<&str>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<String>, ReadModelError> {
        let (start, end) = match (after, reverse) {
            (Some(after), true) => (format!("({after}"), "-".to_owned()),
            (None, true) => ("+".to_owned(), "-".to_owned()),
            (Some(after), false) => (format!("({after}"), "+".to_owned()),
            (None, false) => ("-".to_owned(), "+".to_owned()),
        };
        let mut args = vec![key.to_owned(), start, end, "BYLEX".to_owned()];
        if reverse {
            args.push("REV".to_owned());
        }
        args.extend(["LIMIT".to_owned(), "0".to_owned(), limit.to_string()]);
        self.client
            .custom(CustomCommand::new("ZRANGE", ClusterHash::FirstKey, false), args)
            .await
            .map_err(classify)
    }

    /// Every member of a zset, in order.
    pub(crate) async fn all_members(&self, key: &str) -> Result<Vec<String>, ReadModelError> {
        self.client
            .custom(
                CustomCommand::new("ZRANGE", ClusterHash::FirstKey, false),
                vec![key.to_owned(), "0".to_owned(), "-1".to_owned()],
            )
            .await
            .map_err(classify)
    }

    /// Summaries of `courses` in `generation`, in the given order (missing ones skipped).
    pub async fn summaries(
        &self,
        generation: u32,
        courses: &[Uuid],
    ) -> Result<Vec<CourseSummary>, ReadModelError> {
        Ok(self.summaries_of(generation, courses).await?.into_iter().flatten().collect())
    }

    /// Course ids newest first from the chosen index, after `after`.
    pub async fn list_courses(
        &self,
        generation: u32,
        status: Option<CourseStatus>,
        instructor: Option<Uuid>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<CourseSummary>, ReadModelError> {
        let index = match (instructor, status) {
            (Some(instructor), _) => {
                self.meta_key(generation, &format!("idx:instructor:{instructor}"))
            }
            (None, Some(status)) => {
                self.meta_key(generation, &format!("idx:status:{}", status_name(status)))
            }
            (None, None) => self.meta_key(generation, "idx:all"),
        };
        let mut out = Vec::with_capacity(limit);
        let mut cursor = after.map(|a| a.to_string());
        // With both filters the instructor index is read and filtered by status.
        loop {
            let ids = self.zrange_lex(&index, cursor.as_deref(), true, limit).await?;
            let exhausted = ids.len() < limit;
            cursor = ids.last().cloned();
            let ids: Vec<Uuid> = ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect();
            for summary in self.summaries(generation, &ids).await? {
                if status.is_none_or(|s| s == summary.status) && out.len() < limit {
                    out.push(summary);
                }
            }
            if exhausted || out.len() >= limit {
                return Ok(out);
            }
        }
    }

    /// The most popular courses.
    pub async fn popular(
        &self,
        generation: u32,
        status: Option<CourseStatus>,
        limit: usize,
    ) -> Result<Vec<CourseSummary>, ReadModelError> {
        let index = match status {
            Some(status) => {
                self.meta_key(generation, &format!("idx:popular:{}", status_name(status)))
            }
            None => self.meta_key(generation, "idx:popular"),
        };
        let ids: Vec<String> =
            self.client.zrevrange(index, 0, limit as i64 - 1, false).await.map_err(classify)?;
        let ids: Vec<Uuid> = ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect();
        self.summaries(generation, &ids).await
    }

    /// A course's participants in join order, after the `after` member.
    pub async fn participants(
        &self,
        generation: u32,
        course: Uuid,
        after: Option<&Joined>,
        limit: usize,
    ) -> Result<Vec<Joined>, ReadModelError> {
        let key = format!("{}:participants", self.course_key(generation, course));
        let after = after.map(Joined::member);
        let members = self.zrange_lex(&key, after.as_deref(), false, limit).await?;
        Ok(members.iter().filter_map(|m| Joined::parse(m)).collect())
    }

    /// A user's enrolments, most recent first, after the `after` member.
    pub async fn enrolments(
        &self,
        generation: u32,
        user: Uuid,
        after: Option<&Joined>,
        limit: usize,
    ) -> Result<Vec<Joined>, ReadModelError> {
        let key = self.user_key(generation, user, "courses");
        let after = after.map(Joined::member);
        let members = self.zrange_lex(&key, after.as_deref(), true, limit).await?;
        Ok(members.iter().filter_map(|m| Joined::parse(m)).collect())
    }
}
