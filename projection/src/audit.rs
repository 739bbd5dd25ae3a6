//! An operator's consistency audit: the read model against the event store, course by course.
//!
//! 1. Read the whole store with `ReadAll` and fold each course's expected state with the same
//!    pure [`fold`](crate::fold) the projection uses, plus what each storage keeps besides the
//!    summary (participants, sections in order, comments). The last position read is the
//!    *audited position*.
//! 2. Wait (bounded) until the read model's watermark reaches it, so that a live system is not
//!    reported as different merely for lagging.
//! 3. Ask the read model what it holds of each course ([`ReadModel::audit_view`]) and compare.
//!    A course the read model already has at a *later* version than the audited position is
//!    compared at that version (its further events are read from its stream); if it moves on
//!    again meanwhile, it is reported as moved during the audit, not as a difference.
//! 4. Courses the read model lists that the store does not have up to the audited position
//!    are differences, unless their stream exists (created during the audit).
//!
//! The audit only reads: it repairs nothing (a rebuild does).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use course_domain::CourseStatus;
use course_proto::v1::{
    AuditDifference, AuditReadModelRequest, AuditReadModelResponse, AuditUnauditable,
    ReadStreamRequest,
};
use futures::StreamExt;
use tonic::Status;
use uuid::Uuid;

use crate::decode::from_envelope;
use crate::fold::{Change, CourseSummary, FoldError, StoredEvent, apply};
use crate::progress::Progress;
use crate::projector::ProjectError;
use crate::read_model::{ReadModel, ReadModelError};
use crate::{EventStoreClient, wait};

/// Differences listed when the request does not say.
pub const DEFAULT_MAX_DIFFERENCES: u32 = 100;
/// Most differences one answer lists.
pub const MAX_DIFFERENCES: u32 = 10_000;
/// Wait for the read model to catch up when the request does not say.
pub const DEFAULT_CATCH_UP: Duration = Duration::from_secs(5);
/// Longest wait a request may ask for.
pub const MAX_CATCH_UP: Duration = Duration::from_secs(60);
/// Courses whose read-model state is fetched at once.
const CONCURRENT_VIEWS: usize = 16;

/// A section as the audit compares it: identity, place and title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSection {
    /// Id.
    pub section_id: Uuid,
    /// 1-based position.
    pub position: u32,
    /// Title.
    pub title: String,
}

/// What a storage holds of one course. `None`: this storage does not keep that part.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditView {
    /// The stored summary (version, status, texts, counts).
    pub summary: CourseSummary,
    /// The stored participant set.
    pub participants: Option<BTreeSet<Uuid>>,
    /// The stored sections, in position order.
    pub sections: Option<Vec<AuditSection>>,
    /// How many comments are stored for the course (beside the summary's count).
    pub comments: Option<u64>,
    /// Of the users asked about (and the stored participants), those whose own index lists
    /// the course (a user's enrolments).
    pub enrolled: Option<BTreeSet<Uuid>>,
}

impl AuditView {
    /// A view of the summary alone.
    pub fn summary_only(summary: CourseSummary) -> Self {
        Self { summary, participants: None, sections: None, comments: None, enrolled: None }
    }
}

/// One course as the event store says it is.
#[derive(Debug, Clone)]
struct Expected {
    summary: CourseSummary,
    participants: BTreeSet<Uuid>,
    sections: Vec<AuditSection>,
    comments: u64,
}

impl Expected {
    fn apply(current: Option<Self>, event: &StoredEvent) -> Result<Self, FoldError> {
        let (summary, change) = apply(current.as_ref().map(|c| &c.summary), event)?;
        let mut next = match current {
            Some(mut current) => {
                current.summary = summary;
                current
            }
            None => Expected {
                summary,
                participants: BTreeSet::new(),
                sections: Vec::new(),
                comments: 0,
            },
        };
        match change {
            Change::ParticipantJoined { user_id, .. } => {
                next.participants.insert(user_id);
            }
            Change::ParticipantLeft { user_id } => {
                next.participants.remove(&user_id);
            }
            Change::SectionAdded(section) => next.sections.push(AuditSection {
                section_id: section.section_id,
                position: section.position,
                title: section.title,
            }),
            Change::Commented(_) => next.comments += 1,
            Change::Created | Change::DetailsChanged | Change::StatusChanged { .. } => {}
        }
        Ok(next)
    }
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The course.
    pub course_id: Uuid,
    /// What differs (see `AuditDifference.field` in the contract).
    pub field: &'static str,
    /// What the event store says.
    pub expected: String,
    /// What the read model holds.
    pub actual: String,
}

