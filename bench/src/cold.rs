//! First command on a course a replica has never seen: long streams (tens of thousands of
//! events each) against fresh courses. The cold replica is a second command-svc on the same
//! database whose memory holds none of them. One sample is noise on a shared machine, so
//! several long and fresh courses are measured, alternating which goes first, and the medians
//! are compared.

use std::time::{Duration, Instant};

use course_proto::v1::course_command_service_client::CourseCommandServiceClient;
use futures::future::try_join_all;
use tonic::transport::Channel;

use crate::load::{Caller, Connections, active_course, comment};

/// First-command latencies on the cold replica (medians over the samples).
pub struct ColdResult {
    /// Events of the shortest long course.
    pub events: u64,
    /// Samples per kind.
    pub samples: usize,
    pub long: Duration,
    pub fresh: Duration,
    /// The services' share of the machine just before the samples were taken.
    pub busy: f64,
}

/// The services' share of the machine below which the samples are taken.
const QUIET: f64 = 0.15;
/// How long to wait for that at most.
const QUIET_WAIT: Duration = Duration::from_secs(120);

/// Builds `samples` courses of about `events` events each through `warm`, then times the
/// first command on each and on as many fresh courses through `cold`.
pub async fn run(
    warm: &Connections,
    cold: &Channel,
    secret: &str,
    clients: usize,
    events: u64,
    samples: usize,
) -> anyhow::Result<ColdResult> {
    let samples = samples.max(1);
    let instructor = Caller::new(secret)?;
    let callers: Vec<Caller> =
        (0..clients.max(samples)).map(|_| Caller::new(secret)).collect::<Result<_, _>>()?;
    // Caller n comments on long course n % samples, so each course has its own participants.
    let mut long = Vec::with_capacity(samples);
    let mut start = 0;
    for course in 0..samples {
        let members: Vec<Caller> = callers.iter().skip(course).step_by(samples).cloned().collect();
        let (id, version) = active_course(&mut warm.client(course), &instructor, &members).await?;
        start = version;
        long.push(id);
    }
    let per_caller = (events.saturating_sub(start) * samples as u64).div_ceil(callers.len() as u64);
    let writers = callers.iter().enumerate().map(|(n, caller)| {
        let mut commands = warm.client(n);
        let caller = caller.clone();
        let course = long[n % samples].clone();
        async move {
            let mut version = 0;
            for _ in 0..per_caller {
                version = commands
                    .comment_course(caller.request(comment(&course)))
                    .await?
                    .into_inner()
                    .version;
            }
            anyhow::Ok((n % samples, version))
        }
    });
    let mut reached = vec![start; samples];
    for (course, version) in try_join_all(writers).await? {
        reached[course] = reached[course].max(version);
    }
    let mut fresh = Vec::with_capacity(samples);
    for course in 0..samples {
        let member = &callers[course..=course];
        fresh.push(active_course(&mut warm.client(course), &instructor, member).await?.0);
    }

    let cold_commands = CourseCommandServiceClient::new(cold.clone());
    // Open the cold replica's database connections first: they are not what is measured.
    let warm_up = (0..16).map(|_| {
        let mut commands = cold_commands.clone();
        let instructor = instructor.clone();
        async move { active_course(&mut commands, &instructor, &[]).await }
    });
    try_join_all(warm_up).await?;
    // Measured once the mesh has relayed and projected what the loads wrote: a first command
    // timed while the machine still drains a backlog measures the backlog.
    let busy = crate::cpu::until_quiet(QUIET, QUIET_WAIT).await;
    let mut long_times = Vec::with_capacity(samples);
    let mut fresh_times = Vec::with_capacity(samples);
    for course in 0..samples {
        let caller = &callers[course];
        let time = |id: String| {
            let request = caller.request(comment(&id));
            let mut commands = cold_commands.clone();
            async move {
                let t = Instant::now();
                commands.comment_course(request).await?;
                anyhow::Ok(t.elapsed())
            }
        };
        if course % 2 == 0 {
            long_times.push(time(long[course].clone()).await?);
            fresh_times.push(time(fresh[course].clone()).await?);
        } else {
            fresh_times.push(time(fresh[course].clone()).await?);
            long_times.push(time(long[course].clone()).await?);
        }
    }
    Ok(ColdResult {
        events: reached.into_iter().min().unwrap_or(start),
        samples,
        long: median(long_times),
        fresh: median(fresh_times),
        busy,
    })
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
