//! Building and signing: a sweep becomes a snapshot, signed in fleet mode, handed to the writer,
//! and recorded in the status ledger either way.

use crate::config::Config;
use crate::leaf::ledger::Status;
use crate::leaf::outcome::{Failed, Reason};
use crate::poller::Sweep;
use crate::writer::{install, NotInstalled};
use nss_ec2_snapshot::fleet::{build, Stats};
use nss_ec2_snapshot::{Meta, Snapshot};

/// What a publish made.
#[derive(Debug)]
pub struct Published {
    /// The counts of the snapshot.
    pub stats: Stats,
    /// What it left out, and why (`not published:` lines).
    pub problems: Vec<String>,
    /// Its bytes, signed in fleet mode (for S3).
    pub bytes: Vec<u8>,
    /// API requests of the sweep it came from.
    pub requests: u32,
}

/// Builds the snapshot of a sweep, signs it with `signer` (fleet mode) and installs it.
pub fn publish(
    cfg: &Config,
    sweep: &Sweep,
    generated: u64,
    signer: Option<&ed25519_dalek::SigningKey>,
) -> Result<Published, String> {
    let built = build(&sweep.instances, &cfg.rules);
    let problems: Vec<String> = built
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.subject, p.reason))
        .collect();
    for p in &problems {
        tracing::warn!("not published: {p}");
    }
    let meta = Meta {
        domain: cfg.rules.domain.clone(),
        generated_unix: generated,
        interval_secs: cfg.interval,
        max_age_secs: cfg.max_age,
    };
    let mut bytes = built.table.encode(&meta).map_err(|e| e.to_string())?;
    if let Some(key) = signer {
        bytes = crate::leaf::keys::sign(key, &bytes)?;
    }
    // Never publish what a reader would refuse.
    Snapshot::parse(&bytes).map_err(|e| format!("self-check failed: {e}"))?;
    install(&cfg.snapshot, &bytes).map_err(|e| match e {
        NotInstalled::Rollback(..) => format!(
            "not published: the snapshot at {} is {e} (another writer, or this host's clock \
             went back)",
            cfg.snapshot.display()
        ),
        NotInstalled::Io(e) => e,
    })?;
    Ok(Published {
        stats: built.stats,
        problems,
        bytes,
        requests: sweep.requests,
    })
}

/// Publishes the outcome of a sweep that started at `started` and records it in the status file
/// either way (the snapshot is only replaced on success).
pub fn publish_and_record(
    cfg: &Config,
    started: u64,
    sweep: Result<Sweep, Failed>,
    signer: Option<&ed25519_dalek::SigningKey>,
) -> Result<Published, Failed> {
    // Every request counts, a failed sweep's too (throttling is when they matter most).
    let requests = match &sweep {
        Ok(s) => s.requests,
        Err(f) => f.requests,
    };
    let result = sweep.and_then(|s| {
        publish(cfg, &s, started, signer)
            .map(|p| (p, s.elapsed))
            .map_err(|e| Failed::new(Reason::Publish, e))
    });
    Status::update(&cfg.snapshot, |status| {
        status.api_requests_total = status
            .api_requests_total
            .saturating_add(u64::from(requests));
        match &result {
            Ok((p, elapsed)) => succeeded(status, started, p, *elapsed),
            Err(f) => status.poll_failed(started, &f.message, f.reason),
        }
    });
    result.map(|(p, _)| p)
}

/// Records a successful publish in the status.
fn succeeded(status: &mut Status, at: u64, p: &Published, elapsed: std::time::Duration) {
    status.last_attempt = Some(at);
    status.last_success = Some(at);
    status.consecutive_failures = 0;
    status.requests = p.requests;
    status.sweep_ms = Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    status.instances = p.stats.instances;
    status.live = p.stats.live;
    status.ready = p.stats.ready;
    status.names = p.stats.names;
    status.problems = p.problems.clone();
}
