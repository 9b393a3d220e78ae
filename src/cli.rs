//! The command line: argument definitions (clap) and the `vcard normalize` command. `main.rs`
//! only parses arguments and calls [`run`]; the pure vCard work is in [`crate::vcard`].

use crate::vcard;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{Read, Write};
use std::path::PathBuf;

/// cardbridge: keeps a CRM's persons and people's address books in sync.
#[derive(Debug, Parser)]
#[command(name = "cardbridge", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// vCard tools.
    Vcard {
        /// Which vCard tool.
        #[command(subcommand)]
        command: VcardCommand,
    },
}

/// `cardbridge vcard ...`
#[derive(Debug, Subcommand)]
pub enum VcardCommand {
    /// Read vCards (2.1, 3.0, 4.0), normalize them to vCard 4, and write them to stdout.
    Normalize {
        /// Output format.
        #[arg(long = "to", value_enum, default_value = "4.0")]
        to: OutputFormat,
        /// Files to read; stdin when none are given.
        files: Vec<PathBuf>,
    },
}

/// Output format of `vcard normalize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// vCard 4.0 (RFC 6350).
    #[value(name = "4.0")]
    V4,
    /// vCard 3.0 (RFC 2426), for servers that take only 3.0.
    #[value(name = "3.0")]
    V3,
    /// jCard (RFC 7095): one JSON array of cards.
    #[value(name = "jcard")]
    Jcard,
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Vcard {
            command: VcardCommand::Normalize { to, files },
        } => {
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            normalize_command(to, &files, &mut stdout.lock(), &mut stderr.lock())
        }
    }
}

/// `vcard normalize`: exit code 1 if any card was unreadable (or a file could not be opened).
pub fn normalize_command(
    to: OutputFormat,
    files: &[PathBuf],
    out: &mut impl Write,
    err: &mut impl Write,
) -> i32 {
    let mut inputs: Vec<(String, Result<Vec<u8>, std::io::Error>)> = Vec::new();
    if files.is_empty() {
        let mut buf = Vec::new();
        let res = std::io::stdin().read_to_end(&mut buf).map(|_| buf);
        inputs.push(("<stdin>".into(), res));
    } else {
        for f in files {
            inputs.push((f.display().to_string(), std::fs::read(f)));
        }
    }
    let mut failed = false;
    let mut jcards = Vec::new();
    for (name, bytes) in inputs {
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                let _ = writeln!(err, "{name}: cannot read: {e}");
                failed = true;
                continue;
            }
        };
        let result = vcard::read_bytes_normalized(&bytes);
        for d in &result.diagnostics {
            failed = true;
            let _ = writeln!(
                err,
                "{name}: card {}: line {}: {}",
                d.card_index, d.line, d.reason
            );
        }
        for card in &result.cards {
            match to {
                OutputFormat::V4 => {
                    let _ = out.write_all(vcard::write_v4(card).as_bytes());
                }
                OutputFormat::V3 => {
                    let _ = out.write_all(vcard::write_v3(card).as_bytes());
                }
                OutputFormat::Jcard => jcards.push(vcard::to_jcard(card)),
            }
        }
    }
    if to == OutputFormat::Jcard {
        let _ = serde_json::to_writer_pretty(&mut *out, &serde_json::Value::Array(jcards));
        let _ = writeln!(out);
    }
    i32::from(failed)
}
