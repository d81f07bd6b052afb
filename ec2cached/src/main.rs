//! The `ec2cached` command line. See `ec2cached --help` and the README.

use clap::{Parser, Subcommand};
use ec2cached::config::Config;
use ec2cached::publish::{self, now};
use ec2cached::{daemon, explain, source, status};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Polls the EC2 API and publishes the snapshot that libnss_ec2 resolves `.ec2` names from.
#[derive(Parser)]
#[command(name = "ec2cached", version, about, long_about = None)]
struct Cli {
    /// Configuration file.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Poll forever, publishing a snapshot every interval (the service).
    Run,
    /// Poll once, publish the snapshot, exit.
    Refresh {
        /// Read `aws ec2 describe-instances` JSON instead of calling the API.
        #[arg(long, value_name = "F.json")]
        from_file: Option<PathBuf>,
    },
    /// Show the snapshot's age and counts and the last poll's outcome.
    Status,
    /// Say why instances are or are not behind a name (polls the API, or reads --from-file).
    Explain {
        /// A name (`postgres.tphon.ec2`) or an instance id (`i-0abc...`).
        name: String,
        /// Read `aws ec2 describe-instances` JSON instead of calling the API.
        #[arg(long, value_name = "F.json")]
        from_file: Option<PathBuf>,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn sweep(cfg: &Config, from_file: Option<&PathBuf>) -> Result<source::Sweep, String> {
    match from_file {
        Some(f) => source::from_file(f, cfg),
        None => runtime()?.block_on(source::poll(cfg)),
    }
}

fn refresh(cfg: &Config, from_file: Option<&PathBuf>) -> Result<(), String> {
    publish::remove_stale_temps(&cfg.snapshot);
    let started = now();
    let (stats, _) = publish::publish_and_record(cfg, started, sweep(cfg, from_file))?;
    eprintln!(
        "ec2cached: published {}: {} names, {} live instances ({} ready)",
        cfg.snapshot.display(),
        stats.names,
        stats.live,
        stats.ready
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("EC2CACHED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ec2cached: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Command::Run => runtime().and_then(|rt| {
            rt.block_on(daemon::run(cfg, || {
                // Type=notify under systemd; does nothing elsewhere (no NOTIFY_SOCKET).
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }))
        }),
        Command::Refresh { from_file } => refresh(&cfg, from_file.as_ref()),
        Command::Status => {
            let (text, healthy) = status::report(&cfg);
            print!("{text}");
            if healthy {
                Ok(())
            } else {
                return ExitCode::FAILURE;
            }
        }
        Command::Explain { name, from_file } => sweep(&cfg, from_file.as_ref()).and_then(|s| {
            let (text, found) = explain::explain(&cfg, &s.instances, name);
            print!("{text}");
            if found {
                Ok(())
            } else {
                Err(format!("{name} does not resolve"))
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ec2cached: {e}");
            ExitCode::FAILURE
        }
    }
}
