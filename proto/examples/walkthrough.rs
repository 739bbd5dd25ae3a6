//! The whole story through the Rust client (the tonic clients of `course-proto`), against a
//! running mesh.
//!
//! An instructor creates a course, adds two sections, presents and activates it; Alice and Bob
//! join, Alice comments (sent twice with one `command_id`: stored once), Bob leaves. Then the
//! course is read from both query services with read-your-writes (`min_version` = the last
//! command's version). Prints each step, and as its last line a JSON summary that
//! `scripts/sdk-test.sh` checks.
//!
//! ```sh
//! AUTH_JWT_SECRET=... COMMAND_ADDR=127.0.0.1:50051 REDIS_QUERY_ADDR=127.0.0.1:50052 \
//!   MONGO_QUERY_ADDR=127.0.0.1:50053 cargo run -p course-proto --example walkthrough
//! ```

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use course_proto::v1::catalog_query_service_client::CatalogQueryServiceClient;
use course_proto::v1::course_command_service_client::CourseCommandServiceClient;
use course_proto::v1::course_query_service_client::CourseQueryServiceClient;
use course_proto::v1::{
    ActivateCourseRequest, AddSectionRequest, CommentCourseRequest, CreateCourseRequest,
    GetCourseDetailsRequest, GetCourseRequest, JoinCourseRequest, LeaveCourseRequest,
    ListCourseCommentsRequest, ListCourseParticipantsRequest, PresentCourseRequest,
};
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A development HS256 token: `sub` is the user's UUID; command-svc verifies it with the same
/// secret.
fn token(user_id: Uuid) -> Result<String, Error> {
    let secret = std::env::var("AUTH_JWT_SECRET").map_err(|_| "set AUTH_JWT_SECRET")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = json!({ "sub": user_id.to_string(), "iat": now, "exp": now + 600 });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// A request carrying `authorization: Bearer <token>` and a 10 s deadline.
fn authed<T>(message: T, token: &str) -> Result<Request<T>, Error> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    request.set_timeout(Duration::from_secs(10));
    Ok(request)
}

/// A fresh idempotency key: the server answers a resent command with the same id from its
/// command log instead of applying it twice.
fn command_id() -> Option<String> {
    Some(Uuid::new_v4().to_string())
}

