//! The EC2 API: one client per account and region, and one paginated, filtered
//! DescribeInstances sweep of them all; its failures said and labelled.

use crate::config::Config;
use crate::leaf::aws::{
    cap, describe_credentials, endpoint_of, find_source, one_line, root_cause, timeouts,
    timeouts_secs,
};
use crate::leaf::outcome::{Failed, Reason};
use crate::poller::Sweep;
use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ec2::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::Filter;
use nss_ec2_snapshot::fleet::Ec2Instance;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Checks every successful DescribeInstances response is a whole XML document before it is
/// trusted, and counts response bytes. The SDK's XML reader is lenient: a truncated or garbled
/// body can deserialize as a page with no instances, which would publish an empty fleet.
#[derive(Debug, Default)]
struct ResponseCheck {
    /// HTTP requests sent (every attempt, the SDK's retries included).
    attempts: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    /// The endpoint (scheme://host:port) of the last request, for error messages.
    endpoint: Arc<Mutex<String>>,
}

impl Intercept for ResponseCheck {
    fn name(&self) -> &'static str {
        "ec2cached::ResponseCheck"
    }

    fn read_before_signing(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.endpoint.lock() {
            *e = endpoint_of(ctx.request().uri());
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        ctx: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let resp = ctx.response();
        let Some(body) = resp.body().bytes() else {
            return Ok(());
        };
        self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        if resp.status().is_success()
            && !body
                .trim_ascii_end()
                .ends_with(b"</DescribeInstancesResponse>")
        {
            return Err(
                "malformed response: not a complete DescribeInstancesResponse document".into(),
            );
        }
        Ok(())
    }
}

/// A poller's EC2 clients, built once and kept for the daemon's life: one per account and
/// region, all from one SDK config, so they share one credentials cache (credentials are fetched
/// from IMDS or STS again only when they near expiry, not at every sweep; an assumed role once
/// per account) and one connection pool (no new TLS handshake per sweep).
#[derive(Debug)]
pub struct Source {
    targets: Vec<Target>,
    /// HTTP requests, counted by [`ResponseCheck`].
    attempts: Arc<AtomicU64>,
    /// Response bytes, counted by [`ResponseCheck`].
    bytes: Arc<AtomicU64>,
    /// The endpoint of the last request signed, for messages.
    endpoint: Arc<Mutex<String>>,
    /// With `[events]` and the host's own credentials: asks STS once whose they are, so that
    /// events are routed to the host's account before a sweep has found an instance in it.
    sts: Option<aws_sdk_sts::Client>,
    /// After an STS failure: not before then.
    sts_next: Mutex<Option<std::time::Instant>>,
}

/// The longest the host's account is waited for at an event (the batch waits meanwhile).
const STS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// After STS failed, when it is asked again.
const STS_RETRY: std::time::Duration = std::time::Duration::from_secs(600);

/// One account in one region.
#[derive(Debug)]
struct Target {
    /// `account 111122223333 (prod), ` or "" without `[[account]]` (messages as before).
    account: String,
    region: String,
    /// The account's label: its names live under `label.D`.
    namespace: Option<String>,
    /// The account id of a role's account (from its ARN); `None`: the host's own credentials.
    account_id: Option<String>,
    /// The account the sweeps found its instances in (their reservations' owner): the host's
    /// own account, learned at the first sweep that finds an instance.
    seen_account: Mutex<Option<String>>,
    client: aws_sdk_ec2::Client,
}

/// The instances a batch of events names, read again in one account and region.
#[derive(Debug, Default)]
pub struct Refetched {
    /// The region.
    pub region: String,
    /// The account's label.
    pub namespace: Option<String>,
    /// The instance ids the events named (gone ones are dropped from the sweep).
    pub asked: std::collections::HashSet<String>,
    /// What DescribeInstances says of them now (every state), and of the instances of the
    /// network interfaces named.
    pub found: Vec<Ec2Instance>,
}

