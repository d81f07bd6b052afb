//! `[metrics] textfile`: Prometheus metrics for the node exporter's textfile collector, written
//! atomically after every poll, follow check, `refresh` and `install`.
//!
//! Every value comes from two files: the status file (running totals, last outcomes) and the
//! snapshot being served (its generation, counts, max_age). So the daemon, `refresh` and
//! `install` write the same metrics, and the totals go on across restarts (a counter that never
//! resets is still a counter; `rate()` and `increase()` read it as one).
//!
//! The text is the Prometheus text format (version 0.0.4) that the textfile collector and
//! `promtool check metrics` read, made by the `prometheus` crate: `prometheus-client` writes
//! only OpenMetrics, whose counters (`# TYPE x counter` over `x_total` samples) those two read as
//! untyped metrics without help.

use crate::config::Config;
use crate::leaf::clock::now;
use crate::leaf::files::write_atomic;
use crate::leaf::ledger::{status_path, Status};
use crate::leaf::outcome::{Outcome, Reason};
use nss_ec2_snapshot::{Header, Snapshot};
use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::path::Path;

/// Writes the metrics of `cfg`'s snapshot and status file to `[metrics] textfile`, if set.
/// A failure is logged, never fatal: metrics must not stop names from being served.
pub fn write(cfg: &Config) {
    let Some(path) = &cfg.metrics_textfile else {
        return;
    };
    if let Some(why) = clashes(path, cfg) {
        tracing::warn!("not writing the metrics file {}: {why}", path.display());
        return;
    }
    // Under the status file's lock: two writers of the metrics file (the daemon, a `refresh`
    // beside it) write in the order of what they read, so its counters never go down.
    Status::read(&cfg.snapshot, |status| {
        let installed = std::fs::read(&cfg.snapshot)
            .ok()
            .and_then(|b| Snapshot::parse(&b).ok().map(|s| s.header()));
        let text = render(cfg, status, installed.as_ref(), now());
        if let Err(e) = write_atomic(path, text.as_bytes()) {
            tracing::warn!("cannot write the metrics file {}: {e}", path.display());
        }
    });
}

