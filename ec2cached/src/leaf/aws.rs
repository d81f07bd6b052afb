//! What the EC2 and S3 clients share: their timeouts, and AWS error text (SDK and credential
//! errors, and endpoints, said on one readable line).

use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::error::CredentialsError;
// The SDK's error types are one crate's (aws-smithy-runtime-api), re-exported by each service.
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use std::time::Duration;

/// The three limits of one DescribeInstances page, in seconds (docs/configuration.md, "Timeouts
/// and retries"): connect within 3 s (or `api_timeout` if shorter), each attempt within
/// `api_timeout`, the page with its retries within 3 × `api_timeout`.
pub struct Limits {
    pub connect: u64,
    pub attempt: u64,
    pub operation: u64,
}

pub fn timeouts_secs(api_timeout: u32) -> Limits {
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

/// Folds any text (an SDK error chain, a parser message, what a non-AWS endpoint answered) onto
/// one line, with every other control character escaped (`\u{1b}`): the line goes to the log,
/// the status file and terminals.
pub fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `scheme://host[:port]` of a request URI: no path, no query (it holds the request), no
/// `user:password@` (the line goes to the status file).
pub fn endpoint_of(uri: &str) -> String {
    let (scheme, rest) = uri.split_once("://").unwrap_or(("", uri));
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if scheme.is_empty() {
        host.to_string()
    } else {
        format!("{scheme}://{host}")
    }
}

/// The first error of type `T` in `e`'s source chain (e itself included).
pub fn find_source<'a, T: std::error::Error + 'static>(
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
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
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
pub fn cap(s: &str) -> String {
    if s.chars().count() > 300 {
        s.chars().take(300).collect::<String>() + "..."
    } else {
        s.to_string()
    }
}

/// Missing or unusable credentials, as an operator would want it said.
pub fn describe_credentials(c: &CredentialsError) -> String {
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
                cap(&one_line(m.code().unwrap_or("error"))),
                cap(&one_line(m.message().unwrap_or("no message")))
            ),
            None => format!("cannot load AWS credentials: {}", root_cause(other)),
        },
    }
}

/// One line for an error of `service`'s SDK client (S3, SQS), cause first, never the SDK's Debug
/// dump: "SERVICE refused: CODE: message", "SERVICE answered HTTP N", `timeout` for a timeout,
/// the credentials' trouble, "cannot reach SERVICE: cause", else the root cause. The caller
/// appends which request.
pub fn describe_service_error<E>(
    service: &str,
    e: &SdkError<E, HttpResponse>,
    timeout: String,
) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let msg = err.message().map(|m| cap(&one_line(m))).unwrap_or_default();
            match (err.code().map(|c| cap(&one_line(c))), msg.is_empty()) {
                (Some(code), false) => format!("{service} refused: {code}: {msg}"),
                (Some(code), true) => format!("{service} refused: {code}"),
                (None, _) => format!("{service} answered HTTP {}", s.raw().status().as_u16()),
            }
        }
        SdkError::TimeoutError(_) => timeout,
        other => match find_source::<CredentialsError>(other) {
            Some(c) => describe_credentials(c),
            None if matches!(other, SdkError::DispatchFailure(_)) => {
                format!("cannot reach {service}: {}", root_cause(other))
            }
            None => root_cause(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a non-AWS endpoint answers cannot put control characters into the log or the
    /// status file (issue 22, item 13).
    #[test]
    fn control_characters_are_escaped_and_lines_folded() {
        assert_eq!(
            one_line("503 Slow\r\n  Down \u{1b}[31mred\u{7}"),
            "503 Slow Down \\u{1b}[31mred\\u{7}"
        );
        assert_eq!(one_line("plain text"), "plain text");
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
}
