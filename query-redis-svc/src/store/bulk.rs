//! A batch of course writes: one `SAVE_COURSE` script call per course, all in one pipeline.

use fred::prelude::{ClientLike, Error};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, Value};
use projection::fold::Change;
use projection::{CourseWrite, ReadModelError};

use super::records::{status_name, summary_fields};
use super::{RedisReadModel, classify};

impl RedisReadModel {
    /// Runs `script` once per call in one pipeline (one round trip); loads the script and
    /// sends again what Redis did not know yet (after a Redis restart, for example).
    pub(crate) async fn eval_pipelined(
        &self,
        script: &Script,
        calls: Vec<(String, Vec<String>)>,
    ) -> Result<Vec<i64>, ReadModelError> {
        // EVALSHA by hand (the pipeline offers none of its own); the arguments become shared
        // byte strings once, so that sending them again after a NOSCRIPT copies nothing.
        let commands: Vec<Vec<Value>> = calls
            .into_iter()
            .map(|(key, args)| {
                let mut command = Vec::with_capacity(3 + args.len());
                command.push(Value::String(script.sha1().clone()));
                command.push(Value::Integer(1));
                command.push(Value::String(key.into()));
                command.extend(args.into_iter().map(|a| Value::String(a.into())));
                command
            })
            .collect();
        let mut results: Vec<Option<i64>> = vec![None; commands.len()];
        for attempt in 0..2 {
            let pipeline = self.client.pipeline();
            let mut sent = Vec::new();
            for (index, command) in commands.iter().enumerate() {
                if results[index].is_none() {
                    let _: () = pipeline
                        .custom(
                            CustomCommand::new("EVALSHA", ClusterHash::FirstKey, false),
                            command.clone(),
                        )
                        .await
                        .map_err(classify)?;
                    sent.push(index);
                }
            }
            let answers: Vec<Result<i64, Error>> = pipeline.try_all().await;
            let mut missing = false;
            for (index, answer) in sent.into_iter().zip(answers) {
                match answer {
                    Ok(value) => results[index] = Some(value),
                    Err(err) if err.details().starts_with("NOSCRIPT") && attempt == 0 => {
                        missing = true;
                    }
                    Err(err) => return Err(classify(err)),
                }
            }
            if !missing {
                break;
            }
            script.load(&self.client).await.map_err(classify)?;
        }
        results
            .into_iter()
            .map(|r| {
                r.ok_or_else(|| ReadModelError::Unexpected(anyhow::anyhow!("script not loaded")))
            })
            .collect()
    }

    /// The SAVE_COURSE arguments of one course's write.
    pub(crate) fn save_args(
        &self,
        generation: u32,
        write: &CourseWrite,
    ) -> Option<(String, Vec<String>)> {
        let after = write.after()?;
        let fields = summary_fields(after);
        let mut args = Vec::with_capacity(4 + 2 * fields.len() + 3 * write.steps.len());
        args.push(write.before_version.to_string());
        args.push(format!("{}{generation}:", self.prefix));
        args.push(after.course_id.to_string());
        args.push(fields.len().to_string());
        for (field, value) in fields {
            args.push(field.to_owned());
            args.push(value);
        }
        for (step, change) in &write.steps {
            match change {
                Change::Created => {
                    args.push("C".to_owned());
                    args.push(step.instructor_id.to_string());
                    args.push(status_name(step.status).to_owned());
                }
                Change::StatusChanged { from } => {
                    args.push("S".to_owned());
                    args.push(status_name(*from).to_owned());
                    args.push(status_name(step.status).to_owned());
                }
                Change::ParticipantJoined { user_id, joined_at } => {
                    args.push("J".to_owned());
                    args.push(user_id.to_string());
                    args.push(format!("{:013}", joined_at.timestamp_millis().max(0)));
                }
                Change::ParticipantLeft { user_id } => {
                    args.push("L".to_owned());
                    args.push(user_id.to_string());
                }
                Change::DetailsChanged | Change::SectionAdded(_) | Change::Commented(_) => {}
            }
        }
        Some((self.course_key(generation, after.course_id), args))
    }
}