/// Every label with its running total (0 for one never counted, so that `rate()` sees the first).
fn totals<const N: usize>(
    labels: [&'static str; N],
    counted: &std::collections::BTreeMap<String, u64>,
) -> Vec<(&'static str, u64)> {
    labels
        .iter()
        .map(|l| (*l, counted.get(*l).copied().unwrap_or(0)))
        .collect()
}

/// Why `path` must not be written: it is the snapshot or its status file under another
/// spelling (`/var/lib/x/../x/hosts.snap`), which the config check cannot see.
fn clashes(path: &Path, cfg: &Config) -> Option<String> {
    let canon = |p: &Path| {
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Some((std::fs::canonicalize(dir).ok()?, p.file_name()?.to_owned()))
    };
    let me = canon(path)?;
    for other in [cfg.snapshot.clone(), status_path(&cfg.snapshot)] {
        if canon(&other).as_ref() == Some(&me) {
            return Some(format!("it is {}", other.display()));
        }
    }
    None
}

/// A registry the metrics are added to. Names and help are fixed strings: registering them
/// cannot fail but on a programming error, which the unit tests would show; a failure drops that
/// metric, nothing else.
struct Metrics(Registry);

impl Metrics {
    fn gauge(&self, name: &str, help: &str, v: i64) {
        if let Ok(g) = IntGauge::new(name, help) {
            g.set(v);
            let _ = self.0.register(Box::new(g));
        }
    }

    fn seconds(&self, name: &str, help: &str, v: f64) {
        if let Ok(g) = Gauge::new(name, help) {
            g.set(v);
            let _ = self.0.register(Box::new(g));
        }
    }

    fn counter(&self, name: &str, help: &str, v: u64) {
        if let Ok(c) = IntCounter::new(name, help) {
            c.inc_by(v);
            let _ = self.0.register(Box::new(c));
        }
    }

    /// An info metric: one series of value 1 whose labels say what it is about.
    fn info(&self, name: &str, help: &str, labels: &[(&str, &str)]) {
        let names: Vec<&str> = labels.iter().map(|(n, _)| *n).collect();
        let values: Vec<&str> = labels.iter().map(|(_, v)| *v).collect();
        if let Ok(g) = IntGaugeVec::new(Opts::new(name, help), &names) {
            g.with_label_values(&values).set(1);
            let _ = self.0.register(Box::new(g));
        }
    }

    fn by(&self, name: &str, help: &str, label: &str, values: &[(&str, u64)]) {
        if let Ok(c) = IntCounterVec::new(Opts::new(name, help), &[label]) {
            for (l, v) in values {
                c.with_label_values(&[*l]).inc_by(*v);
            }
            let _ = self.0.register(Box::new(c));
        }
    }
}

/// `[events]`: what came from the queue and what became of it.
fn events(m: &Metrics, st: &Status) {
    let kinds = totals(
        ["state_change", "tag_change", "api_call"],
        &st.events_received,
    );
    m.by(
        "ec2cached_events_received_total",
        "EC2 change events received from the [events] queue and understood, by kind.",
        "kind",
        &kinds,
    );
    let reasons = totals(
        ["malformed", "unknown", "no_instance", "not_polled"],
        &st.events_ignored,
    );
    m.by(
        "ec2cached_events_ignored_total",
        "Messages of the [events] queue ignored (and deleted), by reason.",
        "reason",
        &reasons,
    );
    m.counter(
        "ec2cached_events_applied_total",
        "Events whose instances were read again and published.",
        st.events_applied,
    );
    if let Some(t) = st.events_last_at {
        m.gauge(
            "ec2cached_events_last_timestamp_seconds",
            "When the last message came from the [events] queue, in Unix time.",
            secs(t),
        );
    }
    if let Some(l) = st.events_lag_secs {
        m.gauge(
            "ec2cached_events_lag_seconds",
            "The age of the oldest event of the last batch applied when it was published (queue \
             lag and delivery included).",
            i64::try_from(l).unwrap_or(i64::MAX),
        );
    }
    if let Some(ms) = st.events_publish_ms {
        m.seconds(
            "ec2cached_events_publish_seconds",
            "From the last batch's arrival to its publish.",
            ms as f64 / 1000.0,
        );
    }
    m.gauge(
        "ec2cached_events_queue_failing",
        "1 while the [events] queue cannot be read (sweeps go on).",
        i64::from(st.events_error.is_some()),
    );
    m.gauge(
        "ec2cached_events_apply_failing",
        "1 while the last batch of events could not be applied (its changes wait for the next sweep).",
        i64::from(st.events_apply_error.is_some()),
    );
}

/// A unix time as a gauge value.
fn secs(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// The metrics text for a status and the header of the installed snapshot (None: none that
/// parses), at time `now`.
pub fn render(cfg: &Config, status: &Status, installed: Option<&Header>, now: u64) -> String {
    let m = Metrics(Registry::new());
    m.gauge(
        "ec2cached_interval_seconds",
        "Seconds between polls (follow checks on a follower), from the configuration.",
        i64::from(cfg.interval),
    );
    if let Some(t) = status.last_success {
        m.gauge(
            "ec2cached_last_success_timestamp_seconds",
            "When the last successful poll (follow check on a follower) started, in Unix time.",
            secs(t),
        );
    }
    m.gauge(
        "ec2cached_consecutive_failures",
        "Polls (follow checks) that failed since the last success.",
        i64::from(status.consecutive_failures),
    );
    snapshot(&m, installed, now);
    if cfg.follow.is_some() {
        let counts = totals(Outcome::ALL.map(Outcome::label), &status.follow_fetches);
        m.by(
            "ec2cached_follow_fetches_total",
            "Checks of the S3 object, by outcome.",
            "outcome",
            &counts,
        );
    } else {
        poller(&m, status);
    }
    if cfg.publish.is_some() || cfg.follow.as_ref().is_some_and(|f| f.url.is_some()) {
        m.counter(
            "ec2cached_s3_requests_total",
            "Requests sent to S3 (fleet mode), retries included.",
            status.s3_requests,
        );
        m.counter(
            "ec2cached_s3_bytes_total",
            "Object bytes received from or sent to S3 (fleet mode).",
            status.s3_bytes,
        );
        if cfg.publish.is_some() {
            if let Some(t) = status.s3_confirmed {
                m.gauge(
                    "ec2cached_s3_confirmed_sweep_timestamp_seconds",
                    "When the last sweep this poller found in S3 started (it uploaded the sweep, \
                     the object already had its names, or a later sweep), in Unix time: what \
                     followers install is current as of then (fleet mode).",
                    secs(t),
                );
            }
            m.counter(
                "ec2cached_s3_foreign_objects_replaced_total",
                "Objects this poller replaced that were signed by a key neither its own nor in \
                 peer_keys, or for another fleet or none (fleet mode): another poller that does \
                 not list this one?",
                status.s3_foreign_replaced,
            );
        }
    }
    if cfg.events.is_some() {
        events(&m, status);
    }
    if let Some((fleet, role)) = fleet_of(cfg) {
        m.info(
            "ec2cached_fleet_info",
            "Always 1: the fleet this host is in (label fleet: [publish] or [follow] fleet, by \
             default the S3 object's url) and its role in it (label role: poller, follower).",
            &[("fleet", fleet), ("role", role)],
        );
    }
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&m.0.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The fleet identity of a host in fleet mode and its role: a poller with `[publish]`, or a
/// follower bound to a fleet (`[follow]` with `trusted_keys`).
fn fleet_of(cfg: &Config) -> Option<(&str, &'static str)> {
    match (&cfg.publish, &cfg.follow) {
        (Some(p), _) => Some((p.fleet.as_str(), "poller")),
        (None, Some(f)) if !f.fleet.is_empty() => Some((f.fleet.as_str(), "follower")),
        _ => None,
    }
}

/// The installed snapshot's gauges.
fn snapshot(m: &Metrics, installed: Option<&Header>, now: u64) {
    // Served: what the module answers from, so not one past its max_age. The gauges of an
    // expired snapshot stay (its age keeps the stale alert firing); only `present` goes to 0.
    let served = installed.filter(|h| !h.expired_at(now));
    m.gauge(
        "ec2cached_snapshot_present",
        "1 when a snapshot the module answers from is installed (it parses and is within its \
         max_age), else 0: .ec2 names answer UNAVAIL.",
        i64::from(served.is_some()),
    );
    let Some(h) = installed else { return };
    m.gauge(
        "ec2cached_snapshot_generation_timestamp_seconds",
        "When the sweep of the installed snapshot started, in Unix time (on a follower: the \
         poller's sweep), also once it is past its max_age.",
        secs(h.generated_unix),
    );
    m.gauge(
        "ec2cached_snapshot_max_age_seconds",
        "Age after which the module stops answering from the snapshot; 0: no limit.",
        i64::from(h.max_age_secs),
    );
    m.gauge(
        "ec2cached_instances",
        "Live instances in the installed snapshot.",
        i64::from(h.instances),
    );
    m.gauge(
        "ec2cached_names",
        "Names in the installed snapshot.",
        i64::from(h.names),
    );
}

/// A poller's sweep, API and failure metrics.
fn poller(m: &Metrics, status: &Status) {
    if let Some(ms) = status.sweep_ms {
        m.seconds(
            "ec2cached_sweep_duration_seconds",
            "How long the last successful sweep of the EC2 API took.",
            ms as f64 / 1000.0,
        );
    }
    m.counter(
        "ec2cached_api_requests_total",
        "EC2 API requests sent (DescribeInstances pages and the SDK's retries of them), failed \
         sweeps included.",
        status.api_requests_total,
    );
    let counts = totals(Reason::ALL.map(Reason::label), &status.poll_failures);
    m.by(
        "ec2cached_poll_failures_total",
        "Failed polls, by reason.",
        "reason",
        &counts,
    );
    m.gauge(
        "ec2cached_unpublished_names",
        "Names the last successful refresh did not publish (collisions, reserved labels).",
        i64::try_from(status.problems.len()).unwrap_or(i64::MAX),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(extra: &str) -> Config {
        Config::parse(
            std::path::Path::new("/etc/x.toml"),
            &format!("snapshot = \"/tmp/x/hosts.snap\"\ninterval = 30\n{extra}"),
        )
        .unwrap()
    }

    fn header(generated: u64) -> Header {
        let bytes = nss_ec2_snapshot::format::tiny("ec2", generated, 7);
        Snapshot::parse(&bytes).unwrap().header()
    }

    /// `name{labels} value` lines, and every `# TYPE` line, by metric name.
    fn samples(text: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let mut values = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (n, ty) = t.split_once(' ').unwrap();
                types.insert(n.to_string(), ty.to_string());
            } else if !line.starts_with('#') {
                let (n, v) = line.rsplit_once(' ').unwrap();
                values.insert(n.to_string(), v.to_string());
            }
        }
        (values, types)
    }

    #[test]
    fn a_poller_after_a_good_poll_and_a_throttled_one() {
        let mut st = Status {
            last_success: Some(1_700_000_000),
            api_requests_total: 12,
            sweep_ms: Some(1250),
            ..Status::default()
        };
        st.poll_failed(1_700_000_030, "RequestLimitExceeded", Reason::Throttled);
        let text = render(&cfg(""), &st, Some(&header(1_700_000_000)), 1_700_000_100);
        let (v, t) = samples(&text);
        assert_eq!(v["ec2cached_last_success_timestamp_seconds"], "1700000000");
        assert_eq!(
            v["ec2cached_snapshot_generation_timestamp_seconds"],
            "1700000000"
        );
        assert_eq!(v["ec2cached_sweep_duration_seconds"], "1.25");
        assert_eq!(v["ec2cached_api_requests_total"], "12");
        assert_eq!(
            v["ec2cached_poll_failures_total{reason=\"throttled\"}"],
            "1"
        );
        // Every reason is there from the start, so that rate() sees the first failure.
        assert_eq!(
            v["ec2cached_poll_failures_total{reason=\"credentials\"}"],
            "0"
        );
        assert_eq!(v["ec2cached_consecutive_failures"], "1");
        assert_eq!(v["ec2cached_interval_seconds"], "30");
        assert_eq!(v["ec2cached_snapshot_present"], "1");
        assert_eq!(t["ec2cached_api_requests_total"], "counter");
        assert_eq!(t["ec2cached_poll_failures_total"], "counter");
        assert_eq!(t["ec2cached_instances"], "gauge");
        assert!(!text.contains("follow_fetches"), "{text}");
        assert!(!text.contains("ec2cached_s3_"), "{text}");
        assert!(!text.contains("ec2cached_fleet_info"), "{text}");
        // Every family has help text (promtool check metrics wants it).
        for name in t.keys() {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
        }
    }

    #[test]
    fn a_follower_counts_fetches_by_outcome_and_has_no_poll_metrics() {
        let mut st = Status {
            s3_url: Some("s3://b/k".into()),
            s3_requests: 3,
            ..Status::default()
        };
        st.follow_fetches.insert("refused_signature".into(), 2);
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let c = cfg(&format!(
            "[follow]\nurl = \"s3://bucket/key\"\ntrusted_keys = [{:?}]",
            crate::leaf::keys::public_text(&key)
        ));
        let (v, _) = samples(&render(&c, &st, None, 1_700_000_100));
        assert_eq!(
            v["ec2cached_follow_fetches_total{outcome=\"refused_signature\"}"],
            "2"
        );
        assert_eq!(
            v["ec2cached_follow_fetches_total{outcome=\"installed\"}"],
            "0"
        );
        assert_eq!(v["ec2cached_snapshot_present"], "0");
        assert_eq!(v["ec2cached_s3_requests_total"], "3");
        // Its fleet (by default the object's url), for the rules to group by.
        assert_eq!(
            v["ec2cached_fleet_info{fleet=\"s3://bucket/key\",role=\"follower\"}"],
            "1"
        );
        assert!(!v.keys().any(|k| k.contains("s3_confirmed")), "{v:?}");
        assert!(!v.keys().any(|k| k.contains("poll_failures")
            || k.contains("generation")
            || k.contains("last_success")));
    }

    /// Issue 22, item 16: a poller with `[publish]` says its fleet, and the last sweep it found
    /// in S3, which may be older than its own snapshot (its uploads fail): the fleet alert reads
    /// that one.
    #[test]
    fn a_publishing_poller_says_its_fleet_and_the_sweep_s3_holds() {
        let publish = "[publish]\nurl = \"s3://bucket/fleet/hosts.snap\"\nsigning_key = \"/k\"";
        let st = Status {
            last_success: Some(1_700_000_600),
            sweep_ms: Some(2000),
            s3_confirmed: Some(1_700_000_000),
            ..Status::default()
        };
        let text = render(
            &cfg(publish),
            &st,
            Some(&header(1_700_000_600)),
            1_700_000_700,
        );
        let (v, t) = samples(&text);
        assert_eq!(
            v["ec2cached_s3_confirmed_sweep_timestamp_seconds"],
            "1700000000"
        );
        assert_eq!(
            v["ec2cached_snapshot_generation_timestamp_seconds"],
            "1700000600"
        );
        assert_eq!(v["ec2cached_sweep_duration_seconds"], "2");
        assert_eq!(
            v["ec2cached_fleet_info{fleet=\"s3://bucket/fleet/hosts.snap\",role=\"poller\"}"],
            "1"
        );
        assert_eq!(t["ec2cached_s3_confirmed_sweep_timestamp_seconds"], "gauge");
        assert_eq!(t["ec2cached_fleet_info"], "gauge");
        for name in t.keys() {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
        }
        // Before a first sweep found in S3: its fleet, no time.
        let (v, _) = samples(&render(
            &cfg(publish),
            &Status::default(),
            None,
            1_700_000_700,
        ));
        assert!(!v.keys().any(|k| k.contains("s3_confirmed")), "{v:?}");
        assert!(v.keys().any(|k| k.starts_with("ec2cached_fleet_info{")));
        // `fleet` set: that identity, quoted as the text format wants.
        let named = cfg(&format!("{publish}\nfleet = 'prod\"eu\\1'"));
        let (v, _) = samples(&render(&named, &st, None, 1_700_000_700));
        assert_eq!(
            v["ec2cached_fleet_info{fleet=\"prod\\\"eu\\\\1\",role=\"poller\"}"], "1",
            "{v:?}"
        );
    }

    #[test]
    fn the_textfile_key_must_name_a_prom_file() {
        let bad = Config::parse(
            std::path::Path::new("/etc/x.toml"),
            "[metrics]\ntextfile = \"/var/lib/node-exporter/ec2cached.txt\"",
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("metrics.textfile") && bad.contains(".prom"),
            "{bad}"
        );
        let good = cfg("[metrics]\ntextfile = \"/tmp/m/ec2cached.prom\"");
        assert_eq!(
            good.metrics_textfile.as_deref(),
            Some(std::path::Path::new("/tmp/m/ec2cached.prom"))
        );
    }

    #[test]
    fn write_replaces_the_file_atomically_and_keeps_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::parse(
            &dir.path().join("c.toml"),
            &format!(
                "snapshot = {:?}\n[metrics]\ntextfile = {:?}",
                dir.path().join("hosts.snap"),
                dir.path().join("m.prom")
            ),
        )
        .unwrap();
        write(&c);
        write(&c);
        let text = std::fs::read_to_string(dir.path().join("m.prom")).unwrap();
        assert!(text.contains("ec2cached_snapshot_present 0"), "{text}");
        // The file and the status file's lock (the snapshot is beside it here), no temp file.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["hosts.snap.status.lock", "m.prom"], "{names:?}");
    }
}
