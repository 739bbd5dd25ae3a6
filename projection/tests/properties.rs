//! Property tests of the projection fold and of message decoding.
//!
//! The fold: whatever order the broker delivers a course's events in, with duplicates, a
//! receiver that applies only what the fold accepts (skipping what it already has, filling a
//! gap from the store as the projector does) ends with exactly the state of the in-order fold,
//! and with every change applied exactly once. Decoding: any message body is decoded or refused
//! as a poison message, never a panic, and envelope headers are checked, not trusted.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use course_domain::{Command, Course};
use projection::fold::{self, Change, CourseSummary, FoldError, StoredEvent};
use proptest::prelude::*;
use uuid::Uuid;

fn at(second: u64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + second as i64, 0).unwrap_or_default()
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Present),
        Just(Command::Activate),
        Just(Command::Complete),
        (0u8..3).prop_map(|n| Command::ChangeTitle { title: format!("title {n}") }),
        (0u8..3).prop_map(|n| Command::ChangeDescription { description: format!("text {n}") }),
        any::<u128>().prop_map(|id| Command::AddSection {
            section_id: Uuid::from_u128(id),
            title: "s".into(),
            description: String::new(),
            video_url: "https://v.example/1".into(),
        }),
        Just(Command::Join),
        Just(Command::Join),
        Just(Command::Leave),
        any::<u128>()
            .prop_map(|id| Command::Comment { comment_id: Uuid::from_u128(id), text: "hi".into() }),
    ]
}

/// A valid history of one course: the aggregate decides random commands of the instructor
/// (actor 0) and three users; refused ones leave no event.
fn history(course: u128) -> impl Strategy<Value = Vec<StoredEvent>> {
    (0u32..3, prop::collection::vec(((0u128..4), command()), 0..30)).prop_map(
        move |(max, steps)| {
            let course_id = Uuid::from_u128(1_000 + course);
            let instructor = Uuid::from_u128(1);
            let mut aggregate = Course::default();
            let mut events = Vec::new();
            let create = Command::CreateCourse {
                title: "Rust".into(),
                description: "Ownership".into(),
                category: "Programming".into(),
                max_participants: max,
            };
            let commands = std::iter::once((instructor, create))
                .chain(steps.into_iter().map(|(who, c)| (Uuid::from_u128(who + 1), c)));
            for (actor, command) in commands {
                for event in aggregate.handle(actor, &command).unwrap_or_default() {
                    aggregate.apply(&event);
                    events.push(StoredEvent {
                        event_id: Uuid::from_u128(course << 64 | aggregate.version as u128),
                        course_id,
                        version: aggregate.version,
                        global_position: 0,
                        occurred_at: at(aggregate.version),
                        event,
                    });
                }
            }
            events
        },
    )
}

/// Several courses, their events numbered in one global order (courses interleaved).
fn histories() -> impl Strategy<Value = Vec<Vec<StoredEvent>>> {
    (1u128..4).prop_flat_map(|n| (0..n).map(history).collect::<Vec<_>>())
}

/// What a read model keeps besides the summary, built from the changes the fold reports.
#[derive(Debug, Default, Clone, PartialEq)]
struct View {
    summary: Option<CourseSummary>,
    sections: Vec<(Uuid, u32)>,
    participants: BTreeSet<Uuid>,
    comments: Vec<(Uuid, String)>,
    changes: usize,
}

impl View {
    fn record(&mut self, summary: CourseSummary, change: Change) {
        match change {
            Change::SectionAdded(s) => self.sections.push((s.section_id, s.position)),
            Change::ParticipantJoined { user_id, .. } => {
                assert!(self.participants.insert(user_id), "a join applied twice");
            }
            Change::ParticipantLeft { user_id } => {
                assert!(self.participants.remove(&user_id), "a leave applied twice");
            }
            Change::Commented(c) => self.comments.push((c.comment_id, c.text)),
            Change::Created | Change::DetailsChanged | Change::StatusChanged { .. } => {}
        }
        self.changes += 1;
        self.summary = Some(summary);
    }
}

fn in_order(events: &[StoredEvent]) -> View {
    let mut view = View::default();
    for event in events {
        let (summary, change) = fold::apply(view.summary.as_ref(), event).expect("in order");
        view.record(summary, change);
    }
    view
}

