//! The Redis read model.
//!
//! Keys are designed around the queries (`P` is the configured prefix, `g` the generation):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P generations` | hash | `active`, `building` |
//! | `P g:course:{id}` | hash | the course summary, including its `version` |
//! | `P g:course:{id}:participants` | zset (lex) | `{joined_ms}:{user}` in join order |
//! | `P g:course:{id}:joined` | hash | user → their member in the zset above |
//! | `P g:idx:all`, `P g:idx:status:{S}`, `P g:idx:instructor:{id}` | zset (lex) | course ids; ids are UUID v7, so lexicographic order is creation order |
//! | `P g:idx:popular`, `P g:idx:popular:{S}` | zset | course id scored by participant count |
//! | `P g:user:{id}:courses` | zset (lex) | `{joined_ms}:{course}` of a user's enrolments |
//! | `P g:user:{id}:joined` | hash | course → their member above |
//! | `P g:applied`, `P g:watermark` | zset, string | applied positions above the contiguous watermark |
//! | `P deadletters` | zset | positions of dead letters (scored by position) |
//! | `P deadletter:{position}` | hash | one dead letter: `event_id`, `course_id`, `version`, `reason`, `recorded_at` |
//! | `P lease:{g}` | hash | the rebuild lease of generation `g`: `owner`, `expires_at` (ms) |
//!
//! Every course of a batch is one Lua script call (`scripts::SAVE_COURSE`), all of them in one
//! pipeline: it checks the course hash's version and applies the summary and every index change
//! of the course's events atomically, so a duplicate or a concurrent writer can never double a
//! count or an index entry. The scripts touch keys not passed in `KEYS`, so this layout is for a
//! single Redis (or a replicated primary), not Redis Cluster.

mod scripts;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use course_domain::CourseStatus;
use fred::prelude::{
    Builder, Client, ClientLike, Config, Error, ErrorKind, HashesInterface, KeysInterface,
    ReconnectPolicy, SortedSetsInterface, TransactionInterface,
};
use fred::types::config::TcpConfig;
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, Value};
use projection::audit::AuditView;
use projection::dead_letter::DeadLetter;
use projection::fold::{Change, CourseSummary};
use projection::lease::RebuildLease;
use projection::{CourseWrite, Generations, ReadModel, ReadModelError, Saved};
use uuid::Uuid;

/// The catalog read model in Redis.
#[derive(Clone)]
pub struct RedisReadModel {
    client: Client,
    prefix: Arc<str>,
    save: Arc<Script>,
    mark: Arc<Script>,
    mark_batch: Arc<Script>,
    swap: Arc<Script>,
}

/// A participant or enrolment entry: `{joined_ms}:{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The other side's id (user for participants, course for enrolments).
    pub id: Uuid,
    /// When.
    pub joined_at: DateTime<Utc>,
}

fn member(joined_at: DateTime<Utc>, id: Uuid) -> String {
    format!("{:013}:{id}", joined_at.timestamp_millis().max(0))
}

impl Joined {
    /// Parses a zset member; `None` for anything else (a tampered page token, for example).
    pub fn parse(member: &str) -> Option<Joined> {
        let (ms, id) = member.split_once(':')?;
        if ms.len() != 13 {
            return None;
        }
        Some(Joined {
            id: Uuid::parse_str(id).ok()?,
            joined_at: DateTime::from_timestamp_millis(ms.parse().ok()?)?,
        })
    }

    /// The zset member again (page tokens).
    pub fn member(&self) -> String {
        member(self.joined_at, self.id)
    }
}

fn status_name(status: CourseStatus) -> &'static str {
    match status {
        CourseStatus::Created => "Created",
        CourseStatus::Presenting => "Presenting",
        CourseStatus::Active => "Active",
        CourseStatus::Completed => "Completed",
    }
}

fn parse_status(raw: &str) -> Option<CourseStatus> {
    Some(match raw {
        "Created" => CourseStatus::Created,
        "Presenting" => CourseStatus::Presenting,
        "Active" => CourseStatus::Active,
        "Completed" => CourseStatus::Completed,
        _ => return None,
    })
}

