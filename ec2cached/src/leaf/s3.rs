//! The one S3 object of fleet mode: conditional GETs for followers, conditional PUTs for pollers.
//!
//! The client (and its credential cache and connection pool) is built once per daemon and kept.
//! Whenever an endpoint URL is configured (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`: moto, MinIO,
//! a VPC endpoint by address) requests use path-style addressing, which any endpoint serves.

use crate::leaf::aws::{cap, describe_credentials, find_source, one_line, root_cause, timeouts};
use crate::leaf::ledger::Status;
use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RequestChecksumCalculation, RuntimeComponents};
use aws_sdk_s3::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An S3 object, `s3://BUCKET/KEY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

impl S3Url {
    /// Reads `s3://BUCKET/KEY`.
    pub fn parse(text: &str) -> Result<S3Url, String> {
        let bad = || format!("{text:?} is not s3://BUCKET/KEY");
        let (bucket, key) = text
            .strip_prefix("s3://")
            .and_then(|r| r.split_once('/'))
            .ok_or_else(bad)?;
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| alnum(b) || b == b'.' || b == b'-')
            && bucket.bytes().next().is_some_and(alnum)
            && bucket.bytes().last().is_some_and(alnum)
            && !bucket.contains("..");
        if !bucket_ok || key.is_empty() || key.len() > 1024 || key.chars().any(char::is_control) {
            return Err(bad());
        }
        Ok(S3Url {
            bucket: bucket.into(),
            key: key.into(),
        })
    }
}

/// Seconds one S3 request may take before it is retried (the whole call: three times that).
const ATTEMPT_SECS: u32 = 20;

/// Counts the HTTP requests the client sends, retries included: what S3 bills.
#[derive(Debug, Default)]
struct Counter(Arc<AtomicU64>);

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "ec2cached::S3Counter"
    }

    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The published object, and what this process has sent and received for it.
#[derive(Debug)]
pub struct Object {
    client: aws_sdk_s3::Client,
    /// Where it is.
    pub url: S3Url,
    requests: Arc<AtomicU64>,
    bytes: u64,
    /// Requests and bytes already added to the status file.
    recorded: (u64, u64),
}

/// What a conditional GET found.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    /// Unchanged since the ETag given (304: no body transferred).
    Unchanged,
    /// There is no object (or no bucket).
    Missing,
    /// 403: no permission to read it, or (without `s3:ListBucket`) no such object.
    Denied(String),
    /// The object is larger than the cap; its body was not read (or not all of it).
    TooLarge {
        /// Its size, or as much of it as was read.
        size: u64,
        /// Its ETag, so that the same object is not fetched again.
        etag: String,
    },
    /// The object.
    Object {
        /// Its ETag, for the next conditional request.
        etag: String,
        /// Its bytes.
        body: Vec<u8>,
    },
}

/// The condition of a PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Only if there is no object yet (`If-None-Match: *`).
    Absent,
    /// Only if the object still has this ETag (`If-Match`).
    Etag(String),
}

/// What a conditional PUT did.
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    /// Stored; its new ETag.
    Stored(String),
    /// Someone else wrote the object first (412 or 409): read it again and decide again.
    Conflict,
}

