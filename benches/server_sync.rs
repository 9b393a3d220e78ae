//! CardDAV server benchmark: a client's initial full sync (sync-collection, then
//! addressbook-multiget in batches of 100) and a no-change sync against our server, Radicale
//! and Xandikos serving the same 10,000 cards, in one run. Our server runs in a child process
//! (this binary re-executed) so that its peak RSS (VmHWM) can be read from /proc.
//!
//! Run: `CARDBRIDGE_PEERS=… cargo bench --bench server_sync` (env `BENCH_CARDS` changes the
//! count). Prints a Markdown table for docs/BENCHMARKS.md.
#![allow(clippy::unwrap_used, dead_code)]

#[path = "../tests/server_support/mod.rs"]
mod server_support;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use base64::Engine as _;
use cardbridge::dav::multiget::AddressbookMultiget;
use cardbridge::dav::names;
use cardbridge::dav::sync_collection::SyncCollection;
use cardbridge::server::{app, AppState, ServerConfig};
use tower::ServiceExt;

fn cards() -> usize {
    std::env::var("BENCH_CARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn card(i: usize) -> String {
    format!(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:bench-{i}\r\nFN:Person {i} Example\r\nN:Example;Person {i};;;\r\nEMAIL;TYPE=work:person{i}@example.com\r\nTEL;TYPE=cell:+1 555 {:04}\r\nORG:Company {}\r\nTITLE:Engineer\r\nNOTE:Bench card number {i} with a little text to look like a real note.\r\nX-CUSTOM:{i}\r\nEND:VCARD\r\n",
        i % 10_000,
        i % 97
    )
}

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

/// Child mode: load the cards into our server, serve on loopback, print the port, run until
/// stdin closes.
fn child() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let crm = server_support::crm().await;
        crm.create_user(server_support::user("alice", "alicepw", None))
            .await
            .unwrap();
        let state = AppState::new(crm, ServerConfig::default());
        let router = app(state);
        let auth = basic("alice", "alicepw");
        for i in 0..cards() {
            let req = http::Request::put(format!("/dav/addressbooks/alice/persons/bench-{i}.vcf"))
                .header("Authorization", &auth)
                .header("Content-Type", "text/vcard")
                .body(Body::from(card(i)))
                .unwrap();
            let r = router.clone().oneshot(req).await.unwrap();
            assert_eq!(r.status(), http::StatusCode::CREATED);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("PORT {}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin().read_line(&mut s).unwrap_or(0) > 0 {}
        })
        .await
        .unwrap();
    });
}

struct Target {
    name: &'static str,
    collection: String,
    auth: Option<String>,
    pid: u32,
}

async fn send(client: &reqwest::Client, t: &Target, req: http::Request<String>) -> (u16, Vec<u8>) {
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
    if let Some(a) = &t.auth {
        rb = rb.header("Authorization", a);
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.bytes().await.unwrap().to_vec())
}

/// One initial sync; returns (elapsed, cards fetched, token).
async fn initial_sync(client: &reqwest::Client, t: &Target) -> (Duration, usize, String) {
    let start = Instant::now();
    let sc = SyncCollection::new(None, &[names::GETETAG]);
    let (s, body) = send(client, t, sc.build_request(&t.collection).unwrap()).await;
    assert_eq!(s, 207, "{}", t.name);
    let res = SyncCollection::parse_response(&body).unwrap();
    let base = reqwest::Url::parse(&t.collection).unwrap();
    let hrefs: Vec<String> = res.changed.iter().map(|c| c.href.clone()).collect();
    let mut fetched = 0;
    for batch in hrefs.chunks(100) {
        let mg = AddressbookMultiget::new(batch.to_vec());
        let (s, body) = send(client, t, mg.build_request(base.as_str()).unwrap()).await;
        assert_eq!(s, 207, "{}", t.name);
        fetched += mg.parse_response(&body).unwrap().cards.len();
    }
    (start.elapsed(), fetched, res.new_token.unwrap_or_default())
}

async fn no_change_sync(client: &reqwest::Client, t: &Target, token: &str) -> Duration {
    let start = Instant::now();
    let sc = SyncCollection::new(Some(token), &[names::GETETAG]);
    let (s, body) = send(client, t, sc.build_request(&t.collection).unwrap()).await;
    assert_eq!(s, 207, "{}", t.name);
    let res = SyncCollection::parse_response(&body).unwrap();
    assert!(
        res.changed.is_empty(),
        "{}: {} changed",
        t.name,
        res.changed.len()
    );
    start.elapsed()
}

