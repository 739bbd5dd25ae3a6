//! The Redis read model, for one Redis (or a replicated primary) and for Redis Cluster alike.
//!
//! Keys are designed around the queries (`P` is the configured prefix, `g` the generation). The
//! part in braces is the key's hash tag: keys written together by one script share it, so each
//! script touches keys of one hash slot only, as Redis Cluster requires.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P generations` | hash | `active`, `building` |
//! | `P g:course:{id}` | hash | the course summary, including its `version` |
//! | `P g:course:{id}:participants` | zset (lex) | `{joined_ms}:{user}` in join order |
//! | `P g:course:{id}:joined` | hash | user → their member in the zset above |
//! | `P g:user:{id}:courses` | zset (lex) | `{joined_ms}:{course}` of a user's enrolments |
//! | `P g:user:{id}:joined` | hash | course → their member above |
//! | `P g:user:{id}:versions` | hash | course → the course version the enrolment reflects |
//! | `P g:{P g}:idx:all`, `…:idx:status:{S}`, `…:idx:instructor:{id}` | zset (lex) | course ids; ids are UUID v7, so lexicographic order is creation order |
//! | `P g:{P g}:idx:popular`, `…:idx:popular:{S}` | zset | course id scored by participant count |
//! | `P g:{P g}:idx:versions` | hash | course → `version:status` the index entries reflect |
//! | `P g:{P g}:applied`, `P g:{P g}:watermark` | zset, string | applied positions above the contiguous watermark |
//! | `P {P dl}:deadletters` | zset | positions of dead letters (scored by position) |
//! | `P {P dl}:deadletter:{position}` | hash | one dead letter: `event_id`, `course_id`, `version`, `reason`, `recorded_at` |
//! | `P lease:{g}` | hash | the rebuild lease of generation `g`: `owner`, `expires_at` (ms) |
//!
//! A batch is written in two pipelined rounds (`bulk`). First the keys outside the course's
//! slot: each enrolment that changed (`scripts::SAVE_ENROLMENT`, in the user's slot) and the
//! course's listing entries (`scripts::SAVE_INDEXES`, in the generation's slot). Both hold the
//! state *at a course version* and are guarded by that version, so a repeat or an older write
//! changes nothing. Then each course's own keys (`scripts::SAVE_COURSE`), guarded by the stored
//! version: only this step makes the course count as applied. A crash between the rounds leaves
//! the course at its old version, so the redelivered events write both rounds again; readers
//! never see a course version whose index entries are not written yet. The listing indexes of a
//! generation share one slot (one node answers a listing, no SCAN); a generation is dropped by
//! scanning every primary.
//!
//! `records`: how a summary and a membership are encoded; `queries`: the catalog's reads;
//! `read_model`: the projection's `ReadModel`; `scripts`: the Lua scripts.
mod bulk;
mod queries;
mod read_model;
mod records;
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::{Builder, Client, ClientLike, Config, Error, ErrorKind, ReconnectPolicy};
use fred::types::config::TcpConfig;
use fred::types::scripts::Script;
use projection::ReadModelError;
use uuid::Uuid;

pub use records::Joined;

/// The catalog read model in Redis.
#[derive(Clone)]
pub struct RedisReadModel {
    pub(crate) client: Client,
    pub(crate) prefix: Arc<str>,
    pub(crate) save: Arc<Script>,
    pub(crate) save_enrolment: Arc<Script>,
    pub(crate) save_indexes: Arc<Script>,
    pub(crate) mark: Arc<Script>,
    pub(crate) mark_batch: Arc<Script>,
    pub(crate) swap: Arc<Script>,
}

pub(crate) fn classify(err: Error) -> ReadModelError {
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
    /// `url` is `redis://…` for one Redis or `redis-cluster://host:port?node=host:port…` for a
    /// cluster. The prefix may not contain `{` or `}`: hash tags are the store's own.
    pub fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !prefix.contains(['{', '}']),
            "the key prefix {prefix:?} contains a brace: braces mark Redis Cluster hash tags, which the store sets itself"
        );
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
            save_enrolment: Arc::new(Script::from_lua(scripts::SAVE_ENROLMENT)),
            save_indexes: Arc::new(Script::from_lua(scripts::SAVE_INDEXES)),
            mark: Arc::new(Script::from_lua(scripts::MARK_APPLIED)),
            mark_batch: Arc::new(Script::from_lua(scripts::MARK_APPLIED_BATCH)),
            swap: Arc::new(Script::from_lua(scripts::SWAP_GENERATIONS)),
        })
    }

    /// True when Redis answers.
    pub async fn ping(&self) -> bool {
        self.client.ping::<String>(None).await.is_ok()
    }

    pub(crate) fn generations_key(&self) -> String {
        format!("{}generations", self.prefix)
    }

    /// A key of the generation's own hash slot: its listing indexes and its applied positions.
    pub(crate) fn meta_key(&self, generation: u32, rest: &str) -> String {
        let p = &self.prefix;
        format!("{p}{generation}:{{{p}{generation}}}:{rest}")
    }

    pub(crate) fn dead_letters_key(&self) -> String {
        format!("{p}{{{p}dl}}:deadletters", p = self.prefix)
    }

    pub(crate) fn dead_letter_key(&self, position: u64) -> String {
        format!("{p}{{{p}dl}}:deadletter:{position}", p = self.prefix)
    }

    pub(crate) fn lease_key(&self, generation: u32) -> String {
        format!("{}lease:{generation}", self.prefix)
    }

    /// A course's summary hash; `course_key(..) + ":participants"` and `+ ":joined"` are its
    /// other keys (same slot).
    pub(crate) fn course_key(&self, generation: u32, course: Uuid) -> String {
        format!("{}{generation}:course:{{{course}}}", self.prefix)
    }

    /// A user's keys share this stem: `:courses`, `:joined`, `:versions`.
    pub(crate) fn user_key(&self, generation: u32, user: Uuid, rest: &str) -> String {
        format!("{}{generation}:user:{{{user}}}:{rest}", self.prefix)
    }

    /// Every key of a generation matches this pattern.
    pub(crate) fn generation_pattern(&self, generation: u32) -> String {
        format!("{}{generation}:*", self.prefix)
    }
}
