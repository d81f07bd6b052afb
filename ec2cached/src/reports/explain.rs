//! `ec2cached explain NAME|INSTANCE-ID`: why an instance is or is not behind a name, with the
//! rules of the snapshot crate (`fleet.rs`) that `refresh` publishes with.

use crate::config::Config;
use nss_ec2_snapshot::fleet::{
    build, label, readiness, service_key, Built, Ec2Instance, Readiness, Zone,
};
use std::fmt::Write;

fn addr(i: &Ec2Instance, cfg: &Config) -> String {
    let mut parts: Vec<String> = i.ipv4(&cfg.rules).iter().map(|a| a.to_string()).collect();
    parts.extend(i.ipv6.iter().map(|a| a.to_string()));
    if parts.is_empty() {
        "no address".into()
    } else {
        parts.join(" ")
    }
}

fn ready_text(i: &Ec2Instance, cfg: &Config) -> String {
    match readiness(i, &cfg.rules) {
        Readiness::NotLive(w) | Readiness::NotReady(w) | Readiness::Ready(w) => w,
    }
}

/// Where an instance's names live: `D`, or `label.D` for a labelled account.
fn suffix_of(i: &Ec2Instance, cfg: &Config) -> String {
    cfg.rules.suffix(i.namespace.as_deref())
}

/// What one instance is in, source by source.
fn instance_report(out: &mut String, cfg: &Config, i: &Ec2Instance, built: &Built) {
    let rules = &cfg.rules;
    // What became of a name this instance would get: published with it, or why not.
    let me = built
        .table
        .names
        .iter()
        .find(|n| n.name == format!("{}.{}", i.id.to_ascii_lowercase(), rules.domain))
        .map(|n| n.members[0]);
    let outcome = |full: String| {
        if built
            .table
            .names
            .iter()
            .any(|n| n.name == full && me.is_some_and(|m| n.members.contains(&m)))
        {
            return full;
        }
        match built
            .problems
            .iter()
            .find(|p| p.reason.contains(&format!(" {full} ")))
        {
            Some(p) => format!("{full} not published: {}: {}", p.subject, p.reason),
            None if !i.is_ready(rules) => format!("{full}: not while not ready"),
            None => format!("{full}: not published"),
        }
    };
    let suffix = suffix_of(i, cfg);
    let _ = writeln!(out, "instance {}: {}", i.id, ready_text(i, cfg));
    let _ = writeln!(out, "  address: {}", addr(i, cfg));
    if let Some(l) = &i.namespace {
        let _ = writeln!(out, "  account label {l:?}: its names end in .{suffix}");
    }
    for n in &rules.names {
        let fails: Vec<String> = n
            .conditions
            .iter()
            .filter_map(|c| {
                c.check(i)
                    .err()
                    .map(|why| format!("condition {} fails: {why}", c.text()))
            })
            .collect();
        let note = if fails.is_empty() {
            format!(
                "every condition holds: {}",
                outcome(format!("{}.{suffix}", n.name))
            )
        } else {
            fails.join("; ")
        };
        let _ = writeln!(out, "  [[name]] {:?}: {note}", n.name);
    }
    for z in &rules.zones {
        let all = z.key.values(i);
        if all.is_empty() {
            let _ = writeln!(out, "  not in {}: {}", z.describe(), missing_value(z));
            continue;
        }
        for v in all {
            let note = match label(v) {
                _ if !i.zone_values(z, rules).contains(&v) => "not in security_groups".to_string(),
                Ok(l) => outcome(format!("{}.{suffix}", z.prefix(&l))),
                Err(e) => format!("not published: {e}"),
            };
            // Today's one zone reads as it always did: `group "tphon": tphon.ec2`.
            if *z == Zone::default_zone() {
                let _ = writeln!(out, "  {}: {note}", z.key_subject(v));
            } else {
                let _ = writeln!(out, "  {} {}: {note}", z.describe(), z.key_subject(v));
            }
        }
    }
    if rules.zones.iter().any(|z| z.services) {
        for s in i.services(rules) {
            let note = service_key(s).unwrap_or_else(|e| format!("not published: {e}"));
            let _ = writeln!(out, "  service {s:?}: {note}");
        }
    }
}

/// Why an instance has no value for a zone's key.
fn missing_value(z: &Zone) -> String {
    use nss_ec2_snapshot::fleet::ZoneKey;
    match &z.key {
        ZoneKey::SecurityGroup => "no security group".into(),
        ZoneKey::Tag(k) => format!("no {k} tag"),
        ZoneKey::Asg => "not launched by an Auto Scaling group".into(),
        ZoneKey::Az => "no availability zone in the API's answer".into(),
        ZoneKey::Vpc => "no VPC".into(),
        ZoneKey::Region => "no region".into(),
    }
}

