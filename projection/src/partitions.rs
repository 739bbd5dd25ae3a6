//! Which replica consumes which partition. Every replica of a read model announces itself on
//! the progress bus (a heartbeat every third of the member TTL, a farewell when it stops);
//! a replica not heard from for a TTL is gone. Partition `k` belongs to the live member with
//! the highest rendezvous hash of (member, `k`): every replica computes the same owners from
//! the same members, and a member joining or leaving moves only the partitions it takes or
//! leaves. While two replicas briefly disagree (one has not yet heard what the other heard),
//! the queues' single active consumer keeps a partition with one consumer; a released
//! partition is handed over without reordering by the consumer (`consumer`).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::progress::{MemberNotice, Progress};

/// The live members of a read model, as one replica sees them.
#[derive(Debug)]
pub struct Membership {
    me: Uuid,
    ttl: Duration,
    peers: HashMap<Uuid, Instant>,
}

impl Membership {
    /// Just `me`; peers not heard from for `ttl` are gone.
    pub fn new(me: Uuid, ttl: Duration) -> Self {
        Self { me, ttl, peers: HashMap::new() }
    }

    /// Takes in a notice heard at `now`; true when the members changed.
    pub fn hear(&mut self, notice: MemberNotice, now: Instant) -> bool {
        if notice.member == self.me {
            return false;
        }
        if notice.alive {
            self.peers.insert(notice.member, now).is_none()
        } else {
            self.peers.remove(&notice.member).is_some()
        }
    }

    /// Forgets the peers not heard from since `now - ttl`; true when the members changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.peers.len();
        let ttl = self.ttl;
        self.peers.retain(|_, heard| now.saturating_duration_since(*heard) < ttl);
        self.peers.len() != before
    }

    /// Every live member, this one included, sorted.
    pub fn members(&self) -> Vec<Uuid> {
        let mut members: Vec<Uuid> = self.peers.keys().copied().collect();
        members.push(self.me);
        members.sort_unstable();
        members
    }

    /// The partitions (of `partitions`) this member owns.
    pub fn mine(&self, partitions: u16) -> BTreeSet<u16> {
        assigned(self.me, &self.members(), partitions)
    }
}

/// The owner of `partition` among `members` (none when there are no members).
pub fn owner(members: &[Uuid], partition: u16) -> Option<Uuid> {
    members.iter().copied().max_by_key(|member| (weight(*member, partition), *member))
}

/// The partitions `member` owns among `members`.
pub fn assigned(member: Uuid, members: &[Uuid], partitions: u16) -> BTreeSet<u16> {
    (0..partitions).filter(|k| owner(members, *k) == Some(member)).collect()
}

/// The rendezvous weight of (member, partition): FNV-1a over both, finished with the
/// SplitMix64 mixer. Written out so that every build of every version computes the same
/// owners (the standard library's hashers promise no stability).
fn weight(member: Uuid, partition: u16) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in member.as_bytes().iter().chain(partition.to_be_bytes().iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// Settings of the partition assignment.
#[derive(Debug, Clone, Copy)]
pub struct Assignment {
    /// This replica's member id (fresh per process).
    pub me: Uuid,
    /// How many partitions the read model has.
    pub partitions: u16,
    /// A member not heard from for this long is gone; heartbeats go out every third of it.
    pub member_ttl: Duration,
}

/// Announces this replica, listens to the others and keeps `owned` equal to the partitions
/// this replica owns, until `stop`; then says farewell, so that the others take over its
/// partitions at once. `owned` starts with every partition: until peers are heard, this
/// replica consumes everything (single active consumer keeps it behind the current owners).
pub async fn run(
    progress: Progress,
    settings: Assignment,
    owned: watch::Sender<BTreeSet<u16>>,
    stop: CancellationToken,
) {
    let mut membership = Membership::new(settings.me, settings.member_ttl);
    let mut notices = progress.member_notices();
    let mut beat = tokio::time::interval(settings.member_ttl / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let alive = MemberNotice { member: settings.me, alive: true };
    loop {
        let changed = tokio::select! {
            () = stop.cancelled() => break,
            _ = beat.tick() => {
                progress.publish_member(alive).await;
                membership.expire(Instant::now())
            }
            notice = notices.recv() => match notice {
                Ok(notice) => membership.hear(notice, Instant::now()),
                Err(broadcast::error::RecvError::Lagged(_)) => false,
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        if changed {
            let members = membership.members();
            let mine = membership.mine(settings.partitions);
            tracing::info!(members = members.len(), owned = ?mine, "read model replicas changed");
            owned.send_if_modified(|current| {
                let modified = *current != mine;
                *current = mine;
                modified
            });
        }
    }
    progress.publish_member(MemberNotice { member: settings.me, alive: false }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn every_partition_has_one_owner_and_the_shares_are_fair() {
        let members = ids(4);
        let mut total = 0;
        for member in &members {
            let mine = assigned(*member, &members, 64);
            assert!(mine.len() >= 4, "a fair share of 64 among 4: {}", mine.len());
            total += mine.len();
        }
        assert_eq!(total, 64);
        assert_eq!(assigned(members[0], &members[..1], 8).len(), 8);
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_partitions() {
        let members = ids(3);
        let before: Vec<Option<Uuid>> = (0..32).map(|k| owner(&members, k)).collect();
        let gone = members[1];
        let rest: Vec<Uuid> = members.iter().copied().filter(|m| *m != gone).collect();
        for k in 0..32u16 {
            let after = owner(&rest, k);
            if before[usize::from(k)] != Some(gone) {
                assert_eq!(after, before[usize::from(k)], "partition {k} moved needlessly");
            }
        }
    }

    #[test]
    fn members_come_with_heartbeats_and_go_with_farewells_or_silence() {
        let me = Uuid::new_v4();
        let peer = Uuid::new_v4();
        let ttl = Duration::from_secs(3);
        let start = Instant::now();
        let mut membership = Membership::new(me, ttl);
        assert_eq!(membership.mine(4).len(), 4);
        assert!(membership.hear(MemberNotice { member: peer, alive: true }, start));
        assert!(!membership.hear(MemberNotice { member: peer, alive: true }, start));
        assert!(!membership.hear(MemberNotice { member: me, alive: true }, start));
        assert_eq!(membership.members().len(), 2);
        assert!(!membership.expire(start + Duration::from_secs(2)));
        assert!(membership.expire(start + ttl));
        assert_eq!(membership.members(), vec![me]);
        membership.hear(MemberNotice { member: peer, alive: true }, start);
        assert!(membership.hear(MemberNotice { member: peer, alive: false }, start));
        assert_eq!(membership.members(), vec![me]);
    }
}
