//! `cardbridge vcard normalize` run as a process: files and stdin, `--to`, diagnostics on stderr
//! naming file, card position and reason, and the exit status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_cardbridge");
const GOOD: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Doe;Jane;;;\r\nFN:Jane Doe\r\nEMAIL;TYPE=INTERNET,pref:jane@example.com\r\nUID:jane\r\nEND:VCARD\r\n";
const BAD: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Broken\r\nno colon here\r\nEND:VCARD\r\n";

fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn stdin_to_v4() {
    let (code, out, err) = run(&["vcard", "normalize"], GOOD);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("VERSION:4.0\r\n"));
    assert!(out.contains("EMAIL;PREF=1:jane@example.com\r\n"), "{out}");
    assert!(err.is_empty());
}

#[test]
fn to_v3_and_jcard() {
    let (code, out, _) = run(&["vcard", "normalize", "--to", "3.0"], GOOD);
    assert_eq!(code, 0);
    assert!(
        out.contains("VERSION:3.0\r\n") && out.contains("EMAIL;TYPE=pref:jane@example.com"),
        "{out}"
    );
    let (code, out, _) = run(&["vcard", "normalize", "--to", "jcard"], GOOD);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0][0], "vcard");
    assert_eq!(
        json[0][1][0],
        serde_json::json!(["version", {}, "text", "4.0"])
    );
}

#[test]
fn unreadable_card_is_reported_left_out_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.vcf");
    std::fs::write(&file, format!("{GOOD}{BAD}{GOOD}")).unwrap();
    let path = file.to_str().unwrap();
    let (code, out, err) = run(&["vcard", "normalize", path], "");
    assert_eq!(code, 1);
    assert_eq!(out.matches("BEGIN:VCARD").count(), 2);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with(&format!("{path}: card 2: line 11:")),
        "{err}"
    );
}

#[test]
fn missing_file_exits_1() {
    let (code, _, err) = run(&["vcard", "normalize", "/nonexistent/x.vcf"], "");
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/x.vcf"));
}
