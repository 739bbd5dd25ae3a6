//! Command affinity: every command for one course should reach one command-svc replica, so
//! that the course's commands share that replica's batches and its in-memory course, and two
//! replicas never race for the same course's next version.
//!
//! Two ways to get there, both keyed by the course id:
//! * **In the client**: [`CourseRouter`] holds one client per replica (in the order of the
//!   replicas' stable names, e.g. a StatefulSet's `command-svc-0`, `-1`, …) and picks one with
//!   [`replica_for`] (FNV-1a 64 of the id's 16 bytes, then jump consistent hash: when a
//!   replica is added only about `1/n` of the courses move). The Python and TypeScript SDKs
//!   implement the same function (`course_sdk.replica_for`, `replicaFor`), checked against
//!   the vectors in this module's tests.
//! * **In a gateway**: send the course id as the [`COURSE_ID_HEADER`] metadata
//!   ([`with_course_id`]) and let a proxy hash on it (Envoy `ring_hash` / Istio
//!   `consistentHash.httpHeaderName`). command-svc refuses a request whose header names
//!   another course than its body (INVALID_ARGUMENT), so the header can be trusted for routing.
//!
//! Affinity is an optimisation, never a correctness condition: a command that reaches another
//! replica is still decided under optimistic concurrency.

use tonic::metadata::MetadataValue;
use uuid::Uuid;

/// The metadata (HTTP/2 header) a gateway hashes on: the course a command is for.
pub const COURSE_ID_HEADER: &str = "x-course-id";

/// FNV-1a, 64 bits.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Jump consistent hash (Lamping and Veach, 2014): a bucket in `0..buckets`.
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j) = (0_i64, 0_i64);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1_u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// The replica (in `0..replicas`) that serves `course_id`'s commands; 0 when `replicas` is 0.
pub fn replica_for(course_id: &Uuid, replicas: usize) -> usize {
    if replicas == 0 {
        return 0;
    }
    jump_hash(fnv1a64(course_id.as_bytes()), replicas)
}

/// `request` with the [`COURSE_ID_HEADER`] metadata set to `course_id`.
pub fn with_course_id<T>(request: T, course_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(request);
    if let Ok(value) = MetadataValue::try_from(course_id) {
        request.metadata_mut().insert(COURSE_ID_HEADER, value);
    }
    request
}

/// One client per replica, chosen by course.
#[derive(Debug, Clone)]
pub struct CourseRouter<C> {
    replicas: Vec<C>,
}

impl<C> CourseRouter<C> {
    /// `replicas` in their stable order; `None` when empty.
    pub fn new(replicas: Vec<C>) -> Option<Self> {
        (!replicas.is_empty()).then_some(Self { replicas })
    }

    /// The client of the replica that serves `course_id` (a course id that is not a UUID goes to
    /// the first replica, which refuses it like any other).
    pub fn route(&self, course_id: &str) -> &C {
        let index =
            Uuid::parse_str(course_id).map(|id| replica_for(&id, self.replicas.len())).unwrap_or(0);
        &self.replicas[index]
    }

    /// Every replica's client.
    pub fn replicas(&self) -> &[C] {
        &self.replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (course id, replica among 2, among 3, among 5): the Python and TypeScript SDKs check the
    /// same vectors, so clients in every language route a course to the same replica.
    const VECTORS: [(&str, [usize; 3]); 4] = [
        ("00000000-0000-0000-0000-000000000000", [1, 1, 3]),
        ("01939a5e-6f4b-7c3d-9a2e-5b1c0d8e7f60", [1, 1, 4]),
        ("ffffffff-ffff-ffff-ffff-ffffffffffff", [1, 1, 1]),
        ("6ba7b810-9dad-11d1-80b4-00c04fd430c8", [0, 0, 0]),
    ];

    #[test]
    fn the_shared_vectors_route_as_in_every_sdk() {
        for (id, expected) in VECTORS {
            let id = Uuid::parse_str(id).expect("uuid");
            let got = [replica_for(&id, 2), replica_for(&id, 3), replica_for(&id, 5)];
            assert_eq!(got, expected, "{id}");
        }
    }

    #[test]
    fn courses_spread_evenly_and_a_new_replica_takes_only_its_share() {
        let ids: Vec<Uuid> = (0..10_000).map(|_| Uuid::now_v7()).collect();
        for replicas in 1..=6 {
            let mut counts = vec![0_usize; replicas];
            for id in &ids {
                counts[replica_for(id, replicas)] += 1;
            }
            let fair = ids.len() / replicas;
            assert!(counts.iter().all(|c| c.abs_diff(fair) < fair / 10), "{counts:?}");
            // From `replicas` to `replicas + 1`: a course either stays or moves to the new one.
            for id in &ids {
                let (before, after) = (replica_for(id, replicas), replica_for(id, replicas + 1));
                assert!(after == before || after == replicas, "{id}: {before} -> {after}");
            }
        }
    }

    #[test]
    fn a_router_sends_one_course_to_one_replica_and_odd_ids_to_the_first() {
        assert!(CourseRouter::<u8>::new(Vec::new()).is_none());
        let router = CourseRouter::new(vec!["a", "b", "c"]).expect("replicas");
        let id = "01939a5e-6f4b-7c3d-9a2e-5b1c0d8e7f60";
        assert_eq!(*router.route(id), "b");
        assert_eq!(*router.route(&id.to_uppercase()), "b", "the id, not its spelling");
        assert_eq!(*router.route("not-a-uuid"), "a");
        let request = with_course_id((), id);
        assert_eq!(request.metadata().get(COURSE_ID_HEADER).expect("header"), id);
    }
}
