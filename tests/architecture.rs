//! Checks the architecture invariants of `docs/ARCHITECTURE.md` that a grep can decide.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layers that must stay pure, and what they must not name outside their tests.
const PURE: &[&str] = &["src/vcard", "src/dav"];
const FORBIDDEN: &[&str] = &[
    "tokio", "reqwest", "axum", "hyper::", "std::net", "std::fs", "sled",
];

#[test]
fn vcard_and_dav_never_import_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut violations = Vec::new();
    for layer in PURE {
        let mut files = Vec::new();
        rust_files(&root.join(layer), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
            // Only the code before an inline test module counts: tests may do I/O.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, line) in code.lines().enumerate() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                for word in FORBIDDEN {
                    if line.contains(word) {
                        violations.push(format!("{}:{}: {}", file.display(), n + 1, line));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "pure layers import I/O:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_source_file_has_a_module_doc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a //! doc: {missing:?}");
}
