//! The poller: sweeps EC2 ([`ec2`], or a describe-instances file: [`json`]), builds and signs the
//! snapshot and hands it to the writer ([`build`]), and uploads it to S3 in fleet mode
//! ([`upload`]).

pub mod build;
pub mod ec2;
pub mod events;
pub mod json;
pub mod queue;
pub mod upload;

use crate::config::Config;
use crate::leaf::outcome::Failed;
use build::{publish_and_record, Published};
use nss_ec2_snapshot::fleet::Ec2Instance;
use std::time::Duration;
use upload::Publisher;

/// A fleet read in one sweep.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Every instance returned, all regions.
    pub instances: Vec<Ec2Instance>,
    /// API requests sent (pages, and the SDK's retries of them).
    pub requests: u32,
    /// Response bytes received.
    pub bytes: u64,
    /// How long the sweep took.
    pub elapsed: Duration,
}

/// A sweep's snapshot published locally, signed with the publisher's key in fleet mode, and
/// recorded: the one flow of `ec2cached run` and `refresh` (which then upload it with
/// [`Publisher::upload_swept`]).
pub fn publish_sweep(
    cfg: &Config,
    started: u64,
    swept: Result<Sweep, Failed>,
    publisher: Option<&Publisher>,
) -> Result<Published, Failed> {
    publish_and_record(cfg, started, swept, publisher.map(Publisher::key))
}

/// [`publish_sweep`] on a thread of tokio's blocking pool, for the daemon: the writers' lock may
/// be waited for (up to 10 s, another writer beside the daemon), and meanwhile the runtime goes
/// on serving SIGTERM and SIGHUP.
pub async fn publish_sweep_blocking(
    cfg: &Config,
    started: u64,
    swept: Result<Sweep, Failed>,
    publisher: Option<&Publisher>,
) -> Result<Published, Failed> {
    let cfg = cfg.clone();
    let key = publisher.map(|p| p.key().clone());
    tokio::task::spawn_blocking(move || publish_and_record(&cfg, started, swept, key.as_ref()))
        .await
        .unwrap_or_else(|e| {
            Err(Failed::new(
                crate::leaf::outcome::Reason::Publish,
                format!("the publish task failed: {e}"),
            ))
        })
}

/// A sweep patched with what a batch of events said: for each account and region read again,
/// the instances named (and those found behind the interfaces named) leave the sweep, and come
/// back as EC2 says they are now if they are running and in the polled groups. True when that
/// changed anything.
pub fn patch(
    instances: &mut Vec<Ec2Instance>,
    refetched: &[ec2::Refetched],
    rules: &nss_ec2_snapshot::fleet::Rules,
) -> bool {
    let mut changed = false;
    for r in refetched {
        let named = |i: &Ec2Instance| {
            i.region == r.region && i.namespace == r.namespace && r.asked.contains(&i.id)
        };
        let mut removed: Vec<Ec2Instance> =
            instances.iter().filter(|i| named(i)).cloned().collect();
        instances.retain(|i| !named(i));
        let mut added: Vec<Ec2Instance> = r
            .found
            .iter()
            .filter(|i| i.state == "running" && rules.in_sweep(i))
            .cloned()
            .collect();
        instances.extend(added.iter().cloned());
        removed.sort_by(|a, b| a.id.cmp(&b.id));
        added.sort_by(|a, b| a.id.cmp(&b.id));
        changed |= removed != added;
    }
    changed
}

/// What `[events]` patches: the last sweep's instances as last published, and its generation.
#[derive(Debug, Default)]
pub struct Last {
    /// The generation of the last snapshot published (a sweep's start, or one second after the
    /// snapshot a patch patched).
    pub generated: u64,
    /// Its instances.
    pub instances: Vec<Ec2Instance>,
    /// False until a sweep has been published: events wait for it (they stay in the queue).
    pub swept: bool,
    /// The queue, to delete what was applied.
    pub queue: Option<queue::Queue>,
    /// When the last sweep started: patches raise the generation at most `interval` past it.
    pub swept_at: u64,
    /// Ignored reasons already said in the log (each is said once, then counted).
    pub said: std::collections::BTreeSet<&'static str>,
    /// Where rechecks are sent ([`RECHECKS`]): the channel the queue's batches come through.
    pub requeue: Option<tokio::sync::mpsc::Sender<Delivery>>,
    /// The instances (region, id) waiting to be read again: each once at a time.
    pub rechecking: std::collections::HashSet<(String, String)>,
}

