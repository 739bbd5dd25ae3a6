//! Read-model figures (issue 11), against a running mesh:
//!
//! * sustained end-to-end rate: offered JoinCourse load stepped up; at each step, the lag of
//!   the Redis read model (a command's response until `GetCourse{min_version}` answers) is
//!   sampled; the figure is the highest offered rate whose lag p99 stays under the budget while
//!   command-svc still delivers it;
//! * drain rate: query-redis-svc is paused (SIGSTOP) while a backlog is written, then resumed;
//!   events applied per second until it has caught up;
//! * rebuild rate: `RebuildReadModel{wait:true}` over everything written so far;
//! * the reference: `redis-benchmark -P 16 -t set` on the same Redis.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use course_proto::v1::catalog_query_service_client::CatalogQueryServiceClient;
use course_proto::v1::course_command_service_client::CourseCommandServiceClient;
use course_proto::v1::projection_admin_service_client::ProjectionAdminServiceClient;
use course_proto::v1::{self};
use tokio::sync::Semaphore;
use tonic::Request;
use tonic::transport::Channel;
use uuid::Uuid;

/// Settings of the read-model figures (flatten into the bench's clap `Args`).
#[derive(Debug, Clone, clap::Args)]
pub struct ReadModelArgs {
    /// Offered JoinCourse rates to step through (commands/s); stepping stops at the first
    /// rate that misses the lag budget or that command-svc cannot deliver.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "250,500,1000,1500,2000,2500,3000,4000,5000"
    )]
    pub rates: Vec<u32>,
    /// Skip the stepped load (drain and rebuild figures only).
    #[arg(long)]
    pub skip_sustained: bool,
    /// Length of each step.
    #[arg(long, default_value_t = 6)]
    pub step_seconds: u64,
    /// Budget for the read model's lag p99 (milliseconds).
    #[arg(long, default_value_t = 50)]
    pub lag_budget_ms: u64,
    /// Commands in flight at most (the offered load is open-loop up to this).
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,
    /// Courses the load is spread over.
    #[arg(long, default_value_t = 64)]
    pub courses: usize,
    /// Every n-th command is followed by a timed read with its `min_version`.
    #[arg(long, default_value_t = 4)]
    pub sample_every: u64,
    /// query-redis-svc's pid file: paused with SIGSTOP to build a backlog for the drain rate
    /// (no drain figure without it).
    #[arg(long)]
    pub catalog_pid_file: Option<PathBuf>,
    /// Backlog (events) built while query-redis-svc is paused.
    #[arg(long, default_value_t = 20_000)]
    pub drain_events: u64,
    /// The Redis that query-redis-svc uses, for the reference `redis-benchmark`.
    #[arg(long, default_value = "127.0.0.1")]
    pub redis_host: String,
    #[arg(long, default_value_t = 6379)]
    pub redis_port: u16,
}

/// What one step of offered load measured.
#[derive(Debug, Clone)]
pub struct Step {
    /// Offered commands/s.
    pub offered: u32,
    /// Commands/s answered OK.
    pub achieved: f64,
    /// Commands that failed or could not be sent (in-flight cap reached).
    pub failed: u64,
    /// Read-model lag percentiles (ms): p50, p99, max.
    pub lag_ms: (f64, f64, f64),
    /// Command latency percentiles (ms): p50, p99.
    pub command_ms: (f64, f64),
}

impl Step {
    fn passes(&self, budget_ms: u64) -> bool {
        self.lag_ms.1 < budget_ms as f64
            && self.achieved >= 0.95 * f64::from(self.offered)
            && self.failed == 0
    }
}

/// Every figure, for printing.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Highest offered rate within the lag budget.
    pub sustained: Option<u32>,
    /// Events/s applied while draining a backlog.
    pub drain: Option<f64>,
    /// Events/s replayed by a rebuild, and the events replayed.
    pub rebuild: Option<(f64, u64)>,
    /// Events/s `ReadAll` streams on its own.
    pub read_all: Option<f64>,
    /// `redis-benchmark -P 16 -t set` requests/s.
    pub redis_set_p16: Option<f64>,
}

fn authorized<T>(secret: &str, user: Uuid, message: T) -> anyhow::Result<Request<T>> {
    let token = platform::auth::mint_hs256(secret.as_bytes(), user, Duration::from_secs(3600))?;
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
}

