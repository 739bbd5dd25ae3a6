//! `bench`: drives a running mesh and prints what it measured.
//!
//! * commands: `--clients` concurrent callers for `--seconds`, each creating a course and
//!   joining it with fresh users (one durable commit per command);
//! * relay: time from a command's response to its event arriving on the exchange;
//! * read-your-writes: time from a JoinCourse response until query-redis-svc serves that
//!   version (`min_version`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
#[allow(dead_code)]
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
    /// Concurrent command callers.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Length of the throughput run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Samples for the latency runs.
    #[arg(long, default_value_t = 200)]
    samples: usize,
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

async fn throughput(args: &Args, channel: Channel) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.clients {
        let mut commands = CourseCommandServiceClient::new(channel.clone());
        let secret = args.secret.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let course = open_course(&mut commands, &secret).await?;
            while !stop.load(Ordering::Relaxed) {
                let join =
                    v1::JoinCourseRequest { course_id: course.clone(), ..Default::default() };
                let t = Instant::now();
                commands.join_course(request(&secret, Uuid::now_v7(), join)?).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "JoinCourse throughput            {:.0} commands/s with {} clients over {:.1}s",
        all.len() as f64 / elapsed,
        args.clients,
        elapsed
    );
    summary("JoinCourse latency (loaded)", all);
    Ok(())
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let channel = Channel::from_shared(args.command.clone())?.connect().await?;
    println!(
        "bench: {} clients, {}s, {} latency samples",
        args.clients, args.seconds, args.samples
    );
    relay_latency(&args, channel.clone()).await?;
    read_your_writes(&args, channel.clone()).await?;
    throughput(&args, channel).await?;
    Ok(())
}
