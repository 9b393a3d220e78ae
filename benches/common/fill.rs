//! Fast, honest setup of the benchmark peers: the corpus is written straight into each peer's
//! storage before it is timed (Radicale: one `.vcf` file per card in its filesystem collection
//! folder; Xandikos 0.4: the `.vcf` files added to the collection's git work tree and committed
//! once, instead of one git commit per PUT), then [`count_served`] asks the peer itself with a
//! `sync-collection` REPORT and the benches assert it serves every card before timing anything.
//!
//! Include it after `support` (tests/support/mod.rs) and `corpus`:
//! `#[path = "common/fill.rs"] mod fill;`.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use cardbridge::dav::names;
use cardbridge::dav::sync_collection::SyncCollection;

use crate::corpus;
use crate::support;

/// Writes `cards` into Radicale's address book `/<user>/<name>/` (created by MKCOL first, so
/// Radicale writes its own `.Radicale.props`) and returns the book's URL.
pub fn radicale(r: &support::Radicale, name: &str, cards: &[String]) -> String {
    let url = r.new_addressbook(name);
    let dir = r.data_dir.join("collection-root").join(&r.user).join(name);
    assert!(dir.is_dir(), "Radicale collection folder {}", dir.display());
    for (i, card) in cards.iter().enumerate() {
        std::fs::write(dir.join(corpus::file_name(i)), card).unwrap();
    }
    url
}

/// Commits `cards` into Xandikos's default address book (`/alice/contacts/addressbook/`, a git
/// repository with a work tree, which `--defaults` creates on the first request) in one commit.
pub fn xandikos(x: &support::Xandikos, cards: &[String]) {
    use support::DavPeer as _;
    // The first request makes `--defaults` create the principal and its collections.
    let r = x.request(
        "PROPFIND",
        &x.addressbook_url,
        &[("Depth", "0"), ("Content-Type", "application/xml")],
        b"<propfind xmlns=\"DAV:\"><prop><getetag/></prop></propfind>",
    );
    assert_eq!(r.status, 207, "Xandikos PROPFIND: {}", r.text());
    let dir = x.data_dir.join("alice/contacts/addressbook");
    assert!(
        dir.join(".git").exists(),
        "{} is no git work tree",
        dir.display()
    );
    for (i, card) in cards.iter().enumerate() {
        std::fs::write(dir.join(corpus::file_name(i)), card).unwrap();
    }
    git(&dir, &["add", "-A"]);
    git(
        &dir,
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            "commit",
            "-q",
            "-m",
            "bench corpus",
        ],
    );
}

fn git(dir: &Path, args: &[&str]) {
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

/// How many member resources the collection at `url` reports in an initial `sync-collection`.
pub async fn count_served(client: &reqwest::Client, url: &str, auth: Option<&str>) -> usize {
    let sc = SyncCollection::new(None, &[names::GETETAG]);
    let mut rb = client
        .request(reqwest::Method::from_bytes(b"REPORT").unwrap(), url)
        .header("Depth", "0")
        .header("Content-Type", names::CONTENT_TYPE_XML)
        .body(sc.body());
    if let Some(a) = auth {
        rb = rb.header("Authorization", a);
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 207, "sync-collection on {url}");
    let body = r.bytes().await.unwrap();
    SyncCollection::parse_response(&body)
        .unwrap()
        .changed
        .iter()
        .filter(|c| !c.href.ends_with('/'))
        .count()
}
