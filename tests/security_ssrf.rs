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

// ---------------------------------------------------------------------------------------------
// Redirects (issue #8 SSRF gap): the connection URL passes the check, then the server answers
// 30x to a private address. The CardDAV transport checks every hop (IP literals before
// sending, names when they are resolved for the connection) with the same policy.

mod redirects {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::extract::State;
    use axum::http::{Request, Response};
    use axum::Router;
    use cardbridge::dav::propfind::{Depth, Propfind};
    use cardbridge::providers::carddav::{Auth, DavClient};
    use cardbridge::providers::http::NetworkPolicy;
    use cardbridge::providers::ProviderError;
    use reqwest::dns::{Addrs, Name, Resolve, Resolving};
    use url::Url;

    const MULTISTATUS: &str = "<?xml version=\"1.0\"?><d:multistatus xmlns:d=\"DAV:\">\
        <d:response><d:href>/dav/</d:href><d:propstat><d:prop><d:displayname>ok</d:displayname>\
        </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>";

    /// A loopback server: `/dav/…` answers a multistatus; any other path answers the
    /// configured redirect. It counts requests and those that carried credentials.
    #[derive(Default)]
    struct Peer {
        redirect: Mutex<(u16, String)>,
        hits: AtomicUsize,
        with_authorization: AtomicUsize,
    }

    async fn handle(State(p): State<Arc<Peer>>, req: Request<Body>) -> Response<Body> {
        p.hits.fetch_add(1, Ordering::SeqCst);
        if req.headers().contains_key("authorization") {
            p.with_authorization.fetch_add(1, Ordering::SeqCst);
        }
        if req.uri().path().starts_with("/dav/") {
            return Response::builder()
                .status(207)
                .header("content-type", "application/xml; charset=utf-8")
                .body(Body::from(MULTISTATUS))
                .unwrap();
        }
        let (code, to) = p.redirect.lock().unwrap().clone();
        Response::builder()
            .status(code)
            .header("location", to)
            .body(Body::empty())
            .unwrap()
    }