/// Retries `UNAVAILABLE` (e.g. "read model is behind" after the bounded read-your-writes wait)
/// up to five attempts in all, with exponential backoff; returns any other outcome at once.
async fn retry_unavailable<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(status) if status.code() == Code::Unavailable && attempt < 5 => {
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

async fn channel(addr: &str) -> Result<Channel, Error> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let command_addr = env("COMMAND_ADDR", "127.0.0.1:50051");
    let redis_addr = env("REDIS_QUERY_ADDR", "127.0.0.1:50052");
    let mongo_addr = env("MONGO_QUERY_ADDR", "127.0.0.1:50053");
    let (instructor_id, alice_id, bob_id) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (instructor, alice, bob) = (token(instructor_id)?, token(alice_id)?, token(bob_id)?);

    let mut commands = CourseCommandServiceClient::new(channel(&command_addr).await?);
    let created = commands
        .create_course(authed(
            CreateCourseRequest {
                command_id: command_id(),
                title: "Event sourcing in Rust".into(),
                description: "Commands, events and read models".into(),
                category: "Programming".into(),
                max_participants: 10,
                ..Default::default()
            },
            &instructor,
        )?)
        .await?
        .into_inner();
    let course_id = created.course_id;
    println!("created course {course_id} (version {})", created.version);
    for (title, video_url) in [
        ("Intro", "https://videos.example/intro.mp4"),
        ("Projections", "https://videos.example/projections.mp4"),
    ] {
        let request = AddSectionRequest {
            command_id: command_id(),
            course_id: course_id.clone(),
            title: title.into(),
            video_url: video_url.into(),
            ..Default::default()
        };
        let added = commands.add_section(authed(request, &instructor)?).await?.into_inner();
        println!("added section {} '{title}' (version {})", added.position, added.version);
    }
    let request = PresentCourseRequest {
        command_id: command_id(),
        course_id: course_id.clone(),
        ..Default::default()
    };
    let version =
        commands.present_course(authed(request, &instructor)?).await?.into_inner().version;
    println!("presented (version {version})");
    let request = ActivateCourseRequest {
        command_id: command_id(),
        course_id: course_id.clone(),
        ..Default::default()
    };
    let version =
        commands.activate_course(authed(request, &instructor)?).await?.into_inner().version;
    println!("activated (version {version})");
    for (name, user) in [("alice", &alice), ("bob", &bob)] {
        let request = JoinCourseRequest {
            command_id: command_id(),
            course_id: course_id.clone(),
            ..Default::default()
        };
        let version = commands.join_course(authed(request, user)?).await?.into_inner().version;
        println!("{name} joined (version {version})");
    }

    let comment = CommentCourseRequest {
        command_id: command_id(),
        course_id: course_id.clone(),
        text: "Great start".into(),
        ..Default::default()
    };
    let first = commands.comment_course(authed(comment.clone(), &alice)?).await?.into_inner();
    // Same command_id: answered from the command log, not stored twice.
    let again = commands.comment_course(authed(comment, &alice)?).await?.into_inner();
    println!(
        "alice commented {} (version {}); resent with the same command_id: {}",
        first.comment_id, first.version, again.comment_id
    );
    let request = LeaveCourseRequest {
        command_id: command_id(),
        course_id: course_id.clone(),
        ..Default::default()
    };
    let version = commands.leave_course(authed(request, &bob)?).await?.into_inner().version;
    println!("bob left (version {version})");

    // Read-your-writes: each query waits until its read model has applied `version`.
    let catalog = CatalogQueryServiceClient::new(channel(&redis_addr).await?);
    let details = CourseQueryServiceClient::new(channel(&mongo_addr).await?);
    let summary = retry_unavailable(|| {
        let mut client = catalog.clone();
        let request = GetCourseRequest { course_id: course_id.clone(), min_version: Some(version) };
        async move { client.get_course(request).await }
    })
    .await?
    .into_inner()
    .course
    .ok_or("GetCourse answered without a course")?;
    let participants = retry_unavailable(|| {
        let mut client = catalog.clone();
        let request = ListCourseParticipantsRequest {
            course_id: course_id.clone(),
            min_version: Some(version),
            ..Default::default()
        };
        let request =
            authed(request, &instructor).map_err(|e| tonic::Status::internal(e.to_string()));
        async move { client.list_course_participants(request?).await }
    })
    .await?
    .into_inner()
    .participants;
    println!(
        "query-redis-svc: '{}' {} v{}, {} sections, {} participant(s), {} comment(s)",
        summary.title,
        summary.status().as_str_name(),
        summary.version,
        summary.section_count,
        summary.participant_count,
        summary.comment_count
    );

    let doc = retry_unavailable(|| {
        let mut client = details.clone();
        let request =
            GetCourseDetailsRequest { course_id: course_id.clone(), min_version: Some(version) };
        let request =
            authed(request, &instructor).map_err(|e| tonic::Status::internal(e.to_string()));
        async move { client.get_course_details(request?).await }
    })
    .await?
    .into_inner()
    .course
    .ok_or("GetCourseDetails answered without a course")?;
    let comments = retry_unavailable(|| {
        let mut client = details.clone();
        let request = ListCourseCommentsRequest {
            course_id: course_id.clone(),
            min_version: Some(version),
            ..Default::default()
        };
        let request =
            authed(request, &instructor).map_err(|e| tonic::Status::internal(e.to_string()));
        async move { client.list_course_comments(request?).await }
    })
    .await?
    .into_inner()
    .comments;
    let section_titles: Vec<&str> = doc.sections.iter().map(|s| s.title.as_str()).collect();
    let doc_participants: Vec<&str> = doc.participants.iter().map(|p| p.user_id.as_str()).collect();
    println!(
        "query-mongo-svc: '{}' {} v{}, sections {section_titles:?}, participants {doc_participants:?}, comments {:?}",
        doc.title,
        doc.status().as_str_name(),
        doc.version,
        comments.iter().map(|c| c.text.as_str()).collect::<Vec<_>>()
    );

    let summary_line = json!({
        "sdk": "rust",
        "course_id": course_id,
        "version": version,
        "instructor_id": instructor_id.to_string(),
        "alice_id": alice_id.to_string(),
        "bob_id": bob_id.to_string(),
        "duplicate_comment_id_equal": first.comment_id == again.comment_id,
        "catalog": {
            "status": summary.status().as_str_name(),
            "version": summary.version,
            "instructor_id": summary.instructor_id,
            "section_count": summary.section_count,
            "participant_count": summary.participant_count,
            "comment_count": summary.comment_count,
            "participants": participants.iter().map(|p| p.user_id.as_str()).collect::<Vec<_>>(),
        },
        "details": {
            "status": doc.status().as_str_name(),
            "version": doc.version,
            "instructor_id": doc.instructor_id,
            "sections": section_titles,
            "participant_count": doc.participant_count,
            "participants": doc_participants,
            "comment_count": doc.comment_count,
            "comments": comments.iter().map(|c| json!({ "author_id": c.author_id, "text": c.text })).collect::<Vec<_>>(),
        },
    });
    println!("{summary_line}");
    Ok(())
}
