//! What every service of the mesh shares: logging, shutdown, identity and gRPC error helpers.

pub mod auth;
pub mod grpc;
pub mod shutdown;
pub mod telemetry;
