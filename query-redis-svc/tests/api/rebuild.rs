use course_proto::v1;
use testkit::{as_user, spawn_command_svc, unique};
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn a_rebuild_with_commands_flowing_yields_the_live_built_data() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let live = spawn_catalog(config(&command, &exchange)).await;
    let rebuilt = spawn_catalog(config(&command, &exchange)).await;
    for (id, version) in workload(&command, 5, 10).await {
        rebuilt.course_at(&id, version).await;
    }

    // Keep commands flowing while the rebuild runs.
    let writer = {
        let mut c = command.commands();
        let instructor = Uuid::now_v7();
        tokio::spawn(async move {
            let mut last = Vec::new();
            for i in 0..40 {
                let mut request = create_request(0);
                request.title = format!("During rebuild {i}");
                let id = c
                    .create_course(as_user(instructor, request))
                    .await
                    .expect("create")
                    .into_inner()
                    .course_id;
                last.push(id);
            }
            last
        })
    };
    let mut admin = rebuilt.admin();
    let rebuild = tokio::spawn(async move {
        admin.rebuild_read_model(v1::RebuildReadModelRequest { wait: true }).await
    });
    // The old generation keeps being served during the rebuild.
    let during =
        rebuilt.client().list_courses(v1::ListCoursesRequest::default()).await.expect("served");
    assert!(!during.into_inner().courses.is_empty());

    let generation =
        rebuild.await.expect("task").expect("rebuild completes").into_inner().generation;
    assert_eq!(generation, 2, "generation 1 was the initial build");
    let created = writer.await.expect("writer");
    let last = created.last().expect("id");
    live.course_at(last, 1).await;
    rebuilt.course_at(last, 1).await;
    let status = rebuilt
        .admin()
        .get_projection_status(v1::GetProjectionStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!((status.active_generation, status.building_generation), (2, 0));
    rebuilt.assert_agrees_with(&live).await;
}
