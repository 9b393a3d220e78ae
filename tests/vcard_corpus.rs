//! Golden corpus: every `fixtures/vcard/NAME.vcf` is read and normalized; the vCard 4.0 output is
//! compared with `NAME.expected.vcf` and diagnostics with `NAME.expected.diag` (rewritten only
//! with `UPDATE_EXPECT=1`). Also: idempotence, 4.0 → 3.0 → 4.0 survival and 3.0 always has N.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardbridge::vcard::{
    self, fingerprint, normalize, read, read_bytes_normalized, write_v3, write_v4, VCard,
};
use std::path::{Path, PathBuf};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/vcard");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.ends_with(".vcf") && !name.ends_with(".expected.vcf")
        })
        .collect();
    files.sort();
    files
}

fn normalized(path: &Path) -> (Vec<VCard>, String, String) {
    let out = read_bytes_normalized(&std::fs::read(path).unwrap());
    let text: String = out.cards.iter().map(write_v4).collect();
    let diag: String = out.diagnostics.iter().map(|d| format!("{d}\n")).collect();
    (out.cards, text, diag)
}

fn check_golden(path: &Path, actual: &str, problems: &mut Vec<String>) {
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        if actual.is_empty() {
            let _ = std::fs::remove_file(path);
        } else {
            std::fs::write(path, actual).unwrap();
        }
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        problems.push(format!(
            "{} differs:\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        ));
    }
}

#[test]
fn golden_corpus_matches() {
    let mut problems = Vec::new();
    let mut total = 0;
    for file in corpus() {
        let (cards, text, diag) = normalized(&file);
        total += cards.len();
        let stem = file.with_extension("");
        check_golden(&stem.with_extension("expected.vcf"), &text, &mut problems);
        check_golden(&stem.with_extension("expected.diag"), &diag, &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(total >= 40, "corpus has only {total} readable cards");
}

#[test]
fn corpus_normalization_is_idempotent_byte_for_byte() {
    for file in corpus() {
        let (cards, _, _) = normalized(&file);
        for card in cards {
            let once = write_v4(&card);
            let again = read(&once);
            assert!(
                again.diagnostics.is_empty(),
                "{}: {:?}",
                file.display(),
                again.diagnostics
            );
            let twice = write_v4(&normalize(&again.cards[0]));
            assert_eq!(once, twice, "{}", file.display());
            assert_eq!(normalize(&card), card, "{}", file.display());
        }
    }
}

#[test]
fn corpus_survives_v4_to_v3_to_v4() {
    for file in corpus() {
        let (cards, _, _) = normalized(&file);
        for card in cards {
            let v3 = write_v3(&card);
            assert!(
                v3.lines()
                    .any(|l| l == "N" || l.starts_with("N:") || l.starts_with("N;")),
                "3.0 output without N: {v3}"
            );
            let back = read(&v3);
            assert!(back.diagnostics.is_empty(), "{v3}");
            let back = normalize(&back.cards[0]);
            // What 3.0 cannot carry: PREF above 1, and an N the 4.0 card did not have.
            let strip = |c: &VCard, had_n: bool| -> VCard {
                let mut c = c.clone();
                for e in &mut c.entries {
                    e.params.retain(|p| {
                        !(p.name == vcard::VCardParameterName::Pref
                            && p.value != vcard::VCardParameterValue::Integer(1))
                    });
                }
                if !had_n {
                    c.entries.retain(|e| e.name != vcard::VCardProperty::N);
                }
                c
            };
            let had_n = card
                .entries
                .iter()
                .any(|e| e.name == vcard::VCardProperty::N);
            assert_eq!(
                write_v4(&strip(&back, had_n)),
                write_v4(&strip(&card, had_n)),
                "{}: through 3.0:\n{v3}",
                file.display()
            );
            assert_eq!(
                fingerprint(&strip(&back, had_n)),
                fingerprint(&strip(&card, had_n))
            );
        }
    }
}

#[test]
fn written_lines_fold_at_75_octets() {
    for file in corpus() {
        let (_, text, _) = normalized(&file);
        for line in text.split("\r\n") {
            assert!(line.len() <= 75, "{}: {line}", file.display());
        }
    }
}
