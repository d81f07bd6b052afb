//! `ec2cached status`: the published snapshot's age and counts, and the last poll's outcome.

use crate::config::Config;
use crate::leaf::clock::{now, utc};
use crate::leaf::ledger::Status;
use crate::leaf::module::{self, Module};
use nss_ec2_snapshot::format::VERSION;
use nss_ec2_snapshot::Snapshot;
use std::fmt::Write;

/// How long `status` says that a poller replaced an object from an unknown writer.
const FOREIGN_NEWS_SECS: u64 = 86_400;

fn when(t: u64, now: u64) -> String {
    if t > now {
        // A poller's clock, or this host's, is wrong: say so rather than "0 s ago".
        return format!("{} ({} s in the future)", utc(t), t - now);
    }
    format!("{} ({} s ago)", utc(t), now - t)
}

/// What `ec2cached status` says, and whether everything is healthy (a usable snapshot, the
/// last poll or check good).
#[derive(Debug, Default)]
pub struct Report {
    /// The lines, `label:   value` each.
    pub text: String,
    /// False when anything is wrong (the exit status is 1).
    pub healthy: bool,
}

impl Report {
    /// Adds `label:` and `value`, the values aligned.
    fn line(&mut self, label: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.text, "{:<16}{value}", format!("{label}:"));
    }

    /// Adds a line that says something is wrong.
    fn wrong(&mut self, label: &str, value: impl std::fmt::Display) {
        self.healthy = false;
        self.line(label, value);
    }
}

/// The report: the mode, the installed snapshot, and what the ledger says of the last polls,
/// checks and uploads.
pub fn report(cfg: &Config) -> Report {
    let now = now();
    let st = Status::load(&cfg.snapshot);
    let mut r = Report {
        text: String::new(),
        healthy: true,
    };
    r.line("snapshot", cfg.snapshot.display());
    match (&cfg.follow, &cfg.publish) {
        (Some(f), _) => r.line(
            "mode",
            match &f.url {
                Some(u) => format!("follows {u} (names, max_age and sweep time are the poller's)"),
                None => "follows `ec2cached install` (no [follow] url)".into(),
            },
        ),
        (None, Some(p)) => r.line("mode", format!("polls EC2, publishes to {}", p.url)),
        (None, None) => {}
    }
    installed(&mut r, cfg, &st, now);
    ledger(&mut r, cfg.follow.is_some(), cfg.events.is_some(), &st, now);
    r
}

/// The installed snapshot: missing (and why), unusable, or what it holds.
fn installed(r: &mut Report, cfg: &Config, st: &Status, now: u64) {
    let bytes = match std::fs::read(&cfg.snapshot) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let why = match (st.last_attempt, st.last_success) {
                (None, _) => "no poll has run yet: start the service (systemctl start ec2cached) \
                              or run `ec2cached refresh`"
                    .to_string(),
                (Some(_), None) => "no poll has succeeded yet (last error below)".to_string(),
                (Some(_), Some(t)) => format!(
                    "it was published at {} and has been removed since",
                    when(t, now)
                ),
            };
            r.wrong(
                "state",
                format!(
                    "no snapshot: .{} names answer UNAVAIL (DNS is asked)",
                    cfg.rules.domain
                ),
            );
            r.line("why", why);
            return;
        }
        Err(e) => return r.wrong("state", format!("unusable: {e}")),
        Ok(bytes) => bytes,
    };
    let s = match Snapshot::parse(&bytes) {
        Err(e) => return r.wrong("state", format!("unusable: {e}")),
        Ok(s) => s,
    };
    let h = s.header();
    let age = now.saturating_sub(h.generated_unix);
    if h.max_age_secs != 0 && age > u64::from(h.max_age_secs) {
        r.wrong(
            "state",
            "expired (older than max_age): lookups answer UNAVAIL",
        );
    } else {
        r.line("state", "serving");
    }
    if let Some(e) = cfg
        .follow
        .as_ref()
        .filter(|f| !f.trusted_keys.is_empty())
        .and_then(|f| crate::leaf::keys::verify(&bytes, &f.trusted_keys, &f.fleet).err())
    {
        // A key removed from trusted_keys (or a fleet changed): what it signed still serves
        // until replaced, but no longer blocks an older object (follower::check_and_install).
        use crate::leaf::keys::Refusal;
        let why = match e {
            Refusal::OtherFleet(_) | Refusal::NoFleet => "not for this host's fleet",
            _ => "no key trusted now signed it",
        };
        r.wrong(
            "trust",
            format!("{e}: {why}; the next good object replaces it"),
        );
    }
    // A sweep ahead of this host's clock: this host's clock (or a poller's) is wrong, and it
    // blocks every later sweep until the clocks meet, or until the operator's step.
    if h.generated_unix > now.saturating_add(crate::leaf::clock::CLOCK_SLACK_SECS) {
        r.wrong(
            "clock",
            format!(
                "the installed sweep is {} s in this host's future: this host's clock, or a \
                 poller's, is wrong; an earlier sweep is refused until the clocks meet (if \
                 this host's clock was wrong: docs/fleet.md, \"When this host's clock was \
                 wrong\")",
                h.generated_unix - now
            ),
        );
    }
    r.line("domain", String::from_utf8_lossy(s.domain()));
    r.line("generated", when(h.generated_unix, now));
    if cfg.follow.is_some() {
        r.line(
            "interval",
            format!(
                "{} s (the poller's, the TTL); checks every {} s",
                h.interval_secs, cfg.interval
            ),
        );
    } else {
        r.line("interval", format!("{} s", h.interval_secs));
    }
    r.line(
        "max_age",
        match h.max_age_secs {
            0 => "none".to_string(),
            m => format!("{m} s"),
        },
    );
    r.line("names", h.names);
    r.line("instances", format!("{} live", h.instances));
    r.line("size", format!("{} bytes", h.file_len));
    // The file's own format version (bytes 8..12), not this daemon's.
    let version = bytes
        .get(8..12)
        .and_then(|b| b.try_into().ok())
        .map_or(VERSION, u32::from_le_bytes);
    let (line, ok) = module_line(module::probe(), version);
    if ok {
        r.line("module", line);
    } else {
        r.wrong("module", line);
    }
}

