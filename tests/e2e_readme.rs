//! The README's walkthrough, end to end: the real `cardbridge serve` binary on a fresh data
//! directory and a free loopback port (admin password from `CARDBRIDGE_ADMIN_PASSWORD`), a
//! live Radicale holding a few cards, and then only `/api/v1` (plus the dashboard page):
//! create a CardDAV connection, list its sync groups, refuse a visibility the plan does not
//! offer (422 listing the allowed ones), choose the address book, two-way and an allowed
//! visibility, fetch the mapping preview, start syncing, refresh with `?wait=true`, and check
//! the persons; then a card edited on Radicale is counted as an update in the status figures
//! and on the dashboard, a CRM edit reaches Radicale, and a same-field conflict is listed.
//!
//! Each step here is a command in README.md's walkthrough; keep them in step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fault_support;
mod support;

use std::process::Command;

use fault_support::{serve, Api, ADMIN_PASSWORD};

use serde_json::{json, Value};
use support::Radicale;

/// The person named `name` (the walkthrough's persons fit in one page).
async fn person_named(api: &Api, name: &str) -> Value {
    let persons = api.ok("GET", "/persons?limit=100", None).await;
    persons
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no person {name} in {persons}"))
}

struct Dav<'a> {
    r: &'a Radicale,
    book: String,
    http: reqwest::Client,
}

impl Dav<'_> {
    async fn put(&self, file: &str, card: String) {
        let resp = self
            .http
            .put(format!("{}{file}", self.book))
            .basic_auth(&self.r.user, Some(&self.r.password))
            .header("content-type", "text/vcard; charset=utf-8")
            .body(card)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "PUT {file}: {}", resp.status());
    }
    async fn get(&self, file: &str) -> String {
        let resp = self
            .http
            .get(format!("{}{file}", self.book))
            .basic_auth(&self.r.user, Some(&self.r.password))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "GET {file}: {}", resp.status());
        resp.text().await.unwrap()
    }
}