/// The projector's rule, over the pure fold: apply what follows; skip what is already applied;
/// for a gap, read the missing versions from the store (the history) first.
fn deliver(view: &mut View, store: &[StoredEvent], event: &StoredEvent) {
    match fold::apply(view.summary.as_ref(), event) {
        Ok((summary, change)) => view.record(summary, change),
        Err(FoldError::NotNext { have, got, .. }) if got <= have => {}
        Err(FoldError::NotNext { have, got, .. }) => {
            for missing in &store[have as usize..got as usize] {
                let (summary, change) =
                    fold::apply(view.summary.as_ref(), missing).expect("the store is in order");
                view.record(summary, change);
            }
        }
        Err(FoldError::NotCreated(..)) => {
            for missing in &store[..event.version as usize] {
                let (summary, change) =
                    fold::apply(view.summary.as_ref(), missing).expect("the store is in order");
                view.record(summary, change);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_delivery_order_with_duplicates_gives_the_in_order_state(
        (mut courses, deliveries) in histories().prop_flat_map(|courses| {
            let total: usize = courses.iter().map(Vec::len).sum();
            // Each delivery names an event by its index in the global order; indexes repeat
            // (duplicates, redeliveries) and come in any order; every event comes at least once.
            let extra = prop::collection::vec(0..total, 0..total * 2);
            (Just(courses), extra.prop_flat_map(move |extra| {
                let all: Vec<usize> = (0..total).chain(extra).collect();
                Just(all).prop_shuffle()
            }))
        })
    ) {
        // Number the events globally: course by course, interleaved round-robin.
        let mut position = 0;
        let longest = courses.iter().map(Vec::len).max().unwrap_or(0);
        for version in 0..longest {
            for course in courses.iter_mut() {
                if let Some(event) = course.get_mut(version) {
                    position += 1;
                    event.global_position = position;
                }
            }
        }
        let mut by_position: Vec<&StoredEvent> = courses.iter().flatten().collect();
        by_position.sort_by_key(|e| e.global_position);

        let mut views: BTreeMap<Uuid, View> = BTreeMap::new();
        for index in &deliveries {
            let event = by_position[*index];
            let store = courses
                .iter()
                .find(|c| c[0].course_id == event.course_id)
                .expect("its course");
            deliver(views.entry(event.course_id).or_default(), store, event);
        }
        for course in &courses {
            let expected = in_order(course);
            let got = views.get(&course[0].course_id).cloned().unwrap_or_default();
            prop_assert_eq!(&got, &expected);
            prop_assert_eq!(got.changes, course.len(), "every event applied exactly once");
        }
    }

    /// The fold agrees with the aggregate on everything both know.
    #[test]
    fn the_fold_agrees_with_the_aggregate(events in history(0)) {
        let view = in_order(&events);
        let course = Course::from_events(events.iter().map(|e| &e.event));
        let summary = view.summary.expect("created");
        prop_assert_eq!(summary.version, course.version);
        prop_assert_eq!(Some(summary.status), course.status);
        prop_assert_eq!(&summary.title, &course.title);
        prop_assert_eq!(&summary.description, &course.description);
        prop_assert_eq!(summary.participant_count as usize, course.participants.len());
        prop_assert_eq!(&view.participants, &course.participants.iter().copied().collect());
        prop_assert_eq!(summary.section_count as usize, course.sections.len());
        prop_assert_eq!(summary.comment_count as u64, course.comment_count);
        prop_assert_eq!(summary.updated_at, at(course.version));
    }

    /// Only the next version applies: anything else is refused (never applied twice, never
    /// applied over a gap).
    #[test]
    fn only_the_next_version_is_accepted(events in history(0), pick in any::<prop::sample::Index>()) {
        let view = in_order(&events);
        let summary = view.summary.expect("created");
        let event = pick.get(&events);
        let refused = fold::apply(Some(&summary), event);
        let is_not_next = matches!(refused, Err(FoldError::NotNext { .. }));
        prop_assert!(is_not_next, "{:?}", refused);
        let mut ahead = event.clone();
        ahead.version = summary.version + 2;
        let is_not_next = matches!(fold::apply(Some(&summary), &ahead), Err(FoldError::NotNext { .. }));
        prop_assert!(is_not_next);
    }
}

/// An envelope with arbitrary header fields around a valid payload.
fn envelope() -> impl Strategy<Value = course_proto::v1::EventEnvelope> {
    use course_proto::v1;
    (
        prop_oneof![any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()), ".{0,40}"],
        prop_oneof![any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()), ".{0,40}"],
        any::<u64>(),
        any::<u64>(),
        prop::option::of((any::<i64>(), any::<i32>())),
        prop::sample::select(vec!["CoursePresented", "CourseActivated", "", "Nope"]),
    )
        .prop_map(|(event_id, course_id, version, global_position, at, event_type)| {
            v1::EventEnvelope {
                event_id,
                course_id,
                version,
                global_position,
                event_type: event_type.to_owned(),
                occurred_at: at.map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
                metadata: None,
                payload: Some(v1::event_envelope::Payload::CoursePresented(v1::CoursePresented {})),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// A message body the consumer cannot use is refused as a poison message, never a panic.
    #[test]
    fn arbitrary_message_bodies_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = projection::decode_body(&bytes);
    }

    /// Envelope headers are checked: what decodes has UUIDs, a positive version and position,
    /// the type its payload has, and a representable time.
    #[test]
    fn envelope_headers_are_checked_not_trusted(envelope in envelope()) {
        use prost::Message;
        match projection::decode_body(&envelope.encode_to_vec()) {
            Ok(event) => {
                prop_assert_eq!(Uuid::parse_str(&envelope.event_id).ok(), Some(event.event_id));
                prop_assert_eq!(Uuid::parse_str(&envelope.course_id).ok(), Some(event.course_id));
                prop_assert!(event.version > 0 && event.global_position > 0);
                prop_assert_eq!(envelope.event_type.as_str(), "CoursePresented");
                prop_assert_eq!(event.occurred_at.timestamp(), envelope.occurred_at.map(|t| t.seconds).unwrap_or_default());
            }
            Err(_) => {
                let at_ok = envelope.occurred_at.is_some_and(|t| {
                    DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32).is_some()
                });
                let valid = Uuid::parse_str(&envelope.event_id).is_ok()
                    && Uuid::parse_str(&envelope.course_id).is_ok()
                    && envelope.version > 0
                    && envelope.global_position > 0
                    && envelope.event_type == "CoursePresented"
                    && at_ok;
                prop_assert!(!valid, "a valid envelope was refused: {:?}", envelope);
            }
        }
    }
}