/// What an audit found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditReport {
    /// The store's head when the audit started.
    pub audited_position: u64,
    /// The read model's watermark when the comparison started.
    pub read_model_position: u64,
    /// The generation audited.
    pub generation: u32,
    /// Courses in the store up to the audited position.
    pub courses_in_store: u64,
    /// Courses the read model lists (or, if it cannot list, holds of those in the store).
    pub courses_in_read_model: u64,
    /// Every difference found.
    pub difference_count: u64,
    /// The first `max_differences` of them, by course id.
    pub differences: Vec<Difference>,
    /// Courses that changed during the audit and could not be compared.
    pub moved_during_audit: Vec<Uuid>,
    /// What was compared.
    pub compared: BTreeSet<&'static str>,
    /// Events that could not be audited; their courses are left out.
    pub unauditable: Vec<Unauditable>,
}

/// An event of the store the audit could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauditable {
    /// Its global position.
    pub position: u64,
    /// Its course, when it decodes.
    pub course_id: Option<Uuid>,
    /// Why.
    pub reason: String,
}

/// The store as the audit sees it.
struct Store {
    /// Every course whose events fold.
    courses: BTreeMap<Uuid, Expected>,
    /// Courses left out (an event of theirs does not fold).
    left_out: BTreeSet<Uuid>,
    unauditable: Vec<Unauditable>,
    head: u64,
}

/// Why an audit could not run.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// No generation has been built yet.
    #[error("the read model has no generation yet")]
    NotBuilt,
    /// The read model's storage failed.
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    /// The event store could not be read, or answered something unusable.
    #[error(transparent)]
    EventStore(#[from] ProjectError),
}

impl From<AuditError> for Status {
    fn from(err: AuditError) -> Self {
        match err {
            AuditError::NotBuilt => Status::failed_precondition(
                "the read model has no generation yet; audit after its first build",
            ),
            AuditError::ReadModel(err) => {
                tracing::warn!(error = %err, "audit: read model unavailable");
                Status::unavailable("the read model is unavailable; retry later")
            }
            AuditError::EventStore(err) if err.is_transient() => {
                tracing::warn!(error = %err, "audit: event store unavailable");
                Status::unavailable("the event store is unavailable; retry later")
            }
            AuditError::EventStore(err) => {
                tracing::error!(error = %err, "audit: the event store's events do not fold");
                Status::internal("the audit failed (see the service's log)")
            }
        }
    }
}

/// How an audit is run.
#[derive(Debug, Clone, Copy)]
pub struct AuditOptions {
    /// Differences listed at most.
    pub max_differences: usize,
    /// How long to wait for the read model to reach the store's head.
    pub catch_up: Duration,
}

impl AuditOptions {
    /// From the request, with defaults for zeros; out-of-range values are INVALID_ARGUMENT.
    pub fn from_request(request: &AuditReadModelRequest) -> Result<Self, Status> {
        let mut violations = platform::grpc::Violations::new();
        let max_differences = violations.check(
            "max_differences",
            match request.max_differences {
                0 => Ok(DEFAULT_MAX_DIFFERENCES),
                n if n <= MAX_DIFFERENCES => Ok(n),
                _ => Err(format!("at most {MAX_DIFFERENCES}")),
            },
        );
        let catch_up = violations.check(
            "catch_up_timeout_ms",
            match u64::from(request.catch_up_timeout_ms) {
                0 => Ok(DEFAULT_CATCH_UP),
                ms if ms <= MAX_CATCH_UP.as_millis() as u64 => Ok(Duration::from_millis(ms)),
                _ => Err(format!("at most {}", MAX_CATCH_UP.as_millis())),
            },
        );
        violations.finish()?;
        Ok(Self {
            max_differences: max_differences.unwrap_or_default() as usize,
            catch_up: catch_up.unwrap_or_default(),
        })
    }
}

