//! The gRPC edge: services, their error mapping, and the server with its tower limits.

mod commands;
mod event_store;
pub mod status;

pub use commands::CommandApi;
pub use event_store::{EventStoreApi, FollowLimits};
