//! `cardbridge serve` as a process: the built binary on a free loopback port with a temporary
//! data directory. First start creates the admin (generated one-time password printed once, or
//! `CARDBRIDGE_ADMIN_PASSWORD`) and the 0600 credentials key; `/healthz` answers; SIGTERM stops
//! it cleanly; a restart keeps the admin and the key and prints no password.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &std::path::Path, admin_password: Option<&str>) -> Server {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cardbridge"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .env_remove("CARDBRIDGE_ADMIN_PASSWORD")
        .env_remove("CARDBRIDGE_CONFIG")
        .env("CARDBRIDGE_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = admin_password {
        cmd.env("CARDBRIDGE_ADMIN_PASSWORD", p);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    Server {
        child,
        stdout,
        port,
    }
}

/// Reads stdout lines until the "listening" line; returns the lines before it.
fn until_listening(s: &mut Server) -> Vec<String> {
    let mut lines = vec![];
    loop {
        let mut line = String::new();
        let n = s.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "server exited early; stdout so far: {lines:?}");
        if line.contains("listening on") {
            assert!(line.contains(&format!("127.0.0.1:{}", s.port)), "{line}");
            return lines;
        }
        lines.push(line);
    }
}

fn http(port: u16, path: &str, basic: Option<(&str, &str)>) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot connect: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some((u, p)) = basic {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req.push_str(&format!("Authorization: Basic {b}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    stream.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

fn sigterm_and_wait(mut s: Server) -> (std::process::ExitStatus, String) {
    let pid = s.child.id().to_string();
    let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            let mut err = String::new();
            s.child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st, err);
        }
        assert!(
            Instant::now() < deadline,
            "did not stop within 40 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn first_start_prints_a_one_time_admin_password_and_restarts_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = start(&data, None);
    let before = until_listening(&mut s);
    let line = before
        .iter()
        .find(|l| l.contains("one-time password"))
        .unwrap_or_else(|| panic!("no password line in {before:?}"));
    assert!(line.contains("`admin`"), "{line}");
    let password = line.trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(password.len(), 24);

    let (st, body) = http(s.port, "/healthz", None);
    assert_eq!((st, body.trim()), (200, "ok"));
    let (st, body) = http(s.port, "/api/v1/me", Some(("admin", &password)));
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"is_admin\":true"), "{body}");
    let (st, _) = http(s.port, "/api/v1/me", Some(("admin", "wrong-password")));
    assert_eq!(st, 401);
    let (st, body) = http(s.port, "/metrics", None);
    assert_eq!(st, 200);
    assert!(body.contains("cardbridge_sync_runs_total"));

    let key = data.join("secret.key");
    let key_bytes = std::fs::read(&key).unwrap();
    assert_eq!(key_bytes.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let (status, stderr) = sigterm_and_wait(s);
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr}");
    assert!(
        !stderr.contains(&password),
        "the password never reaches the log"
    );
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.starts_with('{'), "JSON log lines: {line}");
    }

    // Restart: same admin, same key, no new password.
    let mut s = start(&data, Some("ignored-after-first-start"));
    let before = until_listening(&mut s);
    assert!(!before.iter().any(|l| l.contains("password")), "{before:?}");
    let (st, _) = http(s.port, "/api/v1/me", Some(("admin", &password)));
    assert_eq!(st, 200);
    assert_eq!(std::fs::read(&key).unwrap(), key_bytes);
    let (status, _) = sigterm_and_wait(s);
    assert!(status.success());
}

#[test]
fn admin_password_from_the_environment_is_used_and_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path(), Some("s3cret-admin-pw"));
    let before = until_listening(&mut s);
    assert!(
        !before.iter().any(|l| l.contains("s3cret-admin-pw")),
        "{before:?}"
    );
    let (st, body) = http(s.port, "/api/v1/me", Some(("admin", "s3cret-admin-pw")));
    assert_eq!(st, 200, "{body}");
    let (status, stderr) = sigterm_and_wait(s);
    assert!(status.success());
    assert!(!stderr.contains("s3cret-admin-pw"));
}

#[test]
fn a_bad_configuration_stops_the_start_with_what_to_fix() {
    let out = Command::new(env!("CARGO_BIN_EXE_cardbridge"))
        .args(["serve"])
        .env("CARDBRIDGE_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CARDBRIDGE_LISTEN"), "{err}");
}
