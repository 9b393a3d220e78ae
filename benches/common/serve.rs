//! Running the real `cardbridge serve` binary for the server benches (benches/server_sync.rs,
//! benches/scaling.rs): start it on a data directory, stop it with SIGTERM, fill it by PUT,
//! read its peak RSS from /proc, and the median/min/max helpers their tables print.
//!
//! Include it with `#[path = "common/serve.rs"] mod serve;` next to `corpus` and `support`
//! (`#[path = "../tests/support/mod.rs"] mod support;`).
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt as _;

use crate::corpus;
use crate::support;

/// The first-start admin's password the benches start the server with.
pub const ADMIN_PASSWORD: &str = "bench-admin-pw";

/// An HTTP Basic `Authorization` value.
pub fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

/// Sends one of the DAV layer's requests (`http::Request`, as its `build_request`s make them)
/// with `auth` as its `Authorization`; the status and the body.
pub async fn send(
    client: &reqwest::Client,
    auth: Option<&str>,
    req: http::Request<String>,
) -> (u16, Vec<u8>) {
    let (parts, body) = req.into_parts();
    let mut rb = client
        .request(
            reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap(),
            parts.uri.to_string(),
        )
        .body(body);
    for (k, v) in &parts.headers {
        rb = rb.header(k.as_str(), v.to_str().unwrap());
    }
    if let Some(a) = auth {
        rb = rb.header("Authorization", a);
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.bytes().await.unwrap().to_vec())
}

/// Starts `cardbridge serve` on `data` and waits until it listens.
pub fn serve(data: &std::path::Path, log: &std::path::Path) -> (support::ChildGuard, u16) {
    let port = support::free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cardbridge"));
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(data)
        .env("CARDBRIDGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("CARDBRIDGE_LOG", "warn")
        .env_remove("CARDBRIDGE_CONFIG")
        .env_remove("CARDBRIDGE_LISTEN")
        .env_remove("CARDBRIDGE_DATA");
    let mut guard = support::ChildGuard::spawn("cardbridge serve", cmd, log);
    guard
        .wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(60),
        )
        .unwrap();
    (guard, port)
}

/// SIGTERM, then wait (up to 60 s) until the process has exited (zombie or gone).
pub fn stop(guard: support::ChildGuard) {
    let pid = guard.id();
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status.is_empty() || status.contains("State:\tZ") {
            break;
        }
        assert!(Instant::now() < deadline, "cardbridge serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(guard);
}

/// PUTs every card into `collection` (named by `corpus::file_name`), 8 at a time; returns the
/// elapsed time.
pub async fn upload(
    client: &reqwest::Client,
    collection: &str,
    auth: &str,
    cards: &[String],
) -> Duration {
    let start = Instant::now();
    futures::stream::iter(cards.iter().enumerate())
        .map(|(i, card)| {
            let client = client.clone();
            async move {
                let r = client
                    .put(format!("{collection}{}", corpus::file_name(i)))
                    .header("Authorization", auth)
                    .header("Content-Type", "text/vcard; charset=utf-8")
                    .header("If-None-Match", "*")
                    .body(card.clone())
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                assert!(
                    status.is_success(),
                    "PUT card {i}: {status} {}",
                    r.text().await.unwrap_or_default()
                );
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    start.elapsed()
}

/// A process's peak RSS (VmHWM) in MB.
pub fn vm_hwm_mb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Median, min and max.
pub fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// "median ms (min–max)".
pub fn ms((med, min, max): (Duration, Duration, Duration)) -> String {
    format!(
        "{:.1} ms ({:.1}–{:.1})",
        med.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    )
}
