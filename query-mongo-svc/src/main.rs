use std::process::ExitCode;

use clap::Parser;
use platform::{shutdown::shutdown_signal, telemetry};
use query_mongo_svc::Application;
use query_mongo_svc::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init_service("query-mongo-svc", config.log_format);
    let result = match Application::build(config).await {
        Ok(app) => app.run_until_stopped(shutdown_signal()).await,
        Err(err) => Err(err),
    };
    telemetry::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("query-mongo-svc: {err:#}");
            ExitCode::FAILURE
        }
    }
}