/// What the status ledger says of the last polls (or checks) and uploads.
fn ledger(r: &mut Report, follower: bool, events: bool, st: &Status, now: u64) {
    if let Some(t) = st.last_attempt {
        let ok = st.consecutive_failures == 0;
        let outcome = match &st.follow_outcome {
            Some(o) if follower => format!(" ({o})"),
            _ => String::new(),
        };
        let label = if follower { "last check" } else { "last poll" };
        let text = format!(
            "{} {}{outcome}",
            when(t, now),
            if ok { "ok" } else { "FAILED" }
        );
        if ok {
            r.line(label, text);
        } else {
            r.wrong(label, text);
        }
    }
    if let (Some(o), Some(t)) = (&st.publish_outcome, st.published_at) {
        r.line("last upload", format!("{}: {o}", when(t, now)));
    }
    if events {
        events_line(r, st, now);
    }
    // For a day after the last replacement: a writer that has stopped is no longer news (the
    // count stays in the status file and the metric).
    if let (Some(k), Some(t)) = (
        &st.s3_foreign_key,
        st.s3_foreign_at
            .filter(|t| now.saturating_sub(*t) <= FOREIGN_NEWS_SECS),
    ) {
        r.line(
            "foreign object",
            format!(
                "replaced {} time(s) an object {k} (last {}): does another poller write it?",
                st.s3_foreign_replaced,
                when(t, now)
            ),
        );
    }
    if follower {
        if let Some(t) = st.last_success {
            r.line("good check", when(t, now));
        }
    } else if let Some(t) = st.last_success {
        r.line("last success", when(t, now));
        r.line(
            "last sweep",
            format!(
                "{} instances, {} live, {} ready, {} names, {} request(s)",
                st.instances, st.live, st.ready, st.names, st.requests
            ),
        );
    }
    match (&st.last_error, st.last_error_at) {
        (Some(e), Some(t)) => {
            r.line("last error", format!("{}: {e}", when(t, now)));
            if st.consecutive_failures > 0 {
                r.line(
                    "failing",
                    format!(
                        "{} {} in a row",
                        st.consecutive_failures,
                        if follower { "check(s)" } else { "poll(s)" }
                    ),
                );
            }
        }
        _ if st.last_attempt.is_some() => r.line("last error", "none"),
        _ => {}
    }
    for p in &st.problems {
        r.line("not published", p);
    }
}

/// The `module:` line: whether the NSS module glibc would load reads the snapshot's format
/// `version`, and whether that is healthy. A host without the module is not unhealthy (a poller,
/// or a host that resolves through DNS only).
pub fn module_line(m: Module, version: u32) -> (String, bool) {
    match m {
        Module::Missing(why) => (
            format!("libnss_ec2.so.2 not installed: this host does not resolve names through NSS ({why})"),
            true,
        ),
        Module::Broken(why) => (
            format!("WARNING: libnss_ec2.so.2 cannot be loaded ({why}): every name answers UNAVAIL"),
            false,
        ),
        Module::Found { path, reads: Some(r) } if r >= version => {
            (format!("{path} reads snapshot format {r} (this snapshot: {version})"), true)
        }
        Module::Found {
            path,
            reads: Some(r),
        } => (
            format!(
                "WARNING: {path} reads snapshot formats up to {r}, not this snapshot's format \
                 {version}: every name answers UNAVAIL until libnss-ec2 is upgraded to the version \
                 of ec2cached (and long-running programs are restarted)"
            ),
            false,
        ),
        Module::Found { path, reads: None } => (
            format!(
                "WARNING: {path} is not nss-ec2's module (it does not say which snapshot format it \
                 reads; another project ships a libnss_ec2.so.2 too): remove it and install \
                 libnss-ec2"
            ),
            false,
        ),
    }
}

