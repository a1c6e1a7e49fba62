#![forbid(unsafe_code)]
//! The `signup-bridge` command: the Functions custom handler (`serve`) and operator tools.

use clap::{Parser, Subcommand};
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
