//! Building and signing: a sweep becomes a snapshot, signed in fleet mode, handed to the writer,
//! and recorded in the status ledger either way.

use crate::config::Config;
use crate::leaf::ledger::Status;
use crate::leaf::outcome::{Failed, Reason};
use crate::poller::Sweep;
use crate::writer::{install_and, NotInstalled};
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

/// Builds the snapshot of a sweep, signs it with `signer` (fleet mode) and installs it, calling
/// `before` with what is about to be installed just before the new snapshot becomes visible (not
/// when the installed one has the same bytes).
fn publish_then(
    cfg: &Config,
    sweep: &Sweep,
    generated: u64,
    signer: Option<&ed25519_dalek::SigningKey>,
    before: impl FnOnce(&Published),
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
        let fleet = cfg.publish.as_ref().map_or("", |p| p.fleet.as_str());
        bytes = crate::leaf::keys::sign(key, fleet, &bytes)?;
    }
    // Never publish what a reader would refuse.
    Snapshot::parse(&bytes).map_err(|e| format!("self-check failed: {e}"))?;
    let published = Published {
        stats: built.stats,
        problems,
        bytes,
        requests: sweep.requests,
    };
    install_and(&cfg.snapshot, &published.bytes, || before(&published)).map_err(|e| match e {
        NotInstalled::Rollback(..) => format!(
            "not published: the snapshot at {} is {e} (another writer, or this host's clock \
             went back)",
            cfg.snapshot.display()
        ),
        NotInstalled::Io(e) => e,
    })?;
    Ok(published)
}

/// Publishes a patch of the last sweep (`[events]`) as generation `generated`, recording nothing
/// of a sweep in the status file: a patch must not hide a failing sweep (its failures, last good
/// poll, requests and duration stay the sweeps'). The patch's own figures are the caller's.
pub fn publish_patch(
    cfg: &Config,
    generated: u64,
    sweep: &Sweep,
    signer: Option<&ed25519_dalek::SigningKey>,
) -> Result<Published, String> {
    publish_then(cfg, sweep, generated, signer, |_| {})
}

/// Publishes the outcome of a sweep that started at `started` and records it in the status file
/// either way (the snapshot is only replaced on success). A success is recorded before the new
/// snapshot becomes visible, so that whoever resolves its names and then asks `ec2cached
/// status` reads that success.
pub fn publish_and_record(
    cfg: &Config,
    started: u64,
    sweep: Result<Sweep, Failed>,
    signer: Option<&ed25519_dalek::SigningKey>,
) -> Result<Published, Failed> {
    // Every request counts, a failed sweep's too (throttling is when they matter most).
    let requests = u64::from(match &sweep {
        Ok(s) => s.requests,
        Err(f) => f.requests,
    });
    let count =
        |st: &mut Status| st.api_requests_total = st.api_requests_total.saturating_add(requests);
    let sweep = match sweep {
        Ok(s) => s,
        Err(f) => {
            Status::update(&cfg.snapshot, |st| {
                count(st);
                st.poll_failed(started, &f.message, f.reason);
            });
            return Err(f);
        }
    };
    // Records a success; returns what the ledger said of the last success before, to be put back
    // if the snapshot then fails to land (the rename), so that no success is claimed for it.
    let record = |p: &Published| {
        Status::update(&cfg.snapshot, |st| {
            let before = Success::of(st);
            count(st);
            succeeded(st, started, p, sweep.elapsed);
            before
        })
    };
    let mut prior: Option<Success> = None;
    let result = publish_then(cfg, &sweep, started, signer, |p| prior = Some(record(p)));
    match (&result, prior) {
        (Ok(p), None) => {
            record(p);
        }
        (Ok(_), Some(_)) => {}
        (Err(e), prior) => Status::update(&cfg.snapshot, |st| {
            // Only the success's own fields go back: counters other writers added meanwhile
            // stay, and this poll's requests were counted once, with the success.
            match prior {
                Some(before) => before.put_back(st),
                None => count(st),
            }
            st.poll_failed(started, e, Reason::Publish);
        }),
    }
    result.map_err(|e| Failed::new(Reason::Publish, e))
}