/// What the loop hands [`patch_cycle`]: a batch from the queue, or instances to read again.
#[derive(Debug)]
pub enum Delivery {
    /// Messages received from the queue (deleted once applied).
    Messages(Vec<queue::Message>),
    /// Instances whose state-change event came before their tags (or while pending), read
    /// again the n-th time ([`RECHECKS`]).
    Recheck(Vec<events::Change>, usize),
}

/// When an instance named by a state-change event is pending or running, it is read again this
/// long after its event's batch, then after each of the next: 5, 20 and 60 s after (its tags may
/// be set by a script or a tool just after launch, and not every rule delivers their Tag Change
/// event).
pub const RECHECKS: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(40),
];
/// The most instances waiting to be read again; beyond, the next sweep brings them.
pub const MAX_RECHECKS: usize = 10_000;

/// The queue's side of `[events]`, on a task of its own: long polls (20 s), gathers a burst for
/// `debounce` after its first message, and hands the batch over (one at a time: the next waits
/// until the loop took it). An error is said once in the log and the status file, and the poll
/// retried after 5 s: the sweeps go on meanwhile.
pub async fn listen(
    q: queue::Queue,
    debounce: Duration,
    snapshot: std::path::PathBuf,
    tx: tokio::sync::mpsc::Sender<Delivery>,
) {
    // Failing until the first good receive clears what an earlier run left in the status file.
    let mut failing = true;
    loop {
        let mut batch = match q.receive(queue::WAIT_SECS).await {
            Ok(m) => {
                if failing {
                    failing = false;
                    tracing::info!("events: the queue answers");
                    crate::leaf::ledger::Status::update_off_runtime(&snapshot, |st| {
                        st.events_error = None
                    })
                    .await;
                }
                m
            }
            Err(e) => {
                tracing::warn!("events: {e}; sweeps go on, retrying every 5 s");
                failing = true;
                let at = crate::leaf::clock::now();
                crate::leaf::ledger::Status::update_off_runtime(&snapshot, move |st| {
                    st.events_error = Some(format!("{} {e}", crate::leaf::clock::utc(at)))
                })
                .await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        let until = tokio::time::Instant::now() + debounce;
        while tokio::time::Instant::now() < until && batch.len() < 1000 {
            match q.receive(0).await {
                Ok(more) if !more.is_empty() => batch.extend(more),
                Ok(_) => tokio::time::sleep(Duration::from_millis(50).min(debounce)).await,
                Err(_) => break,
            }
        }
        if tx.send(Delivery::Messages(batch)).await.is_err() {
            return;
        }
    }
}

/// Sends the instances that `changes`' state-change events (or a recheck) named and that EC2
/// says are pending or running to be read again after the next of [`RECHECKS`]: each instance
/// once at a time, at most [`MAX_RECHECKS`] waiting.
fn recheck(
    last: &mut Last,
    changes: &[events::Change],
    refetched: &[ec2::Refetched],
    round: usize,
) {
    let (Some(tx), Some(&after)) = (last.requeue.as_ref(), RECHECKS.get(round)) else {
        return;
    };
    let live: std::collections::HashSet<(&str, &str)> = refetched
        .iter()
        .flat_map(|r| r.found.iter())
        .filter(|i| i.state == "pending" || i.state == "running")
        .map(|i| (i.region.as_str(), i.id.as_str()))
        .collect();
    let mut again: Vec<events::Change> = Vec::new();
    for c in changes
        .iter()
        .filter(|c| round > 0 || c.kind == events::Kind::StateChange)
    {
        let mut instances = Vec::new();
        for id in &c.instances {
            let key = (c.region.clone(), id.clone());
            if live.contains(&(c.region.as_str(), id.as_str()))
                && last.rechecking.len() < MAX_RECHECKS
                && last.rechecking.insert(key)
            {
                instances.push(id.clone());
            }
        }
        if !instances.is_empty() {
            again.push(events::Change {
                instances,
                interfaces: Vec::new(),
                ..c.clone()
            });
        }
    }
    if again.is_empty() {
        return;
    }
    let tx = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _ = tx.send(Delivery::Recheck(again, round + 1)).await;
    });
}

