//! Autodiscover: finding the EWS URL of a mailbox from its email address, with SOAP
//! `GetUserSettings` (MS-OXWSADISC, preferred) and POX (MS-OXDSCLI).
//!
//! Pure halves: [`candidates`] (the documented order of candidate URLs for a domain),
//! [`soap_request_body`]/[`parse_soap_response`] and [`request_body`]/[`parse_response`] (the
//! two readers live in the pure `autodiscover_parse.rs` and are re-exported here). The
//! I/O half, [`discover`], tries the candidates in order, follows address redirects (restart
//! for the new address) and URL redirects (https only, unless to the same origin as a plain
//! http candidate, as on a loopback test server), and the unauthenticated
//! `http://autodiscover.<domain>` probe whose 302 must lead to https (providers.md §4
//! "Autodiscover"). Every URL it asks passes the private-network policy first
//! ([`NetworkPolicy`], issue #8 "SSRF").
//!
//! Not done: the SCP lookup (needs an Active Directory-joined client) and the DNS SRV record
//! `_autodiscover._tcp.<domain>`.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use url::Url;

use crate::dav::names::QName;
use crate::dav::xml::{self, Element};
use crate::providers::ProviderError;

pub use super::autodiscover_parse::{parse_response, parse_soap_response, Outcome};
use super::client::{authorization, EwsAuth};
use super::names::HEADER_SOAP_ACTION;
use super::names::{
    el, AUTODISCOVER_ACCEPTABLE_SCHEMA, AUTODISCOVER_SVC_PATH, AUTODISCOVER_XML_PATH,
    GET_USER_SETTINGS_ACTION, NS_AUTODISCOVER_REQUEST, NS_AUTODISCOVER_SOAP, NS_SOAP,
    NS_WS_ADDRESSING, SERVER_VERSION,
};
use super::ntlm::{NtlmConnection, NtlmCredentials};
use crate::config::UrlPolicyError;
use crate::providers::http::{refusal_of, refused, NetworkPolicy, RetryPolicy};

/// At most this many redirects (address or URL) per discovery (MS-OXDSCLI §3.1.5.x advises a
/// limit to avoid loops).
pub const MAX_REDIRECTS: usize = 10;

/// One place to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// `POST` the SOAP `GetUserSettings` request here (`…/autodiscover.svc`).
    Soap(Url),
    /// `POST` the POX request here (`…/autodiscover.xml`).
    Pox(Url),
    /// Unauthenticated `GET`; a 302 to an https URL gives the URL to `POST` to.
    RedirectProbe(Url),
}

/// The domain of an email address.
pub fn domain_of(email: &str) -> Result<&str, ProviderError> {
    match email.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains(['/', ':', '?', '#', '@', ' ']) =>
        {
            Ok(domain)
        }
        _ => Err(ProviderError::Unsupported(format!(
            "{email:?} is not an email address"
        ))),
    }
}

/// The candidate URLs for `email`, in the documented order (providers.md §4), SOAP before
/// POX on each host: `https://<domain>/autodiscover/autodiscover.svc` and `.xml`, then
/// `https://autodiscover.<domain>/…` (both), then the `http://autodiscover.<domain>/…`
/// redirect probe.
pub fn candidates(email: &str) -> Result<Vec<Candidate>, ProviderError> {
    let domain = domain_of(email)?.to_ascii_lowercase();
    let url = |s: String| {
        Url::parse(&s).map_err(|e| ProviderError::Unsupported(format!("bad domain {domain}: {e}")))
    };
    let mut out = Vec::new();
    for host in [domain.clone(), format!("autodiscover.{domain}")] {
        out.push(Candidate::Soap(url(format!(
            "https://{host}{AUTODISCOVER_SVC_PATH}"
        ))?));
        out.push(Candidate::Pox(url(format!(
            "https://{host}{AUTODISCOVER_XML_PATH}"
        ))?));
    }
    out.push(Candidate::RedirectProbe(url(format!(
        "http://autodiscover.{domain}{AUTODISCOVER_XML_PATH}"
    ))?));
    Ok(out)
}

