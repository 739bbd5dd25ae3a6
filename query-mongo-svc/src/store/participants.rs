//! Participations: one document per (course, user) in `participants_g{n}`, so that a course
//! document stays small however many people join it, and participants are read a page at a
//! time.
//!
//! `{_id: "{course}:{user}", course_id, user_id, state: "joined" | "left", version, joined_at}`.
//! `version` is the course version of the last join or leave of that user; a write lands only
//! on an older version (`version: {$lt: v}`), so redelivered, replayed or reordered events
//! never bring back an old state, and a leave is kept as `state: "left"` (a tombstone) so that
//! a replayed join older than it stays refused. Among the joined, `version` (the version of the
//! join) is the join order: unique and increasing within a course, the keyset of the pages.
//!
//! Participations are written *before* the course's version-guarded update (as comments are):
//! each is a fact of the event store with its own guard, so a course update that is lost or
//! conflicts is healed by redelivery, and the course's `participant_count` catches up then.

use std::collections::BTreeMap;

use futures::{Stream, TryStreamExt};
use mongodb::bson::{self, Bson, Document, doc};
use projection::ReadModelError;
use projection::fold::Change;
use serde::Deserialize;
use uuid::Uuid;

use super::documents::bson_time;
use super::{MongoReadModel, classify, is_duplicate_key};

/// `state` of a current participant.
pub const JOINED: &str = "joined";
/// `state` of someone who left (kept as a tombstone for the version guard).
pub const LEFT: &str = "left";
/// Participant ids the audit reads per round trip.
const AUDIT_BATCH: u32 = 2_000;

/// `_id` of a participation.
pub fn participation_id(course_id: &str, user_id: &str) -> String {
    format!("{course_id}:{user_id}")
}

/// A current participant as stored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ParticipantDoc {
    pub course_id: String,
    pub user_id: String,
    /// Version of the join: the position in join order.
    pub version: i64,
    pub joined_at: bson::DateTime,
}

/// The last join or leave of one user in one course, as a write.
#[derive(Debug, Clone, PartialEq)]
pub struct Participation {
    pub course_id: Uuid,
    pub user_id: Uuid,
    pub version: u64,
    /// `Some(when)` for a join, `None` for a leave.
    pub joined_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Participation {
    /// The participation `change` (at course version `version`) writes, if it is one.
    pub fn of(course_id: Uuid, version: u64, change: &Change) -> Option<Self> {
        match change {
            Change::ParticipantJoined { user_id, joined_at } => {
                Some(Self { course_id, user_id: *user_id, version, joined_at: Some(*joined_at) })
            }
            Change::ParticipantLeft { user_id } => {
                Some(Self { course_id, user_id: *user_id, version, joined_at: None })
            }
            _ => None,
        }
    }

    fn id(&self) -> String {
        participation_id(&self.course_id.to_string(), &self.user_id.to_string())
    }

    /// The fields a write sets (all but `_id`).
    fn fields(&self) -> Document {
        let mut fields = doc! {
            "course_id": self.course_id.to_string(),
            "user_id": self.user_id.to_string(),
            "version": super::documents::version(self.version),
            "state": if self.joined_at.is_some() { JOINED } else { LEFT },
        };
        if let Some(at) = self.joined_at {
            fields.insert("joined_at", bson_time(at));
        }
        fields
    }

    /// The whole document, for an insert.
    fn document(&self) -> Document {
        let mut document = doc! { "_id": self.id() };
        document.extend(self.fields());
        document
    }

    /// The guarded update of an existing document: only an older version is overwritten.
    fn guarded_update(&self) -> (Document, Document) {
        let filter = doc! { "_id": self.id(), "version": { "$lt": super::documents::version(self.version) } };
        let mut set = self.fields();
        let mut update = doc! {};
        if self.joined_at.is_none() {
            // A leave keeps when the user had joined out of the way: `$unset` it.
            set.remove("joined_at");
            update.insert("$unset", doc! { "joined_at": "" });
        }
        update.insert("$set", set);
        (filter, update)
    }
}

/// The final participation of each (course, user) in `changes`, in order of first appearance
/// (later changes of the same user replace earlier ones).
pub fn last_per_user(changes: impl IntoIterator<Item = Participation>) -> Vec<Participation> {
    let mut order: Vec<(Uuid, Uuid)> = Vec::new();
    let mut last: BTreeMap<(Uuid, Uuid), Participation> = BTreeMap::new();
    for change in changes {
        let key = (change.course_id, change.user_id);
        if last.insert(key, change).is_none() {
            order.push(key);
        }
    }
    order.into_iter().filter_map(|key| last.remove(&key)).collect()
}

impl MongoReadModel {
    /// Writes one participation, guarded by its version (a stale one is dropped).
    pub(crate) async fn write_participation(
        &self,
        generation: u32,
        participation: &Participation,
    ) -> Result<(), ReadModelError> {
        let (filter, update) = participation.guarded_update();
        match self.generation(generation).participants.update_one(filter, update).upsert(true).await
        {
            Ok(_) => Ok(()),
            // It exists at this version or a newer one: a replay.
            Err(err) if is_duplicate_key(&err) => Ok(()),
            Err(err) => Err(classify(err)),
        }
    }

