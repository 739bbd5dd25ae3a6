use std::process::ExitCode;

use clap::Parser;
use platform::{shutdown::shutdown_signal, telemetry};
use query_mongo_svc::Application;
use query_mongo_svc::config::Config;

/// The same allocator as the other two services (measured there: glibc's malloc took 10-19% of
/// their CPU under load); the three share one shape.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::run_process("query-mongo-svc", config.service.log_format, async move {
        Application::build(config).await?.run_until_stopped(shutdown_signal()).await
    })
    .await
}
