//! NTLM over HTTP for EWS on premises (MS-NLMP, MS-NTHT): the NEGOTIATE → CHALLENGE →
//! AUTHENTICATE handshake with an NTLMv2 response, built with the `ntlmclient` crate.
//!
//! NTLM authenticates the TCP connection, not the request (MS-NTHT §2.2): the three legs must
//! travel over one keep-alive connection, and later requests on that connection need no
//! `Authorization` at all. So an [`NtlmConnection`] owns a dedicated HTTP/1.1-only client that
//! keeps at most one idle connection, and runs one request at a time: the legs of a handshake
//! cannot be spread over two sockets, and the authenticated socket is the one the pool hands
//! back next. When the server answers 401 on a request without credentials (the connection was
//! closed and a new one opened), the handshake runs again on the new connection. A 401 to the
//! AUTHENTICATE leg is [`ProviderError::CredentialsRejected`], never retried.

use base64::Engine as _;
use ntlmclient::{
    ChallengeMessage, Flags, Message, NegotiateMessage, TargetInfoEntry, TargetInfoType,
};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::providers::http::{send_with_retry, NetworkPolicy, RetryPolicy};
use crate::providers::ProviderError;

/// The HTTP auth scheme name, MS-NTHT §2.2.1 (`Authorization: NTLM <base64>`).
pub const SCHEME_NTLM: &str = "NTLM";

/// Flags of our NEGOTIATE_MESSAGE (MS-NLMP §2.2.1.1, §2.2.2.5): Unicode, NTLM with extended
/// session security, target info (needed for NTLMv2), 128-bit. No signing or sealing: HTTP
/// carries no NTLM-protected payloads, so no key exchange either.
fn negotiate_flags() -> Flags {
    Flags::NEGOTIATE_UNICODE
        | Flags::REQUEST_TARGET
        | Flags::NEGOTIATE_NTLM
        | Flags::NEGOTIATE_ALWAYS_SIGN
        | Flags::NEGOTIATE_NTLM2_KEY
        | Flags::NEGOTIATE_TARGET_INFO
        | Flags::NEGOTIATE_128BIT
        | Flags::NEGOTIATE_56BIT
}

/// The workstation name we announce (MS-NLMP allows any NetBIOS name; servers only log it).
const WORKSTATION: &str = "CARDBRIDGE";

/// NTLM credentials: `DOMAIN\user` splits into domain and user; a UPN (`user@domain`) is sent
/// whole as the user with an empty domain, as Windows clients do.
#[derive(Clone, PartialEq, Eq)]
pub struct NtlmCredentials {
    /// The NetBIOS domain (may be empty).
    pub domain: String,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for NtlmCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtlmCredentials")
            .field("domain", &self.domain)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl NtlmCredentials {
    /// Splits `login` (`DOMAIN\user`, or a UPN / bare user).
    pub fn new(login: &str, password: &str) -> Self {
        let (domain, username) = match login.split_once('\\') {
            Some((d, u)) => (d.to_string(), u.to_string()),
            None => (String::new(), login.to_string()),
        };
        Self {
            domain,
            username,
            password: password.to_string(),
        }
    }
}

/// Errors of the handshake.
#[derive(Debug, thiserror::Error)]
pub enum NtlmError {
    /// The server's 401 carried no `WWW-Authenticate: NTLM <token>`.
    #[error("the server offered no NTLM challenge")]
    NoChallenge,
    /// The challenge token is not base64 or not a CHALLENGE_MESSAGE.
    #[error("unreadable NTLM challenge: {0}")]
    BadChallenge(String),
    /// A message could not be encoded.
    #[error("cannot encode NTLM message: {0}")]
    Encode(String),
}

impl From<NtlmError> for ProviderError {
    fn from(e: NtlmError) -> Self {
        ProviderError::Protocol(e.to_string())
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// `NTLM <base64 NEGOTIATE_MESSAGE>`, the first leg.
pub fn negotiate_header() -> Result<String, NtlmError> {
    let msg = Message::Negotiate(NegotiateMessage {
        flags: negotiate_flags(),
        supplied_domain: String::new(),
        supplied_workstation: String::new(),
        os_version: Default::default(),
    });
    let bytes = msg
        .to_bytes()
        .map_err(|e| NtlmError::Encode(format!("{e:?}")))?;
    Ok(format!("{SCHEME_NTLM} {}", b64().encode(bytes)))
}

/// The CHALLENGE_MESSAGE in a 401's `WWW-Authenticate: NTLM <token>` headers (there may be
/// several `WWW-Authenticate` headers, e.g. `Negotiate` and `NTLM`).
pub fn challenge_of(headers: &HeaderMap) -> Result<ChallengeMessage, NtlmError> {
    let token = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case(SCHEME_NTLM)
                .then(|| rest.trim().to_string())
        })
        .filter(|t| !t.is_empty())
        .ok_or(NtlmError::NoChallenge)?;
    let bytes = b64()
        .decode(token.as_bytes())
        .map_err(|e| NtlmError::BadChallenge(e.to_string()))?;
    match Message::try_from(bytes.as_slice()) {
        Ok(Message::Challenge(c)) => Ok(c),
        Ok(other) => Err(NtlmError::BadChallenge(format!(
            "message type {} instead of 2",
            other.message_number()
        ))),
        Err(e) => Err(NtlmError::BadChallenge(format!("{e:?}"))),
    }
}

/// True when a 401 asks for NTLM (`WWW-Authenticate: NTLM`, with or without a token).
pub fn offers_ntlm(headers: &HeaderMap) -> bool {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.trim()
                .split(' ')
                .next()
                .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME_NTLM))
        })
}

