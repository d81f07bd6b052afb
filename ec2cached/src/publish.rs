//! Turning a sweep into a published snapshot, and the status file beside it.
//!
//! Publishing is write-temp, fsync, rename, fsync the directory: readers that still map the old
//! file keep a whole old generation, new readers get a whole new one, and a crash at any moment
//! leaves one or the other. A failed poll never reaches this module, so the last good snapshot
//! stays byte-for-byte as it was.

use crate::config::Config;
use crate::source::{Failed, Reason, Sweep};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use nss_ec2_snapshot::fleet::{build, Stats};
use nss_ec2_snapshot::{Meta, Snapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    /// Follower: the outcome of the last check (`unchanged`, `installed`, `refused_signature`,
    /// `refused_rollback`, `refused_corrupt`, `refused_domain`, `error`).
    pub follow_outcome: Option<String>,
    /// S3 requests sent by this host (retries included), a running total.
    pub s3_requests: u64,
    /// S3 body bytes received or sent, a running total.
    pub s3_bytes: u64,
    /// Poller: the latest pollers' sweep seen in S3 (an older object there was put back).
    pub s3_high_water: u64,
    /// Poller: failed polls by reason (the metric's `reason` label), running totals.
    pub poll_failures: BTreeMap<String, u64>,
    /// Follower: checks by outcome (the metric's `outcome` label), running totals.
    pub follow_fetches: BTreeMap<String, u64>,
    /// Poller: how long the last good sweep took, in milliseconds.
    pub sweep_ms: Option<u64>,
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

    /// Records a failed poll (or upload) and counts it under `reason`.
    pub fn poll_failed(&mut self, at: u64, why: &str, reason: Reason) {
        self.failed(at, why);
        let n = self.poll_failures.entry(reason.label().into()).or_default();
        *n = n.saturating_add(1);
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

/// Removes temp files that a killed writer left beside `path` (the metrics file).
pub fn remove_stale_temps_of(path: &Path) {
    remove_stale(path);
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

/// Path of the lock file that serialises writers of a snapshot.
pub fn lock_path(snapshot: &Path) -> PathBuf {
    let mut s = snapshot.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// How far in the future a sweep may be and still count as newer (clocks of pollers and hosts
/// differ a little). A snapshot further ahead comes from a broken clock, or from no poller: it is
/// not installed, and one already installed does not block later sweeps (it would stall every
/// writer until the clocks caught up).
pub const CLOCK_SLACK_SECS: u64 = 300;

/// How long a writer waits for another to finish before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Takes `<snapshot>.lock`, the lock every writer of the snapshot holds while it compares and
/// replaces. A new lock file is the state directory owner's, mode 0600 (root makes it so when it
/// creates it), so no other account can open it and stall the daemon; it is opened without
/// following a symlink, without blocking on a FIFO, refused if it is not a regular file with one
/// link, and waited for at most [`LOCK_WAIT`] (the caller's thread sleeps meanwhile: a daemon
/// serves SIGTERM after at most that long).
fn lock_writers(snapshot: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, NotInstalled> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let lock = lock_path(snapshot);
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        NotInstalled::Io(format!("cannot {what} {}: {e}", lock.display()))
    };
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    // An existing lock is opened read-only (enough for flock), so its owner and mode need not be
    // ours; a new one is made mode 0600, and root hands the one it made to the state
    // directory's owner (the daemon's account). A lock someone else made is never chowned or
    // chmodded.
    let existing = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(&lock);
    let file = match existing {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(flags)
                .open(&lock)
                .map_err(|e| fail("create", &e))?;
            let dir = lock
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if let Ok(d) = std::fs::metadata(dir) {
                if nix::unistd::geteuid().is_root() && d.uid() != 0 {
                    std::os::unix::fs::fchown(&f, Some(d.uid()), Some(d.gid()))
                        .map_err(|e| fail("chown", &e))?;
                }
            }
            f
        }
        Err(e) => return Err(fail("open", &e)),
    };
    let meta = file.metadata().map_err(|e| fail("stat", &e))?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Err(fail("use", &"not a regular file with one link"));
    }
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut file = file;
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(held),
            Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) if std::time::Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(fail(
                    "lock",
                    &format!("another writer has held it for {} s", LOCK_WAIT.as_secs()),
                ))
            }
            Err((_, e)) => return Err(fail("lock", &e)),
        }
    }
}

