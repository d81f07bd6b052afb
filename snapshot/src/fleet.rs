//! From EC2 instances to names: the rules of docs/names.md, "How names work", in one place for
//! `refresh` (which publishes them) and `explain` (which says why).
//!
//! * live = state `running`; ready = live and carrying the configured ready tag (if any)
//!   ([`readiness`]).
//! * Zones ([`Zone`]): for every value `V` of the zone's key that a ready instance has, `V[.U].D`
//!   (its ready instances, in launch order: launch time, then instance id) and `N.V[.U].D`; with
//!   `services`, also `S.V[.U].D` and `N.S.V[.U].D`. Without `[[zone]]`, the one zone is today's:
//!   security groups, with services.
//! * AND-names ([`AndName`]): the ready instances for which every condition holds.
//! * `I.D`: every live instance, ready or not, of every account, at the top.
//! * Accounts with a label put their zone and AND-names under `label.D`.
//! * Labels: lower case, each run of characters outside `[a-z0-9-]` becomes one `-`, leading and
//!   trailing `-` dropped; empty labels, labels over 63 characters, all-digit service labels and
//!   names over 253 characters are not published and are reported.
//! * Precedence when two sources give one name: instance ids, then AND-names in config order,
//!   then zones in config order; inside a zone, among values that give one label, the value that
//!   *is* the label wins, then the smallest (byte order). A zone value equal to a zone's `under`
//!   label or (at the top) an account label is reserved. Groups with the same name (in different
//!   VPCs) are one group.

use crate::format::{Instance as Record, Kind, Name, Table};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

/// Which IPv4 address becomes the `A` record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressChoice {
    /// Primary private IPv4 (default).
    #[default]
    Private,
    /// Public IPv4; instances without one have no `A`.
    Public,
}

/// What keys the sets of a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneKey {
    /// Every security group of the instance.
    SecurityGroup,
    /// The value of one tag; an instance without it is in no set.
    Tag(String),
    /// The Auto Scaling group (tag `aws:autoscaling:groupName`).
    Asg,
    /// The availability zone.
    Az,
    /// The VPC id.
    Vpc,
    /// The region.
    Region,
}

/// The tag EC2 Auto Scaling puts on the instances it launches.
pub const ASG_TAG: &str = "aws:autoscaling:groupName";

impl ZoneKey {
    /// `security-group`, `tag:KEY`, `asg`, `az`, `vpc`, `region`.
    pub fn parse(s: &str) -> Result<ZoneKey, String> {
        Ok(match s {
            "security-group" => ZoneKey::SecurityGroup,
            "asg" => ZoneKey::Asg,
            "az" => ZoneKey::Az,
            "vpc" => ZoneKey::Vpc,
            "region" => ZoneKey::Region,
            _ => match s.strip_prefix("tag:") {
                Some(k) if !k.is_empty() => ZoneKey::Tag(k.to_string()),
                _ => {
                    return Err(format!(
                        "{s:?} is not a zone key: security-group, tag:KEY, asg, az, vpc or region"
                    ))
                }
            },
        })
    }

    /// The key as written in the config.
    pub fn text(&self) -> String {
        match self {
            ZoneKey::SecurityGroup => "security-group".into(),
            ZoneKey::Tag(k) => format!("tag:{k}"),
            ZoneKey::Asg => "asg".into(),
            ZoneKey::Az => "az".into(),
            ZoneKey::Vpc => "vpc".into(),
            ZoneKey::Region => "region".into(),
        }
    }

    /// The raw values an instance has for this key (several for security groups).
    pub fn values<'a>(&self, i: &'a Ec2Instance) -> Vec<&'a str> {
        let one = |v: &'a str| if v.is_empty() { vec![] } else { vec![v] };
        match self {
            ZoneKey::SecurityGroup => i.groups.iter().map(String::as_str).collect(),
            ZoneKey::Tag(k) => i.tag(k).map(|v| vec![v]).unwrap_or_default(),
            ZoneKey::Asg => i.tag(ASG_TAG).map(|v| vec![v]).unwrap_or_default(),
            ZoneKey::Az => one(&i.az),
            ZoneKey::Vpc => one(&i.vpc),
            ZoneKey::Region => one(&i.region),
        }
    }

    /// How a value of this key is named in messages: `group "tphon"`, `tag:Name value "web 1"`.
    pub fn subject(&self, raw: &str) -> String {
        match self {
            ZoneKey::SecurityGroup => format!("group {raw:?}"),
            k => format!("{} value {raw:?}", k.text()),
        }
    }
}

/// One `[[zone]]`: sets keyed by `key`, named `V[.under].D`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// What keys the sets.
    pub key: ZoneKey,
    /// `""`, or one label the zone's names end in (before the domain).
    pub under: String,
    /// Also `S.V[.under].D` from the services tag.
    pub services: bool,
}

impl Zone {
    /// Today's names: security groups, at the top, with services.
    pub fn default_zone() -> Zone {
        Zone {
            key: ZoneKey::SecurityGroup,
            under: String::new(),
            services: true,
        }
    }

    /// The name of value label `vlabel` in this zone, before the suffix: `V` or `V.under`.
    pub fn prefix(&self, vlabel: &str) -> String {
        if self.under.is_empty() {
            vlabel.to_string()
        } else {
            format!("{vlabel}.{}", self.under)
        }
    }

    /// `group "tphon"`, `tag:Name value "web 1"`: a value of this zone's key, for messages.
    pub fn key_subject(&self, raw: &str) -> String {
        self.key.subject(raw)
    }

    /// `zone security-group`, `zone tag:Name (under "name")`, for messages.
    pub fn describe(&self) -> String {
        if self.under.is_empty() {
            format!("zone {}", self.key.text())
        } else {
            format!("zone {} (under {:?})", self.key.text(), self.under)
        }
    }
}

/// One condition of a `[[name]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// `tag:KEY=VALUE` (exact value) or `tag:KEY` (present, any value).
    Tag(String, Option<String>),
    /// `security-group=NAME` (exact group name).
    SecurityGroup(String),
    /// `az=…`.
    Az(String),
    /// `vpc=…`.
    Vpc(String),
    /// `region=…`.
    Region(String),
    /// `asg=…`.
    Asg(String),
}