/// `NTLM <base64 AUTHENTICATE_MESSAGE>` answering `challenge` with an NTLMv2 response
/// (MS-NLMP §3.3.2). The response's timestamp is the server's `MsvAvTimestamp` when it sent
/// one (§3.1.5.1.2), else the local clock.
pub fn authenticate_header(
    challenge: &ChallengeMessage,
    creds: &NtlmCredentials,
) -> Result<String, NtlmError> {
    let target_info: Vec<u8> = challenge
        .target_information
        .iter()
        .flat_map(TargetInfoEntry::to_bytes)
        .collect();
    let time = challenge
        .target_information
        .iter()
        .find(|e| e.entry_type == TargetInfoType::Timestamp)
        .and_then(|e| <[u8; 8]>::try_from(e.data.as_slice()).ok())
        .map(i64::from_le_bytes)
        .unwrap_or_else(ntlmclient::get_ntlm_time);
    let nc = ntlmclient::Credentials {
        username: creds.username.clone(),
        password: creds.password.clone(),
        domain: creds.domain.clone(),
    };
    let response =
        ntlmclient::respond_challenge_ntlm_v2(challenge.challenge, &target_info, time, &nc);
    // What both sides agreed on; no key exchange, so no encrypted session key is sent.
    let flags = (challenge.flags & negotiate_flags()) | Flags::NEGOTIATE_UNICODE;
    let mut msg = response.to_message(&nc, WORKSTATION, flags);
    if let Message::Authenticate(a) = &mut msg {
        a.session_key.clear();
    }
    let bytes = msg
        .to_bytes()
        .map_err(|e| NtlmError::Encode(format!("{e:?}")))?;
    Ok(format!("{SCHEME_NTLM} {}", b64().encode(bytes)))
}

fn header(value: &str) -> Result<HeaderValue, ProviderError> {
    HeaderValue::from_str(value)
        .map_err(|_| ProviderError::Protocol("NTLM token is not a valid header".into()))
}

/// One NTLM-authenticated connection to a server (see the module doc).
pub struct NtlmConnection {
    http: reqwest::Client,
    creds: NtlmCredentials,
    /// Held for a whole request (handshake included); true once the pooled connection is
    /// authenticated.
    state: tokio::sync::Mutex<bool>,
}

impl std::fmt::Debug for NtlmConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtlmConnection")
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

impl NtlmConnection {
    /// A connection for `creds`, with its own HTTP/1.1 client (one pooled connection) that
    /// may reach any address.
    pub fn new(creds: NtlmCredentials) -> Result<Self, ProviderError> {
        Self::with_network(creds, &NetworkPolicy::unrestricted())
    }

