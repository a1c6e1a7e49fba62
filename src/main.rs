#![forbid(unsafe_code)]
//! The `signup-bridge` command: the Functions custom handler (`serve`) and operator tools.

use clap::{Parser, Subcommand};
use signup_bridge::poll_audit_logs::poller::PollOptions;
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
