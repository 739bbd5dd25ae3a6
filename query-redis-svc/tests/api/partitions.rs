//! Partitioned projections: replicas of the catalog share the partitions of its events, each
//! course's events reach one replica in order (no gap-filling reads from the event store), a
//! replica killed and restarted under load hands its partitions over and back without losing
//! or doubling an event, and read-your-writes waits are woken across replicas.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use course_proto::v1;
use course_proto::v1::course_command_service_client::CourseCommandServiceClient;
use testkit::driver::Commands;
use testkit::{CommandSvc, spawn_command_svc, unique};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::helpers::*;

/// One catalog configuration (queue, key prefix) for every replica, with `partitions`.
fn shared_config(
    command: &CommandSvc,
    exchange: &str,
    partitions: u16,
) -> query_redis_svc::config::Config {
    let mut config = config(command, exchange);
    config.service.projection.partitions = partitions;
    config
}

/// Waits until the replicas own every one of `partitions` between them, each some.
async fn wait_until_shared(replicas: &[&Catalog], partitions: u64) {
    let progresses: Vec<&projection::Progress> = replicas.iter().map(|r| &r.progress).collect();
    testkit::wait_until_shared(&progresses, partitions).await;
}

#[derive(Clone)]
struct Client(CourseCommandServiceClient<Channel>);

impl Commands for Client {
    fn commands(&self) -> CourseCommandServiceClient<Channel> {
        self.0.clone()
    }
}

/// Courses open for joining, spread over the partitions.
async fn open_courses(command: &CommandSvc, count: usize) -> Vec<String> {
    let instructor = Uuid::now_v7();
    let mut out = Vec::new();
    for _ in 0..count {
        let id = create_course(command, instructor, create_request(0)).await;
        present(command, instructor, &id).await;
        out.push(id);
    }
    out
}

