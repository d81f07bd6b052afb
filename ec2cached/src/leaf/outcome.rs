//! Outcome labels: why a poll failed ([`Reason`], [`Failed`]) and what a follow check did
//! ([`Outcome`]), each with the label the status file and the metrics use.

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

/// What one follow check (or `install`) did; the names are the metric labels of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 304, or the same bytes as installed.
    Unchanged,
    /// A new snapshot was installed.
    Installed,
    /// Unsigned, signed by an unknown key, or a signature that does not verify.
    RefusedSignature,
    /// From an earlier sweep than the installed snapshot.
    RefusedRollback,
    /// Not a snapshot, damaged, or larger than `max_size`.
    RefusedCorrupt,
    /// For another domain.
    RefusedDomain,
    /// S3 could not be read (outage, throttling, no object, no permission).
    Error,
}

impl Outcome {
    /// Every outcome, in the order the metrics list them.
    pub const ALL: [Outcome; 7] = [
        Outcome::Unchanged,
        Outcome::Installed,
        Outcome::RefusedSignature,
        Outcome::RefusedRollback,
        Outcome::RefusedCorrupt,
        Outcome::RefusedDomain,
        Outcome::Error,
    ];

    /// The label (`unchanged`, `installed`, `refused_signature`, ...).
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Unchanged => "unchanged",
            Outcome::Installed => "installed",
            Outcome::RefusedSignature => "refused_signature",
            Outcome::RefusedRollback => "refused_rollback",
            Outcome::RefusedCorrupt => "refused_corrupt",
            Outcome::RefusedDomain => "refused_domain",
            Outcome::Error => "error",
        }
    }

    /// True for the outcomes that leave the host serving what it should.
    pub fn good(self) -> bool {
        matches!(self, Outcome::Unchanged | Outcome::Installed)
    }
}
