//! query-redis-svc: the course catalog read model in Redis, fed by the shared exact projection,
//! and `course.v1.CatalogQueryService` over it.

pub mod config;
pub mod grpc;
pub mod startup;
pub mod store;

pub use startup::Application;
