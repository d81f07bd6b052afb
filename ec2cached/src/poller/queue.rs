//! The SQS queue of `[events]`: long polls (20 s waits, batches of 10) and deletes once what a
//! batch said is published (issue 24). aws-sdk-sqs, with the standard credential and region
//! chains and `AWS_ENDPOINT_URL` (`AWS_ENDPOINT_URL_SQS`), as EC2 and S3.

use crate::config::events::Events;
use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};

/// One message: its receipt (to delete it) and its body (an EventBridge event).
#[derive(Clone, Debug)]
pub struct Message {
    /// The receipt handle of this receipt.
    pub receipt: String,
    /// The body.
    pub body: String,
}

/// The queue's client.
#[derive(Clone, Debug)]
pub struct Queue {
    client: aws_sdk_sqs::Client,
    url: String,
}

/// The long poll's wait: SQS's longest (fewest requests: one every 20 s while all is quiet).
pub const WAIT_SECS: i32 = 20;

impl Queue {
    /// A client for the queue of `[events]`; `fallback` is the region when neither the queue
    /// URL nor the chain says one.
    pub async fn new(e: &Events, fallback: Option<&str>) -> Result<Queue, String> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(crate::leaf::aws::timeouts(
                u32::try_from(WAIT_SECS).unwrap_or(20) + 10,
            ))
            .retry_config(RetryConfig::standard().with_max_attempts(3));
        if let Some(r) = e.region.clone().or_else(|| fallback.map(str::to_string)) {
            let chain = aws_config::meta::region::RegionProviderChain::first_try(
                e.region.clone().map(aws_sdk_sqs::config::Region::new),
            )
            .or_default_provider()
            .or_else(aws_sdk_sqs::config::Region::new(r));
            loader = loader.region(chain);
        }
        let base = loader.load().await;
        if base.region().is_none() {
            return Err(format!(
                "no region for the [events] queue {}: set AWS_REGION or `regions`",
                e.queue_url
            ));
        }
        Ok(Queue {
            client: aws_sdk_sqs::Client::new(&base),
            url: e.queue_url.clone(),
        })
    }

    /// One long poll: up to 10 messages, waiting up to `wait` seconds for the first.
    pub async fn receive(&self, wait: i32) -> Result<Vec<Message>, String> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .wait_time_seconds(wait)
            .max_number_of_messages(10)
            .send()
            .await
            .map_err(|e| describe("ReceiveMessage", &self.url, &e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Message {
                    receipt: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }

    /// Deletes messages, ten a request; what fails to be deleted comes back after the queue's
    /// visibility timeout and is applied again (harmless: it reads those instances again).
    pub async fn delete(&self, done: &[Message]) -> Result<(), String> {
        for (n, chunk) in done.chunks(10).enumerate() {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(format!("m{n}-{i}"))
                        .receipt_handle(&m.receipt)
                        .build()
                        .ok()
                })
                .collect();
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| describe("DeleteMessageBatch", &self.url, &e))?;
            if let Some(f) = out.failed().first() {
                return Err(format!(
                    "SQS DeleteMessageBatch on {}: {} of {} not deleted ({})",
                    self.url,
                    out.failed().len(),
                    chunk.len(),
                    f.code()
                ));
            }
        }
        Ok(())
    }
}

/// One line for an SQS error, cause first, then which request: never the SDK's Debug dump.
fn describe<E>(op: &str, url: &str, e: &SdkError<E, HttpResponse>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let what = crate::leaf::aws::describe_service_error(
        "SQS",
        e,
        "timeout: no answer from SQS (with retries)".to_string(),
    );
    format!("{what} ({op} {url})")
}
