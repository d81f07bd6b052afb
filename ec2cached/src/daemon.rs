//! `ec2cached run`: poll (or, on a follower, check S3) every `interval` (with jitter), again at
//! once on SIGHUP, back off on failure, exit cleanly on SIGTERM/SIGINT. The published snapshot
//! keeps serving throughout.

use crate::config::Config;
use crate::follower::Follower;
use crate::leaf::clock::now;
use crate::leaf::outcome::{Failed, Outcome, Reason};
use crate::poller::ec2::Source;
use crate::poller::publish_sweep_blocking;
use crate::poller::upload::Publisher;
use crate::writer::remove_stale_temps;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// What this host does each interval; its clients are built once.
#[derive(Debug)]
pub enum Role {
    /// Polls EC2, publishes locally, and to S3 with `[publish]`.
    Poller {
        /// The EC2 clients, built at the first sweep and kept (see [`Source`]).
        source: Option<Source>,
        /// `[publish]`.
        publisher: Option<Box<Publisher>>,
        /// `[events]`: the last sweep (or patch) published, which a batch of events patches.
        last: Option<Box<Last>>,
    },
    /// Follows the S3 object of `[follow]`.
    Follower(Follower),
}

impl Role {
    /// The role `cfg` asks for, with its S3 client and key loaded.
    pub async fn new(cfg: &Config) -> Result<Role, String> {
        if cfg.follow.is_some() {
            return Ok(Role::Follower(Follower::new(cfg).await?));
        }
        Ok(Role::Poller {
            source: None,
            publisher: match &cfg.publish {
                Some(p) => Some(Box::new(Publisher::new(cfg, p).await?)),
                None => None,
            },
            // The installed generation seeds the order (patches of a run before a restart may
            // be ahead of the clock): the first sweep is never older than what is installed.
            last: cfg.events.as_ref().map(|_| {
                Box::new(crate::poller::Last {
                    generated: std::fs::read(&cfg.snapshot)
                        .ok()
                        .and_then(|b| {
                            nss_ec2_snapshot::Snapshot::parse(&b)
                                .ok()
                                .map(|s| s.header().generated_unix)
                        })
                        .unwrap_or(0),
                    ..Default::default()
                })
            }),
        })
    }

    /// One poll and publish (or one follow check), or a patch from a batch of events; updates
    /// the status file either way.
    pub async fn cycle(&mut self, cfg: &Config, work: Work) -> Result<(), Failed> {
        if let (
            Work::Patch(batch),
            Role::Poller {
                source,
                publisher,
                last: Some(last),
            },
        ) = (&work, &mut *self)
        {
            return crate::poller::patch_cycle(cfg, source, publisher.as_deref_mut(), last, batch)
                .await;
        }
        if matches!(work, Work::Patch(_)) {
            // No [events] here: nothing sends patches.
            return Ok(());
        }
        match self {
            Role::Follower(f) => {
                let crate::follower::Verdict {
                    outcome, why: msg, ..
                } = f.check(cfg).await;
                match outcome {
                    Outcome::Installed => tracing::info!("{msg}"),
                    Outcome::Unchanged => tracing::debug!("{msg}"),
                    // A refused object stays refused until it changes: not a transient error
                    // to back off from, but the log says it at every check.
                    o if o != Outcome::Error => {
                        tracing::warn!(
                            "refused {}: {msg}",
                            o.label().trim_start_matches("refused_")
                        )
                    }
                    _ => return Err(Failed::new(Reason::S3, msg)),
                }
                Ok(())
            }
            Role::Poller {
                source,
                publisher,
                last,
            } => cycle(cfg, source, publisher.as_deref_mut(), last.as_deref_mut()).await,
        }
    }
}

pub use crate::poller::Last;

