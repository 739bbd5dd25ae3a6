use course_proto::v1;
use testkit::{RedisCluster, ServingStatus, TcpProxy, spawn_command_svc, unique, wait_for_health};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::helpers::*;

/// A Redis the test can take away: one node behind a cuttable proxy, or (when the suite runs
/// against a cluster) a private three-node cluster whose nodes are frozen.
enum Outage {
    Node(TcpProxy),
    Cluster(RedisCluster),
}

impl Outage {
    async fn start() -> (Outage, String) {
        if redis_url().starts_with("redis-cluster://") {
            let cluster = RedisCluster::start();
            let url = cluster.url.clone();
            (Outage::Cluster(cluster), url)
        } else {
            let proxy = TcpProxy::start("127.0.0.1:6379".parse().expect("addr")).await;
            let url = format!("redis://127.0.0.1:{}", proxy.addr.port());
            (Outage::Node(proxy), url)
        }
    }

    fn cut(&self) {
        match self {
            Outage::Node(proxy) => proxy.cut(),
            Outage::Cluster(cluster) => cluster.pause(),
        }
    }

    fn restore(&self) {
        match self {
            Outage::Node(proxy) => proxy.restore(),
            Outage::Cluster(cluster) => cluster.resume(),
        }
    }
}

#[tokio::test]
async fn the_catalog_reconnects_to_redis_and_rabbitmq_by_itself_after_an_outage() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let (redis, redis_url) = Outage::start().await;
    let broker = TcpProxy::start("127.0.0.1:5672".parse().expect("addr")).await;
    let mut cfg = config(&command, &exchange);
    cfg.redis_url = redis_url;
    cfg.service.projection.broker.rabbitmq_url =
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", broker.addr.port());
    cfg.service.projection.read_your_writes_timeout_ms = 30_000;
    let catalog = spawn_catalog(cfg).await;
    let instructor = Uuid::now_v7();
    let id = testkit::driver::create_course(&command, instructor, create_request(0)).await;
    catalog.course_at(&id, 1).await;

    redis.cut();
    broker.cut();
    let status = catalog
        .client()
        .get_course(v1::GetCourseRequest { course_id: id.clone(), min_version: None })
        .await
        .expect_err("redis is gone");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", catalog.port))
        .expect("uri")
        .connect_lazy();
    wait_for_health(&channel, "course.v1.CatalogQueryService", ServingStatus::NotServing).await;
    // Commands keep flowing meanwhile; the relay and the queue hold the events.
    let version = present(&command, instructor, &id).await;

    redis.restore();
    broker.restore();
    wait_for_health(&channel, "course.v1.CatalogQueryService", ServingStatus::Serving).await;
    let course = catalog.course_at(&id, version).await;
    assert_eq!(course.status, v1::CourseStatus::Presenting as i32);
}