/// A batch of events applied: each message read ([`events::parse`]), the instances named read
/// again ([`ec2::Source::refetch`]) and patched into the last sweep ([`patch`]), published as
/// the generation after the last one (so followers' rollback checks order it after what it
/// patches; its freshness is the sweep's but for one second a patch), uploaded with
/// `[publish]`, and only then the messages deleted. Before the first sweep, nothing: the
/// messages come back after the queue's visibility timeout.
pub async fn patch_cycle(
    cfg: &Config,
    source: &mut Option<ec2::Source>,
    publisher: Option<&mut Publisher>,
    last: &mut Last,
    delivery: &Delivery,
) -> Result<(), Failed> {
    if !last.swept {
        // Not a failure: nothing is deleted, the messages come back after the queue's
        // visibility timeout, and the first sweep brings what they say meanwhile.
        tracing::debug!("events before the first sweep: left in the queue");
        return Ok(());
    }
    let r = patch_delivery(cfg, source, publisher, last, delivery).await;
    // A batch of messages: said in the status file until a batch is applied again or a sweep
    // succeeds (its messages come back after the visibility timeout). A recheck has no
    // messages: it neither says nor clears anything there (the log says its failure).
    if matches!(delivery, Delivery::Messages(_)) {
        let error = r
            .as_ref()
            .err()
            .map(|e| format!("{} {e}", crate::leaf::clock::utc(crate::leaf::clock::now())));
        crate::leaf::ledger::Status::update_off_runtime(&cfg.snapshot, move |st| {
            st.events_apply_error = error
        })
        .await;
    }
    r
}

