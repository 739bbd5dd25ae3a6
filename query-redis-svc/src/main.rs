use std::process::ExitCode;

use clap::Parser;
use platform::{shutdown::shutdown_signal, telemetry};
use query_redis_svc::Application;
use query_redis_svc::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init_service("query-redis-svc", config.log_format);
    let result = match Application::build(config).await {
        Ok(app) => app.run_until_stopped(shutdown_signal()).await,
        Err(err) => Err(err),
    };
    telemetry::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("query-redis-svc: {err:#}");
            ExitCode::FAILURE
        }
    }
}
