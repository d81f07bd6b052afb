//! The rules between sections, in one place: each says which two sections it relates.

use super::polling::Timing;
use super::{at, Checked};
use nss_ec2_snapshot::fleet::{AndName, Zone};
use std::path::Path;

/// `[follow]` and the poller's keys: a follower's names, regions and max_age are the poller's,
/// carried in the snapshot.
pub(super) fn follower_has_no_poller_keys(toml_keys: &[String]) -> Checked<()> {
    const POLLER_ONLY: [&str; 12] = [
        "regions",
        "max_age",
        "api_timeout",
        "security_groups",
        "ready_tag",
        "service_tag",
        "address",
        "publish",
        "zone",
        "name",
        "account",
        "events",
    ];
    match POLLER_ONLY
        .iter()
        .find(|k| toml_keys.iter().any(|t| t == *k))
    {
        Some(k) => Err(at(
            *k,
            "not allowed with [follow]: a follower takes its names, regions and max_age from the \
             poller that signed the snapshot (set it in the poller's config; a follower's own \
             bound on what it installs is [follow] max_age)",
        )),
        None => Ok(()),
    }
}

/// The `max_age` of a poller with `[publish]` when the config sets none: 4 hours (an unchanged
/// fleet is then re-uploaded every hour, `max_age / 4`), or 4 × `interval` if that is more.
pub const PUBLISH_MAX_AGE: u32 = 4 * 3600;

/// The largest `max_age` of a fleet: a poller with `[publish]` may set no more, and a follower
/// bounds what an object carries to it.
pub const FLEET_MAX_AGE: u32 = 7 * 86_400;

/// `[publish]` and `max_age`: a fleet's snapshots are bounded in age, or a follower with nothing
/// installed (a new host) would install any sweep a poller ever signed (a replay). Unset, the
/// default bound; 0 is refused.
pub(super) fn publish_bounds_max_age(t: Timing, set: Option<u32>) -> Checked<Timing> {
    match set {
        Some(0) => Err(at(
            "max_age",
            format!(
                "must not be 0 with [publish]: followers would install any sweep a poller ever \
                 signed, however old (leave it out for {} s, or set a bound)",
                PUBLISH_MAX_AGE.max(4 * t.interval)
            ),
        )),
        Some(m) if m > FLEET_MAX_AGE => Err(at(
            "max_age",
            format!(
                "must be at most {FLEET_MAX_AGE} s (7 days) with [publish]: followers install \
                 no sweep older than that"
            ),
        )),
        Some(_) => Ok(t),
        None => Ok(Timing {
            max_age: PUBLISH_MAX_AGE.max(t.interval.saturating_mul(4)),
            ..t
        }),
    }
}

/// `[publish]` and `max_age`: followers check every interval too, and would go stale between
/// healthy polls with less than 4 × `interval`.
pub(super) fn publish_max_age(t: &Timing) -> Checked<()> {
    if t.max_age != 0 && u64::from(t.max_age) < 4 * u64::from(t.interval) {
        return Err(at(
            "max_age",
            format!(
                "must be at least 4 × `interval` ({} s) with [publish]: followers check every \
                 interval too, and would go stale between healthy polls",
                4 * u64::from(t.interval)
            ),
        ));
    }
    Ok(())
}

/// `[metrics] textfile` and `snapshot`: never the snapshot or its status file.
pub(super) fn textfile_is_not_the_snapshot(textfile: &Path, snapshot: &Path) -> Checked<()> {
    if textfile == snapshot || textfile == crate::leaf::ledger::status_path(snapshot) {
        return Err(at(
            "metrics.textfile",
            "must not be the snapshot or its status file",
        ));
    }
    Ok(())
}

/// `[[name]]` and `[[zone]]`: N.name would be both a numbered name and a zone value.
pub(super) fn name_is_not_a_zone(name: &str, key: &str, zones: &[Zone]) -> Checked<()> {
    if zones.iter().any(|z| z.under == name) {
        return Err(at(
            key,
            format!(
                "{name:?} is a zone's `under` label: N.{name} would be both a numbered name of \
                 this entry and a zone value"
            ),
        ));
    }
    Ok(())
}

/// `[[account]] label` and `[[zone]] under`: one place under the domain each.
pub(super) fn label_is_not_a_zone(label: &str, key: &str, zones: &[Zone]) -> Checked<()> {
    if zones.iter().any(|z| z.under == label) {
        return Err(at(
            key,
            format!("{label:?} is also a zone's `under`: one of them must change"),
        ));
    }
    Ok(())
}

/// `[[name]]` and `[[account]] label`: label.D is where that account's names live.
pub(super) fn names_are_not_labels(
    names: &[AndName],
    labels: &[String],
    domain: &str,
) -> Checked<()> {
    match names
        .iter()
        .enumerate()
        .find(|(_, n)| labels.contains(&n.name))
    {
        Some((i, n)) => Err(at(
            format!("name[{i}].name"),
            format!(
                "{:?} is an account label: {}.{domain} is where that account's names live",
                n.name, n.name
            ),
        )),
        None => Ok(()),
    }
}
