//! Batched writes: a batch of courses in a few bulk operations instead of one round trip per
//! event. Only ordinary MongoDB semantics are used (`find` with `$in`, `insert_many` unordered,
//! the `update` command with many statements), so the same code runs on a real MongoDB and on
//! the test server.
//!
//! * Comments are upserted first, in one unordered `insert_many` (duplicates are redeliveries),
//!   and so are participations (the last join or leave of each course and user in the batch,
//!   see `participants`), so that a lost course update is healed by redelivery as before.
//! * New courses are inserted whole (sections folded in memory), all in one unordered
//!   `insert_many`; a duplicate key is a lost race (conflict).
//! * A known course gets one version-guarded update of all its steps (a *segment*): `$set` of
//!   the summary after them and `$push … $each` of its sections; every course's update goes in
//!   one `update` command, and a course whose update did not match is a conflict. (The update
//!   is written for several segments per course, from when participants were an array of the
//!   document and `$push` and `$pull` of it needed separate updates.)

use std::collections::HashMap;

use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::error::ErrorKind;
use projection::fold::{Change, CourseSummary};
use projection::{CourseWrite, ReadModelError, Saved};
use uuid::Uuid;

use super::documents::{CommentDoc, CourseDoc, SectionDoc, summary_fields, version};
use super::participants::{Participation, last_per_user};
use super::{MongoReadModel, classify, is_duplicate_key};

fn unexpected(err: impl std::fmt::Display) -> ReadModelError {
    ReadModelError::Unexpected(anyhow::anyhow!("{err}"))
}

/// Indexes (into the batch) of the documents that failed with a duplicate key; any other
/// failure is an error.
pub(crate) fn duplicate_indexes(err: mongodb::error::Error) -> Result<Vec<usize>, ReadModelError> {
    if let ErrorKind::InsertMany(failure) = err.kind.as_ref()
        && failure.write_concern_error.is_none()
        && let Some(errors) = &failure.write_errors
        && errors.iter().all(|e| e.code == 11000)
    {
        return Ok(errors.iter().map(|e| e.index).collect());
    }
    if is_duplicate_key(&err) {
        return Err(unexpected(format!("unexpected duplicate key report: {err}")));
    }
    Err(classify(err))
}

/// The changes of one segment.
#[derive(Default)]
struct Segment {
    /// Version of the course before the segment.
    before: u64,
    summary: Option<CourseSummary>,
    sections: Vec<Bson>,
}

impl Segment {
    fn update(&self) -> Option<Document> {
        let summary = self.summary.as_ref()?;
        let mut update = doc! { "$set": summary_fields(summary) };
        let mut push = Document::new();
        if !self.sections.is_empty() {
            push.insert("sections", doc! { "$each": self.sections.clone() });
        }
        if !push.is_empty() {
            update.insert("$push", push);
        }
        Some(update)
    }
}

/// A known course's steps as the segments of its update (one: see the module documentation).
fn segments(write: &CourseWrite) -> Result<Vec<Segment>, ReadModelError> {
    let mut out: Vec<Segment> = Vec::new();
    let mut current = Segment { before: write.before_version, ..Default::default() };
    for (after, change) in &write.steps {
        match change {
            Change::SectionAdded(section) => {
                current.sections.push(bson::to_bson(&SectionDoc::new(section)).map_err(unexpected)?)
            }
            Change::ParticipantJoined { .. }
            | Change::ParticipantLeft { .. }
            | Change::Created
            | Change::DetailsChanged
            | Change::StatusChanged { .. }
            | Change::Commented(_) => {}
        }
        current.summary = Some(after.clone());
    }
    if current.summary.is_some() {
        out.push(current);
    }
    Ok(out)
}

/// A course created within the batch, whole.
fn new_course(write: &CourseWrite) -> Option<CourseDoc> {
    let mut doc = CourseDoc::new(write.after()?);
    for (_, change) in &write.steps {
        if let Change::SectionAdded(section) = change {
            doc.sections.push(SectionDoc::new(section));
        }
    }
    Some(doc)
}

