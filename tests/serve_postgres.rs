//! Two `cardbridge serve` processes with `store = "postgres"` (set through the environment) on
//! one fresh schema: the second node sees the admin the first one created (no second
//! one-time password), authenticates it, and both answer `/healthz`; no sled directory is
//! created. This is the config switch end to end; the multi-node scheduler is tested in
//! tests/scheduler_cluster.rs (docs/SCALING.md).
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

mod pg_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;

struct Node {
    child: Child,
    port: u16,
    before_listening: Vec<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn start(data: &std::path::Path, schema: &str, admin_password: Option<&str>) -> Node {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cardbridge"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .env_remove("CARDBRIDGE_ADMIN_PASSWORD")
        .env_remove("CARDBRIDGE_CONFIG")
        .env("CARDBRIDGE_STORE", "postgres")
        .env("CARDBRIDGE_POSTGRES_URL", pg_support::url())
        .env("CARDBRIDGE_POSTGRES_SCHEMA", schema)
        .env("CARDBRIDGE_POSTGRES_POOL_SIZE", "4")
        .env("CARDBRIDGE_SECRET_KEY", KEY)
        .env("CARDBRIDGE_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(p) = admin_password {
        cmd.env("CARDBRIDGE_ADMIN_PASSWORD", p);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut before_listening = Vec::new();
    loop {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "node exited early; stdout: {before_listening:?}");
        if line.contains("listening on") {
            break;
        }
        before_listening.push(line);
    }
    Node {
        child,
        port,
        before_listening,
    }
}

fn get(port: u16, path: &str, basic: Option<(&str, &str)>) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
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
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_nodes_share_one_postgres_schema() {
    pg_support::require_server().await;
    let schema = pg_support::TempSchema::new("serve");
    let dir = tempfile::tempdir().unwrap();
    let (d1, d2) = (dir.path().join("n1"), dir.path().join("n2"));
    let node1 = start(&d1, &schema, Some("first-node-pw"));
    let node2 = start(&d2, &schema, None);
    assert!(
        !node2
            .before_listening
            .iter()
            .any(|l| l.contains("one-time password")),
        "the second node must find the admin in PostgreSQL: {:?}",
        node2.before_listening
    );
    for n in [&node1, &node2] {
        assert_eq!(get(n.port, "/healthz", None), 200);
        assert_eq!(
            get(n.port, "/api/v1/me", Some(("admin", "first-node-pw"))),
            200
        );
        assert_eq!(get(n.port, "/api/v1/me", Some(("admin", "wrong"))), 401);
    }
    assert!(!d1.join("db").exists() && !d2.join("db").exists());
    drop(node1);
    drop(node2);
}
