//! SeaORM entities of the event store's tables.

pub mod command_log;
pub mod events;
