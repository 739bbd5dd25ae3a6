//! In-process, per-course serialization of command handling.
//!
//! Two commands on the same course inside one replica would otherwise race to append the same
//! version and one would have to reload and retry. Queuing them behind a per-course mutex keeps
//! optimistic-concurrency conflicts for the cross-replica case only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use uuid::Uuid;

/// A map of per-key async mutexes whose entries disappear when nobody holds or awaits them.
#[derive(Debug, Default, Clone)]
pub struct KeyedLocks {
    inner: Arc<Mutex<HashMap<Uuid, Arc<AsyncMutex<()>>>>>,
}

/// Holds the lock of one key; releasing it drops the map entry when it was the last user.
pub struct KeyGuard {
    key: Uuid,
    locks: KeyedLocks,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    /// Waits for the lock of `key`.
    pub async fn lock(&self, key: Uuid) -> KeyGuard {
        let mutex = {
            let mut map = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            map.entry(key).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        KeyGuard { key, locks: self.clone(), guard: Some(guard) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // One reference in the map; any other means a holder or waiter still needs it.
        if map.get(&self.key).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_locker_of_the_same_key_waits_and_entries_are_cleaned_up() {
        let locks = KeyedLocks::default();
        let key = Uuid::now_v7();
        let first = locks.lock(key).await;
        let other = locks.lock(Uuid::now_v7()).await;
        let waiter = tokio::spawn({
            let locks = locks.clone();
            async move {
                let _g = locks.lock(key).await;
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "same key must wait");
        drop(first);
        waiter.await.expect("waiter finishes once the lock is free");
        drop(other);
        assert_eq!(locks.len(), 0);
    }
}