fn vm_hwm_mb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    if std::env::var_os("CB_BENCH_CHILD").is_some() {
        return child();
    }
    // `cargo bench` passes --bench; `cargo test --benches` builds and runs it with no count.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let n = cards();
    eprintln!("loading {n} cards …");
    // Our server, in a child process.
    let t0 = Instant::now();
    let mut ours = Command::new(std::env::current_exe().unwrap())
        .env("CB_BENCH_CHILD", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(ours.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
    eprintln!("ours loaded in {:?}", t0.elapsed());

    // Radicale: the cards written into its collection folder (its filesystem storage reads them).
    let radicale = support::Radicale::start();
    let rbook = radicale.new_addressbook("contacts");
    let rdir = radicale.data_dir.join("collection-root/alice/contacts");
    assert!(rdir.is_dir(), "{}", rdir.display());
    for i in 0..n {
        std::fs::write(rdir.join(format!("bench-{i}.vcf")), card(i)).unwrap();
    }
    // Xandikos: the cards committed into its address book's git repository.
    let xandikos = support::Xandikos::start();
    let client = reqwest::Client::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Touch the address book so that --defaults creates it.
    rt.block_on(async {
        client
            .request(
                reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
                &xandikos.addressbook_url,
            )
            .header("Depth", "0")
            .header("Content-Type", "application/xml")
            .body("<propfind xmlns=\"DAV:\"><prop><getetag/></prop></propfind>")
            .send()
            .await
            .unwrap();
    });
    let xdir = xandikos.data_dir.join("alice/contacts/addressbook");
    assert!(xdir.join(".git").exists(), "{}", xdir.display());
    for i in 0..n {
        std::fs::write(xdir.join(format!("bench-{i}.vcf")), card(i)).unwrap();
    }
    git(&xdir, &["add", "-A"]);
    git(
        &xdir,
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=b@x",
            "commit",
            "-q",
            "-m",
            "bench cards",
        ],
    );

    let targets = [
        Target {
            name: "cardbridge",
            collection: format!("http://127.0.0.1:{port}/dav/addressbooks/alice/persons/"),
            auth: Some(basic("alice", "alicepw")),
            pid: ours.id(),
        },
        Target {
            name: "Radicale 3.9",
            collection: rbook.clone(),
            auth: Some(basic("alice", "alicepw")),
            pid: radicale.pid(),
        },
        Target {
            name: "Xandikos 0.4",
            collection: xandikos.addressbook_url.clone(),
            auth: None,
            pid: xandikos.pid(),
        },
    ];
    let mut rows = Vec::new();
    rt.block_on(async {
        for t in &targets {
            // One warm-up (servers build caches/indexes on first use), then measured runs.
            let (_, got, _) = initial_sync(&client, t).await;
            assert_eq!(got, n, "{} served {got} of {n} cards", t.name);
            let runs = if t.name == "cardbridge" { 5 } else { 2 };
            let mut init = Vec::new();
            let mut none = Vec::new();
            for _ in 0..runs {
                let (d, _, token) = initial_sync(&client, t).await;
                init.push(d);
                none.push(no_change_sync(&client, t, &token).await);
            }
            let (i, z) = (median(init), median(none));
            eprintln!("{}: initial {:?}, no-change {:?}", t.name, i, z);
            rows.push((t.name, i, z, vm_hwm_mb(t.pid)));
        }
    });
    drop(ours.stdin.take());
    let _ = ours.wait();
    let ours_init = rows[0].1.as_secs_f64();
    println!("| server | initial full sync | no-change sync | no-change / initial | ours faster by | peak RSS (VmHWM) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, i, z, rss) in &rows {
        println!(
            "| {name} | {:.1} ms | {:.2} ms | 1/{:.0} | {:.1}× | {} |",
            i.as_secs_f64() * 1e3,
            z.as_secs_f64() * 1e3,
            i.as_secs_f64() / z.as_secs_f64().max(1e-9),
            i.as_secs_f64() / ours_init,
            rss.map(|r| format!("{r:.0} MB"))
                .unwrap_or_else(|| "n/a".into())
        );
    }
}
