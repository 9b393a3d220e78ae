//! The web page, end to end in a real browser: headless Debian Chromium driven through
//! ChromeDriver (WebDriver, with `fantoccini`) against the real `cardbridge serve` binary on a
//! fresh data directory and a free loopback port, syncing a live Radicale.
//!
//! The flow is the article's, as a user clicks it: log in (a wrong password first); Add New
//! Account with CardDAV, the email, Radicale's URL and credentials; pick the address book from the
//! dropdown the account fills; two-way; a visibility from the plan's options (exactly those);
//! see the field-mapping preview with the real cards; Start Syncing; the per-connection
//! dashboard follows the first run and shows the totals. A card edited on Radicale, then
//! Refresh: the page shows the run's progress until it ends and counts the update. The
//! account's password changes on Radicale: Refresh fails, the dashboard shows "needs
//! re-authorization" with its fix, and the new password typed there fixes it. Later, the
//! admin moves the company to another plan while the settings page is open: saving the old
//! visibility is refused and the page shows (and offers) the allowed ones; picking one of them
//! and one-way saves, and the dashboard shows the new settings.
//!
//! Every wait polls the page's content with a timeout; nothing asserts on timing. Each page is
//! saved as a screenshot: into `docs/screenshots/` with `UPDATE_EXPECT=1`, else under Cargo's
//! target tmp dir. Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`scripts/test` runs
//! `scripts/provision-browser`; this test runs it too when they are missing). See
//! docs/TESTING.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use serde_json::{json, Value};
use support::{ChildGuard, DavPeer, Radicale};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ADMIN_PASSWORD: &str = "correct-horse-battery";
/// How long any one thing the page should come to show may take.
const WAIT: Duration = Duration::from_secs(90);

/// Installs Chromium and ChromeDriver with `scripts/provision-browser` when either is missing.
fn ensure_browser() {
    if Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file() {
        return;
    }
    // The script's own output (apt's log on failure) goes straight to the terminal.
    let script = support::repo_root().join("scripts/provision-browser");
    let status = Command::new("bash").arg(&script).status().unwrap();
    assert!(status.success(), "{} failed ({status})", script.display());
}

/// Starts a process on a fresh free port and waits until it listens there.
fn start(name: &'static str, log: &Path, make: impl Fn(u16) -> Command) -> (ChildGuard, u16) {
    let port = support::free_port();
    let mut child = ChildGuard::spawn(name, make(port), log);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    child
        .wait_for_port(addr, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    (child, port)
}

/// A vCard 3.0 as Apple Contacts would write it.
fn card(uid: &str, given: &str, family: &str, email: &str, title: &str) -> String {
    format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nN:{family};{given};;;\r\nFN:{given} {family}\r\n\
         EMAIL;TYPE=INTERNET,WORK:{email}\r\nTEL;TYPE=CELL:+1 202 555 0100\r\nORG:Acme\r\n\
         TITLE:{title}\r\nEND:VCARD\r\n"
    )
}

fn put_card(r: &Radicale, url: &str, body: &str) {
    let resp = r.request(
        "PUT",
        url,
        &[("Content-Type", "text/vcard; charset=utf-8")],
        body.as_bytes(),
    );
    assert!(
        (200..300).contains(&resp.status),
        "PUT {url}: {}",
        resp.status
    );
}

