use std::process::ExitCode;

use clap::Parser;
use platform::{shutdown::shutdown_signal, telemetry};
use query_redis_svc::Application;
use query_redis_svc::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::run_process("query-redis-svc", config.service.log_format, async move {
        Application::build(config).await?.run_until_stopped(shutdown_signal()).await
    })
    .await
}
