//! Who is rebuilding: a lease on the `building` generation mark.
//!
//! A rebuild writes a lease (its owner, an expiry) before it marks its generation as building,
//! and renews it every third of its duration while it replays. A process that dies half-way
//! stops renewing, so its lease expires. A building generation whose lease has expired (or that
//! has none: marked by an older version) is *abandoned*, not taken over: the mark is cleared
//! (live events go to one generation again) and the partial generation is dropped. That happens
//! in every replica's [`supervise`] task (so within a lease or so of the crash), at start-up
//! (the initial build), and on a RebuildReadModel call, which then starts a fresh rebuild.
//! Leases are kept, and a rebuild never reserves a number that has one, so the next rebuild
//! takes a higher number: a presumed-dead owner that is in fact alive can no longer switch over
//! (its compare-and-set fails) and gives up.
//!
//! Expiry compares wall clocks of replicas: the lease duration must be well above their skew.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::read_model::{Generations, ReadModel, ReadModelError};
use crate::rebuild::RebuildError;

/// The lease of a rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildLease {
    /// Who holds it ([`Lessee::owner`]).
    pub owner: String,
    /// Until when; not renewed by then means the owner is gone.
    pub expires_at: DateTime<Utc>,
}

/// This process as a rebuild owner.
#[derive(Debug, Clone)]
pub struct Lessee {
    /// `<HOSTNAME>/<pid>/<random>`: unique per process, readable in logs.
    pub owner: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
}

impl Lessee {
    /// A fresh identity for this process.
    pub fn new(duration: Duration) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
        let owner = format!("{host}/{}/{}", std::process::id(), Uuid::new_v4().simple());
        Self { owner, duration }
    }

    fn lease(&self) -> RebuildLease {
        let duration = chrono::Duration::from_std(self.duration).unwrap_or(chrono::Duration::MAX);
        RebuildLease { owner: self.owner.clone(), expires_at: Utc::now() + duration }
    }

    /// Takes (or renews) the lease of `generation`.
    pub async fn hold<M: ReadModel>(
        &self,
        model: &M,
        generation: u32,
    ) -> Result<(), ReadModelError> {
        model.put_rebuild_lease(generation, &self.lease()).await
    }

    /// Renews the lease of `generation` every third of its duration; never returns (run it
    /// beside the rebuild and drop it when the rebuild ends). A failed renewal is retried at
    /// the next tick.
    pub async fn keep<M: ReadModel>(&self, model: &M, generation: u32) {
        let period = self.duration / 3;
        loop {
            tokio::time::sleep(period).await;
            if let Err(err) = self.hold(model, generation).await {
                tracing::warn!(generation, error = %err, "cannot renew the rebuild lease");
            }
        }
    }
}

/// True when nobody holds a live lease on `generation`.
pub async fn expired<M: ReadModel>(model: &M, generation: u32) -> Result<bool, ReadModelError> {
    Ok(match model.rebuild_lease(generation).await? {
        Some(lease) => lease.expires_at <= Utc::now(),
        None => true,
    })
}

/// Abandons the building generation when its owner is gone (see the module documentation):
/// clears the mark and drops the partial generation. Returns the abandoned generation.
pub async fn abandon_orphaned<M: ReadModel>(model: &M) -> Result<Option<u32>, RebuildError> {
    let generations = model.generations().await?;
    let Some(building) = generations.building else { return Ok(None) };
    if building == generations.active || !expired(model, building).await? {
        // Switched over already (its clean-up is `rebuild::finish`), or alive.
        return Ok(None);
    }
    let owner = model.rebuild_lease(building).await?.map(|l| l.owner).unwrap_or_default();
    let cleared = Generations { active: generations.active, building: None };
    if !model.swap_generations(generations, cleared).await? {
        // Another replica abandoned it, or things moved on: nothing for us to drop.
        return Ok(None);
    }
    tracing::warn!(
        generation = building,
        owner,
        "the rebuild's owner stopped renewing its lease: rebuild abandoned"
    );
    // Its lease stays, so the number is never reserved again: dropping cannot race with a
    // new rebuild. Events a consumer still writes there meanwhile are dropped by the next
    // rebuild's clean-up.
    model.drop_generation(building).await?;
    Ok(Some(building))
}

/// Abandons orphaned rebuilds as soon as their lease expires, until `stop`.
pub async fn supervise<M: ReadModel>(
    model: M,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        if let Err(err) = abandon_orphaned(&model).await {
            tracing::warn!(error = %err, "cannot check the rebuild lease");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
    }
}