impl MongoReadModel {
    /// Summaries of `courses` in `generation`, in order, in one query.
    pub(crate) async fn find_summaries(
        &self,
        generation: u32,
        courses: &[Uuid],
    ) -> Result<Vec<Option<CourseSummary>>, ReadModelError> {
        if courses.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = courses.iter().map(Uuid::to_string).collect();
        let found: Vec<CourseDoc> = self
            .generation(generation)
            .courses
            .find(doc! { "_id": { "$in": ids } })
            // `participants`: the array documents written before `participants_g{n}` had.
            .projection(doc! { "sections": 0, "participants": 0 })
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        let mut by_id: HashMap<String, CourseSummary> = HashMap::with_capacity(found.len());
        for course in found {
            let summary = course.summary().map_err(unexpected)?;
            by_id.insert(course.id, summary);
        }
        Ok(courses.iter().map(|c| by_id.remove(&c.to_string())).collect())
    }

    /// Stored versions of `courses` (absent: 0).
    async fn versions(
        &self,
        generation: u32,
        courses: &[Uuid],
    ) -> Result<HashMap<Uuid, u64>, ReadModelError> {
        Ok(self
            .find_summaries(generation, courses)
            .await?
            .into_iter()
            .flatten()
            .map(|s| (s.course_id, s.version))
            .collect())
    }

    /// See the module documentation.
    pub(crate) async fn save_many(
        &self,
        generation: u32,
        writes: &[CourseWrite],
    ) -> Result<Vec<Saved>, ReadModelError> {
        self.ensure_indexes(generation).await?;
        let g = self.generation(generation);
        let mut results = vec![Saved::Applied; writes.len()];

        let comments: Vec<CommentDoc> = writes
            .iter()
            .flat_map(|w| &w.steps)
            .filter_map(|(_, change)| match change {
                Change::Commented(comment) => Some(CommentDoc::new(comment)),
                _ => None,
            })
            .collect();
        if !comments.is_empty()
            && let Err(err) = g.comments.insert_many(&comments).ordered(false).await
        {
            duplicate_indexes(err)?; // already there: a redelivery
        }

        let participations = last_per_user(writes.iter().flat_map(|w| {
            w.steps.iter().filter_map(|(after, change)| {
                Participation::of(after.course_id, after.version, change)
            })
        }));
        self.write_participations(generation, &participations).await?;

        let (created, known): (Vec<usize>, Vec<usize>) =
            (0..writes.len()).partition(|i| writes[*i].before_version == 0);
        let docs: Vec<CourseDoc> = created.iter().filter_map(|i| new_course(&writes[*i])).collect();
        if docs.len() != created.len() {
            return Err(unexpected("a course write without steps"));
        }
        if !docs.is_empty()
            && let Err(err) = g.courses.insert_many(&docs).ordered(false).await
        {
            for index in duplicate_indexes(err)? {
                results[created[index]] = Saved::Conflict;
            }
        }

        let mut plans: Vec<(usize, Vec<Segment>)> = Vec::with_capacity(known.len());
        for index in known {
            plans.push((index, segments(&writes[index])?));
        }
        let mut round = 0;
        loop {
            let statements: Vec<(usize, Document)> = plans
                .iter()
                .filter(|(index, _)| results[*index] == Saved::Applied)
                .filter_map(|(index, segments)| {
                    let segment = segments.get(round)?;
                    let after = segment.summary.as_ref()?;
                    Some((
                        *index,
                        doc! {
                            "q": { "_id": after.course_id.to_string(), "version": version(segment.before) },
                            "u": segment.update()?,
                        },
                    ))
                })
                .collect();
            if statements.is_empty() {
                break;
            }
            let command = doc! {
                "update": format!("courses_g{generation}"),
                "updates": statements.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
                "ordered": false,
            };
            let reply = self.database().run_command(command).await.map_err(classify)?;
            if let Ok(errors) = reply.get_array("writeErrors")
                && !errors.is_empty()
            {
                return Err(unexpected(format!("bulk update failed: {errors:?}")));
            }
            let matched = super::read_model::int(reply.get("n")) as usize;
            if matched < statements.len() {
                // Which did not match: the ones whose course is not at the segment's end.
                let ids: Vec<Uuid> = statements
                    .iter()
                    .filter_map(|(index, _)| writes[*index].after().map(|a| a.course_id))
                    .collect();
                let stored = self.versions(generation, &ids).await?;
                for (index, _) in &statements {
                    let segment =
                        plans.iter().find(|(i, _)| i == index).and_then(|(_, s)| s.get(round));
                    let Some(after) = segment.and_then(|s| s.summary.as_ref()) else { continue };
                    if stored.get(&after.course_id).copied() != Some(after.version) {
                        results[*index] = Saved::Conflict;
                    }
                }
            }
            round += 1;
        }
        Ok(results)
    }
}