/// What `ec2cached explain` says of a name, and whether it resolves.
#[derive(Debug)]
pub struct Explained {
    /// The report.
    pub text: String,
    /// True when the name resolves (the exit status is 0).
    pub found: bool,
}

/// Explains `query` against a fleet.
pub fn explain(cfg: &Config, instances: &[Ec2Instance], query: &str) -> Explained {
    let rules = &cfg.rules;
    let built = build(instances, rules);
    let d = &rules.domain;
    let q = query.trim_end_matches('.').to_ascii_lowercase();
    let mut out = String::new();
    let find_name = |n: &str| built.table.names.iter().find(|x| x.name == n);
    let id_of = |m: u32| {
        let rec = &built.table.instances[m as usize];
        built.table.names[rec.name as usize]
            .name
            .trim_end_matches(&format!(".{d}"))
            .to_string()
    };

    // An instance id, bare or as I.D.
    let bare = q.strip_suffix(&format!(".{d}")).unwrap_or(&q);
    if let Some(i) = instances.iter().find(|i| i.id.eq_ignore_ascii_case(bare)) {
        instance_report(&mut out, cfg, i, &built);
        let idx = built
            .table
            .names
            .iter()
            .position(|n| n.name == format!("{}.{d}", i.id.to_ascii_lowercase()));
        let mut names = Vec::new();
        if let Some(pos) = idx {
            let me = built.table.names[pos].members[0];
            for n in &built.table.names {
                if n.members.contains(&me) {
                    names.push(n.name.clone());
                }
            }
        }
        let _ = writeln!(
            out,
            "  names: {}",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(" ")
            }
        );
        return Explained {
            text: out,
            found: !names.is_empty(),
        };
    }

    if let Some(n) = find_name(&q) {
        let by_id: std::collections::HashMap<String, &Ec2Instance> = instances
            .iter()
            .map(|i| (i.id.to_ascii_lowercase(), i))
            .collect();
        let _ = writeln!(
            out,
            "{q}: {} instance(s), in launch order:",
            n.members.len()
        );
        for (k, &m) in n.members.iter().enumerate() {
            let id = id_of(m);
            let i = by_id.get(id.as_str()).copied();
            let a = i.map(|i| addr(i, cfg)).unwrap_or_default();
            let _ = writeln!(out, "  {}. {id} {a}", k + 1);
        }
        return Explained {
            text: out,
            found: true,
        };
    }

    let Some(prefix) = q.strip_suffix(&format!(".{d}")) else {
        let _ = writeln!(
            out,
            "{q}: not under the domain {d:?}; the module answers UNAVAIL"
        );
        return Explained {
            text: out,
            found: false,
        };
    };
    let _ = writeln!(out, "{q}: no such name");
    for p in built
        .problems
        .iter()
        .filter(|p| p.reason.contains(&format!(" {q} ")) || p.reason.ends_with(&format!(" {q}")))
    {
        let _ = writeln!(out, "  {}: {}", p.subject, p.reason);
    }
    // Which account namespace: the top, and `…label.D` for a labelled account (a name such as
    // web.prod.ec2 may be either: the top's [[name]] "web.prod", or account prod's "web").
    let mut any = candidates(&mut out, cfg, instances, &find_name, None, prefix);
    if let Some((r, l)) = prefix.rsplit_once('.') {
        if rules.account_labels.iter().any(|a| a == l) {
            any |= candidates(&mut out, cfg, instances, &find_name, Some(l), r);
        }
    }
    if !any {
        let _ = writeln!(
            out,
            "  no zone or [[name]] of this config gives a name like {q:?} to a live instance"
        );
    }
    Explained {
        text: out,
        found: false,
    }
}

