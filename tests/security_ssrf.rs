//! SSRF (issue #8, Security): a connection's server URL that is, or resolves to, a loopback,
//! private, link-local, unique-local, CGNAT, unspecified or multicast address — in any spelling
//! (decimal, hex or short IPv4, IPv4-mapped/compatible IPv6, NAT64, 6to4) — is refused through
//! the REST API unless the configuration allows private networks; so are non-HTTP schemes.
//! The tests allow loopback explicitly where a connection must reach a local peer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod security_support;

use std::sync::Arc;

use cardbridge::server::ServerConfig;
use cardbridge::service::ServiceBuilder;
use http::StatusCode;
use security_support::{api_support::MapStore, service_with, Svc};
use serde_json::json;

const ADMIN: (&str, &str) = ("admin", "admin-pw-1234");

async fn svc(allow_private: bool) -> Svc {
    let s = service_with(
        ServiceBuilder::new(Arc::new(MapStore::default())).allow_private_networks(allow_private),
        ServerConfig::default(),
        None,
    )
    .await;
    cardbridge::service::ensure_admin(&s.crm, "admin", Some(ADMIN.1.into()))
        .await
        .unwrap();
    s
}

async fn create(s: &Svc, url: &str) -> security_support::Resp {
    s.json(
        ADMIN,
        "POST",
        "/api/v1/connections",
        Some(json!({
            "provider": "carddav",
            "email": "ann@example.com",
            "server_url": url,
            "password": "pw",
        })),
    )
    .await
}

const PRIVATE: &[&str] = &[
    "http://127.0.0.1:5232/",
    "http://127.9.9.9/",
    "http://localhost:5232/dav/",
    "http://LOCALHOST./",
    "http://foo.localhost/",
    "http://[::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[ff02::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::127.0.0.1]/",
    "http://[::10.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:a9fe:a9fe::1]/",
    "http://[fec0::1]/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://0x7f.1/",
    "https://user:pw@127.0.0.1:443/",
];

#[tokio::test]
async fn private_addresses_are_refused_in_every_spelling() {
    let s = svc(false).await;
    for url in PRIVATE {
        let r = create(&s, url).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url} must be refused: {}",
            r.text()
        );
        let v = r.json();
        assert!(
            v["error"].as_str().unwrap_or("").contains("refused"),
            "{url}: {v}"
        );
        assert!(
            v["error_info"]
                .as_str()
                .unwrap_or("")
                .contains("private networks"),
            "{url}: says how to allow it: {v}"
        );
    }
    // Nothing was stored.
    let r = s.json(ADMIN, "GET", "/api/v1/connections", None).await;
    assert_eq!(r.json()["data"], json!([]), "{}", r.text());
}

#[tokio::test]
async fn non_http_schemes_are_refused_even_when_private_networks_are_allowed() {
    let s = svc(true).await;
    for url in [
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "ftp://127.0.0.1/",
        "dict://127.0.0.1:11211/",
        "javascript:alert(1)",
        "data:text/plain,hi",
        "http://",
        "not a url",
    ] {
        let r = create(&s, url).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {}",
            r.text()
        );
    }
}

#[tokio::test]
async fn loopback_is_allowed_when_the_configuration_says_so() {
    let s = svc(true).await;
    for url in [
        "http://127.0.0.1:5232/",
        "http://localhost:5232/",
        "http://[::1]:5232/",
    ] {
        let r = create(&s, url).await;
        assert_eq!(r.status, StatusCode::CREATED, "{url}: {}", r.text());
    }
    // And refused by default (the same URL, the default policy).
    let strict = svc(false).await;
    let r = create(&strict, "http://127.0.0.1:5232/").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn public_literals_are_accepted() {
    let s = svc(false).await;
    for url in [
        "https://93.184.215.14/dav/",
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/",
    ] {
        let r = create(&s, url).await;
        assert_eq!(r.status, StatusCode::CREATED, "{url}: {}", r.text());
    }
}
