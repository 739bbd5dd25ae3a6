//! command-svc: validates course commands, decides them on the course aggregate and appends the
//! resulting events to PostgreSQL; also serves the event store's read side.

pub mod app;
pub mod config;
pub mod envelope;
pub mod grpc;
pub mod readiness;
pub mod relay;
pub mod sequencer;
pub mod startup;
pub mod store;

pub use startup::Application;
