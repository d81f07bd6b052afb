//! Where fleets come from: the EC2 API (one paginated, filtered DescribeInstances sweep per
//! region) or the JSON that `aws ec2 describe-instances` prints.

use crate::config::Config;
use crate::one_line;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
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
use serde::Deserialize;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// Why a poll failed, as the `reason` label of `ec2cached_poll_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// RequestLimitExceeded, Throttling: the account's API budget is spent.
    Throttled,
    /// The API refused the credentials or the permission (UnauthorizedOperation, AuthFailure).
    Denied,
    /// No usable credentials (none found, expired, the provider failed).
    Credentials,
    /// No answer in time.
    Timeout,
    /// No connection (DNS, refused, TLS).
    Unreachable,
    /// Any other refusal by the API.
    ApiError,
    /// An answer that is not a whole, valid response.
    MalformedResponse,
    /// Nothing to poll with (no region).
    Config,
    /// `refresh --from-file`: the file cannot be read.
    Input,
    /// The snapshot could not be written, or a newer one is installed.
    Publish,
    /// Published locally, not to S3 (`[publish]`).
    S3,
}

impl Reason {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [Reason; 11] = [
        Reason::Throttled,
        Reason::Denied,
        Reason::Credentials,
        Reason::Timeout,
        Reason::Unreachable,
        Reason::ApiError,
        Reason::MalformedResponse,
        Reason::Config,
        Reason::Input,
        Reason::Publish,
        Reason::S3,
    ];

    /// The label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Throttled => "throttled",
            Reason::Denied => "denied",
            Reason::Credentials => "credentials",
            Reason::Timeout => "timeout",
            Reason::Unreachable => "unreachable",
            Reason::ApiError => "api_error",
            Reason::MalformedResponse => "malformed_response",
            Reason::Config => "config",
            Reason::Input => "input",
            Reason::Publish => "publish",
            Reason::S3 => "s3",
        }
    }
}

/// A failed poll: why in words, why as a metric label, and the requests it sent.
#[derive(Debug)]
pub struct Failed {
    /// The metric label.
    pub reason: Reason,
    /// The one-line message (the log, the status file).
    pub message: String,
    /// API requests sent before it failed.
    pub requests: u32,
}