/// `[events]`: whether events flow, when the last came, and what came of them.
fn events_line(r: &mut Report, st: &Status, now: u64) {
    if let Some(e) = &st.events_error {
        r.wrong(
            "events",
            format!("the queue fails (sweeps go on, every interval): {e}"),
        );
        return;
    }
    if let Some(e) = &st.events_apply_error {
        r.wrong(
            "events",
            format!(
                "the last batch failed (its messages come back to the queue; the next sweep \
                 brings its changes everywhere): {e}"
            ),
        );
        return;
    }
    let received: u64 = st.events_received.values().sum();
    let ignored: u64 = st.events_ignored.values().sum();
    let Some(t) = st.events_last_at else {
        return;
    };
    let mut text = format!(
        "{received} received, {} applied, {ignored} ignored; the last {}",
        st.events_applied,
        when(t, now)
    );
    if let (Some(lag), Some(ms)) = (st.events_lag_secs, st.events_publish_ms) {
        text.push_str(&format!(
            "; last batch published {ms} ms after it came, {lag} s after its oldest event"
        ));
    }
    r.line("events", text);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22, item 3: `status` says when the installed snapshot was signed by a key that is no
    /// longer trusted.
    #[test]
    fn a_snapshot_signed_by_a_key_no_longer_trusted_is_said() {
        use ed25519_dalek::SigningKey;
        let (old, new) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("hosts.snap");
        let bytes = crate::leaf::keys::sign(
            &old,
            "s3://b/k",
            &nss_ec2_snapshot::format::tiny("ec2", now(), 1),
        )
        .unwrap();
        std::fs::write(&snap, &bytes).unwrap();
        let cfg = |k: &SigningKey| {
            let text = format!(
                "snapshot = {snap:?}\n[follow]\nfleet = \"s3://b/k\"\ntrusted_keys = [{:?}]",
                crate::leaf::keys::public_text(&k.verifying_key())
            );
            Config::parse(&dir.path().join("c.toml"), &text).unwrap()
        };
        let r = report(&cfg(&new));
        let line = r
            .text
            .lines()
            .find(|l| l.starts_with("trust:"))
            .expect(&r.text);
        assert!(
            line.contains("not in trusted_keys") && line.contains("next good object"),
            "{line}"
        );
        assert!(!r.healthy);
        assert!(!report(&cfg(&old)).text.contains("trust:"));
    }

    /// A sweep stamped ahead of this host's clock is said to be in the future, not "0 s ago"
    /// (issue 22, item 13).
    #[test]
    fn a_time_ahead_of_the_clock_is_said_to_be_in_the_future() {
        assert_eq!(when(1_000, 1_030), "1970-01-01T00:16:40Z (30 s ago)");
        assert_eq!(
            when(1_090, 1_030),
            "1970-01-01T00:18:10Z (60 s in the future)"
        );
    }

    /// The `foreign object:` line is news for a day after the last replacement, then goes (the
    /// count stays): it never cleared before.
    #[test]
    fn a_foreign_object_is_said_for_a_day() {
        let st = Status {
            s3_foreign_key: Some("signed by ed25519:ab".into()),
            s3_foreign_at: Some(1_000_000),
            s3_foreign_replaced: 3,
            ..Status::default()
        };
        let text = |now: u64| {
            let mut r = Report {
                text: String::new(),
                healthy: true,
            };
            ledger(&mut r, false, false, &st, now);
            r.text
        };
        assert!(text(1_000_060).contains("foreign object: replaced 3 time(s) an object signed by"));
        assert!(!text(1_000_000 + 86_401).contains("foreign object"));
    }

    #[test]
    fn module_line_warns_only_when_the_module_cannot_read_the_format() {
        let found = |reads| Module::Found {
            path: "/lib/libnss_ec2.so.2".into(),
            reads,
        };
        assert!(module_line(found(Some(1)), 1).1);
        assert!(module_line(found(Some(2)), 1).1);
        let (line, ok) = module_line(found(Some(1)), 2);
        assert!(
            !ok && line
                .starts_with("WARNING: /lib/libnss_ec2.so.2 reads snapshot formats up to 1, not"),
            "{line}"
        );
        let (line, ok) = module_line(found(None), 1);
        assert!(!ok && line.contains("is not nss-ec2's module"), "{line}");
        let (line, ok) = module_line(Module::Missing("gone".into()), 1);
        assert!(ok && line.contains("not installed"), "{line}");
        let (line, ok) = module_line(Module::Broken("file too short".into()), 1);
        assert!(
            !ok && line.contains("cannot be loaded (file too short)"),
            "{line}"
        );
    }
}
