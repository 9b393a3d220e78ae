//! Proves the provisioned peers work before any cardbridge test leans on them: Radicale and
//! Xandikos start on loopback, take an address book and a card, and list it in an RFC 6578
//! `sync-collection` REPORT (also incrementally); vdirsyncer syncs a Radicale book into a vdir
//! that khard then lists; vdirsyncer's own CardDAV storage suite runs against a live server.
//! Also tests the raw HTTP parsing of `tests/support`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::process::Command;

use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;
use support::{DavPeer, Radicale, Xandikos};

/// The DAV: namespace (RFC 4918 §21).
const DAV_NS: &str = "DAV:";

fn vcard(uid: &str, name: &str) -> String {
    format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\n\
         EMAIL;TYPE=INTERNET:{uid}@example.test\r\nEND:VCARD\r\n"
    )
}

/// PUT a new card (`If-None-Match: *`); returns the response.
fn put_new(peer: &impl DavPeer, book: &str, file: &str, card: &str) -> support::Response {
    peer.request(
        "PUT",
        &format!("{book}{file}"),
        &[
            ("Content-Type", "text/vcard; charset=utf-8"),
            ("If-None-Match", "*"),
        ],
        card.as_bytes(),
    )
}

/// A `sync-collection` REPORT (RFC 6578 §3.2) from `token` ("" = initial).
fn sync_collection(peer: &impl DavPeer, book: &str, token: &str) -> support::Response {
    let body = format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<d:sync-collection xmlns:d="DAV:"><d:sync-token>{}</d:sync-token>"#,
            "<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"
        ),
        support::xml_escape(token)
    );
    peer.request(
        "REPORT",
        book,
        &[
            ("Content-Type", "application/xml; charset=utf-8"),
            ("Depth", "1"),
        ],
        body.as_bytes(),
    )
}

/// The `DAV:href`s of the `DAV:response`s and the `DAV:sync-token` of a multistatus,
/// matching the DAV: namespace by URI, not prefix.
fn hrefs_and_token(xml: &str) -> (Vec<String>, String) {
    let mut reader = NsReader::from_str(xml);
    let (mut path, mut hrefs, mut token) = (Vec::<String>::new(), Vec::new(), String::new());
    loop {
        match reader
            .read_resolved_event()
            .expect("well-formed multistatus")
        {
            (ns, Event::Start(e)) => {
                let dav = matches!(ns, ResolveResult::Bound(Namespace(n)) if n == DAV_NS);
                let local = e.local_name().as_ref().to_string();
                path.push(if dav { local } else { format!("?{local}") });
            }
            (_, Event::End(_)) => {
                path.pop();
            }
            (_, Event::Text(t)) => {
                let text = t.trim().to_string();
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                match p.as_slice() {
                    ["multistatus", "response", "href"] => hrefs.push(text),
                    ["multistatus", "sync-token"] => token.push_str(&text),
                    _ => {}
                }
            }
            (_, Event::Eof) => break,
            _ => {}
        }
    }
    (hrefs, token)
}

/// The shared scenario: two cards in, both listed by an initial sync, only the third listed by
/// an incremental sync from the returned token, and a second create of the same href refused.
fn put_and_sync(peer: &impl DavPeer, book: &str) {
    let created = put_new(peer, book, "jdoe.vcf", &vcard("jdoe", "John Doe"));
    assert_eq!(created.status, 201, "PUT: {}", created.text());
    assert!(created.header("ETag").is_some(), "PUT answered no ETag");
    let again = put_new(peer, book, "jdoe.vcf", &vcard("jdoe", "John Doe"));
    assert_eq!(again.status, 412, "second If-None-Match: * PUT must fail");
    assert_eq!(
        put_new(peer, book, "åsa.vcf", &vcard("asa", "Åsa Öberg")).status,
        201
    );

    let first = sync_collection(peer, book, "");
    assert_eq!(first.status, 207, "REPORT: {}", first.text());
    let (hrefs, token) = hrefs_and_token(&first.text());
    assert!(
        hrefs.iter().any(|h| h.ends_with("/jdoe.vcf")),
        "jdoe.vcf not listed: {hrefs:?}"
    );
    assert_eq!(hrefs.len(), 2, "initial sync lists both cards: {hrefs:?}");
    assert!(!token.is_empty(), "no sync-token in {}", first.text());

    assert_eq!(
        put_new(peer, book, "third.vcf", &vcard("third", "Third Person")).status,
        201
    );
    let next = sync_collection(peer, book, &token);
    assert_eq!(next.status, 207, "incremental REPORT: {}", next.text());
    let (hrefs, token2) = hrefs_and_token(&next.text());
    assert!(
        hrefs.len() == 1 && hrefs[0].ends_with("/third.vcf"),
        "incremental sync lists only the new card: {hrefs:?}"
    );
    assert_ne!(token2, token, "the token must move on a change");
}

