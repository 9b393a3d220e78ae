//! Shared integration-test helpers: the real CardDAV peers (Radicale, Xandikos) started on free
//! loopback ports as drop guards, paths to the peer tools (vdirsyncer, khard, vdirsyncer's own
//! storage suite), and a tiny raw HTTP/1.1 client so tests can poke a peer without extra crates.
//!
//! Use it from an integration test with `mod support;`. The peers come from
//! `$CARDBRIDGE_PEERS` (default `<repo>/target/peers`), which `scripts/provision-peers` fills with
//! pinned versions; when it has not run yet, the first helper that needs a peer runs it (once
//! per test binary; the script itself serializes concurrent runs with a file lock). See
//! `docs/TESTING.md`.
//!
//! Everything here panics with a message on failure: it is test scaffolding, and a panic is how
//! a test fails.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tempfile::TempDir;

/// How long a freshly started peer may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Read/write timeout of one raw HTTP request, so a hung peer fails the test instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts to start a peer (a free port can be taken by someone else before the peer binds it).
const START_ATTEMPTS: usize = 3;

// ---------------------------------------------------------------------------------------------
// Provisioning and tool paths
// ---------------------------------------------------------------------------------------------

/// The repository root (where `Cargo.toml` and `scripts/` are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The peers directory: `$CARDBRIDGE_PEERS`, else `<repo>/target/peers`. Not provisioned yet
/// necessarily; see [`peers`].
pub fn peers_dir() -> PathBuf {
    match std::env::var_os("CARDBRIDGE_PEERS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root().join("target").join("peers"),
    }
}

/// The provisioned peers directory. Runs `scripts/provision-peers` once per test binary when the
/// venv or its stamp is missing; panics with the script's output if provisioning fails.
pub fn peers() -> &'static Path {
    static PEERS: OnceLock<PathBuf> = OnceLock::new();
    PEERS.get_or_init(|| {
        let dir = peers_dir();
        let ready = dir.join(".stamp").is_file()
            && ["radicale", "xandikos", "vdirsyncer", "khard"]
                .iter()
                .all(|b| dir.join("venv/bin").join(b).is_file());
        if !ready {
            let script = repo_root().join("scripts/provision-peers");
            let out = Command::new("bash")
                .arg(&script)
                .env("CARDBRIDGE_PEERS", &dir)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(
                out.status.success(),
                "{} failed ({}):\n{}{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

/// A program in the peers venv (`radicale`, `xandikos`, `vdirsyncer`, `khard`, `python`, …).
pub fn venv_bin(name: &str) -> PathBuf {
    let path = peers().join("venv/bin").join(name);
    assert!(path.is_file(), "{} is not provisioned", path.display());
    path
}

/// vdirsyncer 0.21.0.
pub fn vdirsyncer() -> PathBuf {
    venv_bin("vdirsyncer")
}

/// khard 0.22.0.
pub fn khard() -> PathBuf {
    venv_bin("khard")
}

/// The unpacked vdirsyncer 0.21.0 sdist (with `tests/`).
pub fn vdirsyncer_src() -> PathBuf {
    peers().join("vdirsyncer-src")
}

/// A ready-to-run command for vdirsyncer's own CardDAV storage suite
/// (`tests/storage/dav/test_carddav.py` from the 0.21.0 sdist) against the running server at
/// `url` (discovery starts there; each test creates and deletes its own address book).
/// Add `-k EXPR` or other pytest arguments before running. Exit status 0 means every selected
/// test passed.
pub fn vdirsyncer_suite(url: &str, auth: Option<(&str, &str)>) -> Command {
    let src = vdirsyncer_src();
    let mut cmd = Command::new(venv_bin("python"));
    cmd.current_dir(&src)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-cov",
            "tests/storage/dav/test_carddav.py",
        ])
        .env("DAV_SERVER", "live")
        .env("VDIRSYNCER_LIVE_URL", url)
        .env("DETERMINISTIC_TESTS", "true")
        .env_remove("VDIRSYNCER_LIVE_USER")
        .env_remove("VDIRSYNCER_LIVE_PASSWORD");
    if let Some((user, password)) = auth {
        cmd.env("VDIRSYNCER_LIVE_USER", user)
            .env("VDIRSYNCER_LIVE_PASSWORD", password);
    }
    cmd
}

// ---------------------------------------------------------------------------------------------
// Ports and processes
// ---------------------------------------------------------------------------------------------

/// A loopback port that was free a moment ago (bind `127.0.0.1:0`, read the port, drop), and
/// that this process has not handed out before: tests run on parallel threads, and two peers
/// given the same port would race for it (one fails to bind, and the readiness probe would see
/// the other one listening).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// Whether process `pid` holds the socket listening on `port` (Linux: the listening socket's
/// inode in `/proc/net/tcp` is one of the process's open files). `None` when `/proc` cannot tell.
fn listens_on(pid: u32, port: u16) -> Option<bool> {
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    let wanted = format!(":{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // cols: sl local_address rem_address st ... inode (index 9); 0A is LISTEN.
            (cols.len() > 9 && cols[1].ends_with(&wanted) && cols[3] == "0A")
                .then(|| format!("socket:[{}]", cols[9]))
        })
        .collect();
    if inodes.is_empty() {
        return Some(false);
    }
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .map(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
            .unwrap_or(false)
    }))
}