impl Condition {
    /// Parses `tag:KEY=VALUE`, `tag:KEY`, `security-group=NAME`, `az=…`, `vpc=…`, `region=…`,
    /// `asg=…`.
    pub fn parse(s: &str) -> Result<Condition, String> {
        if let Some(t) = s.strip_prefix("tag:") {
            let (k, v) = match t.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (t, None),
            };
            if k.is_empty() {
                return Err(format!("{s:?}: empty tag key"));
            }
            return Ok(Condition::Tag(k.to_string(), v));
        }
        let Some((k, v)) = s.split_once('=') else {
            return Err(format!(
                "{s:?} is not a condition: tag:KEY=VALUE, tag:KEY, security-group=NAME, az=, \
                 vpc=, region= or asg="
            ));
        };
        if v.is_empty() {
            return Err(format!(
                "{s:?}: empty value (to require a tag whatever its value, use tag:KEY)"
            ));
        }
        let v = v.to_string();
        Ok(match k {
            "security-group" => Condition::SecurityGroup(v),
            "az" => Condition::Az(v),
            "vpc" => Condition::Vpc(v),
            "region" => Condition::Region(v),
            "asg" => Condition::Asg(v),
            _ => {
                return Err(format!(
                    "{s:?}: unknown condition {k:?} (tag:KEY=VALUE, tag:KEY, security-group=, \
                     az=, vpc=, region=, asg=)"
                ))
            }
        })
    }

    /// The condition as written in the config.
    pub fn text(&self) -> String {
        match self {
            Condition::Tag(k, Some(v)) => format!("tag:{k}={v}"),
            Condition::Tag(k, None) => format!("tag:{k}"),
            Condition::SecurityGroup(v) => format!("security-group={v}"),
            Condition::Az(v) => format!("az={v}"),
            Condition::Vpc(v) => format!("vpc={v}"),
            Condition::Region(v) => format!("region={v}"),
            Condition::Asg(v) => format!("asg={v}"),
        }
    }

    /// `Ok` when the condition holds for `i`; else what `i` has instead ("env=staging",
    /// "no env tag", "groups: web, ssh").
    pub fn check(&self, i: &Ec2Instance) -> Result<(), String> {
        let eq = |what: &str, have: &str, want: &str| {
            if have == want {
                Ok(())
            } else if have.is_empty() {
                Err(format!("no {what}"))
            } else {
                Err(format!("{what} is {have}"))
            }
        };
        match self {
            Condition::Tag(k, want) => match (i.tag(k), want) {
                (None, _) => Err(format!("no {k} tag")),
                (Some(_), None) => Ok(()),
                (Some(have), Some(w)) if have == w => Ok(()),
                (Some(have), Some(_)) => Err(format!("{k}={have}")),
            },
            Condition::SecurityGroup(g) => {
                if i.groups.iter().any(|x| x == g) {
                    Ok(())
                } else if i.groups.is_empty() {
                    Err("no security group".into())
                } else {
                    Err(format!("groups: {}", i.groups.join(", ")))
                }
            }
            Condition::Az(v) => eq("az", &i.az, v),
            Condition::Vpc(v) => eq("vpc", &i.vpc, v),
            Condition::Region(v) => eq("region", &i.region, v),
            Condition::Asg(v) => eq("asg", i.tag(ASG_TAG).unwrap_or(""), v),
        }
    }
}

/// One `[[name]]`: `name.D` (and `N.name.D`) for the ready instances that meet every condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AndName {
    /// The name before the domain: labels joined by dots (checked by the config).
    pub name: String,
    /// Every one must hold.
    pub conditions: Vec<Condition>,
}

/// The parts of the daemon's configuration that decide names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Domain, lower case (`ec2`).
    pub domain: String,
    /// `(key, value)` an instance must carry to be ready; `None`: every live instance is ready.
    pub ready_tag: Option<(String, String)>,
    /// Tag key listing an instance's services.
    pub service_tag: String,
    /// Which IPv4 address to publish.
    pub address: AddressChoice,
    /// Only these security groups (exact names); `None`: all.
    pub security_groups: Option<Vec<String>>,
    /// The zones, in precedence order; default: [`Zone::default_zone`].
    pub zones: Vec<Zone>,
    /// The AND-names, in precedence order.
    pub names: Vec<AndName>,
    /// The labels of labelled accounts, in config order (reserved at the top).
    pub account_labels: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            domain: "ec2".into(),
            ready_tag: None,
            service_tag: "services".into(),
            address: AddressChoice::Private,
            security_groups: None,
            zones: vec![Zone::default_zone()],
            names: Vec::new(),
            account_labels: Vec::new(),
        }
    }
}

impl Rules {
    /// True when security group `g` is one this config publishes (`security_groups`).
    pub fn wants_group(&self, g: &str) -> bool {
        self.security_groups
            .as_ref()
            .is_none_or(|list| list.iter().any(|w| w == g))
    }

    /// True when `i` is swept at all: live, and in one of `security_groups` if set (what the
    /// API's filters keep).
    pub fn in_sweep(&self, i: &Ec2Instance) -> bool {
        i.is_live()
            && (self.security_groups.is_none() || i.groups.iter().any(|g| self.wants_group(g)))
    }

    /// The suffix of an account's names: `D`, or `label.D` for a labelled account.
    pub fn suffix(&self, namespace: Option<&str>) -> String {
        match namespace {
            None => self.domain.clone(),
            Some(l) => format!("{l}.{}", self.domain),
        }
    }
}

/// An EC2 instance, as read from the API or from `describe-instances` JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ec2Instance {
    /// `i-0abc...`.
    pub id: String,
    /// EC2 state name (`running`, `pending`, ...).
    pub state: String,
    /// Launch time, milliseconds since the epoch.
    pub launch_time_ms: i64,
    /// Security group names.
    pub groups: Vec<String>,
    /// Tags, in API order.
    pub tags: Vec<(String, String)>,
    /// Primary private IPv4.
    pub private_ipv4: Option<Ipv4Addr>,
    /// Public IPv4.
    pub public_ipv4: Option<Ipv4Addr>,
    /// IPv6 addresses of the primary network interface (device index 0).
    pub ipv6: Vec<Ipv6Addr>,
    /// Availability zone (`us-east-1a`); empty when unknown.
    pub az: String,
    /// VPC id; empty when unknown (EC2-Classic, or not in the input).
    pub vpc: String,
    /// The region it was swept in; empty when unknown.
    pub region: String,
    /// The label of its account (`[[account]] label`), if that account has one.
    pub namespace: Option<String>,
}

/// Whether an instance is ready, and why (for `explain`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Not running: resolves by no name.
    NotLive(String),
    /// Running, but without the ready tag: only `I.D`.
    NotReady(String),
    /// Ready: in every set it belongs to.
    Ready(String),
}

/// [`Ec2Instance::is_ready`], with its reason in words (for `explain`).
pub fn readiness(i: &Ec2Instance, rules: &Rules) -> Readiness {
    if !i.is_live() {
        return Readiness::NotLive(format!("not live (state {:?})", i.state));
    }
    let ready = i.is_ready(rules);
    match (
        &rules.ready_tag,
        i.tag(rules.ready_tag.as_ref().map_or("", |(k, _)| k)),
    ) {
        (None, _) => Readiness::Ready("ready (no ready_tag configured)".into()),
        (Some((k, v)), _) if ready => Readiness::Ready(format!("ready ({k}={v})")),
        (Some((k, v)), Some(tv)) => {
            Readiness::NotReady(format!("live but not ready: {k}={tv:?}, wants {v:?}"))
        }
        (Some((k, v)), None) => {
            Readiness::NotReady(format!("live but not ready: no {k} tag, wants {k}={v}"))
        }
    }
}

