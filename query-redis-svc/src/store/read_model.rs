//! The projection's `ReadModel` on Redis: generations, guarded saves, the applied watermark.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::DateTime;
use fred::prelude::{
    ClientLike, HashesInterface, KeysInterface, SortedSetsInterface, TransactionInterface,
};
use fred::types::{ClusterHash, CustomCommand};
use futures::StreamExt;
use projection::audit::AuditView;
use projection::dead_letter::DeadLetter;
use projection::fold::{Change, CourseSummary};
use projection::lease::RebuildLease;
use projection::{CourseWrite, Generations, ReadModel, ReadModelError, Saved};
use uuid::Uuid;

use super::records::{Joined, parse_dead_letter, parse_summary};
use super::{RedisReadModel, classify};

#[async_trait]
impl ReadModel for RedisReadModel {
    async fn generations(&self) -> Result<Generations, ReadModelError> {
        let hash: HashMap<String, u32> =
            self.client.hgetall(self.generations_key()).await.map_err(classify)?;
        Ok(Generations {
            active: hash.get("active").copied().unwrap_or(0),
            building: hash.get("building").copied().filter(|b| *b != 0),
        })
    }

    async fn swap_generations(
        &self,
        expected: Generations,
        new: Generations,
    ) -> Result<bool, ReadModelError> {
        let args = vec![
            expected.active.to_string(),
            expected.building.unwrap_or(0).to_string(),
            new.active.to_string(),
            new.building.unwrap_or(0).to_string(),
        ];
        let swapped: i64 = self
            .swap
            .evalsha_with_reload(&self.client, vec![self.generations_key()], args)
            .await
            .map_err(classify)?;
        Ok(swapped == 1)
    }

    /// Every key of the generation, found by scanning each primary (every node of a cluster).
    async fn drop_generation(&self, generation: u32) -> Result<(), ReadModelError> {
        let pattern = self.generation_pattern(generation);
        let keys = if self.client.is_clustered() {
            self.client.scan_cluster_buffered(pattern, Some(10_000), None).boxed()
        } else {
            self.client.scan_buffered(pattern, Some(10_000), None).boxed()
        };
        let mut chunks = keys.chunks(10_000);
        while let Some(chunk) = chunks.next().await {
            let keys = chunk.into_iter().collect::<Result<Vec<_>, _>>().map_err(classify)?;
            // One UNLINK per key: keys of a generation live in many hash slots.
            let pipeline = self.client.pipeline();
            for key in keys {
                let _: () = pipeline.unlink(key).await.map_err(classify)?;
            }
            let _: Vec<i64> = pipeline.all().await.map_err(classify)?;
        }
        Ok(())
    }

    async fn summary(
        &self,
        generation: u32,
        course_id: Uuid,
    ) -> Result<Option<CourseSummary>, ReadModelError> {
        let hash: HashMap<String, String> =
            self.client.hgetall(self.course_key(generation, course_id)).await.map_err(classify)?;
        if hash.is_empty() {
            return Ok(None);
        }
        parse_summary(&hash).map(Some).ok_or_else(|| {
            ReadModelError::Unexpected(anyhow::anyhow!(
                "course {course_id}: malformed summary hash"
            ))
        })
    }

    async fn save(
        &self,
        generation: u32,
        before_version: u64,
        after: &CourseSummary,
        change: &Change,
    ) -> Result<Saved, ReadModelError> {
        let write = CourseWrite { before_version, steps: vec![(after.clone(), change.clone())] };
        let saved = self.save_batch(generation, std::slice::from_ref(&write)).await?;
        Ok(saved.into_iter().next().unwrap_or(Saved::Conflict))
    }

    async fn mark_applied(&self, generation: u32, position: u64) -> Result<u64, ReadModelError> {
        let watermark: u64 = self
            .mark
            .evalsha_with_reload(
                &self.client,
                vec![self.meta_key(generation, "applied"), self.meta_key(generation, "watermark")],
                vec![position.to_string()],
            )
            .await
            .map_err(classify)?;
        Ok(watermark)
    }

