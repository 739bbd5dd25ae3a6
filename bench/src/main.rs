//! `bench`: drives a running mesh and prints what it measured.
//!
//! * the machine's limit in the same run: pgbench, one durable INSERT per transaction at
//!   `--clients` connections;
//! * commands: `--clients` participants commenting (one event, one durable commit per command)
//!   for `--seconds`, spread over one course each and all on one hot course, with the ratios to
//!   pgbench, latencies, and the Redis read model's lag sampled under that load;
//! * cold start: the first command on a course of `--cold-events` events on a replica that has
//!   never seen it (`--cold-command`), against a fresh course;
//! * relay: time from a command's response to its event arriving on the exchange;
//! * read-your-writes (idle): time from a JoinCourse response until query-redis-svc serves
//!   that version (`min_version`).

mod broker;
mod cold;
mod cpu;
mod load;
mod reference;

use std::time::{Duration, Instant};

use clap::Parser;
use course_proto::v1::catalog_query_service_client::CatalogQueryServiceClient;
use course_proto::v1::course_command_service_client::CourseCommandServiceClient;
use course_proto::v1::{self, EventEnvelope};
use futures::StreamExt;
use messaging::lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use messaging::lapin::types::FieldTable;
use prost::Message;
use tonic::Request;
use tonic::transport::Channel;
use uuid::Uuid;

// Read-model figures (issue 11); `main` does not call them yet.
mod read_model;

#[derive(Debug, Parser)]
#[command(about = "Load and latency benchmark of a running mesh")]
struct Args {
    /// command-svc URL.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    command: String,
    /// query-redis-svc URL.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    catalog: String,
    /// RabbitMQ URL and exchange, to time the relay.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    rabbitmq_url: String,
    #[arg(long, default_value = "course.events")]
    exchange: String,
    /// HS256 secret the services verify tokens with.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    secret: String,
    /// Concurrent command callers (and pgbench connections).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Length of each throughput run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Samples for the latency runs.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// gRPC connections the load is spread over.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// PostgreSQL URL for the pgbench reference (the mesh's database; pgbench uses its own table).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Only run the pgbench reference and print its tps (before the mesh holds connections).
    #[arg(long)]
    reference_only: bool,
    /// Skip the one-client latency runs (relay, read-your-writes).
    #[arg(long)]
    write_path_only: bool,
    /// pgbench's tps measured earlier in the same run (skips running it again).
    #[arg(long)]
    reference_tps: Option<f64>,
    /// A second command-svc on the same database, for the cold-start figure.
    #[arg(long)]
    cold_command: Option<String>,
    /// Events of the long course in the cold-start figure.
    #[arg(long, default_value_t = 50_000)]
    cold_events: u64,
    /// Long (and fresh) courses measured in the cold-start figure; the medians are compared.
    #[arg(long, default_value_t = 3)]
    cold_samples: usize,
    /// Events of the broker-only figure (0: skip it).
    #[arg(long, default_value_t = 20_000)]
    broker_events: usize,
    /// Partition queues of the broker-only figure (as the read models').
    #[arg(long, env = "PARTITIONS", default_value_t = 4)]
    partitions: u16,
    /// Skip the read-model figures (sustained rate, drain, rebuild).
    #[arg(long)]
    skip_read_model: bool,
    #[command(flatten)]
    read_model: read_model::ReadModelArgs,
}

fn request<T>(secret: &str, user: Uuid, message: T) -> anyhow::Result<Request<T>> {
    let token = platform::auth::mint_hs256(secret.as_bytes(), user, Duration::from_secs(3600))?;
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

fn create() -> v1::CreateCourseRequest {
    v1::CreateCourseRequest {
        title: "Benchmark".into(),
        description: "Load".into(),
        category: "Bench".into(),
        ..Default::default()
    }
}

/// Percentiles of a set of durations, in milliseconds.
fn summary(name: &str, mut samples: Vec<Duration>) {
    if samples.is_empty() {
        println!("{name:<32} no samples");
        return;
    }
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "{name:<32} n={:<6} p50={:>7.2}ms p95={:>7.2}ms p99={:>7.2}ms max={:>7.2}ms",
        samples.len(),
        at(0.50),
        at(0.95),
        at(0.99),
        at(1.0)
    );
}

async fn open_course(
    commands: &mut CourseCommandServiceClient<Channel>,
    secret: &str,
) -> anyhow::Result<String> {
    let instructor = Uuid::now_v7();
    let id = commands
        .create_course(request(secret, instructor, create())?)
        .await?
        .into_inner()
        .course_id;
    let present = v1::PresentCourseRequest { course_id: id.clone(), ..Default::default() };
    commands.present_course(request(secret, instructor, present)?).await?;
    Ok(id)
}

