use std::process::ExitCode;

use clap::Parser;
use command_svc::Application;
use command_svc::config::{Action, Cli};
use command_svc::store::EventStore;
use platform::{shutdown::shutdown_signal, telemetry};

// Measured in `make bench`: glibc's malloc/free were ~19% of command-svc's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::run_process("command-svc", cli.config.log_format, async move {
        match cli.command.unwrap_or(Action::Serve) {
            Action::Serve => {
                Application::build(cli.config).await?.run_until_stopped(shutdown_signal()).await
            }
            Action::Migrate => EventStore::migrate_url(&cli.config.database_url).await,
            Action::Token(token) => token
                .mint(cli.config.server.auth.auth_jwt_secret.as_deref())
                .map(|token| println!("{token}")),
        }
    })
    .await
}