    async fn start(bind: SocketAddr) -> Option<(Arc<Peer>, SocketAddr)> {
        let listener = tokio::net::TcpListener::bind(bind).await.ok()?;
        let addr = listener.local_addr().ok()?;
        let peer = Arc::new(Peer::default());
        let app = Router::new().fallback(handle).with_state(peer.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Some((peer, addr))
    }

    /// A fixed name table standing in for DNS: public-looking names with private addresses.
    struct Table(HashMap<&'static str, IpAddr>);

    impl Resolve for Table {
        fn resolve(&self, name: Name) -> Resolving {
            let found = self.0.get(name.as_str()).copied();
            let host = name.as_str().to_string();
            Box::pin(async move {
                let ip = found.ok_or_else(|| format!("{host}: no such name in the test table"))?;
                Ok(Box::new(std::iter::once(SocketAddr::new(ip, 0))) as Addrs)
            })
        }
    }

    fn table() -> Arc<Table> {
        Arc::new(Table(HashMap::from([
            ("dav.example.test", IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ("metadata.example.test", "169.254.169.254".parse().unwrap()),
            ("intranet.example.test", "10.1.2.3".parse().unwrap()),
            ("v6.example.test", IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ])))
    }

    fn auth() -> Auth {
        Auth::Basic {
            user: "ann".into(),
            password: "pw".into(),
        }
    }

    /// Private networks disallowed, except exactly the first hop's loopback address.
    fn strict() -> NetworkPolicy {
        NetworkPolicy::from_config(false)
            .allowing([IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .with_lookup(table())
    }

    async fn propfind(client: &DavClient, url: &Url) -> Result<u16, ProviderError> {
        client
            .propfind(url, &Propfind::props(Depth::Zero, &[]))
            .await
            .map(|r| r.status.as_u16())
    }

    #[tokio::test]
    async fn every_redirect_hop_is_checked_against_the_private_network_policy() {
        let (first, addr) = start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        // Live servers on ::1 (when the machine has IPv6 loopback) and on 127.0.0.2, outside
        // the allow-list: they must never be reached.
        let v6 = start("[::1]:0".parse().unwrap()).await;
        let (other, other_addr) = start("127.0.0.2:0".parse().unwrap()).await.unwrap();
        let origin = Url::parse(&format!("http://{addr}/")).unwrap();
        let client = DavClient::new(origin.clone(), auth())
            .unwrap()
            .with_network_policy(strict())
            .unwrap();

        // Controls: a redirect on the allowed address is followed, and a name that resolves
        // to it is allowed, so the refusals below are the policy's doing.
        *first.redirect.lock().unwrap() = (308, format!("http://{addr}/dav/"));
        assert_eq!(
            propfind(&client, &origin.join("/.well-known/carddav").unwrap())
                .await
                .unwrap(),
            207
        );
        let by_name = Url::parse(&format!("http://dav.example.test:{}/dav/", addr.port())).unwrap();
        assert_eq!(propfind(&client, &by_name).await.unwrap(), 207);

        let mut targets = vec![
            "http://10.0.0.1/dav/".to_string(),
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "http://[::ffff:169.254.169.254]/".to_string(),
            "http://[::1]/dav/".to_string(),
            // Names: refused when they resolve, before any connection.
            "http://metadata.example.test/latest/meta-data/".to_string(),
            format!("http://intranet.example.test:{}/dav/", addr.port()),
        ];
        targets.push(format!("http://{other_addr}/dav/"));
        if let Some((_, v6addr)) = &v6 {
            targets.push(format!("http://[::1]:{}/dav/", v6addr.port()));
            targets.push(format!("http://v6.example.test:{}/dav/", v6addr.port()));
        }
        for code in [301u16, 302, 303, 307, 308] {
            for to in &targets {
                *first.redirect.lock().unwrap() = (code, to.clone());
                let Err(err) =
                    propfind(&client, &origin.join("/.well-known/carddav").unwrap()).await
                else {
                    panic!("{code} to {to} must be refused");
                };
                let ProviderError::Unsupported(msg) = &err else {
                    panic!("{code} to {to}: not a policy refusal: {err:?}");
                };
                assert!(
                    msg.contains("refused (SSRF guard)") && msg.contains("allow_private_networks"),
                    "{code} to {to}: the error names the guard and the setting: {msg}"
                );
            }
        }
        if let Some((v6peer, _)) = &v6 {
            assert_eq!(
                v6peer.hits.load(Ordering::SeqCst),
                0,
                "the ::1 server was reached"
            );
        }
        assert_eq!(
            other.hits.load(Ordering::SeqCst),
            0,
            "127.0.0.2 was reached"
        );
    }

    #[tokio::test]
    async fn with_private_networks_allowed_the_same_redirect_is_followed() {
        let (first, addr) = start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        // A live server on another loopback address, outside the strict allow-list.
        let (second, addr2) = start("127.0.0.2:0".parse().unwrap()).await.unwrap();
        let origin = Url::parse(&format!("http://{addr}/")).unwrap();
        *first.redirect.lock().unwrap() = (302, format!("http://{addr2}/dav/"));

        let strict_client = DavClient::new(origin.clone(), auth())
            .unwrap()
            .with_network_policy(strict())
            .unwrap();
        let err = propfind(&strict_client, &origin.join("/x").unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Unsupported(_)), "{err:?}");
        assert_eq!(
            second.hits.load(Ordering::SeqCst),
            0,
            "127.0.0.2 was reached"
        );

        let open_client = DavClient::new(origin.clone(), auth())
            .unwrap()
            .with_network_policy(NetworkPolicy::from_config(true))
            .unwrap();
        assert_eq!(
            propfind(&open_client, &origin.join("/x").unwrap())
                .await
                .unwrap(),
            207
        );
        assert_eq!(second.hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn credentials_do_not_follow_a_redirect_to_another_origin() {
        let (first, addr) = start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (second, addr2) = start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let origin = Url::parse(&format!("http://{addr}/")).unwrap();
        let client = DavClient::new(origin.clone(), auth())
            .unwrap()
            .with_network_policy(strict())
            .unwrap();
        // Another port is another origin (RFC 6454): followed (the address is allowed), but
        // without the Authorization header.
        *first.redirect.lock().unwrap() = (307, format!("http://{addr2}/dav/"));
        assert_eq!(
            propfind(&client, &origin.join("/x").unwrap())
                .await
                .unwrap(),
            207
        );
        assert_eq!(first.with_authorization.load(Ordering::SeqCst), 1);
        assert_eq!(second.hits.load(Ordering::SeqCst), 1);
        assert_eq!(
            second.with_authorization.load(Ordering::SeqCst),
            0,
            "credentials leaked"
        );
    }
}
