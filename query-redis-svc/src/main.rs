use std::process::ExitCode;

use clap::Parser;
use platform::{shutdown::shutdown_signal, telemetry};
use query_redis_svc::Application;
use query_redis_svc::config::Config;

/// The same allocator as command-svc: glibc's malloc was ~10% of this service's CPU under load
/// (`perf`, the batch path's many small allocations).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::run_process("query-redis-svc", config.service.log_format, async move {
        Application::build(config).await?.run_until_stopped(shutdown_signal()).await
    })
    .await
}
