//! CardDAV discovery (RFC 6764, RFC 5397, RFC 6352 §7.1): from an email address or a URL to the
//! principal, the address-book home set(s) and the address books with their capabilities.
//! DNS SRV/TXT lookups go through the [`SrvResolver`] trait; [`HickoryResolver`] is the real one
//! (system configuration, or a given nameserver such as a dnsmasq stub on 127.0.0.1).

use std::net::SocketAddr;

use async_trait::async_trait;
use url::Url;

use crate::dav::discovery::{
    addressbooks_request, home_set_request, parse_addressbooks, parse_home_set, parse_principal,
    principal_request, txt_path, AddressBookInfo,
};
use crate::dav::names;
use crate::providers::ProviderError;

use super::client::DavClient;

/// One SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Priority (lower first).
    pub priority: u16,
    /// Weight.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Target host, without the trailing dot; `.` means "no service".
    pub target: String,
}

/// DNS lookups discovery needs.
#[async_trait]
pub trait SrvResolver: Send + Sync {
    /// SRV records of `name` (empty when there are none).
    async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>, String>;
    /// TXT strings of `name` (empty when there are none).
    async fn txt(&self, name: &str) -> Result<Vec<String>, String>;
}

/// A resolver that knows nothing (for URL-only discovery).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDns;

#[async_trait]
impl SrvResolver for NoDns {
    async fn srv(&self, _: &str) -> Result<Vec<SrvRecord>, String> {
        Ok(Vec::new())
    }
    async fn txt(&self, _: &str) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

/// The hickory-resolver implementation.
pub struct HickoryResolver {
    inner: hickory_resolver::TokioResolver,
}

impl HickoryResolver {
    /// Uses the system configuration (`/etc/resolv.conf`).
    pub fn system() -> Result<Self, String> {
        let inner = hickory_resolver::TokioResolver::builder_tokio()
            .map_err(|e| e.to_string())?
            .build();
        Ok(Self { inner })
    }

