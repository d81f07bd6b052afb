//! The `ec2cached` command line. See `ec2cached --help` and docs/configuration.md, "Command line".

use clap::{Parser, Subcommand};
use ec2cached::config::Config;
use ec2cached::follower::{self, Follower};
use ec2cached::leaf::clock::now;
use ec2cached::leaf::keys;
use ec2cached::leaf::outcome::{Failed, Reason};
use ec2cached::poller::upload::Publisher;
use ec2cached::poller::{ec2, json, publish_sweep, Sweep};
use ec2cached::reports::{explain, facts, metrics, status};
use ec2cached::{daemon, writer};
use std::io::IsTerminal;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--help`, which is also the man page (help2man): every command with its arguments, once.
const HELP_TEMPLATE: &str = "\
{about-with-newline}
{usage-heading} {usage}

Commands:
  run                           Poll forever, publishing a snapshot every interval (the service);
                                with [follow], check the poller's S3 object every interval
  refresh [--from-file F.json]  Poll once, publish the snapshot (and to S3 with [publish]), exit;
                                with [follow], check S3 once
  install FILE                  Check a snapshot shipped by other means (signature, format,
                                domain, no rollback) and replace the installed one atomically
  keygen --secret FILE          Write a new signing key for [publish]; print its public key
  status                        Show the snapshot's age and counts, the last poll's outcome, and
                                whether the installed module reads the snapshot
  facts                         Print this host's identity (from IMDSv2) and its groups, services
                                and names (from the snapshot) as JSON, for Facter and Ansible
  export --format FORMAT [--output FILE]
                                Write the snapshot's names for a DNS server: hosts, zone,
                                dnsmasq, unbound, or reverse-zone (one file per zone into the
                                directory --output)
  explain NAME|INSTANCE-ID [--from-file F.json]
                                Say why instances are or are not behind a name (polls the API,
                                or reads F.json)
  help [COMMAND]                The options of one command

Options:
{options}{after-help}
";

/// What `--help` says after the options.
const AFTER_HELP: &str = "\
Every configuration key is optional; the packaged /etc/ec2cached.toml documents each.

Exit status:
  0  success (status: a usable snapshot is published, the last poll succeeded and the
     installed module reads the snapshot)
  1  a poll, publish, check, install or lookup failed or was refused, or status found a
     problem; the last good snapshot is never replaced by a worse one
  2  a bad configuration or command line (also `run` with a [follow] that has no url); the
     packaged unit does not restart on it";

/// `--help`'s description (`-h` shows the one line of Cargo.toml's `description`).
const LONG_ABOUT: &str = "\
ec2cached polls the EC2 DescribeInstances API and publishes the snapshot that libnss_ec2(8)
answers .ec2 host names from: security groups (tphon.ec2), services from the services tag
(postgres.tphon.ec2), the N-th of either (1.redis.tphon.ec2) and instance ids (i-0abc.ec2). A
failed poll never replaces the last good snapshot.";

/// The command line.
#[derive(Parser)]
#[command(
    name = "ec2cached",
    version,
    about,
    long_about = LONG_ABOUT,
    help_template = HELP_TEMPLATE,
    after_help = AFTER_HELP
)]
struct Cli {
    /// Configuration file [default: /etc/ec2cached.toml if it exists, else built-in defaults].
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
    /// Show the snapshot's age and counts, the last poll's outcome, and whether the installed
    /// module reads the snapshot.
    Status,
    /// Check a snapshot shipped by other means and install it (temp file, fsync, rename): the
    /// only safe way to replace the file that running programs map.
    Install {
        /// The snapshot file (from a poller, signed when [follow] trusted_keys is set).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Write a new Ed25519 signing key (mode 0600, never over an existing file) and print its
    /// public key, for [follow] trusted_keys.
    Keygen {
        /// Where to write the secret key.
        #[arg(long, value_name = "FILE")]
        secret: PathBuf,
    },
    /// Print this host's identity (IMDSv2) and its groups, services and names (from the
    /// snapshot) as one JSON object.
    Facts,
    /// Write the installed snapshot's names in a DNS server's format (no API call).
    Export {
        /// hosts, zone, dnsmasq, unbound or reverse-zone.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: ec2cached::reports::export::Kind,
        /// Replace this file atomically instead of printing (reverse-zone: a directory).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Say why instances are or are not behind a name (polls the API, or reads --from-file).
    Explain {
        /// A name (`postgres.tphon.ec2`) or an instance id (`i-0abc...`).
        #[arg(value_name = "NAME|INSTANCE-ID")]
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

fn sweep(cfg: &Config, from_file: Option<&PathBuf>) -> Result<Sweep, String> {
    match from_file {
        Some(f) => json::from_file(f, cfg),
        None => runtime()?.block_on(ec2::poll(cfg)).map_err(String::from),
    }
}

fn refresh(cfg: &Config, from_file: Option<&PathBuf>) -> Result<(), String> {
    writer::remove_stale_temps(&cfg.snapshot);
    if cfg.follow.is_some() {
        if from_file.is_some() {
            return Err("--from-file polls nothing on a follower: use `ec2cached install`".into());
        }
        return runtime()?.block_on(async {
            let mut f = Follower::new(cfg).await?;
            let follower::Verdict {
                outcome, why: msg, ..
            } = f.check(cfg).await;
            if outcome.good() {
                eprintln!("ec2cached: {msg}");
                Ok(())
            } else {
                Err(format!("{}: {msg}", outcome.label()))
            }
        });
    }
    if from_file.is_some() && cfg.publish.is_some() {
        return Err(
            "--from-file with [publish] would sign a fleet read from a file and send it to every \
             follower: use a config without [publish]"
                .into(),
        );
    }
    let started = now();
    runtime()?.block_on(async {
        let mut publisher = match &cfg.publish {
            Some(p) => Some(Publisher::new(cfg, p).await?),
            None => None,
        };
        let swept = match from_file {
            Some(f) => json::from_file(f, cfg).map_err(|e| Failed::new(Reason::Input, e)),
            None => ec2::poll(cfg).await,
        };
        let published = publish_sweep(cfg, started, swept, publisher.as_ref())?;
        let stats = published.stats;
        eprintln!(
            "ec2cached: published {}: {} names, {} live instances ({} ready)",
            cfg.snapshot.display(),
            stats.names,
            stats.live,
            stats.ready
        );
        if let (Some(p), Some(publish)) = (publisher.as_mut(), &cfg.publish) {
            let done = p.upload_swept(&cfg.snapshot, published.bytes).await?;
            eprintln!("ec2cached: {}: {}", publish.url, done.label());
        }
        Ok(())
    })
}

fn install(cfg: &Config, file: &Path) -> Result<(), String> {
    let unchecked = fleet_unchecked(cfg);
    let follow = cfg.follow.as_ref().unwrap_or(&unchecked);
    let cant = |e: &dyn std::fmt::Display| format!("cannot read {}: {e}", file.display());
    // A FIFO or a device is refused, not waited on.
    let f = ec2cached::leaf::files::open_regular(file).map_err(|e| cant(&e))?;
    // No more than the size cap (and one byte to tell that it is over).
    let mut bytes = Vec::new();
    f.take(follow.max_size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cant(&e))?;
    let follower::Verdict {
        outcome, why: msg, ..
    } = follower::check_and_install(cfg, follow, &bytes);
    if outcome.good() {
        eprintln!("ec2cached: {msg}");
        Ok(())
    } else {
        Err(format!(
            "{} not installed: {}: {msg}",
            file.display(),
            outcome.label()
        ))
    }
}

/// `facts`: IMDS, then the snapshot; one JSON object on stdout.
fn facts(cfg: &Config) -> Result<(), String> {
    let id = runtime()?.block_on(facts::identity())?;
    let f = facts::from_snapshot(cfg, id, now())?;
    let json = serde_json::to_string_pretty(&f).map_err(|e| e.to_string())?;
    println!("{json}");
    Ok(())
}

/// `install` on a host without [follow]: no signature required, the default size cap; bounded
/// in age by the poller's own max_age with [publish], else the operator's own files.
fn fleet_unchecked(cfg: &Config) -> ec2cached::config::Follow {
    ec2cached::config::Follow {
        url: None,
        trusted_keys: Vec::new(),
        max_size: ec2cached::config::DEFAULT_MAX_SIZE,
        fleet: String::new(),
        max_age: cfg.publish.as_ref().map(|_| cfg.max_age),
        own_files: cfg.publish.is_none(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // By default our own messages from info up, and only errors from the SDK: its warnings
    // (a region not found in IMDS, a missing profile file) come with Debug dumps, and what
    // matters of them is in the one-line error of the poll. EC2CACHED_LOG=debug shows all.
    let filter = tracing_subscriber::EnvFilter::try_from_env("EC2CACHED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,ec2cached=info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Command::Keygen { secret } = &cli.command {
        // Needs no config: the key is made before any config names it.
        return match keys::keygen(secret) {
            Ok(public) => {
                println!("{public}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ec2cached: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ec2cached: {e}");
            return ExitCode::from(2);
        }
    };
    let key_error = match &cli.command {
        Command::Run | Command::Refresh { .. } => cfg
            .publish
            .as_ref()
            .and_then(|p| keys::load_signing(&p.signing_key).err()),
        _ => None,
    };
    let result = match &cli.command {
        Command::Run if cfg.follow.as_ref().is_some_and(|f| f.url.is_none()) => {
            // A configuration error like those above: exit 2, which the unit does not restart
            // (RestartPreventExitStatus=2) until the configuration changes.
            eprintln!(
                "ec2cached: {}: [follow] has no `url`: `run` has nothing to follow (`ec2cached \
                 install FILE` installs snapshots shipped by other means)",
                cfg.file.display()
            );
            return ExitCode::from(2);
        }
        Command::Run | Command::Refresh { .. } if key_error.is_some() => {
            // The signing key is configuration too (missing, readable by others, not a key):
            // exit 2, which the unit does not restart until it is fixed.
            eprintln!(
                "ec2cached: {}: [publish] signing_key: {}",
                cfg.file.display(),
                key_error.unwrap_or_default()
            );
            return ExitCode::from(2);
        }
        Command::Run => runtime().and_then(|rt| {
            let r = rt.block_on(daemon::run(cfg, || {
                // Type=notify under systemd; does nothing elsewhere (no NOTIFY_SOCKET).
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }));
            // Blocking tasks get half a second: an install that has replaced the snapshot
            // records it in the status file (microseconds); one still waiting for the writers'
            // lock is not waited for: the exit releases what it holds, and its temp file is
            // removed as stale at the next start.
            rt.shutdown_timeout(std::time::Duration::from_millis(500));
            r
        }),
        Command::Refresh { from_file } => {
            let r = refresh(&cfg, from_file.as_ref());
            metrics::write(&cfg);
            r
        }
        Command::Facts => facts(&cfg),
        Command::Export { format, output } => {
            ec2cached::reports::export::run(&cfg, *format, output.as_deref(), now())
        }
        Command::Status => {
            let status::Report { text, healthy } = status::report(&cfg);
            print!("{text}");
            if healthy {
                Ok(())
            } else {
                return ExitCode::FAILURE;
            }
        }
        Command::Install { file } => {
            let r = install(&cfg, file);
            metrics::write(&cfg);
            r
        }
        Command::Keygen { .. } => Ok(()),
        Command::Explain { .. } if cfg.follow.is_some() => {
            Err("explain needs the poller's naming rules and EC2 access: run it on a poller".into())
        }
        Command::Explain { name, from_file } => sweep(&cfg, from_file.as_ref()).and_then(|s| {
            let explain::Explained { text, found } = explain::explain(&cfg, &s.instances, name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_names_the_default_config_every_command_and_the_exit_codes() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains(ec2cached::config::DEFAULT_CONFIG), "{help}");
        let commands = help.split("\nCommands:\n").nth(1).unwrap_or_default();
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name();
            let line = commands
                .lines()
                .find(|l| l.starts_with(&format!("  {name} ")))
                .unwrap_or_else(|| panic!("{name} missing: {help}"));
            // Every argument of the command is on its line.
            for arg in sub.get_arguments() {
                let shown = match arg.get_long() {
                    Some(l) => format!("--{l}"),
                    None => arg.get_value_names().unwrap_or_default()[0].to_string(),
                };
                assert!(line.contains(&shown), "{name}: {shown} missing: {line}");
            }
        }
        for code in ["  0  ", "  1  ", "  2  "] {
            assert!(help.contains(code), "{code}: {help}");
        }
    }
}