/// A steady load: `workers` clients joining fresh users to the courses in turn until
/// stopped. Counts acknowledged commands and keeps each course's latest version.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    versions: Arc<Mutex<BTreeMap<String, u64>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(command: &CommandSvc, courses: &[String], workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let versions: Arc<Mutex<BTreeMap<String, u64>>> = Arc::new(Mutex::new(BTreeMap::new()));
        let workers = (0..workers)
            .map(|worker| {
                let client = Client(command.commands());
                let courses = courses.to_vec();
                let (stop, acked, versions) = (stop.clone(), acked.clone(), versions.clone());
                tokio::spawn(async move {
                    let mut turn = worker;
                    while !stop.load(Ordering::SeqCst) {
                        let course = &courses[turn % courses.len()];
                        turn += 1;
                        let version = join(&client, Uuid::now_v7(), course).await;
                        let mut versions = versions.lock().expect("versions");
                        let latest = versions.entry(course.clone()).or_default();
                        *latest = (*latest).max(version);
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        Load { stop, acked, versions, workers }
    }

    /// Waits for `n` more acknowledged commands.
    async fn more(&self, n: usize) {
        let target = self.acked.load(Ordering::SeqCst) + n;
        tokio::time::timeout(WAIT, async {
            while self.acked.load(Ordering::SeqCst) < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("commands keep being acknowledged");
    }

    async fn finish(self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers {
            worker.await.expect("load worker");
        }
        std::mem::take(&mut *self.versions.lock().expect("versions"))
    }
}

#[tokio::test]
async fn two_replicas_share_four_partitions_and_apply_every_event_once_without_gap_fills() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let shared = shared_config(&command, &exchange, 4);
    let first = spawn_catalog(shared.clone()).await;
    let second = spawn_catalog(shared).await;
    wait_until_shared(&[&first, &second], 4).await;

    let courses = workload(&command, 8, 10).await;
    for (id, version) in &courses {
        first.course_at(id, *version).await;
    }
    let report = second.audit(50).await;
    assert_eq!(report.difference_count, 0, "{:?}", report.differences);
    assert_eq!(report.read_model_position, report.audited_position);
    let (a, b) = (first.progress.snapshot(), second.progress.snapshot());
    assert!(a.events_consumed > 0 && b.events_consumed > 0, "both consume: {a:?} {b:?}");
    assert_eq!(a.events_consumed + b.events_consumed, report.audited_position, "each event once");
    assert_eq!((a.gaps_filled, b.gaps_filled), (0, 0), "no gap-filling reads");
    assert_eq!(a.duplicates + b.duplicates, 0, "no event applied twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_and_restarted_under_load_hands_its_partitions_over_without_gap_fills() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let shared = shared_config(&command, &exchange, 4);
    let steady = spawn_catalog(shared.clone()).await;
    let doomed = spawn_crashable_catalog(shared.clone()).await;
    wait_until_shared(&[&steady, &doomed.catalog], 4).await;
    let doomed_progress = doomed.catalog.progress.clone();

    let courses = open_courses(&command, 16).await;
    let started = Instant::now();
    let load = Load::start(&command, &courses, 6);
    load.more(150).await;

    // Killed: no drain, no farewell; its connection drops with its runtime.
    doomed.crash();
    let killed = Instant::now();
    tokio::time::timeout(WAIT, async {
        while steady.progress.snapshot().partitions_owned < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the survivor takes every partition");
    let handover = killed.elapsed();
    load.more(150).await;

    let restarted = Instant::now();
    let revived = spawn_crashable_catalog(shared).await;
    wait_until_shared(&[&steady, &revived.catalog], 4).await;
    let rebalance = restarted.elapsed();
    load.more(150).await;
    let versions = load.finish().await;
    let elapsed = started.elapsed();
    let revived_for = restarted.elapsed();
    let killed_after = killed.duration_since(started);

    for (id, version) in &versions {
        steady.course_at(id, *version).await;
        revived.catalog.course_at(id, *version).await;
    }
    let report = steady.audit(50).await;
    assert_eq!(report.difference_count, 0, "{:?}", report.differences);
    assert_eq!(report.read_model_position, report.audited_position, "caught up");
    assert_eq!(report.courses_in_read_model, report.courses_in_store);
    let replicas = [
        ("steady", steady.progress.snapshot(), elapsed),
        ("killed", doomed_progress.snapshot(), killed_after),
        ("revived", revived.catalog.progress.snapshot(), revived_for),
    ];
    for (name, snapshot, lived) in &replicas {
        eprintln!(
            "{name}: {} events consumed ({:.0}/s over its {lived:.1?} under load), {} gap fills, \
             {} duplicates",
            snapshot.events_consumed,
            snapshot.events_consumed as f64 / lived.as_secs_f64(),
            snapshot.gaps_filled,
            snapshot.duplicates,
        );
    }
    eprintln!(
        "handover after the kill: {handover:.1?}; partitions shared again {rebalance:.1?} after \
         the restart began; {} events",
        versions.values().sum::<u64>()
    );
    for (name, snapshot, _) in &replicas {
        assert_eq!(snapshot.gaps_filled, 0, "{name}: no gap-filling reads");
    }
    assert!(replicas[1].1.events_consumed > 0 && replicas[2].1.events_consumed > 0);
    revived.crash();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_under_load_says_farewell_and_its_partitions_move_at_once() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let mut shared = shared_config(&command, &exchange, 4);
    // Far longer than the handover asked for below: only the farewell can make it that quick.
    shared.service.projection.partition_member_ttl_ms = 20_000;
    let staying = spawn_catalog(shared.clone()).await;
    let leaving = spawn_catalog(shared).await;
    wait_until_shared(&[&staying, &leaving], 4).await;
    let leaving_progress = leaving.progress.clone();

    let courses = open_courses(&command, 16).await;
    let load = Load::start(&command, &courses, 6);
    load.more(150).await;
    let stopping = Instant::now();
    // From the stop signal, under the 13.3 s after which the TTL (20 s, checked on each
    // heartbeat, every third of it) could move them too; room for a loaded machine.
    tokio::time::timeout_at((stopping + Duration::from_secs(12)).into(), async {
        leaving.stop().await;
        while staying.progress.snapshot().partitions_owned < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the partitions move on the farewell, not after the member TTL");
    eprintln!("graceful handover: {:.1?} from the stop signal", stopping.elapsed());
    load.more(150).await;
    let versions = load.finish().await;

    for (id, version) in &versions {
        staying.course_at(id, *version).await;
    }
    let report = staying.audit(50).await;
    assert_eq!(report.difference_count, 0, "{:?}", report.differences);
    assert_eq!(report.read_model_position, report.audited_position, "caught up");
    let (left, stayed) = (leaving_progress.snapshot(), staying.progress.snapshot());
    assert!(left.events_consumed > 0, "the leaving replica had a share: {left:?}");
    assert_eq!((left.gaps_filled, stayed.gaps_filled), (0, 0), "no gap-filling reads");
    // A graceful stop acknowledges what it applied: nothing is delivered twice.
    assert_eq!(left.duplicates + stayed.duplicates, 0);
}

#[tokio::test]
async fn a_read_on_a_replica_that_consumes_nothing_is_woken_by_the_owner() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    // One partition, two replicas: one owns it, the other only serves reads.
    let shared = shared_config(&command, &exchange, 1);
    let first = spawn_catalog(shared.clone()).await;
    let second = spawn_catalog(shared).await;
    tokio::time::timeout(WAIT, async {
        while first.progress.snapshot().partitions_owned
            + second.progress.snapshot().partitions_owned
            != 1
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("one owner");
    let (owner, reader) = if first.progress.snapshot().partitions_owned == 1 {
        (&first, &second)
    } else {
        (&second, &first)
    };
    let instructor = Uuid::now_v7();
    let id = create_course(&command, instructor, create_request(0)).await;
    let version = present(&command, instructor, &id).await;
    owner.course_at(&id, version).await;
    let consumed = reader.progress.snapshot().events_consumed;

    // The read waits for a version not written yet; only the owner applies it.
    let mut client = reader.client();
    let wanted = version + 1;
    let read = tokio::spawn({
        let id = id.clone();
        async move {
            client
                .get_course(v1::GetCourseRequest { course_id: id, min_version: Some(wanted) })
                .await
        }
    });
    let joined = join(&command, Uuid::now_v7(), &id).await;
    assert_eq!(joined, wanted);
    let course = read.await.expect("read").expect("answered").into_inner().course.expect("course");
    assert_eq!(course.version, wanted);
    assert_eq!(reader.progress.snapshot().events_consumed, consumed, "the reader consumed nothing");
}