/// One poll and publish, locally and (with a publisher) to S3; updates the status file.
/// `source` is built on first use and kept.
///
/// When only the upload failed, the retries (after the backoff) upload that same snapshot again
/// without sweeping EC2 again, until `interval` has passed since the sweep: an S3 outage does
/// not spend the account's DescribeInstances budget.
pub async fn cycle(
    cfg: &Config,
    source: &mut Option<Source>,
    mut publisher: Option<&mut Publisher>,
    last: Option<&mut Last>,
) -> Result<(), Failed> {
    let upload_failed = |e: String| Failed::new(Reason::S3, e);
    if let Some(p) = publisher.as_deref_mut() {
        if let Some(done) = p.retry_pending(&cfg.snapshot, cfg.interval).await {
            tracing::info!("S3: {}", done.map_err(upload_failed)?.label());
            return Ok(());
        }
    }
    let started = now();
    let swept = match source {
        Some(s) => s.sweep(cfg).await,
        None => match Source::new(cfg).await {
            Ok(s) => source.insert(s).sweep(cfg).await,
            Err(f) => Err(f),
        },
    };
    // With [events], the sweep is kept for the patches; and generations only go up (a patch is
    // stamped one second after what it patched).
    let generated = last
        .as_ref()
        .map_or(started, |l| started.max(l.generated + 1));
    let kept = match (&last, &swept) {
        (Some(_), Ok(sw)) => Some(sw.instances.clone()),
        _ => None,
    };
    let published = publish_sweep_blocking(cfg, generated, swept, publisher.as_deref()).await?;
    if let (Some(l), Some(instances)) = (last, kept) {
        l.generated = generated;
        l.instances = instances;
        l.swept = true;
        l.swept_at = started;
    }
    let stats = published.stats;
    tracing::info!(
        instances = stats.instances,
        live = stats.live,
        ready = stats.ready,
        names = stats.names,
        requests = published.requests,
        "published {}",
        cfg.snapshot.display()
    );
    if let Some(p) = publisher {
        let done = p.upload_swept(&cfg.snapshot, published.bytes).await;
        tracing::info!("S3: {}", done.map_err(upload_failed)?.label());
    }
    Ok(())
}

/// Delay before the next poll after `failures` failures in a row: doubling from 1 s up to the
/// interval, with "equal jitter" (half fixed, half random) so a fleet of daemons spreads out.
pub fn backoff(failures: u32, interval: u32) -> Duration {
    let ceiling = f64::from(interval.max(1));
    let step = 2f64
        .powi(failures.saturating_sub(1).min(30) as i32)
        .min(ceiling);
    Duration::from_secs_f64(step / 2.0 + fastrand::f64() * step / 2.0)
}

/// Delay after a success: the interval ±10 %.
pub fn next_poll(interval: u32) -> Duration {
    Duration::from_secs_f64(f64::from(interval) * (0.9 + fastrand::f64() * 0.2))
}

/// True when a snapshot the module would answer from is already published (from before a
/// restart): it parses and is not older than its `max_age`.
fn usable(cfg: &Config) -> bool {
    crate::reports::facts::read_usable(cfg, now()).is_ok()
}

/// Runs until SIGTERM or SIGINT. `ready` is called once, as soon as a good snapshot is
/// published: at start when the last good one is still there (a restart during an API outage
/// must not fail the service), else once a cycle has published or installed one.
pub async fn run(cfg: Config, ready: impl FnMut()) -> Result<(), String> {
    let sig = |k| signal(k).map_err(|e| format!("cannot install signal handlers: {e}"));
    let (mut term, mut int, mut hup) = (
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
        sig(SignalKind::hangup())?,
    );
    remove_stale_temps(&cfg.snapshot);
    if let Some(m) = &cfg.metrics_textfile {
        crate::leaf::files::remove_stale_temps_of(m);
    }
    if nix::unistd::geteuid().is_root() {
        tracing::warn!("running as root: the daemon needs no privilege, run it as its own account");
    }
    tracing::info!(
        snapshot = %cfg.snapshot.display(),
        interval = cfg.interval,
        "ec2cached starting"
    );
    // The stub answers from the installed snapshot whatever the first poll does.
    if let Some(sockets) = crate::dns::sockets(&cfg)? {
        crate::dns::start(&cfg, sockets)?;
    }
    let mut role = Role::new(&cfg).await?;
    let follower = matches!(role, Role::Follower(_));
    let (wake_tx, mut wake) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // A full channel already holds a wake-up: one is enough.
            let _ = wake_tx.try_send(());
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    let (events_tx, mut events) = tokio::sync::mpsc::channel(1);
    if let Some(e) = &cfg.events {
        if !follower {
            let queue =
                crate::poller::queue::Queue::new(e, cfg.regions.first().map(String::as_str))
                    .await?;
            if let Role::Poller {
                last: Some(last), ..
            } = &mut role
            {
                last.queue = Some(queue.clone());
                last.requeue = Some(events_tx.clone());
            }
            tokio::spawn(crate::poller::listen(
                queue,
                e.debounce,
                cfg.snapshot.clone(),
                events_tx,
            ));
            tracing::info!("events: listening on {}", e.queue_url);
        }
    }
    run_loop_with_events(
        Pace {
            interval: cfg.interval,
            follower,
        },
        async |work: Work| {
            let r = role.cycle(&cfg, work).await;
            // Off the runtime: it reads the status file under its lock.
            let c = cfg.clone();
            let _ = tokio::task::spawn_blocking(move || crate::reports::metrics::write(&c)).await;
            r
        },
        || usable(&cfg),
        ready,
        &mut wake,
        &mut events,
        shutdown,
    )
    .await;
    tracing::info!("ec2cached stopping");
    Ok(())
}

