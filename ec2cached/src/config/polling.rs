//! The top-level keys of a poll: `snapshot`, `interval`, `max_age`, `api_timeout`, `regions`.

use super::{at, Checked, DEFAULT_SNAPSHOT};
use std::path::PathBuf;

/// `interval`, `max_age` and `api_timeout`, checked against each other.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timing {
    pub interval: u32,
    pub max_age: u32,
    pub api_timeout: u32,
}

impl Timing {
    pub fn check(
        interval: Option<u32>,
        max_age: Option<u32>,
        api_timeout: Option<u32>,
    ) -> Checked<Timing> {
        let interval = interval.unwrap_or(30);
        if !(1..=86_400).contains(&interval) {
            return Err(at("interval", "must be 1 to 86400 seconds"));
        }
        let max_age = max_age.unwrap_or(0);
        // A poll starts up to 1.1 × interval after the last one started and takes a while:
        // with less than 2 × interval, a healthy daemon's snapshot would go stale between polls.
        if max_age != 0 && u64::from(max_age) < 2 * u64::from(interval) {
            return Err(at(
                "max_age",
                format!(
                    "must be 0 (no limit) or at least 2 × `interval` ({} s): the snapshot would \
                     go stale between two healthy polls",
                    2 * u64::from(interval)
                ),
            ));
        }
        let api_timeout = api_timeout.unwrap_or(20);
        if !(1..=600).contains(&api_timeout) {
            return Err(at("api_timeout", "must be 1 to 600 seconds"));
        }
        Ok(Timing {
            interval,
            max_age,
            api_timeout,
        })
    }
}

/// A list of region names under `key` (`regions`, `account[0].regions`): no empty name, no
/// blank in one, none twice (it would be swept twice).
pub(super) fn regions(list: Vec<String>, key: &str) -> Checked<Vec<String>> {
    if let Some(r) = list
        .iter()
        .find(|r| r.is_empty() || r.contains(char::is_whitespace))
    {
        return Err(at(key, format!("{r:?} is not a region name")));
    }
    if let Some((i, r)) = list
        .iter()
        .enumerate()
        .find(|(i, r)| list[..*i].contains(r))
    {
        return Err(at(
            format!("{key}[{i}]"),
            format!("{r:?} is listed twice: it would be swept twice"),
        ));
    }
    Ok(list)
}

/// `snapshot`: a file path.
pub(super) fn snapshot(path: Option<PathBuf>) -> Checked<PathBuf> {
    let snapshot = path.unwrap_or_else(|| DEFAULT_SNAPSHOT.into());
    if snapshot.file_name().is_none() || snapshot.parent().is_none() {
        return Err(at("snapshot", "must be a file path"));
    }
    Ok(snapshot)
}
