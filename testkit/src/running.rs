//! A service running in this process: started on port 0, stopped gracefully.

use std::future::Future;
use std::pin::Pin;

use course_proto::v1;
use course_proto::v1::projection_admin_service_client::ProjectionAdminServiceClient;
use platform::auth::Credential;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::{ServingStatus, wait_for_health};

/// The shutdown signal a service's `run_until_stopped` receives.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A running service. Dropping it asks it to stop; [`Running::stop`] waits for a clean exit.
pub struct Running {
    port: u16,
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Runs `run(shutdown)` (a service's `run_until_stopped`) for a service bound to `port`.
    pub fn start<F>(port: u16, run: impl FnOnce(Shutdown) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(Box::pin(async move {
            let _ = stopped.await;
        })));
        Self { port, channel: channel(port), stop: Some(stop), task: Some(task) }
    }

    /// A client-only handle to a service that runs elsewhere (a child process).
    pub fn remote(port: u16) -> Self {
        Self { port, channel: channel(port), stop: None, task: None }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A (lazily connecting) channel to it.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The admin RPCs of a query service, as an operator.
    pub fn admin(&self) -> ProjectionAdminServiceClient<InterceptedService<Channel, Credential>> {
        ProjectionAdminServiceClient::with_interceptor(self.channel(), crate::operator_credential())
    }

    /// The admin RPCs with no token.
    pub fn anonymous_admin(&self) -> ProjectionAdminServiceClient<Channel> {
        ProjectionAdminServiceClient::new(self.channel())
    }

    /// Waits until `generation` is served and no rebuild is marked as building (a rebuild into
    /// it has switched readers over, or a crashed one was abandoned). The status is polled:
    /// the switch has no notification of its own; 120 s at most.
    pub async fn wait_for_switch(&self, generation: u32) {
        self.status_until("switched over, no rebuild in progress", |s| {
            s.active_generation == generation && s.building_generation == 0
        })
        .await;
    }

    /// The projection status of a query service.
    pub async fn status(&self) -> course_proto::v1::GetProjectionStatusResponse {
        self.admin()
            .get_projection_status(course_proto::v1::GetProjectionStatusRequest {})
            .await
            .expect("status")
            .into_inner()
    }

    /// Polls the projection status until `done` holds for it; 120 s at most.
    pub async fn status_until(
        &self,
        what: &str,
        done: impl Fn(&course_proto::v1::GetProjectionStatusResponse) -> bool,
    ) -> course_proto::v1::GetProjectionStatusResponse {
        let limit = std::time::Duration::from_secs(120);
        let status = crate::poll_until(limit, || self.status(), &done).await;
        assert!(done(&status), "{what}: still {status:?}");
        status
    }

    /// Polls the projection status once a second until every event up to the global
    /// `position` is applied to the served generation, for loads that take minutes (a read
    /// with `min_version` would outlast the server's request timeout); `limit` at most.
    pub async fn wait_until_applied(&self, position: u64, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let status = self.status().await;
            if status.applied_position >= position {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "position {position} not applied in {limit:?}: still {status:?}"
            );
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// The first page of dead letters (the default page size).
    pub async fn dead_letters(&self) -> v1::ListDeadLettersResponse {
        self.admin()
            .list_dead_letters(v1::ListDeadLettersRequest::default())
            .await
            .expect("list dead letters")
            .into_inner()
    }

    /// Starts a rebuild (and waits for its switch when `wait`); returns its generation.
    pub async fn rebuild(&self, wait: bool) -> u32 {
        self.admin()
            .rebuild_read_model(v1::RebuildReadModelRequest { wait })
            .await
            .expect("the rebuild starts (and, waited for, finishes)")
            .into_inner()
            .generation
    }

    /// Replays the dead letters; returns (replayed, still failing).
    pub async fn replay_dead_letters(&self) -> (u32, u32) {
        let replay = self
            .admin()
            .replay_dead_letters(v1::ReplayDeadLettersRequest {})
            .await
            .expect("replay")
            .into_inner();
        (replay.replayed, replay.still_failing)
    }

    /// Audits the read model once it has caught up, listing `max_differences` differences at
    /// most ([`audit_caught_up`]).
    pub async fn audit(&self, max_differences: u32) -> v1::AuditReadModelResponse {
        audit_caught_up(self.channel(), max_differences).await
    }

    /// The README's authorization row for `ProjectionAdminService`, checked against this
    /// service: every admin RPC refuses an anonymous caller (UNAUTHENTICATED) and a user's or a
    /// service's token (PERMISSION_DENIED); an operator may read the status, list and replay
    /// dead letters and audit (a rebuild is left out: it would start one).
    pub async fn assert_admin_is_for_operators_only(&self) {
        fn code<T>(result: Result<T, tonic::Status>) -> tonic::Code {
            result.map(|_| tonic::Code::Ok).unwrap_or_else(|status| status.code())
        }
        fn request<T>(token: Option<&String>, message: T) -> tonic::Request<T> {
            match token {
                Some(token) => crate::with_token(token, message),
                None => tonic::Request::new(message),
            }
        }
        let mut admin = self.anonymous_admin();
        let status = || v1::GetProjectionStatusRequest {};
        let rebuild = v1::RebuildReadModelRequest::default;
        let list = v1::ListDeadLettersRequest::default;
        let replay = || v1::ReplayDeadLettersRequest {};
        let audit = v1::AuditReadModelRequest::default;
        let user = crate::token(uuid::Uuid::now_v7());
        let service = crate::service_token();
        for (who, token, wanted) in [
            ("anonymous", None, tonic::Code::Unauthenticated),
            ("user", Some(&user), tonic::Code::PermissionDenied),
            ("service", Some(&service), tonic::Code::PermissionDenied),
        ] {
            let codes = [
                code(admin.get_projection_status(request(token, status())).await),
                code(admin.rebuild_read_model(request(token, rebuild())).await),
                code(admin.list_dead_letters(request(token, list())).await),
                code(admin.replay_dead_letters(request(token, replay())).await),
                code(admin.audit_read_model(request(token, audit())).await),
            ];
            assert_eq!(codes, [wanted; 5], "{who}: status, rebuild, list, replay, audit");
        }
        let codes = [
            code(admin.get_projection_status(crate::as_operator(status())).await),
            code(admin.list_dead_letters(crate::as_operator(list())).await),
            code(admin.replay_dead_letters(crate::as_operator(replay())).await),
            code(admin.audit_read_model(crate::as_operator(audit())).await),
        ];
        assert_eq!(codes, [tonic::Code::Ok; 4], "operator: status, list, replay, audit");
    }

    /// Waits until its health reports `wanted` for `service`.
    pub async fn wait_for(&self, service: &str, wanted: ServingStatus) {
        wait_for_health(&self.channel, service, wanted).await
    }

    /// Graceful stop: resolves when the service has drained; it must exit cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("service task").expect("service ran cleanly");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn channel(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}")).expect("uri").connect_lazy()
}

/// Waits (60 s at most) until the query-service replicas with these progresses own every one
/// of `partitions` between them, each some: until then a newcomer may still wait behind the
/// others on every partition.
pub async fn wait_until_shared(replicas: &[&projection::Progress], partitions: u64) {
    let owned = || {
        let owned = replicas.iter().map(|r| r.snapshot().partitions_owned).collect::<Vec<_>>();
        std::future::ready(owned)
    };
    let shared =
        |owned: &Vec<u64>| owned.iter().sum::<u64>() == partitions && owned.iter().all(|o| *o > 0);
    let owned = crate::poll_until(std::time::Duration::from_secs(60), owned, shared).await;
    assert!(shared(&owned), "the replicas share the {partitions} partitions: they own {owned:?}");
}

/// Audits the read model served on `channel` as an operator, again while it has not caught up
/// with the store's head (each audit waits 20 s for that; 3 minutes in all): a slow machine
/// makes a read model late, not different. Returns the last report.
pub async fn audit_caught_up(channel: Channel, max_differences: u32) -> v1::AuditReadModelResponse {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(180);
    let mut admin =
        ProjectionAdminServiceClient::with_interceptor(channel, crate::operator_credential());
    loop {
        let report = admin
            .audit_read_model(v1::AuditReadModelRequest {
                max_differences,
                catch_up_timeout_ms: 20_000,
            })
            .await
            .expect("audit")
            .into_inner();
        if report.read_model_position >= report.audited_position
            || tokio::time::Instant::now() >= deadline
        {
            return report;
        }
    }
}
