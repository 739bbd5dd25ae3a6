//! Property tests of the course aggregate: random command sequences from random actors,
//! checked against a small, independent model of the rules and against the invariants the
//! accepted events must keep (capacity, ownership, status order, no duplicate participant).

use std::collections::BTreeSet;

use course_domain::{Command, Course, CourseStatus, DomainError, Event, MAX_SECTIONS};
use proptest::prelude::*;
use uuid::Uuid;

/// Four people: any of them may create the course and so become its instructor.
const PEOPLE: u128 = 4;

fn person(n: u128) -> Uuid {
    Uuid::from_u128(n + 1)
}

fn command() -> impl Strategy<Value = Command> {
    let text = prop::sample::select(vec!["Rust", "Go", "Zig"]).prop_map(str::to_owned);
    prop_oneof![
        1 => (text.clone(), 0u32..4).prop_map(|(title, max_participants)| Command::CreateCourse {
            title,
            description: "d".into(),
            category: "c".into(),
            max_participants,
        }),
        1 => text.clone().prop_map(|title| Command::ChangeTitle { title }),
        1 => text.clone().prop_map(|description| Command::ChangeDescription { description }),
        1 => Just(Command::Present),
        1 => Just(Command::Activate),
        1 => Just(Command::Complete),
        1 => any::<u128>().prop_map(|id| Command::AddSection {
            section_id: Uuid::from_u128(id),
            title: "s".into(),
            description: String::new(),
            video_url: "https://v.example/1".into(),
        }),
        // Joins and leaves weigh more: capacity and duplicates need many of them.
        3 => Just(Command::Join),
        2 => Just(Command::Leave),
        1 => text.prop_map(|text| Command::Comment { comment_id: Uuid::from_u128(7), text }),
    ]
}

fn steps() -> impl Strategy<Value = Vec<(Uuid, Command)>> {
    prop::collection::vec(((0..PEOPLE).prop_map(person), command()), 1..60)
}

/// The rules written down a second time, as plainly as possible. `Created` is the only
/// status before `Presenting`, etc.: the order is the index in this list.
const ORDER: [CourseStatus; 4] = [
    CourseStatus::Created,
    CourseStatus::Presenting,
    CourseStatus::Active,
    CourseStatus::Completed,
];

fn rank(status: CourseStatus) -> usize {
    ORDER.iter().position(|s| *s == status).unwrap_or(usize::MAX)
}

#[derive(Debug, Default, Clone)]
struct Model {
    status: Option<CourseStatus>,
    instructor: Uuid,
    title: String,
    description: String,
    max: u32,
    sections: usize,
    participants: BTreeSet<Uuid>,
}

/// Which rule a refusal names, as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rule {
    Missing,
    Exists,
    Ownership,
    Completed,
    Order,
    Sections,
    Enrolment,
    InstructorJoins,
    Duplicate,
    Capacity,
    NotParticipant,
    CommentAuthor,
    CommentStatus,
}

fn rule_of(error: &DomainError) -> Rule {
    match error {
        DomainError::CourseNotFound => Rule::Missing,
        DomainError::CourseAlreadyExists => Rule::Exists,
        DomainError::NotInstructor => Rule::Ownership,
        DomainError::CourseCompleted => Rule::Completed,
        DomainError::InvalidTransition { .. } => Rule::Order,
        DomainError::SectionLimitReached { .. } => Rule::Sections,
        DomainError::NotOpenForEnrolment { .. } => Rule::Enrolment,
        DomainError::InstructorCannotJoin => Rule::InstructorJoins,
        DomainError::AlreadyParticipant => Rule::Duplicate,
        DomainError::CourseFull { .. } => Rule::Capacity,
        DomainError::NotParticipant => Rule::NotParticipant,
        DomainError::NotParticipantOrInstructor => Rule::CommentAuthor,
        DomainError::NotOpenForComments { .. } => Rule::CommentStatus,
    }
}