impl Source {
    /// Loads the SDK config (credentials chain, region chain, endpoint) and builds a client for
    /// every account and region. Fails only when no region can be found: the caller tries again
    /// at the next sweep (the region may come from IMDS, which may not answer yet at boot).
    pub async fn new(cfg: &Config) -> Result<Source, Failed> {
        // One identity cache for every client built from `base` (by default each client has
        // its own): with it, clients of one account in several regions share its credentials.
        let base = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts(cfg.api_timeout))
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .identity_cache(aws_config::identity::IdentityCache::lazy().build())
            .load()
            .await;
        let host_region = |whose: &str| {
            base.region().map(|r| vec![r.to_string()]).ok_or_else(|| {
                Failed::new(
                    Reason::Config,
                    format!(
                        "no region{whose}: set `regions` in the config, AWS_REGION, or a \
                         profile region"
                    ),
                )
            })
        };
        let attempts = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let endpoint = Arc::new(Mutex::new(String::new()));
        let client = |region: &str, creds: Option<SharedCredentialsProvider>| {
            let mut conf = aws_sdk_ec2::config::Builder::from(&base)
                .region(aws_sdk_ec2::config::Region::new(region.to_string()))
                .interceptor(ResponseCheck {
                    attempts: Arc::clone(&attempts),
                    bytes: Arc::clone(&bytes),
                    endpoint: Arc::clone(&endpoint),
                });
            // `set_credentials_provider` keeps the provider's cache partition (so the clients
            // of one account share its cached credentials); `credentials_provider` would wrap
            // it in a new one, and each region's client would assume the role again.
            conf.set_credentials_provider(creds);
            aws_sdk_ec2::Client::from_conf(conf.build())
        };
        let mut targets = Vec::new();
        if cfg.accounts.is_empty() {
            let regions = if cfg.regions.is_empty() {
                host_region("")?
            } else {
                cfg.regions.clone()
            };
            for region in regions {
                targets.push(Target {
                    account: String::new(),
                    client: client(&region, None),
                    region,
                    namespace: None,
                    account_id: None,
                    seen_account: Mutex::new(None),
                });
            }
        }
        for a in &cfg.accounts {
            let regions = if a.regions.is_empty() {
                host_region(&format!(" for {}", a.describe()))?
            } else {
                a.regions.clone()
            };
            // One provider per account, shared by its regions' clients: one AssumeRole per
            // credential lifetime, whatever the number of regions and sweeps.
            let creds = match &a.role_arn {
                None => None,
                Some(arn) => {
                    let mut b = aws_config::sts::AssumeRoleProvider::builder(arn.clone())
                        .session_name("ec2cached")
                        .configure(&base);
                    if let Some(id) = &a.external_id {
                        b = b.external_id(id.clone());
                    }
                    if base.region().is_none() {
                        b = b.region(aws_config::Region::new(regions[0].clone()));
                    }
                    Some(SharedCredentialsProvider::new(b.build().await))
                }
            };
            for region in regions {
                targets.push(Target {
                    account: format!("{}, ", a.describe()),
                    client: client(&region, creds.clone()),
                    region,
                    namespace: a.label.clone(),
                    account_id: a
                        .role_arn
                        .as_deref()
                        .and_then(|arn| arn.split(':').nth(4))
                        .map(str::to_string),
                    seen_account: Mutex::new(None),
                });
            }
        }
        let sts =
            (cfg.events.is_some() && targets.iter().any(|t| t.account_id.is_none())).then(|| {
                let mut conf =
                    aws_sdk_sts::config::Builder::from(&base).retry_config(RetryConfig::disabled());
                if base.region().is_none() {
                    if let Some(t) = targets.first() {
                        conf = conf.region(aws_sdk_sts::config::Region::new(t.region.clone()));
                    }
                }
                aws_sdk_sts::Client::from_conf(conf.build())
            });
        Ok(Source {
            targets,
            attempts,
            bytes,
            endpoint,
            sts,
            sts_next: Mutex::new(None),
        })
    }

    /// Reads every running instance (in the configured groups) of every region.
    /// Any failed page fails the whole sweep: a partial fleet is never published.
    pub async fn sweep(&self, cfg: &Config) -> Result<Sweep, Failed> {
        let started = std::time::Instant::now();
        let mut sweep = Sweep::default();
        self.bytes.store(0, Ordering::Relaxed);
        self.attempts.store(0, Ordering::Relaxed);
        for t in &self.targets {
            let (region, client) = (&t.region, &t.client);
            // A failure before this region's first request is signed must not name another's.
            if let Ok(mut e) = self.endpoint.lock() {
                e.clear();
            }
            let mut req = client
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .values("running")
                        .build(),
                )
                .max_results(1000);
            if let Some(groups) = &cfg.rules.security_groups {
                req = req.filters(
                    Filter::builder()
                        .name("instance.group-name")
                        .set_values(Some(groups.clone()))
                        .build(),
                );
            }
            let pages = self
                .each_page(
                    req,
                    cfg,
                    |n| format!("DescribeInstances in {}{region}, page {n}", t.account),
                    ": a sweep that ended here would miss instances, so none is published",
                    |page| {
                        for r in page.reservations() {
                            if let (Some(owner), Ok(mut seen)) =
                                (r.owner_id(), t.seen_account.lock())
                            {
                                seen.get_or_insert_with(|| owner.to_string());
                            }
                            for i in r.instances() {
                                let mut i = from_sdk(i);
                                i.region = region.clone();
                                i.namespace = t.namespace.clone();
                                sweep.instances.push(i);
                            }
                        }
                    },
                )
                .await?;
            sweep.bytes = self.bytes.load(Ordering::Relaxed);
            tracing::debug!(
                account = t.account,
                region,
                pages,
                requests = self.requests(),
                bytes = sweep.bytes,
                instances = sweep.instances.len(),
                "swept region"
            );
        }
        sweep.requests = self.requests();
        sweep.elapsed = started.elapsed();
        Ok(sweep)
    }

    /// Reads again the instances `changes` name, in the account and region of each: a change
    /// goes to the target of its account (a role's; the host's own, as its sweeps found it, or
    /// before any sweep found an instance, any account no role names) and region; one no
    /// target takes (an account or region not configured) is counted in `ignored`. At
    /// most 200 ids a request (a filter's values), instances by `instance-id`, interfaces by
    /// `network-interface.network-interface-id`: a filter, so an id EC2 does not know is
    /// simply not found (the instance is gone, or was never this account's).
    pub async fn refetch(
        &self,
        cfg: &Config,
        changes: &[super::events::Change],
        ignored: &mut usize,
    ) -> Result<Vec<Refetched>, Failed> {
        self.learn_host_account().await;
        let roles: std::collections::HashSet<&str> = self
            .targets
            .iter()
            .filter_map(|t| t.account_id.as_deref())
            .collect();
        let mut out = Vec::new();
        let mut taken = vec![false; changes.len()];
        for t in &self.targets {
            let mine: Vec<&super::events::Change> = changes
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    let seen = t.seen_account.lock().ok().and_then(|s| s.clone());
                    c.region == t.region
                        && match (&t.account_id, seen) {
                            (Some(a), _) => *a == c.account,
                            (None, Some(a)) => a == c.account,
                            (None, None) => !roles.contains(c.account.as_str()),
                        }
                })
                .map(|(i, c)| {
                    taken[i] = true;
                    c
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut r = Refetched {
                region: t.region.clone(),
                namespace: t.namespace.clone(),
                ..Refetched::default()
            };
            let ids: std::collections::BTreeSet<&str> = mine
                .iter()
                .flat_map(|c| c.instances.iter().map(String::as_str))
                .collect();
            let enis: std::collections::BTreeSet<&str> = mine
                .iter()
                .flat_map(|c| c.interfaces.iter().map(String::as_str))
                .collect();
            r.asked = ids.iter().map(|s| s.to_string()).collect();
            for (filter, values) in [
                ("instance-id", ids.into_iter().collect::<Vec<_>>()),
                (
                    "network-interface.network-interface-id",
                    enis.into_iter().collect(),
                ),
            ] {
                for chunk in values.chunks(200) {
                    let req = t.client.describe_instances().filters(
                        Filter::builder()
                            .name(filter)
                            .set_values(Some(chunk.iter().map(|s| s.to_string()).collect()))
                            .build(),
                    );
                    // A partial read would drop the instances not returned.
                    self.each_page(
                        req,
                        cfg,
                        |_| format!("DescribeInstances in {}{} (events)", t.account, t.region),
                        "",
                        |page| {
                            for res in page.reservations() {
                                for i in res.instances() {
                                    let mut i = from_sdk(i);
                                    i.region = t.region.clone();
                                    i.namespace = t.namespace.clone();
                                    // Named by id and through its interface: once.
                                    if r.asked.insert(i.id.clone())
                                        || !r.found.iter().any(|f| f.id == i.id)
                                    {
                                        r.found.push(i);
                                    }
                                }
                            }
                        },
                    )
                    .await?;
                }
            }
            out.push(r);
        }
        *ignored += taken.iter().filter(|t| !**t).count();
        Ok(out)
    }

    /// Sends `req` page after page, handing each to `each`, until the last: the pages read. By
    /// hand, not with the SDK's paginator: it ends quietly when a token comes back the same as
    /// one sent, and a partial read would pass for a whole one; here a token sent twice fails
    /// (`cost`: what such a read would have cost, said in the message). `where_`: the request
    /// (and page number) for messages.
    async fn each_page(
        &self,
        req: aws_sdk_ec2::operation::describe_instances::builders::DescribeInstancesFluentBuilder,
        cfg: &Config,
        where_: impl Fn(u32) -> String,
        cost: &str,
        mut each: impl FnMut(&aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput),
    ) -> Result<u32, Failed> {
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        let mut page_no = 0u32;
        loop {
            page_no += 1;
            let here = where_(page_no);
            let page = req
                .clone()
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| self.failed(&e, &here, cfg))?;
            each(&page);
            match page.next_token().filter(|t| !t.is_empty()) {
                None => return Ok(page_no),
                Some(t) if !seen.insert(t.to_string()) => {
                    return Err(Failed {
                        reason: Reason::MalformedResponse,
                        message: format!(
                            "the EC2 API sent a page token it had already sent{cost} ({here})"
                        ),
                        requests: self.requests(),
                    });
                }
                Some(t) => token = Some(t.to_string()),
            }
        }
    }

    /// The host's own account, from STS (`GetCallerIdentity`, any credentials may call it), for
    /// the targets without a role, when no sweep has found it yet: until then an event of an
    /// account that is neither a role's nor known is not the host's for sure. One attempt of at
    /// most [`STS_TIMEOUT`]; after a failure, not again for [`STS_RETRY`] (said once in the log;
    /// events go on being routed by the accounts the sweeps found).
    async fn learn_host_account(&self) {
        let unknown = |t: &Target| {
            t.account_id.is_none() && t.seen_account.lock().map(|s| s.is_none()).unwrap_or(false)
        };
        let Some(sts) = self
            .sts
            .as_ref()
            .filter(|_| self.targets.iter().any(unknown))
        else {
            return;
        };
        let due = self
            .sts_next
            .lock()
            .map(|n| n.is_none_or(|at| std::time::Instant::now() >= at));
        if !due.unwrap_or(false) {
            return;
        }
        let asked = tokio::time::timeout(STS_TIMEOUT, sts.get_caller_identity().send()).await;
        match asked {
            Ok(Ok(who)) if who.account().is_some() => {
                let account = who.account().unwrap_or_default();
                for t in self.targets.iter().filter(|t| unknown(t)) {
                    if let Ok(mut seen) = t.seen_account.lock() {
                        *seen = Some(account.to_string());
                    }
                }
            }
            failed => {
                let why = match failed {
                    Ok(Ok(_)) => "an answer without an account".to_string(),
                    Ok(Err(e)) => crate::leaf::aws::root_cause(&e),
                    Err(_) => format!("no answer within {} s", STS_TIMEOUT.as_secs()),
                };
                if let Ok(mut next) = self.sts_next.lock() {
                    if next.is_none() {
                        tracing::warn!(
                            "events: STS GetCallerIdentity: {why}; the host's account is known \
                             when a sweep finds an instance (asked again every {} min)",
                            STS_RETRY.as_secs() / 60
                        );
                    }
                    *next = Some(std::time::Instant::now() + STS_RETRY);
                }
            }
        }
    }

    /// A failed request, for the log and the status file: its reason, one line naming where,
    /// and the requests so far.
    fn failed<E>(&self, e: &SdkError<E, HttpResponse>, where_: &str, cfg: &Config) -> Failed
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    {
        tracing::debug!("{where_} failed: {}", DisplayErrorContext(e));
        let at = self.endpoint.lock().map(|e| e.clone()).unwrap_or_default();
        Failed {
            reason: classify(e),
            message: format!("{} ({where_})", describe_error(e, &at, cfg.api_timeout)),
            requests: self.requests(),
        }
    }

    /// HTTP requests sent through these clients since the last sweep began, retries included
    /// (a patch's refetch takes the difference around it).
    pub fn requests_sent(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// HTTP requests of this sweep so far, retries included.
    fn requests(&self) -> u32 {
        u32::try_from(self.attempts.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
    }
}

/// One sweep with clients built for it (`refresh`, `explain`): see [`Source`].
pub async fn poll(cfg: &Config) -> Result<Sweep, Failed> {
    Source::new(cfg).await?.sweep(cfg).await
}

/// The metric reason of an SDK error.
fn classify<E>(e: &SdkError<E, HttpResponse>) -> Reason
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    match e {
        SdkError::ServiceError(s) => match s.err().code() {
            Some(
                "RequestLimitExceeded"
                | "Throttling"
                | "ThrottlingException"
                | "SlowDown"
                | "RequestThrottled"
                | "TooManyRequestsException",
            ) => Reason::Throttled,
            Some(
                "UnauthorizedOperation"
                | "AuthFailure"
                | "AccessDenied"
                | "AccessDeniedException"
                | "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "OptInRequired"
                | "Blocked",
            ) => Reason::Denied,
            Some(c) if c.contains("Expired") => Reason::Credentials,
            Some(_) => Reason::ApiError,
            None => Reason::MalformedResponse,
        },
        SdkError::TimeoutError(_) => Reason::Timeout,
        other => {
            if find_source::<CredentialsError>(other).is_some() {
                return Reason::Credentials;
            }
            match other {
                SdkError::DispatchFailure(d) if d.is_timeout() => Reason::Timeout,
                SdkError::DispatchFailure(_) => Reason::Unreachable,
                SdkError::ResponseError(_) => Reason::MalformedResponse,
                _ => Reason::ApiError,
            }
        }
    }
}

