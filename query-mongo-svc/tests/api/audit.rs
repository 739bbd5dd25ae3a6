//! The consistency audit (`ProjectionAdminService.AuditReadModel`) on the course documents:
//! nothing to report after a normal run; each kind of damage done to MongoDB behind the
//! service's back is reported under its field.

use mongodb::bson::{Document, doc};
use query_mongo_svc::store::MongoReadModel;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn an_audit_finds_nothing_after_a_normal_run_and_names_each_damaged_part() {
    let env = spawn_env().await;
    let (instructor, alice, bob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let id = create(&env.command, instructor, "Rust", "Programming").await;
    add_section(&env.command, instructor, &id, "One").await;
    add_section(&env.command, instructor, &id, "Two").await;
    present(&env.command, instructor, &id).await;
    join(&env.command, alice, &id).await;
    join(&env.command, bob, &id).await;
    activate(&env.command, instructor, &id).await;
    let (version, _) = comment(&env.command, alice, &id, "Great").await;
    let other = create(&env.command, instructor, "Go", "Programming").await;
    let course = details(&env.query, &id, version).await;
    details(&env.query, &other, 1).await;

    let report = env.query.audit(50).await;
    assert_eq!(report.difference_count, 0, "{:?}", report.differences);
    assert_eq!((report.courses_in_store, report.courses_in_read_model), (2, 2));
    assert_eq!(report.read_model_position, report.audited_position);
    assert_eq!(report.compared, ["comments", "listing", "participants", "sections", "summary"]);

    // A wrong title, a participant and a section dropped, a comment deleted, and a course
    // that the store has never seen.
    let model = MongoReadModel::connect(&env.query.setup.mongodb_uri, &env.query.setup.database)
        .await
        .expect("mongo");
    let db = model.database();
    let courses = db.collection::<Document>("courses_g1");
    courses
        .update_one(
            doc! { "_id": &id },
            doc! {
                "$set": { "title": "Wrong" },
                "$pop": { "sections": 1 },
            },
        )
        .await
        .expect("damage the course");
    db.collection::<Document>("participants_g1")
        .delete_one(doc! { "_id": format!("{id}:{bob}") })
        .await
        .expect("drop a participant");
    db.collection::<Document>("comments_g1")
        .delete_many(doc! { "course_id": &id })
        .await
        .expect("delete comments");
    let stranger = Uuid::now_v7().to_string();
    courses.insert_one(doc! { "_id": &stranger }).await.expect("insert stranger");

    let report = env.query.audit(50).await;
    let mut found: Vec<(String, String, String, String)> = report
        .differences
        .iter()
        .map(|d| (d.course_id.clone(), d.field.clone(), d.expected.clone(), d.actual.clone()))
        .collect();
    found.sort();
    let section = |n: usize| {
        let s = &course.sections[n];
        format!("{}:{}:{}", s.position, s.section_id, s.title)
    };
    let mut wanted = vec![
        (id.clone(), "comments".to_owned(), "1".to_owned(), "0".to_owned()),
        (id.clone(), "participants".to_owned(), bob.to_string(), String::new()),
        (id.clone(), "sections".to_owned(), format!("{}; {}", section(0), section(1)), section(0)),
        (id.clone(), "title".to_owned(), "Rust".to_owned(), "Wrong".to_owned()),
        (stranger.clone(), "course".to_owned(), "absent".to_owned(), "present".to_owned()),
    ];
    wanted.sort();
    assert_eq!(found, wanted, "{report:?}");
    assert_eq!(report.courses_in_read_model, 3);
    env.finish().await;
}