    /// Like [`NtlmConnection::new`], its client built under `network` (names screened when
    /// resolved, every redirect hop checked).
    pub fn with_network(
        creds: NtlmCredentials,
        network: &NetworkPolicy,
    ) -> Result<Self, ProviderError> {
        let http = network
            .client_builder()
            .http1_only()
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| ProviderError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            creds,
            state: tokio::sync::Mutex::new(false),
        })
    }

    /// The credentials.
    pub fn credentials(&self) -> &NtlmCredentials {
        &self.creds
    }

    /// Sends the request `build` makes from the dedicated client (called once per attempt and
    /// leg), running the handshake when the connection is not (or no longer) authenticated.
    /// Retries per `retry` like [`send_with_retry`]. Returns the answer to the authenticated
    /// request; a 401 to the AUTHENTICATE leg is [`ProviderError::CredentialsRejected`].
    pub async fn send(
        &self,
        retry: &RetryPolicy,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, ProviderError> {
        let mut authenticated = self.state.lock().await;
        if *authenticated {
            let resp = send_with_retry(retry, || build(&self.http)).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            // A new connection (the old one closed): authenticate it.
            *authenticated = false;
            drain(resp).await;
            tracing::debug!("NTLM connection no longer authenticated; new handshake");
        }
        // Leg 1: NEGOTIATE → 401 with the CHALLENGE.
        let negotiate = header(&negotiate_header()?)?;
        let resp = send_with_retry(retry, || {
            build(&self.http).header(AUTHORIZATION, negotiate.clone())
        })
        .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            // The server did not ask for NTLM on this URL; its answer is the answer.
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        // The body must be read for the connection to go back to the pool for leg 2.
        drain(resp).await;
        let challenge = match challenge_of(&headers) {
            Ok(c) => c,
            Err(NtlmError::NoChallenge) => {
                return Err(ProviderError::Unsupported(
                    "the server does not offer NTLM authentication".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        // Leg 2: AUTHENTICATE carrying the real request.
        let auth = header(&authenticate_header(&challenge, &self.creds)?)?;
        let resp = send_with_retry(retry, || {
            build(&self.http).header(AUTHORIZATION, auth.clone())
        })
        .await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            drain(resp).await;
            return Err(ProviderError::CredentialsRejected);
        }
        *authenticated = true;
        Ok(resp)
    }
}

/// Reads the body to its end so that the connection goes back to the pool for the next leg.
/// (hyper holds a body's end until its connection is idle in the pool again; a response
/// without a body returns the connection from a spawned task, so give that task a turn.)
async fn drain(resp: Response) {
    let _ = resp.bytes().await;
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/ews")
                .join(name),
        )
        .unwrap()
    }

    /// `Name: value` lines of the handshake fixture (comments start with `#`).
    fn handshake_header(name: &str) -> String {
        fixture("ntlm-handshake.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap()
    }

    #[test]
    fn logins_split_into_domain_and_user() {
        let c = NtlmCredentials::new("CONTOSO\\jane", "pw");
        assert_eq!(
            (c.domain.as_str(), c.username.as_str()),
            ("CONTOSO", "jane")
        );
        let c = NtlmCredentials::new("jane@contoso.com", "pw");
        assert_eq!(
            (c.domain.as_str(), c.username.as_str()),
            ("", "jane@contoso.com")
        );
        assert!(!format!("{c:?}").contains("pw"));
    }

    #[test]
    fn ntowfv2_matches_the_ms_nlmp_test_vector() {
        // MS-NLMP §4.2.4.1.1: User "User", UserDom "Domain", Password "Password".
        let key = ntlmclient::ntlm_v2_password_func(&ntlmclient::Credentials {
            username: "User".into(),
            password: "Password".into(),
            domain: "Domain".into(),
        });
        assert_eq!(hex::encode(key), "0c868a403bfd7a93a3001ef22ef02e3f");
    }

    #[test]
    fn negotiate_is_a_type_1_message_with_our_flags() {
        let h = negotiate_header().unwrap();
        let token = h.strip_prefix("NTLM ").unwrap();
        let bytes = b64().decode(token).unwrap();
        // MS-NLMP §2.2.1.1: signature, MessageType 1, NegotiateFlags, two empty fields.
        assert_eq!(&bytes[..12], b"NTLMSSP\0\x01\0\0\0");
        let flags = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
        assert_eq!(flags, negotiate_flags().bits());
        assert!(flags & 0x0008_0000 != 0, "extended session security");
        assert_eq!(
            &bytes[16..32],
            &[0, 0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0, 40, 0, 0, 0]
        );
    }

    #[test]
    fn the_documented_challenge_parses_and_is_answered() {
        // MS-NLMP §4.2.4.3's CHALLENGE_MESSAGE, as the fake sends it.
        let mut headers = HeaderMap::new();
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate"));
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_str(&handshake_header("WWW-Authenticate:")).unwrap(),
        );
        assert!(offers_ntlm(&headers));
        let c = challenge_of(&headers).unwrap();
        assert_eq!(
            c.challenge,
            [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]
        );
        assert_eq!(c.target_name, "Server");
        let names: Vec<String> = c
            .target_information
            .iter()
            .filter(|e| e.entry_type != TargetInfoType::Terminator)
            .map(|e| e.to_string().unwrap())
            .collect();
        assert_eq!(names, ["Domain", "Server"]);
        let creds = NtlmCredentials::new("Domain\\User", "Password");
        let h = authenticate_header(&c, &creds).unwrap();
        let bytes = b64().decode(h.strip_prefix("NTLM ").unwrap()).unwrap();
        let Message::Authenticate(a) = Message::try_from(bytes.as_slice()).unwrap() else {
            panic!("not a type 3");
        };
        assert_eq!(
            (a.domain_name.as_str(), a.user_name.as_str()),
            ("Domain", "User")
        );
        assert!(a.session_key.is_empty());
        // NTProofStr (16) + blob header (28) + the challenge's target info + 4 zero bytes.
        let ti_len: usize = c
            .target_information
            .iter()
            .map(|e| e.to_bytes().len())
            .sum();
        assert_eq!(a.ntlm_response.len(), 16 + 28 + ti_len + 4);
    }

    #[test]
    fn a_401_without_ntlm_has_no_challenge() {
        let mut headers = HeaderMap::new();
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"x\""),
        );
        assert!(!offers_ntlm(&headers));
        assert!(matches!(
            challenge_of(&headers),
            Err(NtlmError::NoChallenge)
        ));
        let mut headers = HeaderMap::new();
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("NTLM !!!"));
        assert!(matches!(
            challenge_of(&headers),
            Err(NtlmError::BadChallenge(_))
        ));
    }
}
