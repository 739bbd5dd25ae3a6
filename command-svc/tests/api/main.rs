//! Integration tests: the real command-svc, its real tonic clients, a real PostgreSQL.

mod affinity;
mod authorization;
mod availability;
mod batching;
mod broker;
mod commands;
mod concurrency;
mod event_store;
mod helpers;
mod relay;
mod resources;
