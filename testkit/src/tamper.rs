//! Writing straight into a command-svc's event store, to produce what the command path never
//! writes (an event that does not fit its course) and to repair it again.

use sea_orm::{ConnectionTrait, Database};

use crate::CommandSvc;

impl CommandSvc {
    /// Runs `sql` on this command-svc's database.
    pub async fn tamper(&self, sql: &str) {
        let mut options = sea_orm::ConnectOptions::new(self.config.database_url.clone());
        options.sqlx_logging(false);
        let conn = Database::connect(options).await.expect("the event store's database answers");
        conn.execute_unprepared(sql).await.expect("tampering statement");
        conn.close().await.expect("close");
    }
}