    async fn watermark(&self, generation: u32) -> Result<u64, ReadModelError> {
        let value: Option<u64> =
            self.client.get(self.meta_key(generation, "watermark")).await.map_err(classify)?;
        Ok(value.unwrap_or(0))
    }

    async fn summaries_of(
        &self,
        generation: u32,
        courses: &[Uuid],
    ) -> Result<Vec<Option<CourseSummary>>, ReadModelError> {
        if courses.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = self.client.pipeline();
        for course in courses {
            let _: () =
                pipeline.hgetall(self.course_key(generation, *course)).await.map_err(classify)?;
        }
        let hashes: Vec<HashMap<String, String>> = pipeline.all().await.map_err(classify)?;
        courses
            .iter()
            .zip(&hashes)
            .map(|(course, hash)| {
                if hash.is_empty() {
                    return Ok(None);
                }
                parse_summary(hash).map(Some).ok_or_else(|| {
                    ReadModelError::Unexpected(anyhow::anyhow!(
                        "course {course}: malformed summary hash"
                    ))
                })
            })
            .collect()
    }

    /// The enrolment and index entries of every course first, then the courses themselves
    /// (see the module documentation for why in this order).
    async fn save_batch(
        &self,
        generation: u32,
        writes: &[CourseWrite],
    ) -> Result<Vec<Saved>, ReadModelError> {
        let mut secondary = Vec::new();
        let mut courses = Vec::with_capacity(writes.len());
        for write in writes {
            let plan = self.plan(generation, write).ok_or_else(|| {
                ReadModelError::Unexpected(anyhow::anyhow!("a course write without steps"))
            })?;
            secondary.extend(plan.secondary);
            courses.push(plan.course);
        }
        if !secondary.is_empty() {
            self.eval_pipelined(secondary).await?;
        }
        let applied = self.eval_pipelined(courses).await?;
        Ok(applied
            .into_iter()
            .map(|a| if a == 1 { Saved::Applied } else { Saved::Conflict })
            .collect())
    }

