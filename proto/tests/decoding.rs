//! Decoding never panics: arbitrary bytes into every request message and the event envelope,
//! and arbitrary envelopes into domain events (refused with an error, never a panic).

use course_domain::Event;
use course_proto::PayloadError;
use course_proto::v1::{self, event_envelope::Payload};
use proptest::prelude::*;
use prost::Message;
use uuid::Uuid;

/// Decodes `bytes` as `M`; if that works, the message encodes again and decodes to itself.
fn decodes_or_refuses<M: Message + Default + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    if let Ok(message) = M::decode(bytes) {
        let again = M::decode(message.encode_to_vec().as_slice());
        prop_assert_eq!(again.as_ref(), Ok(&message));
    }
    Ok(())
}

macro_rules! every_message {
    ($bytes:expr, $($message:ident),+ $(,)?) => {
        $( decodes_or_refuses::<v1::$message>($bytes)?; )+
    };
}

fn every_request(bytes: &[u8]) -> Result<(), TestCaseError> {
    every_message!(
        bytes,
        CreateCourseRequest,
        ChangeCourseTitleRequest,
        ChangeCourseDescriptionRequest,
        PresentCourseRequest,
        ActivateCourseRequest,
        CompleteCourseRequest,
        AddSectionRequest,
        JoinCourseRequest,
        LeaveCourseRequest,
        CommentCourseRequest,
        GetCourseRequest,
        ListCoursesRequest,
        ListPopularCoursesRequest,
        ListCourseParticipantsRequest,
        ListUserCoursesRequest,
        GetCourseDetailsRequest,
        SearchCoursesRequest,
        ListCourseCommentsRequest,
        ListUserEnrollmentsRequest,
        GetPlatformStatsRequest,
        ReadStreamRequest,
        ReadAllRequest,
        GetProjectionStatusRequest,
        RebuildReadModelRequest,
        AuditReadModelRequest,
        EventEnvelope,
    );
    Ok(())
}

/// Text that is sometimes a UUID, sometimes nearly one, sometimes anything.
fn maybe_uuid() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
        any::<u128>().prop_map(|n| Uuid::from_u128(n).simple().to_string()),
        any::<u128>().prop_map(|n| format!("{}x", &Uuid::from_u128(n).to_string()[1..])),
        ".{0,40}",
    ]
}

fn is_uuid(text: &str) -> bool {
    Uuid::parse_str(text).is_ok()
}

fn payload() -> impl Strategy<Value = (Payload, bool)> {
    prop_oneof![
        (maybe_uuid(), ".{0,8}", any::<u32>()).prop_map(|(id, title, max)| {
            let ok = is_uuid(&id);
            (
                Payload::CourseCreated(v1::CourseCreated {
                    instructor_id: id,
                    title,
                    description: String::new(),
                    category: String::new(),
                    max_participants: max,
                }),
                ok,
            )
        }),
        ".{0,8}".prop_map(|title| (
            Payload::CourseTitleChanged(v1::CourseTitleChanged { title }),
            true
        )),
        Just((Payload::CoursePresented(v1::CoursePresented {}), true)),
        Just((Payload::CourseCompleted(v1::CourseCompleted {}), true)),
        (maybe_uuid(), any::<u32>()).prop_map(|(id, position)| {
            let ok = is_uuid(&id);
            (
                Payload::SectionAdded(v1::SectionAdded {
                    section_id: id,
                    position,
                    title: String::new(),
                    description: String::new(),
                    video_url: String::new(),
                }),
                ok,
            )
        }),
        maybe_uuid().prop_map(|id| {
            let ok = is_uuid(&id);
            (Payload::UserJoinedCourse(v1::UserJoinedCourse { user_id: id }), ok)
        }),
        maybe_uuid().prop_map(|id| {
            let ok = is_uuid(&id);
            (Payload::UserLeftCourse(v1::UserLeftCourse { user_id: id }), ok)
        }),
        (maybe_uuid(), maybe_uuid(), ".{0,8}").prop_map(|(comment, author, text)| {
            let ok = is_uuid(&comment) && is_uuid(&author);
            (
                Payload::CourseCommented(v1::CourseCommented {
                    comment_id: comment,
                    author_id: author,
                    text,
                }),
                ok,
            )
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        every_request(&bytes)?;
        if let Ok(envelope) = v1::EventEnvelope::decode(bytes.as_slice()) {
            // Whatever decodes converts or is refused: no panic either way.
            let _ = Event::try_from(&envelope);
        }
    }

    /// Valid encodings, cut short or with a byte changed: still no panic anywhere.
    #[test]
    fn damaged_envelopes_never_panic(
        (payload, _) in payload(),
        cut in any::<prop::sample::Index>(),
        flip in any::<(prop::sample::Index, u8)>(),
    ) {
        let envelope = v1::EventEnvelope {
            event_id: Uuid::from_u128(1).to_string(),
            course_id: Uuid::from_u128(2).to_string(),
            version: 3,
            global_position: 4,
            event_type: "X".into(),
            occurred_at: Some(prost_types::Timestamp { seconds: 1, nanos: 2 }),
            metadata: None,
            payload: Some(payload),
        };
        let mut bytes = envelope.encode_to_vec();
        let (at, xor) = flip;
        let index = at.index(bytes.len());
        bytes[index] ^= xor;
        every_request(&bytes)?;
        let truncated = &bytes[..cut.index(bytes.len() + 1)];
        every_request(truncated)?;
        for body in [bytes.as_slice(), truncated] {
            if let Ok(envelope) = v1::EventEnvelope::decode(body) {
                let _ = Event::try_from(&envelope);
            }
        }
    }

    /// The domain conversion accepts exactly the payloads whose id fields are UUIDs, refuses
    /// the others with an error naming the field, and what it accepts converts back unchanged.
    #[test]
    fn the_domain_conversion_refuses_garbage_with_an_error((payload, valid) in payload()) {
        match Event::try_from(&payload) {
            Ok(event) => {
                prop_assert!(valid, "accepted {:?}", payload);
                let back = Payload::from(&event);
                let again = Event::try_from(&back);
                prop_assert_eq!(again.as_ref(), Ok(&event));
                // Canonical UUID text may differ from the input (simple form), the value not.
                prop_assert_eq!(Event::try_from(&back).ok(), Some(event));
            }
            Err(error) => {
                prop_assert!(!valid, "refused {:?}: {}", payload, error);
                let is_bad_uuid = matches!(error, PayloadError::BadUuid(_));
                prop_assert!(is_bad_uuid, "{:?}", error);
            }
        }
    }
}

#[test]
fn an_envelope_without_a_payload_is_refused() {
    let envelope = v1::EventEnvelope::default();
    assert_eq!(Event::try_from(&envelope), Err(PayloadError::Missing));
    assert_eq!(
        course_domain::CourseStatus::try_from(v1::CourseStatus::Unspecified),
        Err(PayloadError::UnspecifiedStatus)
    );
}