fn classify(err: Error) -> ReadModelError {
    match err.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Routing
        | ErrorKind::Backpressure => ReadModelError::Unavailable(err.into()),
        _ => ReadModelError::Unexpected(err.into()),
    }
}

impl RedisReadModel {
    /// A client for `url` that reconnects by itself; it connects in the background, so a Redis
    /// that is down does not stop the service from starting.
    pub fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let config = Config::from_url(url)?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(3);
                c.max_command_attempts = 2;
                c.tcp = TcpConfig { nodelay: Some(true), ..Default::default() };
            })
            .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(3))
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()?;
        client.connect();
        Ok(Self {
            client,
            prefix: Arc::from(prefix),
            save: Arc::new(Script::from_lua(scripts::SAVE_COURSE)),
            mark: Arc::new(Script::from_lua(scripts::MARK_APPLIED)),
            mark_batch: Arc::new(Script::from_lua(scripts::MARK_APPLIED_BATCH)),
            swap: Arc::new(Script::from_lua(scripts::SWAP_GENERATIONS)),
        })
    }

    /// Runs `script` once per call in one pipeline (one round trip); loads the script and
    /// sends again what Redis did not know yet (after a Redis restart, for example).
    async fn eval_pipelined(
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

    /// True when Redis answers.
    pub async fn ping(&self) -> bool {
        self.client.ping::<String>(None).await.is_ok()
    }

    fn generations_key(&self) -> String {
        format!("{}generations", self.prefix)
    }

    fn key(&self, generation: u32, rest: &str) -> String {
        format!("{}{generation}:{rest}", self.prefix)
    }

    fn dead_letters_key(&self) -> String {
        format!("{}deadletters", self.prefix)
    }

    fn dead_letter_key(&self, position: u64) -> String {
        format!("{}deadletter:{position}", self.prefix)
    }

    fn lease_key(&self, generation: u32) -> String {
        format!("{}lease:{generation}", self.prefix)
    }

    fn course_key(&self, generation: u32, course: Uuid) -> String {
        self.key(generation, &format!("course:{course}"))
    }

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
    async fn all_members(&self, key: &str) -> Result<Vec<String>, ReadModelError> {
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
            (Some(instructor), _) => self.key(generation, &format!("idx:instructor:{instructor}")),
            (None, Some(status)) => {
                self.key(generation, &format!("idx:status:{}", status_name(status)))
            }
            (None, None) => self.key(generation, "idx:all"),
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
            Some(status) => self.key(generation, &format!("idx:popular:{}", status_name(status))),
            None => self.key(generation, "idx:popular"),
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
        let key = self.key(generation, &format!("course:{course}:participants"));
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
        let key = self.key(generation, &format!("user:{user}:courses"));
        let after = after.map(Joined::member);
        let members = self.zrange_lex(&key, after.as_deref(), true, limit).await?;
        Ok(members.iter().filter_map(|m| Joined::parse(m)).collect())
    }

    /// The SAVE_COURSE arguments of one course's write.
    fn save_args(&self, generation: u32, write: &CourseWrite) -> Option<(String, Vec<String>)> {
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

fn summary_fields(s: &CourseSummary) -> Vec<(&'static str, String)> {
    vec![
        ("course_id", s.course_id.to_string()),
        ("version", s.version.to_string()),
        ("title", s.title.clone()),
        ("description", s.description.clone()),
        ("category", s.category.clone()),
        ("status", status_name(s.status).to_owned()),
        ("instructor_id", s.instructor_id.to_string()),
        ("max_participants", s.max_participants.to_string()),
        ("section_count", s.section_count.to_string()),
        ("participant_count", s.participant_count.to_string()),
        ("comment_count", s.comment_count.to_string()),
        ("created_at", s.created_at.timestamp_millis().to_string()),
        ("updated_at", s.updated_at.timestamp_millis().to_string()),
    ]
}

fn parse_summary(hash: &HashMap<String, String>) -> Option<CourseSummary> {
    let get = |field: &str| hash.get(field).map(String::as_str);
    let number = |field: &str| get(field)?.parse::<u64>().ok();
    let time = |field: &str| DateTime::from_timestamp_millis(get(field)?.parse().ok()?);
    Some(CourseSummary {
        course_id: Uuid::parse_str(get("course_id")?).ok()?,
        version: number("version")?,
        title: get("title")?.to_owned(),
        description: get("description")?.to_owned(),
        category: get("category")?.to_owned(),
        status: parse_status(get("status")?)?,
        instructor_id: Uuid::parse_str(get("instructor_id")?).ok()?,
        max_participants: number("max_participants")? as u32,
        section_count: number("section_count")? as u32,
        participant_count: number("participant_count")? as u32,
        comment_count: number("comment_count")? as u32,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
    })
}

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

    async fn drop_generation(&self, generation: u32) -> Result<(), ReadModelError> {
        let pattern = format!("{}{generation}:*", self.prefix);
        let mut cursor = "0".to_owned();
        loop {
            let (next, keys): (String, Vec<String>) = self
                .client
                .custom(
                    CustomCommand::new("SCAN", ClusterHash::Random, false),
                    vec![
                        cursor.clone(),
                        "MATCH".into(),
                        pattern.clone(),
                        "COUNT".into(),
                        "10000".into(),
                    ],
                )
                .await
                .map_err(classify)?;
            if !keys.is_empty() {
                let _: i64 = self
                    .client
                    .custom(CustomCommand::new("UNLINK", ClusterHash::FirstKey, false), keys)
                    .await
                    .map_err(classify)?;
            }
            if next == "0" {
                return Ok(());
            }
            cursor = next;
        }
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
                vec![self.key(generation, "applied"), self.key(generation, "watermark")],
                vec![position.to_string()],
            )
            .await
            .map_err(classify)?;
        Ok(watermark)
    }

    async fn watermark(&self, generation: u32) -> Result<u64, ReadModelError> {
        let value: Option<u64> =
            self.client.get(self.key(generation, "watermark")).await.map_err(classify)?;
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

    async fn save_batch(
        &self,
        generation: u32,
        writes: &[CourseWrite],
    ) -> Result<Vec<Saved>, ReadModelError> {
        let calls =
            writes.iter().filter_map(|write| self.save_args(generation, write)).collect::<Vec<_>>();
        if calls.len() != writes.len() {
            return Err(ReadModelError::Unexpected(anyhow::anyhow!(
                "a course write without steps"
            )));
        }
        let applied = self.eval_pipelined(&self.save, calls).await?;
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
                vec![self.key(generation, "applied"), self.key(generation, "watermark")],
                sorted.iter().map(u64::to_string).collect::<Vec<_>>(),
            )
            .await
            .map_err(classify)?;
        Ok(watermark)
    }

    /// The summary, the participant set, and which users' own enrolment index lists the
    /// course (of the users the store names and the stored participants).
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

    async fn audit_view(
        &self,
        generation: u32,
        course_id: Uuid,
        users: &BTreeSet<Uuid>,
    ) -> Result<Option<AuditView>, ReadModelError> {
        let participants_key = self.key(generation, &format!("course:{course_id}:participants"));
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
                    .hexists(
                        self.key(generation, &format!("user:{user}:joined")),
                        course_id.to_string(),
                    )
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
        let ids = self.all_members(&self.key(generation, "idx:all")).await?;
        Ok(Some(ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect()))
    }
}

fn parse_dead_letter(position: u64, hash: &HashMap<String, String>) -> Option<DeadLetter> {
    let get = |field: &str| hash.get(field).cloned().unwrap_or_default();
    Some(DeadLetter {
        position,
        event_id: get("event_id"),
        course_id: get("course_id"),
        version: get("version").parse().ok()?,
        reason: get("reason"),
        recorded_at: DateTime::from_timestamp_millis(get("recorded_at").parse().ok()?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_members_sort_by_time_and_round_trip() {
        let a = Joined {
            id: Uuid::now_v7(),
            joined_at: DateTime::from_timestamp_millis(5).expect("t"),
        };
        let b = Joined {
            id: Uuid::now_v7(),
            joined_at: DateTime::from_timestamp_millis(1_700_000_000_000).expect("t"),
        };
        assert!(a.member() < b.member());
        assert_eq!(Joined::parse(&a.member()), Some(a));
        assert_eq!(Joined::parse("nonsense"), None);
        assert_eq!(Joined::parse("12:not-a-uuid"), None);
    }
}