async fn patch_delivery(
    cfg: &Config,
    source: &mut Option<ec2::Source>,
    publisher: Option<&mut Publisher>,
    last: &mut Last,
    delivery: &Delivery,
) -> Result<(), Failed> {
    let arrived = std::time::Instant::now();
    let now = crate::leaf::clock::now();
    let mut changes = Vec::new();
    let mut received: std::collections::BTreeMap<String, u64> = Default::default();
    let mut ignored: std::collections::BTreeMap<String, u64> = Default::default();
    let (batch, round) = match delivery {
        Delivery::Messages(b) => (b.as_slice(), 0),
        Delivery::Recheck(c, round) => {
            // Read now: from here on, as any other instance (whatever this read's fate).
            for c in c {
                for id in &c.instances {
                    last.rechecking.remove(&(c.region.clone(), id.clone()));
                }
            }
            changes.extend(c.iter().cloned());
            (&[][..], *round)
        }
    };
    for m in batch {
        match events::parse(&m.body) {
            Ok(c) => {
                *received.entry(c.kind.label().into()).or_default() += 1;
                changes.push(c);
            }
            Err(why) => {
                if last.said.insert(why.label()) {
                    tracing::warn!(
                        "events: ignored a message ({}; said once, then counted): {:.200}",
                        why.label(),
                        crate::leaf::aws::one_line(&m.body)
                    );
                }
                *ignored.entry(why.label().into()).or_default() += 1;
            }
        }
    }
    let Some(src) = source.as_ref() else {
        return Err(Failed::new(
            crate::leaf::outcome::Reason::Unreachable,
            "events before the first sweep: left in the queue",
        ));
    };
    let mut not_polled = 0usize;
    let sent_before = src.requests_sent();
    let refetched = if changes.is_empty() {
        Vec::new()
    } else {
        src.refetch(cfg, &changes, &mut not_polled).await?
    };
    // The refetch's EC2 requests count as the sweeps' do (the API budget is one).
    let requests = src.requests_sent().saturating_sub(sent_before);
    if not_polled > 0 {
        if last.said.insert("not_polled") {
            tracing::warn!(
                "events: ignored an event of an account or region this poller does not read \
                 (said once, then counted)"
            );
        }
        *ignored.entry("not_polled".into()).or_default() += not_polled as u64;
    }
    let applied = if batch.is_empty() {
        0
    } else {
        changes.len().saturating_sub(not_polled) as u64
    };
    recheck(last, &changes, &refetched, round);
    let mut instances = last.instances.clone();
    // Nothing this poller publishes changed (an instance outside the polled groups, a tag it
    // does not read: the same instance record): no publish, and the generation stays.
    if patch(&mut instances, &refetched, &cfg.rules) {
        // One second after what it patches; never more than a minute ahead of the clock (a
        // stream of patches faster than one a second keeps the generation, and a follower
        // installs an equal generation with other names).
        let generated = if last.generated < now + 60
            && last.generated < last.swept_at.saturating_add(u64::from(cfg.interval))
        {
            last.generated + 1
        } else {
            last.generated
        };
        let sweep = Sweep {
            instances,
            requests: 0,
            bytes: 0,
            elapsed: arrived.elapsed(),
        };
        let (c, key) = (cfg.clone(), publisher.as_deref().map(|p| p.key().clone()));
        let (published, sweep) = tokio::task::spawn_blocking(move || {
            let p = build::publish_patch(&c, generated, &sweep, key.as_ref());
            (p, sweep)
        })
        .await
        .map_err(|e| {
            Failed::new(
                crate::leaf::outcome::Reason::Publish,
                format!("the publish task failed: {e}"),
            )
        })?;
        let published =
            published.map_err(|e| Failed::new(crate::leaf::outcome::Reason::Publish, e))?;
        let instances = sweep.instances;
        // Published here: the next patch starts from it, whatever the upload does.
        last.generated = generated;
        last.instances = instances;
        if let Some(p) = publisher {
            let done = p.upload_patch(&cfg.snapshot, published.bytes).await;
            tracing::info!(
                "events: S3: {}",
                done.map_err(|e| Failed::new(crate::leaf::outcome::Reason::S3, e))?
                    .label()
            );
        }
        tracing::info!(
            events = applied,
            ms = arrived.elapsed().as_millis() as u64,
            "events: published {}",
            cfg.snapshot.display()
        );
    }
    let oldest = changes.iter().filter_map(|c| c.time).min();
    let received_any = !batch.is_empty();
    let publish_ms = arrived.elapsed().as_millis() as u64;
    crate::leaf::ledger::Status::update_off_runtime(&cfg.snapshot, move |st| {
        for (k, n) in received {
            *st.events_received.entry(k).or_default() += n;
        }
        for (k, n) in ignored {
            *st.events_ignored.entry(k).or_default() += n;
        }
        if received_any {
            st.events_last_at = Some(now);
        }
        st.api_requests_total = st.api_requests_total.saturating_add(requests);
        if applied > 0 {
            st.events_applied = st.events_applied.saturating_add(applied);
            st.events_lag_secs = oldest.map(|t| now.saturating_sub(t));
            st.events_publish_ms = Some(publish_ms);
        }
    })
    .await;
    // Applied (or nothing to apply): gone from the queue.
    if let Some(q) = &last.queue {
        q.delete(batch)
            .await
            .map_err(|e| Failed::new(crate::leaf::outcome::Reason::Unreachable, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nss_ec2_snapshot::fleet::Rules;

    fn inst(id: &str, state: &str, group: &str) -> Ec2Instance {
        Ec2Instance {
            id: id.into(),
            state: state.into(),
            groups: vec![group.into()],
            region: "us-east-1".into(),
            ..Default::default()
        }
    }

    /// A patch replaces what the events named by what EC2 says now: a stopped instance leaves,
    /// a new one comes, one that left the polled groups leaves, another region's is untouched.
    #[test]
    fn a_patch_replaces_the_instances_named_and_only_them() {
        let mut swept = vec![inst("i-1", "running", "g"), inst("i-2", "running", "g")];
        let mut other = inst("i-1", "running", "g");
        other.region = "eu-west-1".into();
        swept.push(other);
        let r = ec2::Refetched {
            region: "us-east-1".into(),
            namespace: None,
            asked: ["i-1", "i-2", "i-3"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            found: vec![inst("i-1", "stopped", "g"), inst("i-3", "running", "g")],
        };
        let rules = Rules {
            security_groups: Some(vec!["g".into()]),
            ..Rules::default()
        };
        assert!(patch(&mut swept, &[r], &rules));
        let ids: Vec<(&str, &str)> = swept
            .iter()
            .map(|i| (i.id.as_str(), i.region.as_str()))
            .collect();
        assert_eq!(ids, [("i-1", "eu-west-1"), ("i-3", "us-east-1")]);
        let r = ec2::Refetched {
            region: "us-east-1".into(),
            namespace: None,
            asked: ["i-3"].iter().map(|s| s.to_string()).collect(),
            found: vec![inst("i-3", "running", "other")],
        };
        assert!(patch(&mut swept, &[r], &rules));
        assert_eq!(swept.len(), 1, "left the polled groups");
        // The same record again: nothing changed.
        let same = swept[0].clone();
        let r = ec2::Refetched {
            region: same.region.clone(),
            namespace: None,
            asked: [same.id.clone()].into_iter().collect(),
            found: vec![same],
        };
        assert!(!patch(&mut swept, &[r], &rules));
        assert_eq!(swept.len(), 1);
    }
}
