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
//! pipeline (`bulk`): it checks the course hash's version and applies the summary and every index change
//! of the course's events atomically, so a duplicate or a concurrent writer can never double a
//! count or an index entry. The scripts touch keys not passed in `KEYS`, so this layout is for a
//! single Redis (or a replicated primary), not Redis Cluster.

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

    /// True when Redis answers.
    pub async fn ping(&self) -> bool {
        self.client.ping::<String>(None).await.is_ok()
    }

    pub(crate) fn generations_key(&self) -> String {
        format!("{}generations", self.prefix)
    }

    pub(crate) fn key(&self, generation: u32, rest: &str) -> String {
        format!("{}{generation}:{rest}", self.prefix)
    }

    pub(crate) fn dead_letters_key(&self) -> String {
        format!("{}deadletters", self.prefix)
    }

    pub(crate) fn dead_letter_key(&self, position: u64) -> String {
        format!("{}deadletter:{position}", self.prefix)
    }

    pub(crate) fn lease_key(&self, generation: u32) -> String {
        format!("{}lease:{generation}", self.prefix)
    }

    pub(crate) fn course_key(&self, generation: u32, course: Uuid) -> String {
        self.key(generation, &format!("course:{course}"))
    }
}