/// The SOAP `GetUserSettings` request for the internal and external EWS URLs
/// (MS-OXWSADISC §3.1.4.x).
pub fn soap_request_body(email: &str, to: &Url) -> String {
    let a = |l: &'static str| Element::new(&QName::new_static(NS_AUTODISCOVER_SOAP, l));
    let wsa = |l: &'static str| Element::new(&QName::new_static(NS_WS_ADDRESSING, l));
    let soap = |l: &'static str| Element::new(&QName::new_static(NS_SOAP, l));
    let root = soap(el::ENVELOPE)
        .with_child(soap("Header").with_children([
            a("RequestedServerVersion").with_text(SERVER_VERSION),
            wsa("Action").with_text(GET_USER_SETTINGS_ACTION),
            wsa("To").with_text(to.as_str()),
        ]))
        .with_child(
            soap(el::BODY).with_child(
                a("GetUserSettingsRequestMessage").with_child(
                    a("Request")
                        .with_child(
                            a("Users")
                                .with_child(a("User").with_child(a("Mailbox").with_text(email))),
                        )
                        .with_child(a("RequestedSettings").with_children([
                            a("Setting").with_text("InternalEwsUrl"),
                            a("Setting").with_text("ExternalEwsUrl"),
                        ])),
                ),
            ),
        );
    xml::render(&root)
}

/// The POX request (MS-OXDSCLI §2.2.3).
pub fn request_body(email: &str) -> String {
    let q = |l: &'static str| QName::new_static(NS_AUTODISCOVER_REQUEST, l);
    let root = Element::new(&q(el::AUTODISCOVER)).with_child(
        Element::new(&q("Request"))
            .with_child(Element::new(&q("EMailAddress")).with_text(email))
            .with_child(
                Element::new(&q("AcceptableResponseSchema"))
                    .with_text(AUTODISCOVER_ACCEPTABLE_SCHEMA),
            ),
    );
    xml::render(&root)
}

/// What discovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The EWS endpoint.
    pub ews_url: Url,
    /// The address it was found for (after `redirectAddr`).
    pub email: String,
}

/// An Autodiscover-level redirect (`redirectUrl`, the probe's 302) may be followed from `from`
/// to `to` only over https, except to the same origin when `from` itself was plain http (a
/// loopback test server): a redirect to another host must be https.
fn may_follow(from: &Url, to: &Url) -> bool {
    to.scheme() == "https" || (from.scheme() == "http" && to.origin() == from.origin())
}

/// The SSRF guard on one Autodiscover URL: `Err(Some(refusal))` when `network` refuses it,
/// `Err(None)` when its name does not resolve (skipped like an unreachable candidate).
async fn guard(network: &NetworkPolicy, u: &Url) -> Result<(), Option<ProviderError>> {
    match network.check_url_resolved(u).await {
        Ok(()) => Ok(()),
        Err(why @ UrlPolicyError::Resolve { .. }) => {
            tracing::debug!(url = %u, error = %why, "autodiscover URL does not resolve");
            Err(None)
        }
        Err(why) => {
            tracing::warn!(url = %u, error = %why, "autodiscover URL refused by the SSRF guard");
            Err(Some(refused(u, &why)))
        }
    }
}

