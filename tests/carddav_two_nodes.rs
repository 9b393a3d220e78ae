//! Sync tokens across nodes (issue #9): two CardDAV servers, each with its own CRM and
//! connection pool on ONE PostgreSQL schema, serve one client that alternates between them.
//! Tokens from either node are accepted by the other, and every change made through either
//! node (or straight in the CRM) reaches the client exactly once.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

mod pg_support;
mod server_support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use base64::Engine as _;
use cardbridge::crm::repo::CrmConfig;
use cardbridge::crm::Crm;
use cardbridge::dav::names;
use cardbridge::dav::sync_collection::{SyncCollection, SyncResult};
use cardbridge::server::auth::AuthConfig;
use cardbridge::server::{app, AppState, ServerConfig};
use cardbridge::store::PgStore;
use http::{Request, StatusCode};
use tower::ServiceExt;

struct Node {
    app: axum::Router,
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:alice-pw")
    )
}

fn card(uid: &str, fn_: &str) -> String {
    format!("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:{uid}\r\nFN:{fn_}\r\nEMAIL:{uid}@example.com\r\nEND:VCARD\r\n")
}

const BOOK: &str = "/dav/addressbooks/alice/persons/";

impl Node {
    async fn open(schema: &str) -> (Node, Arc<Crm>) {
        let store = Arc::new(PgStore::open(&pg_support::settings(schema)).await.unwrap());
        let crm = Arc::new(
            Crm::open(
                store,
                CrmConfig {
                    shared_store: true,
                    ..CrmConfig::default()
                },
            )
            .await
            .unwrap(),
        );
        let config = ServerConfig {
            auth: AuthConfig {
                base_delay: Duration::from_millis(200),
                max_delay: Duration::from_millis(800),
                ..AuthConfig::default()
            },
            ..ServerConfig::default()
        };
        let app = app(AppState::new(crm.clone(), config));
        (Node { app }, crm)
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        (status, body)
    }

    async fn put(&self, name: &str, body: &str) {
        let req = Request::builder()
            .method("PUT")
            .uri(format!("{BOOK}{name}"))
            .header("Authorization", basic())
            .header("Content-Type", "text/vcard")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, body) = self.send(req).await;
        assert!(
            status.is_success(),
            "{status} {}",
            String::from_utf8_lossy(&body)
        );
    }

    async fn delete(&self, name: &str) {
        let req = Request::builder()
            .method("DELETE")
            .uri(format!("{BOOK}{name}"))
            .header("Authorization", basic())
            .body(Body::empty())
            .unwrap();
        let (status, _) = self.send(req).await;
        assert!(status.is_success(), "{status}");
    }

    async fn sync(&self, token: Option<&str>) -> SyncResult {
        let sc = SyncCollection::new(token, &[names::GETETAG]);
        let (parts, body) = sc.build_request(BOOK).unwrap().into_parts();
        let mut req = Request::from_parts(parts, Body::from(body));
        req.headers_mut()
            .insert("Authorization", basic().parse().unwrap());
        let (status, body) = self.send(req).await;
        assert_eq!(
            status,
            StatusCode::MULTI_STATUS,
            "{}",
            String::from_utf8_lossy(&body)
        );
        SyncCollection::parse_response(&body).unwrap()
    }
}

fn names_of(s: &SyncResult) -> (Vec<String>, Vec<String>) {
    let strip = |h: &str| h.trim_start_matches(BOOK).to_string();
    let mut changed: Vec<String> = s.changed.iter().map(|c| strip(&c.href)).collect();
    let mut removed: Vec<String> = s.removed.iter().map(|h| strip(h)).collect();
    changed.sort();
    removed.sort();
    (changed, removed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_alternating_between_two_nodes_syncs_with_both() {
    pg_support::require_server().await;
    let schema = pg_support::TempSchema::new("dav2");
    let (a, crm_a) = Node::open(&schema).await;
    let (b, _crm_b) = Node::open(&schema).await;
    crm_a
        .create_user(server_support::user("alice", "alice-pw", None))
        .await
        .unwrap();

    // Initial sync on A, a card PUT through B: A's token, on B, shows exactly that card.
    let t0 = a.sync(None).await.new_token.unwrap();
    b.put("one.vcf", &card("one", "One")).await;
    let s1 = b.sync(Some(&t0)).await;
    assert_eq!(names_of(&s1), (vec!["one.vcf".into()], vec![]));
    let t1 = s1.new_token.unwrap();

    // Nothing new: both nodes agree, with the same token.
    for n in [&a, &b] {
        let s = n.sync(Some(&t1)).await;
        assert_eq!(names_of(&s), (vec![], vec![]));
        assert_eq!(s.new_token.as_deref(), Some(t1.as_str()));
    }

    // Writes through both nodes, synced through A with B's token: each exactly once.
    a.put("two.vcf", &card("two", "Two")).await;
    b.put("three.vcf", &card("three", "Three")).await;
    a.put("one.vcf", &card("one", "One, edited")).await;
    let s2 = a.sync(Some(&t1)).await;
    assert_eq!(
        names_of(&s2),
        (
            vec!["one.vcf".into(), "three.vcf".into(), "two.vcf".into()],
            vec![]
        )
    );
    let t2 = s2.new_token.unwrap();

    // The same token on B gives the same answer (no sticky sessions).
    let s2b = b.sync(Some(&t1)).await;
    assert_eq!(names_of(&s2b), names_of(&a.sync(Some(&t1)).await));

    // A delete through B and a CRM write on A's side, synced on B with A's token.
    b.delete("two.vcf").await;
    let (_, _crm_c) = Node::open(&schema).await;
    a.put("four.vcf", &card("four", "Four")).await;
    let s3 = b.sync(Some(&t2)).await;
    assert_eq!(
        names_of(&s3),
        (vec!["four.vcf".into()], vec!["two.vcf".into()])
    );
    let t3 = s3.new_token.unwrap();

    // And back on A: nothing again, nothing repeated.
    let s4 = a.sync(Some(&t3)).await;
    assert_eq!(names_of(&s4), (vec![], vec![]));
    assert_eq!(s4.new_token.as_deref(), Some(t3.as_str()));
}
