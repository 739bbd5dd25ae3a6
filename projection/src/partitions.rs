//! Which replica consumes which partition. Every replica of a read model announces itself on
//! the progress bus (a heartbeat every third of the member TTL, a farewell when it stops);
//! a replica not heard from for a TTL is gone. The partitions are dealt out by rendezvous
//! hashing with bounded loads ([`owners`]): every replica computes the same owners from the
//! same members, each takes an equal share, and a member joining or leaving moves about the
//! partitions it takes or leaves. While two replicas briefly disagree (one has not yet heard what the other heard),
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

/// The owner of every partition (of `partitions`) among `members` (sorted or not): rendezvous
/// hashing with bounded loads. Every (member, partition) pair has a weight; going through the
/// pairs from the heaviest, a partition goes to its member unless the partition is taken or
/// the member already has its share (`partitions / members`; the remainder goes one each to
/// the lowest member ids). Every replica computes the same owners from the same members;
/// a member joining or leaving moves its own share, and rarely a partition more (plain
/// rendezvous hashing moves the fewest, but with 4 partitions and 2 replicas it gives one
/// replica everything one time in eight).
pub fn owners(members: &[Uuid], partitions: u16) -> Vec<Option<Uuid>> {
    let mut owners = vec![None; usize::from(partitions)];
    if members.is_empty() {
        return owners;
    }
    let mut sorted = members.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let (share, extra) =
        (usize::from(partitions) / sorted.len(), usize::from(partitions) % sorted.len());
    let mut room: HashMap<Uuid, usize> =
        sorted.iter().enumerate().map(|(i, m)| (*m, share + usize::from(i < extra))).collect();
    let mut pairs: Vec<(u64, Uuid, u16)> =
        sorted.iter().flat_map(|m| (0..partitions).map(move |k| (weight(*m, k), *m, k))).collect();
    pairs.sort_unstable_by(|a, b| b.cmp(a));
    for (_, member, partition) in pairs {
        let slot = &mut owners[usize::from(partition)];
        let left = room.entry(member).or_default();
        if slot.is_none() && *left > 0 {
            *slot = Some(member);
            *left -= 1;
        }
    }
    owners
}

/// The partitions `member` owns among `members`.
pub fn assigned(member: Uuid, members: &[Uuid], partitions: u16) -> BTreeSet<u16> {
    owners(members, partitions)
        .iter()
        .zip(0u16..)
        .filter(|(owner, _)| **owner == Some(member))
        .map(|(_, k)| k)
        .collect()
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
    fn every_partition_has_one_owner_and_the_shares_are_equal() {
        for (members, partitions) in [(2, 4), (3, 4), (4, 64), (5, 4), (3, 10)] {
            for _ in 0..50 {
                let members = ids(members);
                let owners = owners(&members, partitions);
                assert!(owners.iter().all(Option::is_some));
                let floor = usize::from(partitions) / members.len();
                let mut total = 0;
                for member in &members {
                    let mine = assigned(*member, &members, partitions).len();
                    assert!(
                        mine == floor || mine == floor + 1,
                        "{mine} of {partitions} among {}",
                        members.len()
                    );
                    total += mine;
                }
                assert_eq!(total, usize::from(partitions));
            }
        }
        let alone = ids(1);
        assert_eq!(assigned(alone[0], &alone, 8).len(), 8);
        assert!(owners(&[], 3).iter().all(Option::is_none));
    }

    #[test]
    fn the_owners_do_not_depend_on_the_order_members_are_listed_in() {
        let members = ids(3);
        let mut reversed = members.clone();
        reversed.reverse();
        assert_eq!(owners(&members, 16), owners(&reversed, 16));
    }

    #[test]
    fn a_member_leaving_moves_its_own_partitions_and_few_others() {
        let mut needless = 0;
        for _ in 0..200 {
            let members = ids(4);
            let before = owners(&members, 16);
            let gone = members[1];
            let rest: Vec<Uuid> = members.iter().copied().filter(|m| *m != gone).collect();
            let after = owners(&rest, 16);
            needless +=
                before.iter().zip(&after).filter(|(b, a)| **b != Some(gone) && b != a).count();
        }
        // A leave moves its 4 partitions, and on average at most 2 more.
        assert!(needless <= 400, "{needless} needless moves in 200 leaves");
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
