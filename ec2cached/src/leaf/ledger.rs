//! The status ledger: what the last polls, uploads and follow checks did, kept in
//! `<snapshot>.status` for `ec2cached status`, the metrics and the facts.

use crate::leaf::files::{lock_file, write_atomic};
use crate::leaf::outcome::Reason;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the last polls did; kept in `<snapshot>.status` for `ec2cached status`.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq, Eq)]
#[serde(default)]
pub struct Status {
    /// When the last poll started.
    pub last_attempt: Option<u64>,
    /// When a snapshot was last published.
    pub last_success: Option<u64>,
    /// The last failure's one-line reason (kept after a later success, with its time).
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<u64>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// API requests of the last successful sweep.
    pub requests: u32,
    /// Counts of the last published snapshot.
    pub instances: usize,
    /// Live instances.
    pub live: usize,
    /// Ready instances.
    pub ready: usize,
    /// Names.
    pub names: usize,
    /// What the last refresh did not publish, and why.
    pub problems: Vec<String>,
    /// EC2 API requests of every sweep so far (failed ones too, the SDK's retries included).
    pub api_requests_total: u64,
    /// Fleet mode: the S3 object this host publishes to or follows.
    pub s3_url: Option<String>,
    /// Poller: what the last upload did (`uploaded`, `unchanged`, `newer_published`), or the
    /// failure, and when.
    pub publish_outcome: Option<String>,
    /// When the last upload or decision not to upload happened.
    pub published_at: Option<u64>,
    /// Poller: when the last sweep it found in S3 started (it uploaded the sweep, the object
    /// already had its names, or a later sweep): what followers install is current as of then.
    pub s3_confirmed: Option<u64>,
    /// Follower: the outcome of the last check (`unchanged`, `installed`, `refused_signature`,
    /// `refused_rollback`, `refused_corrupt`, `refused_domain`, `error`).
    pub follow_outcome: Option<String>,
    /// S3 requests sent by this host (retries included), a running total.
    pub s3_requests: u64,
    /// S3 body bytes received or sent, a running total.
    pub s3_bytes: u64,
    /// Poller: the latest pollers' sweep seen in S3 (an older object there was put back).
    pub s3_high_water: u64,
    /// Poller: objects it replaced that were signed by a key neither its own nor in
    /// `peer_keys` (another poller that does not list this one?), a running total.
    pub s3_foreign_replaced: u64,
    /// The last such key, and when.
    pub s3_foreign_key: Option<String>,
    /// When the last such object was replaced.
    pub s3_foreign_at: Option<u64>,
    /// Poller: failed polls by reason (the metric's `reason` label), running totals.
    pub poll_failures: BTreeMap<String, u64>,
    /// Follower: checks by outcome (the metric's `outcome` label), running totals.
    pub follow_fetches: BTreeMap<String, u64>,
    /// Poller: how long the last good sweep took, in milliseconds.
    pub sweep_ms: Option<u64>,
    /// `[events]`: events received, by kind (`state_change`, `tag_change`, `api_call`), totals.
    pub events_received: BTreeMap<String, u64>,
    /// `[events]`: events ignored, by reason (`malformed`, `unknown`, `no_instance`,
    /// `not_polled`: an account or region not configured), totals.
    pub events_ignored: BTreeMap<String, u64>,
    /// `[events]`: events applied (published), a total.
    pub events_applied: u64,
    /// `[events]`: when the last event was received.
    pub events_last_at: Option<u64>,
    /// `[events]`: the age of the oldest event of the last batch applied, when it was published.
    pub events_lag_secs: Option<u64>,
    /// `[events]`: from the last batch's arrival to its publish, in milliseconds.
    pub events_publish_ms: Option<u64>,
    /// `[events]`: the queue's last error (cleared by the next good receive), and when.
    pub events_error: Option<String>,
    /// `[events]`: why the last batch was not applied (reading the instances again, the
    /// publish, the upload or the delete), and when; cleared by the next batch applied.
    pub events_apply_error: Option<String>,
}

/// Path of the status file of a snapshot.
pub fn status_path(snapshot: &Path) -> PathBuf {
    let mut s = snapshot.as_os_str().to_owned();
    s.push(".status");
    PathBuf::from(s)
}

impl Status {
    /// Reads the status file; a missing or unreadable one is an empty status.
    pub fn load(snapshot: &Path) -> Status {
        std::fs::read(status_path(snapshot))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Changes the status file: reads it, lets `change` change it, writes it back atomically.
    /// The one way it is written; a failure to write is logged, never fatal.
    ///
    /// Writers (the daemon as poller or follower, `refresh`) take `<snapshot>.status.lock` around the read
    /// and the write, so that none loses another's update and the `*_total` counters never go
    /// down (Prometheus would read a reset). A lock that cannot be had within 10 s is logged
    /// and the update made without it: the ledger is never worth a stuck poll.
    pub fn update<R>(snapshot: &Path, change: impl FnOnce(&mut Status) -> R) -> R {
        let _held = Status::lock(snapshot);
        let mut st = Status::load(snapshot);
        let r = change(&mut st);
        st.save(snapshot);
        r
    }

    /// [`Status::update`] on tokio's blocking pool: the daemon's runtime thread never waits
    /// for the status lock (SIGTERM and SIGHUP would wait with it).
    pub async fn update_off_runtime(
        snapshot: &Path,
        change: impl FnOnce(&mut Status) + Send + 'static,
    ) {
        let path = snapshot.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || Status::update(&path, change)).await;
    }

    /// Lets `read` read the status file under its lock, as what it makes of it must not go
    /// back in time (the metrics file: its counters never decrease).
    pub fn read<R>(snapshot: &Path, read: impl FnOnce(&Status) -> R) -> R {
        let _held = Status::lock(snapshot);
        read(&Status::load(snapshot))
    }

    /// `<snapshot>.status.lock`, held; `None` (logged) if it cannot be had within 10 s.
    fn lock(snapshot: &Path) -> Option<nix::fcntl::Flock<std::fs::File>> {
        let mut lock = status_path(snapshot).into_os_string();
        lock.push(".lock");
        lock_file(Path::new(&lock), std::time::Duration::from_secs(10))
            .inspect_err(|e| tracing::warn!("status file: {e}"))
            .ok()
    }

    fn save(&self, snapshot: &Path) {
        let Ok(bytes) = serde_json::to_vec_pretty(self) else {
            return;
        };
        if let Err(e) = write_atomic(&status_path(snapshot), &bytes) {
            tracing::warn!("cannot write the status file: {e}");
        }
    }

    /// Records a failure.
    pub fn failed(&mut self, at: u64, why: &str) {
        self.last_attempt = Some(at);
        self.last_error = Some(why.to_string());
        self.last_error_at = Some(at);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
    }

    /// Records a failed poll (or upload) and counts it under `reason`.
    pub fn poll_failed(&mut self, at: u64, why: &str, reason: Reason) {
        self.failed(at, why);
        let n = self.poll_failures.entry(reason.label().into()).or_default();
        *n = n.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers beside each other lose no update (issue 22, item 10).
    #[test]
    fn concurrent_updates_all_count() {
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("hosts.snap");
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let snap = snap.clone();
                std::thread::spawn(move || {
                    for _ in 0..40 {
                        Status::update(&snap, |st| st.api_requests_total += 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(Status::load(&snap).api_requests_total, 240);
    }
}