/// The fields a success sets in the ledger, as they were before it.
struct Success {
    last_attempt: Option<u64>,
    last_success: Option<u64>,
    consecutive_failures: u32,
    requests: u32,
    sweep_ms: Option<u64>,
    counts: (usize, usize, usize, usize),
    problems: Vec<String>,
}

impl Success {
    fn of(st: &Status) -> Success {
        Success {
            last_attempt: st.last_attempt,
            last_success: st.last_success,
            consecutive_failures: st.consecutive_failures,
            requests: st.requests,
            sweep_ms: st.sweep_ms,
            counts: (st.instances, st.live, st.ready, st.names),
            problems: st.problems.clone(),
        }
    }

    fn put_back(self, st: &mut Status) {
        st.last_attempt = self.last_attempt;
        st.last_success = self.last_success;
        st.consecutive_failures = self.consecutive_failures;
        st.requests = self.requests;
        st.sweep_ms = self.sweep_ms;
        (st.instances, st.live, st.ready, st.names) = self.counts;
        st.problems = self.problems;
    }
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
    // A sweep carries whatever a batch of events that failed carried.
    status.events_apply_error = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf::ledger::Status;

    fn config(dir: &std::path::Path) -> Config {
        let text = format!("snapshot = {:?}", dir.join("hosts.snap"));
        Config::parse(&dir.join("c.toml"), &text).unwrap()
    }

    fn sweep(requests: u32) -> Sweep {
        Sweep {
            requests,
            ..Sweep::default()
        }
    }

    /// The ledger after each kind of poll: a success, a failed sweep, and a snapshot that
    /// could not land after its success was recorded (put back: no success claimed for it).
    #[test]
    fn every_poll_is_in_the_ledger_once_and_a_success_only_when_it_landed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let p = publish_and_record(&cfg, 1_000, Ok(sweep(3)), None).unwrap();
        assert_eq!(p.requests, 3);
        let st = Status::load(&cfg.snapshot);
        assert_eq!(
            (st.last_success, st.last_attempt),
            (Some(1_000), Some(1_000))
        );
        assert_eq!(
            (st.api_requests_total, st.requests, st.consecutive_failures),
            (3, 3, 0)
        );

        let throttled = Failed {
            reason: Reason::Throttled,
            message: "RequestLimitExceeded".into(),
            requests: 2,
        };
        assert!(publish_and_record(&cfg, 2_000, Err(throttled), None).is_err());
        let st = Status::load(&cfg.snapshot);
        assert_eq!(st.last_success, Some(1_000));
        assert_eq!((st.api_requests_total, st.consecutive_failures), (5, 1));
        assert_eq!(st.poll_failures.get("throttled"), Some(&1));
        assert_eq!(st.last_error.as_deref(), Some("RequestLimitExceeded"));

        // The snapshot's path is now a directory: the rename fails after the success was
        // recorded.
        std::fs::remove_file(&cfg.snapshot).unwrap();
        std::fs::create_dir(&cfg.snapshot).unwrap();
        let f = publish_and_record(&cfg, 3_000, Ok(sweep(4)), None).unwrap_err();
        assert_eq!(f.reason, Reason::Publish);
        let st = Status::load(&cfg.snapshot);
        assert_eq!(
            st.last_success,
            Some(1_000),
            "no success for a snapshot that did not land"
        );
        assert_eq!(
            (st.requests, st.api_requests_total, st.consecutive_failures),
            (3, 9, 2)
        );
        assert_eq!(st.poll_failures.get("publish"), Some(&1));
        assert_eq!(st.last_error_at, Some(3_000));
    }
}
