//! Hostile input (issue #8, Security): every DAV method that takes an XML body refuses a
//! DOCTYPE, entity tricks (billion laughs, external entities), deep nesting and oversized
//! bodies cleanly (4xx, promptly, without the memory blowing up); odd paths and hrefs (`..`,
//! encoded slashes and dots, NUL, very long names, non-UTF-8) never reach another user's data
//! nor fail with a 5xx, on CardDAV and REST; malformed JSON is a 400 that says what to fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod security_support;

use std::time::Duration;

use axum::body::Body;
use http::StatusCode;
use security_support::{service, Svc};
use serde_json::json;

const ALICE: (&str, &str) = ("alice", "alice-pw-123");
const BOB: (&str, &str) = ("bob", "bob-pw-123");

async fn svc() -> Svc {
    let s = service().await;
    for (login, pw) in [ALICE, BOB] {
        s.add_user(login, pw).await;
    }
    // Bob owns a card only he can see.
    let r = s
        .req(
            BOB,
            "PUT",
            "/dav/addressbooks/bob/persons/secret.vcf",
            &[("Content-Type", "text/vcard")],
            "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:bob-secret\r\nFN:Bob Secret Contact\r\nEND:VCARD\r\n",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    s
}

/// Peak resident memory of this process so far (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// A DAV request that takes a body: method, path, extra headers.
type BodyMethod = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
);

/// Every DAV request that takes an XML body.
fn body_methods() -> Vec<BodyMethod> {
    let coll = "/dav/addressbooks/alice/persons/";
    vec![
        ("PROPFIND", coll, vec![("Depth", "1")]),
        ("PROPFIND", "/dav/principals/alice/", vec![("Depth", "0")]),
        ("PROPPATCH", coll, vec![]),
        ("REPORT", coll, vec![("Depth", "1")]),
        ("MKCOL", "/dav/addressbooks/alice/newbook/", vec![]),
    ]
}

fn billion_laughs() -> String {
    let mut s = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
    s.push_str("<!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n");
    for i in 2..=9 {
        let prev = format!("&lol{};", i - 1);
        s.push_str(&format!("<!ENTITY lol{i} \"{}\">\n", prev.repeat(10)));
    }
    s.push_str("]>\n<d:propfind xmlns:d=\"DAV:\"><d:prop><d:displayname>&lol9;</d:displayname></d:prop></d:propfind>");
    s
}

fn hostile_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let deep = format!(
        "<?xml version=\"1.0\"?><d:propfind xmlns:d=\"DAV:\">{}{}</d:propfind>",
        "<d:prop>".repeat(100_000),
        "</d:prop>".repeat(100_000)
    );
    let deep_unclosed = format!(
        "<d:propfind xmlns:d=\"DAV:\">{}",
        "<x:a xmlns:x=\"urn:x\">".repeat(200_000)
    );
    let mut oversized =
        b"<?xml version=\"1.0\"?><d:propfind xmlns:d=\"DAV:\"><d:prop><d:displayname>".to_vec();
    oversized.extend(std::iter::repeat_n(b'a', 11 * 1024 * 1024));
    oversized.extend(b"</d:displayname></d:prop></d:propfind>");
    vec![
        (
            "doctype",
            b"<?xml version=\"1.0\"?><!DOCTYPE d:propfind><d:propfind xmlns:d=\"DAV:\"><d:allprop/></d:propfind>".to_vec(),
        ),
        ("billion laughs", billion_laughs().into_bytes()),
        (
            "external entity",
            b"<?xml version=\"1.0\"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><d:propfind xmlns:d=\"DAV:\"><d:prop><d:displayname>&xxe;</d:displayname></d:prop></d:propfind>".to_vec(),
        ),
        (
            "parameter entity",
            b"<?xml version=\"1.0\"?><!DOCTYPE foo [<!ENTITY % p SYSTEM \"http://127.0.0.1:1/x.dtd\"> %p;]><d:propfind xmlns:d=\"DAV:\"><d:allprop/></d:propfind>".to_vec(),
        ),
        (
            "undeclared entity",
            b"<d:propfind xmlns:d=\"DAV:\"><d:prop><d:displayname>&xxe;</d:displayname></d:prop></d:propfind>".to_vec(),
        ),
        ("deep nesting", deep.into_bytes()),
        ("deep unclosed", deep_unclosed.into_bytes()),
        ("oversized", oversized),
        ("not xml", b"\x00\xff\xfe garbage <<<".to_vec()),
        ("truncated", b"<d:propfind xmlns:d=\"DAV:\"><d:prop><d:getetag".to_vec()),
    ]
}

