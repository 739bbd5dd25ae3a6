//! Command load: every client is a participant who keeps commenting (one event, one durable
//! commit per command), on a course of its own (`spread`) or all on one course (`hot`), while a
//! sampler measures how long the Redis read model takes to serve what a command wrote.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use course_proto::affinity::replica_for;
use course_proto::v1;
use course_proto::v1::catalog_query_service_client::CatalogQueryServiceClient;
use course_proto::v1::course_command_service_client::CourseCommandServiceClient;
use futures::future::try_join_all;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use uuid::Uuid;

/// A caller with a long-lived token.
#[derive(Clone)]
pub struct Caller {
    bearer: MetadataValue<tonic::metadata::Ascii>,
}

impl Caller {
    pub fn new(secret: &str) -> anyhow::Result<Self> {
        let user = Uuid::now_v7();
        let token = platform::auth::mint_hs256(secret.as_bytes(), user, Duration::from_secs(7200))?;
        Ok(Self { bearer: format!("Bearer {token}").parse()? })
    }

    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert("authorization", self.bearer.clone());
        request
    }
}

/// Connections to one or more command-svc replicas that callers take turns on.
#[derive(Clone)]
pub struct Connections {
    replicas: Vec<Vec<Channel>>,
    routing: Routing,
}

/// How a caller picks a replica (with one replica, both are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// The replica the course hashes to (`course_proto::affinity`).
    ByCourse,
    /// Caller `n` uses replica `n % replicas`, whatever the course.
    RoundRobin,
}

impl Connections {
    /// `count` connections to one replica.
    pub async fn open(url: &str, count: usize) -> anyhow::Result<Self> {
        Self::open_replicas(&[url.to_owned()], count, Routing::ByCourse).await
    }

    /// `count` connections to each replica, in the replicas' stable order.
    pub async fn open_replicas(
        urls: &[String],
        count: usize,
        routing: Routing,
    ) -> anyhow::Result<Self> {
        let mut replicas = Vec::new();
        for url in urls {
            let mut channels = Vec::new();
            for _ in 0..count.max(1) {
                channels.push(Channel::from_shared(url.clone())?.connect().await?);
            }
            replicas.push(channels);
        }
        Ok(Self { replicas, routing })
    }

    /// Caller `n`'s client on the first replica (course set-up).
    pub fn client(&self, n: usize) -> CourseCommandServiceClient<Channel> {
        let channels = &self.replicas[0];
        CourseCommandServiceClient::new(channels[n % channels.len()].clone())
    }

    /// Caller `n`'s client for commands on `course`.
    pub fn client_for(&self, n: usize, course: &str) -> CourseCommandServiceClient<Channel> {
        let replica = match self.routing {
            Routing::ByCourse => {
                Uuid::parse_str(course).map(|id| replica_for(&id, self.replicas.len())).unwrap_or(0)
            }
            Routing::RoundRobin => n % self.replicas.len(),
        };
        let channels = &self.replicas[replica];
        CourseCommandServiceClient::new(channels[n % channels.len()].clone())
    }
}

/// Creates an active course that `participants` have joined; returns its id and version.
pub async fn active_course(
    commands: &mut CourseCommandServiceClient<Channel>,
    instructor: &Caller,
    participants: &[Caller],
) -> anyhow::Result<(String, u64)> {
    let created = commands
        .create_course(instructor.request(v1::CreateCourseRequest {
            title: "Benchmark".into(),
            description: "Load".into(),
            category: "Bench".into(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    let id = created.course_id;
    let present = v1::PresentCourseRequest { course_id: id.clone(), ..Default::default() };
    commands.present_course(instructor.request(present)).await?;
    for participant in participants {
        let join = v1::JoinCourseRequest { course_id: id.clone(), ..Default::default() };
        commands.join_course(participant.request(join)).await?;
    }
    let activate = v1::ActivateCourseRequest { course_id: id.clone(), ..Default::default() };
    let version =
        commands.activate_course(instructor.request(activate)).await?.into_inner().version;
    Ok((id, version))
}

pub fn comment(course_id: &str) -> v1::CommentCourseRequest {
    v1::CommentCourseRequest {
        course_id: course_id.to_owned(),
        text: "A comment of a typical length, written during the benchmark.".into(),
        ..Default::default()
    }
}

/// Spread (one course per client) or hot (every client on one course).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Spread,
    Hot,
}

/// What one load run measured.
pub struct LoadResult {
    pub commands: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// Command response -> GetCourse(min_version) answered, sampled during the load.
    pub lag: Vec<Duration>,
    pub lag_errors: usize,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.commands as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `clients` commenting callers for `seconds`, plus one read-your-writes sampler.
pub async fn run(
    shape: Shape,
    connections: &Connections,
    catalog: &Channel,
    secret: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<LoadResult> {
    let instructor = Caller::new(secret)?;
    let callers: Vec<Caller> =
        (0..clients).map(|_| Caller::new(secret)).collect::<Result<_, _>>()?;
    let sampler = Caller::new(secret)?;
    // Courses: the sampler joins the first (spread) or the only (hot) one.
    let courses: Vec<String> = match shape {
        Shape::Hot => {
            let mut everyone = callers.clone();
            everyone.push(sampler.clone());
            let (id, _) = active_course(&mut connections.client(0), &instructor, &everyone).await?;
            vec![id; clients]
        }
        Shape::Spread => {
            let setups = callers.iter().enumerate().map(|(n, caller)| {
                let mut commands = connections.client(n);
                let instructor = instructor.clone();
                let mut members = vec![caller.clone()];
                if n == 0 {
                    members.push(sampler.clone());
                }
                async move { active_course(&mut commands, &instructor, &members).await.map(|c| c.0) }
            });
            try_join_all(setups).await?
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for (n, (caller, course)) in callers.into_iter().zip(courses.iter().cloned()).enumerate() {
        let mut commands = connections.client_for(n, &course);
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match commands.comment_course(caller.request(comment(&course))).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(status) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{status:?}"));
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let lag = {
        let mut commands = connections.client_for(clients, &courses[0]);
        let mut catalog = CatalogQueryServiceClient::new(catalog.clone());
        let course = courses[0].clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let Ok(done) = commands.comment_course(sampler.request(comment(&course))).await
                else {
                    errors += 1;
                    continue;
                };
                let version = done.into_inner().version;
                let t = Instant::now();
                let read =
                    v1::GetCourseRequest { course_id: course.clone(), min_version: Some(version) };
                match catalog.get_course(read).await {
                    Ok(_) => samples.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
                // Pacing of the sampler only; the load itself never waits.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (samples, errors)
        })
    };
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut result = LoadResult {
        commands: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        lag: Vec::new(),
        lag_errors: 0,
    };
    for worker in workers {
        let (latencies, errors, first_error) = worker.await?;
        result.commands += latencies.len();
        result.latencies.extend(latencies);
        result.errors += errors;
        if result.first_error.is_none() {
            result.first_error = first_error;
        }
    }
    result.elapsed = started.elapsed();
    let (lag, lag_errors) = lag.await?;
    result.lag = lag;
    result.lag_errors = lag_errors;
    Ok(result)
}

/// Percentile `q` of `samples` in milliseconds (sorts them).
pub fn percentile(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
}