/// What [`install`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    /// The file was replaced.
    Replaced,
    /// The installed file already has these bytes.
    Same,
}

/// Why [`install`] left the installed snapshot alone.
#[derive(Debug, PartialEq, Eq)]
pub enum NotInstalled {
    /// The installed snapshot comes from a later sweep (its generation time, ours).
    Rollback(u64, u64),
    /// Writing failed.
    Io(String),
}

impl std::fmt::Display for NotInstalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotInstalled::Rollback(installed, ours) => write!(
                f,
                "older than the installed snapshot (sweep at {}, installed: {}): no rollback",
                crate::status::utc(*ours),
                crate::status::utc(*installed)
            ),
            NotInstalled::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Replaces the snapshot at `path` with `bytes` (a snapshot that parses) unless the installed
/// one comes from a later sweep: every writer (the daemon as poller or follower, `refresh`,
/// `install`) takes `<path>.lock` first, so two writers never put an older generation over a
/// newer one. An installed file that does not parse, or whose sweep is more than
/// [`CLOCK_SLACK_SECS`] in the future, is replaced.
pub fn install(path: &Path, bytes: &[u8]) -> Result<Installed, NotInstalled> {
    let ours = Snapshot::parse(bytes)
        .map_err(|e| NotInstalled::Io(format!("self-check failed: {e}")))?
        .header()
        .generated_unix;
    let _held = lock_writers(path)?;
    if let Ok(current) = std::fs::read(path) {
        if current == bytes {
            return Ok(Installed::Same);
        }
        if let Ok(s) = Snapshot::parse(&current) {
            let installed = s.header().generated_unix;
            if installed > ours && installed <= now().saturating_add(CLOCK_SLACK_SECS) {
                return Err(NotInstalled::Rollback(installed, ours));
            }
        }
    }
    write_atomic(path, bytes)
        .map_err(|e| NotInstalled::Io(format!("cannot publish {}: {e}", path.display())))?;
    Ok(Installed::Replaced)
}

/// Builds the snapshot of a sweep, signs it with `signer` (fleet mode) and installs it. Returns
/// the counts, the problems, and the bytes (for S3).
pub fn publish(
    cfg: &Config,
    sweep: &Sweep,
    generated: u64,
    signer: Option<&ed25519_dalek::SigningKey>,
) -> Result<(Stats, Vec<String>, Vec<u8>), String> {
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
        bytes = crate::keys::sign(key, &bytes)?;
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
    Ok((built.stats, problems, bytes))
}

/// Publishes the outcome of a sweep that started at `started` and records it in the status file
/// either way (the snapshot is only replaced on success). Returns the counts, the number of
/// API requests the sweep made, and the published bytes.
pub fn publish_and_record(
    cfg: &Config,
    started: u64,
    sweep: Result<Sweep, Failed>,
    signer: Option<&ed25519_dalek::SigningKey>,
) -> Result<(Stats, u32, Vec<u8>), Failed> {
    let mut status = Status::load(&cfg.snapshot);
    // Every request counts, a failed sweep's too (throttling is when they matter most).
    let requests = match &sweep {
        Ok(s) => s.requests,
        Err(f) => f.requests,
    };
    status.api_requests_total = status
        .api_requests_total
        .saturating_add(u64::from(requests));
    let result = sweep.and_then(|s| {
        let (stats, problems, bytes) =
            publish(cfg, &s, started, signer).map_err(|e| Failed::new(Reason::Publish, e))?;
        succeeded(&mut status, started, &s, stats, problems);
        Ok((stats, s.requests, bytes))
    });
    let result = result.inspect_err(|f| status.poll_failed(started, &f.message, f.reason));
    status.save(&cfg.snapshot);
    result
}

/// Records a successful publish in the status.
fn succeeded(status: &mut Status, at: u64, sweep: &Sweep, stats: Stats, problems: Vec<String>) {
    status.last_attempt = Some(at);
    status.last_success = Some(at);
    status.consecutive_failures = 0;
    status.requests = sweep.requests;
    status.sweep_ms = Some(u64::try_from(sweep.elapsed.as_millis()).unwrap_or(u64::MAX));
    status.instances = stats.instances;
    status.live = stats.live;
    status.ready = stats.ready;
    status.names = stats.names;
    status.problems = problems;
}