impl Ec2Instance {
    /// The value of tag `key`, if the instance has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The IPv4 address names resolve to under `rules` (private or public).
    pub fn ipv4(&self, rules: &Rules) -> Option<Ipv4Addr> {
        match rules.address {
            AddressChoice::Private => self.private_ipv4,
            AddressChoice::Public => self.public_ipv4,
        }
    }

    /// True when running.
    pub fn is_live(&self) -> bool {
        self.state == "running"
    }

    /// The ready rule: live, and carrying the ready tag with its value (if one is configured).
    /// [`readiness`] says why, in words.
    pub fn is_ready(&self, rules: &Rules) -> bool {
        self.is_live()
            && match &rules.ready_tag {
                None => true,
                Some((k, v)) => self.tag(k) == Some(v.as_str()),
            }
    }

    /// The raw service entries of the services tag (split on commas and white space).
    pub fn services<'a>(&'a self, rules: &Rules) -> impl Iterator<Item = &'a str> + 'a {
        self.tag(&rules.service_tag)
            .unwrap_or("")
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
    }

    /// The raw values `i` has in `zone` that the config publishes (security groups outside
    /// `security_groups` are not).
    pub fn zone_values<'a>(&'a self, zone: &Zone, rules: &Rules) -> Vec<&'a str> {
        let mut v = zone.key.values(self);
        if zone.key == ZoneKey::SecurityGroup {
            v.retain(|g| rules.wants_group(g));
        }
        v
    }
}

/// Something the daemon did not publish, and why. Reported once per refresh.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// What was skipped (a group, a service entry, a name, an instance).
    pub subject: String,
    /// Why.
    pub reason: String,
}

/// Counts of a built snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Instances read (after removing duplicates).
    pub instances: usize,
    /// Running instances.
    pub live: usize,
    /// Ready instances.
    pub ready: usize,
    /// Groups published.
    pub groups: usize,
    /// Names published.
    pub names: usize,
}

/// The result of [`build`].
#[derive(Clone, Debug, Default)]
pub struct Built {
    /// The table to encode.
    pub table: Table,
    /// What was not published, sorted, without repeats.
    pub problems: Vec<Problem>,
    /// Counts.
    pub stats: Stats,
}

/// Why a label is not usable, or the label.
pub fn label(raw: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(raw.len());
    let mut in_run = false;
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    let out = out.trim_matches('-');
    if out.is_empty() {
        Err("empty label")
    } else if out.len() > 63 {
        Err("label over 63 characters")
    } else {
        Ok(out.to_string())
    }
}

/// A service entry (`readonly.postgres`) as its labels joined by dots, or why not.
pub fn service_key(raw: &str) -> Result<String, String> {
    let mut labels = Vec::new();
    for part in raw.split('.') {
        let l = label(part).map_err(|e| format!("{e} in service {raw:?}"))?;
        if l.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "all-digit label {l:?} in service {raw:?} would clash with numbered names"
            ));
        }
        labels.push(l);
    }
    Ok(labels.join("."))
}

/// The live instances, deduplicated, with their id labels, in launch order (launch time, then
/// id): the order behind N, stable while a set does not change.
fn order<'a>(
    instances: &'a [Ec2Instance],
    problems: &mut BTreeSet<Problem>,
) -> (Vec<(&'a Ec2Instance, String)>, usize) {
    let mut seen = HashMap::new();
    let mut unique = Vec::with_capacity(instances.len());
    for i in instances {
        if seen.insert(i.id.as_str(), ()).is_some() {
            problems.insert(Problem {
                subject: format!("instance {}", i.id),
                reason: "listed more than once; the first listing is used".into(),
            });
            continue;
        }
        unique.push(i);
    }
    let total = unique.len();
    let mut live: Vec<(&Ec2Instance, String)> = Vec::new();
    for i in unique.into_iter().filter(|i| i.is_live()) {
        match label(&i.id) {
            Ok(l) if l == i.id.to_ascii_lowercase() => live.push((i, l)),
            _ => {
                problems.insert(Problem {
                    subject: format!("instance {:?}", i.id),
                    reason: "id is not a valid label".into(),
                });
            }
        }
    }
    live.sort_by(|a, b| (a.0.launch_time_ms, &a.1).cmp(&(b.0.launch_time_ms, &b.1)));
    (live, total)
}

/// Who holds the name of a live instance.
const INSTANCE_ID: &str = "an instance id";

/// The names being built, with who claimed each (for precedence), and what was refused.
struct Names<'r> {
    rules: &'r Rules,
    names: Vec<Name>,
    /// Name (with the domain) -> the source that has it.
    claimed: HashMap<String, Rc<str>>,
    /// Sets (`P.S`) whose numbered names `N.P.S` are theirs, whatever their size today -> the
    /// source that has them: a name `N.P.S` from another source is refused.
    numbered: HashMap<String, Rc<str>>,
    /// The `P.S` of every claimed name `N.P.S` whose first label is all digits (a zone value
    /// such as "1"): only under these may a set's numbered names meet a claimed name.
    digit_parents: HashSet<String>,
    problems: BTreeSet<Problem>,
}

/// `N.rest` with `N` all digits: `Some(rest)`.
fn numbered_parent(name: &str) -> Option<&str> {
    let (first, rest) = name.split_once('.')?;
    (!first.is_empty() && first.bytes().all(|b| b.is_ascii_digit())).then_some(rest)
}