/// One API call as the admin (for what the browser user does not do: the admin's plan change).
fn admin_api(base: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let resp = support::http_request(
        method,
        &format!("{base}/api/v1{path}"),
        Some(("admin", ADMIN_PASSWORD)),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert!(
        (200..300).contains(&resp.status),
        "{method} {path}: {} {}",
        resp.status,
        resp.text()
    );
    serde_json::from_slice::<Value>(&resp.body).unwrap()["data"].clone()
}

/// Where screenshots go: the committed ones with `UPDATE_EXPECT=1`, else a scratch directory.
fn screenshot_dir() -> PathBuf {
    let dir = if std::env::var("UPDATE_EXPECT").as_deref() == Ok("1") {
        support::repo_root().join("docs/screenshots")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Page<'a> {
    c: &'a Client,
    base: String,
    shots: PathBuf,
}

impl Page<'_> {
    async fn goto(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// The text of the first element matching `css` ("" while there is none).
    async fn text(&self, css: &str) -> String {
        match self.c.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Polls until `ready` holds for the text of `css`; panics with the last text and the page.
    async fn wait_text(&self, css: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let t = self.text(css).await;
            if ready(&t) {
                return t;
            }
            if Instant::now() > deadline {
                let body = self.text("body").await;
                panic!("waited {WAIT:?} for {what} in `{css}`; it shows {t:?}; the page:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls until the current URL's path (and query) satisfies `ready`; returns it.
    async fn wait_url(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let u = self.c.current_url().await.unwrap();
            let pq = match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            };
            if ready(&pq) {
                return pq;
            }
            assert!(Instant::now() < deadline, "waited for {what}; at {u}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.c.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn select(&self, css: &str, value: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap();
    }

    /// The values of a `<select>`'s options, read in one script: the page may re-render the
    /// options between a lookup and a read of each (regression: a stale element reference
    /// failed the test while the dropdown was being filled).
    async fn options(&self, css: &str) -> Vec<String> {
        let v = self
            .c
            .execute(
                "return Array.from(document.querySelectorAll(arguments[0])).map(o => o.value);",
                vec![json!(format!("{css} option"))],
            )
            .await
            .unwrap();
        serde_json::from_value(v).unwrap()
    }

    /// Saves the whole page (the window grown to its height) as `<name>.png`.
    async fn shot(&self, name: &str) {
        // Twice: the first resize can change the layout (the scroll bar goes away).
        for _ in 0..2 {
            let v = self
                .c
                .execute(
                    "return [Math.ceil(document.querySelector('main').getBoundingClientRect().bottom + window.scrollY) + 24,
                             window.outerHeight - window.innerHeight];",
                    vec![],
                )
                .await
                .unwrap();
            let page_h = v[0].as_u64().unwrap_or(900) as u32;
            let chrome_h = v[1].as_u64().unwrap_or(0) as u32;
            self.c
                .set_window_size(1100, (page_h + chrome_h).clamp(400, 3000))
                .await
                .unwrap();
        }
        let png = self.c.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
        self.c.set_window_size(1100, 900).await.unwrap();
    }

    /// Records every text `#msg` shows from now on (progress lines go by faster than a poll).
    async fn record_msg(&self) {
        self.c
            .execute(
                "window.__msgs = []; const m = document.getElementById('msg');
                 new MutationObserver(() => window.__msgs.push(m.textContent))
                   .observe(m, {childList: true, characterData: true, subtree: true});",
                vec![],
            )
            .await
            .unwrap();
    }

    async fn recorded_msgs(&self) -> Vec<String> {
        let v = self
            .c
            .execute("return window.__msgs;", vec![])
            .await
            .unwrap();
        serde_json::from_value(v).unwrap()
    }
}

/// Runs `f`, then always ends the browser session (so no Chromium outlives a failed test), then
/// passes on `f`'s panic.
async fn with_session<F: Future<Output = ()>>(client: &Client, f: F) {
    let result = AssertUnwindSafe(f).catch_unwind().await;
    let _ = client.clone().close().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_connects_and_syncs_a_radicale_address_book() {
    ensure_browser();
    let tmp = tempfile::Builder::new()
        .prefix("cardbridge-browser-")
        .tempdir()
        .unwrap();

    // A live Radicale with three cards.
    let radicale = Radicale::start();
    let book = radicale.new_addressbook("contacts");
    for (file, uid, given, family, title) in [
        ("ann.vcf", "ann-1", "Ann", "Lee", "Engineer"),
        ("bob.vcf", "bob-1", "Bob", "Roe", "Buyer"),
        ("cara.vcf", "cara-1", "Cara", "Diaz", "Sales"),
    ] {
        let email = format!("{}@example.org", given.to_lowercase());
        put_card(
            &radicale,
            &format!("{book}{file}"),
            &card(uid, given, family, &email, title),
        );
    }

    // The real binary, as the README runs it.
    let data = tmp.path().join("data");
    let (_serve, port) = start("cardbridge serve", &tmp.path().join("serve.log"), |port| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cardbridge"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(&data)
            .env_remove("CARDBRIDGE_CONFIG")
            .env("CARDBRIDGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("CARDBRIDGE_ALLOW_PRIVATE_NETWORKS", "true");
        cmd
    });
    let base = format!("http://127.0.0.1:{port}");

    // ChromeDriver, and a headless Chromium with the flags this machine needs and its own
    // fresh profile.
    let (_driver, driver_port) = start("chromedriver", &tmp.path().join("chromedriver.log"), |p| {
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={p}"));
        cmd
    });
    let profile = tmp.path().join("chromium-profile");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1100,900", "--lang=en-US",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}"));
    let page = Page {
        c: &client,
        base: base.clone(),
        shots: screenshot_dir(),
    };
    with_session(&client, flow(&page, &radicale, &book)).await;
}

async fn flow(page: &Page<'_>, radicale: &Radicale, book: &str) {
    // --- Log in: a wrong password is refused, the right one lands on the connections list.
    page.goto("/").await;
    page.wait_url("the login page", |u| u == "/login").await;
    page.fill("#login", "admin").await;
    page.shot("login").await;
    page.fill("#password", "not-the-password").await;
    page.click("button[type=submit]").await;
    page.wait_text("main", "the refusal", |t| {
        t.contains("Wrong login or password")
    })
    .await;
    page.fill("#login", "admin").await;
    page.fill("#password", ADMIN_PASSWORD).await;
    page.click("button[type=submit]").await;
    page.wait_url("the connections list", |u| u == "/connections")
        .await;
    page.wait_text("main", "the empty list", |t| {
        t.contains("No address book connected yet")
    })
    .await;

    // --- Add New Account: CardDAV, the email, Radicale's URL and credentials.
    page.click("#add").await;
    page.wait_url("Add New Account", |u| u == "/connections/new")
        .await;
    page.select("#provider", "carddav").await;
    page.fill("#email", "alice@example.org").await;
    page.fill("#server_url", &radicale.url).await;
    page.fill("#username", &radicale.user).await;
    page.fill("#password", &radicale.password).await;
    page.shot("add-account").await;
    page.click("#next").await;
    let settings_url = page
        .wait_url("the sync settings", |u| {
            u.starts_with("/connections/") && u.ends_with("/settings")
        })
        .await;
    let id: u64 = settings_url
        .trim_start_matches("/connections/")
        .trim_end_matches("/settings")
        .parse()
        .unwrap();
    page.wait_text("h1", "the setup step", |t| t.contains("Add New Account"))
        .await;

    // The sync-group dropdown is filled from the account: Radicale's address book is there.
    let deadline = Instant::now() + WAIT;
    while !page.options("#group").await.iter().any(|v| v == book) {
        assert!(
            Instant::now() < deadline,
            "{book} never appeared in the sync-group dropdown: {:?} / {}",
            page.options("#group").await,
            page.text("#gmsg").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    page.select("#group", book).await;
    page.click("input[name=direction][value=two_way]").await;
    // The visibility dropdown offers exactly the plan's options (a new company is on silver).
    assert_eq!(
        page.options("#visibility").await,
        ["owner_followers", "entire_company"]
    );
    page.select("#visibility", "entire_company").await;

    // The field-mapping preview: the mapping table and the account's real cards.
    page.click("#preview").await;
    page.wait_text("#mapping", "the preview's samples", |t| {
        ["Ann Lee", "Bob Roe", "Cara Diaz", "ann@example.org"]
            .iter()
            .all(|n| t.contains(n))
    })
    .await;
    let mapping = page.text("#mapping-table").await;
    assert!(
        mapping.contains("CRM field") && mapping.to_lowercase().contains("email"),
        "{mapping}"
    );
    page.shot("mapping-preview").await;

    // --- Start Syncing: the dashboard follows the first run and shows the totals.
    page.click("#start").await;
    page.wait_url("the dashboard", |u| {
        u.starts_with(&format!("/connections/{id}?run="))
    })
    .await;
    page.wait_text("#msg", "the first run's end", |t| t.contains("succeeded"))
        .await;
    page.wait_text("#total", "3 contacts in sync", |t| t == "3")
        .await;
    assert_eq!(page.text("#added").await, "3");
    let head = page.text("main p").await;
    assert!(
        head.contains("contacts") && head.contains("two-way") && head.contains("Entire company"),
        "{head}"
    );

    // --- A card edited on Radicale; Refresh shows the run's progress until it ends.
    put_card(
        radicale,
        &format!("{book}bob.vcf"),
        &card("bob-1", "Bob", "Roe", "bob@example.org", "Head Buyer"),
    );
    page.goto(&format!("/connections/{id}")).await;
    page.wait_text("#total", "the figures", |t| t == "3").await;
    page.record_msg().await;
    page.click("#refresh").await;
    let done = page
        .wait_text("#msg", "the refresh's end", |t| {
            t.contains("succeeded") || t.contains("failed")
        })
        .await;
    assert!(
        done.contains("succeeded") && done.contains("0 added, 1 updated, 0 deleted"),
        "{done}"
    );
    // The run's counts from the engine: items handled and pages pulled (while it runs the
    // same counts show as they grow; a run this small may end before the page polls).
    assert!(
        done.contains(" items in ") && done.contains(" pages)"),
        "{done}"
    );
    let seen = page.recorded_msgs().await;
    assert!(
        seen.first()
            .is_some_and(|m| m.starts_with("Run ") && m.contains("queued")),
        "the run's progress is shown from its start: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&done), "{seen:?}");
    page.wait_text("#updated", "the update counted", |t| t == "1")
        .await;
    let periods = page.text("#periods").await;
    assert!(
        periods.starts_with("Last 7 days: 3 added, 1 updated"),
        "{periods}"
    );
    assert_eq!(page.text("#total").await, "3");
    assert_eq!(page.text("#added").await, "0");
    let last = page.text("#last").await;
    assert!(last.contains("succeeded"), "{last}");
    page.shot("dashboard").await;

    // --- The account's password changes at the provider: the next run is refused, the page
    // shows "needs re-authorization" with its fix, and the new password from the page fixes it.
    let htpasswd = radicale.data_dir.parent().unwrap().join("users");
    std::fs::write(&htpasswd, "alice:changed-pw\n").unwrap();
    page.click("#refresh").await;
    page.wait_text("#msg", "the refused run", |t| t.contains("failed"))
        .await;
    page.goto(&format!("/connections/{id}")).await;
    let reauth = page
        .wait_text("#reauth", "the re-authorization card", |t| {
            t.contains("Needs re-authorization")
        })
        .await;
    assert!(reauth.contains("Fix:"), "{reauth}");
    page.shot("dashboard-reauthorization").await;
    page.fill("#newpw", "changed-pw").await;
    page.click("#reconnect").await;
    page.wait_text("main", "the card gone", |t| {
        !t.contains("Needs re-authorization") && t.contains("contacts in sync")
    })
    .await;
    page.click("#refresh").await;
    page.wait_text("#msg", "a run with the new password", |t| {
        t.contains("succeeded")
    })
    .await;

    // --- Settings later. The admin moves the company to platinum while the page is open.
    page.click("a[href$='/settings']").await;
    page.wait_url("the settings", |u| {
        u == format!("/connections/{id}/settings")
    })
    .await;
    page.wait_text("h1", "the settings page", |t| t.contains("settings"))
        .await;
    assert_eq!(
        page.options("#visibility").await,
        ["owner_followers", "entire_company"]
    );
    admin_api(
        &page.base,
        "PUT",
        "/admin/company",
        Some(json!({"plan": "platinum"})),
    );
    // Saving a visibility the plan no longer offers is refused with the allowed ones listed,
    // and the dropdown now offers those.
    page.select("#visibility", "owner_followers").await;
    page.click("#start").await;
    let refusal = page
        .wait_text("#msg", "the refusal", |t| t.contains("not offered"))
        .await;
    for v in [
        "owner_only",
        "owners_role",
        "owners_role_and_below",
        "entire_company",
    ] {
        assert!(refusal.contains(v), "{v} not listed: {refusal}");
    }
    let deadline = Instant::now() + WAIT;
    while page.options("#visibility").await
        != [
            "owner_only",
            "owners_role",
            "owners_role_and_below",
            "entire_company",
        ]
    {
        assert!(
            Instant::now() < deadline,
            "the dropdown was not refilled: {:?}",
            page.options("#visibility").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    page.wait_text("#plan", "the new plan", |t| t == "platinum")
        .await;
    page.shot("settings").await;
    // One of the allowed ones, and one-way: saved; the dashboard shows them.
    page.select("#visibility", "owner_only").await;
    page.click("input[name=direction][value=one_way]").await;
    page.click("#start").await;
    page.wait_url("the dashboard", |u| u == format!("/connections/{id}"))
        .await;
    let head = page
        .wait_text("main p", "the new settings", |t| t.contains("one-way"))
        .await;
    assert!(head.contains("Owner only"), "{head}");
    let saved = admin_api(
        &page.base,
        "GET",
        &format!("/connections/{id}/settings"),
        None,
    );
    assert_eq!(saved["direction"], "one_way", "{saved}");
    assert_eq!(saved["visibility"], "owner_only", "{saved}");

    // --- The connections list shows the connection, syncing.
    page.click("header a[href='/connections']").await;
    let list = page
        .wait_text("table", "the connection in the list", |t| {
            t.contains("alice@example.org")
        })
        .await;
    assert!(
        list.contains("CardDAV") || list.to_lowercase().contains("carddav"),
        "{list}"
    );
    assert!(
        list.contains("contacts") && list.contains("syncing"),
        "{list}"
    );
    page.shot("connections").await;
}
