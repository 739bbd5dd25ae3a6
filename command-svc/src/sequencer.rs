//! Background tasks that keep every replica's view of the head position current, and number
//! events that were committed without a global position.
//!
//! Appends number their events themselves, in their own transaction (see
//! `store::batch::APPEND`). The sequencer is the safety net for rows written without one (by a
//! replica of an older version during a rolling upgrade, or by hand): it looks for them every
//! [`POLL`] and numbers them after everything numbered so far, under the same lock.

use std::time::Duration;

use platform::retry::{next_delay, reconnect_backoff};
use sea_orm::sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::readiness::Readiness;
use crate::store::{EventStore, SEQUENCED_CHANNEL};

/// How many events one sequencing transaction numbers at most.
const BATCH: u64 = 2_000;
/// How often the sequencer looks for events without a position.
const POLL: Duration = Duration::from_millis(250);

/// Publishes the highest known global position.
pub type HeadSender = watch::Sender<u64>;

/// Moves `head` forward to `position` (never back).
pub fn advance(head: &HeadSender, position: u64) {
    head.send_if_modified(|current| {
        if position > *current {
            *current = position;
            true
        } else {
            false
        }
    });
}

/// Numbers committed events that have no global position, every [`POLL`].
pub async fn run_sequencer(
    store: EventStore,
    head: HeadSender,
    readiness: Readiness,
    stop: CancellationToken,
) {
    tokio::select! {
        () = readiness.wait() => {}
        () = stop.cancelled() => return,
    }
    let mut backoff = reconnect_backoff();
    loop {
        match store.sequence(BATCH).await {
            Ok(Some(last)) => {
                advance(&head, last);
                backoff = reconnect_backoff();
                continue; // there may be more
            }
            Ok(None) => {
                backoff = reconnect_backoff();
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    () = stop.cancelled() => return,
                }
            }
            Err(err) => {
                let delay = next_delay(&mut backoff);
                tracing::warn!(error = %err, ?delay, "sequencing failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

/// Follows the sequencers of every replica through LISTEN/NOTIFY, reconnecting after outages.
pub async fn run_head_listener(store: EventStore, head: HeadSender, stop: CancellationToken) {
    let mut backoff = reconnect_backoff();
    loop {
        let pool = store.connection().get_postgres_connection_pool().clone();
        let result = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(SEQUENCED_CHANNEL).await?;
            // Anything sequenced while we were not listening.
            if let Ok(position) = store.head_position().await {
                advance(&head, position);
            }
            loop {
                let notification = listener.recv().await?;
                if let Ok(position) = notification.payload().parse::<u64>() {
                    advance(&head, position);
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sea_orm::sqlx::Error>(())
        };
        tokio::select! {
            result = result => {
                let delay = next_delay(&mut backoff);
                if let Err(err) = result {
                    tracing::warn!(error = %err, ?delay, "LISTEN connection lost; reconnecting");
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
            }
            () = stop.cancelled() => return,
        }
    }
}
