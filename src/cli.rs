//! The command line: argument definitions (clap), `serve`, `sync` (one run in the foreground
//! with a progress bar), `migrate` (sled to PostgreSQL, in [`crate::store::migrate`]), the
//! `vcard normalize` command and the `carddav discover` command. `main.rs` only parses arguments and calls [`run`]; the pure vCard
//! work is in [`crate::vcard`], discovery in [`crate::providers::carddav::discovery`].

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
    /// Run one sync of a connection in the foreground, with a progress bar and a summary.
    /// Uses the data directory directly: stop `serve` first (or use the API's refresh).
    Sync {
        /// The connection id (from GET /api/v1/connections).
        #[arg(long = "connection")]
        connection: u64,
        /// Data directory [default: ./data; env CARDBRIDGE_DATA].
        #[arg(long = "data")]
        data: Option<PathBuf>,
        /// TOML config file (see docs/CONFIG.md) [env CARDBRIDGE_CONFIG].
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// vCard tools.
    Vcard {
        /// Which vCard tool.
        #[command(subcommand)]
        command: VcardCommand,
    },
    /// CardDAV client tools.
    Carddav {
        /// Which CardDAV tool.
        #[command(subcommand)]
        command: CarddavCommand,
    },
    /// Copy all state from one store to another, verifying counts per keyspace. Stop the node
    /// first. The PostgreSQL side comes from the config file / CARDBRIDGE_POSTGRES_* and must
    /// be empty.
    Migrate {
        /// The store to read.
        #[arg(long, value_enum)]
        from: crate::config::StoreKind,
        /// The store to write.
        #[arg(long, value_enum)]
        to: crate::config::StoreKind,
        /// Data directory of the sled store [default: ./data; env CARDBRIDGE_DATA].
        #[arg(long = "data")]
        data: Option<PathBuf>,
        /// TOML config file (see docs/CONFIG.md) [env CARDBRIDGE_CONFIG].
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// `cardbridge carddav ...`
#[derive(Debug, Subcommand)]
pub enum CarddavCommand {
    /// Find the principal, the address-book home set and the address books (RFC 6764) and print
    /// each book's capabilities. The password comes from `CARDBRIDGE_PASSWORD`, else stdin.
    Discover {
        /// An email address (DNS SRV/TXT, then /.well-known/carddav) or a server URL.
        start: String,
        /// User name.
        #[arg(long)]
        user: Option<String>,
        /// Authentication scheme.
        #[arg(long, value_enum, default_value = "basic")]
        auth: AuthScheme,
        /// Server profile (which other hosts may receive the credentials, e.g. iCloud partitions).
        #[arg(long, value_enum, default_value = "generic")]
        profile: ProfileName,
        /// Ask this DNS server (ip:port) instead of the system resolver.
        #[arg(long)]
        dns: Option<std::net::SocketAddr>,
    },
}

/// `--auth` of `carddav discover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthScheme {
    /// HTTP Basic.
    Basic,
    /// HTTP Digest.
    Digest,
    /// Bearer token (the "password" is the token).
    Bearer,
    /// No credentials.
    None,
}

/// `--profile` of `carddav discover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileName {
    /// Any CardDAV server.
    Generic,
    /// iCloud.
    Icloud,
    /// Google's CardDAV.
    Google,
}

/// Environment variable holding the password for `carddav discover`.
pub const ENV_PASSWORD: &str = "CARDBRIDGE_PASSWORD";

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
        Command::Sync {
            connection,
            data,
            config,
        } => sync_command(connection, data, config),
        Command::Vcard {
            command: VcardCommand::Normalize { to, files },
        } => {
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            normalize_command(to, &files, &mut stdout.lock(), &mut stderr.lock())
        }
        Command::Carddav {
            command:
                CarddavCommand::Discover {
                    start,
                    user,
                    auth,
                    profile,
                    dns,
                },
        } => discover_command(&start, user, auth, profile, dns),
        Command::Migrate {
            from,
            to,
            data,
            config,
        } => migrate_command(from, to, data, config),
    }
}

/// `migrate`: exit code 0 when the copy verified, 1 when it failed, 2 for bad arguments.
pub fn migrate_command(
    from: crate::config::StoreKind,
    to: crate::config::StoreKind,
    data: Option<PathBuf>,
    config: Option<PathBuf>,
) -> i32 {
    use crate::config::{Config, Overrides, StoreKind, ENV_CONFIG};
    if (from, to) != (StoreKind::Sled, StoreKind::Postgres) {
        eprintln!("cardbridge migrate: only --from sled --to postgres is supported");
        return 2;
    }
    let file = config.or_else(|| std::env::var_os(ENV_CONFIG).map(PathBuf::from));
    let flags = Overrides {
        data_dir: data,
        ..Overrides::default()
    };
    let cfg = match Config::load(file.as_deref(), &|k| std::env::var(k).ok(), &flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cardbridge migrate: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cardbridge migrate: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(migrate_sled_to_postgres(&cfg)) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("cardbridge migrate: {e}");
            1
        }
    }
}

