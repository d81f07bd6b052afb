//! Turning a sweep into a published snapshot, and the status file beside it.
//!
//! Publishing is write-temp, fsync, rename, fsync the directory: readers that still map the old
//! file keep a whole old generation, new readers get a whole new one, and a crash at any moment
//! leaves one or the other. A failed poll never reaches this module, so the last good snapshot
//! stays byte-for-byte as it was.

use crate::config::Config;
use crate::source::Sweep;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use nss_ec2_snapshot::fleet::{build, Stats};
use nss_ec2_snapshot::{Meta, Snapshot};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the last polls did; kept in `<snapshot>.status` for `ec2cached status`.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq, Eq)]
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

    /// Writes the status file atomically. Failure is logged, never fatal.
    pub fn save(&self, snapshot: &Path) {
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
}

/// Writes `bytes` to `path` by temp file, fsync and rename, world-readable (every process on the
/// host reads the snapshot), then fsyncs the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{}{}.", temp_prefix(path), std::process::id()))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

fn temp_prefix(path: &Path) -> String {
    format!(
        ".{}.",
        path.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// Removes temp files that a killed process left beside the snapshot and its status file.
/// Temp names carry the writer's
/// pid (`.hosts.snap.<pid>.<random>.tmp`): a file whose writer is gone is removed; one whose
/// writer still runs (another `refresh` publishing right now) is left alone.
pub fn remove_stale_temps(snapshot: &Path) {
    remove_stale(snapshot);
    remove_stale(&status_path(snapshot));
}

fn remove_stale(path: &Path) {
    let Some(dir) = path.parent() else { return };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = temp_prefix(path);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(&prefix) && name.ends_with(".tmp")) {
            continue;
        }
        let writer = name[prefix.len()..]
            .split('.')
            .next()
            .and_then(|p| p.parse::<i32>().ok());
        let gone = match writer {
            Some(pid) if pid > 0 => {
                pid != std::process::id() as i32
                    && kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH)
            }
            // Not one of ours by name: remove it only once it is clearly abandoned.
            _ => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600)),
        };
        if gone && std::fs::remove_file(e.path()).is_ok() {
            tracing::info!("removed stale temp file {}", e.path().display());
        }
    }
}

/// Builds the snapshot of a sweep and publishes it. Returns the counts.
pub fn publish(
    cfg: &Config,
    sweep: &Sweep,
    generated: u64,
) -> Result<(Stats, Vec<String>), String> {
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
    let bytes = built.table.encode(&meta).map_err(|e| e.to_string())?;
    // Never publish what a reader would refuse.
    Snapshot::parse(&bytes).map_err(|e| format!("self-check failed: {e}"))?;
    write_atomic(&cfg.snapshot, &bytes)
        .map_err(|e| format!("cannot publish {}: {e}", cfg.snapshot.display()))?;
    Ok((built.stats, problems))
}

/// Publishes the outcome of a sweep that started at `started` and records it in the status file
/// either way (the snapshot is only replaced on success). Returns the counts and the number of
/// API requests the sweep made.
pub fn publish_and_record(
    cfg: &Config,
    started: u64,
    sweep: Result<Sweep, String>,
) -> Result<(Stats, u32), String> {
    let mut status = Status::load(&cfg.snapshot);
    let result = sweep.and_then(|s| {
        let (stats, problems) = publish(cfg, &s, started)?;
        succeeded(&mut status, started, &s, stats, problems);
        Ok((stats, s.requests))
    });
    if let Err(e) = &result {
        status.failed(started, e);
    }
    status.save(&cfg.snapshot);
    result
}

/// Records a successful publish in the status.
fn succeeded(status: &mut Status, at: u64, sweep: &Sweep, stats: Stats, problems: Vec<String>) {
    status.last_attempt = Some(at);
    status.last_success = Some(at);
    status.consecutive_failures = 0;
    status.requests = sweep.requests;
    status.instances = stats.instances;
    status.live = stats.live;
    status.ready = stats.ready;
    status.names = stats.names;
    status.problems = problems;
}
