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

impl CommandSvc {
    /// Appends `count` UserJoinedCourse events to `course_id` after its `version`, in one SQL
    /// statement (the payload and metadata as command-svc stores them; the metadata is the
    /// creation's), without global positions: command-svc's sequencer numbers them and its relay
    /// publishes them like any event written by hand. A command path that takes minutes for
    /// 100,000 joins takes seconds here. Returns the users in join order (the i-th joined at
    /// version `version + i + 1`, one millisecond after the one before).
    pub async fn join_many(&self, course_id: &str, version: u64, count: u64) -> Vec<uuid::Uuid> {
        let prefix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        self.tamper(&format!(
            "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, \
             payload, metadata, occurred_at) \
             SELECT gen_random_uuid(), c.stream_id, {version} + n, 'UserJoinedCourse', 1, \
             jsonb_build_object('user_id', '{prefix}-0000-4000-8000-' || lpad(to_hex(n), 12, '0')), \
             c.metadata, now() + n * interval '1 millisecond' \
             FROM generate_series(1, {count}) AS n, \
             (SELECT stream_id, metadata FROM events WHERE stream_id = '{course_id}' AND version = 1) AS c"
        ))
        .await;
        (1..=count)
            .map(|n| {
                uuid::Uuid::parse_str(&format!("{prefix}-0000-4000-8000-{n:012x}")).expect("a UUID")
            })
            .collect()
    }
}
