//! The course domain, free of I/O.
//!
//! A [`Course`] is rebuilt by [`Course::apply`]ing its past [`Event`]s; [`Course::handle`] decides
//! what a [`Command`] issued by an actor produces, or which [`DomainError`] rule it breaks.
//! Input validation (lengths, URLs) lives in [`validation`] so every edge shares it.

mod command;
mod course;
mod error;
mod event;
pub mod validation;

pub use command::Command;
pub use course::{Course, CourseStatus, SNAPSHOT_SCHEMA, Section};
pub use error::{DomainError, ErrorKind};
pub use event::{Event, EventDecodeError};

/// Most sections a course may have.
pub const MAX_SECTIONS: usize = 100;
/// Largest `max_participants` a course may declare (0 means no limit).
pub const MAX_PARTICIPANTS_LIMIT: u32 = 100_000;
