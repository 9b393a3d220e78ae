//! Helpers of the fault tests (tests/fault_kill.rs, tests/fault_providers.rs) and the README
//! walkthrough (tests/e2e_readme.rs): the real
//! `cardbridge serve` binary on a data directory (SIGKILLed on drop), a `/api/v1` client, and
//! Radicale storage filled directly on disk.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{self, Radicale};

pub const ADMIN_PASSWORD: &str = "correct-horse-battery";

/// The server process; SIGKILLed on drop (the test's own child, by its handle).
pub struct Serve {
    child: Child,
    pub base: String,
}

impl Serve {
    /// `kill -9`: no shutdown, no checkpoint.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM (graceful: running syncs checkpoint), then waits for a successful exit.
    pub fn stop(mut self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let code = self.child.wait().unwrap();
        assert!(code.success(), "serve exited with {code}");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(data: &Path) -> Serve {
    let port = support::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardbridge"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .env_remove("CARDBRIDGE_CONFIG")
        .env("CARDBRIDGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("CARDBRIDGE_ALLOW_PRIVATE_NETWORKS", "true")
        .env("CARDBRIDGE_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("cardbridge serve did not print its listening line");
        assert!(
            !line.contains("one-time password"),
            "the env password must be used: {line}"
        );
        if line.contains("listening on") || line.contains("listening (http)") {
            assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
            break;
        }
    }
    Serve {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    /// A client of `serve`'s API, as the admin.
    pub fn new(serve: &Serve) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: serve.base.clone(),
        }
    }
    /// Creates a CardDAV connection and sets it up (two-way, company-wide) on `book`; returns
    /// its id. Not started.
    pub async fn two_way_carddav(&self, server_url: &str, user: &str, pw: &str, book: &str) -> u64 {
        let conn = self
            .ok(
                "POST",
                "/connections",
                Some(json!({"provider": "carddav", "email": "alice@example.org",
                    "server_url": server_url, "username": user, "password": pw})),
            )
            .await;
        let id = conn["id"].as_u64().unwrap();
        self.ok(
            "PATCH",
            &format!("/connections/{id}/settings"),
            Some(
                json!({"sync_group": book, "direction": "two_way", "visibility": "entire_company"}),
            ),
        )
        .await;
        id
    }
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self
            .http
            .request(method.parse().unwrap(), &url)
            .basic_auth("admin", Some(ADMIN_PASSWORD));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, body).await;
        assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
        v["data"].clone()
    }
    pub async fn refresh(&self, id: u64) -> Value {
        let v = self
            .ok(
                "POST",
                &format!("/connections/{id}/refresh?wait=true"),
                None,
            )
            .await;
        assert_eq!(v["run"]["state"], "succeeded", "{v}");
        v["run"]["summary"].clone()
    }
    /// Every person, following `next_cursor`.
    pub async fn persons(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let url = format!("{}/api/v1/persons?limit=500{cursor}", self.base);
            let v: Value = self
                .http
                .get(&url)
                .basic_auth("admin", Some(ADMIN_PASSWORD))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            out.extend(v["data"].as_array().unwrap().iter().cloned());
            match v["additional_data"]["pagination"]["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return out,
            }
        }
    }
}

/// A realistic-enough card: non-ASCII names, a unique email and UID.
pub fn card(i: usize) -> String {
    const GIVEN: [&str; 6] = ["Zoë", "José", "Søren", "Anaïs", "Łukasz", "Ümit"];
    const FAMILY: [&str; 5] = ["Ng", "Müller", "Ørsted", "Dvořák", "O'Brien"];
    let g = GIVEN[i % GIVEN.len()];
    let f = FAMILY[i % FAMILY.len()];
    format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:fault-{i}\r\nN:{f};{g};;;\r\nFN:{g} {f} {i}\r\n\
         EMAIL;TYPE=INTERNET,WORK:card{i}@example.org\r\nTEL;TYPE=CELL:+1 202 555 {:04}\r\n\
         ORG:Acme\r\nTITLE:Engineer {i}\r\nEND:VCARD\r\n",
        i % 10_000
    )
}

/// Creates the address book `/<user>/<name>/` and writes `n` cards straight into Radicale's
/// storage folder (`collection-root/<user>/<name>/c<i>.vcf`), without PUTs. Returns the book
/// URL and its folder.
pub fn filled_book(r: &Radicale, name: &str, n: usize) -> (String, PathBuf) {
    let url = r.new_addressbook(name);
    let dir = r.data_dir.join("collection-root").join(&r.user).join(name);
    for i in 0..n {
        std::fs::write(dir.join(format!("c{i}.vcf")), card(i)).unwrap();
    }
    (url, dir)
}

/// The `.vcf` files of a book folder.
pub fn vcf_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map_while(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "vcf"))
        .collect()
}