/// Creates and presents `count` courses that anyone may join.
async fn open_courses(
    command: &Channel,
    secret: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let mut commands = CourseCommandServiceClient::new(command.clone());
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let instructor = Uuid::now_v7();
        let create = v1::CreateCourseRequest {
            title: "Read-model bench".into(),
            description: "Load".into(),
            category: "Bench".into(),
            ..Default::default()
        };
        let id = commands
            .create_course(authorized(secret, instructor, create)?)
            .await?
            .into_inner()
            .course_id;
        let present = v1::PresentCourseRequest { course_id: id.clone(), ..Default::default() };
        commands.present_course(authorized(secret, instructor, present)?).await?;
        out.push(id);
    }
    Ok(out)
}

/// One JoinCourse by a fresh user; returns the course's new version.
async fn join(command: &Channel, secret: &str, course: &str) -> anyhow::Result<u64> {
    let mut commands = CourseCommandServiceClient::new(command.clone());
    let request = v1::JoinCourseRequest { course_id: course.to_owned(), ..Default::default() };
    Ok(commands
        .join_course(authorized(secret, Uuid::now_v7(), request)?)
        .await?
        .into_inner()
        .version)
}

/// Offers `rate` commands/s for `seconds`, sampling the read model's lag.
pub async fn offered_step(
    command: &Channel,
    catalog: &Channel,
    secret: &str,
    courses: &[String],
    rate: u32,
    args: &ReadModelArgs,
) -> anyhow::Result<Step> {
    let permits = Arc::new(Semaphore::new(args.max_in_flight));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (samples_tx, mut samples_rx) =
        tokio::sync::mpsc::unbounded_channel::<(Duration, Option<Duration>)>();
    let started = Instant::now();
    let length = Duration::from_secs(args.step_seconds);
    let mut launched: u64 = 0;
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < length {
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while launched < due {
            launched += 1;
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                failed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let course = courses[launched as usize % courses.len()].clone();
            let sampled = launched.is_multiple_of(args.sample_every.max(1));
            let (command, catalog, secret) = (command.clone(), catalog.clone(), secret.to_owned());
            let (ok, failed, samples) = (ok.clone(), failed.clone(), samples_tx.clone());
            tasks.spawn(async move {
                let t = Instant::now();
                match join(&command, &secret, &course).await {
                    Ok(version) => {
                        let latency = t.elapsed();
                        ok.fetch_add(1, Ordering::Relaxed);
                        let mut lag = None;
                        if sampled {
                            let answered = Instant::now();
                            let read = CatalogQueryServiceClient::new(catalog)
                                .get_course(v1::GetCourseRequest {
                                    course_id: course,
                                    min_version: Some(version),
                                })
                                .await;
                            // A read that gives up (UNAVAILABLE: behind) counts with its wait.
                            let _ = read;
                            lag = Some(answered.elapsed());
                        }
                        let _ = samples.send((latency, lag));
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(permit);
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        while tasks.try_join_next().is_some() {}
    }
    let offered_for = started.elapsed();
    while tasks.join_next().await.is_some() {}
    drop(samples_tx);
    let mut latencies = Vec::new();
    let mut lags = Vec::new();
    while let Some((latency, lag)) = samples_rx.recv().await {
        latencies.push(latency);
        lags.extend(lag);
    }
    latencies.sort_unstable();
    lags.sort_unstable();
    Ok(Step {
        offered: rate,
        achieved: ok.load(Ordering::Relaxed) as f64 / offered_for.as_secs_f64(),
        failed: failed.load(Ordering::Relaxed),
        lag_ms: (percentile(&lags, 0.5), percentile(&lags, 0.99), percentile(&lags, 1.0)),
        command_ms: (percentile(&latencies, 0.5), percentile(&latencies, 0.99)),
    })
}

/// Steps the offered load up until the lag budget is missed; returns every step and the
/// highest rate that passed.
pub async fn sustained_rate(
    command: &Channel,
    catalog: &Channel,
    secret: &str,
    args: &ReadModelArgs,
) -> anyhow::Result<(Vec<Step>, Option<u32>)> {
    let courses = open_courses(command, secret, args.courses).await?;
    let mut steps = Vec::new();
    let mut best = None;
    for rate in &args.rates {
        // Each step starts from a caught-up read model: what earlier figures wrote (the write
        // path, the cold-start courses) must not be counted as this step's lag.
        catch_up(command, catalog).await?;
        let step = offered_step(command, catalog, secret, &courses, *rate, args).await?;
        println!(
            "offered {:>5}/s  achieved {:>7.0}/s  failed {:>5}  lag p50={:>7.2}ms p99={:>8.2}ms max={:>8.2}ms  command p50={:>6.2}ms p99={:>7.2}ms  {}",
            step.offered,
            step.achieved,
            step.failed,
            step.lag_ms.0,
            step.lag_ms.1,
            step.lag_ms.2,
            step.command_ms.0,
            step.command_ms.1,
            if step.passes(args.lag_budget_ms) { "ok" } else { "over budget" }
        );
        let passed = step.passes(args.lag_budget_ms);
        steps.push(step);
        if !passed {
            break;
        }
        best = Some(*rate);
    }
    Ok((steps, best))
}

/// An operator's bearer token (admin RPCs, the event store), set once by [`run`].
static OPERATOR: std::sync::OnceLock<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
    std::sync::OnceLock::new();

/// `message` as the operator.
fn as_operator<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(bearer) = OPERATOR.get() {
        request.metadata_mut().insert("authorization", bearer.clone());
    }
    request
}

async fn status(catalog: &Channel) -> anyhow::Result<v1::GetProjectionStatusResponse> {
    Ok(ProjectionAdminServiceClient::new(catalog.clone())
        .get_projection_status(as_operator(v1::GetProjectionStatusRequest {}))
        .await?
        .into_inner())
}

/// Waits until the read model has applied everything written so far; returns that position.
async fn catch_up(command: &Channel, catalog: &Channel) -> anyhow::Result<u64> {
    let applied = status(catalog).await?.applied_position;
    let target = head(command, applied).await?;
    let started = Instant::now();
    while status(catalog).await?.applied_position < target {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the read model does not catch up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if target > applied {
        println!(
            "  (read model caught up on {} events in {:.0} ms first)",
            target - applied,
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(target)
}

/// The global position of the newest event (the head of the event store), read from `after`.
async fn head(command: &Channel, after: u64) -> anyhow::Result<u64> {
    use futures::StreamExt;
    let mut client =
        course_proto::v1::event_store_service_client::EventStoreServiceClient::new(command.clone());
    let mut stream = client
        .read_all(as_operator(v1::ReadAllRequest {
            from_position: after,
            max_count: 0,
            follow: false,
        }))
        .await?
        .into_inner();
    let mut head = after;
    while let Some(item) = stream.next().await {
        if let Some(event) = item?.event {
            head = head.max(event.global_position);
        }
    }
    Ok(head)
}

fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// Pauses query-redis-svc, writes a backlog of about `drain_events` events with 64 closed-loop
/// clients, resumes it and measures how fast it applies the backlog. Returns events/s.
pub async fn drain_rate(
    command: &Channel,
    catalog: &Channel,
    secret: &str,
    pid: u32,
    events: u64,
) -> anyhow::Result<f64> {
    let courses = open_courses(command, secret, 64).await?;
    // Start from a caught-up read model.
    let caught_up = catch_up(command, catalog).await?;
    signal(pid, "STOP")?;
    let written = Arc::new(AtomicU64::new(0));
    let load = async {
        let mut workers = Vec::new();
        for course in courses {
            let (command, secret, written) = (command.clone(), secret.to_owned(), written.clone());
            workers.push(tokio::spawn(async move {
                while written.load(Ordering::Relaxed) < events {
                    if join(&command, &secret, &course).await.is_ok() {
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for worker in workers {
            let _ = worker.await;
        }
    };
    // Never leave the service stopped, whatever happens to the load.
    let loaded = tokio::time::timeout(Duration::from_secs(120), load).await;
    let target = head(command, caught_up).await;
    signal(pid, "CONT")?;
    loaded.map_err(|_| anyhow::anyhow!("the backlog took longer than 120 s to write"))?;
    let target = target?;
    let resumed = Instant::now();
    loop {
        if status(catalog).await?.applied_position >= target {
            let seconds = resumed.elapsed().as_secs_f64();
            let drained = target - caught_up;
            println!(
                "drain: a backlog of {drained} events applied in {seconds:.2}s after resuming"
            );
            return Ok(drained as f64 / seconds);
        }
        anyhow::ensure!(resumed.elapsed() < Duration::from_secs(300), "did not drain in 300 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How fast the event store's `ReadAll` alone streams every event (events/s): the ceiling
/// of any rebuild.
pub async fn read_all_rate(command: &Channel) -> anyhow::Result<f64> {
    let started = Instant::now();
    let events = head(command, 0).await?;
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// Rebuilds the Redis read model from the event store; returns (events/s, events replayed).
pub async fn rebuild_rate(catalog: &Channel) -> anyhow::Result<(f64, u64)> {
    let before = status(catalog).await?;
    let started = Instant::now();
    ProjectionAdminServiceClient::new(catalog.clone())
        .rebuild_read_model(as_operator(v1::RebuildReadModelRequest { wait: true }))
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let events = before.applied_position;
    Ok((events as f64 / seconds, events))
}

/// `redis-benchmark -P 16 -t set` on `host:port`: SET requests/s.
pub async fn redis_set_reference(host: &str, port: u16) -> anyhow::Result<f64> {
    let (host, port) = (host.to_owned(), port.to_string());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-benchmark")
            .args(["-h", &host, "-p", &port, "-P", "16", "-t", "set", "-n", "1000000", "-q"])
            .output()
    })
    .await??;
    anyhow::ensure!(output.status.success(), "redis-benchmark failed");
    let text = String::from_utf8_lossy(&output.stdout);
    // `-q` prints progress lines separated by `\r`, then `SET: 233644.86 requests per second, ...`.
    text.rsplit(['\r', '\n'])
        .find_map(|line| line.trim().strip_prefix("SET: ")?.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("unexpected redis-benchmark output: {text}"))
}

/// Runs every read-model figure and prints them.
pub async fn run(
    command_url: &str,
    catalog_url: &str,
    secret: &str,
    args: &ReadModelArgs,
) -> anyhow::Result<Figures> {
    let command = Channel::from_shared(command_url.to_owned())?.connect().await?;
    let catalog = Channel::from_shared(catalog_url.to_owned())?.connect().await?;
    let token = platform::auth::mint_hs256_with_roles(
        secret.as_bytes(),
        "bench-operator",
        &[platform::auth::ROLE_OPERATOR],
        Duration::from_secs(7200),
    )?;
    let _ = OPERATOR.set(format!("Bearer {token}").parse()?);
    let mut figures = Figures::default();
    println!(
        "read model: stepping the offered JoinCourse load (lag budget p99 < {} ms)",
        args.lag_budget_ms
    );
    let sustained = if args.skip_sustained {
        None
    } else {
        sustained_rate(&command, &catalog, secret, args).await?.1
    };
    figures.sustained = sustained;
    if let Some(pid_file) = &args.catalog_pid_file {
        let pid: u32 = std::fs::read_to_string(pid_file)?.trim().parse()?;
        figures.drain = Some(drain_rate(&command, &catalog, secret, pid, args.drain_events).await?);
    }
    let read_all = read_all_rate(&command).await?;
    println!("ReadAll alone                    {read_all:.0} events/s (the ceiling of a rebuild)");
    figures.read_all = Some(read_all);
    figures.rebuild = Some(rebuild_rate(&catalog).await?);
    figures.redis_set_p16 = redis_set_reference(&args.redis_host, args.redis_port).await.ok();
    let show = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"));
    println!(
        "sustained end-to-end rate        {} commands/s with Redis lag p99 < {} ms",
        sustained.map_or_else(|| "none".to_owned(), |r| r.to_string()),
        args.lag_budget_ms
    );
    println!("drain rate                       {} events/s", show(figures.drain));
    if let Some((rate, events)) = figures.rebuild {
        println!("rebuild (Redis)                  {rate:.0} events/s over {events} events");
    }
    println!(
        "redis-benchmark -P 16 -t set     {} requests/s (reference)",
        show(figures.redis_set_p16)
    );
    Ok(figures)
}
