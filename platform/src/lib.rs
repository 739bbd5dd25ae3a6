//! What every service of the mesh shares: logging and tracing, metrics, shutdown, identity and
//! gRPC helpers.

pub mod auth;
pub mod grpc;
pub mod metrics;
pub mod propagation;
pub mod retry;
pub mod server;
pub mod shutdown;
pub mod telemetry;
