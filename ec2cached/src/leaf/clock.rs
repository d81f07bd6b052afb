//! The clock: seconds since the epoch, and how a time is written for people (RFC 3339 UTC).

use aws_smithy_types::date_time::{DateTime, Format};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A unix time as RFC 3339 UTC.
pub fn utc(t: u64) -> String {
    DateTime::from_secs(i64::try_from(t).unwrap_or(i64::MAX))
        .fmt(Format::DateTime)
        .unwrap_or_else(|_| t.to_string())
}

/// How far in the future a sweep may be (clocks of pollers and hosts differ a little). A snapshot
/// further ahead comes from a broken clock, or from no poller: it is not installed; one already
/// installed blocks earlier sweeps only when a trusted key signed it (a follower: a clock
/// stepped back must not let an old signed sweep in), not under the writers' default rule (it
/// would stall every writer until the clocks caught up), and `status` says so.
pub const CLOCK_SLACK_SECS: u64 = 300;