/// Runs an audit of the active generation of `model` against the event store.
pub async fn audit<M: ReadModel>(
    model: &M,
    progress: &Progress,
    events: EventStoreClient,
    options: AuditOptions,
) -> Result<AuditReport, AuditError> {
    let generation = model.generations().await?.active;
    if generation == 0 {
        return Err(AuditError::NotBuilt);
    }
    let Store { courses: expected, left_out, unauditable, head } =
        read_store(events.clone()).await?;
    // Lagging is not a difference: give the read model the time to apply what is there.
    match wait::for_position(model, progress, head, options.catch_up).await {
        Ok(()) | Err(wait::WaitError::Behind { .. }) => {}
        Err(wait::WaitError::ReadModel(err)) => return Err(err.into()),
    }
    let read_model_position = model.watermark(generation).await?;
    let mut report = AuditReport {
        audited_position: head,
        read_model_position,
        generation,
        courses_in_store: expected.len() as u64,
        compared: BTreeSet::from(["summary"]),
        unauditable,
        ..AuditReport::default()
    };
    let mut differences = Vec::new();
    let mut present = 0u64;
    let courses: Vec<(Uuid, Expected)> =
        expected.iter().map(|(id, want)| (*id, want.clone())).collect();
    let checked = futures::stream::iter(courses)
        .map(|(id, want)| check_course(model, generation, events.clone(), id, want))
        .buffered(CONCURRENT_VIEWS);
    futures::pin_mut!(checked);
    let mut in_read_model = BTreeSet::new();
    while let Some(checked) = checked.next().await {
        let checked = checked?;
        match checked {
            Checked::Compared { course_id, found, compared } => {
                if found {
                    present += 1;
                    in_read_model.insert(course_id);
                }
                report.compared.extend(compared.compared);
                differences.extend(compared.differences);
            }
            Checked::Moved(course_id) => {
                present += 1;
                in_read_model.insert(course_id);
                report.moved_during_audit.push(course_id);
            }
        }
    }
    report.courses_in_read_model = present;
    if let Some(listed) = model.audit_course_ids(generation).await? {
        report.compared.insert("listing");
        report.courses_in_read_model = listed.len() as u64;
        let listed: BTreeSet<Uuid> = listed.into_iter().collect();
        for course_id in in_read_model.difference(&listed) {
            differences.push(Difference {
                course_id: *course_id,
                field: "listed",
                expected: "listed".into(),
                actual: "stored but not listed".into(),
            });
        }
        let known = |id: &&Uuid| expected.contains_key(id) || left_out.contains(id);
        for course_id in listed.iter().filter(|id| !known(id)) {
            if stream_exists(events.clone(), *course_id).await? {
                // Created after the audited position.
                report.moved_during_audit.push(*course_id);
            } else {
                differences.push(Difference {
                    course_id: *course_id,
                    field: "course",
                    expected: "absent".into(),
                    actual: "present".into(),
                });
            }
        }
    }
    differences.sort_by(|a, b| (a.course_id, a.field).cmp(&(b.course_id, b.field)));
    report.difference_count = differences.len() as u64;
    differences.truncate(options.max_differences);
    report.differences = differences;
    report.moved_during_audit.sort();
    tracing::info!(
        generation,
        audited_position = head,
        read_model_position,
        courses = report.courses_in_store,
        differences = report.difference_count,
        moved = report.moved_during_audit.len(),
        unauditable = report.unauditable.len(),
        "audit done"
    );
    Ok(report)
}

/// [`audit`] behind the admin RPC.
pub async fn serve<M: ReadModel>(
    model: &M,
    progress: &Progress,
    events: EventStoreClient,
    request: &AuditReadModelRequest,
) -> Result<AuditReadModelResponse, Status> {
    let options = AuditOptions::from_request(request)?;
    let report = audit(model, progress, events, options).await?;
    Ok(report.into())
}