impl Names<'_> {
    /// Pushes `prefix.suffix` unless it is too long or taken; `subject` and `source` name it in
    /// the report.
    fn push(
        &mut self,
        prefix: &str,
        suffix: &str,
        kind: Kind,
        members: Vec<u32>,
        source: Option<(&str, &Rc<str>)>,
    ) -> Option<u32> {
        let name = format!("{prefix}.{suffix}");
        if name.len() > 253 {
            self.problems.insert(Problem {
                subject: format!("name {name}"),
                reason: "longer than 253 characters".into(),
            });
            return None;
        }
        if let Some((subject, source)) = source {
            if let Some(owner) = self.claimed.get(&name) {
                self.problems.insert(Problem {
                    subject: subject.to_string(),
                    reason: format!("its name {name} is taken by {owner}"),
                });
                return None;
            }
            if let Some(parent) = numbered_parent(&name) {
                if let Some(owner) = self.numbered.get(parent) {
                    self.problems.insert(Problem {
                        subject: subject.to_string(),
                        reason: format!("its name {name} is a numbered name of {owner}"),
                    });
                    return None;
                }
                self.digit_parents.insert(parent.to_string());
            }
            self.claimed.insert(name.clone(), Rc::clone(source));
        }
        self.names.push(Name {
            name,
            kind,
            members,
        });
        Some(self.names.len() as u32 - 1)
    }

    /// `P.S` and `N.P.S` for a set, recording the numbered names as aliases; nothing when `P.S`
    /// itself cannot be published.
    #[allow(clippy::too_many_arguments)]
    fn set(
        &mut self,
        prefix: &str,
        suffix: &str,
        kinds: (Kind, Kind),
        members: &[u32],
        aliases: &mut [Vec<u32>],
        subject: &str,
        source: &str,
    ) -> bool {
        let source: Rc<str> = source.into();
        let src = Some((subject, &source));
        if self
            .push(prefix, suffix, kinds.0, members.to_vec(), src)
            .is_none()
        {
            return false;
        }
        let parent = format!("{prefix}.{suffix}");
        // Numbered names are not claimed one by one (a claim per name costs a third of a large
        // refresh): the set claims them all at once, so a later `N.P.S` from another source is
        // refused in `push`; one claimed earlier (a zone value "1" under `P`, in the order of
        // the config) keeps its name, and only then are this set's numbered names looked up.
        let earlier = self.digit_parents.contains(&parent);
        for (n, &m) in members.iter().enumerate() {
            let nth = format!("{}.{prefix}", n + 1);
            if earlier {
                let full = format!("{nth}.{suffix}");
                if let Some(owner) = self.claimed.get(&full) {
                    self.problems.insert(Problem {
                        subject: subject.to_string(),
                        reason: format!("its numbered name {full} is taken by {owner}"),
                    });
                    continue;
                }
            }
            if let Some(idx) = self.push(&nth, suffix, kinds.1, vec![m], None) {
                aliases[m as usize].push(idx);
            }
        }
        self.numbered.insert(parent, source);
        true
    }
}

/// A zone's sets in one account namespace: value label -> raw value -> members (launch
/// order), for the ready instances of that namespace.
fn zone_sets<'a>(
    zone: &Zone,
    live: &[(&'a Ec2Instance, String)],
    ns: Option<&str>,
    rules: &Rules,
    problems: &mut BTreeSet<Problem>,
) -> BTreeMap<String, BTreeMap<&'a str, Vec<u32>>> {
    let mut sets: BTreeMap<String, BTreeMap<&str, Vec<u32>>> = BTreeMap::new();
    for (idx, (i, _)) in live.iter().enumerate() {
        if i.namespace.as_deref() != ns || !i.is_ready(rules) {
            continue;
        }
        let mut mine = BTreeSet::new();
        for v in i.zone_values(zone, rules) {
            if !mine.insert(v) {
                continue;
            }
            match label(v) {
                Ok(l) => sets
                    .entry(l)
                    .or_default()
                    .entry(v)
                    .or_default()
                    .push(idx as u32),
                Err(e) => {
                    problems.insert(Problem {
                        subject: zone.key.subject(v),
                        reason: e.into(),
                    });
                }
            }
        }
    }
    sets
}

/// The services of a set's members: service key -> members (in the set's order).
fn service_sets(
    members: &[u32],
    live: &[(&Ec2Instance, String)],
    rules: &Rules,
    problems: &mut BTreeSet<Problem>,
) -> BTreeMap<String, Vec<u32>> {
    let mut services: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for &m in members {
        let mut mine = BTreeSet::new();
        for raw in live[m as usize].0.services(rules) {
            match service_key(raw) {
                Ok(key) => {
                    if mine.insert(key.clone()) {
                        services.entry(key).or_default().push(m);
                    }
                }
                Err(e) => {
                    problems.insert(Problem {
                        subject: format!("service {raw:?} of {}", live[m as usize].1),
                        reason: e,
                    });
                }
            }
        }
    }
    services
}

/// Labels that a zone value may not take directly under `suffix`: the zones' `under` labels
/// (`1.name.D` would be both the first of set "name" and value "1" of the zone under "name"),
/// and at the top the account labels.
fn reserved(rules: &Rules, ns: Option<&str>) -> BTreeMap<String, &'static str> {
    let mut r = BTreeMap::new();
    for z in rules.zones.iter().filter(|z| !z.under.is_empty()) {
        r.insert(z.under.clone(), "a zone's `under` label");
    }
    if ns.is_none() {
        for l in &rules.account_labels {
            r.insert(l.clone(), "an account label");
        }
    }
    r
}

/// Builds the names of the contract from a fleet: order, then for every account namespace the
/// AND-names and the zones, then the instance names.
pub fn build(instances: &[Ec2Instance], rules: &Rules) -> Built {
    let mut problems = BTreeSet::new();
    let (live, total) = order(instances, &mut problems);
    let ready = live.iter().filter(|(i, _)| i.is_ready(rules)).count();
    let mut aliases = vec![Vec::new(); live.len()];
    let mut names = Names {
        rules,
        names: Vec::new(),
        claimed: HashMap::new(),
        numbered: HashMap::new(),
        digit_parents: HashSet::new(),
        problems,
    };
    // Instance ids come first in precedence (their names are pushed last, as they always were).
    let id_source: Rc<str> = INSTANCE_ID.into();
    for (_, l) in &live {
        names
            .claimed
            .insert(format!("{l}.{}", rules.domain), Rc::clone(&id_source));
    }
    let mut namespaces: Vec<Option<&str>> = vec![None];
    namespaces.extend(rules.account_labels.iter().map(|l| Some(l.as_str())));
    // Config order decides, whichever account a name comes from: every AND-name (in each
    // account namespace), then every zone.
    for n in &rules.names {
        for &ns in &namespaces {
            and_name(&mut names, n, &live, ns, &rules.suffix(ns), &mut aliases);
        }
    }
    let mut group_count = 0;
    for zone in &rules.zones {
        for &ns in &namespaces {
            let suffix = rules.suffix(ns);
            group_count += zone_names(&mut names, zone, &live, ns, &suffix, &mut aliases);
        }
    }
    // `I.D`: every live instance, in launch order, at the top.
    let mut records = Vec::with_capacity(live.len());
    for (idx, (i, l)) in live.iter().enumerate() {
        let v4 = i.ipv4(rules);
        // Cannot fail once the config has checked the domain length (instance labels are short);
        // if it did, `Table::encode` refuses the dangling index instead of publishing it.
        let name = names
            .push(l, &rules.domain, Kind::Instance, vec![idx as u32], None)
            .unwrap_or(u32::MAX);
        records.push(Record {
            name,
            v4: v4.map(|a| a.octets()),
            v6: i.ipv6.iter().map(|a| a.octets()).collect(),
            aliases: std::mem::take(&mut aliases[idx]),
        });
    }
    let stats = Stats {
        instances: total,
        live: live.len(),
        ready,
        groups: group_count,
        names: names.names.len(),
    };
    Built {
        table: Table {
            names: names.names,
            instances: records,
        },
        problems: names.problems.into_iter().collect(),
        stats,
    }
}

