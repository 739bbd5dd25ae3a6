//! The one reconnect policy of the mesh's background loops (sequencer, relay, consumers,
//! migrations): exponential from 100 ms to 5 s, with jitter, forever.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// A fresh backoff; start a new one after every success.
pub fn reconnect_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// The next delay of `backoff` (it never runs out).
pub fn next_delay(backoff: &mut ExponentialBackoff) -> Duration {
    backoff.next().unwrap_or(Duration::from_secs(5))
}