/// Finds the EWS URL for `email`, trying `candidates` in order (use [`candidates`] for the
/// documented ones). Candidates that fail (unreachable, not 200, unreadable) are skipped; when
/// none works the error says so, and is [`ProviderError::NeedsReauthorization`] when a server
/// refused the credentials.
///
/// Every URL asked — each candidate, the probe's redirect target, each `redirectUrl` and the
/// candidates of a `redirectAddr` domain — is checked against `network` before it is
/// requested (`http` should be built under the same policy, which checks HTTP redirects and
/// screens names at connect). A refused URL is skipped like an unreachable one; when nothing
/// is found and the guard refused something, the error is that [`ProviderError::Refused`].
pub async fn discover(
    http: &reqwest::Client,
    network: &NetworkPolicy,
    email: &str,
    auth: &EwsAuth,
    candidates: Vec<Candidate>,
) -> Result<Discovered, ProviderError> {
    // NTLM authenticates a connection: each candidate gets its own handshake.
    let auth_header = match auth {
        EwsAuth::Ntlm { .. } => None,
        _ => Some(authorization(auth).await?.0),
    };
    let probe_client = network
        .client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ProviderError::Transport(e.to_string()))?;
    let mut email = email.to_string();
    let mut queue = candidates;
    let mut redirects = 0;
    let mut rejected_credentials = false;
    let mut guard_refusal: Option<ProviderError> = None;
    let mut tried = Vec::new();
    while !queue.is_empty() {
        let candidate = queue.remove(0);
        let (post_url, soap) = match candidate {
            Candidate::Soap(u) => (u, true),
            Candidate::Pox(u) => (u, false),
            Candidate::RedirectProbe(u) => {
                tried.push(u.to_string());
                if let Err(refusal) = guard(network, &u).await {
                    guard_refusal = refusal.or(guard_refusal);
                    continue;
                }
                let resp = probe_client.get(u.clone()).send().await;
                let location = match resp {
                    Ok(r) if r.status() == StatusCode::FOUND || r.status().is_redirection() => r
                        .headers()
                        .get(LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|l| u.join(l).ok()),
                    _ => None,
                };
                match location {
                    Some(l) if l.scheme() == "https" => (l, false),
                    Some(l) => {
                        tracing::warn!(%l, "autodiscover probe redirected to a non-https URL; ignored");
                        continue;
                    }
                    None => continue,
                }
            }
        };
        tried.push(post_url.to_string());
        if let Err(refusal) = guard(network, &post_url).await {
            guard_refusal = refusal.or(guard_refusal);
            continue;
        }
        let body = if soap {
            soap_request_body(&email, &post_url)
        } else {
            request_body(&email)
        };
        let build = |client: &reqwest::Client| {
            let req = client
                .post(post_url.clone())
                .header(CONTENT_TYPE, "text/xml; charset=utf-8")
                .body(body.clone());
            if soap {
                req.header(HEADER_SOAP_ACTION, GET_USER_SETTINGS_ACTION)
            } else {
                req
            }
        };
        let resp = match (&auth_header, auth) {
            (Some(h), _) => build(http)
                .header(AUTHORIZATION, h.clone())
                .send()
                .await
                .map_err(|e| refusal_of(&e).unwrap_or(ProviderError::Transport(e.to_string()))),
            (None, EwsAuth::Ntlm { username, password }) => {
                match NtlmConnection::with_network(
                    NtlmCredentials::new(username, password),
                    network,
                ) {
                    Ok(conn) => match conn.send(&RetryPolicy::once(), &build).await {
                        Err(ProviderError::CredentialsRejected) => {
                            rejected_credentials = true;
                            continue;
                        }
                        r => r,
                    },
                    Err(e) => Err(e),
                }
            }
            (None, _) => Err(ProviderError::Unsupported("no credentials".into())),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e @ ProviderError::Refused { .. }) => {
                tracing::warn!(url = %post_url, error = %e, "autodiscover redirect refused by the SSRF guard");
                guard_refusal = Some(e);
                continue;
            }
            Err(e) => {
                tracing::debug!(url = %post_url, error = %e, "autodiscover candidate unreachable");
                continue;
            }
        };
        if resp.status() == StatusCode::UNAUTHORIZED {
            rejected_credentials = true;
            continue;
        }
        if !resp.status().is_success() {
            continue;
        }
        let Ok(bytes) = resp.bytes().await else {
            continue;
        };
        let parsed = if soap {
            parse_soap_response(&bytes)
        } else {
            parse_response(&bytes)
        };
        match parsed {
            Ok(Outcome::Settings(url)) => {
                let ews_url = Url::parse(&url).map_err(|e| {
                    ProviderError::Protocol(format!(
                        "autodiscover returned a bad EwsUrl {url}: {e}"
                    ))
                })?;
                return Ok(Discovered { ews_url, email });
            }
            Ok(Outcome::RedirectAddr(addr)) => {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    break;
                }
                email = addr;
                queue = self::candidates(&email)?;
            }
            Ok(Outcome::RedirectUrl(url)) => {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    break;
                }
                match Url::parse(&url) {
                    Ok(u) if may_follow(&post_url, &u) => {
                        let next = if u.path().ends_with(".svc") {
                            Candidate::Soap(u)
                        } else {
                            Candidate::Pox(u)
                        };
                        queue.insert(0, next);
                    }
                    _ => tracing::warn!(%url, "autodiscover redirectUrl refused"),
                }
            }
            Ok(Outcome::Error { code, message }) => {
                tracing::debug!(%code, %message, url = %post_url, "autodiscover error");
            }
            Err(e) => {
                tracing::debug!(error = %e, url = %post_url, "unreadable autodiscover answer")
            }
        }
    }
    if rejected_credentials {
        return Err(ProviderError::NeedsReauthorization(
            "the Autodiscover server rejected the credentials (HTTP 401)".into(),
        ));
    }
    if let Some(e) = guard_refusal {
        return Err(e);
    }
    Err(ProviderError::Unsupported(format!(
        "Autodiscover found no EWS URL for {email} (tried {})",
        tried.join(", ")
    )))
}