#[tokio::test]
async fn hostile_xml_is_refused_on_every_method_with_a_body() {
    let s = svc().await;
    let before = peak_rss_kib();
    for (name, body) in hostile_bodies() {
        for (method, path, headers) in body_methods() {
            let mut h = headers.clone();
            h.push(("Content-Type", "application/xml; charset=utf-8"));
            let r = tokio::time::timeout(
                Duration::from_secs(60),
                s.req(ALICE, method, path, &h, body.clone()),
            )
            .await
            .unwrap_or_else(|_| panic!("{method} {path} with {name} hangs"));
            assert!(
                r.status.is_client_error(),
                "{method} {path} with {name}: {} {}",
                r.status,
                r.text()
            );
            let text = r.text();
            assert!(!text.contains("root:"), "{name}: file contents leaked");
            assert!(!text.contains("lollollol"), "{name}: entity expanded");
            assert!(text.len() < 4096, "{name}: the refusal is short");
        }
    }
    // Nothing was created by a refused MKCOL.
    let r = s
        .req(
            ALICE,
            "PROPFIND",
            "/dav/addressbooks/alice/newbook/",
            &[("Depth", "0")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Bounded memory: a few bodies of ~11 MiB are held at a time, never an expansion.
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 256, "peak RSS grew by {grown_mib} MiB");
}

#[tokio::test]
async fn oversized_bodies_stream_is_cut_off_and_put_has_its_own_limit() {
    let s = svc().await;
    // A card larger than max-resource-size: 413 with the precondition, nothing stored.
    let big = format!(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:big\r\nFN:Big\r\nNOTE:{}\r\nEND:VCARD\r\n",
        "x".repeat(2 * 1024 * 1024)
    );
    let r = s
        .req(
            ALICE,
            "PUT",
            "/dav/addressbooks/alice/persons/big.vcf",
            &[("Content-Type", "text/vcard")],
            big,
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    let g = s
        .req(
            ALICE,
            "GET",
            "/dav/addressbooks/alice/persons/big.vcf",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(g.status, StatusCode::NOT_FOUND, "nothing stored");
    // A REST body far larger than any person: refused, not buffered without bound.
    let huge = format!("{{\"name\":\"{}\"}}", "n".repeat(8 * 1024 * 1024));
    let r = s
        .req(
            ALICE,
            "POST",
            "/api/v1/persons",
            &[("Content-Type", "application/json")],
            huge,
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
}

/// Paths that try to reach outside the user's own tree, or are just odd.
fn odd_card_paths() -> Vec<String> {
    let long = "a".repeat(10_000);
    vec![
        "/dav/addressbooks/alice/persons/../../bob/persons/secret.vcf".into(),
        "/dav/addressbooks/alice/persons/%2e%2e/%2e%2e/bob/persons/secret.vcf".into(),
        "/dav/addressbooks/alice/..%2Fbob/persons/secret.vcf".into(),
        "/dav/addressbooks/alice/persons/..%2F..%2Fbob%2Fpersons%2Fsecret.vcf".into(),
        "/dav/addressbooks/alice%2Fpersons/secret.vcf".into(),
        "/dav/addressbooks/alice/persons/sec%00ret.vcf".into(),
        "/dav/addressbooks/alice/persons/%ff%fe.vcf".into(),
        "/dav/addressbooks/alice/persons/%c0%ae%c0%ae.vcf".into(),
        "/dav/addressbooks/alice/persons/./secret.vcf".into(),
        "/dav/addressbooks/alice/persons//secret.vcf".into(),
        "/dav/addressbooks/bob/persons/secret.vcf".into(),
        "/dav/addressbooks/Bob/persons/secret.vcf".into(),
        "/dav/addressbooks/bob%00/persons/secret.vcf".into(),
        format!("/dav/addressbooks/alice/persons/{long}.vcf"),
        format!("/dav/addressbooks/{long}/persons/x.vcf"),
    ]
}

#[tokio::test]
async fn path_traversal_and_odd_hrefs_never_reach_another_users_data() {
    let s = svc().await;
    let card = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:odd\r\nFN:Odd Name\r\nEND:VCARD\r\n";
    for path in odd_card_paths() {
        let short: String = path.chars().take(90).collect();
        for method in ["GET", "DELETE", "PROPFIND"] {
            let r = s
                .req(ALICE, method, &path, &[("Depth", "0")], Body::empty())
                .await;
            assert!(r.status.is_client_error(), "{method} {short}: {}", r.status);
            assert!(!r.text().contains("Bob Secret"), "{method} {short}");
        }
        let r = s
            .req(ALICE, "PUT", &path, &[("Content-Type", "text/vcard")], card)
            .await;
        assert!(
            !r.status.is_server_error(),
            "PUT {short}: {} {}",
            r.status,
            r.text()
        );
        // An empty segment is only a doubled slash: `persons//secret.vcf` is Alice's own
        // `secret.vcf`. Everything else odd is refused.
        assert!(
            r.status.is_client_error() || path.contains("persons//"),
            "PUT {short} must be refused: {}",
            r.status
        );
    }
    // Bob's card is intact and still only his.
    let r = s
        .req(
            BOB,
            "GET",
            "/dav/addressbooks/bob/persons/secret.vcf",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("Bob Secret Contact"));
    // CR/LF may name a card (vdirsyncer names cards after UIDs, newlines included), but only
    // ever travel percent-encoded: no header or XML injection.
    let r = s
        .req(
            ALICE,
            "PUT",
            "/dav/addressbooks/alice/persons/%0d%0aX-Injected:%20yes.vcf",
            &[("Content-Type", "text/vcard")],
            "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:odd-crlf\r\nFN:Odd Line\r\nEND:VCARD\r\n",
        )
        .await;
    assert!(r.status.is_success(), "PUT with CR/LF: {}", r.status);
    assert!(r
        .headers
        .keys()
        .all(|k| !k.as_str().eq_ignore_ascii_case("X-Injected")));
    // Nothing with another control character or a slash got a name in Alice's collection.
    let r = s
        .req(
            ALICE,
            "PROPFIND",
            "/dav/addressbooks/alice/persons/",
            &[("Depth", "1")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::MULTI_STATUS);
    let text = r.text();
    for bad in ["%00", "%2F", "%2f", "Bob Secret", "\r\nX-Injected"] {
        assert!(!text.contains(bad), "listing has {bad}: {text}");
    }
}

#[tokio::test]
async fn multiget_with_foreign_and_odd_hrefs_answers_404_for_each() {
    let s = svc().await;
    let hrefs = [
        "/dav/addressbooks/bob/persons/secret.vcf",
        "/dav/addressbooks/alice/persons/../../bob/persons/secret.vcf",
        "/dav/addressbooks/alice/persons/%2e%2e%2F%2e%2e%2Fbob%2Fpersons%2Fsecret.vcf",
        "http://evil.example/dav/addressbooks/bob/persons/secret.vcf",
        "/dav/addressbooks/alice/persons/%ff.vcf",
        "/dav/addressbooks/alice/persons/crm-1.vcf",
        "/dav/addressbooks/alice/persons/crm-99999999999999999999999.vcf",
        "",
    ];
    let body = format!(
        "<?xml version=\"1.0\"?><C:addressbook-multiget xmlns:D=\"DAV:\" xmlns:C=\"urn:ietf:params:xml:ns:carddav\"><D:prop><D:getetag/><C:address-data/></D:prop>{}</C:addressbook-multiget>",
        hrefs
            .iter()
            .map(|h| format!("<D:href>{h}</D:href>"))
            .collect::<String>()
    );
    let r = s
        .req(
            ALICE,
            "REPORT",
            "/dav/addressbooks/alice/persons/",
            &[("Depth", "1"), ("Content-Type", "application/xml")],
            body,
        )
        .await;
    assert!(
        r.status == StatusCode::MULTI_STATUS || r.status.is_client_error(),
        "{} {}",
        r.status,
        r.text()
    );
    assert!(!r.text().contains("Bob Secret"), "{}", r.text());
    assert!(!r.text().contains("BEGIN:VCARD"), "{}", r.text());
}

#[tokio::test]
async fn rest_odd_ids_and_malformed_json_are_clean_4xx() {
    let s = svc().await;
    let long = "9".repeat(5000);
    for path in [
        "/api/v1/persons/..%2F..%2Fadmin%2Fusers".to_string(),
        "/api/v1/persons/../admin/users".to_string(),
        "/api/v1/persons/%00".to_string(),
        "/api/v1/persons/-1".to_string(),
        "/api/v1/persons/18446744073709551616".to_string(),
        format!("/api/v1/persons/{long}"),
        "/api/v1/persons/%ff%fe".to_string(),
        "/api/v1/connections/..%2F1".to_string(),
        "/api/v1/persons?cursor=%ff&limit=-1".to_string(),
        "/api/v1/persons?limit=999999999999999999999".to_string(),
    ] {
        for method in ["GET", "PATCH", "DELETE"] {
            let r = s
                .req(
                    ALICE,
                    method,
                    &path,
                    &[("Content-Type", "application/json")],
                    "{}",
                )
                .await;
            assert!(
                r.status.is_client_error(),
                "{method} {}: {} {}",
                &path[..path.len().min(80)],
                r.status,
                r.text()
            );
            assert!(!r.text().contains("password_hash"));
        }
    }
    for body in [
        "{",
        "{\"name\": }",
        "[1,2,3]",
        "null",
        "\"just a string\"",
        "{\"name\": \"x\", \"name\": \"y\"",
        "{\"name\": \"\\ud800\"}",
        "\u{feff}{\"name\":\"bom\"}",
        "{\"name\": \"x\", \"unknown_field\": 1}",
        "{\"name\": \"x\", \"visible_to\": \"everyone\"}",
        "{\"name\": 5}",
        &format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)),
    ] {
        let r = s
            .req(
                ALICE,
                "POST",
                "/api/v1/persons",
                &[("Content-Type", "application/json")],
                body.to_string(),
            )
            .await;
        assert!(
            r.status.is_client_error(),
            "{}: {}",
            &body[..body.len().min(40)],
            r.status
        );
        let v = r.json();
        assert_eq!(v["success"], json!(false), "{}", r.text());
        assert!(v["error_info"].as_str().is_some_and(|s| !s.is_empty()));
    }
    // The wrong content type is refused too.
    let r = s
        .req(
            ALICE,
            "POST",
            "/api/v1/persons",
            &[("Content-Type", "text/plain")],
            "{\"name\":\"x\"}",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // And the person list is still empty for Alice.
    let r = s.json(ALICE, "GET", "/api/v1/persons", None).await;
    assert_eq!(r.json()["data"], json!([]), "{}", r.text());
}
