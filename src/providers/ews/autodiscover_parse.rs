//! Pure reading of Autodiscover answers: the POX response (MS-OXDSCLI §2.2.4,
//! [`parse_response`]) and the SOAP `GetUserSettings` response (MS-OXWSADISC §3.1.4.x,
//! [`parse_soap_response`]) into an [`Outcome`]. No I/O (the requests and the discovery walk are
//! in `autodiscover.rs`); kept apart so that the `ews_response_parse` fuzz target can compile it
//! without the HTTP stack. Parsing never panics: the XML layer is the bounded, DTD-refusing reader
//! of [`crate::dav::xml`], and a body of the wrong shape is an `Err` naming what is missing.

use crate::dav::xml::{self, Element};

use super::names::el;

/// What an Autodiscover response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The EWS URL (`EXCH` protocol first, then `EXPR`, then any).
    Settings(String),
    /// Ask again for this address.
    RedirectAddr(String),
    /// Ask this URL.
    RedirectUrl(String),
    /// The server answered an `Error`.
    Error {
        /// `ErrorCode`.
        code: String,
        /// `Message`.
        message: String,
    },
}

fn local<'a>(e: &'a Element, name: &str) -> Option<&'a Element> {
    e.children.iter().find(|c| c.name == name)
}

fn local_text(e: &Element, name: &str) -> Option<String> {
    local(e, name)
        .map(|c| c.text_trimmed().to_string())
        .filter(|s| !s.is_empty())
}

/// Reads a POX response (MS-OXDSCLI §2.2.4). Elements are matched by local name, since
/// servers differ in the response namespace versions.
pub fn parse_response(body: &[u8]) -> Result<Outcome, String> {
    let root = xml::parse(body).map_err(|e| e.to_string())?;
    if root.name != el::AUTODISCOVER {
        return Err(format!("unexpected root {}", root.clark()));
    }
    let resp = local(&root, el::AD_RESPONSE).ok_or("no Response")?;
    if let Some(err) = local(resp, el::AD_ERROR) {
        return Ok(Outcome::Error {
            code: local_text(err, el::AD_ERROR_CODE).unwrap_or_default(),
            message: local_text(err, el::AD_MESSAGE).unwrap_or_default(),
        });
    }
    let account = local(resp, el::AD_ACCOUNT).ok_or("no Account")?;
    match local_text(account, el::AD_ACTION).as_deref() {
        Some("redirectAddr") => local_text(account, el::AD_REDIRECT_ADDR)
            .map(Outcome::RedirectAddr)
            .ok_or_else(|| "redirectAddr without RedirectAddr".into()),
        Some("redirectUrl") => local_text(account, el::AD_REDIRECT_URL)
            .map(Outcome::RedirectUrl)
            .ok_or_else(|| "redirectUrl without RedirectUrl".into()),
        _ => {
            let protocols: Vec<&Element> = account
                .children
                .iter()
                .filter(|c| c.name == el::AD_PROTOCOL)
                .collect();
            let url_of = |ty: Option<&str>| {
                protocols
                    .iter()
                    .filter(|p| ty.is_none() || local_text(p, el::AD_TYPE).as_deref() == ty)
                    .find_map(|p| local_text(p, el::AD_EWS_URL))
            };
            url_of(Some("EXCH"))
                .or_else(|| url_of(Some("EXPR")))
                .or_else(|| url_of(None))
                .map(Outcome::Settings)
                .ok_or_else(|| "no Protocol carries an EwsUrl".into())
        }
    }
}

/// Reads a SOAP `GetUserSettings` response: the internal EWS URL, else the external one; a
/// `RedirectAddress`/`RedirectUrl` user error code is a redirect.
pub fn parse_soap_response(body: &[u8]) -> Result<Outcome, String> {
    let root = xml::parse(body).map_err(|e| e.to_string())?;
    let body = local(&root, el::BODY).ok_or("no SOAP Body")?;
    let msg =
        local(body, "GetUserSettingsResponseMessage").ok_or("no GetUserSettingsResponseMessage")?;
    let resp = local(msg, el::AD_RESPONSE).ok_or("no Response")?;
    let top_code = local_text(resp, "ErrorCode").unwrap_or_default();
    if top_code != "NoError" && !top_code.is_empty() {
        return Ok(Outcome::Error {
            code: top_code,
            message: local_text(resp, "ErrorMessage").unwrap_or_default(),
        });
    }
    let user = local(resp, "UserResponses")
        .and_then(|u| local(u, "UserResponse"))
        .ok_or("no UserResponse")?;
    let code = local_text(user, "ErrorCode").unwrap_or_default();
    let target = local_text(user, "RedirectTarget");
    match code.as_str() {
        "RedirectAddress" => {
            return target
                .map(Outcome::RedirectAddr)
                .ok_or_else(|| "RedirectAddress without target".into())
        }
        "RedirectUrl" => {
            return target
                .map(Outcome::RedirectUrl)
                .ok_or_else(|| "RedirectUrl without target".into())
        }
        "NoError" | "" => {}
        _ => {
            return Ok(Outcome::Error {
                code,
                message: local_text(user, "ErrorMessage").unwrap_or_default(),
            })
        }
    }
    let settings: Vec<&Element> = local(user, "UserSettings")
        .map(|s| {
            s.children
                .iter()
                .filter(|c| c.name == "UserSetting")
                .collect()
        })
        .unwrap_or_default();
    let setting = |name: &str| {
        settings
            .iter()
            .find(|s| local_text(s, "Name").as_deref() == Some(name))
            .and_then(|s| local_text(s, "Value"))
    };
    setting("InternalEwsUrl")
        .or_else(|| setting("ExternalEwsUrl"))
        .map(Outcome::Settings)
        .ok_or_else(|| "no EwsUrl setting".into())
}
