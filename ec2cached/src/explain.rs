//! `ec2cached explain NAME|INSTANCE-ID`: why an instance is or is not behind a name.

use crate::config::Config;
use nss_ec2_snapshot::fleet::{build, label, service_key, Ec2Instance};
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

fn readiness(i: &Ec2Instance, cfg: &Config) -> String {
    if !i.is_live() {
        return format!("not live (state {:?})", i.state);
    }
    match &cfg.rules.ready_tag {
        None => "ready (no ready_tag configured)".into(),
        Some((k, v)) => match i.tags.iter().find(|(tk, _)| tk == k) {
            Some((_, tv)) if tv == v => format!("ready ({k}={v})"),
            Some((_, tv)) => format!("live but not ready: {k}={tv:?}, wants {v:?}"),
            None => format!("live but not ready: no {k} tag, wants {k}={v}"),
        },
    }
}

/// Explains `query` against a fleet; returns the report and whether the name resolves.
pub fn explain(cfg: &Config, instances: &[Ec2Instance], query: &str) -> (String, bool) {
    let built = build(instances, &cfg.rules);
    let d = &cfg.rules.domain;
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
        let _ = writeln!(out, "instance {}: {}", i.id, readiness(i, cfg));
        let _ = writeln!(out, "  address: {}", addr(i, cfg));
        for g in &i.groups {
            let wanted = cfg
                .rules
                .security_groups
                .as_ref()
                .is_none_or(|w| w.contains(g));
            let note = match label(g) {
                _ if !wanted => "not in security_groups".to_string(),
                Ok(l) => format!("{l}.{d}"),
                Err(e) => format!("not published: {e}"),
            };
            let _ = writeln!(out, "  group {g:?}: {note}");
        }
        for s in i.services(&cfg.rules) {
            let note = service_key(s).unwrap_or_else(|e| format!("not published: {e}"));
            let _ = writeln!(out, "  service {s:?}: {note}");
        }
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
        return (out, !names.is_empty());
    }

    if let Some(n) = find_name(&q) {
        let _ = writeln!(
            out,
            "{q}: {} instance(s), in launch order:",
            n.members.len()
        );
        for (k, &m) in n.members.iter().enumerate() {
            let id = id_of(m);
            let i = instances.iter().find(|i| i.id.eq_ignore_ascii_case(&id));
            let a = i.map(|i| addr(i, cfg)).unwrap_or_default();
            let _ = writeln!(out, "  {}. {id} {a}", k + 1);
        }
        return (out, true);
    }

    let Some(prefix) = q.strip_suffix(&format!(".{d}")) else {
        let _ = writeln!(
            out,
            "{q}: not under the domain {d:?}; the module answers UNAVAIL"
        );
        return (out, false);
    };
    let labels: Vec<&str> = prefix.split('.').collect();
    let glabel = labels[labels.len() - 1];
    let mut rest = &labels[..labels.len() - 1];
    let nth = rest.first().and_then(|l| l.parse::<usize>().ok());
    if nth.is_some() {
        rest = &rest[1..];
    }
    let service = rest.join(".");
    let _ = writeln!(out, "{q}: no such name");
    for p in built
        .problems
        .iter()
        .filter(|p| p.reason.contains(&format!("{glabel}.{d}")))
    {
        let _ = writeln!(out, "  {}: {}", p.subject, p.reason);
    }
    let mut any = false;
    for i in instances {
        let in_group = i.groups.iter().any(|g| label(g).as_deref() == Ok(glabel));
        if !in_group {
            continue;
        }
        any = true;
        let mut why = vec![readiness(i, cfg)];
        if !service.is_empty() {
            let lists = i
                .services(&cfg.rules)
                .any(|s| service_key(s).as_deref() == Ok(service.as_str()));
            why.push(if lists {
                format!("lists {service}")
            } else {
                format!("its {} tag does not list {service}", cfg.rules.service_tag)
            });
        }
        let _ = writeln!(out, "  {}: {}", i.id, why.join("; "));
    }
    if let (Some(n), true) = (nth, any) {
        let set = if service.is_empty() {
            format!("{glabel}.{d}")
        } else {
            format!("{service}.{glabel}.{d}")
        };
        let size = find_name(&set).map_or(0, |x| x.members.len());
        let _ = writeln!(out, "  {set} has {size} instance(s); #{n} does not exist");
    }
    if !any {
        let _ = writeln!(
            out,
            "  no instance is in a security group named like {glabel:?}"
        );
    }
    (out, false)
}