fn card(uid: &str, given: &str, family: &str, email: &str, tel: &str, title: &str) -> String {
    format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nN:{family};{given};;;\r\nFN:{given} {family}\r\n\
         EMAIL;TYPE=INTERNET,WORK:{email}\r\nTEL;TYPE=CELL:{tel}\r\nORG:Acme\r\nTITLE:{title}\r\n\
         END:VCARD\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_syncs_a_radicale_address_book() {
    let radicale = Radicale::start();
    let dav = Dav {
        book: radicale.new_addressbook("contacts"),
        r: &radicale,
        http: reqwest::Client::new(),
    };
    dav.put(
        "ann.vcf",
        card(
            "ann-1",
            "Ann",
            "Lee",
            "ann@example.org",
            "+1 202 555 0101",
            "Engineer",
        ),
    )
    .await;
    dav.put(
        "bob.vcf",
        card(
            "bob-1",
            "Bob",
            "Roe",
            "bob@example.org",
            "+1 202 555 0102",
            "Buyer",
        ),
    )
    .await;
    dav.put(
        "cara.vcf",
        card(
            "cara-1",
            "Cara",
            "Diaz",
            "cara@example.org",
            "+1 202 555 0103",
            "Sales",
        ),
    )
    .await;

    let tmp = tempfile::Builder::new()
        .prefix("cardbridge-e2e-")
        .tempdir()
        .unwrap();
    let data = tmp.path().join("data");
    let server = serve(&data);
    let api = Api::new(&server);

    // 1. Create the connection.
    let conn = api
        .ok(
            "POST",
            "/connections",
            Some(json!({
                "provider": "carddav",
                "email": "alice@example.org",
                "server_url": radicale.url,
                "username": "alice",
                "password": "alicepw",
            })),
        )
        .await;
    let id = conn["id"].as_u64().unwrap();
    assert_eq!(conn["state"], "setup", "{conn}");
    assert_eq!(conn["has_credentials"], true);

    // 2. The sync groups: the address book is there.
    let groups = api
        .ok("GET", &format!("/connections/{id}/sync-groups"), None)
        .await;
    let book = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == dav.book.as_str())
        .unwrap_or_else(|| panic!("{} not in {groups}", dav.book));
    assert_eq!(book["writable"], true);

    // 3. The plan's options; a visibility the plan does not offer is refused with 422.
    let settings = api
        .ok("GET", &format!("/connections/{id}/settings"), None)
        .await;
    assert_eq!(settings["options"]["plan"], "silver", "{settings}");
    assert_eq!(
        settings["options"]["visibility"],
        json!(["owner_followers", "entire_company"])
    );
    let (status, refusal) = api
        .call(
            "PATCH",
            &format!("/connections/{id}/settings"),
            Some(json!({"visibility": "owner_only"})),
        )
        .await;
    assert_eq!(status, 422, "{refusal}");
    let text = refusal.to_string();
    assert!(
        text.contains("owner_followers") && text.contains("entire_company"),
        "the refusal lists the allowed visibilities: {text}"
    );

    // 4. Choose the address book, two-way, and an allowed visibility.
    let conn = api
        .ok(
            "PATCH",
            &format!("/connections/{id}/settings"),
            Some(json!({
                "sync_group": dav.book,
                "direction": "two_way",
                "visibility": "entire_company",
            })),
        )
        .await;
    assert_eq!(conn["direction"], "two_way");
    assert_eq!(conn["visibility"], "entire_company");

    // 5. The field-mapping preview shows the real cards.
    let preview = api
        .ok("GET", &format!("/connections/{id}/mapping-preview"), None)
        .await;
    let pv = preview.to_string();
    for name in ["Ann Lee", "Bob Roe", "Cara Diaz"] {
        assert!(pv.contains(name), "{name} not in the preview: {pv}");
    }

    // 6. Start syncing, then refresh and wait.
    let (status, started) = api
        .call("POST", &format!("/connections/{id}/start"), None)
        .await;
    assert_eq!(status, 202, "{started}");
    assert!(started["data"]["run_id"].as_u64().is_some(), "{started}");
    api.refresh(id).await;

    // The persons exist with the cards' fields, owned by the admin, visible company-wide.
    let ann = person_named(&api, "Ann Lee").await;
    assert_eq!(ann["first_name"], "Ann", "{ann}");
    assert_eq!(ann["last_name"], "Lee");
    assert_eq!(ann["org_name"], "Acme");
    assert_eq!(ann["job_title"], "Engineer");
    assert_eq!(ann["visible_to"], "entire_company", "{ann}");
    assert_eq!(ann["emails"][0]["value"], "ann@example.org", "{ann}");
    assert!(
        ann["phones"].to_string().contains("555"),
        "phone kept: {ann}"
    );
    let status = api
        .ok("GET", &format!("/connections/{id}/status"), None)
        .await;
    assert_eq!(status["figures"]["total_in_sync"], 3, "{status}");
    assert_eq!(status["figures"]["last_7_days"]["added"], 3, "{status}");

    // 7. Edit a card on Radicale; a refresh counts the update.
    dav.put(
        "bob.vcf",
        card(
            "bob-1",
            "Bob",
            "Roe",
            "bob@example.org",
            "+1 202 555 0102",
            "Head Buyer",
        ),
    )
    .await;
    let summary = api.refresh(id).await;
    assert_eq!(summary["updated"], 1, "{summary}");
    assert_eq!(
        person_named(&api, "Bob Roe").await["job_title"],
        "Head Buyer"
    );
    let status = api
        .ok("GET", &format!("/connections/{id}/status"), None)
        .await;
    assert_eq!(status["figures"]["last_run"]["updated"], 1, "{status}");
    assert_eq!(status["figures"]["total_in_sync"], 3, "{status}");

    // ... and the dashboard page shows it.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = browser
        .post(format!("{}/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("login=admin&password={ADMIN_PASSWORD}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "login");
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();
    let html = browser
        .get(format!("{}/connections/{id}", server.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<b id=updated>1</b>"), "{html}");
    assert!(html.contains("<b id=total>3</b>"), "{html}");

    // 8. A CRM edit through the API reaches Radicale.
    let ann_id = ann["id"].as_u64().unwrap();
    api.ok(
        "PATCH",
        &format!("/persons/{ann_id}"),
        Some(json!({"job_title": "CTO"})),
    )
    .await;
    let summary = api.refresh(id).await;
    assert_eq!(summary["updated"], 1, "{summary}");
    let remote = dav.get("ann.vcf").await;
    assert!(remote.contains("TITLE:CTO"), "{remote}");

    // 9. The same field edited on both sides is a conflict the API lists.
    let cara_id = person_named(&api, "Cara Diaz").await["id"]
        .as_u64()
        .unwrap();
    api.ok(
        "PATCH",
        &format!("/persons/{cara_id}"),
        Some(json!({"job_title": "VP Sales"})),
    )
    .await;
    dav.put(
        "cara.vcf",
        card(
            "cara-1",
            "Cara",
            "Diaz",
            "cara@example.org",
            "+1 202 555 0103",
            "Head of Sales",
        ),
    )
    .await;
    let summary = api.refresh(id).await;
    assert_eq!(
        summary["conflicts"].as_array().unwrap().len(),
        1,
        "{summary}"
    );
    let conflicts = api
        .ok("GET", &format!("/connections/{id}/conflicts"), None)
        .await;
    let c = &conflicts[0];
    assert_eq!(c["field"], "job_title", "{conflicts}");
    assert_eq!(c["crm_value"], "VP Sales", "{conflicts}");
    assert_eq!(c["provider_value"], "Head of Sales", "{conflicts}");
    assert_eq!(c["person_id"], cara_id, "{conflicts}");
    let winner = c["winner"].as_str().unwrap();
    let kept = person_named(&api, "Cara Diaz").await["job_title"].clone();
    let remote = dav.get("cara.vcf").await;
    match winner {
        "provider" => {
            assert_eq!(kept, "Head of Sales");
            assert!(remote.contains("TITLE:Head of Sales"), "{remote}");
        }
        "crm" => {
            assert_eq!(kept, "VP Sales");
            assert!(remote.contains("TITLE:VP Sales"), "{remote}");
        }
        other => panic!("winner {other}"),
    }

    // 10. With the server stopped, `cardbridge sync --connection ID` runs one sync in the
    // foreground and prints its summary; the run is recorded like a refresh.
    server.stop();
    dav.put(
        "dan.vcf",
        card(
            "dan-1",
            "Dan",
            "Ng",
            "dan@example.org",
            "+1 202 555 0104",
            "Founder",
        ),
    )
    .await;
    let out = Command::new(env!("CARGO_BIN_EXE_cardbridge"))
        .args(["sync", "--connection", &id.to_string(), "--data"])
        .arg(&data)
        .env_remove("CARDBRIDGE_CONFIG")
        .env("CARDBRIDGE_ALLOW_PRIVATE_NETWORKS", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("succeeded"), "{stdout}");
    assert!(stdout.contains("added 1"), "{stdout}");
    assert!(stdout.contains("in sync 4"), "{stdout}");
    // Not a terminal: the progress shows as plain lines on stderr, ending with the counts.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("cardbridge sync: ") && l.contains(": 1 added, 0 updated")),
        "{stderr}"
    );
    let server = serve(&data);
    let api = Api::new(&server);
    let status = api
        .ok("GET", &format!("/connections/{id}/status"), None)
        .await;
    assert_eq!(status["figures"]["total_in_sync"], 4, "{status}");
    assert_eq!(
        status["figures"]["latest_run"]["trigger"], "manual",
        "{status}"
    );
    assert_eq!(person_named(&api, "Dan Ng").await["job_title"], "Founder");

    // 11. A person created in the CRM is pushed (two-way) and so only linked; deleting the
    // connection with ?persons=remove deletes the four it created and keeps the linked one.
    api.ok(
        "POST",
        "/persons",
        Some(json!({"name": "Eve Park", "emails": [{"value": "eve@example.org", "label": "work", "primary": true}]})),
    )
    .await;
    let summary = api.refresh(id).await;
    assert_eq!(summary["added"], 1, "{summary}");
    let (s, v) = api
        .call("DELETE", &format!("/connections/{id}"), None)
        .await;
    assert_eq!(s, 422, "persons=keep|remove must be chosen: {v}");
    let gone = api
        .ok("DELETE", &format!("/connections/{id}?persons=remove"), None)
        .await;
    assert_eq!(gone["persons_removed"], 4, "{gone}");
    assert_eq!(gone["persons_kept"], 1, "{gone}");
    let left = api.ok("GET", "/persons", None).await;
    let names: Vec<_> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("Eve Park")], "{left}");
    let (s, _) = api.call("GET", &format!("/connections/{id}"), None).await;
    assert_eq!(s, 404);
    server.stop();
}
