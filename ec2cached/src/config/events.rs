//! `[events]`: the SQS queue that EventBridge delivers EC2's change events to, on a poller
//! (issue 24): a tag flip reaches the snapshot in seconds, sweeps stay as the safety net.

use super::{at, Checked};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    queue_url: String,
    debounce_ms: Option<u32>,
}

/// `[events]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Events {
    /// The queue (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`; the SQS endpoint itself comes
    /// from the SDK's chain, `AWS_ENDPOINT_URL_SQS` for a test server).
    pub queue_url: String,
    /// The region of the queue, from its URL when it is AWS's (`sqs.REGION.amazonaws.com`).
    pub region: Option<String>,
    /// How long a burst of events is gathered before one publish.
    pub debounce: Duration,
}

/// `interval` with `[events]` when the config sets none: the reconcile sweep. Events bring the
/// changes; the sweep repairs what an event missed (EventBridge delivery is best effort, a
/// `running` event may come before the instance's tags), so it can be rare: every 5 minutes
/// costs a tenth of the 30 s default's DescribeInstances budget.
pub const EVENTS_INTERVAL: u32 = 300;

/// Default `debounce_ms`: long enough for one script's 50 CreateTags to make one publish,
/// short against the 3 s target.
pub const DEBOUNCE_MS: u32 = 500;

pub(super) fn events(e: RawEvents) -> Checked<Events> {
    let url = e.queue_url.trim();
    let bad = || {
        at(
            "events.queue_url",
            format!(
                "{:?} is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)",
                e.queue_url
            ),
        )
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    let parts: Vec<&str> = path.split('/').collect();
    let ok_path = matches!(parts.as_slice(), [acct, name]
        if acct.len() == 12 && acct.bytes().all(|b| b.is_ascii_digit())
            && !name.is_empty() && name.len() <= 80
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    if host.is_empty() || !ok_path {
        return Err(bad());
    }
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split_once(".amazonaws.com"))
        .map(|(r, _)| r.to_string());
    let debounce_ms = e.debounce_ms.unwrap_or(DEBOUNCE_MS);
    if debounce_ms > 10_000 {
        return Err(at(
            "events.debounce_ms",
            "must be 0 to 10000 (a tag flip should reach the fleet in seconds)",
        ));
    }
    Ok(Events {
        queue_url: url.to_string(),
        region,
        debounce: Duration::from_millis(u64::from(debounce_ms)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str, ms: Option<u32>) -> Checked<Events> {
        events(RawEvents {
            queue_url: url.into(),
            debounce_ms: ms,
        })
    }

    #[test]
    fn queue_urls_and_debounce() {
        let e = parse(
            "https://sqs.eu-west-1.amazonaws.com/123456789012/ec2cached-events",
            None,
        )
        .unwrap();
        assert_eq!(e.region.as_deref(), Some("eu-west-1"));
        assert_eq!(e.debounce, Duration::from_millis(500));
        let e = parse("http://127.0.0.1:5000/123456789012/q.fifo", Some(0)).unwrap();
        assert_eq!(e.region, None);
        for bad in [
            "sqs.amazonaws.com/1/q",
            "https://sqs.x/12/q",
            "https://h/123456789012/",
            "ftp://h/123456789012/q",
        ] {
            assert!(parse(bad, None).is_err(), "{bad}");
        }
        assert!(parse("https://h/123456789012/q", Some(10_001)).is_err());
    }
}