#[test]
fn radicale_lists_a_put_card_in_sync_collection() {
    let radicale = Radicale::start();
    let book = radicale.new_addressbook("contacts");
    assert_eq!(book, format!("{}alice/contacts/", radicale.url));
    put_and_sync(&radicale, &book);
}

#[test]
fn radicale_refuses_wrong_password_and_other_users_books() {
    let radicale = Radicale::start_with_users(&[("alice", "alicepw"), ("bob", "bobpw")]);
    let book = radicale.new_addressbook("contacts");
    let bad = support::http_request(
        "PROPFIND",
        &book,
        Some(("alice", "wrong")),
        &[("Depth", "0"), ("Content-Type", "application/xml")],
        b"",
    );
    assert_eq!(bad.status, 401);
    let bob = support::http_request(
        "PROPFIND",
        &book,
        Some(("bob", "bobpw")),
        &[("Depth", "0"), ("Content-Type", "application/xml")],
        b"",
    );
    assert_eq!(bob.status, 403, "owner_only rights keep bob out");
}

#[test]
fn xandikos_lists_a_put_card_in_sync_collection() {
    let xandikos = Xandikos::start();
    put_and_sync(&xandikos, &xandikos.addressbook_url);
    // A fresh book by extended MKCOL works too.
    let second = xandikos.create_addressbook("/alice/contacts/second/", "Second");
    put_and_sync(&xandikos, &second);
}

#[test]
fn vdirsyncer_syncs_radicale_into_a_vdir_that_khard_lists() {
    let radicale = Radicale::start();
    let book = radicale.new_addressbook("contacts");
    assert_eq!(
        put_new(&radicale, &book, "jdoe.vcf", &vcard("jdoe", "John Doe")).status,
        201
    );

    let dir = tempfile::tempdir().unwrap();
    let vdir = dir.path().join("vdir");
    fs::create_dir_all(&vdir).unwrap();
    let config = dir.path().join("vdirsyncer.conf");
    fs::write(
        &config,
        format!(
            "[general]\nstatus_path = \"{status}\"\n\n\
             [pair contacts]\na = \"remote\"\nb = \"local\"\ncollections = null\n\n\
             [storage remote]\ntype = \"carddav\"\nurl = \"{book}\"\n\
             username = \"{user}\"\npassword = \"{password}\"\n\n\
             [storage local]\ntype = \"filesystem\"\npath = \"{vdir}\"\nfileext = \".vcf\"\n",
            status = dir.path().join("status").display(),
            user = radicale.user,
            password = radicale.password,
            vdir = vdir.display(),
        ),
    )
    .unwrap();
    for args in [&["discover"][..], &["sync"][..]] {
        let out = Command::new(support::vdirsyncer())
            .arg("-c")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vdirsyncer {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let synced: Vec<_> = fs::read_dir(&vdir).unwrap().collect();
    assert_eq!(synced.len(), 1, "one card in the vdir");

    let khard_conf = dir.path().join("khard.conf");
    fs::write(
        &khard_conf,
        format!(
            "[addressbooks]\n[[contacts]]\npath = {}\n\n[general]\neditor = /bin/false\n\
             merge_editor = /bin/false\n",
            vdir.display()
        ),
    )
    .unwrap();
    let out = Command::new(support::khard())
        .arg("-c")
        .arg(&khard_conf)
        .arg("list")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listing.contains("John Doe"),
        "khard list: {listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// vdirsyncer's own CardDAV storage suite (0.21.0 sdist) runs through our `live` mixin against
/// Xandikos. This proves the harness the cardbridge server will be held to (issue #5).
/// Xandikos 0.4.10 fails exactly one case, `test_newline_in_uid` (it answers 404 for the href
/// of a UID with an encoded newline), so that one is deselected here and only here.
#[test]
fn vdirsyncer_storage_suite_passes_against_xandikos() {
    let xandikos = Xandikos::start();
    let out = support::vdirsyncer_suite(&xandikos.url, None)
        .args([
            "--deselect",
            "tests/storage/dav/test_carddav.py::TestCardDAVStorage::test_newline_in_uid[VCARD]",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "vdirsyncer suite failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("33 passed"),
        "expected 33 passing cases: {stdout}"
    );
}

#[test]
fn raw_http_parses_content_length_and_chunked_bodies() {
    let r = support::parse_response(
        b"HTTP/1.1 207 Multi-Status\r\nContent-Length: 3\r\nETag: \"x\"\r\n\r\nabcdef",
        false,
    )
    .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (207, &b"abc"[..]));
    assert_eq!(r.header("etag"), Some("\"x\""));

    let r = support::parse_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        false,
    )
    .unwrap();
    assert_eq!(r.body, b"abcde");

    assert!(
        support::parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", false).is_err()
    );
    assert!(support::parse_response(b"garbage", false).is_err());
}
