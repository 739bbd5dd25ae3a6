//! First command on a course a replica has never seen: a long stream (tens of thousands of
//! events) against a fresh course. The cold replica is a second command-svc on the same
//! database whose memory holds neither course.

use std::time::{Duration, Instant};

use course_proto::v1::course_command_service_client::CourseCommandServiceClient;
use futures::future::try_join_all;
use tonic::transport::Channel;

use crate::load::{Caller, Connections, active_course, comment};

/// First-command latencies on the cold replica.
pub struct ColdResult {
    pub events: u64,
    pub long: Duration,
    pub fresh: Duration,
}

/// Builds a course of about `events` events through `warm`, then times the first command on it
/// and on a fresh course through `cold`.
pub async fn run(
    warm: &Connections,
    cold: &Channel,
    secret: &str,
    clients: usize,
    events: u64,
) -> anyhow::Result<ColdResult> {
    let instructor = Caller::new(secret)?;
    let callers: Vec<Caller> =
        (0..clients).map(|_| Caller::new(secret)).collect::<Result<_, _>>()?;
    let (long, start) = active_course(&mut warm.client(0), &instructor, &callers).await?;
    let per_client = events.saturating_sub(start).div_ceil(clients as u64);
    let writers = callers.iter().enumerate().map(|(n, caller)| {
        let mut commands = warm.client(n);
        let caller = caller.clone();
        let course = long.clone();
        async move {
            let mut version = 0;
            for _ in 0..per_client {
                version = commands
                    .comment_course(caller.request(comment(&course)))
                    .await?
                    .into_inner()
                    .version;
            }
            anyhow::Ok(version)
        }
    });
    let version = try_join_all(writers).await?.into_iter().max().unwrap_or(start);
    let (fresh, _) = active_course(&mut warm.client(1), &instructor, &callers[..1]).await?;

    let mut cold_commands = CourseCommandServiceClient::new(cold.clone());
    // Open the cold replica's database connections first: they are not what is measured.
    let warm_up = (0..16).map(|_| {
        let mut commands = cold_commands.clone();
        let instructor = instructor.clone();
        async move { active_course(&mut commands, &instructor, &[]).await }
    });
    try_join_all(warm_up).await?;
    let t = Instant::now();
    cold_commands.comment_course(callers[0].request(comment(&long))).await?;
    let long_latency = t.elapsed();
    let t = Instant::now();
    cold_commands.comment_course(callers[0].request(comment(&fresh))).await?;
    let fresh_latency = t.elapsed();
    Ok(ColdResult { events: version, long: long_latency, fresh: fresh_latency })
}