/// [`discover`] over the documented [`candidates`] of `email`'s domain.
pub async fn autodiscover(
    http: &reqwest::Client,
    network: &NetworkPolicy,
    email: &str,
    auth: &EwsAuth,
) -> Result<Discovered, ProviderError> {
    discover(http, network, email, auth, candidates(email)?).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/ews")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn candidates_follow_the_documented_order() {
        let c = candidates("jane@Contoso.com").unwrap();
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            c,
            [
                Candidate::Soap(u("https://contoso.com/autodiscover/autodiscover.svc")),
                Candidate::Pox(u("https://contoso.com/autodiscover/autodiscover.xml")),
                Candidate::Soap(u(
                    "https://autodiscover.contoso.com/autodiscover/autodiscover.svc"
                )),
                Candidate::Pox(u(
                    "https://autodiscover.contoso.com/autodiscover/autodiscover.xml"
                )),
                Candidate::RedirectProbe(u(
                    "http://autodiscover.contoso.com/autodiscover/autodiscover.xml"
                )),
            ]
        );
        for bad in ["nodomain", "@contoso.com", "a@", "a@evil.com/x", "a@b@c:1"] {
            assert!(candidates(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_are_read() {
        assert_eq!(
            parse_response(&fixture("autodiscover-settings.xml")).unwrap(),
            Outcome::Settings("https://mail.contoso.com/EWS/Exchange.asmx".into())
        );
        assert_eq!(
            parse_response(&fixture("autodiscover-redirect-addr.xml")).unwrap(),
            Outcome::RedirectAddr("jane@contoso.mail.example".into())
        );
        assert!(matches!(
            parse_response(&fixture("autodiscover-error.xml")).unwrap(),
            Outcome::Error { code, .. } if code == "500"
        ));
        assert!(parse_response(b"<nope/>").is_err());
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn soap_responses_are_read() {
        assert_eq!(
            parse_soap_response(&fixture("autodiscover-soap-settings.xml")).unwrap(),
            Outcome::Settings("https://mail.contoso.com/EWS/Exchange.asmx".into())
        );
        assert_eq!(
            parse_soap_response(&fixture("autodiscover-soap-redirect.xml")).unwrap(),
            Outcome::RedirectAddr("jane@contoso.mail.example".into())
        );
        assert!(parse_soap_response(&fixture("autodiscover-settings.xml")).is_err());
        let req = soap_request_body(
            "jane@contoso.com",
            &Url::parse("https://autodiscover.contoso.com/autodiscover/autodiscover.svc").unwrap(),
        );
        assert!(req.contains("jane@contoso.com") && req.contains("InternalEwsUrl"));
        assert!(req.contains(GET_USER_SETTINGS_ACTION));
        assert!(xml::parse(req.as_bytes()).is_ok());
    }

    #[test]
    fn request_names_the_address_and_schema() {
        let body = request_body("a&b@contoso.com");
        assert!(body.contains("a&amp;b@contoso.com"));
        assert!(body.contains(AUTODISCOVER_ACCEPTABLE_SCHEMA));
        assert!(xml::parse(body.as_bytes()).is_ok());
    }
}
