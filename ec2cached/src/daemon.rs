//! `ec2cached run`: poll (or, on a follower, check S3) every `interval` (with jitter), again at
//! once on SIGHUP, back off on failure, exit cleanly on SIGTERM/SIGINT. The published snapshot
//! keeps serving throughout.

use crate::config::Config;
use crate::fleet::{Follower, Outcome, Publisher};
use crate::publish::{self, now};
use crate::source;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// What this host does each interval; its clients are built once.
#[derive(Debug)]
pub enum Role {
    /// Polls EC2, publishes locally, and to S3 with `[publish]`.
    Poller(Option<Box<Publisher>>),
    /// Follows the S3 object of `[follow]`.
    Follower(Follower),
}

impl Role {
    /// The role `cfg` asks for, with its S3 client and key loaded.
    pub async fn new(cfg: &Config) -> Result<Role, String> {
        if cfg.follow.is_some() {
            return Ok(Role::Follower(Follower::new(cfg).await?));
        }
        Ok(Role::Poller(match &cfg.publish {
            Some(p) => Some(Box::new(Publisher::new(cfg, p).await?)),
            None => None,
        }))
    }

    /// One poll and publish (or one follow check); updates the status file either way.
    pub async fn cycle(&mut self, cfg: &Config) -> Result<(), String> {
        match self {
            Role::Follower(f) => {
                let (outcome, msg) = f.check(cfg).await;
                match outcome {
                    Outcome::Installed => tracing::info!("{msg}"),
                    Outcome::Unchanged => tracing::debug!("{msg}"),
                    // A refused object stays refused until it changes: not a transient error
                    // to back off from, but the log says it at every check.
                    o if o != Outcome::Error => {
                        tracing::warn!(
                            "refused {}: {msg}",
                            o.label().trim_start_matches("refused_")
                        )
                    }
                    _ => return Err(msg),
                }
                Ok(())
            }
            Role::Poller(publisher) => cycle(cfg, publisher.as_deref_mut()).await,
        }
    }
}

/// One poll and publish, locally and (with a publisher) to S3; updates the status file.
///
/// When only the upload failed, the retries (after the backoff) upload that same snapshot again
/// without sweeping EC2 again, until `interval` has passed since the sweep: an S3 outage does
/// not spend the account's DescribeInstances budget.
pub async fn cycle(cfg: &Config, mut publisher: Option<&mut Publisher>) -> Result<(), String> {
    if let Some(p) = publisher.as_deref_mut() {
        let recent = p
            .swept_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(u64::from(cfg.interval)));
        if let Some(bytes) = p.pending.take().filter(|_| recent) {
            let done = p.upload_and_record(&cfg.snapshot, &bytes).await;
            if done.is_err() {
                p.pending = Some(bytes);
            }
            tracing::info!("S3: {}", done?.label());
            return Ok(());
        }
    }
    let started = now();
    let key = publisher.as_ref().map(|p| p.key.clone());
    let (stats, requests, bytes) =
        publish::publish_and_record(cfg, started, source::poll(cfg).await, key.as_ref())?;
    tracing::info!(
        instances = stats.instances,
        live = stats.live,
        ready = stats.ready,
        names = stats.names,
        requests,
        "published {}",
        cfg.snapshot.display()
    );
    if let Some(p) = publisher {
        p.swept_at = Some(std::time::Instant::now());
        let done = p.upload_and_record(&cfg.snapshot, &bytes).await;
        if done.is_err() {
            p.pending = Some(bytes);
        }
        tracing::info!("S3: {}", done?.label());
    }
    Ok(())
}

/// Delay before the next poll after `failures` failures in a row: doubling from 1 s up to the
/// interval, with "equal jitter" (half fixed, half random) so a fleet of daemons spreads out.
pub fn backoff(failures: u32, interval: u32) -> Duration {
    let ceiling = f64::from(interval.max(1));
    let step = 2f64
        .powi(failures.saturating_sub(1).min(30) as i32)
        .min(ceiling);
    Duration::from_secs_f64(step / 2.0 + fastrand::f64() * step / 2.0)
}

/// Delay after a success: the interval ±10 %.
pub fn next_poll(interval: u32) -> Duration {
    Duration::from_secs_f64(f64::from(interval) * (0.9 + fastrand::f64() * 0.2))
}

/// True when a snapshot the module would answer from is already published (from before a
/// restart): it parses and is not older than its `max_age`.
fn usable(cfg: &Config) -> bool {
    std::fs::read(&cfg.snapshot).is_ok_and(|b| {
        nss_ec2_snapshot::Snapshot::parse(&b).is_ok_and(|s| {
            let h = s.header();
            h.max_age_secs == 0
                || now() <= h.generated_unix.saturating_add(u64::from(h.max_age_secs))
        })
    })
}

/// Runs until SIGTERM or SIGINT. `ready` is called once, as soon as a good snapshot is
/// published: at start when the last good one is still there (a restart during an API outage
/// must not fail the service), else after the first good poll.
pub async fn run(cfg: Config, mut ready: impl FnMut()) -> Result<(), String> {
    let sig = |k| signal(k).map_err(|e| format!("cannot install signal handlers: {e}"));
    let (mut term, mut int, mut hup) = (
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
        sig(SignalKind::hangup())?,
    );
    publish::remove_stale_temps(&cfg.snapshot);
    if nix::unistd::geteuid().is_root() {
        tracing::warn!("running as root: the daemon needs no privilege, run it as its own account");
    }
    tracing::info!(
        snapshot = %cfg.snapshot.display(),
        interval = cfg.interval,
        "ec2cached starting"
    );
    let mut role = Role::new(&cfg).await?;
    let mut failures = 0u32;
    let mut told_ready = usable(&cfg);
    if told_ready {
        ready();
    }
    loop {
        let outcome = tokio::select! {
            r = role.cycle(&cfg) => r,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        // Ready once names resolve: a snapshot is published and fresh. Not merely after a cycle
        // that did not fail (a follower that refused an object has nothing to serve yet), and
        // not only after a wholly good one (a poller whose upload failed serves its host).
        if !told_ready && usable(&cfg) {
            ready();
            told_ready = true;
        }
        let delay = match outcome {
            Ok(()) => {
                failures = 0;
                next_poll(cfg.interval)
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                // A follower that cannot read S3 (an outage, SlowDown) keeps its pace: never
                // more requests than when all is well.
                let d = match role {
                    Role::Follower(_) => next_poll(cfg.interval),
                    Role::Poller(_) => backoff(failures, cfg.interval),
                };
                tracing::error!(
                    failures,
                    retry_in = format!("{:.1}s", d.as_secs_f64()),
                    "{} failed, keeping the last snapshot: {e}",
                    if matches!(role, Role::Follower(_)) {
                        "check"
                    } else {
                        "poll"
                    }
                );
                d
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = hup.recv() => tracing::info!("SIGHUP: polling now"),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("ec2cached stopping");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_interval_with_jitter() {
        for _ in 0..200 {
            let d1 = backoff(1, 30).as_secs_f64();
            assert!((0.5..=1.0).contains(&d1), "{d1}");
            let d3 = backoff(3, 30).as_secs_f64();
            assert!((2.0..=4.0).contains(&d3), "{d3}");
            let d = backoff(50, 30).as_secs_f64();
            assert!((15.0..=30.0).contains(&d), "{d}");
            let n = next_poll(30).as_secs_f64();
            assert!((27.0..=33.0).contains(&n), "{n}");
        }
    }
}