impl From<AuditReport> for AuditReadModelResponse {
    fn from(report: AuditReport) -> Self {
        Self {
            audited_position: report.audited_position,
            read_model_position: report.read_model_position,
            generation: report.generation,
            courses_in_store: report.courses_in_store,
            courses_in_read_model: report.courses_in_read_model,
            difference_count: report.difference_count,
            differences: report
                .differences
                .into_iter()
                .map(|d| AuditDifference {
                    course_id: d.course_id.to_string(),
                    field: d.field.to_owned(),
                    expected: d.expected,
                    actual: d.actual,
                })
                .collect(),
            moved_during_audit: report.moved_during_audit.iter().map(Uuid::to_string).collect(),
            compared: report.compared.into_iter().map(str::to_owned).collect(),
            unauditable: report
                .unauditable
                .into_iter()
                .map(|u| AuditUnauditable {
                    global_position: u.position,
                    course_id: u.course_id.map(|id| id.to_string()).unwrap_or_default(),
                    reason: u.reason,
                })
                .collect(),
        }
    }
}

/// Every course in the store, folded, up to the last position read. An event that does not
/// decode, or does not fold onto its course, leaves its course out (reported, not fatal).
async fn read_store(events: EventStoreClient) -> Result<Store, ProjectError> {
    let mut store = Store {
        courses: BTreeMap::new(),
        left_out: BTreeSet::new(),
        unauditable: Vec::new(),
        head: 0,
    };
    loop {
        let (page, undecodable, last) =
            crate::rebuild::read_page(events.clone(), store.head).await?;
        for letter in undecodable {
            store.head = store.head.max(letter.position);
            let course_id = Uuid::parse_str(&letter.course_id).ok();
            if let Some(course_id) = course_id {
                store.courses.remove(&course_id);
                store.left_out.insert(course_id);
            }
            store.unauditable.push(Unauditable {
                position: letter.position,
                course_id,
                reason: letter.reason,
            });
        }
        for event in &page {
            store.head = store.head.max(event.global_position);
            if store.left_out.contains(&event.course_id) {
                continue;
            }
            let current = store.courses.remove(&event.course_id);
            match Expected::apply(current, event) {
                Ok(folded) => {
                    store.courses.insert(event.course_id, folded);
                }
                Err(err) => {
                    store.left_out.insert(event.course_id);
                    store.unauditable.push(Unauditable {
                        position: event.global_position,
                        course_id: Some(event.course_id),
                        reason: err.to_string(),
                    });
                }
            }
        }
        if last {
            store.unauditable.sort_by_key(|u| u.position);
            return Ok(store);
        }
    }
}

/// The result of checking one course.
enum Checked {
    Compared { course_id: Uuid, found: bool, compared: Comparison },
    Moved(Uuid),
}

#[derive(Default)]
struct Comparison {
    differences: Vec<Difference>,
    compared: Vec<&'static str>,
}

/// Tries the comparison at most this often while a course keeps moving.
const ATTEMPTS: usize = 3;

async fn check_course<M: ReadModel>(
    model: &M,
    generation: u32,
    events: EventStoreClient,
    course_id: Uuid,
    mut want: Expected,
) -> Result<Checked, AuditError> {
    let mut view = model.audit_view(generation, course_id, &want.participants).await?;
    for _ in 0..ATTEMPTS {
        let Some(seen) = view else {
            let difference = Difference {
                course_id,
                field: "course",
                expected: format!("present at version {}", want.summary.version),
                actual: "absent".into(),
            };
            return Ok(Checked::Compared {
                course_id,
                found: false,
                compared: Comparison { differences: vec![difference], compared: Vec::new() },
            });
        };
        if seen.summary.version > want.summary.version {
            // The read model is ahead of the audited position: compare at its version, read
            // again (the parts of a view are read one after another).
            want = catch_up(events.clone(), want, seen.summary.version).await?;
            if want.summary.version < seen.summary.version {
                // The store has no such version: not a race, a read model ahead of the truth.
                return Ok(Checked::Compared {
                    course_id,
                    found: true,
                    compared: compare(&want, &seen),
                });
            }
            view = model.audit_view(generation, course_id, &want.participants).await?;
            continue;
        }
        let compared = compare(&want, &seen);
        if compared.differences.is_empty() {
            return Ok(Checked::Compared { course_id, found: true, compared });
        }
        // A difference counts only if a second read finds the course at the same version: a
        // view torn by a concurrent write shows a newer version the second time.
        let again = model.audit_view(generation, course_id, &want.participants).await?;
        if again.as_ref().map(|v| v.summary.version) == Some(seen.summary.version) {
            return Ok(Checked::Compared { course_id, found: true, compared });
        }
        view = again;
    }
    Ok(Checked::Moved(course_id))
}

