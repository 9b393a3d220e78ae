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
    /// Run the service: REST API, CardDAV server, web page and scheduler.
    Serve {
        /// Address and port to listen on [default: 127.0.0.1:8080; env CARDBRIDGE_LISTEN].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Data directory [default: ./data; env CARDBRIDGE_DATA].
        #[arg(long = "data")]
        data: Option<PathBuf>,
        /// TOML config file (see docs/CONFIG.md) [env CARDBRIDGE_CONFIG].
        #[arg(long)]
        config: Option<PathBuf>,
        /// Log format [default: pretty; env CARDBRIDGE_LOG_FORMAT].
        #[arg(long = "log-format", value_enum)]
        log_format: Option<crate::config::LogFormat>,
    },
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
        Command::Serve {
            listen,
            data,
            config,
            log_format,
        } => serve_command(listen, data, config, log_format),
        Command::Vcard {
            command: VcardCommand::Normalize { to, files },
        } => {
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            normalize_command(to, &files, &mut stdout.lock(), &mut stderr.lock())
        }
    }
}

/// `serve`: loads the configuration, then runs the service until SIGINT/SIGTERM.
pub fn serve_command(
    listen: Option<std::net::SocketAddr>,
    data: Option<PathBuf>,
    config: Option<PathBuf>,
    log_format: Option<crate::config::LogFormat>,
) -> i32 {
    use crate::config::{Config, Overrides, ENV_CONFIG};
    let file = config.or_else(|| std::env::var_os(ENV_CONFIG).map(PathBuf::from));
    let flags = Overrides {
        listen,
        data_dir: data,
        log_format,
    };
    let cfg = match Config::load(file.as_deref(), &|k| std::env::var(k).ok(), &flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cardbridge serve: {e}");
            return 2;
        }
    };
    crate::service::init_tracing(cfg.log_format, &cfg.log_filter);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cardbridge serve: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(crate::service::serve(cfg)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cardbridge serve: {e}");
            1
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