    async fn mark_applied_batch(
        &self,
        generation: u32,
        positions: &[u64],
    ) -> Result<u64, ReadModelError> {
        let mut sorted = positions.to_vec();
        sorted.sort_unstable();
        let watermark: u64 = self
            .mark_batch
            .evalsha_with_reload(
                &self.client,
                vec![self.meta_key(generation, "applied"), self.meta_key(generation, "watermark")],
                sorted.iter().map(u64::to_string).collect::<Vec<_>>(),
            )
            .await
            .map_err(classify)?;
        Ok(watermark)
    }

    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), ReadModelError> {
        let fields: Vec<(&str, String)> = vec![
            ("event_id", letter.event_id.clone()),
            ("course_id", letter.course_id.clone()),
            ("version", letter.version.to_string()),
            ("reason", letter.reason.clone()),
            ("recorded_at", letter.recorded_at.timestamp_millis().to_string()),
        ];
        let transaction = self.client.multi();
        let _: () = transaction
            .hset(self.dead_letter_key(letter.position), fields)
            .await
            .map_err(classify)?;
        let _: () = transaction
            .zadd(
                self.dead_letters_key(),
                None,
                None,
                false,
                false,
                (letter.position as f64, letter.position.to_string()),
            )
            .await
            .map_err(classify)?;
        let _: () = transaction.exec(true).await.map_err(classify)?;
        Ok(())
    }

    async fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, ReadModelError> {
        let positions: Vec<String> = self
            .client
            .custom(
                CustomCommand::new("ZRANGE", ClusterHash::FirstKey, false),
                vec![
                    self.dead_letters_key(),
                    format!("({after}"),
                    "+inf".to_owned(),
                    "BYSCORE".to_owned(),
                    "LIMIT".to_owned(),
                    "0".to_owned(),
                    limit.to_string(),
                ],
            )
            .await
            .map_err(classify)?;
        let positions: Vec<u64> = positions.iter().filter_map(|p| p.parse().ok()).collect();
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = self.client.pipeline();
        for position in &positions {
            let _: () =
                pipeline.hgetall(self.dead_letter_key(*position)).await.map_err(classify)?;
        }
        let hashes: Vec<HashMap<String, String>> = pipeline.all().await.map_err(classify)?;
        positions
            .iter()
            .zip(&hashes)
            .map(|(position, hash)| {
                parse_dead_letter(*position, hash).ok_or_else(|| {
                    ReadModelError::Unexpected(anyhow::anyhow!(
                        "dead letter {position}: malformed hash"
                    ))
                })
            })
            .collect()
    }

    async fn dead_letter_count(&self) -> Result<u64, ReadModelError> {
        self.client.zcard(self.dead_letters_key()).await.map_err(classify)
    }

    async fn remove_dead_letter(&self, position: u64) -> Result<(), ReadModelError> {
        let transaction = self.client.multi();
        let _: () = transaction
            .zrem(self.dead_letters_key(), position.to_string())
            .await
            .map_err(classify)?;
        let _: () = transaction.del(self.dead_letter_key(position)).await.map_err(classify)?;
        let _: () = transaction.exec(true).await.map_err(classify)?;
        Ok(())
    }

    async fn put_rebuild_lease(
        &self,
        generation: u32,
        lease: &RebuildLease,
    ) -> Result<(), ReadModelError> {
        let fields: Vec<(&str, String)> = vec![
            ("owner", lease.owner.clone()),
            ("expires_at", lease.expires_at.timestamp_millis().to_string()),
        ];
        self.client.hset(self.lease_key(generation), fields).await.map_err(classify)
    }

    async fn rebuild_lease(&self, generation: u32) -> Result<Option<RebuildLease>, ReadModelError> {
        let hash: HashMap<String, String> =
            self.client.hgetall(self.lease_key(generation)).await.map_err(classify)?;
        if hash.is_empty() {
            return Ok(None);
        }
        let expires_at = hash
            .get("expires_at")
            .and_then(|ms| ms.parse().ok())
            .and_then(DateTime::from_timestamp_millis)
            // Unreadable: treated as expired.
            .unwrap_or(DateTime::UNIX_EPOCH);
        Ok(Some(RebuildLease { owner: hash.get("owner").cloned().unwrap_or_default(), expires_at }))
    }

    /// The summary, the participant set, and which users' own enrolment index lists the
    /// course (of the users the store names and the stored participants).
    async fn audit_view(
        &self,
        generation: u32,
        course_id: Uuid,
        users: &BTreeSet<Uuid>,
    ) -> Result<Option<AuditView>, ReadModelError> {
        let participants_key = format!("{}:participants", self.course_key(generation, course_id));
        let (summary, members) = tokio::try_join!(
            self.summary(generation, course_id),
            self.all_members(&participants_key),
        )?;
        let Some(summary) = summary else { return Ok(None) };
        let participants: BTreeSet<Uuid> =
            members.iter().filter_map(|m| Joined::parse(m)).map(|j| j.id).collect();
        let candidates: Vec<Uuid> = users.union(&participants).copied().collect();
        let mut enrolled = BTreeSet::new();
        if !candidates.is_empty() {
            let pipeline = self.client.pipeline();
            for user in &candidates {
                let _: () = pipeline
                    .hexists(self.user_key(generation, *user, "joined"), course_id.to_string())
                    .await
                    .map_err(classify)?;
            }
            let listed: Vec<bool> = pipeline.all().await.map_err(classify)?;
            enrolled.extend(candidates.iter().zip(listed).filter(|(_, l)| *l).map(|(u, _)| *u));
        }
        Ok(Some(AuditView {
            summary,
            participants: Some(participants),
            sections: None,
            comments: None,
            enrolled: Some(enrolled),
        }))
    }

    /// The ids in the `idx:all` index.
    async fn audit_course_ids(&self, generation: u32) -> Result<Option<Vec<Uuid>>, ReadModelError> {
        let ids = self.all_members(&self.meta_key(generation, "idx:all")).await?;
        Ok(Some(ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect()))
    }
}