async fn relay_latency(args: &Args, channel: Channel) -> anyhow::Result<()> {
    let pool = messaging::pool(&args.rabbitmq_url, 1)?;
    let connection = pool.get().await?;
    let amqp = connection.create_channel().await?;
    let queue = amqp
        .queue_declare(
            "".into(),
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    amqp.queue_bind(
        queue.name().clone(),
        args.exchange.as_str().into(),
        messaging::ALL_EVENTS.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let mut deliveries = amqp
        .basic_consume(
            queue.name().clone(),
            "bench".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    let mut commands = CourseCommandServiceClient::new(channel);
    let course = open_course(&mut commands, &args.secret).await?;
    let mut samples = Vec::new();
    let mut unloaded = Vec::new();
    for _ in 0..args.samples {
        let join = v1::JoinCourseRequest { course_id: course.clone(), ..Default::default() };
        let t = Instant::now();
        let version = commands
            .join_course(request(&args.secret, Uuid::now_v7(), join)?)
            .await?
            .into_inner()
            .version;
        let answered = t.elapsed();
        loop {
            let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("consumer closed"))??;
            let envelope = EventEnvelope::decode(delivery.data.as_slice())?;
            if envelope.course_id == course && envelope.version == version {
                break;
            }
        }
        unloaded.push(answered);
        samples.push(t.elapsed() - answered);
    }
    if let Some((index, slowest)) = samples.iter().enumerate().max_by_key(|(_, d)| **d) {
        println!(
            "{:<32} sample #{index}: {:.2}ms",
            "slowest relay sample",
            slowest.as_secs_f64() * 1e3
        );
    }
    summary("JoinCourse latency (1 client)", unloaded);
    summary("response -> on the exchange", samples);
    Ok(())
}

async fn read_your_writes(args: &Args, channel: Channel) -> anyhow::Result<()> {
    let mut commands = CourseCommandServiceClient::new(channel);
    let mut catalog = CatalogQueryServiceClient::new(
        Channel::from_shared(args.catalog.clone())?.connect().await?,
    );
    let course = open_course(&mut commands, &args.secret).await?;
    let mut samples = Vec::new();
    for _ in 0..args.samples {
        let join = v1::JoinCourseRequest { course_id: course.clone(), ..Default::default() };
        let version = commands
            .join_course(request(&args.secret, Uuid::now_v7(), join)?)
            .await?
            .into_inner()
            .version;
        let t = Instant::now();
        catalog
            .get_course(v1::GetCourseRequest {
                course_id: course.clone(),
                min_version: Some(version),
            })
            .await?;
        samples.push(t.elapsed());
    }
    summary("response -> readable in Redis", samples);
    Ok(())
}

fn row(name: &str, rate: f64, reference: Option<f64>, latencies: &mut [Duration], errors: usize) {
    let ratio = reference.map_or("-".to_owned(), |r| format!("{:.2}x", rate / r));
    println!(
        "| {name:<38} | {rate:>9.0} | {ratio:>6} | {:>7.1} | {:>7.1} | {errors:>6} |",
        load::percentile(latencies, 0.50),
        load::percentile(latencies, 0.99),
    );
}

async fn write_path(args: &Args) -> anyhow::Result<()> {
    let reference = match (&args.database_url, args.reference_tps) {
        (_, Some(tps)) => Some(tps),
        (Some(url), None) => {
            Some(reference::pgbench_single_insert(url, args.clients, args.seconds)?)
        }
        (None, None) => None,
    };
    let connections = load::Connections::open(&args.command, args.connections).await?;
    let catalog = Channel::from_shared(args.catalog.clone())?.connect_lazy();
    let mut runs = Vec::new();
    for (name, shape) in [
        ("spread: one course per client", load::Shape::Spread),
        ("hot: every client on one course", load::Shape::Hot),
    ] {
        let before = cpu::sample();
        let result =
            load::run(shape, &connections, &catalog, &args.secret, args.clients, args.seconds)
                .await?;
        runs.push((name, result, cpu::shares(&before, &cpu::sample())));
    }
    println!();
    println!(
        "Write path, {} clients, {} s per run (rates per second, latencies in ms):",
        args.clients, args.seconds
    );
    println!();
    println!(
        "| {:<38} | {:>9} | {:>6} | {:>7} | {:>7} | {:>6} |",
        "workload", "rate", "ratio", "p50", "p99", "errors"
    );
    println!("|{:-<40}|{:->11}|{:->8}|{:->9}|{:->9}|{:->8}|", "", ":", ":", ":", ":", ":");
    if let Some(tps) = reference {
        println!(
            "| {:<38} | {tps:>9.0} | {:>6} | {:>7} | {:>7} | {:>6} |",
            "pgbench: 1 INSERT per transaction", "1.00x", "-", "-", "-"
        );
    }
    let mut cpu_lines = Vec::new();
    for (name, mut result, cpu) in runs {
        let rate = result.rate();
        if !cpu.is_empty() {
            let run = name.split(':').next().unwrap_or(name);
            cpu_lines.push(format!("CPU during {run}: {}", cpu::describe(&cpu)));
            cpu_lines
                .push(format!("CPU per command during {run}: {}", cpu::per_operation(&cpu, rate)));
        }
        row(name, rate, reference, &mut result.latencies, result.errors);
        if let Some(error) = &result.first_error {
            println!("|   first error: {error}");
        }
        let lag_name = format!("  Redis lag under that load (n={})", result.lag.len());
        println!(
            "| {lag_name:<38} | {:>9} | {:>6} | {:>7.1} | {:>7.1} | {:>6} |",
            "-",
            "-",
            load::percentile(&mut result.lag, 0.50),
            load::percentile(&mut result.lag, 0.99),
            result.lag_errors
        );
    }
    println!();
    for line in cpu_lines {
        println!("{line}");
    }
    println!();
    Ok(())
}

/// The hot course on two replicas of one database: its commands routed by course (all to one
/// replica) against spread round-robin over both (the two race for the course's next version).
async fn two_replicas(args: &Args, second: &str) -> anyhow::Result<()> {
    let catalog = Channel::from_shared(args.catalog.clone())?.connect_lazy();
    let urls = [args.command.clone(), second.to_owned()];
    println!();
    println!("Hot course on two command-svc replicas (same database), {} clients:", args.clients);
    println!();
    println!(
        "| {:<38} | {:>9} | {:>6} | {:>7} | {:>7} | {:>6} |",
        "routing", "rate", "ratio", "p50", "p99", "errors"
    );
    println!("|{:-<40}|{:->11}|{:->8}|{:->9}|{:->9}|{:->8}|", "", ":", ":", ":", ":", ":");
    for (name, routing) in [
        ("by course (x-course-id / CourseRouter)", load::Routing::ByCourse),
        ("round-robin", load::Routing::RoundRobin),
    ] {
        let connections =
            load::Connections::open_replicas(&urls, args.connections, routing).await?;
        let mut result = load::run(
            load::Shape::Hot,
            &connections,
            &catalog,
            &args.secret,
            args.clients,
            args.seconds,
        )
        .await?;
        let rate = result.rate();
        row(name, rate, args.reference_tps, &mut result.latencies, result.errors);
        if let Some(error) = &result.first_error {
            println!("|   first error: {error}");
        }
    }
    println!();
    Ok(())
}

async fn cold_start(args: &Args, cold_url: &str) -> anyhow::Result<()> {
    let warm = load::Connections::open(&args.command, args.connections).await?;
    let cold = Channel::from_shared(cold_url.to_owned())?.connect().await?;
    let result =
        cold::run(&warm, &cold, &args.secret, args.clients, args.cold_events, args.cold_samples)
            .await?;
    println!(
        "Cold replica, first command (median of {}): {}-event course {:.1} ms, fresh course {:.1} ms ({:.2}x); services {:.0}% busy before",
        result.samples,
        result.events,
        result.long.as_secs_f64() * 1e3,
        result.fresh.as_secs_f64() * 1e3,
        result.long.as_secs_f64() / result.fresh.as_secs_f64(),
        result.busy * 100.0
    );
    Ok(())
}

async fn broker_cost(args: &Args) -> anyhow::Result<()> {
    let cost = broker::run(&args.rabbitmq_url, args.partitions, args.broker_events).await?;
    let cores = cpu::cores();
    println!(
        "RabbitMQ alone ({} events published as the relay does, through {} quorum partitions, consumed and acked): {:.0} events/s, broker CPU {:.0} us per event: the broker alone would take {:.0}% of this {cores}-core machine at 4,000 events/s",
        cost.events,
        args.partitions,
        cost.events as f64 / cost.elapsed.as_secs_f64(),
        cost.micros_per_event(),
        cost.micros_per_event() * 4_000.0 / 1e6 / cores * 100.0,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.reference_only {
        let url = args.database_url.as_deref().ok_or_else(|| anyhow::anyhow!("--database-url"))?;
        println!("{:.0}", reference::pgbench_single_insert(url, args.clients, args.seconds)?);
        return Ok(());
    }
    let channel = Channel::from_shared(args.command.clone())?.connect().await?;
    println!(
        "bench: {} clients, {}s, {} latency samples",
        args.clients, args.seconds, args.samples
    );
    if !args.write_path_only {
        relay_latency(&args, channel.clone()).await?;
        read_your_writes(&args, channel.clone()).await?;
    }
    // Before the loads: afterwards the mesh may still be draining what they wrote, which
    // would count as the broker's own cost.
    if !args.write_path_only && args.broker_events > 0 {
        broker_cost(&args).await?;
    }
    write_path(&args).await?;
    if let Some(cold) = &args.cold_command {
        cold_start(&args, cold).await?;
        two_replicas(&args, cold).await?;
    }
    if !args.write_path_only && !args.skip_read_model {
        read_model::run(&args.command, &args.catalog, &args.secret, &args.read_model).await?;
    }
    Ok(())
}