impl Object {
    /// A client for `url` with the standard credential and region chains; `region` is used
    /// when the chain finds none; `attempts` per request (the SDK's standard retries).
    pub async fn new(url: &S3Url, region: Option<&str>, attempts: u32) -> Result<Object, String> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts(ATTEMPT_SECS))
            .retry_config(RetryConfig::standard().with_max_attempts(attempts.max(1)));
        if let Some(r) = region {
            let chain = aws_config::meta::region::RegionProviderChain::default_provider()
                .or_else(aws_sdk_s3::config::Region::new(r.to_string()));
            loader = loader.region(chain);
        }
        let base = loader.load().await;
        if base.region().is_none() {
            return Err(format!(
                "no region for {url}: set AWS_REGION (the bucket's region) or a profile region"
            ));
        }
        let path_style = base.endpoint_url().is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|v| !v.is_empty());
        let requests = Arc::new(AtomicU64::new(0));
        let conf = aws_sdk_s3::config::Builder::from(&base)
            .force_path_style(path_style)
            // The snapshot carries its own checks (length, checksum, signature); a checksum
            // trailer on every PUT is one more thing an S3-compatible store may not speak.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .interceptor(Counter(Arc::clone(&requests)))
            .build();
        Ok(Object {
            client: aws_sdk_s3::Client::from_conf(conf),
            url: url.clone(),
            requests,
            bytes: 0,
            recorded: (0, 0),
        })
    }

    /// HTTP requests sent (retries included) and body bytes received or sent since the last
    /// call: what to add to the status file's counters.
    pub fn take_counts(&mut self) -> (u64, u64) {
        let now = (self.requests.load(Ordering::Relaxed), self.bytes);
        let delta = (now.0 - self.recorded.0, now.1 - self.recorded.1);
        self.recorded = now;
        delta
    }

    /// Adds what this object sent and received since the last record to the ledger's counters.
    pub fn record(&mut self, st: &mut Status) {
        let (requests, bytes) = self.take_counts();
        st.s3_url = Some(self.url.to_string());
        st.s3_requests = st.s3_requests.saturating_add(requests);
        st.s3_bytes = st.s3_bytes.saturating_add(bytes);
    }

    /// GET, conditional on `etag` when given; refuses to read a body larger than `max` bytes.
    pub async fn get(&mut self, etag: Option<&str>, max: u64) -> Result<Got, String> {
        let out = self
            .client
            .get_object()
            .bucket(&self.url.bucket)
            .key(&self.url.key)
            .set_if_none_match(etag.map(str::to_string))
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                return match (status, e.as_service_error()) {
                    (Some(304), _) => Ok(Got::Unchanged),
                    (_, Some(s)) if s.is_no_such_key() => Ok(Got::Missing),
                    (_, Some(s)) if s.code() == Some("NoSuchBucket") => Ok(Got::Missing),
                    (Some(404), _) => Ok(Got::Missing),
                    (Some(403), _) => Ok(Got::Denied(self.describe("GET", &e))),
                    _ => Err(self.describe("GET", &e)),
                };
            }
        };
        let declared = out.content_length().and_then(|n| u64::try_from(n).ok());
        let etag = out.e_tag().unwrap_or_default().to_string();
        if let Some(size) = declared.filter(|&n| n > max) {
            return Ok(Got::TooLarge { size, etag });
        }
        let mut stream = out.body;
        // The declared length is the server's word: reserve no more than a typical snapshot.
        let mut body = Vec::with_capacity(declared.unwrap_or(0).min(16 << 20) as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                format!(
                    "reading {} failed: {}",
                    self.url,
                    root_cause(&e as &(dyn std::error::Error + 'static))
                )
            })?;
            self.bytes += chunk.len() as u64;
            if (body.len() + chunk.len()) as u64 > max {
                let size = (body.len() + chunk.len()) as u64;
                return Ok(Got::TooLarge { size, etag });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Got::Object { etag, body })
    }

    /// PUT `body` if the object is as `expect` says.
    pub async fn put(&mut self, body: Vec<u8>, expect: &Expect) -> Result<Put, String> {
        let len = body.len() as u64;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.url.bucket)
            .key(&self.url.key)
            .content_type("application/octet-stream")
            .body(ByteStream::from(body));
        req = match expect {
            Expect::Absent => req.if_none_match("*"),
            Expect::Etag(e) => req.if_match(e),
        };
        match req.send().await {
            Ok(out) => {
                self.bytes += len;
                Ok(Put::Stored(out.e_tag().unwrap_or_default().to_string()))
            }
            Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                Some(412 | 409) => Ok(Put::Conflict),
                _ => Err(self.describe("PUT", &e)),
            },
        }
    }

    /// One line for an S3 error, cause first, then which request.
    fn describe<E>(&self, op: &str, e: &SdkError<E, HttpResponse>) -> String
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
    {
        let what = match e {
            SdkError::ServiceError(s) => {
                let err = s.err();
                let status = s.raw().status().as_u16();
                let msg = err.message().map(|m| cap(&one_line(m))).unwrap_or_default();
                match (err.code(), msg.is_empty()) {
                    (Some(code), false) => format!("S3 refused: {code}: {msg}"),
                    (Some(code), true) => format!("S3 refused: {code}"),
                    (None, _) if status == 503 => "S3 refused: HTTP 503 (SlowDown)".into(),
                    (None, _) => format!("S3 answered HTTP {status}"),
                }
            }
            SdkError::TimeoutError(_) => format!(
                "timeout: no answer from S3 within {} s (with retries)",
                3 * ATTEMPT_SECS
            ),
            other => {
                if let Some(c) = find_source::<CredentialsError>(other) {
                    describe_credentials(c)
                } else {
                    match other {
                        SdkError::DispatchFailure(_) => {
                            format!("cannot reach S3: {}", root_cause(other))
                        }
                        _ => root_cause(other),
                    }
                }
            }
        };
        format!("{what} ({op} {})", self.url)
    }
}