impl Model {
    /// Every rule `command` from `actor` breaks (empty: it must be accepted).
    fn broken(&self, actor: Uuid, command: &Command) -> BTreeSet<Rule> {
        let mut broken = BTreeSet::new();
        let Some(status) = self.status else {
            if !matches!(command, Command::CreateCourse { .. }) {
                broken.insert(Rule::Missing);
            }
            return broken;
        };
        let owner = actor == self.instructor;
        let completed = status == CourseStatus::Completed;
        let mut needs = |rule: Rule, ok: bool| {
            if !ok {
                broken.insert(rule);
            }
        };
        match command {
            Command::CreateCourse { .. } => needs(Rule::Exists, false),
            Command::ChangeTitle { .. } | Command::ChangeDescription { .. } => {
                needs(Rule::Ownership, owner);
                needs(Rule::Completed, !completed);
            }
            Command::Present | Command::Activate | Command::Complete => {
                let to = match command {
                    Command::Present => 1,
                    Command::Activate => 2,
                    _ => 3,
                };
                needs(Rule::Ownership, owner);
                needs(Rule::Order, rank(status) + 1 == to);
            }
            Command::AddSection { .. } => {
                needs(Rule::Ownership, owner);
                needs(Rule::Completed, !completed);
                needs(Rule::Sections, self.sections < MAX_SECTIONS);
            }
            Command::Join => {
                needs(
                    Rule::Enrolment,
                    matches!(status, CourseStatus::Presenting | CourseStatus::Active),
                );
                needs(Rule::InstructorJoins, !owner);
                needs(Rule::Duplicate, !self.participants.contains(&actor));
                needs(Rule::Capacity, self.max == 0 || self.participants.len() < self.max as usize);
            }
            Command::Leave => {
                needs(Rule::NotParticipant, self.participants.contains(&actor));
                needs(Rule::Completed, !completed);
            }
            Command::Comment { .. } => {
                needs(Rule::CommentAuthor, owner || self.participants.contains(&actor));
                needs(
                    Rule::CommentStatus,
                    matches!(status, CourseStatus::Active | CourseStatus::Completed),
                );
            }
        }
        broken
    }

    /// What an accepted command does to the model.
    fn accept(&mut self, actor: Uuid, command: &Command) {
        match command {
            Command::CreateCourse { title, description, max_participants, .. } => {
                self.status = Some(CourseStatus::Created);
                self.instructor = actor;
                self.title.clone_from(title);
                self.description.clone_from(description);
                self.max = *max_participants;
            }
            Command::ChangeTitle { title } => self.title.clone_from(title),
            Command::ChangeDescription { description } => self.description.clone_from(description),
            Command::Present => self.status = Some(CourseStatus::Presenting),
            Command::Activate => self.status = Some(CourseStatus::Active),
            Command::Complete => self.status = Some(CourseStatus::Completed),
            Command::AddSection { .. } => self.sections += 1,
            Command::Join => {
                self.participants.insert(actor);
            }
            Command::Leave => {
                self.participants.remove(&actor);
            }
            Command::Comment { .. } => {}
        }
    }

    /// How many events an accepted command produces (a text set to its current value: none).
    fn expected_events(&self, command: &Command) -> usize {
        match command {
            Command::ChangeTitle { title } if *title == self.title => 0,
            Command::ChangeDescription { description } if *description == self.description => 0,
            _ => 1,
        }
    }
}