/// `want` folded further with its stream's events up to `version`.
async fn catch_up(
    mut events: EventStoreClient,
    mut want: Expected,
    version: u64,
) -> Result<Expected, ProjectError> {
    let have = want.summary.version;
    let mut stream = events
        .read_stream(ReadStreamRequest {
            course_id: want.summary.course_id.to_string(),
            from_version: have + 1,
            max_count: u32::try_from(version - have).unwrap_or(u32::MAX),
        })
        .await?
        .into_inner();
    while let Some(item) = stream.next().await {
        let Some(envelope) = item?.event else { continue };
        let event = from_envelope(&envelope)?;
        if event.version > version {
            break;
        }
        want = Expected::apply(Some(want), &event)?;
    }
    Ok(want)
}

async fn stream_exists(mut events: EventStoreClient, course: Uuid) -> Result<bool, ProjectError> {
    let request =
        ReadStreamRequest { course_id: course.to_string(), from_version: 1, max_count: 1 };
    let mut stream = match events.read_stream(request).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == tonic::Code::NotFound => return Ok(false),
        Err(status) => return Err(status.into()),
    };
    while let Some(item) = stream.next().await {
        if item?.event.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn status_text(status: CourseStatus) -> String {
    format!("{status:?}")
}

fn ids(set: impl IntoIterator<Item = Uuid>) -> String {
    set.into_iter().map(|id| id.to_string()).collect::<Vec<_>>().join(",")
}

/// Compares one course; for sets, `expected` lists the members the read model lacks and
/// `actual` those the store does not have.
fn compare(want: &Expected, view: &AuditView) -> Comparison {
    let mut out = Comparison::default();
    let course_id = want.summary.course_id;
    let mut differ = |field: &'static str, expected: String, actual: String| {
        if expected != actual {
            out.differences.push(Difference { course_id, field, expected, actual });
        }
    };
    let (w, a) = (&want.summary, &view.summary);
    differ("version", w.version.to_string(), a.version.to_string());
    differ("status", status_text(w.status), status_text(a.status));
    differ("title", w.title.clone(), a.title.clone());
    differ("description", w.description.clone(), a.description.clone());
    differ("category", w.category.clone(), a.category.clone());
    differ("instructor", w.instructor_id.to_string(), a.instructor_id.to_string());
    differ("max_participants", w.max_participants.to_string(), a.max_participants.to_string());
    differ("participant_count", w.participant_count.to_string(), a.participant_count.to_string());
    differ("section_count", w.section_count.to_string(), a.section_count.to_string());
    differ("comment_count", w.comment_count.to_string(), a.comment_count.to_string());
    let mut sets = |field: &'static str, expected: &BTreeSet<Uuid>, actual: &BTreeSet<Uuid>| {
        if expected != actual {
            out.differences.push(Difference {
                course_id,
                field,
                expected: ids(expected.difference(actual).copied()),
                actual: ids(actual.difference(expected).copied()),
            });
        }
    };
    if let Some(participants) = &view.participants {
        out.compared.push("participants");
        sets("participants", &want.participants, participants);
    }
    if let Some(enrolled) = &view.enrolled {
        out.compared.push("enrolments");
        sets("enrolments", &want.participants, enrolled);
    }
    if let Some(sections) = &view.sections {
        out.compared.push("sections");
        if sections != &want.sections {
            let text = |s: &[AuditSection]| {
                s.iter()
                    .map(|s| format!("{}:{}:{}", s.position, s.section_id, s.title))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            out.differences.push(Difference {
                course_id,
                field: "sections",
                expected: text(&want.sections),
                actual: text(sections),
            });
        }
    }
    if let Some(comments) = view.comments {
        out.compared.push("comments");
        if comments != want.comments {
            out.differences.push(Difference {
                course_id,
                field: "comments",
                expected: want.comments.to_string(),
                actual: comments.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use course_domain::Event;

    use super::*;

    fn event(version: u64, event: Event) -> StoredEvent {
        StoredEvent {
            event_id: Uuid::now_v7(),
            course_id: Uuid::from_u128(42),
            version,
            global_position: version,
            occurred_at: DateTime::from_timestamp(1_700_000_000 + version as i64, 0)
                .expect("valid"),
            event,
        }
    }

    fn expected() -> Expected {
        let (alice, bob) = (Uuid::from_u128(7), Uuid::from_u128(8));
        let events = [
            Event::CourseCreated {
                instructor_id: Uuid::from_u128(1),
                title: "Rust".into(),
                description: "Ownership".into(),
                category: "Programming".into(),
                max_participants: 5,
            },
            Event::SectionAdded {
                section_id: Uuid::from_u128(9),
                position: 1,
                title: "Intro".into(),
                description: String::new(),
                video_url: "https://v.example/1".into(),
            },
            Event::UserJoinedCourse { user_id: alice },
            Event::UserJoinedCourse { user_id: bob },
            Event::UserLeftCourse { user_id: alice },
            Event::CourseCommented {
                comment_id: Uuid::from_u128(3),
                author_id: bob,
                text: "Nice".into(),
            },
        ];
        let mut want = None;
        for (n, e) in events.into_iter().enumerate() {
            want = Some(Expected::apply(want, &event(n as u64 + 1, e)).expect("folds"));
        }
        want.expect("course")
    }

    fn faithful(want: &Expected) -> AuditView {
        AuditView {
            summary: want.summary.clone(),
            participants: Some(want.participants.clone()),
            sections: Some(want.sections.clone()),
            comments: Some(want.comments),
            enrolled: Some(want.participants.clone()),
        }
    }

    #[test]
    fn the_expected_state_keeps_participants_sections_and_comments() {
        let want = expected();
        assert_eq!(want.participants, BTreeSet::from([Uuid::from_u128(8)]));
        assert_eq!(want.sections.len(), 1);
        assert_eq!((want.comments, want.summary.version), (1, 6));
    }

    #[test]
    fn a_faithful_view_has_no_differences_and_says_what_was_compared() {
        let want = expected();
        let comparison = compare(&want, &faithful(&want));
        assert!(comparison.differences.is_empty());
        assert_eq!(comparison.compared, ["participants", "enrolments", "sections", "comments"]);
        let summary_only = compare(&want, &AuditView::summary_only(want.summary.clone()));
        assert!(summary_only.differences.is_empty() && summary_only.compared.is_empty());
    }

    #[test]
    fn each_corrupted_part_is_named_with_both_sides() {
        let want = expected();
        let mut view = faithful(&want);
        view.summary.title = "Wrong".into();
        view.participants = Some(BTreeSet::new());
        view.sections = Some(Vec::new());
        view.comments = Some(0);
        let fields: Vec<(&str, String, String)> = compare(&want, &view)
            .differences
            .into_iter()
            .map(|d| (d.field, d.expected, d.actual))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("title", "Rust".to_owned(), "Wrong".to_owned()),
                ("participants", Uuid::from_u128(8).to_string(), String::new()),
                ("sections", format!("1:{}:Intro", Uuid::from_u128(9)), String::new()),
                ("comments", "1".to_owned(), "0".to_owned()),
            ]
        );
    }

    #[test]
    fn request_limits_are_checked() {
        let options = AuditOptions::from_request(&AuditReadModelRequest::default()).expect("ok");
        assert_eq!(options.max_differences, DEFAULT_MAX_DIFFERENCES as usize);
        assert_eq!(options.catch_up, DEFAULT_CATCH_UP);
        let too_many = AuditReadModelRequest {
            max_differences: MAX_DIFFERENCES + 1,
            catch_up_timeout_ms: 60_001,
        };
        let status = AuditOptions::from_request(&too_many).expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("max_differences"), "{}", status.message());
        assert!(status.message().contains("catch_up_timeout_ms"), "{}", status.message());
    }
}
