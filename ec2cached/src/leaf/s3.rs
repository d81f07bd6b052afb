//! The one S3 object of fleet mode: conditional GETs for followers, conditional PUTs for pollers.
//!
//! The client (and its credential cache and connection pool) is built once per daemon and kept.
//! Whenever an endpoint URL is configured (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`: moto, MinIO,
//! a VPC endpoint by address) requests use path-style addressing, which any endpoint serves.

use crate::leaf::aws::{describe_service_error, root_cause, timeouts};
use crate::leaf::ledger::Status;
use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
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

/// An object's requests and bytes since its last [`Object::counts`].
#[derive(Debug)]
pub struct Counts {
    url: String,
    requests: u64,
    bytes: u64,
}

impl Counts {
    /// Adds them to the ledger's counters.
    pub fn add_to(self, st: &mut Status) {
        st.s3_url = Some(self.url);
        st.s3_requests = st.s3_requests.saturating_add(self.requests);
        st.s3_bytes = st.s3_bytes.saturating_add(self.bytes);
    }
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
        Ok(Object::with_config(url, &base, path_style))
    }

    /// A client for `url` from an SDK config (path-style addressing for an endpoint that is not
    /// AWS: moto, MinIO).
    fn with_config(url: &S3Url, base: &aws_config::SdkConfig, path_style: bool) -> Object {
        let requests = Arc::new(AtomicU64::new(0));
        let conf = aws_sdk_s3::config::Builder::from(base)
            .force_path_style(path_style)
            // The snapshot carries its own checks (length, checksum, signature); a checksum
            // trailer on every PUT is one more thing an S3-compatible store may not speak.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .interceptor(Counter(Arc::clone(&requests)))
            .build();
        Object {
            client: aws_sdk_s3::Client::from_conf(conf),
            url: url.clone(),
            requests,
            bytes: 0,
            recorded: (0, 0),
        }
    }

    /// HTTP requests sent (retries included) and body bytes received or sent since the last
    /// call: what to add to the status file's counters.
    pub fn take_counts(&mut self) -> (u64, u64) {
        let now = (self.requests.load(Ordering::Relaxed), self.bytes);
        let delta = (now.0 - self.recorded.0, now.1 - self.recorded.1);
        self.recorded = now;
        delta
    }

    /// What this object sent and received since the last call, to add to the ledger later
    /// (under its lock, off the runtime: [`Counts::add_to`]).
    pub fn counts(&mut self) -> Counts {
        let (requests, bytes) = self.take_counts();
        Counts {
            url: self.url.to_string(),
            requests,
            bytes,
        }
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
            // S3's throttling answer carries no error code.
            SdkError::ServiceError(s)
                if s.err().code().is_none() && s.raw().status().as_u16() == 503 =>
            {
                "S3 refused: HTTP 503 (SlowDown)".into()
            }
            _ => describe_service_error(
                "S3",
                e,
                format!(
                    "timeout: no answer from S3 within {} s (with retries)",
                    3 * ATTEMPT_SECS
                ),
            ),
        };
        format!("{what} ({op} {})", self.url)
    }
}

#[cfg(test)]
mod tests {
    //! The requests an [`Object`] sends, read by a small HTTP server on loopback, and what it
    //! makes of the answers.
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// One request as the server read it.
    #[derive(Debug)]
    struct Seen {
        line: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// An answer: its status, extra headers and body.
    type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

