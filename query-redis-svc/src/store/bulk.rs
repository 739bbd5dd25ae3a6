//! A batch of course writes in two pipelined rounds: the version-guarded enrolment and index
//! entries first (other hash slots), then one `SAVE_COURSE` call per course (its own slot).

use std::collections::BTreeMap;

use fred::prelude::{ClientLike, Error};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, Value};
use fred::util::redis_keyslot;
use projection::fold::Change;
use projection::{CourseWrite, ReadModelError};
use uuid::Uuid;

use super::records::{STATUSES, status_name, status_number, summary_fields};
use super::{RedisReadModel, classify};

/// One script call: the script, its keys (all of one hash slot), its arguments.
pub(crate) struct Call<'a> {
    script: &'a Script,
    keys: Vec<String>,
    args: Vec<String>,
}

/// What one course write sends: the calls of the first round, and the course's own call.
pub(crate) struct Plan<'a> {
    pub(crate) secondary: Vec<Call<'a>>,
    pub(crate) course: Call<'a>,
}

impl RedisReadModel {
    /// Runs the calls in one pipeline (one round trip per node); loads a script and sends again
    /// the calls Redis did not know the script of yet (after a Redis restart, for example).
    pub(crate) async fn eval_pipelined(
        &self,
        calls: Vec<Call<'_>>,
    ) -> Result<Vec<i64>, ReadModelError> {
        // EVALSHA by hand (the pipeline offers none of its own), routed by its first key; the
        // arguments become shared byte strings once, so that sending them
        // again after a NOSCRIPT copies nothing.
        let commands: Vec<Vec<Value>> = calls
            .iter()
            .map(|call| {
                let mut command = Vec::with_capacity(2 + call.keys.len() + call.args.len());
                command.push(Value::String(call.script.sha1().clone()));
                command.push(Value::Integer(call.keys.len() as i64));
                command.extend(call.keys.iter().map(|k| Value::String(k.as_str().into())));
                command.extend(call.args.iter().map(|a| Value::String(a.as_str().into())));
                command
            })
            .collect();
        let mut results: Vec<Option<i64>> = vec![None; commands.len()];
        for attempt in 0..2 {
            let pipeline = self.client.pipeline();
            let mut sent = Vec::new();
            for (index, command) in commands.iter().enumerate() {
                if results[index].is_none() {
                    // fred routes a custom command by `ClusterHash::Custom` only (any other
                    // policy hashes its first string, here the script's SHA): the slot of the
                    // call's first key, computed here.
                    let slot = redis_keyslot(calls[index].keys[0].as_bytes());
                    let _: () = pipeline
                        .custom(
                            CustomCommand::new("EVALSHA", ClusterHash::Custom(slot), false),
                            command.clone(),
                        )
                        .await
                        .map_err(classify)?;
                    sent.push(index);
                }
            }
            let answers: Vec<Result<i64, Error>> = pipeline.try_all().await;
            let mut missing: Vec<&Script> = Vec::new();
            for (index, answer) in sent.into_iter().zip(answers) {
                match answer {
                    Ok(value) => results[index] = Some(value),
                    Err(err) if err.details().starts_with("NOSCRIPT") && attempt == 0 => {
                        let script = calls[index].script;
                        if !missing.iter().any(|s| s.sha1() == script.sha1()) {
                            missing.push(script);
                        }
                    }
                    Err(err) => return Err(classify(err)),
                }
            }
            if missing.is_empty() {
                break;
            }
            for script in missing {
                script.load(&self.client).await.map_err(classify)?;
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.ok_or_else(|| ReadModelError::Unexpected(anyhow::anyhow!("script not loaded")))
            })
            .collect()
    }

    /// The calls of one course's write; `None` for a write without steps.
    pub(crate) fn plan(&self, generation: u32, write: &CourseWrite) -> Option<Plan<'_>> {
        let after = write.after()?;
        let course = after.course_id;
        let version = after.version.to_string();
        let fields = summary_fields(after);
        let mut args = Vec::with_capacity(2 + 2 * fields.len() + 3 * write.steps.len());
        args.push(write.before_version.to_string());
        args.push(fields.len().to_string());
        for (field, value) in fields {
            args.push(field.to_owned());
            args.push(value);
        }
        // Each user's enrolment as it stands after the write: joined (when) or left.
        let mut enrolments: BTreeMap<Uuid, Option<String>> = BTreeMap::new();
        let mut indexed = false;
        for (_, change) in &write.steps {
            match change {
                Change::Created | Change::StatusChanged { .. } => indexed = true,
                Change::ParticipantJoined { user_id, joined_at } => {
                    let ms = format!("{:013}", joined_at.timestamp_millis().max(0));
                    args.extend(["J".to_owned(), user_id.to_string(), ms.clone()]);
                    enrolments.insert(*user_id, Some(ms));
                    indexed = true;
                }
                Change::ParticipantLeft { user_id } => {
                    args.extend(["L".to_owned(), user_id.to_string()]);
                    enrolments.insert(*user_id, None);
                    indexed = true;
                }
                Change::DetailsChanged | Change::SectionAdded(_) | Change::Commented(_) => {}
            }
        }
        let mut secondary: Vec<Call<'_>> = enrolments
            .into_iter()
            .map(|(user, joined)| {
                let mut args = vec![course.to_string(), version.clone()];
                match joined {
                    Some(ms) => args.extend(["J".to_owned(), ms]),
                    None => args.push("L".to_owned()),
                }
                Call {
                    script: &self.save_enrolment,
                    keys: ["courses", "joined", "versions"]
                        .iter()
                        .map(|rest| self.user_key(generation, user, rest))
                        .collect(),
                    args,
                }
            })
            .collect();
        if indexed {
            let mut keys = vec![
                self.meta_key(generation, "idx:versions"),
                self.meta_key(generation, "idx:all"),
                self.meta_key(generation, "idx:popular"),
                self.meta_key(generation, &format!("idx:instructor:{}", after.instructor_id)),
            ];
            for kind in ["status", "popular"] {
                keys.extend(STATUSES.iter().map(|s| {
                    self.meta_key(generation, &format!("idx:{kind}:{}", status_name(*s)))
                }));
            }
            secondary.push(Call {
                script: &self.save_indexes,
                keys,
                args: vec![
                    course.to_string(),
                    version,
                    status_number(after.status).to_string(),
                    after.participant_count.to_string(),
                ],
            });
        }
        let key = self.course_key(generation, course);
        let (participants, joined) = (format!("{key}:participants"), format!("{key}:joined"));
        Some(Plan {
            secondary,
            course: Call { script: &self.save, keys: vec![key, participants, joined], args },
        })
    }
}
