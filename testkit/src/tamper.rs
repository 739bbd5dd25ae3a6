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

    /// Stores a copy of `course_id`'s CourseCreated as its version 2: sequenced and published
    /// like any event, but it never fits the course (nor does it in a rebuild).
    pub async fn duplicate_creation(&self, course_id: &str) {
        self.tamper(&format!(
            "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, \
             payload, metadata, occurred_at) \
             SELECT gen_random_uuid(), stream_id, 2, event_type, schema_version, payload, \
             metadata, now() FROM events WHERE stream_id = '{course_id}' AND version = 1"
        ))
        .await;
    }

    /// The operator's repair: the stored event at `version` of `course_id` becomes a
    /// CourseTitleChanged to `title`.
    pub async fn repair_as_title_change(&self, course_id: &str, version: u64, title: &str) {
        let title = title.replace('\\', "\\\\").replace('"', "\\\"").replace('\'', "''");
        let payload = format!("{{\"title\": \"{title}\"}}");
        self.tamper(&format!(
            "UPDATE events SET event_type = 'CourseTitleChanged', schema_version = 1, \
             payload = '{payload}' WHERE stream_id = '{course_id}' AND version = {version}"
        ))
        .await;
    }
}
