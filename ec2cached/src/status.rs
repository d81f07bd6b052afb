//! `ec2cached status`: the published snapshot's age and counts, and the last poll's outcome.

use crate::config::Config;
use crate::publish::{now, Status};
use aws_smithy_types::date_time::{DateTime, Format};
use nss_ec2_snapshot::Snapshot;
use std::fmt::Write;

fn when(t: u64, now: u64) -> String {
    let iso = DateTime::from_secs(t as i64)
        .fmt(Format::DateTime)
        .unwrap_or_else(|_| t.to_string());
    format!("{iso} ({} s ago)", now.saturating_sub(t))
}

/// The report, and whether everything is healthy (a usable snapshot, last poll good).
pub fn report(cfg: &Config) -> (String, bool) {
    let now = now();
    let mut out = String::new();
    let mut healthy = true;
    let _ = writeln!(out, "snapshot:       {}", cfg.snapshot.display());
    match std::fs::read(&cfg.snapshot) {
        Err(e) => {
            healthy = false;
            let _ = writeln!(out, "state:          unusable: {e}");
        }
        Ok(bytes) => match Snapshot::parse(&bytes) {
            Err(e) => {
                healthy = false;
                let _ = writeln!(out, "state:          unusable: {e}");
            }
            Ok(s) => {
                let h = s.header();
                let age = now.saturating_sub(h.generated_unix);
                let expired = h.max_age_secs != 0 && age > u64::from(h.max_age_secs);
                healthy &= !expired;
                let _ = writeln!(
                    out,
                    "state:          {}",
                    if expired {
                        "expired (older than max_age): lookups answer UNAVAIL"
                    } else {
                        "serving"
                    }
                );
                let _ = writeln!(
                    out,
                    "domain:         {}",
                    String::from_utf8_lossy(s.domain())
                );
                let _ = writeln!(out, "generated:      {}", when(h.generated_unix, now));
                let _ = writeln!(out, "interval:       {} s", h.interval_secs);
                let max_age = match h.max_age_secs {
                    0 => "none".to_string(),
                    m => format!("{m} s"),
                };
                let _ = writeln!(out, "max_age:        {max_age}");
                let _ = writeln!(out, "names:          {}", h.names);
                let _ = writeln!(out, "instances:      {} live", h.instances);
                let _ = writeln!(out, "size:           {} bytes", h.file_len);
            }
        },
    }
    let st = Status::load(&cfg.snapshot);
    if let Some(t) = st.last_attempt {
        let ok = st.consecutive_failures == 0;
        healthy &= ok;
        let _ = writeln!(
            out,
            "last poll:      {} {}",
            when(t, now),
            if ok { "ok" } else { "FAILED" }
        );
    }
    if let Some(t) = st.last_success {
        let _ = writeln!(out, "last success:   {}", when(t, now));
        let _ = writeln!(
            out,
            "last sweep:     {} instances, {} live, {} ready, {} names, {} request(s)",
            st.instances, st.live, st.ready, st.names, st.requests
        );
    }
    match (&st.last_error, st.last_error_at) {
        (Some(e), Some(t)) => {
            let _ = writeln!(out, "last error:     {}: {e}", when(t, now));
            if st.consecutive_failures > 0 {
                let _ = writeln!(
                    out,
                    "failing:        {} poll(s) in a row",
                    st.consecutive_failures
                );
            }
        }
        _ => {
            let _ = writeln!(out, "last error:     none");
        }
    }
    for p in &st.problems {
        let _ = writeln!(out, "not published:  {p}");
    }
    (out, healthy)
}