/// A child process that is killed (and reaped) when the guard drops.
pub struct ChildGuard {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> ChildGuard {
        let out = fs::File::create(log).expect("create peer log");
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ChildGuard {
            child,
            name,
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What the process wrote so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `addr` accepts TCP connections. `Err` (with the log) if the process exits or
    /// `timeout` passes first.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                // Someone listens; make sure it is our child and not another test's server that
                // was given the same port (then our child fails to bind and exits).
                match listens_on(self.child.id(), addr.port()) {
                    Some(false) => {}
                    Some(true) | None => return Ok(()),
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before listening on {addr}:\n{}",
                    self.name,
                    self.log()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not listen on {addr} within {timeout:?}:\n{}",
                    self.name,
                    self.log()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server on a fresh free port, retrying with another port when it does not come up
/// (the port may have been taken between [`free_port`] and the server's bind).
fn start_on_free_port(
    name: &'static str,
    mut spawn: impl FnMut(u16) -> ChildGuard,
) -> (ChildGuard, u16) {
    let mut errors = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let mut guard = spawn(port);
        match guard.wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), START_TIMEOUT) {
            Ok(()) => return (guard, port),
            Err(e) => errors.push(e),
        }
    }
    panic!(
        "{name} failed to start {START_ATTEMPTS} times:\n{}",
        errors.join("\n---\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------------------------

/// Something that speaks DAV over plain HTTP on loopback.
pub trait DavPeer {
    /// Root URL, e.g. `http://127.0.0.1:41234/` (with trailing slash).
    fn root_url(&self) -> &str;
    /// Basic credentials, if the peer wants them.
    fn auth(&self) -> Option<(&str, &str)>;

    /// One request to `url` with this peer's credentials. `url` may be absolute or a path.
    fn request(&self, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let url = self.resolve(url);
        http_request(method, &url, self.auth(), headers, body)
    }

    /// Absolute URL for a path (absolute URLs pass through).
    fn resolve(&self, url: &str) -> String {
        if url.starts_with("http://") {
            url.to_string()
        } else {
            format!(
                "{}/{}",
                self.root_url().trim_end_matches('/'),
                url.trim_start_matches('/')
            )
        }
    }

    /// Creates an address book at `path` (e.g. `/alice/contacts/`) with an extended MKCOL
    /// (RFC 5689) and returns its absolute URL. Panics unless the peer answers 201.
    fn create_addressbook(&self, path: &str, displayname: &str) -> String {
        let mut path = path.to_string();
        if !path.ends_with('/') {
            path.push('/');
        }
        let body = format!(
            concat!(
                r#"<?xml version="1.0" encoding="utf-8"?>"#,
                r#"<d:mkcol xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">"#,
                "<d:set><d:prop><d:resourcetype><d:collection/><card:addressbook/></d:resourcetype>",
                "<d:displayname>{}</d:displayname></d:prop></d:set></d:mkcol>"
            ),
            xml_escape(displayname)
        );
        let url = self.resolve(&path);
        let resp = self.request(
            "MKCOL",
            &url,
            &[("Content-Type", "application/xml; charset=utf-8")],
            body.as_bytes(),
        );
        assert_eq!(
            resp.status,
            201,
            "MKCOL {url} answered {}: {}",
            resp.status,
            resp.text()
        );
        url
    }
}

/// A running Radicale 3.9 on a free loopback port: htpasswd (plain) auth, `owner_only` rights,
/// no login delay, storage in a temporary directory. Killed on drop.
pub struct Radicale {
    /// Root URL, `http://127.0.0.1:PORT/`.
    pub url: String,
    /// The first user (`alice`).
    pub user: String,
    /// Its password (`alicepw`).
    pub password: String,
    /// Radicale's `filesystem_folder`.
    pub data_dir: PathBuf,
    /// The port.
    pub port: u16,
    process: ChildGuard,
    // Dropped after `process` (fields drop in declaration order): the server dies first.
    _dir: TempDir,
}

impl Radicale {
    /// Starts Radicale with the single user `alice` / `alicepw`.
    pub fn start() -> Radicale {
        Radicale::start_with_users(&[("alice", "alicepw")])
    }

    /// Starts Radicale with these users (plain htpasswd). The first one fills `user`/`password`.
    pub fn start_with_users(users: &[(&str, &str)]) -> Radicale {
        assert!(!users.is_empty(), "Radicale needs at least one user");
        let bin = venv_bin("radicale");
        let dir = tempfile::Builder::new()
            .prefix("radicale-")
            .tempdir()
            .expect("tempdir");
        let data_dir = dir.path().join("data");
        let htpasswd = dir.path().join("users");
        let lines: String = users.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
        fs::write(&htpasswd, lines).expect("write htpasswd");

        let (process, port) = start_on_free_port("radicale", |port| {
            let config = dir.path().join("config");
            fs::write(
                &config,
                format!(
                    "[server]\nhosts = 127.0.0.1:{port}\n\
                     [auth]\ntype = htpasswd\nhtpasswd_filename = {}\n\
                     htpasswd_encryption = plain\ndelay = 0\n\
                     [storage]\nfilesystem_folder = {}\n\
                     [rights]\ntype = owner_only\n\
                     [web]\ntype = none\n\
                     [logging]\nlevel = warning\n",
                    htpasswd.display(),
                    data_dir.display()
                ),
            )
            .expect("write radicale config");
            let mut cmd = Command::new(&bin);
            cmd.arg("--config").arg(&config);
            ChildGuard::spawn("radicale", cmd, &dir.path().join("radicale.log"))
        });
        Radicale {
            url: format!("http://127.0.0.1:{port}/"),
            user: users[0].0.to_string(),
            password: users[0].1.to_string(),
            data_dir,
            port,
            process,
            _dir: dir,
        }
    }

    /// The principal collection of the first user, e.g. `http://127.0.0.1:PORT/alice/`.
    pub fn principal_url(&self) -> String {
        format!("{}{}/", self.url, self.user)
    }

    /// Creates `/<user>/<name>/` as an address book and returns its URL.
    pub fn new_addressbook(&self, name: &str) -> String {
        let path = format!("/{}/{}/", self.user, name);
        self.create_addressbook(&path, name)
    }

    /// What Radicale logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Radicale's process id (e.g. to `kill -9` it in a fault test).
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

impl DavPeer for Radicale {
    fn root_url(&self) -> &str {
        &self.url
    }
    fn auth(&self) -> Option<(&str, &str)> {
        Some((&self.user, &self.password))
    }
}

/// A running Xandikos 0.4 on a free loopback port: no auth, `--defaults`, current user principal
/// `/alice/`, so the address book `/alice/contacts/addressbook/` exists. Killed on drop.
/// Xandikos answers 415 to PROPFIND/REPORT without a `Content-Type` header.
pub struct Xandikos {
    /// Root URL, `http://127.0.0.1:PORT/`.
    pub url: String,
    /// `http://127.0.0.1:PORT/alice/contacts/addressbook/`.
    pub addressbook_url: String,
    /// The directory Xandikos serves (a git repository per collection).
    pub data_dir: PathBuf,
    /// The port.
    pub port: u16,
    process: ChildGuard,
    _dir: TempDir,
}

/// The principal path Xandikos is started with.
pub const XANDIKOS_PRINCIPAL: &str = "/alice/";

impl Xandikos {
    /// Starts Xandikos.
    pub fn start() -> Xandikos {
        let bin = venv_bin("xandikos");
        let dir = tempfile::Builder::new()
            .prefix("xandikos-")
            .tempdir()
            .expect("tempdir");
        let data_dir = dir.path().join("data");
        let state_dir = dir.path().join("state");
        let (process, port) = start_on_free_port("xandikos", |port| {
            let mut cmd = Command::new(&bin);
            cmd.arg("serve")
                .arg("--defaults")
                .arg("--no-detect-systemd")
                .arg("-d")
                .arg(&data_dir)
                .arg("--state-dir")
                .arg(&state_dir)
                .args(["-l", "127.0.0.1", "-p", &port.to_string()])
                .args(["--current-user-principal", XANDIKOS_PRINCIPAL]);
            ChildGuard::spawn("xandikos", cmd, &dir.path().join("xandikos.log"))
        });
        let url = format!("http://127.0.0.1:{port}/");
        Xandikos {
            addressbook_url: format!("{url}alice/contacts/addressbook/"),
            url,
            data_dir,
            port,
            process,
            _dir: dir,
        }
    }

    /// What Xandikos logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Xandikos's process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

impl DavPeer for Xandikos {
    fn root_url(&self) -> &str {
        &self.url
    }
    fn auth(&self) -> Option<(&str, &str)> {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------------------------

/// An HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body, de-chunked (no content coding is requested, so none is undone).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request over a fresh TCP connection (`Connection: close`) to an `http://`
/// URL and reads the whole response. `Host`, `Content-Length`, `Connection` and (with `auth`)
/// `Authorization: Basic` are added. Panics on I/O errors and malformed responses.
pub fn http_request(
    method: &str,
    url: &str,
    auth: Option<(&str, &str)>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("bad URL {url}: {e}"));
    assert_eq!(parsed.scheme(), "http", "only http:// is supported: {url}");
    let host = parsed.host_str().expect("URL has a host");
    let port = parsed.port_or_known_default().expect("URL has a port");
    let target = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };

    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some((user, password)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        head.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));

    let mut stream = TcpStream::connect((host, port))
        .unwrap_or_else(|e| panic!("{method} {url}: connect failed: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .unwrap_or_else(|e| panic!("{method} {url}: write failed: {e}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {url}: read failed: {e}"));
    parse_response(&raw, method == "HEAD")
        .unwrap_or_else(|e| panic!("{method} {url}: bad response ({e}): {raw:?}"))
}

/// Parses a complete raw HTTP/1.1 response (`head_only`: the request was HEAD, so no body).
pub fn parse_response(raw: &[u8], head_only: bool) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of header")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| e.to_string())?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    let chunked = resp
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    resp.body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = resp.header("Content-Length") {
        let len: usize = len.parse().map_err(|_| "bad Content-Length")?;
        rest.get(..len)
            .ok_or("body shorter than Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(resp)
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("unterminated chunk size")?;
        let size_line = std::str::from_utf8(&data[..eol]).map_err(|e| e.to_string())?;
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_line:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("truncated chunk")?);
        data = data.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

/// Escapes text for an XML element body.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