/// How the loop paces its cycles.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Seconds between cycles.
    pub interval: u32,
    /// A follower keeps its pace after a failed check (the next check is the retry); a poller
    /// backs off from 1 s (its sweep failed, the API may be back in a moment).
    pub follower: bool,
}

/// What a cycle does: a sweep (or follow check), or, with `[events]`, a patch from a batch of
/// change events.
#[derive(Debug)]
pub enum Work {
    /// Sweep EC2 (a follower: check S3).
    Sweep,
    /// Read again the instances a batch of events (or a recheck) names, and publish.
    Patch(crate::poller::Delivery),
}

/// The daemon's loop, apart from the world it acts on (so that tests drive it with paused
/// time): `cycle` every interval (±10 %), at once when `wake` receives (SIGHUP), after a failure
/// again after [`backoff`] (a poller) or the interval (a follower); `ready` once, as soon as
/// `usable` says names resolve; returns when `shutdown` completes, even mid-cycle.
pub async fn run_loop(
    pace: Pace,
    mut cycle: impl AsyncFnMut() -> Result<(), Failed>,
    usable: impl FnMut() -> bool,
    ready: impl FnMut(),
    wake: &mut tokio::sync::mpsc::Receiver<()>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (_none, mut no_events) = tokio::sync::mpsc::channel(1);
    run_loop_with_events(
        pace,
        async |w: Work| match w {
            Work::Sweep => cycle().await,
            Work::Patch(_) => Ok(()),
        },
        usable,
        ready,
        wake,
        &mut no_events,
        shutdown,
    )
    .await
}

