//! The projection both read models share.
//!
//! * [`fold`]: the pure fold from events to a course summary plus what else changed.
//! * [`ReadModel`]: what a storage must offer — version-guarded atomic saves, a contiguous
//!   watermark of applied global positions, and generations for rebuilds.
//! * [`Projector`]: exactly-once application: duplicates skipped by version, gaps filled from
//!   the event store, conflicts between writers resolved by compare-and-set.
//! * [`consumer`]: the RabbitMQ loop, one per owned partition (manual acks, prefetch,
//!   dead-lettering, handover without reordering, reconnects).
//! * [`partitions`]: which replica consumes which partition (heartbeats, rendezvous hashing).
//! * [`rebuild`]: replay into a fresh generation and switch over.
//! * [`wait`]: read-your-writes by notification.
//! * [`dead_letter`]: events that cannot be applied, recorded so that the watermark moves on.
//! * [`lease`]: the owner and heartbeat of a rebuild, so that a crashed one is abandoned.
//! * [`audit`]: the read model compared with the event store, course by course.
//! * [`EventSource`]: where gap fills and rebuilds read events (the event store).
//! * [`read_side`]: the edge of every read RPC: the served generation, waits, paging, the
//!   one error-to-status mapping.

mod args;
pub mod audit;
pub mod consumer;
pub mod dead_letter;
mod decode;
pub mod fold;
pub mod lease;
pub mod partitions;
pub mod progress;
mod projector;
mod read_model;
pub mod read_side;
pub mod rebuild;
mod source;
pub mod wait;

pub use args::ProjectionArgs;
pub use decode::{DecodeError, decode_body, from_envelope};
pub use progress::{Applied, MemberNotice, Progress, ProgressSnapshot};
pub use projector::{Outcome, ProjectError, Projector};
pub use read_model::{CourseWrite, Generations, ReadModel, ReadModelError, Saved};
pub use source::{EventSource, Page};
pub mod host;
pub mod runtime;

/// The event-store client of a projection: it sends the service's own credential.
pub type EventStoreClient = course_proto::v1::event_store_service_client::EventStoreServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        platform::auth::Credential,
    >,
>;