    /// Writes many participations (at most one per course and user): all inserted in one
    /// unordered `insert_many`; those that exist already get one guarded update each, all in
    /// one `update` command (one that does not match was stale).
    pub(crate) async fn write_participations(
        &self,
        generation: u32,
        participations: &[Participation],
    ) -> Result<(), ReadModelError> {
        if participations.is_empty() {
            return Ok(());
        }
        let g = self.generation(generation);
        let documents: Vec<Document> = participations.iter().map(Participation::document).collect();
        let existing = match g.participants.insert_many(documents).ordered(false).await {
            Ok(_) => return Ok(()),
            Err(err) => super::bulk::duplicate_indexes(err)?,
        };
        let updates: Vec<Bson> = existing
            .iter()
            .filter_map(|index| participations.get(*index))
            .map(|p| {
                let (filter, update) = p.guarded_update();
                Bson::Document(doc! { "q": filter, "u": update })
            })
            .collect();
        let command = doc! {
            "update": format!("participants_g{generation}"),
            "updates": updates,
            "ordered": false,
        };
        let reply = self.database().run_command(command).await.map_err(classify)?;
        if let Ok(errors) = reply.get_array("writeErrors")
            && !errors.is_empty()
        {
            return Err(ReadModelError::Unexpected(anyhow::anyhow!(
                "participations update failed: {errors:?}"
            )));
        }
        Ok(())
    }

    /// Up to `limit` current participants of a course in join order, after the join at
    /// version `after` (0: from the first).
    pub async fn participants(
        &self,
        generation: u32,
        course_id: Uuid,
        after: u64,
        limit: i64,
    ) -> Result<Vec<ParticipantDoc>, ReadModelError> {
        let filter = doc! {
            "course_id": course_id.to_string(),
            "state": JOINED,
            "version": { "$gt": super::documents::version(after) },
        };
        self.generation(generation)
            .participants
            .clone_with_type::<ParticipantDoc>()
            .find(filter)
            .sort(doc! { "version": 1 })
            .limit(limit)
            .projection(
                doc! { "_id": 0, "course_id": 1, "user_id": 1, "version": 1, "joined_at": 1 },
            )
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)
    }

    /// Whether `user` is a current participant of the course.
    pub async fn is_participant(
        &self,
        generation: u32,
        course_id: Uuid,
        user: Uuid,
    ) -> Result<bool, ReadModelError> {
        let id = participation_id(&course_id.to_string(), &user.to_string());
        let found = self
            .generation(generation)
            .participants
            .find_one(doc! { "_id": id, "state": JOINED })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(classify)?;
        Ok(found.is_some())
    }

    /// Every current participant's id of a course, streamed in batches (the audit).
    pub(crate) async fn participant_ids(
        &self,
        generation: u32,
        course_id: Uuid,
    ) -> Result<impl Stream<Item = Result<String, ReadModelError>> + use<>, ReadModelError> {
        let cursor = self
            .generation(generation)
            .participants
            .find(doc! { "course_id": course_id.to_string(), "state": JOINED })
            .projection(doc! { "_id": 0, "user_id": 1 })
            .batch_size(AUDIT_BATCH)
            .await
            .map_err(classify)?;
        Ok(cursor
            .map_err(classify)
            .map_ok(|d: Document| d.get_str("user_id").unwrap_or_default().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(version: u64, user: u128, joined: bool) -> Participation {
        Participation {
            course_id: Uuid::from_u128(1),
            user_id: Uuid::from_u128(user),
            version,
            joined_at: joined.then(chrono::Utc::now),
        }
    }

    #[test]
    fn only_the_last_join_or_leave_of_each_user_is_written() {
        let writes =
            last_per_user([at(2, 7, true), at(3, 8, true), at(4, 7, false), at(5, 7, true)]);
        let versions: Vec<(u128, u64)> =
            writes.iter().map(|p| (p.user_id.as_u128(), p.version)).collect();
        assert_eq!(versions, vec![(7, 5), (8, 3)]);
    }

    #[test]
    fn a_write_only_replaces_an_older_version_and_a_leave_is_a_tombstone() {
        let (filter, update) = at(9, 7, false).guarded_update();
        assert_eq!(filter.get_document("version").and_then(|v| v.get_i64("$lt")), Ok(9));
        let set = update.get_document("$set").expect("$set");
        assert_eq!(set.get_str("state"), Ok(LEFT));
        assert!(!set.contains_key("joined_at"));
        assert!(update.get_document("$unset").expect("$unset").contains_key("joined_at"));
        let joined = at(3, 7, true).document();
        assert_eq!(
            joined.get_str("_id"),
            Ok(format!("{}:{}", Uuid::from_u128(1), Uuid::from_u128(7)).as_str())
        );
        assert_eq!(joined.get_str("state"), Ok(JOINED));
    }
}
