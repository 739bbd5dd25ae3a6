//! query-mongo-svc: whole course documents, search, comments, enrolments and statistics served
//! from a MongoDB read model that the shared projection keeps exact.

pub mod config;
pub mod grpc;
pub mod page_token;
pub mod startup;
pub mod store;

pub use startup::Application;