    /// Serves the given answers (`status`, extra headers, body) in order, one per request, and
    /// sends each request it read; it ends when the answers run out.
    fn server(answers: Vec<Answer>) -> (String, mpsc::Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let answers = std::sync::Arc::new(std::sync::Mutex::new(answers.into_iter()));
        std::thread::spawn(move || {
            // A thread per connection: the client may open more than one.
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (answers, tx) = (answers.clone(), tx.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut out = conn;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        let mut headers = Vec::new();
                        loop {
                            let mut h = String::new();
                            reader.read_line(&mut h).unwrap();
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            let (k, v) = h.split_once(':').unwrap();
                            headers.push((k.trim().to_string(), v.trim().to_string()));
                        }
                        let len = headers
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                            .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
                        let mut body = vec![0; len];
                        reader.read_exact(&mut body).unwrap();
                        let Some((status, extra, answer)) = answers.lock().unwrap().next() else {
                            return;
                        };
                        tx.send(Seen {
                            line: line.trim_end().to_string(),
                            headers,
                            body,
                        })
                        .unwrap();
                        let mut head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n",
                            answer.len()
                        );
                        for (k, v) in extra {
                            head.push_str(&format!("{k}: {v}\r\n"));
                        }
                        head.push_str("\r\n");
                        out.write_all(head.as_bytes()).unwrap();
                        out.write_all(&answer).unwrap();
                    }
                });
            }
        });
        (format!("http://{addr}"), rx)
    }

    fn object(endpoint: &str) -> Object {
        let creds =
            aws_credential_types::Credentials::new("AKIDTEST", "secret", None, None, "test");
        let base = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            // One attempt, as a follower's: every request the server sees is one call.
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            // A request the server never answers fails the test instead of hanging it.
            .timeout_config(timeouts(5))
            .endpoint_url(endpoint)
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(creds),
            )
            .build();
        Object::with_config(
            &S3Url::parse("s3://fleet-bucket/prod/hosts.snap").unwrap(),
            &base,
            true,
        )
    }

    fn xml_error(code: &str) -> Vec<u8> {
        format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>")
            .into_bytes()
    }

    #[tokio::test]
    async fn gets_are_conditional_on_the_last_etag_and_bounded() {
        let etag = || vec![("etag", "\"e1\"".to_string())];
        let (url, seen) = server(vec![
            (200, etag(), b"snapshot".to_vec()),
            (304, etag(), Vec::new()),
            (200, etag(), vec![7; 100]),
            (404, vec![], xml_error("NoSuchKey")),
            (403, vec![], xml_error("AccessDenied")),
        ]);
        let mut o = object(&url);
        let got = o.get(None, 1 << 20).await.unwrap();
        assert_eq!(
            got,
            Got::Object {
                etag: "\"e1\"".into(),
                body: b"snapshot".to_vec()
            }
        );
        let first = seen.recv().unwrap();
        // Path style (an endpoint that is not AWS), the bucket then the key.
        assert!(
            first.line.starts_with("GET /fleet-bucket/prod/hosts.snap"),
            "{}",
            first.line
        );
        assert_eq!(first.header("if-none-match"), None);
        assert!(first
            .header("authorization")
            .is_some_and(|a| a.contains("AKIDTEST")));

        assert_eq!(
            o.get(Some("\"e1\""), 1 << 20).await.unwrap(),
            Got::Unchanged
        );
        assert_eq!(seen.recv().unwrap().header("if-none-match"), Some("\"e1\""));
        // Larger than the cap by its declared length: not read.
        assert_eq!(
            o.get(None, 50).await.unwrap(),
            Got::TooLarge {
                size: 100,
                etag: "\"e1\"".into()
            }
        );
        seen.recv().unwrap();
        assert_eq!(o.get(None, 1 << 20).await.unwrap(), Got::Missing);
        seen.recv().unwrap();
        match o.get(None, 1 << 20).await.unwrap() {
            Got::Denied(why) => assert!(
                why.contains("AccessDenied")
                    && why.contains("GET s3://fleet-bucket/prod/hosts.snap"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        // Five requests, and the bytes of the one body read whole.
        assert_eq!(o.take_counts(), (5, 8));
        assert_eq!(o.take_counts(), (0, 0));
    }

    #[tokio::test]
    async fn puts_are_conditional_and_a_lost_race_is_a_conflict() {
        let (url, seen) = server(vec![
            (200, vec![("etag", "\"e2\"".to_string())], Vec::new()),
            (412, vec![], xml_error("PreconditionFailed")),
            (409, vec![], xml_error("ConditionalRequestConflict")),
            (500, vec![], xml_error("InternalError")),
        ]);
        let mut o = object(&url);
        assert_eq!(
            o.put(b"v2".to_vec(), &Expect::Absent).await.unwrap(),
            Put::Stored("\"e2\"".into())
        );
        let put = seen.recv().unwrap();
        assert!(
            put.line.starts_with("PUT /fleet-bucket/prod/hosts.snap"),
            "{}",
            put.line
        );
        assert_eq!(put.header("if-none-match"), Some("*"));
        assert_eq!(put.header("if-match"), None);
        assert_eq!(put.header("content-type"), Some("application/octet-stream"));
        assert_eq!(put.body, b"v2");
        // No checksum trailer: the snapshot carries its own checks.
        assert_eq!(put.header("x-amz-trailer"), None);

        let expect = Expect::Etag("\"e2\"".into());
        assert_eq!(o.put(b"v3".to_vec(), &expect).await.unwrap(), Put::Conflict);
        let put = seen.recv().unwrap();
        assert_eq!(put.header("if-match"), Some("\"e2\""));
        assert_eq!(put.header("if-none-match"), None);
        assert_eq!(o.put(b"v3".to_vec(), &expect).await.unwrap(), Put::Conflict);
        seen.recv().unwrap();
        // An error is said, with the request.
        let e = o.put(b"v3".to_vec(), &expect).await.unwrap_err();
        assert!(
            e.contains("InternalError") && e.ends_with("(PUT s3://fleet-bucket/prod/hosts.snap)"),
            "{e}"
        );
    }
}
