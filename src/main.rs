#![forbid(unsafe_code)]
//! The `signup-bridge` command: the Functions custom handler (`serve`) and operator tools.

use clap::{Parser, Subcommand};
use signup_bridge::poll_audit_logs::poller::PollOptions;
use signup_bridge::provisioning::destinations::ObjectId;
use signup_bridge::{logging, settings::Settings, startup};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "signup-bridge",
    version,
    about = "Entra External ID sign-up validation and after-sign-up provisioning"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run as the Azure Functions custom handler (what host.json starts).
    Serve,
    /// Check the settings and the connections (Key Vault, token, Graph) and print a report.
    Check,
    /// Find new sign-ups and hand them to provisioning: the same code as the PollAuditLogs timer.
    Poll {
        /// Run one poll and exit (what the timer does at each tick).
        #[arg(long, required = true)]
        once: bool,
        /// Backfill: read from this RFC 3339 time (within the audit log's retention) instead of the checkpoint.
        #[arg(long, value_parser = parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Print the object ids that would be enqueued; enqueue nothing, write no checkpoint.
        #[arg(long)]
        dry_run: bool,
    },
    /// Create or update the Entra custom authentication extension for AttributeSubmit and attach it to a user flow.
    Setup(signup_bridge::setup::SetupArgs),
    /// The whole product in one process (a container, a laptop): the HTTP routes, the poll on
    /// RUN_POLL_INTERVAL_SECONDS, and a queue worker for ProvisionUser, on the configured store.
    Run {
        /// Listen address (default 127.0.0.1 and FUNCTIONS_CUSTOMHANDLER_PORT; 0.0.0.0:8080 in a container).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Print a user's provisioning ledger, or list the users with a failed destination.
    Status {
        /// The user's object id.
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        object_id: Option<ObjectId>,
        /// List users with a failed destination: object id, destination, error code.
        #[arg(long)]
        failed: bool,
    },
    /// Re-enqueue a user (failed destinations start a fresh retry schedule), or every failed user.
    Replay {
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        object_id: Option<ObjectId>,
        #[arg(long)]
        failed: bool,
    },
    /// Run the provisioning pipeline for one user now, in this process, and print the ledger.
    Provision { object_id: ObjectId },
    /// Check a rules file and print how many rules it holds.
    CheckRules {
        /// The rules TOML file.
        path: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    match cli.command {
        Command::Serve => {
            let settings = match Settings::from_env() {
                Ok(settings) => settings,
                Err(error) => {
                    log::error!("{error}");
                    return ExitCode::from(2);
                }
            };
            match startup::serve(settings, None, shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    log::error!("{error:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Check => signup_bridge::check::run(&std::env::vars().collect()).await,
        Command::Poll {
            once: _,
            since,
            dry_run,
        } => {
            let Some(settings) = load_settings() else {
                return ExitCode::from(2);
            };
            let poller = match startup::poller(&settings).await {
                Ok(poller) => poller,
                Err(error) => {
                    log::error!("{error:#}");
                    return ExitCode::from(2);
                }
            };
            match poller.poll_once(&PollOptions { since, dry_run }).await {
                Ok(summary) => {
                    if dry_run {
                        for user in &summary.new_users {
                            println!("{user}");
                        }
                    }
                    println!("{}", summary.line());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    log::error!("poll failed, checkpoint unchanged: {error}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Setup(args) => signup_bridge::setup::main(args).await,
        Command::Run { listen } => {
            let settings = match Settings::from_env() {
                Ok(settings) => settings,
                Err(error) => {
                    log::error!("{error}");
                    return ExitCode::from(2);
                }
            };
            let listener = match listen {
                Some(address) => match tokio::net::TcpListener::bind(address).await {
                    Ok(listener) => Some(listener),
                    Err(error) => {
                        log::error!("--listen {address}: {error}");
                        return ExitCode::from(2);
                    }
                },
                None => None,
            };
            match startup::run(settings, listener, shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    log::error!("{error:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Status { object_id, failed } => operations::status(object_id, failed).await,
        Command::Replay { object_id, failed } => operations::replay(object_id, failed).await,
        Command::Provision { object_id } => operations::provision(object_id).await,
        Command::CheckRules { path } => match signup_bridge::attribute_submit::rules::RuleSet::load(&path) {
            Ok(rules) => {
                println!("{}: {} rules, valid", path.display(), rules.len());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::from(2)
            }
        },
    }
}

/// `status`, `replay`, `provision`: thin wrappers over `provisioning::operations`.
mod operations {
    use super::{ExitCode, ObjectId, load_settings};
    use signup_bridge::handover::{DetectionSource, ProvisionMessage};
    use signup_bridge::provisioning::{Ledgers, operations};
    use signup_bridge::startup;

    pub async fn status(object_id: Option<ObjectId>, failed: bool) -> ExitCode {
        let Some(settings) = load_settings() else {
            return ExitCode::from(2);
        };
        let store = match startup::open_store(&settings).await {
            Ok(store) => store,
            Err(error) => return fail(error),
        };
        let ledgers = Ledgers::new(store);
        match (object_id, failed) {
            (Some(object_id), _) => match ledgers.read(object_id).await {
                Ok(Some(ledger)) => {
                    print!("{}", ledger.render());
                    ExitCode::SUCCESS
                }
                Ok(None) => {
                    println!("user {object_id}: no ledger (never provisioned here)");
                    ExitCode::from(3)
                }
                Err(error) => fail(error),
            },
            (None, _) => match ledgers.failed().await {
                Ok(failed) => {
                    for line in operations::failed_lines(&failed) {
                        println!("{line}");
                    }
                    println!("{} user(s) with a failed destination", failed.len());
                    ExitCode::SUCCESS
                }
                Err(error) => fail(error),
            },
        }
    }

    pub async fn replay(object_id: Option<ObjectId>, _failed: bool) -> ExitCode {
        let Some(settings) = load_settings() else {
            return ExitCode::from(2);
        };
        let store = match startup::open_store(&settings).await {
            Ok(store) => store,
            Err(error) => return fail(error),
        };
        let ledgers = Ledgers::new(store.clone());
        match object_id {
            Some(object_id) => match operations::replay(store.as_ref(), &ledgers, object_id).await {
                Ok(()) => {
                    println!("user {object_id}: enqueued");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(error),
            },
            None => match operations::replay_failed(store.as_ref(), &ledgers).await {
                Ok(replayed) => {
                    for object_id in &replayed {
                        println!("user {object_id}: enqueued");
                    }
                    println!("{} user(s) replayed", replayed.len());
                    ExitCode::SUCCESS
                }
                Err(error) => fail(error),
            },
        }
    }

    pub async fn provision(object_id: ObjectId) -> ExitCode {
        let Some(settings) = load_settings() else {
            return ExitCode::from(2);
        };
        let (pipeline, _store) = match startup::pipeline(&settings).await {
            Ok(parts) => parts,
            Err(error) => return fail(error),
        };
        let message = ProvisionMessage {
            user_id: object_id.as_uuid(),
            detected_at: chrono::Utc::now(),
            source: DetectionSource::Operator,
            audit_record_id: None,
        };
        match pipeline.process(&message).await {
            Ok(report) => {
                for line in report.lines() {
                    println!("{line}");
                }
                if let Ok(Some(ledger)) = pipeline.ledgers().read(object_id).await {
                    print!("{}", ledger.render());
                }
                ExitCode::SUCCESS
            }
            Err(error) => fail(error),
        }
    }

    fn fail(error: impl std::fmt::Display) -> ExitCode {
        log::error!("{error:#}");
        ExitCode::from(1)
    }
}

fn load_settings() -> Option<Settings> {
    match Settings::from_env_for_tools() {
        Ok(settings) => Some(settings),
        Err(error) => {
            log::error!("{error}");
            None
        }
    }
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&chrono::Utc))
        .map_err(|_| "expected an RFC 3339 time such as 2026-11-20T10:00:00Z".to_string())
}

/// SIGTERM (the host stopping the worker, a container stop) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    log::info!("shutting down");
}