/// The instances that could be behind `rest` in namespace `ns`, source by source, and why they
/// are not; returns whether any source could give such a name.
fn candidates<'a>(
    out: &mut String,
    cfg: &Config,
    instances: &[Ec2Instance],
    find_name: &dyn Fn(&str) -> Option<&'a nss_ec2_snapshot::Name>,
    ns: Option<&str>,
    rest: &str,
) -> bool {
    let rules = &cfg.rules;
    if let Some(l) = ns {
        let _ = writeln!(out, "  in the names of the account labelled {l:?}:");
    }
    let in_ns = |i: &&Ec2Instance| i.namespace.as_deref() == ns && i.is_live();
    let mut any = false;
    // [[name]] entries: `name` or `N.name`.
    for n in &rules.names {
        let nth = rest
            .strip_suffix(&format!(".{}", n.name))
            .and_then(|p| p.parse::<usize>().ok());
        if rest != n.name && nth.is_none() {
            continue;
        }
        any = true;
        let _ = writeln!(out, "  [[name]] {:?} (every condition must hold):", n.name);
        // The instances closest to it first (fewest failing conditions), at most 20.
        let mut near: Vec<(usize, &Ec2Instance)> = instances
            .iter()
            .filter(in_ns)
            .map(|i| {
                let fails = n.conditions.iter().filter(|c| c.check(i).is_err()).count();
                (fails + usize::from(!i.is_ready(rules)), i)
            })
            .collect();
        near.sort_by_key(|(f, i)| (*f, i.id.as_str()));
        for (_, i) in near.iter().take(20) {
            let mut why = vec![ready_text(i, cfg)];
            for c in &n.conditions {
                why.push(match c.check(i) {
                    Ok(()) => format!("{} holds", c.text()),
                    Err(w) => format!("condition {} fails: {w}", c.text()),
                });
            }
            let _ = writeln!(out, "    {}: {}", i.id, why.join("; "));
        }
        if near.len() > 20 {
            let _ = writeln!(out, "    ... and {} more", near.len() - 20);
        }
    }
    // Zones: `[N.][S.]V[.under]`.
    for z in &rules.zones {
        let body = if z.under.is_empty() {
            Some(rest)
        } else {
            rest.strip_suffix(&format!(".{}", z.under))
        };
        let Some(body) = body else { continue };
        let labels: Vec<&str> = body.split('.').collect();
        let vlabel = labels[labels.len() - 1];
        let mut more = &labels[..labels.len() - 1];
        let nth = more.first().and_then(|l| l.parse::<usize>().ok());
        if nth.is_some() {
            more = &more[1..];
        }
        let service = more.join(".");
        if !service.is_empty() && !z.services {
            continue;
        }
        let members: Vec<&Ec2Instance> = instances
            .iter()
            .filter(in_ns)
            .filter(|i| {
                z.key
                    .values(i)
                    .iter()
                    .any(|v| label(v).as_deref() == Ok(vlabel))
            })
            .collect();
        if members.is_empty() {
            let _ = writeln!(
                out,
                "  {}: no live instance has a value named like {vlabel:?}",
                z.describe()
            );
            continue;
        }
        any = true;
        let _ = writeln!(out, "  {} value {vlabel:?}:", z.describe());
        for i in members {
            let mut why = vec![ready_text(i, cfg)];
            if !i
                .zone_values(z, rules)
                .iter()
                .any(|v| label(v).as_deref() == Ok(vlabel))
            {
                why.push("its group is not in security_groups".into());
            }
            if !service.is_empty() {
                let lists = i
                    .services(rules)
                    .any(|s| service_key(s).as_deref() == Ok(service.as_str()));
                why.push(if lists {
                    format!("lists {service}")
                } else {
                    format!("its {} tag does not list {service}", rules.service_tag)
                });
            }
            let _ = writeln!(out, "    {}: {}", i.id, why.join("; "));
        }
        if let Some(n) = nth {
            let set = if service.is_empty() {
                format!("{}.{}", z.prefix(vlabel), rules.suffix(ns))
            } else {
                format!("{service}.{}.{}", z.prefix(vlabel), rules.suffix(ns))
            };
            let size = find_name(&set).map_or(0, |x| x.members.len());
            let _ = writeln!(out, "    {set} has {size} instance(s); #{n} does not exist");
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::fixture::{fleet, setup};

    #[test]
    fn an_instance_its_names_and_a_name_its_members() {
        let (_d, cfg) = setup(0);
        let fleet = fleet();
        let e = explain(&cfg, &fleet, "I-0A");
        assert!(e.found, "{}", e.text);
        assert!(e.text.starts_with("instance i-0a: "), "{}", e.text);
        let names = e.text.lines().find(|l| l.starts_with("  names: ")).unwrap();
        for n in ["i-0a.ec2", "postgres.tphon.ec2", "1.tphon.ec2"] {
            assert!(names.split_whitespace().any(|x| x == n), "{n}: {names}");
        }
        assert!(!names.contains("redis"), "{names}");
        let e = explain(&cfg, &fleet, "tphon.ec2.");
        assert!(e.found);
        let lines: Vec<&str> = e.text.lines().collect();
        assert_eq!(lines[0], "tphon.ec2: 2 instance(s), in launch order:");
        assert_eq!(lines[1], "  1. i-0a 10.0.0.1");
        assert_eq!(lines[2], "  2. i-0b 10.0.0.2");
    }

    #[test]
    fn a_name_that_does_not_resolve_says_why() {
        let (_d, cfg) = setup(0);
        let fleet = fleet();
        let e = explain(&cfg, &fleet, "mysql.tphon.ec2");
        assert!(!e.found);
        assert!(
            e.text.starts_with("mysql.tphon.ec2: no such name\n"),
            "{}",
            e.text
        );
        let e = explain(&cfg, &fleet, "db.example.com");
        assert!(!e.found);
        assert_eq!(
            e.text,
            "db.example.com: not under the domain \"ec2\"; the module answers UNAVAIL\n"
        );
    }
}
