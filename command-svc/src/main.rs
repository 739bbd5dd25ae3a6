use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use command_svc::Application;
use command_svc::config::{Action, Cli};
use command_svc::store::EventStore;
use platform::{auth, shutdown::shutdown_signal, telemetry};
use uuid::Uuid;

// Measured in `make bench`: glibc's malloc/free were ~19% of command-svc's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_service("command-svc", cli.config.log_format);
    let result = match cli.command.unwrap_or(Action::Serve) {
        Action::Serve => match Application::build(cli.config).await {
            Ok(app) => app.run_until_stopped(shutdown_signal()).await,
            Err(err) => Err(err),
        },
        Action::Migrate => migrate(&cli.config.database_url).await,
        Action::Token { sub, roles, ttl_secs, private_key_file } => {
            let sub = sub.unwrap_or_else(|| Uuid::now_v7().to_string());
            let mut roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            if roles.is_empty() && Uuid::parse_str(&sub).is_ok() {
                roles.push(auth::ROLE_USER);
            }
            let ttl = Duration::from_secs(ttl_secs);
            let token = match (private_key_file, cli.config.server.auth.auth_jwt_secret) {
                (Some(path), _) => std::fs::read(&path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
                    .and_then(|pem| auth::mint_pem_with_roles(&pem, &sub, &roles, ttl)),
                (None, Some(secret)) => {
                    auth::mint_hs256_with_roles(secret.as_bytes(), &sub, &roles, ttl)
                }
                (None, None) => Err(anyhow::anyhow!(
                    "set AUTH_JWT_SECRET or --private-key-file to mint a token"
                )),
            };
            token.map(|token| println!("{token}"))
        }
    };
    telemetry::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("command-svc: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(database_url: &str) -> anyhow::Result<()> {
    EventStore::connect_lazy(database_url, 2).await?.migrate().await?;
    tracing::info!("migrations applied");
    Ok(())
}