/// Invariants of an accepted history, checked on the events alone (who issued each one is
/// known from the command that produced it).
fn check_history(history: &[(Uuid, Event)]) -> Result<(), TestCaseError> {
    let mut instructor = None;
    let mut max = 0u32;
    let mut rank_now = 0usize;
    let mut participants = BTreeSet::new();
    for (index, (actor, event)) in history.iter().enumerate() {
        let manages = !matches!(
            event,
            Event::UserJoinedCourse { .. }
                | Event::UserLeftCourse { .. }
                | Event::CourseCommented { .. }
        );
        match event {
            Event::CourseCreated { instructor_id, max_participants, .. } => {
                prop_assert_eq!(index, 0, "CourseCreated only first");
                prop_assert_eq!(instructor_id, actor);
                instructor = Some(*instructor_id);
                max = *max_participants;
            }
            Event::CoursePresented {} | Event::CourseActivated {} | Event::CourseCompleted {} => {
                let to = match event {
                    Event::CoursePresented {} => 1,
                    Event::CourseActivated {} => 2,
                    _ => 3,
                };
                prop_assert_eq!(to, rank_now + 1, "status moves one step forward: {:?}", event);
                rank_now = to;
            }
            Event::UserJoinedCourse { user_id } => {
                prop_assert_eq!(user_id, actor, "users join themselves");
                prop_assert!(Some(*user_id) != instructor, "the instructor never joins");
                prop_assert!(participants.insert(*user_id), "no duplicate participant");
                prop_assert!(
                    max == 0 || participants.len() <= max as usize,
                    "capacity {} exceeded: {}",
                    max,
                    participants.len()
                );
                prop_assert!((1..=2).contains(&rank_now), "joins only while open");
            }
            Event::UserLeftCourse { user_id } => {
                prop_assert_eq!(user_id, actor);
                prop_assert!(participants.remove(user_id), "only participants leave");
            }
            Event::CourseCommented { author_id, .. } => {
                prop_assert!(
                    Some(*author_id) == instructor || participants.contains(author_id),
                    "comments from participants and the instructor"
                );
                prop_assert!(rank_now >= 2, "comments once active");
            }
            _ => {}
        }
        if manages {
            prop_assert_eq!(Some(*actor), instructor, "only the instructor manages: {:?}", event);
            prop_assert!(
                rank_now < 3 || matches!(event, Event::CourseCompleted {}),
                "nothing but comments changes a completed course: {:?}",
                event
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_command_sequences_keep_every_rule(steps in steps()) {
        let mut course = Course::default();
        let mut model = Model::default();
        let mut history: Vec<(Uuid, Event)> = Vec::new();
        for (actor, command) in &steps {
            let broken = model.broken(*actor, command);
            match course.handle(*actor, command) {
                Ok(events) => {
                    prop_assert!(
                        broken.is_empty(),
                        "{:?} by {} accepted although it breaks {:?}", command, actor, broken
                    );
                    prop_assert_eq!(events.len(), model.expected_events(command));
                    for event in events {
                        course.apply(&event);
                        history.push((*actor, event));
                    }
                    model.accept(*actor, command);
                }
                Err(error) => {
                    prop_assert!(
                        broken.contains(&rule_of(&error)),
                        "{:?} by {} refused with {:?}, but the rules broken are {:?}",
                        command, actor, error, broken
                    );
                }
            }
            prop_assert_eq!(course.version, history.len() as u64);
            prop_assert_eq!(course.status, model.status);
            prop_assert_eq!(&course.participants.iter().copied().collect::<BTreeSet<_>>(),
                &model.participants);
            prop_assert_eq!(course.sections.len(), model.sections);
        }
        check_history(&history)?;
        // The same events replayed (or a snapshot of the result) give the same course.
        let events: Vec<Event> = history.into_iter().map(|(_, e)| e).collect();
        let replayed = Course::from_events(&events);
        prop_assert_eq!(&replayed, &course);
        prop_assert_eq!(
            Course::from_snapshot(course_domain::SNAPSHOT_SCHEMA, course.to_snapshot()),
            Some(course)
        );
    }

    /// A crowd joining a course with room for a few: exactly `max` get in, whatever the order.
    #[test]
    fn joins_never_exceed_capacity(max in 1u32..5, joiners in prop::collection::vec(0u128..12, 1..40)) {
        let instructor = Uuid::from_u128(1000);
        let mut course = Course::from_events(&[
            Event::CourseCreated {
                instructor_id: instructor,
                title: "t".into(),
                description: "d".into(),
                category: "c".into(),
                max_participants: max,
            },
            Event::CoursePresented {},
        ]);
        let distinct: BTreeSet<u128> = joiners.iter().copied().collect();
        for joiner in &joiners {
            if let Ok(events) = course.handle(Uuid::from_u128(*joiner), &Command::Join) {
                for event in &events {
                    course.apply(event);
                }
            }
        }
        prop_assert_eq!(course.participants.len(), distinct.len().min(max as usize));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Every edge validates request text with these functions: any input is accepted in a
    /// clean form or refused with a message, never a panic; what is accepted keeps the rules.
    #[test]
    fn validation_accepts_only_clean_text_and_never_panics(raw in "(?s).{0,300}|[ \\t\\na-z\\u{0}\\u{1b}\\u{7f}é]{0,12}") {
        use course_domain::validation;
        type Rule = fn(&str) -> Result<String, String>;
        let rules: [(Rule, usize, usize); 5] = [
            (validation::title, 1, 200),
            (validation::description, 1, 5000),
            (validation::section_description, 0, 5000),
            (validation::category, 1, 100),
            (validation::comment, 1, 2000),
        ];
        for (rule, min, max) in rules {
            if let Ok(clean) = rule(&raw) {
                prop_assert_eq!(clean.trim(), clean.as_str());
                prop_assert!((min..=max).contains(&clean.chars().count()));
                prop_assert!(!clean.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')));
            }
        }
        if let Ok(url) = validation::video_url(&raw) {
            prop_assert!(url.starts_with("http://") || url.starts_with("https://") || url.to_lowercase().starts_with("http"));
        }
        match validation::uuid(&raw) {
            Ok(id) => prop_assert_eq!(Uuid::parse_str(raw.trim()).ok(), Some(id)),
            Err(message) => {
                // At most 40 characters of the input are quoted (each escaped: `\u{10ffff}`).
                prop_assert!(message.len() <= 40 * 10 + 40, "{}", message);
                prop_assert!(raw.chars().count() <= 40 || !message.contains(raw.as_str()));
            }
        }
    }
}
