//! [`ReadModel`] on MongoDB: version-guarded single-document writes, a compare-and-set
//! watermark, and generations as sets of collections.

use std::collections::BTreeSet;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use projection::audit::{AuditSection, AuditView};
use projection::dead_letter::DeadLetter;
use projection::fold::{Change, CourseSummary};
use projection::lease::RebuildLease;
use projection::{CourseWrite, Generations, ReadModel, ReadModelError, Saved};
use uuid::Uuid;

use super::documents::{CommentDoc, CourseDoc, SectionDoc, summary_fields, version};
use super::participants::Participation;
use super::{GENERATIONS_ID, MongoReadModel, classify, is_duplicate_key};

/// Applied positions read per step when advancing a watermark.
const ADVANCE_BATCH: i64 = 512;

/// Collection of dead letters: `{_id: position, event_id, course_id, version, reason,
/// recorded_at}` (time in milliseconds).
const DEAD_LETTERS: &str = "dead_letters";

fn lease_id(generation: u32) -> String {
    format!("lease_g{generation}")
}

fn dead_letter_of(doc: &Document) -> DeadLetter {
    let text = |field: &str| doc.get_str(field).unwrap_or_default().to_owned();
    let millis = doc.get_i64("recorded_at").unwrap_or_default();
    DeadLetter {
        position: int(doc.get("_id")),
        event_id: text("event_id"),
        course_id: text("course_id"),
        version: int(doc.get("version")),
        reason: text("reason"),
        recorded_at: chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default(),
    }
}

fn watermark_id(generation: u32) -> String {
    format!("watermark_g{generation}")
}

