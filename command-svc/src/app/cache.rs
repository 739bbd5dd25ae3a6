//! Recently used courses, kept in memory so that deciding a command reads only the events
//! appended since (usually none) instead of the whole stream.
//!
//! An entry is only read or replaced while its course's [`super::KeyedLocks`] lock is held, so
//! within one replica it is never stale; writes by other replicas are caught up by reading the
//! events after the cached version. The map is bounded: past `capacity` it starts over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use course_domain::Course;
use uuid::Uuid;

/// Bounded map of course id to the course as of its cached version.
#[derive(Clone)]
pub struct CourseCache {
    inner: Arc<Mutex<HashMap<Uuid, Course>>>,
    capacity: usize,
}

impl CourseCache {
    /// At most `capacity` courses.
    pub fn new(capacity: usize) -> Self {
        Self { inner: Arc::new(Mutex::new(HashMap::new())), capacity }
    }

    /// Takes the cached course out (the caller puts back the updated one).
    pub fn take(&self, id: Uuid) -> Option<Course> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).remove(&id)
    }

    /// Stores the course as of its current version.
    pub fn put(&self, id: Uuid, course: Course) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&id) {
            map.clear();
        }
        map.insert(id, course);
    }
}