#[cfg(feature = "postgres")]
async fn migrate_sled_to_postgres(cfg: &crate::config::Config) -> Result<String, String> {
    use crate::store::{open, PgStore, SledStore};
    let dir = open::sled_dir(cfg);
    if !dir.is_dir() {
        return Err(format!("no sled database at {}", dir.display()));
    }
    let sled = SledStore::open(&dir).map_err(|e| {
        format!(
            "cannot open {}: {e} (is a node still running on it? stop it first)",
            dir.display()
        )
    })?;
    let settings = open::postgres_settings(cfg).map_err(|e| e.to_string())?;
    let pg = PgStore::open(&settings).await.map_err(|e| e.to_string())?;
    let reporter = Reporter::new(
        "cardbridge migrate",
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        Some(0),
    );
    let report = crate::store::migrate::sled_to_postgres_with(&sled, &pg, &|p| {
        migrate_progress(&reporter, p)
    })
    .await;
    reporter.finish();
    let report = report.map_err(|e| e.to_string())?;
    Ok(format!(
        "{report}migrated {} entries into schema {}; every keyspace verified\n",
        report.total(),
        pg.schema()
    ))
}

/// One migration progress report: the bar follows every entry; plain output prints a line
/// when a keyspace is done and at most every [`PLAIN_PROGRESS_EVERY`] in between.
#[cfg(feature = "postgres")]
fn migrate_progress(reporter: &Reporter, p: &crate::store::migrate::Progress<'_>) {
    use crate::store::migrate::Phase;
    let verb = match p.phase {
        Phase::Copy => "copied",
        Phase::Verify => "read back",
    };
    if p.done_all == 1 {
        reporter.set_len(p.total_all);
    }
    reporter.update(
        p.done_all,
        format!(
            "{} {verb} {}/{} ({}/{} in all)",
            p.space, p.done, p.total, p.done_all, p.total_all
        ),
        p.done == p.total,
    );
}

#[cfg(not(feature = "postgres"))]
async fn migrate_sled_to_postgres(_cfg: &crate::config::Config) -> Result<String, String> {
    Err("this build has no PostgreSQL support (cargo feature `postgres`)".into())
}

