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
    use std::sync::atomic::Ordering;

    use cardbridge::dav::propfind::{Depth, Propfind};
    use cardbridge::providers::carddav::{Auth, DavClient};
    use cardbridge::providers::http::NetworkPolicy;
    use cardbridge::providers::ProviderError;
    use url::Url;

    use super::peer::{start, strict};

    fn auth() -> Auth {
        Auth::Basic {
            user: "ann".into(),
            password: "pw".into(),
        }
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
                let ProviderError::Refused { .. } = &err else {
                    panic!("{code} to {to}: not a policy refusal: {err:?}");
                };
                let msg = err.to_string();
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
        assert!(matches!(err, ProviderError::Refused { .. }), "{err:?}");
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

// ---------------------------------------------------------------------------------------------
// The HTTP client the other providers share (issue #8 SSRF): `service::wiring` builds it under
// the same policy, so the EWS, Graph and Google requests (and their OAuth token requests)
// have every redirect hop checked and every name screened; refusals are typed, name the
// setting and are not retried.

mod shared_client {
    use std::net::SocketAddr;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use cardbridge::config::{OAuthApp, OAuthSection};
    use cardbridge::crm::repo::CrmConfig;
    use cardbridge::crm::{Crm, MappingConfig};
    use cardbridge::providers::oauth::OAuthEndpoints;
    use cardbridge::providers::{ProviderError, ProviderKind};
    use cardbridge::service::connections::{
        ConflictPolicy, Connection, ConnectionState, SyncDirection,
    };
    use cardbridge::service::wiring::{Wiring, WiringConfig};
    use cardbridge::service::{Connector, Credentials};
    use cardbridge::store::{MemoryStore, Store};

    use super::peer::{start, strict, OK_PATH};

    const PROVIDERS: [ProviderKind; 3] =
        [ProviderKind::Ews, ProviderKind::Graph, ProviderKind::Google];

    fn app() -> Option<OAuthApp> {
        Some(OAuthApp {
            client_id: "client-id".into(),
            client_secret: Some("s3cret".into()),
            redirect_uri: "http://127.0.0.1:1/cb".into(),
            tenant: None,
        })
    }

    /// The wiring with every provider endpoint on the loopback peer at `addr` (the Graph and
    /// Google roots, both token endpoints) and `config` for the rest.
    fn config(
        addr: SocketAddr,
        network: cardbridge::providers::http::NetworkPolicy,
    ) -> WiringConfig {
        WiringConfig {
            oauth: OAuthSection {
                google: app(),
                microsoft: app(),
            },
            google_api: Some(format!("http://{addr}/google/").parse().unwrap()),
            google_endpoints: Some(OAuthEndpoints {
                authorize_url: format!("http://{addr}/authorize").parse().unwrap(),
                token_url: format!("http://{addr}/google/token").parse().unwrap(),
            }),
            graph_api: Some(format!("http://{addr}/graph/v1.0")),
            microsoft_authority: Some(format!("http://{addr}/ms")),
            network: Some(network),
            ..WiringConfig::default()
        }
    }

    async fn wiring(cfg: WiringConfig) -> Wiring {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let crm = Crm::open(store.clone(), CrmConfig::default())
            .await
            .unwrap();
        Wiring::new(crm, store, &[7u8; 32], cfg).unwrap()
    }

    /// A connection of `provider`; EWS on the peer's `/EWS/Exchange.asmx`.
    fn connection(provider: ProviderKind, addr: SocketAddr) -> (Connection, Credentials) {
        let c = Connection {
            id: 1,
            user_id: 1,
            provider,
            account_email: "ann@example.com".into(),
            server_url: (provider == ProviderKind::Ews)
                .then(|| format!("http://{addr}/EWS/Exchange.asmx")),
            username: "ann".into(),
            sealed_credentials: None,
            sync_group: None,
            direction: SyncDirection::OneWay,
            visibility: None,
            conflict_policy: ConflictPolicy::CrmWins,
            mapping: MappingConfig::default(),
            interval_secs: None,
            state: ConnectionState::Active,
            created: String::new(),
            updated: String::new(),
        };
        let creds = Credentials {
            password: Some("pw".into()),
            refresh_token: Some("rt-1".into()),
            ..Credentials::default()
        };
        (c, creds)
    }

    /// Opens the connection and lists its sync groups (the first API request).
    async fn list(
        w: &Wiring,
        provider: ProviderKind,
        addr: SocketAddr,
    ) -> Result<(), ProviderError> {
        let (c, creds) = connection(provider, addr);
        w.open(&c, &creds).await?.sync_groups().await.map(|_| ())
    }

    /// Opens an EWS connection without server URL: Autodiscover from the configured origin.
    async fn by_autodiscover(w: &Wiring, addr: SocketAddr) -> Result<(), ProviderError> {
        let (mut c, creds) = connection(ProviderKind::Ews, addr);
        c.server_url = None;
        w.open(&c, &creds).await.map(|_| ())
    }

    fn assert_refused(r: Result<(), ProviderError>, what: &str) {
        let err = match r {
            Err(e) => e,
            Ok(()) => panic!("{what}: must be refused"),
        };
        assert!(
            matches!(err, ProviderError::Refused { .. }),
            "{what}: not the SSRF refusal: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("refused (SSRF guard)") && msg.contains("allow_private_networks"),
            "{what}: the error names the guard and the setting: {msg}"
        );
    }

    #[tokio::test]
    async fn every_redirect_hop_of_the_shared_client_is_checked() {
        let (first, addr) = start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        // Live servers outside the allow-list: never reached.
        let (other, other_addr) = start("127.0.0.2:0".parse().unwrap()).await.unwrap();
        let v6 = start("[::1]:0".parse().unwrap()).await;
        let w = wiring(config(addr, strict())).await;

        let mut targets = vec![
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "http://10.0.0.1/".to_string(),
            "http://[::1]/".to_string(),
            format!("http://{other_addr}/ok/"),
            // A public-looking name the test table resolves to a private address.
            "http://metadata.example.test/latest/meta-data/".to_string(),
            format!("http://intranet.example.test:{}/ok/", addr.port()),
        ];
        if let Some((_, v6addr)) = &v6 {
            targets.push(format!("http://[::1]:{}/ok/", v6addr.port()));
        }
        for provider in PROVIDERS {
            // Control: a redirect on the same address is followed.
            first.reset();
            first.set_redirect(302, &format!("http://{addr}{OK_PATH}followed"));
            let r = list(&w, provider, addr).await;
            assert!(
                !matches!(r, Err(ProviderError::Refused { .. })),
                "{provider:?}: {r:?}"
            );
            assert_eq!(
                first.hits_on(OK_PATH),
                1,
                "{provider:?}: the same-address redirect was followed"
            );

            for to in &targets {
                first.reset();
                first.set_redirect(302, to);
                assert_refused(
                    list(&w, provider, addr).await,
                    &format!("{provider:?}: 302 to {to}"),
                );
                assert_eq!(
                    first.api_hits(),
                    1,
                    "{provider:?}: 302 to {to}: one request, not retried"
                );
            }
        }
        assert_eq!(
            other.hits.load(Ordering::SeqCst),
            0,
            "127.0.0.2 was reached"
        );
        if let Some((v6peer, _)) = &v6 {
            assert_eq!(
                v6peer.hits.load(Ordering::SeqCst),
                0,
                "the ::1 server was reached"
            );
        }
    }

    #[tokio::test]
    async fn a_token_endpoint_redirect_to_a_private_address_is_refused() {
        let (first, addr) = start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (other, other_addr) = start("127.0.0.2:0".parse().unwrap()).await.unwrap();
        let w = wiring(config(addr, strict())).await;
        first.redirect_tokens.store(true, Ordering::SeqCst);
        for to in [
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/".to_string(),
            format!("http://{other_addr}/ok/token"),
        ] {
            first.set_redirect(307, &to);
            for provider in [ProviderKind::Graph, ProviderKind::Google] {
                first.reset();
                assert_refused(
                    list(&w, provider, addr).await,
                    &format!("{provider:?} token 307 to {to}"),
                );
                assert_eq!(
                    first.api_hits(),
                    0,
                    "{provider:?}: no API request without a token"
                );
            }
        }
        assert_eq!(
            other.hits.load(Ordering::SeqCst),
            0,
            "127.0.0.2 was reached"
        );
    }

    #[tokio::test]
    async fn configured_endpoints_on_private_addresses_are_refused_naming_the_setting() {
        // The national-cloud/fake roots of the config: private literals are refused when the
        // provider is opened, before any request (nothing listens there).
        let (_, addr) = start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let mut cfg = config(addr, strict());
        cfg.graph_api = Some("http://10.0.0.1/v1.0".into());
        cfg.google_api = Some("http://169.254.169.254/".parse().unwrap());
        let w = wiring(cfg).await;
        for provider in [ProviderKind::Graph, ProviderKind::Google] {
            let (c, creds) = connection(provider, addr);
            let r = w.open(&c, &creds).await.map(|_| ());
            assert_refused(r, &format!("{provider:?} API root"));
        }
        let mut cfg = config(addr, strict());
        cfg.microsoft_authority = Some("http://[::1]:9".into());
        cfg.google_endpoints = Some(OAuthEndpoints {
            authorize_url: "http://[::1]:9/authorize".parse().unwrap(),
            token_url: "http://[::ffff:10.0.0.1]/token".parse().unwrap(),
        });
        let w = wiring(cfg).await;
        for provider in [ProviderKind::Graph, ProviderKind::Google] {
            let (c, creds) = connection(provider, addr);
            let r = w.open(&c, &creds).await.map(|_| ());
            assert_refused(r, &format!("{provider:?} token endpoint"));
        }
    }

    #[tokio::test]
    async fn autodiscover_redirects_to_private_addresses_are_refused() {
        use super::peer::{pox_redirect, sentinel};
        use cardbridge::providers::ews::autodiscover::{self, Candidate};
        use cardbridge::providers::ews::names::AUTODISCOVER_XML_PATH;
        use cardbridge::providers::ews::EwsAuth;

        let (first, addr) = start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        // Listeners outside the allow-list that count even a bare TCP connection.
        let (reached, other_addr) = sentinel("127.0.0.2:0".parse().unwrap()).await.unwrap();
        let mut cfg = config(addr, strict());
        cfg.autodiscover_origin = Some(format!("http://{addr}/").parse().unwrap());
        let w = wiring(cfg).await;
        let ews = |w| by_autodiscover(w, addr);

        // Control: a redirectUrl on the same origin is followed.
        first.reset();
        *first.pox.lock().unwrap() = Some(pox_redirect(
            "redirectUrl",
            "RedirectUrl",
            &format!("http://{addr}{OK_PATH}autodiscover.xml"),
        ));
        let r = ews(&w).await;
        assert!(!matches!(r, Err(ProviderError::Refused { .. })), "{r:?}");
        assert_eq!(
            first.hits_on(OK_PATH),
            1,
            "the same-origin redirectUrl was followed"
        );

        // redirectUrl and redirectAddr to private addresses, and names resolving to them.
        for (action, element, to) in [
            (
                "redirectUrl",
                "RedirectUrl",
                "https://169.254.169.254/autodiscover/autodiscover.xml".to_string(),
            ),
            (
                "redirectUrl",
                "RedirectUrl",
                "https://10.0.0.1/autodiscover/autodiscover.svc".to_string(),
            ),
            (
                "redirectUrl",
                "RedirectUrl",
                "https://[::1]/autodiscover/autodiscover.xml".to_string(),
            ),
            (
                "redirectUrl",
                "RedirectUrl",
                format!("https://{other_addr}/autodiscover/autodiscover.xml"),
            ),
            (
                "redirectUrl",
                "RedirectUrl",
                "https://metadata.example.test/autodiscover/autodiscover.xml".to_string(),
            ),
            (
                "redirectAddr",
                "RedirectAddr",
                "jane@intranet.example.test".to_string(),
            ),
        ] {
            first.reset();
            *first.pox.lock().unwrap() = Some(pox_redirect(action, element, &to));
            assert_refused(ews(&w).await, &format!("Autodiscover {action} to {to}"));
        }

        // An HTTP redirect of a candidate (the shared client's redirect policy).
        first.reset();
        *first.pox.lock().unwrap() = None;
        first.set_redirect(302, &format!("http://{other_addr}{AUTODISCOVER_XML_PATH}"));
        assert_refused(ews(&w).await, "Autodiscover candidate 302 to 127.0.0.2");

        // The unauthenticated probe's 302 (called directly: only the documented candidates
        // carry a probe, and they are not on loopback).
        first.reset();
        first.set_redirect(302, "https://169.254.169.254/autodiscover/autodiscover.xml");
        let http = strict().client_builder().build().unwrap();
        let probe = format!("http://{addr}/probe").parse().unwrap();
        let auth = EwsAuth::Basic {
            username: "ann".into(),
            password: "pw".into(),
        };
        let r = autodiscover::discover(
            &http,
            &strict(),
            "ann@example.com",
            &auth,
            vec![Candidate::RedirectProbe(probe)],
        )
        .await
        .map(|_| ());
        assert_refused(r, "the Autodiscover probe's 302");

        assert_eq!(reached.load(Ordering::SeqCst), 0, "127.0.0.2 was reached");
    }

    #[tokio::test]
    async fn a_plain_http_redirect_url_to_another_host_is_not_followed() {
        // MS-OXDSCLI: a redirect to another host must be https. Private networks allowed, so
        // only that rule stands between the answer and the other server.
        use super::peer::{pox_redirect, sentinel};
        let (first, addr) = start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (reached, other_addr) = sentinel("127.0.0.2:0".parse().unwrap()).await.unwrap();
        let mut cfg = config(
            addr,
            cardbridge::providers::http::NetworkPolicy::unrestricted(),
        );
        cfg.autodiscover_origin = Some(format!("http://{addr}/").parse().unwrap());
        let w = wiring(cfg).await;
        *first.pox.lock().unwrap() = Some(pox_redirect(
            "redirectUrl",
            "RedirectUrl",
            &format!("http://{other_addr}/autodiscover/autodiscover.xml"),
        ));
        assert!(by_autodiscover(&w, addr).await.is_err());
        assert_eq!(
            reached.load(Ordering::SeqCst),
            0,
            "followed a plain-http redirect to another host"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The loopback servers and the name table the transport tests share.

mod peer {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::extract::State;
    use axum::http::{Request, Response};
    use axum::Router;
    use cardbridge::providers::ews::names::{
        el, AUTODISCOVER_SVC_PATH, AUTODISCOVER_XML_PATH, NS_AUTODISCOVER_OUTLOOK,
        NS_AUTODISCOVER_RESPONSE,
    };
    use cardbridge::providers::http::NetworkPolicy;
    use reqwest::dns::{Addrs, Name, Resolve, Resolving};

    /// The path prefix a peer answers 200 on (a redirect's target in the controls).
    pub const OK_PATH: &str = "/ok/";

    const MULTISTATUS: &str = "<?xml version=\"1.0\"?><d:multistatus xmlns:d=\"DAV:\">\
        <d:response><d:href>/dav/</d:href><d:propstat><d:prop><d:displayname>ok</d:displayname>\
        </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>";

    /// A loopback server. `/dav/…` answers a multistatus; `/ok/…` answers 200; a path ending
    /// in `/token` answers an OAuth token (unless `redirect_tokens`); the POX Autodiscover
    /// path answers `pox` when set; any other path answers the configured redirect. It counts
    /// requests, those that carried credentials, and keeps the paths asked.
    #[derive(Default)]
    pub struct Peer {
        pub redirect: Mutex<(u16, String)>,
        pub redirect_tokens: AtomicBool,
        pub pox: Mutex<Option<String>>,
        pub hits: AtomicUsize,
        pub with_authorization: AtomicUsize,
        pub paths: Mutex<Vec<String>>,
    }

    impl Peer {
        /// Requests whose path starts with `prefix`.
        pub fn hits_on(&self, prefix: &str) -> usize {
            let paths = self.paths.lock().unwrap();
            paths.iter().filter(|p| p.starts_with(prefix)).count()
        }
        /// Requests other than token requests.
        pub fn api_hits(&self) -> usize {
            let paths = self.paths.lock().unwrap();
            paths.iter().filter(|p| !p.ends_with("/token")).count()
        }
        pub fn set_redirect(&self, code: u16, to: &str) {
            *self.redirect.lock().unwrap() = (code, to.to_string());
        }
        pub fn reset(&self) {
            self.paths.lock().unwrap().clear();
            self.hits.store(0, Ordering::SeqCst);
        }
    }

    /// A POX Autodiscover answer whose `Action` is `action` (`redirectUrl`, `redirectAddr`)
    /// and whose `element` (`RedirectUrl`, `RedirectAddr`) holds `to` (MS-OXDSCLI §2.2.4).
    pub fn pox_redirect(action: &str, element: &str, to: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><{root} xmlns=\"{NS_AUTODISCOVER_RESPONSE}\">\
             <{resp} xmlns=\"{NS_AUTODISCOVER_OUTLOOK}\"><{acct}><{act}>{action}</{act}>\
             <{element}>{to}</{element}></{acct}></{resp}></{root}>",
            root = el::AUTODISCOVER,
            resp = el::AD_RESPONSE,
            acct = el::AD_ACCOUNT,
            act = el::AD_ACTION,
        )
    }

    async fn handle(State(p): State<Arc<Peer>>, req: Request<Body>) -> Response<Body> {
        p.hits.fetch_add(1, Ordering::SeqCst);
        let path = req.uri().path().to_string();
        p.paths.lock().unwrap().push(path.clone());
        if req.headers().contains_key("authorization") {
            p.with_authorization.fetch_add(1, Ordering::SeqCst);
        }
        let answer = |status: u16, ty: &str, body: String| {
            Response::builder()
                .status(status)
                .header("content-type", ty)
                .body(Body::from(body))
                .unwrap()
        };
        if path.starts_with("/dav/") {
            return answer(207, "application/xml; charset=utf-8", MULTISTATUS.into());
        }
        if path.starts_with(OK_PATH) {
            return answer(200, "application/json", "{}".into());
        }
        if path.ends_with("/token") && !p.redirect_tokens.load(Ordering::SeqCst) {
            let token = r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600}"#;
            return answer(200, "application/json", token.into());
        }
        if path == AUTODISCOVER_XML_PATH {
            if let Some(body) = p.pox.lock().unwrap().clone() {
                return answer(200, "text/xml; charset=utf-8", body);
            }
        }
        if path == AUTODISCOVER_SVC_PATH && p.pox.lock().unwrap().is_some() {
            return answer(404, "text/plain", String::new());
        }
        let (code, to) = p.redirect.lock().unwrap().clone();
        Response::builder()
            .status(code)
            .header("location", to)
            .body(Body::empty())
            .unwrap()
    }

    pub async fn start(bind: SocketAddr) -> Option<(Arc<Peer>, SocketAddr)> {
        let listener = tokio::net::TcpListener::bind(bind).await.ok()?;
        let addr = listener.local_addr().ok()?;
        let peer = Arc::new(Peer::default());
        let app = Router::new().fallback(handle).with_state(peer.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Some((peer, addr))
    }

    /// A listener that only counts the connections made to it (TLS or not): "never reached"
    /// means not even a TCP connection.
    pub async fn sentinel(bind: SocketAddr) -> Option<(Arc<AtomicUsize>, SocketAddr)> {
        let listener = tokio::net::TcpListener::bind(bind).await.ok()?;
        let addr = listener.local_addr().ok()?;
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        Some((count, addr))
    }

    /// A fixed name table standing in for DNS: public-looking names with private addresses.
    pub struct Table(HashMap<&'static str, IpAddr>);

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

    /// Private networks disallowed, except exactly the first hop's loopback address `127.0.0.1`;
    /// names resolved with [`table`].
    pub fn strict() -> NetworkPolicy {
        NetworkPolicy::from_config(false)
            .allowing([IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .with_lookup(table())
    }

    pub fn table() -> Arc<Table> {
        Arc::new(Table(HashMap::from([
            ("dav.example.test", IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ("metadata.example.test", "169.254.169.254".parse().unwrap()),
            ("intranet.example.test", "10.1.2.3".parse().unwrap()),
            ("v6.example.test", IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ])))
    }
}
