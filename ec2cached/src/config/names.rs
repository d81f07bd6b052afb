//! The naming rules: `domain`, the tags (`ready_tag`, `service_tag`), `security_groups`,
//! `address`, `[[zone]]` and `[[name]]`.

use super::{across, at, Checked};
use nss_ec2_snapshot::fleet::{label, AddressChoice, AndName, Condition, Zone, ZoneKey, ASG_TAG};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawZone {
    key: String,
    under: Option<String>,
    services: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawName {
    name: String,
    #[serde(rename = "match")]
    conditions: Vec<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum Address {
    Private,
    Public,
}

impl Address {
    pub fn choice(a: Option<Address>) -> AddressChoice {
        match a {
            Some(Address::Public) => AddressChoice::Public,
            _ => AddressChoice::Private,
        }
    }
}

/// One name label that is not all digits (a zone's `under`, an account's `label`): lowercased,
/// or why not.
pub(super) fn one_label(text: &str) -> Result<String, ()> {
    let l = text.to_ascii_lowercase();
    if label(&l).as_deref() != Ok(l.as_str()) || l.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    Ok(l)
}

/// `domain`: name labels, 1 to 189 characters (so that instance names fit in 253), without the
/// trailing dot, lowercased.
pub(super) fn domain(domain: Option<String>) -> Checked<String> {
    let domain = domain.unwrap_or_else(|| "ec2".into());
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(&domain)
        .to_ascii_lowercase();
    if domain.is_empty() || domain.len() > 189 {
        return Err(at(
            "domain",
            "must be 1 to 189 characters, so that instance names fit in 253",
        ));
    }
    for l in domain.split('.') {
        if label(l).as_deref() != Ok(l) {
            return Err(at(
                "domain",
                format!("label {l:?} is not a valid name label ([a-z0-9-], 1 to 63)"),
            ));
        }
    }
    Ok(domain)
}

/// `ready_tag`: `KEY=VALUE`.
pub(super) fn ready_tag(tag: Option<String>) -> Checked<Option<(String, String)>> {
    match tag {
        None => Ok(None),
        Some(t) => match t.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(Some((k.to_string(), v.to_string()))),
            _ => Err(at("ready_tag", format!("{t:?} is not KEY=VALUE"))),
        },
    }
}

/// `service_tag`: not empty.
pub(super) fn service_tag(tag: Option<String>) -> Checked<String> {
    let tag = tag.unwrap_or_else(|| "services".into());
    if tag.is_empty() {
        return Err(at("service_tag", "must not be empty"));
    }
    Ok(tag)
}

/// `security_groups`: at least one, no empty name.
pub(super) fn security_groups(groups: Option<Vec<String>>) -> Checked<Option<Vec<String>>> {
    if groups.as_ref().is_some_and(Vec::is_empty) {
        return Err(at(
            "security_groups",
            "lists no group: no instance would be read and every name would go (leave it out \
             for every group)",
        ));
    }
    if groups
        .as_ref()
        .is_some_and(|g| g.iter().any(String::is_empty))
    {
        return Err(at("security_groups", "contains an empty name"));
    }
    Ok(groups)
}

/// `[[zone]]`: the default zone when there is none; each key and `under` once.
pub(super) fn zones(list: Option<Vec<RawZone>>) -> Checked<Vec<Zone>> {
    let list = match list {
        None => return Ok(vec![Zone::default_zone()]),
        Some(list) if list.is_empty() => {
            return Err(at(
                "zone",
                "lists no zone: there would be no names (leave [[zone]] out for the default)",
            ))
        }
        Some(list) => list,
    };
    let mut zones: Vec<Zone> = Vec::new();
    for (i, z) in list.into_iter().enumerate() {
        let key_at = format!("zone[{i}].key");
        let key = ZoneKey::parse(&z.key).map_err(|e| at(&key_at, e))?;
        let under = match z.under.unwrap_or_default() {
            u if u.is_empty() => u,
            u => one_label(&u).map_err(|()| {
                at(
                    format!("zone[{i}].under"),
                    format!(
                        "{:?} is not one name label ([a-z0-9-], 1 to 63, not all digits), or \
                         \"\" for the top",
                        u.to_ascii_lowercase()
                    ),
                )
            })?,
        };
        if zones
            .iter()
            .any(|o| same_key(&o.key, &key) && o.under == under)
        {
            return Err(at(
                &key_at,
                format!(
                    "{} under {under:?} is listed twice: the second would publish nothing",
                    key.text()
                ),
            ));
        }
        zones.push(Zone {
            key,
            under,
            services: z.services.unwrap_or(false),
        });
    }
    Ok(zones)
}

/// Whether two zone keys read the same value: `asg` is the tag `aws:autoscaling:groupName`.
fn same_key(a: &ZoneKey, b: &ZoneKey) -> bool {
    let tag = |k: &ZoneKey| match k {
        ZoneKey::Asg => Some(ASG_TAG.to_string()),
        ZoneKey::Tag(t) => Some(t.clone()),
        _ => None,
    };
    a == b || (tag(a).is_some() && tag(a) == tag(b))
}

/// `[[name]]`: names made of labels whose first is not all digits, each with at least one
/// condition, each once, none a zone's `under`.
pub(super) fn names(
    list: Option<Vec<RawName>>,
    zones: &[Zone],
    domain: &str,
) -> Checked<Vec<AndName>> {
    let mut names: Vec<AndName> = Vec::new();
    for (i, n) in list.unwrap_or_default().into_iter().enumerate() {
        let name_at = format!("name[{i}].name");
        let name = n.name.trim_end_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = name.split('.').collect();
        if name.is_empty() || labels.iter().any(|l| label(l).as_deref() != Ok(*l)) {
            return Err(at(
                &name_at,
                format!(
                    "{:?} is not name labels ([a-z0-9-], 1 to 63 each) joined by dots",
                    n.name
                ),
            ));
        }
        if name == domain || name.ends_with(&format!(".{domain}")) {
            return Err(at(
                &name_at,
                format!(
                    "{:?} ends in the domain {domain:?}: a name is written without it (it would \
                     be {name}.{domain})",
                    n.name
                ),
            ));
        }
        if labels[0].bytes().all(|b| b.is_ascii_digit()) {
            return Err(at(
                &name_at,
                format!(
                    "{:?} starts with an all-digit label: it would clash with numbered names",
                    n.name
                ),
            ));
        }
        if n.conditions.is_empty() {
            return Err(at(
                format!("name[{i}].match"),
                "must list at least one condition",
            ));
        }
        let mut conditions = Vec::new();
        for (k, c) in n.conditions.iter().enumerate() {
            conditions
                .push(Condition::parse(c).map_err(|e| at(format!("name[{i}].match[{k}]"), e))?);
        }
        if names.iter().any(|o| o.name == name) {
            return Err(at(
                &name_at,
                format!("{name:?} is listed twice: the second would never be published"),
            ));
        }
        across::name_is_not_a_zone(&name, &name_at, zones)?;
        names.push(AndName { name, conditions });
    }
    Ok(names)
}
