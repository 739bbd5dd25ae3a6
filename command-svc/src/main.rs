use std::time::Duration;

use clap::Parser;
use command_svc::config::{Action, Cli};
use command_svc::store::EventStore;
use command_svc::Application;
use platform::{auth, shutdown::shutdown_signal, telemetry};
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.config.log_format);
    let config = cli.config;
    match cli.command.unwrap_or(Action::Serve) {
        Action::Serve => {
            let app = Application::build(config).await?;
            app.run_until_stopped(shutdown_signal()).await
        }
        Action::Migrate => {
            let store = EventStore::connect_lazy(&config.database_url, 2).await?;
            store.migrate().await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Action::Token { sub, ttl_secs } => {
            let secret = config.auth_jwt_secret.ok_or_else(|| anyhow::anyhow!("set AUTH_JWT_SECRET"))?;
            let sub = sub.unwrap_or_else(Uuid::now_v7);
            println!("{}", auth::mint_hs256(secret.as_bytes(), sub, Duration::from_secs(ttl_secs))?);
            Ok(())
        }
    }
}