    /// Asks only `nameserver` (UDP and TCP), e.g. a stub on `127.0.0.1:5353`.
    pub fn with_nameserver(nameserver: SocketAddr) -> Self {
        use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
        let group =
            NameServerConfigGroup::from_ips_clear(&[nameserver.ip()], nameserver.port(), true);
        let config = ResolverConfig::from_parts(None, vec![], group);
        let inner = hickory_resolver::TokioResolver::builder_with_config(
            config,
            hickory_resolver::name_server::TokioConnectionProvider::default(),
        )
        .build();
        Self { inner }
    }
}

fn is_no_records(e: &hickory_resolver::ResolveError) -> bool {
    e.is_no_records_found() || e.is_nx_domain()
}

#[async_trait]
impl SrvResolver for HickoryResolver {
    async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>, String> {
        match self.inner.srv_lookup(name).await {
            Ok(l) => Ok(l
                .iter()
                .map(|r| SrvRecord {
                    priority: r.priority(),
                    weight: r.weight(),
                    port: r.port(),
                    target: r.target().to_utf8().trim_end_matches('.').to_string(),
                })
                .collect()),
            Err(e) if is_no_records(&e) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
        match self.inner.txt_lookup(name).await {
            Ok(l) => Ok(l
                .iter()
                .map(|t| {
                    t.txt_data()
                        .iter()
                        .map(|d| String::from_utf8_lossy(d).into_owned())
                        .collect::<Vec<_>>()
                        .join("")
                })
                .collect()),
            Err(e) if is_no_records(&e) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Where discovery starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryStart {
    /// `user@domain`: SRV/TXT for the domain, then `https://domain/.well-known/carddav`.
    Email(String),
    /// A server, context path or principal URL.
    Url(Url),
}

impl DiscoveryStart {
    /// Reads what a human typed: an email address or an `http(s)` URL.
    pub fn parse(input: &str) -> Result<Self, ProviderError> {
        if input.starts_with("http://") || input.starts_with("https://") {
            return Url::parse(input)
                .map(DiscoveryStart::Url)
                .map_err(|e| ProviderError::Unsupported(format!("bad URL {input}: {e}")));
        }
        match input.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                Ok(DiscoveryStart::Email(input.to_string()))
            }
            _ => Err(ProviderError::Unsupported(format!(
                "{input} is neither an email address nor an http(s) URL"
            ))),
        }
    }
}

/// An address book found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredBook {
    /// Its absolute URL.
    pub url: Url,
    /// What the server said about it.
    pub info: AddressBookInfo,
}

/// What discovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The URLs tried, in order, as context paths (for the report).
    pub tried: Vec<Url>,
    /// The principal.
    pub principal: Url,
    /// The address-book home set(s), absolute (possibly on another host).
    pub home_sets: Vec<Url>,
    /// The address books.
    pub books: Vec<DiscoveredBook>,
}

/// The context URLs to try for `start`, in order (RFC 6764 §6).
pub async fn context_urls(
    start: &DiscoveryStart,
    resolver: &dyn SrvResolver,
) -> Result<Vec<Url>, ProviderError> {
    let bad = |e: url::ParseError| ProviderError::Protocol(e.to_string());
    match start {
        DiscoveryStart::Url(url) => {
            let well_known = url.join(names::WELL_KNOWN_CARDDAV).map_err(bad)?;
            if url.path() == "/" || url.path().is_empty() {
                Ok(vec![well_known, url.clone()])
            } else {
                Ok(vec![url.clone(), well_known])
            }
        }
        DiscoveryStart::Email(email) => {
            let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
            let mut out = Vec::new();
            for (service, scheme) in [(names::SRV_CARDDAVS, "https"), (names::SRV_CARDDAV, "http")]
            {
                let name = format!("{service}.{domain}.");
                let mut records = resolver
                    .srv(&name)
                    .await
                    .map_err(ProviderError::Transport)?;
                records.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
                let records: Vec<_> = records
                    .into_iter()
                    .filter(|r| r.target != "." && !r.target.is_empty())
                    .collect();
                if records.is_empty() {
                    continue;
                }
                let path = resolver
                    .txt(&name)
                    .await
                    .map_err(ProviderError::Transport)?
                    .iter()
                    .find_map(|t| txt_path(t));
                for r in records {
                    let base =
                        Url::parse(&format!("{scheme}://{}:{}/", r.target, r.port)).map_err(bad)?;
                    match &path {
                        Some(p) => out.push(base.join(p).map_err(bad)?),
                        None => out.push(base.join(names::WELL_KNOWN_CARDDAV).map_err(bad)?),
                    }
                }
                break;
            }
            if out.is_empty() {
                let base = Url::parse(&format!("https://{domain}/")).map_err(bad)?;
                out.push(base.join(names::WELL_KNOWN_CARDDAV).map_err(bad)?);
            }
            Ok(out)
        }
    }
}

/// Runs discovery: context URL → `current-user-principal` → `addressbook-home-set` → books.
/// The client decides, per URL, whether credentials may be sent (see [`DavClient`]).
pub async fn discover(
    client: &DavClient,
    start: &DiscoveryStart,
    resolver: &dyn SrvResolver,
) -> Result<Discovery, ProviderError> {
    let tried = context_urls(start, resolver).await?;
    let mut last_err = None;
    let mut principal = None;
    for ctx in &tried {
        match client.propfind(ctx, &principal_request()).await {
            Ok(resp) if resp.status.is_success() => {
                let ms = resp.multistatus()?;
                if let Some(href) = parse_principal(&ms) {
                    principal = Some(
                        resp.url
                            .join(&href)
                            .map_err(|e| ProviderError::Protocol(e.to_string()))?,
                    );
                    break;
                }
                last_err = Some(ProviderError::Protocol(format!(
                    "{} names no current-user-principal",
                    resp.url
                )));
            }
            Ok(resp) => last_err = Some(resp.error()),
            Err(ProviderError::CredentialsRejected) => {
                return Err(ProviderError::CredentialsRejected)
            }
            Err(e) => last_err = Some(e),
        }
    }
    let Some(principal) = principal else {
        return Err(last_err.unwrap_or(ProviderError::NotFound));
    };
    let ms = client
        .propfind(&principal, &home_set_request())
        .await?
        .multistatus()?;
    let mut home_sets = Vec::new();
    for h in parse_home_set(&ms) {
        home_sets.push(
            principal
                .join(&h)
                .map_err(|e| ProviderError::Protocol(e.to_string()))?,
        );
    }
    if home_sets.is_empty() {
        return Err(ProviderError::Protocol(format!(
            "principal {principal} has no addressbook-home-set"
        )));
    }
    let mut books = Vec::new();
    for home in &home_sets {
        if !client.may_send_credentials(home) {
            tracing::warn!(%home, "home set on a host that does not get our credentials");
        }
        let resp = client.propfind(home, &addressbooks_request()).await?;
        let ms = resp.multistatus()?;
        for info in parse_addressbooks(&ms) {
            let url = resp
                .url
                .join(&info.href)
                .map_err(|e| ProviderError::Protocol(e.to_string()))?;
            books.push(DiscoveredBook { url, info });
        }
    }
    Ok(Discovery {
        tried,
        principal,
        home_sets,
        books,
    })
}

/// Reads one address book's properties (PROPFIND Depth 0 with the discovery properties).
pub async fn book_info(client: &DavClient, url: &Url) -> Result<AddressBookInfo, ProviderError> {
    let mut req = addressbooks_request();
    req.depth = crate::dav::propfind::Depth::Zero;
    let resp = client.propfind(url, &req).await?;
    let ms = resp.multistatus()?;
    parse_addressbooks(&ms)
        .into_iter()
        .next()
        .ok_or_else(|| ProviderError::Unsupported(format!("{url} is not an address book")))
}

/// A human-readable report of a discovery (what `cardbridge carddav discover` prints).
pub fn render(d: &Discovery) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "principal: {}", d.principal);
    for h in &d.home_sets {
        let _ = writeln!(s, "home set:  {h}");
    }
    let _ = writeln!(s, "address books: {}", d.books.len());
    for b in &d.books {
        let i = &b.info;
        let _ = writeln!(s, "- {}", b.url);
        let _ = writeln!(
            s,
            "    displayname: {}",
            i.displayname.as_deref().unwrap_or("-")
        );
        let mut rt = vec!["collection"];
        if i.resourcetype.addressbook {
            rt.push("addressbook");
        }
        let _ = writeln!(s, "    resourcetype: {}", rt.join(", "));
        let types: Vec<String> = i
            .supported_address_data
            .iter()
            .map(|t| format!("{} {}", t.content_type, t.version))
            .collect();
        let _ = writeln!(
            s,
            "    supported-address-data: {}",
            if types.is_empty() {
                "-".to_string()
            } else {
                types.join(", ")
            }
        );
        let _ = writeln!(s, "    getctag: {}", i.ctag.as_deref().unwrap_or("-"));
        let _ = writeln!(
            s,
            "    sync-token: {}",
            i.sync_token.as_deref().unwrap_or("-")
        );
        let _ = writeln!(
            s,
            "    sync-collection: {}",
            if i.supports_sync_collection() {
                "yes"
            } else {
                "no"
            }
        );
        let privs = match &i.privileges {
            None => "-".to_string(),
            Some(p) => p
                .iter()
                .map(|q| q.local.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        let _ = writeln!(s, "    current-user-privilege-set: {privs}");
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct FakeDns;

    #[async_trait]
    impl SrvResolver for FakeDns {
        async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>, String> {
            Ok(match name {
                "_carddavs._tcp.example.test." => vec![
                    SrvRecord {
                        priority: 10,
                        weight: 0,
                        port: 8443,
                        target: "b.example.test".into(),
                    },
                    SrvRecord {
                        priority: 0,
                        weight: 0,
                        port: 443,
                        target: "a.example.test".into(),
                    },
                ],
                "_carddav._tcp.plain.test." => vec![SrvRecord {
                    priority: 0,
                    weight: 0,
                    port: 5232,
                    target: "dav.plain.test".into(),
                }],
                _ => vec![],
            })
        }
        async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
            Ok(match name {
                "_carddavs._tcp.example.test." => vec!["path=/dav/".into()],
                _ => vec![],
            })
        }
    }

    #[tokio::test]
    async fn email_uses_srv_then_txt_path_by_priority() {
        let urls = context_urls(&DiscoveryStart::parse("me@example.test").unwrap(), &FakeDns)
            .await
            .unwrap();
        let urls: Vec<String> = urls.iter().map(Url::to_string).collect();
        assert_eq!(
            urls,
            [
                "https://a.example.test/dav/",
                "https://b.example.test:8443/dav/"
            ]
        );
    }

    #[tokio::test]
    async fn plain_srv_without_txt_uses_well_known() {
        let urls = context_urls(&DiscoveryStart::parse("me@plain.test").unwrap(), &FakeDns)
            .await
            .unwrap();
        assert_eq!(
            urls[0].as_str(),
            "http://dav.plain.test:5232/.well-known/carddav"
        );
    }

    #[tokio::test]
    async fn no_srv_falls_back_to_https_well_known() {
        let urls = context_urls(&DiscoveryStart::parse("me@nothing.test").unwrap(), &FakeDns)
            .await
            .unwrap();
        assert_eq!(urls[0].as_str(), "https://nothing.test/.well-known/carddav");
    }

    #[tokio::test]
    async fn url_root_tries_well_known_first() {
        let root = DiscoveryStart::parse("http://127.0.0.1:5232/").unwrap();
        let urls = context_urls(&root, &NoDns).await.unwrap();
        assert_eq!(
            urls[0].as_str(),
            "http://127.0.0.1:5232/.well-known/carddav"
        );
        assert_eq!(urls[1].as_str(), "http://127.0.0.1:5232/");
        assert!(DiscoveryStart::parse("not an address").is_err());
    }
}