/// [`run_loop`], and between sweeps a `Work::Patch` for every batch `events` delivers: a patch
/// does not move the next sweep (under a steady stream of events the reconcile sweep still comes
/// every interval), and its failure is the patch's alone (the messages stay in the queue, and
/// the next sweep repairs what they said).
#[allow(clippy::too_many_arguments)]
pub async fn run_loop_with_events(
    pace: Pace,
    mut cycle: impl AsyncFnMut(Work) -> Result<(), Failed>,
    mut usable: impl FnMut() -> bool,
    mut ready: impl FnMut(),
    wake: &mut tokio::sync::mpsc::Receiver<()>,
    events: &mut tokio::sync::mpsc::Receiver<crate::poller::Delivery>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut failures = 0u32;
    let mut told_ready = usable();
    if told_ready {
        ready();
    }
    loop {
        let began = tokio::time::Instant::now();
        let outcome = tokio::select! {
            biased;
            () = &mut shutdown => return,
            r = cycle(Work::Sweep) => r,
        };
        // Ready once names resolve: a snapshot is published and fresh. Not merely after a cycle
        // that did not fail (a follower that refused an object has nothing to serve yet), and
        // not only after a wholly good one (a poller whose upload failed serves its host).
        if !told_ready && usable() {
            ready();
            told_ready = true;
        }
        let delay = match outcome {
            Ok(()) => {
                failures = 0;
                // From the start of this cycle, not its end: a snapshot is stamped when its
                // sweep starts, so with slow pages the next one would otherwise come up to a
                // sweep's time later and a `max_age` of 2 × interval would expire between
                // healthy polls. (A sweep longer than the interval: the next starts at once.)
                next_poll(pace.interval).saturating_sub(began.elapsed())
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                // A follower that cannot read S3 (an outage, SlowDown) keeps its pace: never
                // more requests than when all is well.
                // Throttled: the account's API budget is spent (by every caller in it, not
                // only this one); a retry before the next interval would spend it again.
                let d = if pace.follower {
                    next_poll(pace.interval)
                } else if e.reason == Reason::Throttled {
                    backoff(failures, pace.interval).max(next_poll(pace.interval))
                } else {
                    backoff(failures, pace.interval)
                };
                tracing::error!(
                    failures,
                    retry_in = format!("{:.1}s", d.as_secs_f64()),
                    "{} failed, keeping the last snapshot: {e}",
                    if pace.follower { "check" } else { "poll" }
                );
                d
            }
        };
        let next = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = tokio::time::sleep_until(next) => break,
                Some(()) = wake.recv() => {
                    tracing::info!(
                        "SIGHUP: {} now",
                        if pace.follower { "checking" } else { "polling" }
                    );
                    break;
                }
                Some(batch) = events.recv() => {
                    let r = tokio::select! {
                        biased;
                        () = &mut shutdown => return,
                        r = cycle(Work::Patch(batch)) => r,
                    };
                    if let Err(e) = r {
                        tracing::warn!("events: not applied, the next sweep repairs: {e}");
                    }
                    if !told_ready && usable() {
                        ready();
                        told_ready = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_interval_with_jitter() {
        for _ in 0..200 {
            let d1 = backoff(1, 30).as_secs_f64();
            assert!((0.5..=1.0).contains(&d1), "{d1}");
            let d3 = backoff(3, 30).as_secs_f64();
            assert!((2.0..=4.0).contains(&d3), "{d3}");
            let d = backoff(50, 30).as_secs_f64();
            assert!((15.0..=30.0).contains(&d), "{d}");
            let n = next_poll(30).as_secs_f64();
            assert!((27.0..=33.0).contains(&n), "{n}");
        }
    }

    use std::cell::RefCell;
    use tokio::time::Instant;

    /// Runs the loop for `secs` of paused time with `outcome(n)` as the n-th cycle's result;
    /// returns the seconds between the starts of consecutive cycles, and how often `ready` ran.
    async fn drive(
        pace: Pace,
        secs: u64,
        outcome: impl Fn(usize) -> Result<(), Failed>,
        usable_from: usize,
        wake_at: Option<u64>,
    ) -> (Vec<f64>, Vec<usize>) {
        let starts = RefCell::new(Vec::<Instant>::new());
        // The number of cycles started when `ready` ran, each time it ran.
        let readies = RefCell::new(Vec::<usize>::new());
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        if let Some(at) = wake_at {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(at)).await;
                tx.send(()).await.unwrap();
            });
        }
        run_loop(
            pace,
            async || {
                starts.borrow_mut().push(Instant::now());
                outcome(starts.borrow().len())
            },
            || starts.borrow().len() >= usable_from,
            || readies.borrow_mut().push(starts.borrow().len()),
            &mut rx,
            tokio::time::sleep(Duration::from_secs(secs)),
        )
        .await;
        let s = starts.into_inner();
        let gaps = s.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        (gaps, readies.into_inner())
    }

    fn down() -> Failed {
        Failed::new(Reason::Unreachable, "down")
    }

    const POLLER: Pace = Pace {
        interval: 16,
        follower: false,
    };

    #[tokio::test(start_paused = true)]
    async fn a_failing_poller_backs_off_doubling_up_to_the_interval_with_jitter() {
        let (gaps, readies) = drive(POLLER, 200, |_| Err(down()), usize::MAX, None).await;
        assert!(readies.is_empty(), "ready without a snapshot");
        assert!(gaps.len() > 12, "{gaps:?}");
        for (k, g) in gaps.iter().enumerate() {
            // After the (k+1)-th failure: a step of 2^k s, capped at 16, half of it random.
            let step = 2f64.powi(k as i32).min(16.0);
            assert!(
                (step / 2.0..=step).contains(g),
                "gap {k}: {g} not in [{}, {step}]",
                step / 2.0
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn healthy_cycles_come_every_interval_within_ten_percent_and_ready_comes_once() {
        let (gaps, readies) = drive(POLLER, 400, |_| Ok(()), 3, None).await;
        assert_eq!(
            readies,
            vec![3],
            "once, right after the cycle that made names resolve"
        );
        assert!(gaps.len() >= 20, "{gaps:?}");
        assert!(gaps.iter().all(|g| (14.4..=17.6).contains(g)), "{gaps:?}");
        // Jitter: not all the same.
        assert!(gaps.iter().any(|g| (g - gaps[0]).abs() > 0.01), "{gaps:?}");
    }

    /// Issue 22, item 15: with slow pages (a sweep of 6 s at interval 10) the polls still
    /// start every interval, so the snapshot's stamp (its sweep's start) is never more than
    /// 1.1 × interval + a sweep old when the next lands: within max_age = 2 × interval.
    #[tokio::test(start_paused = true)]
    async fn a_slow_sweep_does_not_push_the_next_poll_back() {
        let starts = RefCell::new(Vec::<Instant>::new());
        let (_tx, mut rx) = tokio::sync::mpsc::channel(1);
        let pace = Pace {
            interval: 10,
            follower: false,
        };
        run_loop(
            pace,
            async || {
                starts.borrow_mut().push(Instant::now());
                tokio::time::sleep(Duration::from_secs(6)).await;
                Ok(())
            },
            || true,
            || {},
            &mut rx,
            tokio::time::sleep(Duration::from_secs(200)),
        )
        .await;
        let s = starts.into_inner();
        let gaps: Vec<f64> = s.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        assert!(gaps.len() >= 15, "{gaps:?}");
        assert!(gaps.iter().all(|g| (9.0..=11.0).contains(g)), "{gaps:?}");
        // Each snapshot (stamped at its sweep's start) is replaced before it is 20 s old.
        assert!(gaps.iter().all(|g| g + 6.0 < 20.0), "{gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_after_failures_resets_the_backoff() {
        let (gaps, _) = drive(
            POLLER,
            100,
            |n| if n == 4 { Ok(()) } else { Err(down()) },
            0,
            None,
        )
        .await;
        // 3 failures (gaps 0.5-1, 1-2, 2-4), the success (an interval), then 0.5-1 again.
        assert!((2.0..=4.0).contains(&gaps[2]), "{gaps:?}");
        assert!((14.4..=17.6).contains(&gaps[3]), "{gaps:?}");
        assert!((0.5..=1.0).contains(&gaps[4]), "{gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_poller_waits_at_least_an_interval() {
        let throttled = |_| Err(Failed::new(Reason::Throttled, "RequestLimitExceeded"));
        let (gaps, _) = drive(POLLER, 200, throttled, usize::MAX, None).await;
        assert!(gaps.len() >= 10, "{gaps:?}");
        // Never sooner than the interval (-10 %), never later than the interval (+10 %).
        assert!(gaps.iter().all(|g| (14.4..=17.6).contains(g)), "{gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_follower_keeps_its_pace() {
        let pace = Pace {
            interval: 16,
            follower: true,
        };
        let (gaps, readies) = drive(pace, 200, |_| Err(down()), usize::MAX, None).await;
        assert!(readies.is_empty());
        assert!(gaps.len() >= 10, "{gaps:?}");
        assert!(gaps.iter().all(|g| (14.4..=17.6).contains(g)), "{gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_snapshot_is_ready_at_once_and_only_once() {
        let (_, readies) = drive(POLLER, 100, |_| Err(down()), 0, None).await;
        assert_eq!(readies, vec![0], "before the first cycle, and only then");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_loop_even_mid_cycle() {
        let (_tx, mut rx) = tokio::sync::mpsc::channel(1);
        let started = Instant::now();
        run_loop(
            POLLER,
            async || std::future::pending::<Result<(), Failed>>().await,
            || false,
            || panic!("not ready"),
            &mut rx,
            tokio::time::sleep(Duration::from_secs(7)),
        )
        .await;
        assert_eq!(started.elapsed().as_secs(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn the_metrics_file_follows_every_cycle_of_the_loop() {
        use crate::leaf::outcome::{Failed, Reason};
        use crate::poller::Sweep;
        let dir = tempfile::tempdir().unwrap();
        let prom = dir.path().join("ec2cached.prom");
        let cfg = Config::parse(
            &dir.path().join("c.toml"),
            &format!(
                "snapshot = {:?}\ninterval = 16\n[metrics]\ntextfile = {prom:?}",
                dir.path().join("hosts.snap")
            ),
        )
        .unwrap();
        let texts = RefCell::new(Vec::<String>::new());
        let (_tx, mut rx) = tokio::sync::mpsc::channel(1);
        run_loop(
            POLLER,
            async || {
                // Two throttled sweeps (3 and 1 pages), then good ones (2 pages each).
                let n = texts.borrow().len();
                let sweep = if n < 2 {
                    Err(Failed {
                        reason: Reason::Throttled,
                        message: "RequestLimitExceeded".into(),
                        requests: 3 - 2 * n as u32,
                    })
                } else {
                    Ok(Sweep {
                        instances: vec![nss_ec2_snapshot::fleet::Ec2Instance {
                            id: "i-0a".into(),
                            state: "running".into(),
                            groups: vec!["tphon".into()],
                            private_ipv4: Some([10, 0, 0, 1].into()),
                            ..Default::default()
                        }],
                        requests: 2,
                        ..Sweep::default()
                    })
                };
                let r =
                    crate::poller::build::publish_and_record(&cfg, now(), sweep, None).map(|_| ());
                crate::reports::metrics::write(&cfg);
                texts
                    .borrow_mut()
                    .push(std::fs::read_to_string(&prom).unwrap());
                r
            },
            || false,
            || {},
            &mut rx,
            tokio::time::sleep(Duration::from_secs(70)),
        )
        .await;
        let texts = texts.into_inner();
        // Throttled at 0 and after an interval (16 s ± 10 %), then good cycles an interval apart.
        assert!(texts.len() >= 4, "{}", texts.len());
        let has = |i: usize, line: &str| {
            assert!(
                texts[i].lines().any(|l| l == line),
                "cycle {i}: {line:?} missing:\n{}",
                texts[i]
            )
        };
        has(0, "ec2cached_poll_failures_total{reason=\"throttled\"} 1");
        has(0, "ec2cached_consecutive_failures 1");
        has(0, "ec2cached_snapshot_present 0");
        has(0, "ec2cached_api_requests_total 3");
        has(1, "ec2cached_poll_failures_total{reason=\"throttled\"} 2");
        has(1, "ec2cached_consecutive_failures 2");
        has(1, "ec2cached_api_requests_total 4");
        has(2, "ec2cached_poll_failures_total{reason=\"throttled\"} 2");
        has(2, "ec2cached_consecutive_failures 0");
        has(2, "ec2cached_snapshot_present 1");
        has(2, "ec2cached_instances 1");
        has(2, "ec2cached_api_requests_total 6");
        has(3, "ec2cached_api_requests_total 8");
        assert!(!texts[0].contains("last_success"), "{}", texts[0]);
        assert!(texts[2].contains("ec2cached_last_success_timestamp_seconds "));
    }

    #[tokio::test(start_paused = true)]
    async fn sighup_starts_a_cycle_at_once() {
        let (gaps, _) = drive(POLLER, 40, |_| Ok(()), 0, Some(5)).await;
        // Cycles at 0, 5 (woken), then an interval later.
        assert!((gaps[0] - 5.0).abs() < 0.01, "{gaps:?}");
        assert!((14.4..=17.6).contains(&gaps[1]), "{gaps:?}");
    }
}