/// One line for an SDK error, cause first: what went wrong in words an operator can act on,
/// never the SDK's Debug dump. The caller appends where (operation, region, page).
fn describe_error<E>(e: &SdkError<E, HttpResponse>, endpoint: &str, api_timeout: u32) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let endpoint = if endpoint.is_empty() {
        "its endpoint"
    } else {
        endpoint
    };
    let t = timeouts_secs(api_timeout);
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let msg = err.message().map(|m| cap(&one_line(m))).unwrap_or_default();
            match (err.code().map(|c| cap(&one_line(c))), msg.is_empty()) {
                (Some(code), false) => format!("the EC2 API refused: {code}: {msg}"),
                (Some(code), true) => format!("the EC2 API refused: {code}"),
                (None, _) => format!(
                    "the EC2 API at {endpoint} answered HTTP {} without an EC2 error: is \
                     AWS_ENDPOINT_URL an EC2 endpoint?",
                    s.raw().status().as_u16()
                ),
            }
        }
        SdkError::TimeoutError(_) => format!(
            "timeout: no answer from the EC2 API at {endpoint} within {} s (3 × api_timeout, with \
             retries)",
            t.operation
        ),
        other => {
            if let Some(c) = find_source::<CredentialsError>(other) {
                return describe_credentials(c);
            }
            let cause = root_cause(other);
            match other {
                SdkError::DispatchFailure(d) if d.is_timeout() => format!(
                    "timeout: cannot reach the EC2 API at {endpoint} (connect within {} s, answer \
                     within {} s): {cause}",
                    t.connect, t.attempt
                ),
                SdkError::DispatchFailure(_) => {
                    format!("cannot reach the EC2 API at {endpoint}: {cause}")
                }
                SdkError::ResponseError(_) => {
                    format!("malformed response from the EC2 API at {endpoint}: {cause}")
                }
                _ => cause,
            }
        }
    }
}

fn from_sdk(i: &aws_sdk_ec2::types::Instance) -> Ec2Instance {
    let primary = i.network_interfaces().iter().find(|n| {
        // Network card 0, device 0 (instances with several cards have a device 0 on each).
        n.attachment().is_some_and(|a| {
            a.device_index() == Some(0) && a.network_card_index().unwrap_or(0) == 0
        })
    });
    Ec2Instance {
        id: i.instance_id().unwrap_or_default().to_string(),
        state: i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        launch_time_ms: i
            .launch_time()
            .map(|t| t.secs() * 1000 + i64::from(t.subsec_nanos() / 1_000_000))
            .unwrap_or(0),
        groups: i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_name().map(str::to_string))
            .collect(),
        tags: i
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        private_ipv4: i.private_ip_address().and_then(|a| a.parse().ok()),
        public_ipv4: i.public_ip_address().and_then(|a| a.parse().ok()),
        ipv6: primary
            .map(|n| {
                n.ipv6_addresses()
                    .iter()
                    .filter_map(|a| a.ipv6_address()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
        az: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_string(),
        vpc: i.vpc_id().unwrap_or_default().to_string(),
        ..Ec2Instance::default()
    }
}