/// One AND-name in one namespace. A configured name is held even while no instance meets its
/// conditions, so that it never changes meaning (to another source's set) as a fleet scales to
/// zero.
fn and_name(
    names: &mut Names<'_>,
    n: &AndName,
    live: &[(&Ec2Instance, String)],
    ns: Option<&str>,
    suffix: &str,
    aliases: &mut [Vec<u32>],
) {
    let rules = names.rules;
    let members: Vec<u32> = live
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| {
            i.namespace.as_deref() == ns
                && i.is_ready(rules)
                && n.conditions.iter().all(|c| c.check(i).is_ok())
        })
        .map(|(idx, _)| idx as u32)
        .collect();
    let source = format!("[[name]] {:?}", n.name);
    if members.is_empty() {
        let name = format!("{}.{suffix}", n.name);
        if let Some(owner) = names.claimed.get(&name) {
            names.problems.insert(Problem {
                subject: source,
                reason: format!("its name {name} is taken by {owner}"),
            });
        } else {
            // Its numbered names too: they must not mean another source's set meanwhile.
            let source: Rc<str> = source.into();
            names.numbered.insert(name.clone(), Rc::clone(&source));
            names.claimed.insert(name, source);
        }
        return;
    }
    names.set(
        &n.name,
        suffix,
        (Kind::Group, Kind::GroupNth),
        &members,
        aliases,
        &source,
        &source,
    );
}