impl Failed {
    /// A failure that sent no request.
    pub fn new(reason: Reason, message: impl Into<String>) -> Failed {
        Failed {
            reason,
            message: message.into(),
            requests: 0,
        }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Failed> for String {
    fn from(f: Failed) -> String {
        f.message
    }
}

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

/// `scheme://host[:port]` of a request URI: no path, no query (it holds the request), no
/// `user:password@` (the line goes to the status file).
pub(crate) fn endpoint_of(uri: &str) -> String {
    let (scheme, rest) = uri.split_once("://").unwrap_or(("", uri));
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if scheme.is_empty() {
        host.to_string()
    } else {
        format!("{scheme}://{host}")
    }
}

/// The three limits of one DescribeInstances page, in seconds (README, "Timeouts and retries"):
/// connect within 3 s (or `api_timeout` if shorter), each attempt within `api_timeout`, the page
/// with its retries within 3 × `api_timeout`.
struct Limits {
    connect: u64,
    attempt: u64,
    operation: u64,
}

fn timeouts_secs(api_timeout: u32) -> Limits {
    let t = u64::from(api_timeout);
    Limits {
        connect: t.min(3),
        attempt: t,
        operation: t * 3,
    }
}

/// The SDK's timeout config from `api_timeout` (default 20 s).
pub fn timeouts(api_timeout: u32) -> TimeoutConfig {
    let t = timeouts_secs(api_timeout);
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(t.connect))
        .read_timeout(Duration::from_secs(t.attempt))
        .operation_attempt_timeout(Duration::from_secs(t.attempt))
        .operation_timeout(Duration::from_secs(t.operation))
        .build()
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
}

/// One account in one region.
#[derive(Debug)]
struct Target {
    /// `account 111122223333 (prod), ` or "" without `[[account]]` (messages as before).
    account: String,
    region: String,
    /// The account's label: its names live under `label.D`.
    namespace: Option<String>,
    client: aws_sdk_ec2::Client,
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
                });
            }
        }
        Ok(Source {
            targets,
            attempts,
            bytes,
            endpoint,
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
            // Pages by hand, not with the SDK's paginator: it ends quietly when a token comes
            // back the same as the one sent, which would publish a partial fleet as a whole one.
            let mut token: Option<String> = None;
            let mut seen = std::collections::HashSet::new();
            let mut page_no = 0u32;
            loop {
                page_no += 1;
                let where_ = format!("DescribeInstances in {}{region}, page {page_no}", t.account);
                let page = req
                    .clone()
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| {
                        tracing::debug!("{where_} failed: {}", DisplayErrorContext(&e));
                        let at = self.endpoint.lock().map(|e| e.clone()).unwrap_or_default();
                        Failed {
                            reason: classify(&e),
                            message: format!(
                                "{} ({where_})",
                                describe_error(&e, &at, cfg.api_timeout)
                            ),
                            requests: self.requests(),
                        }
                    })?;
                for r in page.reservations() {
                    for i in r.instances() {
                        let mut i = from_sdk(i);
                        i.region = region.clone();
                        i.namespace = t.namespace.clone();
                        sweep.instances.push(i);
                    }
                }
                match page.next_token().filter(|t| !t.is_empty()) {
                    None => break,
                    Some(t) if !seen.insert(t.to_string()) => {
                        return Err(Failed {
                            reason: Reason::MalformedResponse,
                            message: format!(
                                "the EC2 API sent a page token it had already sent: a sweep that \
                                 ended here would miss instances, so none is published \
                                 ({where_})"
                            ),
                            requests: self.requests(),
                        });
                    }
                    Some(t) => token = Some(t.to_string()),
                }
            }
            sweep.bytes = self.bytes.load(Ordering::Relaxed);
            tracing::debug!(
                account = t.account,
                region,
                pages = page_no,
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
            match (err.code(), msg.is_empty()) {
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

/// The first error of type `T` in `e`'s source chain (e itself included).
pub(crate) fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// The innermost error of the chain, on one line and capped: "connection refused", "failed to
/// lookup address information: Name or service not known", "invalid peer certificate: ...".
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    let mut text = last.to_string();
    // "Connection refused (os error 111)" -> "connection refused".
    if let Some(io) = last.downcast_ref::<std::io::Error>() {
        if let Some(code) = io.raw_os_error() {
            text = text.replace(&format!(" (os error {code})"), "");
            if let Some(first) = text.get(..1) {
                text = first.to_lowercase() + &text[1..];
            }
        }
    }
    cap(&one_line(&text))
}

/// At most 300 characters, so that one line stays one readable line.
pub(crate) fn cap(s: &str) -> String {
    if s.chars().count() > 300 {
        s.chars().take(300).collect::<String>() + "..."
    } else {
        s.to_string()
    }
}

/// Missing or unusable credentials, as an operator would want it said.
pub(crate) fn describe_credentials(c: &CredentialsError) -> String {
    match c {
        CredentialsError::CredentialsNotLoaded(_) => {
            let mut s = String::from(
                "no AWS credentials found (tried: environment, profile, web identity, ECS, IMDS)",
            );
            // The chain's own summary says nothing more; anything else (a profile that does
            // not exist, say) is the reason.
            let why = root_cause(c);
            if !why.contains("no providers in chain provided credentials") {
                s = format!("{s}: {why}");
            }
            s
        }
        CredentialsError::ProviderTimedOut(_) => {
            "no AWS credentials: the credential provider timed out (IMDS or STS did not answer)"
                .into()
        }
        other => match find_source::<aws_smithy_types::error::ErrorMetadata>(other) {
            // An STS refusal (AssumeRole): its code and message, not its Debug form.
            Some(m) => format!(
                "cannot load AWS credentials: {}: {}",
                m.code().unwrap_or("error"),
                cap(&one_line(m.message().unwrap_or("no message")))
            ),
            None => format!("cannot load AWS credentials: {}", root_cause(other)),
        },
    }
}

fn from_sdk(i: &aws_sdk_ec2::types::Instance) -> Ec2Instance {
    let primary = i
        .network_interfaces()
        .iter()
        .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0));
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

// --- describe-instances JSON -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Doc {
    reservations: Vec<Reservation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Reservation {
    #[serde(default)]
    instances: Vec<JsonInstance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonInstance {
    instance_id: String,
    #[serde(default)]
    state: Option<JsonState>,
    #[serde(default)]
    launch_time: Option<String>,
    #[serde(default)]
    security_groups: Vec<JsonGroup>,
    #[serde(default)]
    tags: Vec<JsonTag>,
    #[serde(default)]
    private_ip_address: Option<String>,
    #[serde(default)]
    public_ip_address: Option<String>,
    #[serde(default)]
    network_interfaces: Vec<JsonInterface>,
    #[serde(default)]
    placement: Option<JsonPlacement>,
    #[serde(default)]
    vpc_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonPlacement {
    #[serde(default)]
    availability_zone: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonState {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonGroup {
    #[serde(default)]
    group_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonTag {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonInterface {
    #[serde(default)]
    attachment: Option<JsonAttachment>,
    #[serde(default)]
    ipv6_addresses: Vec<JsonIpv6>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonAttachment {
    #[serde(default)]
    device_index: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonIpv6 {
    ipv6_address: String,
}

/// ISO 8601 / RFC 3339 launch time in milliseconds. The AWS CLI prints `+00:00` offsets, which
/// the SDK's parser does not take, so an offset is applied here.
fn launch_ms(s: &str) -> Result<i64, String> {
    let bad = |_: String| format!("LaunchTime {s:?} is not an ISO 8601 date-time");
    let (base, offset_secs) = match s
        .len()
        .checked_sub(6)
        .and_then(|at| s.get(at..).map(|o| (at, o)))
    {
        Some((at, o)) if (o.starts_with('+') || o.starts_with('-')) && o.as_bytes()[3] == b':' => {
            let h: i64 = o[1..3].parse().map_err(|_| bad("bad offset".into()))?;
            let m: i64 = o[4..6].parse().map_err(|_| bad("bad offset".into()))?;
            let sign = if o.starts_with('-') { -1 } else { 1 };
            (format!("{}Z", &s[..at]), sign * (h * 3600 + m * 60))
        }
        _ => (s.to_string(), 0),
    };
    let t =
        aws_smithy_types::DateTime::from_str(&base, aws_smithy_types::date_time::Format::DateTime)
            .map_err(|e| bad(e.to_string()))?;
    Ok((t.secs() - offset_secs) * 1000 + i64::from(t.subsec_nanos() / 1_000_000))
}

/// Parses `aws ec2 describe-instances` output. Addresses that do not parse are an error: the
/// file is meant to be what the API said, and a silently dropped address would be a wrong answer.
pub fn parse_json(text: &str) -> Result<Vec<Ec2Instance>, String> {
    // An object with a "Reservations" array (serde would also take a struct from a JSON array).
    if !text.trim_start().starts_with('{') {
        return Err("not describe-instances output: not a JSON object".into());
    }
    let doc: Doc = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for r in doc.reservations {
        for i in r.instances {
            let v4 = |a: Option<String>, what: &str| -> Result<Option<Ipv4Addr>, String> {
                a.filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse()
                            .map_err(|_| format!("{}: {what} {s:?}", i.instance_id))
                    })
                    .transpose()
            };
            let primary = i
                .network_interfaces
                .iter()
                .find(|n| n.attachment.as_ref().and_then(|a| a.device_index) == Some(0));
            let mut ipv6 = Vec::new();
            for a in primary.map(|n| &n.ipv6_addresses[..]).unwrap_or(&[]) {
                let ip: Ipv6Addr = a
                    .ipv6_address
                    .parse()
                    .map_err(|_| format!("{}: Ipv6Address {:?}", i.instance_id, a.ipv6_address))?;
                ipv6.push(ip);
            }
            out.push(Ec2Instance {
                launch_time_ms: match &i.launch_time {
                    Some(t) => launch_ms(t).map_err(|e| format!("{}: {e}", i.instance_id))?,
                    None => 0,
                },
                state: i.state.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                groups: i
                    .security_groups
                    .iter()
                    .filter_map(|g| g.group_name.clone())
                    .collect(),
                tags: i
                    .tags
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect(),
                private_ipv4: v4(i.private_ip_address.clone(), "PrivateIpAddress")?,
                public_ipv4: v4(i.public_ip_address.clone(), "PublicIpAddress")?,
                ipv6,
                az: i
                    .placement
                    .and_then(|p| p.availability_zone)
                    .unwrap_or_default(),
                vpc: i.vpc_id.unwrap_or_default(),
                id: i.instance_id,
                ..Ec2Instance::default()
            });
        }
    }
    Ok(out)
}

/// The region of an availability zone: its labels up to the first all-digit one (`us-east-1a`,
/// Local Zone `us-west-2-lax-1a` and Wavelength `us-east-1-wl1-bos-wlz-1` are in `us-east-1` /
/// `us-west-2`); "" when the zone says nothing.
fn region_of_az(az: &str) -> String {
    let az = az.trim_end_matches(|c: char| c.is_ascii_lowercase());
    let parts: Vec<&str> = az.split('-').collect();
    match parts
        .iter()
        .position(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        Some(k) if k >= 2 => parts[..=k].join("-"),
        _ => String::new(),
    }
}

/// Reads a fleet from a describe-instances JSON file, keeping what the API filters would keep.
pub fn from_file(path: &Path, cfg: &Config) -> Result<Sweep, String> {
    let started = std::time::Instant::now();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut instances = parse_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    instances.retain(|i| cfg.rules.in_sweep(i));
    // The file does not say which region it came from: the configured one when there is one,
    // else the zone's (us-east-1a is in us-east-1).
    for i in &mut instances {
        i.region = match &cfg.regions[..] {
            [one] => one.clone(),
            _ => region_of_az(&i.az),
        };
    }
    Ok(Sweep {
        instances,
        requests: 0,
        bytes: text.len() as u64,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_of_an_availability_zone() {
        for (az, region) in [
            ("us-east-1a", "us-east-1"),
            ("us-gov-west-1b", "us-gov-west-1"),
            ("us-east-1-bos-1a", "us-east-1"),
            ("us-west-2-lax-1a", "us-west-2"),
            ("us-east-1-wl1-bos-wlz-1", "us-east-1"),
            ("", ""),
            ("nonsense", ""),
        ] {
            assert_eq!(region_of_az(az), region, "{az}");
        }
    }

    #[test]
    fn endpoint_is_scheme_and_host_only() {
        assert_eq!(
            endpoint_of("https://ec2.us-east-1.amazonaws.com/?Action=DescribeInstances"),
            "https://ec2.us-east-1.amazonaws.com"
        );
        assert_eq!(
            endpoint_of("http://127.0.0.1:5000"),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            endpoint_of("http://user:secret@proxy:8080/x"),
            "http://proxy:8080"
        );
    }

    #[test]
    fn io_causes_read_as_words() {
        let e = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(root_cause(&e), "connection refused");
        let e = std::io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert_eq!(root_cause(&e), "no route to host");
        assert_eq!(cap(&"x".repeat(400)).len(), 303);
    }

    #[test]
    fn parses_describe_instances_output() {
        let text = r#"{"Reservations":[{"Instances":[{
            "InstanceId":"i-0abc","State":{"Name":"running","Code":16},
            "LaunchTime":"2024-05-01T10:00:00.250Z",
            "SecurityGroups":[{"GroupName":"tphon","GroupId":"sg-1"}],
            "Tags":[{"Key":"services","Value":"redis, postgres"}],
            "PrivateIpAddress":"10.0.0.5","PublicIpAddress":"",
            "NetworkInterfaces":[
              {"Attachment":{"DeviceIndex":1},"Ipv6Addresses":[{"Ipv6Address":"2001:db8::9"}]},
              {"Attachment":{"DeviceIndex":0},"Ipv6Addresses":[{"Ipv6Address":"2001:db8::1"}]}]
        }]}]}"#;
        let v = parse_json(text).unwrap();
        assert_eq!(v.len(), 1);
        let i = &v[0];
        assert_eq!(i.id, "i-0abc");
        assert_eq!(i.launch_time_ms, 1_714_557_600_250);
        assert_eq!(
            launch_ms("2024-05-01T10:00:00+00:00"),
            Ok(1_714_557_600_000)
        );
        assert_eq!(
            launch_ms("2024-05-01T12:00:00.5+02:00"),
            Ok(1_714_557_600_500)
        );
        assert_eq!(
            launch_ms("2024-05-01T09:30:00-00:30"),
            Ok(1_714_557_600_000)
        );
        assert!(launch_ms("yesterday").is_err());
        assert_eq!(i.groups, vec!["tphon"]);
        assert_eq!(i.private_ipv4, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(i.public_ipv4, None);
        assert_eq!(i.ipv6, vec!["2001:db8::1".parse::<Ipv6Addr>().unwrap()]);
        assert!(parse_json("{\"Reservations\":[{\"Instances\":[{\"InstanceId\":\"i-1\",\"PrivateIpAddress\":\"300.1.1.1\"}]}]}").is_err());
        assert!(parse_json("[]").is_err());
        assert!(parse_json("{}").is_err());
        assert!(parse_json("{\"Reservations\":[]}").unwrap().is_empty());
    }
}
