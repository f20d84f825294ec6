//! The `latchkey` binary: command line (docs/architecture.md, "Command line and configuration"),
//! configuration, telemetry and wiring of the store, the HTTP application and the server lifecycle (graceful
//! shutdown on SIGTERM/SIGINT).

mod config;
mod demo;
mod keys;
mod listener;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use latchkey_core::store::ApiTokenStore;
use latchkey_core::tokens::ApiToken;
use latchkey_core::{Clock, SystemClock};
use latchkey_store::Store;

use crate::config::RawConfig;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "latchkey", version, about = "A self-hosted, Okta-compatible identity provider")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (applies migrations first).
    Serve {
        #[command(flatten)]
        common: CommonArgs,
        /// Address to listen on [env: LATCHKEY_LISTEN] [default: 127.0.0.1:8080]
        #[arg(long)]
        listen: Option<String>,
        /// Public base URL used in links [env: LATCHKEY_PUBLIC_URL] [default: http://<listen>]
        #[arg(long)]
        public_url: Option<String>,
        /// Seed a demo organisation and print how to use it.
        #[arg(long)]
        demo: bool,
    },
    /// Manage admin API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the organisation's SAML signing keys (rollover: stage, wait, activate).
    SigningKey {
        #[command(subcommand)]
        command: SigningKeyCommand,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an admin API token and print it on stdout (shown once; only its hash is stored).
    Create {
        #[command(flatten)]
        common: CommonArgs,
        /// A label for the token (who or what uses it).
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum SigningKeyCommand {
    /// List the keys: kid, status (ACTIVE signs, NEXT is published in metadata only), created.
    List {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Generate the next key and publish it in metadata without signing with it yet.
    Stage {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Switch: the staged key signs from now on (each node within 5 s); the old one stays
    /// published as PREVIOUS until `retire`, so responses signed just before the switch verify.
    Activate {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Stop publishing the key the last `activate` replaced.
    Retire {
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective settings (secrets masked).
    Check {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long)]
        listen: Option<String>,
        #[arg(long)]
        public_url: Option<String>,
    },
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// TOML configuration file
    #[arg(long, env = "LATCHKEY_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://... [env: LATCHKEY_DATABASE_URL]
    /// [default: sqlite://latchkey-data/latchkey.db]
    #[arg(long)]
    database_url: Option<String>,
}

fn settings(
    common: &CommonArgs,
    listen: Option<String>,
    public_url: Option<String>,
) -> Result<config::Settings, String> {
    let flags =
        RawConfig { listen, public_url, database_url: common.database_url.clone(), ..Default::default() };
    let raw = config::load(common.config.as_deref(), flags)?;
    raw.validate().map_err(|problems| format!("invalid configuration:\n  {}", problems.join("\n  ")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("latchkey: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("latchkey: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve { common, listen, public_url, demo } => {
            let settings = settings(&common, listen, public_url)?;
            serve::run(settings, demo).await
        }
        Command::Migrate { common } => {
            let settings = settings(&common, None, None)?;
            let store = open_store(&settings).await?;
            let applied = store.migrate().await.map_err(|e| e.to_string())?;
            store.close().await;
            println!("applied {applied} migration(s)");
            Ok(())
        }
        Command::Token { command: TokenCommand::Create { common, name } } => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
                return Err("--name must be 1 to 100 printable characters".to_owned());
            }
            let settings = settings(&common, None, None)?;
            let store = open_store(&settings).await?;
            store.migrate().await.map_err(|e| e.to_string())?;
            let (token, secret) = ApiToken::issue(name, SystemClock.now());
            store.insert_api_token(&token).await.map_err(|e| e.to_string())?;
            let event = latchkey_core::events::Event::new(
                "system.api_token.create",
                "Create API token",
                "SUCCESS",
                latchkey_core::events::Actor::system(),
                SystemClock.now(),
            )
            .target(latchkey_core::events::Target::new(&token.id, "Token", &token.name));
            latchkey_core::store::EventStore::insert_event(&store, &event)
                .await
                .map_err(|e| e.to_string())?;
            store.close().await;
            println!("{}", secret.expose());
            Ok(())
        }
        Command::SigningKey { command } => signing_key(command).await,
        Command::Config { command: ConfigCommand::Check { common, listen, public_url } } => {
            let settings = settings(&common, listen, public_url)?;
            print!("{}", settings.describe());
            Ok(())
        }
    }
}

/// `latchkey signing-key …`: rollover in two steps, so SPs can load the new certificate from
/// metadata before any response is signed with it.
async fn signing_key(command: SigningKeyCommand) -> Result<(), String> {
    let (SigningKeyCommand::List { common }
    | SigningKeyCommand::Stage { common }
    | SigningKeyCommand::Activate { common }
    | SigningKeyCommand::Retire { common }) = &command;
    let settings = settings(common, None, None)?;
    let store = open_store(&settings).await?;
    store.migrate().await.map_err(|e| e.to_string())?;
    // Only a new key needs the master key (to seal it); the other commands work without one.
    let master_key = match command {
        SigningKeyCommand::Stage { .. } => {
            Some(std::sync::Arc::new(crate::keys::load(&settings.master_key)?))
        }
        _ => None,
    };
    let audit = CommandLog { store: &store, failed: std::sync::atomic::AtomicBool::new(false) };
    let keys = latchkey_core::signing_keys::service::SigningKeys {
        store: &store,
        master_key: master_key.as_ref(),
        clock: &SystemClock,
        cache: &latchkey_core::signing_keys::KeyCache::default(),
        offload: &latchkey_http::SpawnBlocking,
        audit: &audit,
    };
    let done = |kid: Option<String>, refusal: &str| match kid {
        Some(kid) => {
            println!("{kid}");
            Ok(())
        }
        None => Err(refusal.to_owned()),
    };
    let result = match command {
        SigningKeyCommand::List { .. } => keys.list().await.map_err(|e| e.to_string()).map(|keys| {
            for key in keys {
                println!("{}\t{}\t{}", key.kid, key.status.as_str(), key.created.to_iso());
            }
        }),
        SigningKeyCommand::Stage { .. } => keys
            .stage()
            .await
            .map_err(|e| e.to_string())
            .and_then(|kid| done(kid, "a next key is already staged; activate it first")),
        SigningKeyCommand::Activate { .. } => keys
            .activate()
            .await
            .map_err(|e| e.to_string())
            .and_then(|kid| done(kid, "no key is staged; run `latchkey signing-key stage` first")),
        SigningKeyCommand::Retire { .. } => keys
            .retire()
            .await
            .map_err(|e| e.to_string())
            .and_then(|kid| done(kid, "no previous key to retire")),
    };
    store.close().await;
    match result {
        Ok(()) if audit.failed.load(std::sync::atomic::Ordering::Relaxed) => {
            Err("the change was made, but it could not be written to the system log".to_owned())
        }
        other => other,
    }
}

/// The system log for a command: each event is written at once, and a failed write makes the
/// command fail (a key change the log does not show must not look like a success).
struct CommandLog<'a> {
    store: &'a Store,
    failed: std::sync::atomic::AtomicBool,
}

impl latchkey_core::events::AuditLog for CommandLog<'_> {
    async fn record(&self, event: latchkey_core::events::Event) {
        use latchkey_core::store::EventStore as _;
        if let Err(e) = self.store.insert_event(&event).await {
            eprintln!("latchkey: could not write {} to the system log: {e}", event.event_type);
            self.failed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

async fn open_store(settings: &config::Settings) -> Result<Store, String> {
    Store::connect(&settings.database_url)
        .await
        .map_err(|e| format!("cannot open database {}: {e}", config::mask_password(&settings.database_url)))
}