/// An integer field, whichever BSON width the server returned it in.
pub(crate) fn int(value: Option<&Bson>) -> u64 {
    match value {
        Some(Bson::Int32(v)) => u64::try_from(*v).unwrap_or_default(),
        Some(Bson::Int64(v)) => u64::try_from(*v).unwrap_or_default(),
        Some(Bson::Double(v)) if *v >= 0.0 => *v as u64,
        _ => 0,
    }
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unexpected(err: impl std::fmt::Display) -> ReadModelError {
    ReadModelError::Unexpected(anyhow::anyhow!("{err}"))
}

impl MongoReadModel {
    /// Compare-and-set of a generation's watermark from `from` to `to`.
    async fn advance_watermark(
        &self,
        generation: u32,
        from: u64,
        to: u64,
    ) -> Result<bool, ReadModelError> {
        let state = self.state();
        let filter = doc! { "_id": watermark_id(generation), "position": as_i64(from) };
        let update = doc! { "$set": { "position": as_i64(to) } };
        if from == 0 {
            // The first advance creates the document; a concurrent first advance loses on the
            // unique `_id`.
            return match state.update_one(filter, update).upsert(true).await {
                Ok(result) => Ok(result.matched_count == 1 || result.upserted_id.is_some()),
                Err(err) if is_duplicate_key(&err) => Ok(false),
                Err(err) => Err(classify(err)),
            };
        }
        let result = state.update_one(filter, update).await.map_err(classify)?;
        Ok(result.matched_count == 1)
    }
}

#[async_trait]
impl ReadModel for MongoReadModel {
    async fn generations(&self) -> Result<Generations, ReadModelError> {
        let state =
            self.state().find_one(doc! { "_id": GENERATIONS_ID }).await.map_err(classify)?;
        Ok(state.map_or_else(Generations::default, |doc| {
            let building = u32::try_from(int(doc.get("building"))).unwrap_or_default();
            Generations {
                active: u32::try_from(int(doc.get("active"))).unwrap_or_default(),
                building: (building != 0).then_some(building),
            }
        }))
    }

    async fn swap_generations(
        &self,
        expected: Generations,
        new: Generations,
    ) -> Result<bool, ReadModelError> {
        let filter = doc! {
            "_id": GENERATIONS_ID,
            "active": i64::from(expected.active),
            "building": i64::from(expected.building.unwrap_or(0)),
        };
        let update = doc! { "$set": {
            "active": i64::from(new.active),
            "building": i64::from(new.building.unwrap_or(0)),
        } };
        let swapped = if expected == Generations::default() {
            // Only the very first swap may create the document.
            match self.state().update_one(filter, update).upsert(true).await {
                Ok(result) => result.matched_count == 1 || result.upserted_id.is_some(),
                Err(err) if is_duplicate_key(&err) => false,
                Err(err) => return Err(classify(err)),
            }
        } else {
            self.state().update_one(filter, update).await.map_err(classify)?.matched_count == 1
        };
        if swapped {
            for generation in new.written() {
                // Best effort: a failure here is retried lazily by the next save.
                if let Err(err) = self.ensure_indexes(generation).await {
                    tracing::warn!(generation, error = %err, "cannot create indexes yet");
                }
            }
        }
        Ok(swapped)
    }

    #[tracing::instrument(skip(self), err(Display))]
    async fn drop_generation(&self, generation: u32) -> Result<(), ReadModelError> {
        // Never drop what readers or a rebuild use: a replica that lost the race to reserve
        // this generation would otherwise wipe the winner's fresh data.
        let current = self.generations().await?;
        if generation == current.active || current.building == Some(generation) {
            tracing::warn!(generation, "not dropping a generation that is in use");
            return Ok(());
        }
        self.forget_indexes(generation);
        let g = self.generation(generation);
        g.courses.drop().await.map_err(classify)?;
        g.comments.drop().await.map_err(classify)?;
        g.participants.drop().await.map_err(classify)?;
        g.applied.drop().await.map_err(classify)?;
        self.state()
            .delete_one(doc! { "_id": watermark_id(generation) })
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn summary(
        &self,
        generation: u32,
        course_id: Uuid,
    ) -> Result<Option<CourseSummary>, ReadModelError> {
        let course = self
            .generation(generation)
            .courses
            .find_one(doc! { "_id": course_id.to_string() })
            .projection(doc! { "sections": 0, "participants": 0 })
            .await
            .map_err(classify)?;
        course.map(|c| c.summary()).transpose().map_err(unexpected)
    }

    #[tracing::instrument(skip_all, fields(generation, course_id = %after.course_id, version = after.version), err(Display))]
    async fn save(
        &self,
        generation: u32,
        before_version: u64,
        after: &CourseSummary,
        change: &Change,
    ) -> Result<Saved, ReadModelError> {
        self.ensure_indexes(generation).await?;
        let g = self.generation(generation);
        if before_version == 0 {
            // A course starts with no participants: `Created` is its only first change.
            return match g.courses.insert_one(CourseDoc::new(after)).await {
                Ok(_) => Ok(Saved::Applied),
                Err(err) if is_duplicate_key(&err) => Ok(Saved::Conflict),
                Err(err) => Err(classify(err)),
            };
        }
        let mut update = doc! { "$set": summary_fields(after) };
        match change {
            Change::SectionAdded(section) => {
                let section = bson::to_bson(&SectionDoc::new(section)).map_err(unexpected)?;
                update.insert("$push", doc! { "sections": section });
            }
            Change::ParticipantJoined { .. } | Change::ParticipantLeft { .. } => {
                // The participation first, guarded by its own version (see `participants`).
                if let Some(participation) =
                    Participation::of(after.course_id, after.version, change)
                {
                    self.write_participation(generation, &participation).await?;
                }
            }
            Change::Commented(comment) => {
                // The comment first, idempotently (keyed by its id, `_id` included in the
                // replacement): if the course update below is lost, redelivery heals it.
                let comment = CommentDoc::new(comment);
                g.comments
                    .replace_one(doc! { "_id": &comment.id }, &comment)
                    .upsert(true)
                    .await
                    .map_err(classify)?;
            }
            Change::Created | Change::DetailsChanged | Change::StatusChanged { .. } => {}
        }
        let filter =
            doc! { "_id": after.course_id.to_string(), "version": version(before_version) };
        let result = g.courses.update_one(filter, update).await.map_err(classify)?;
        Ok(if result.matched_count == 1 { Saved::Applied } else { Saved::Conflict })
    }

    async fn mark_applied(&self, generation: u32, position: u64) -> Result<u64, ReadModelError> {
        let watermark = self.watermark(generation).await?;
        if position <= watermark {
            return Ok(watermark);
        }
        let applied = self.generation(generation).applied;
        match applied.insert_one(doc! { "_id": as_i64(position) }).await {
            Ok(_) => {}
            Err(err) if is_duplicate_key(&err) => {}
            Err(err) => return Err(classify(err)),
        }
        self.advance(generation, watermark).await
    }

    async fn mark_applied_batch(
        &self,
        generation: u32,
        positions: &[u64],
    ) -> Result<u64, ReadModelError> {
        let watermark = self.watermark(generation).await?;
        let above: Vec<Document> = positions
            .iter()
            .filter(|p| **p > watermark)
            .map(|p| doc! { "_id": as_i64(*p) })
            .collect();
        if above.is_empty() {
            return Ok(watermark);
        }
        let applied = self.generation(generation).applied;
        match applied.insert_many(above).ordered(false).await {
            Ok(_) => {}
            Err(err) if is_duplicate_key(&err) => {} // recorded before: a redelivery
            Err(err) => return Err(classify(err)),
        }
        self.advance(generation, watermark).await
    }

    async fn summaries_of(
        &self,
        generation: u32,
        courses: &[Uuid],
    ) -> Result<Vec<Option<CourseSummary>>, ReadModelError> {
        self.find_summaries(generation, courses).await
    }

    async fn save_batch(
        &self,
        generation: u32,
        writes: &[CourseWrite],
    ) -> Result<Vec<Saved>, ReadModelError> {
        self.save_many(generation, writes).await
    }

    async fn watermark(&self, generation: u32) -> Result<u64, ReadModelError> {
        let doc = self
            .state()
            .find_one(doc! { "_id": watermark_id(generation) })
            .await
            .map_err(classify)?;
        Ok(int(doc.as_ref().and_then(|d| d.get("position"))))
    }

    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), ReadModelError> {
        let record = doc! {
            "_id": as_i64(letter.position),
            "event_id": &letter.event_id,
            "course_id": &letter.course_id,
            "version": as_i64(letter.version),
            "reason": &letter.reason,
            "recorded_at": letter.recorded_at.timestamp_millis(),
        };
        self.db
            .collection::<Document>(DEAD_LETTERS)
            .replace_one(doc! { "_id": as_i64(letter.position) }, record)
            .upsert(true)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, ReadModelError> {
        let docs: Vec<Document> = self
            .db
            .collection::<Document>(DEAD_LETTERS)
            .find(doc! { "_id": { "$gt": as_i64(after) } })
            .sort(doc! { "_id": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        Ok(docs.iter().map(dead_letter_of).collect())
    }

    async fn dead_letter_count(&self) -> Result<u64, ReadModelError> {
        self.db
            .collection::<Document>(DEAD_LETTERS)
            .count_documents(doc! {})
            .await
            .map_err(classify)
    }

    async fn remove_dead_letter(&self, position: u64) -> Result<(), ReadModelError> {
        self.db
            .collection::<Document>(DEAD_LETTERS)
            .delete_one(doc! { "_id": as_i64(position) })
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn put_rebuild_lease(
        &self,
        generation: u32,
        lease: &RebuildLease,
    ) -> Result<(), ReadModelError> {
        let update = doc! { "$set": {
            "owner": &lease.owner,
            "expires_at": lease.expires_at.timestamp_millis(),
        } };
        match self
            .state()
            .update_one(doc! { "_id": lease_id(generation) }, update)
            .upsert(true)
            .await
        {
            // Two renewals creating it at once: the other one wrote it.
            Err(err) if is_duplicate_key(&err) => Ok(()),
            Err(err) => Err(classify(err)),
            Ok(_) => Ok(()),
        }
    }

    async fn rebuild_lease(&self, generation: u32) -> Result<Option<RebuildLease>, ReadModelError> {
        let doc =
            self.state().find_one(doc! { "_id": lease_id(generation) }).await.map_err(classify)?;
        Ok(doc.map(|doc| RebuildLease {
            owner: doc.get_str("owner").unwrap_or_default().to_owned(),
            // Unreadable: treated as expired.
            expires_at: doc
                .get_i64("expires_at")
                .ok()
                .and_then(chrono::DateTime::from_timestamp_millis)
                .unwrap_or_default(),
        }))
    }

    /// The course document (summary, sections), its current participants (streamed from
    /// `participants_g{n}` in batches, never one giant read) and the number of its comment
    /// documents. Enrolments are read from the same participations, so they are not compared
    /// separately.
    async fn audit_view(
        &self,
        generation: u32,
        course_id: Uuid,
        _users: &BTreeSet<Uuid>,
    ) -> Result<Option<AuditView>, ReadModelError> {
        let g = self.generation(generation);
        let (course, comments) = tokio::try_join!(
            async {
                g.courses.find_one(doc! { "_id": course_id.to_string() }).await.map_err(classify)
            },
            async {
                g.comments
                    .count_documents(doc! { "course_id": course_id.to_string() })
                    .await
                    .map_err(classify)
            },
        )?;
        let Some(course) = course else { return Ok(None) };
        let summary = course.summary().map_err(unexpected)?;
        let mut participants = BTreeSet::new();
        let mut ids = std::pin::pin!(self.participant_ids(generation, course_id).await?);
        while let Some(id) = ids.try_next().await? {
            participants.insert(Uuid::parse_str(&id).map_err(unexpected)?);
        }
        let mut sections = course
            .sections
            .iter()
            .map(|s| {
                Ok(AuditSection {
                    section_id: Uuid::parse_str(&s.section_id).map_err(unexpected)?,
                    position: u32::try_from(s.position).map_err(unexpected)?,
                    title: s.title.clone(),
                })
            })
            .collect::<Result<Vec<_>, ReadModelError>>()?;
        sections.sort_by_key(|s| s.position);
        Ok(Some(AuditView {
            summary,
            participants: Some(participants),
            sections: Some(sections),
            comments: Some(comments),
            enrolled: None,
        }))
    }

    /// Every course document's id.
    async fn audit_course_ids(&self, generation: u32) -> Result<Option<Vec<Uuid>>, ReadModelError> {
        let ids: Vec<Document> = self
            .generation(generation)
            .courses
            .clone_with_type::<Document>()
            .find(doc! {})
            .projection(doc! { "_id": 1 })
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        Ok(Some(
            ids.iter()
                .filter_map(|d| d.get_str("_id").ok())
                .filter_map(|id| Uuid::parse_str(id).ok())
                .collect(),
        ))
    }
}

impl MongoReadModel {
    /// Advances the watermark of `generation` (last read as `watermark`) over the contiguous
    /// run of recorded positions.
    async fn advance(&self, generation: u32, mut watermark: u64) -> Result<u64, ReadModelError> {
        let applied = self.generation(generation).applied;
        // Advance over the contiguous run of applied positions. Every writer runs this after
        // recording its own position, so the last one to record closes any gap; a lost
        // compare-and-set only means another writer moved the watermark: look again.
        loop {
            let run: Vec<Document> = applied
                .find(doc! { "_id": { "$gt": as_i64(watermark) } })
                .sort(doc! { "_id": 1 })
                .limit(ADVANCE_BATCH)
                .await
                .map_err(classify)?
                .try_collect()
                .await
                .map_err(classify)?;
            let mut end = watermark;
            for doc in &run {
                if int(doc.get("_id")) != end + 1 {
                    break;
                }
                end += 1;
            }
            if end == watermark {
                // Nothing to advance, unless another writer advanced (and cleaned up) since we
                // read the watermark.
                let now = self.watermark(generation).await?;
                if now == watermark {
                    return Ok(watermark);
                }
                watermark = now;
                continue;
            }
            if self.advance_watermark(generation, watermark, end).await? {
                // Exactly the positions the watermark now covers (by equality: nx-27017
                // compares `_id` ranges in deletes as strings, which would remove markers
                // above the watermark too).
                let covered: Vec<i64> = (watermark + 1..=end).map(as_i64).collect();
                applied.delete_many(doc! { "_id": { "$in": covered } }).await.map_err(classify)?;
                watermark = end;
                if run.len() < ADVANCE_BATCH as usize {
                    return Ok(watermark);
                }
            } else {
                watermark = self.watermark(generation).await?;
            }
        }
    }
}