/// The names of one zone in one namespace; returns how many of its sets were published.
fn zone_names(
    names: &mut Names<'_>,
    zone: &Zone,
    live: &[(&Ec2Instance, String)],
    ns: Option<&str>,
    suffix: &str,
    aliases: &mut [Vec<u32>],
) -> usize {
    let rules = names.rules;
    let sets = zone_sets(zone, live, ns, rules, &mut names.problems);
    let reserved = if zone.under.is_empty() {
        reserved(rules, ns)
    } else {
        BTreeMap::new()
    };
    let source = zone.describe();
    let mut published = 0;
    for (vlabel, raws) in &sets {
        // Precedence among values giving one label: the exact label, then byte order.
        let winner = raws
            .keys()
            .find(|r| **r == vlabel.as_str())
            .or_else(|| raws.keys().next())
            .copied()
            .unwrap_or_default();
        let prefix = zone.prefix(vlabel);
        for loser in raws.keys().filter(|r| **r != winner) {
            names.problems.insert(Problem {
                subject: zone.key.subject(loser),
                reason: format!(
                    "its name {prefix}.{suffix} is taken by {}",
                    zone.key.subject(winner)
                ),
            });
        }
        let subject = zone.key.subject(winner);
        if let Some(why) = reserved.get(vlabel.as_str()) {
            names.problems.insert(Problem {
                subject,
                reason: format!("its name {prefix}.{suffix} is reserved ({why})"),
            });
            continue;
        }
        let full = format!("{prefix}.{suffix}");
        if names.claimed.get(&full).map(|o| &**o) == Some(INSTANCE_ID) {
            names.problems.insert(Problem {
                subject,
                reason: format!("its name {full} is an instance id"),
            });
            continue;
        }
        let members = &raws[winner];
        if !names.set(
            &prefix,
            suffix,
            (Kind::Group, Kind::GroupNth),
            members,
            aliases,
            &subject,
            &source,
        ) {
            continue;
        }
        published += 1;
        if !zone.services {
            continue;
        }
        let services = service_sets(members, live, rules, &mut names.problems);
        for (skey, smembers) in &services {
            let sprefix = format!("{skey}.{prefix}");
            let ssubject = format!("service {skey:?} of {subject}");
            names.set(
                &sprefix,
                suffix,
                (Kind::Service, Kind::ServiceNth),
                smembers,
                aliases,
                &ssubject,
                &source,
            );
        }
    }
    published
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, t: i64, groups: &[&str], tags: &[(&str, &str)], ip: [u8; 4]) -> Ec2Instance {
        Ec2Instance {
            id: id.into(),
            state: "running".into(),
            launch_time_ms: t,
            groups: groups.iter().map(|s| s.to_string()).collect(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            private_ipv4: Some(ip.into()),
            ..Default::default()
        }
    }

    fn names(b: &Built) -> Vec<(String, Vec<String>)> {
        b.table
            .names
            .iter()
            .map(|n| {
                let ids = n
                    .members
                    .iter()
                    .map(|&m| {
                        let rec = &b.table.instances[m as usize];
                        b.table.names[rec.name as usize].name.clone()
                    })
                    .collect();
                (n.name.clone(), ids)
            })
            .collect()
    }

    fn lookup(b: &Built, name: &str) -> Option<Vec<String>> {
        names(b)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
    }

    #[test]
    fn labels_follow_the_spec() {
        assert_eq!(label("Airavata Search").unwrap(), "airavata-search");
        assert_eq!(label("a.b").unwrap(), "a-b");
        assert_eq!(label("--x--").unwrap(), "x");
        assert_eq!(label("a  &  b").unwrap(), "a-b");
        assert_eq!(label("a - b").unwrap(), "a---b");
        assert_eq!(label("Ünïcode").unwrap(), "n-code");
        assert_eq!(label("!!!"), Err("empty label"));
        assert_eq!(label(&"x".repeat(63)).unwrap().len(), 63);
        assert_eq!(label(&"x".repeat(64)), Err("label over 63 characters"));
        assert_eq!(
            service_key("ReadOnly.Postgres").unwrap(),
            "readonly.postgres"
        );
        assert!(service_key("1").is_err());
        assert!(service_key("2.redis").is_err());
        assert!(service_key("a..b").is_err());
        assert_eq!(service_key("redis6").unwrap(), "redis6");
    }

    #[test]
    fn seed_fleet() {
        let ready = ("af-status", "ready");
        let fleet = vec![
            inst(
                "i-3",
                3,
                &["tphon"],
                &[ready, ("services", "redis")],
                [10, 0, 0, 3],
            ),
            inst(
                "i-1",
                1,
                &["tphon"],
                &[ready, ("services", "redis")],
                [10, 0, 0, 1],
            ),
            inst(
                "i-2",
                1,
                &["tphon"],
                &[ready, ("services", "redis,postgres")],
                [10, 0, 0, 2],
            ),
            inst(
                "i-4",
                4,
                &["tphon"],
                &[ready, ("services", "readonly.postgres")],
                [10, 0, 0, 4],
            ),
            inst(
                "i-5",
                5,
                &["tphon"],
                &[("services", "redis")],
                [10, 0, 0, 5],
            ),
            Ec2Instance {
                state: "stopped".into(),
                ..inst(
                    "i-6",
                    0,
                    &["tphon"],
                    &[ready, ("services", "redis")],
                    [10, 0, 0, 6],
                )
            },
        ];
        let rules = Rules {
            ready_tag: Some(("af-status".into(), "ready".into())),
            ..Rules::default()
        };
        let b = build(&fleet, &rules);
        let ids = |v: &[&str]| v.iter().map(|s| format!("{s}.ec2")).collect::<Vec<_>>();
        assert_eq!(
            lookup(&b, "tphon.ec2").unwrap(),
            ids(&["i-1", "i-2", "i-3", "i-4"])
        );
        assert_eq!(
            lookup(&b, "redis.tphon.ec2").unwrap(),
            ids(&["i-1", "i-2", "i-3"])
        );
        assert_eq!(lookup(&b, "3.redis.tphon.ec2").unwrap(), ids(&["i-3"]));
        assert_eq!(lookup(&b, "postgres.tphon.ec2").unwrap(), ids(&["i-2"]));
        assert_eq!(
            lookup(&b, "1.readonly.postgres.tphon.ec2").unwrap(),
            ids(&["i-4"])
        );
        assert_eq!(
            lookup(&b, "i-5.ec2").unwrap(),
            ids(&["i-5"]),
            "live but not ready"
        );
        assert!(lookup(&b, "i-6.ec2").is_none(), "stopped");
        assert!(lookup(&b, "4.redis.tphon.ec2").is_none());
        assert_eq!(b.stats.live, 5);
        assert_eq!(b.stats.ready, 4);
        // Reverse aliases: i-2 is 2nd of tphon, 2nd of redis, 1st of postgres.
        let i2 = b
            .table
            .instances
            .iter()
            .find(|r| b.table.names[r.name as usize].name == "i-2.ec2");
        let al: Vec<_> = i2
            .unwrap()
            .aliases
            .iter()
            .map(|&a| b.table.names[a as usize].name.as_str())
            .collect();
        assert_eq!(
            al,
            ["2.tphon.ec2", "1.postgres.tphon.ec2", "2.redis.tphon.ec2"]
        );
        assert!(b.problems.is_empty(), "{:?}", b.problems);
    }

    #[test]
    fn collisions_and_skips_are_reported() {
        let fleet = vec![
            inst(
                "i-1",
                1,
                &["Airavata Search", "airavata-search", "i-2"],
                &[],
                [10, 0, 0, 1],
            ),
            inst(
                "i-2",
                2,
                &["Airavata Search", "!!!", "web"],
                &[("services", "1, ok, x..y")],
                [10, 0, 0, 2],
            ),
        ];
        let b = build(&fleet, &Rules::default());
        assert_eq!(lookup(&b, "airavata-search.ec2").unwrap(), vec!["i-1.ec2"]);
        assert_eq!(lookup(&b, "i-2.ec2").unwrap(), vec!["i-2.ec2"]);
        let subjects: Vec<_> = b.problems.iter().map(|p| p.subject.as_str()).collect();
        assert!(
            subjects.contains(&"group \"Airavata Search\""),
            "{subjects:?}"
        );
        assert!(subjects.contains(&"group \"i-2\""), "{subjects:?}");
        assert!(subjects.contains(&"group \"!!!\""), "{subjects:?}");
        assert!(subjects.contains(&"service \"1\" of i-2"), "{subjects:?}");
        assert!(
            subjects.contains(&"service \"x..y\" of i-2"),
            "{subjects:?}"
        );
    }

    #[test]
    fn group_filter_public_address_and_long_names() {
        let mut a = inst(
            "i-1",
            1,
            &["web", "ssh"],
            &[("services", &"s".repeat(63))],
            [10, 0, 0, 1],
        );
        a.public_ipv4 = Some([1, 2, 3, 4].into());
        let rules = Rules {
            security_groups: Some(vec!["web".into()]),
            address: AddressChoice::Public,
            domain: format!("{}.{}.{}", "d".repeat(63), "d".repeat(63), "d".repeat(60)),
            ..Rules::default()
        };
        let b = build(&[a], &rules);
        let all: Vec<_> = names(&b).into_iter().map(|(n, _)| n).collect();
        assert!(all.iter().any(|n| n.starts_with("web.")));
        assert!(!all.iter().any(|n| n.starts_with("ssh.")));
        assert!(
            !all.iter().any(|n| n.starts_with("sss")),
            "service name is over 253"
        );
        assert_eq!(b.table.instances[0].v4, Some([1, 2, 3, 4]));
        assert!(b.problems.iter().any(|p| p.reason.contains("253")));
    }

    #[test]
    fn duplicates_and_ties() {
        let fleet = vec![
            inst("i-b", 7, &["g"], &[], [10, 0, 0, 2]),
            inst("i-a", 7, &["g"], &[], [10, 0, 0, 1]),
            inst("i-a", 7, &["g"], &[], [10, 0, 0, 9]),
        ];
        let b = build(&fleet, &Rules::default());
        assert_eq!(
            lookup(&b, "1.g.ec2").unwrap(),
            vec!["i-a.ec2"],
            "same launch time: id order"
        );
        assert_eq!(b.table.instances[0].v4, Some([10, 0, 0, 1]));
        assert_eq!(b.problems.len(), 1);
    }

    fn zoned(i: Ec2Instance, az: &str, vpc: &str, region: &str, ns: Option<&str>) -> Ec2Instance {
        Ec2Instance {
            az: az.into(),
            vpc: vpc.into(),
            region: region.into(),
            namespace: ns.map(str::to_string),
            ..i
        }
    }

    fn zone(key: &str, under: &str, services: bool) -> Zone {
        Zone {
            key: ZoneKey::parse(key).unwrap(),
            under: under.into(),
            services,
        }
    }

    fn two_account_fleet() -> Vec<Ec2Instance> {
        vec![
            zoned(
                inst(
                    "i-1",
                    1,
                    &["web"],
                    &[
                        ("Name", "Web 01"),
                        ("team", "search"),
                        ("env", "prod"),
                        ("services", "api"),
                    ],
                    [10, 0, 0, 1],
                ),
                "us-east-1a",
                "vpc-1",
                "us-east-1",
                None,
            ),
            zoned(
                inst(
                    "i-2",
                    2,
                    &["web"],
                    &[("Name", "web-02"), ("team", "search"), ("env", "staging")],
                    [10, 0, 0, 2],
                ),
                "us-east-1b",
                "vpc-1",
                "us-east-1",
                None,
            ),
            zoned(
                inst(
                    "i-3",
                    3,
                    &["web"],
                    &[("Name", "web-03"), ("env", "prod"), (ASG_TAG, "web-asg")],
                    [10, 0, 1, 3],
                ),
                "eu-west-1a",
                "vpc-9",
                "eu-west-1",
                Some("prod"),
            ),
        ]
    }

    #[test]
    fn zones_by_tag_az_region_and_asg() {
        let rules = Rules {
            zones: vec![
                Zone::default_zone(),
                zone("tag:Name", "name", false),
                zone("az", "az", false),
                zone("region", "region", false),
                zone("tag:team", "", true),
                zone("asg", "asg", false),
                zone("vpc", "vpc", false),
            ],
            ..Rules::default()
        };
        // Both accounts unlabelled.
        let fleet: Vec<_> = two_account_fleet()
            .into_iter()
            .map(|i| Ec2Instance {
                namespace: None,
                ..i
            })
            .collect();
        let b = build(&fleet, &rules);
        let ids = |v: &[&str]| v.iter().map(|s| format!("{s}.ec2")).collect::<Vec<_>>();
        assert_eq!(lookup(&b, "web-01.name.ec2").unwrap(), ids(&["i-1"]));
        assert_eq!(lookup(&b, "1.web-02.name.ec2").unwrap(), ids(&["i-2"]));
        assert_eq!(lookup(&b, "us-east-1b.az.ec2").unwrap(), ids(&["i-2"]));
        assert_eq!(
            lookup(&b, "us-east-1.region.ec2").unwrap(),
            ids(&["i-1", "i-2"])
        );
        assert_eq!(lookup(&b, "search.ec2").unwrap(), ids(&["i-1", "i-2"]));
        assert_eq!(lookup(&b, "api.search.ec2").unwrap(), ids(&["i-1"]));
        assert_eq!(lookup(&b, "web-asg.asg.ec2").unwrap(), ids(&["i-3"]));
        assert_eq!(lookup(&b, "vpc-9.vpc.ec2").unwrap(), ids(&["i-3"]));
        // No account labels: every instance merges into one namespace.
        assert_eq!(lookup(&b, "web.ec2").unwrap(), ids(&["i-1", "i-2", "i-3"]));
        assert!(lookup(&b, "name.ec2").is_none());
        assert!(b.problems.is_empty(), "{:?}", b.problems);
    }

    #[test]
    fn and_names_and_labelled_accounts() {
        let rules = Rules {
            zones: vec![Zone::default_zone(), zone("tag:Name", "name", false)],
            names: vec![AndName {
                name: "web.prod".into(),
                conditions: vec![
                    Condition::parse("tag:env=prod").unwrap(),
                    Condition::parse("security-group=web").unwrap(),
                    Condition::parse("tag:Name").unwrap(),
                ],
            }],
            account_labels: vec!["prod".into()],
            ..Rules::default()
        };
        let b = build(&two_account_fleet(), &rules);
        let ids = |v: &[&str]| v.iter().map(|s| format!("{s}.ec2")).collect::<Vec<_>>();
        // The unlabelled account at the top, the labelled one under prod.ec2 only.
        assert_eq!(lookup(&b, "web.ec2").unwrap(), ids(&["i-1", "i-2"]));
        assert_eq!(lookup(&b, "web.prod.ec2").unwrap(), ids(&["i-1"]));
        assert_eq!(lookup(&b, "web.prod.prod.ec2").unwrap(), ids(&["i-3"]));
        assert_eq!(lookup(&b, "web.prod.ec2").unwrap(), ids(&["i-1"]));
        assert_eq!(lookup(&b, "1.web-03.name.prod.ec2").unwrap(), ids(&["i-3"]));
        assert!(lookup(&b, "web-03.name.ec2").is_none());
        // Instance names stay at the top for every account.
        assert_eq!(lookup(&b, "i-3.ec2").unwrap(), ids(&["i-3"]));
        assert!(lookup(&b, "i-3.prod.ec2").is_none());
        assert_eq!(
            Condition::parse("tag:env=prod")
                .unwrap()
                .check(&two_account_fleet()[1]),
            Err("env=staging".into())
        );
    }

    #[test]
    fn precedence_and_reserved_labels_are_reported_once() {
        let fleet = vec![
            inst(
                "i-1",
                1,
                &["web", "name", "prod", "i-2"],
                &[("Name", "web")],
                [10, 0, 0, 1],
            ),
            inst("i-2", 2, &["db"], &[("Name", "db")], [10, 0, 0, 2]),
        ];
        let rules = Rules {
            zones: vec![
                Zone::default_zone(),
                zone("tag:Name", "", false),
                zone("tag:Name", "name", false),
            ],
            names: vec![AndName {
                name: "db".into(),
                conditions: vec![Condition::parse("security-group=web").unwrap()],
            }],
            account_labels: vec!["prod".into()],
            ..Rules::default()
        };
        let b = build(&fleet, &rules);
        let ids = |v: &[&str]| v.iter().map(|s| format!("{s}.ec2")).collect::<Vec<_>>();
        // [[name]] db beats the zones' db.
        assert_eq!(lookup(&b, "db.ec2").unwrap(), ids(&["i-1"]));
        // The security-group zone (first) beats the tag:Name zone for web.ec2.
        assert_eq!(lookup(&b, "web.ec2").unwrap(), ids(&["i-1"]));
        assert!(
            lookup(&b, "name.ec2").is_none(),
            "reserved: a zone's under label"
        );
        assert!(
            lookup(&b, "prod.ec2").is_none(),
            "reserved: an account label"
        );
        assert_eq!(lookup(&b, "web.name.ec2").unwrap(), ids(&["i-1"]));
        let text: Vec<String> = b
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.subject, p.reason))
            .collect();
        for want in [
            "group \"db\": its name db.ec2 is taken by [[name]] \"db\"",
            "group \"name\": its name name.ec2 is reserved (a zone's `under` label)",
            "group \"prod\": its name prod.ec2 is reserved (an account label)",
            "group \"i-2\": its name i-2.ec2 is an instance id",
            "tag:Name value \"db\": its name db.ec2 is taken by [[name]] \"db\"",
            "tag:Name value \"web\": its name web.ec2 is taken by zone security-group",
        ] {
            assert!(text.iter().any(|t| t == want), "{want}\n{text:#?}");
        }
        assert_eq!(text.len(), 6, "{text:#?}");
    }

    fn encodes(b: &Built) -> Result<Vec<u8>, crate::format::EncodeError> {
        b.table.encode(&crate::format::Meta {
            domain: "ec2".into(),
            generated_unix: 1,
            interval_secs: 30,
            max_age_secs: 0,
        })
    }

    /// Issue 22, item 14: a top-level [[name]] `db.prod`, a zone under `db` and an account
    /// labelled `prod` gave `1.db.prod.ec2` twice (the name's first member, and the set of
    /// value "1" in prod's zone), and every refresh failed to encode. The set `db.prod.ec2`
    /// owns its numbered names: the later source is refused and reported, the rest published.
    #[test]
    fn numbered_names_are_claimed_by_their_set() {
        let rules = Rules {
            zones: vec![Zone::default_zone(), zone("tag:n", "db", false)],
            names: vec![AndName {
                name: "db.prod".into(),
                conditions: vec![Condition::parse("tag:role=db").unwrap()],
            }],
            account_labels: vec!["prod".into()],
            ..Rules::default()
        };
        let fleet = vec![
            inst("i-1", 1, &["g"], &[("role", "db")], [10, 0, 0, 1]),
            zoned(
                inst("i-2", 2, &["g"], &[("n", "1")], [10, 0, 0, 2]),
                "",
                "",
                "",
                Some("prod"),
            ),
        ];
        let b = build(&fleet, &rules);
        encodes(&b).expect("every name once");
        assert_eq!(lookup(&b, "1.db.prod.ec2").unwrap(), vec!["i-1.ec2"]);
        assert!(
            b.problems.iter().any(|p| p.subject == "tag:n value \"1\""
                && p.reason == "its name 1.db.prod.ec2 is a numbered name of [[name]] \"db.prod\""),
            "{:?}",
            b.problems
        );
        // The other way round: a value "1" under `db` in account prod comes first in the
        // config, a set `db.prod.ec2` (value "db" of a zone under "prod") later: the value
        // keeps its name, the set is published without that numbered name.
        let rules = Rules {
            zones: vec![zone("tag:n", "db", false), zone("tag:role", "prod", false)],
            account_labels: vec!["prod".into()],
            ..Rules::default()
        };
        let fleet = vec![
            zoned(
                inst("i-1", 1, &["g"], &[("n", "1")], [10, 0, 0, 1]),
                "",
                "",
                "",
                Some("prod"),
            ),
            inst("i-2", 2, &["g"], &[("role", "db")], [10, 0, 0, 2]),
        ];
        let b = build(&fleet, &rules);
        encodes(&b).expect("every name once");
        assert_eq!(lookup(&b, "1.db.prod.ec2").unwrap(), vec!["i-1.ec2"]);
        assert_eq!(lookup(&b, "db.prod.ec2").unwrap(), vec!["i-2.ec2"]);
        assert!(
            b.problems.iter().any(|p| p
                .reason
                .starts_with("its numbered name 1.db.prod.ec2 is taken by")),
            "{:?}",
            b.problems
        );
    }

    mod generated {
        use super::*;
        use proptest::prelude::*;

        const WORDS: [&str; 6] = ["db", "prod", "1", "2", "web", "a-b"];
        const KEYS: [&str; 6] = [
            "security-group",
            "tag:n",
            "tag:role",
            "az",
            "asg",
            "tag:aws:autoscaling:groupName",
        ];

        fn word() -> impl Strategy<Value = String> {
            prop::sample::select(&WORDS[..]).prop_map(str::to_string)
        }

        /// A [[name]]: one to three labels, the first not all digits (the config's rule).
        fn and_name() -> impl Strategy<Value = String> {
            (
                prop::sample::select(&["db", "prod", "web", "x"][..]),
                prop::collection::vec(word(), 0..3),
            )
                .prop_map(|(first, rest)| {
                    std::iter::once(first.to_string())
                        .chain(rest)
                        .collect::<Vec<_>>()
                        .join(".")
                })
        }

        fn rules() -> impl Strategy<Value = Rules> {
            (
                prop::collection::vec(
                    (
                        prop::sample::select(&KEYS[..]),
                        prop::option::of(word()),
                        any::<bool>(),
                    ),
                    1..4,
                ),
                prop::collection::vec((and_name(), word(), word()), 0..3),
                prop::collection::btree_set(word(), 0..3),
            )
                .prop_map(|(zones, names, labels)| {
                    let mut zs: Vec<Zone> = Vec::new();
                    for (k, under, services) in zones {
                        let z = zone(k, &under.unwrap_or_default(), services);
                        if !zs.iter().any(|o| o.key == z.key && o.under == z.under) {
                            zs.push(z);
                        }
                    }
                    let labels: Vec<String> = labels.into_iter().collect();
                    let mut ns: Vec<AndName> = Vec::new();
                    for (name, k, v) in names {
                        if ns.iter().any(|o| o.name == name) || labels.contains(&name) {
                            continue;
                        }
                        ns.push(AndName {
                            name,
                            conditions: vec![Condition::parse(&format!("tag:{k}={v}")).unwrap()],
                        });
                    }
                    Rules {
                        zones: zs,
                        names: ns,
                        account_labels: labels,
                        ..Rules::default()
                    }
                })
        }

        fn fleet(labels: Vec<String>) -> impl Strategy<Value = Vec<Ec2Instance>> {
            let one = (
                prop::collection::vec(word(), 1..3),
                prop::collection::vec((word(), word()), 0..4),
                word(),
                prop::option::of(prop::sample::select(if labels.is_empty() {
                    vec![String::new()]
                } else {
                    labels
                })),
            );
            prop::collection::vec(one, 1..8).prop_map(|v| {
                v.into_iter()
                    .enumerate()
                    .map(|(k, (groups, tags, az, ns))| {
                        let mut tags: Vec<(String, String)> = tags
                            .into_iter()
                            .map(|(key, val)| {
                                let key = ["n", "role", "services", "db"][key.len() % 4];
                                (key.to_string(), val)
                            })
                            .collect();
                        tags.push((ASG_TAG.into(), az.clone()));
                        Ec2Instance {
                            id: format!("i-{k}"),
                            state: "running".into(),
                            launch_time_ms: k as i64,
                            groups,
                            tags,
                            private_ipv4: Some([10, 0, 0, k as u8].into()),
                            az,
                            namespace: ns.filter(|l| !l.is_empty()),
                            ..Default::default()
                        }
                    })
                    .collect()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            /// No configuration of zones, unders, [[name]] entries and account labels, over any
            /// fleet, builds a table that fails to encode: every collision, numbered names
            /// included, is settled and reported.
            #[test]
            fn every_generated_config_and_fleet_encodes(
                (rules, fleet) in rules().prop_flat_map(|r| {
                    let labels = r.account_labels.clone();
                    (Just(r), fleet(labels))
                })
            ) {
                let b = build(&fleet, &rules);
                if let Err(e) = encodes(&b) {
                    prop_assert!(false, "{e}: {rules:?}");
                }
            }
        }
    }
}