/// `carddav discover`: exit code 1 when discovery fails.
pub fn discover_command(
    start: &str,
    user: Option<String>,
    scheme: AuthScheme,
    profile: ProfileName,
    dns: Option<std::net::SocketAddr>,
) -> i32 {
    use crate::providers::carddav::{self as cd, discovery};
    let secret = || -> String {
        match std::env::var(ENV_PASSWORD) {
            Ok(p) => p,
            Err(_) => {
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                line.trim_end_matches(['\r', '\n']).to_string()
            }
        }
    };
    let user = user.unwrap_or_default();
    let auth = match scheme {
        AuthScheme::None => cd::Auth::None,
        AuthScheme::Basic => cd::Auth::Basic {
            user,
            password: secret(),
        },
        AuthScheme::Digest => cd::Auth::Digest {
            user,
            password: secret(),
        },
        AuthScheme::Bearer => cd::Auth::Bearer(secret()),
    };
    let profile = match profile {
        ProfileName::Generic => cd::Profile::generic(),
        ProfileName::Icloud => cd::Profile::icloud(),
        ProfileName::Google => cd::Profile::google(),
    };
    let result = (|| -> Result<String, String> {
        let start = cd::DiscoveryStart::parse(start).map_err(|e| e.to_string())?;
        let origin = match &start {
            cd::DiscoveryStart::Url(u) => u.clone(),
            cd::DiscoveryStart::Email(_) => {
                url::Url::parse("https://invalid.invalid/").map_err(|e| e.to_string())?
            }
        };
        let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let resolver: Box<dyn cd::SrvResolver> = match dns {
                Some(ns) => Box::new(cd::HickoryResolver::with_nameserver(ns)),
                None => Box::new(cd::HickoryResolver::system()?),
            };
            // For an email address the credentials go to the host discovery finds first.
            let origin = match &start {
                cd::DiscoveryStart::Url(_) => origin,
                cd::DiscoveryStart::Email(_) => discovery::context_urls(&start, resolver.as_ref())
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .next()
                    .ok_or("no context URL")?,
            };
            let client = cd::DavClient::new(origin, auth)
                .map_err(|e| e.to_string())?
                .with_credential_hosts(profile.credential_hosts.clone());
            let found = cd::discover(&client, &start, resolver.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(discovery::render(&found))
        })
    })();
    match result {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("discovery failed: {e}");
            1
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

/// `sync --connection ID`: exit code 0 when the run succeeded, 1 when it failed, 2 on a bad
/// configuration.
pub fn sync_command(connection: u64, data: Option<PathBuf>, config: Option<PathBuf>) -> i32 {
    use crate::config::{Config, Overrides, ENV_CONFIG};
    use crate::service::connections::RunState;
    let file = config.or_else(|| std::env::var_os(ENV_CONFIG).map(PathBuf::from));
    let flags = Overrides {
        data_dir: data,
        ..Overrides::default()
    };
    let cfg = match Config::load(file.as_deref(), &|k| std::env::var(k).ok(), &flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cardbridge sync: {e}");
            return 2;
        }
    };
    crate::service::init_tracing(cfg.log_format, "warn");
    let reporter = std::sync::Arc::new(Reporter::new(
        "cardbridge sync",
        "{spinner} [{elapsed_precise}] {msg}",
        None,
    ));
    reporter.update(0, format!("connection {connection}: starting"), true);
    let observer: crate::sync::execute::ProgressHook = {
        let reporter = reporter.clone();
        std::sync::Arc::new(move |p: &crate::sync::execute::Progress| {
            reporter.update(p.items, sync_progress_text(&p.into()), false);
        })
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cardbridge sync: cannot start the runtime: {e}");
            return 1;
        }
    };
    let result = rt.block_on(crate::service::sync_once(&cfg, connection, observer));
    if let Some(p) = result.as_ref().ok().and_then(|r| r.progress) {
        reporter.update(p.items, sync_progress_text(&p), true);
    }
    reporter.finish();
    match result {
        Ok(record) => {
            let p = record.progress.unwrap_or_default();
            match (&record.state, &record.summary) {
                (RunState::Succeeded, Some(s)) => {
                    println!(
                        "connection {connection}, run {}: succeeded ({} items in {} page(s))",
                        record.id, p.items, p.pages
                    );
                    println!(
                        "  added {}  updated {}  deleted {}  conflicts {}  errors {}  in sync {}",
                        s.added,
                        s.updated,
                        s.deleted,
                        s.conflicts.len(),
                        s.errors,
                        s.total_in_sync
                    );
                    for c in &s.conflicts {
                        println!(
                            "  conflict on {} (person {}): crm {:?} vs provider {:?}, {} won",
                            c.field,
                            c.person_id.map(|p| p.to_string()).unwrap_or_default(),
                            c.crm_value,
                            c.provider_value,
                            c.winner
                        );
                    }
                    for e in &s.error_messages {
                        println!("  error: {e}");
                    }
                    0
                }
                _ => {
                    eprintln!(
                        "connection {connection}, run {}: failed: {}",
                        record.id,
                        record.error.as_deref().unwrap_or("unknown error")
                    );
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("cardbridge sync: {e}");
            1
        }
    }
}

/// The counts of a running sync, as `cardbridge sync` shows them.
fn sync_progress_text(p: &crate::service::connections::RunProgress) -> String {
    format!(
        "{} items in {} page(s): {} added, {} updated, {} deleted, {} conflicts, {} errors",
        p.items, p.pages, p.added, p.updated, p.deleted, p.conflicts, p.errors
    )
}

/// How often a long command prints a plain progress line when stderr is not a terminal.
pub const PLAIN_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The progress of a long command on stderr: an indicatif bar when stderr is a terminal;
/// otherwise plain lines (`<command>: <msg>`), at most one every [`PLAIN_PROGRESS_EVERY`]
/// unless forced (a step that completed, the final state).
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    command: &'static str,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Reporter {
    /// `template` is the bar's indicatif template; `len` makes it a bar instead of a spinner.
    fn new(command: &'static str, template: &str, len: Option<u64>) -> Self {
        use std::io::IsTerminal as _;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match len {
                Some(n) => indicatif::ProgressBar::new(n),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let style = indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Reporter {
            bar,
            command,
            last: std::sync::Mutex::new(None),
        }
    }

    /// The bar's length (for a bar whose total is known only later).
    fn set_len(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_length(n);
        }
    }

    /// Where the command stands; `force` prints a plain line even if one was just printed.
    fn update(&self, pos: u64, msg: String, force: bool) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
            b.set_message(msg);
            return;
        }
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        if !force && last.is_some_and(|t| now.duration_since(t) < PLAIN_PROGRESS_EVERY) {
            return;
        }
        *last = Some(now);
        eprintln!("{}: {msg}", self.command);
    }

    /// Removes the bar (the summary follows on stdout).
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
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
