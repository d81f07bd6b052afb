//! EC2's own change events, as EventBridge delivers them to an SQS queue (`[events]`): which
//! instances an event names, so that the poller reads only those again (issue 24).
//!
//! Three kinds are understood, with their envelopes and `detail` as AWS documents them:
//!
//! * `EC2 Instance State-change Notification` (source `aws.ec2`): `detail.instance-id`;
//! * `Tag Change on Resource` (source `aws.tag`, `detail.service` `ec2`, `detail.resource-type`
//!   `instance`): the instance ids in `resources` (ARNs `arn:aws:ec2:REGION:ACCOUNT:instance/ID`);
//! * `AWS API Call via CloudTrail` (source `aws.ec2`, a trail needed) for `CreateTags` and
//!   `DeleteTags` (`requestParameters.resourcesSet.items[].resourceId`, instances and network
//!   interfaces), `ModifyInstanceAttribute` (`requestParameters.instanceId`: security groups) and
//!   `ModifyNetworkInterfaceAttribute` (`requestParameters.networkInterfaceId`).
//!
//! Anything else is ignored with a reason (counted and logged once by the caller): not JSON, not
//! an EventBridge envelope, another kind, another service, an API call that names no instance
//! or interface. Pure: no I/O, so the tests read the envelopes AWS documents.

use serde_json::Value;

/// The kinds of event understood (the metrics' `kind` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `EC2 Instance State-change Notification`.
    StateChange,
    /// `Tag Change on Resource`.
    TagChange,
    /// `AWS API Call via CloudTrail`.
    ApiCall,
}

impl Kind {
    /// The metrics' label.
    pub fn label(self) -> &'static str {
        match self {
            Kind::StateChange => "state_change",
            Kind::TagChange => "tag_change",
            Kind::ApiCall => "api_call",
        }
    }
}

/// What an event says changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Which kind.
    pub kind: Kind,
    /// The account it happened in (`account` of the envelope).
    pub account: String,
    /// The region (`region` of the envelope).
    pub region: String,
    /// When it happened (`time`, unix seconds), if the envelope says.
    pub time: Option<u64>,
    /// Instance ids to read again.
    pub instances: Vec<String>,
    /// Network interface ids whose instances to read again.
    pub interfaces: Vec<String>,
}

/// Why an event was not used (the metrics' `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ignored {
    /// Not JSON, or not an EventBridge envelope (no `detail-type`, `account`, `region`).
    Malformed,
    /// A kind of event not understood here.
    Unknown,
    /// Understood, but about nothing this poller publishes (another resource type, an API call
    /// on a volume or a security group).
    NoInstance,
}

impl Ignored {
    /// The metrics' label.
    pub fn label(self) -> &'static str {
        match self {
            Ignored::Malformed => "malformed",
            Ignored::Unknown => "unknown",
            Ignored::NoInstance => "no_instance",
        }
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// An instance id (`i-` and hex) or network interface id (`eni-` and hex), as EC2 writes them.
fn id_of(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|h| (8..=32).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// RFC 3339 UTC (`2024-01-02T03:04:05Z`) as unix seconds.
fn unix(s: &str) -> Option<u64> {
    use aws_smithy_types::date_time::{DateTime, Format};
    u64::try_from(DateTime::from_str(s, Format::DateTime).ok()?.secs()).ok()
}

/// Reads one SQS message body: an EventBridge event.
pub fn parse(body: &str) -> Result<Change, Ignored> {
    let v: Value = serde_json::from_str(body).map_err(|_| Ignored::Malformed)?;
    let detail = v.get("detail").ok_or(Ignored::Malformed)?;
    // The envelope's account; else the account of the resource it is about (an ARN's fifth
    // field) or, for an API call, the account that received it.
    let account = text(&v, "account").map(str::to_string).or_else(|| {
        v.get("resources")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(Value::as_str)
            .and_then(|arn| arn.split(':').nth(4))
            .filter(|a| !a.is_empty())
            .or_else(|| text(detail, "recipientAccountId"))
            .map(str::to_string)
    });
    let (Some(kind), Some(account), Some(region)) =
        (text(&v, "detail-type"), account, text(&v, "region"))
    else {
        return Err(Ignored::Malformed);
    };
    let source = text(&v, "source").unwrap_or_default();
    let (kind, instances, interfaces) = match (kind, source) {
        ("EC2 Instance State-change Notification", "aws.ec2") => {
            let id = text(detail, "instance-id").ok_or(Ignored::Malformed)?;
            (Kind::StateChange, vec![id.to_string()], vec![])
        }
        ("Tag Change on Resource", "aws.tag") => {
            if text(detail, "service") != Some("ec2")
                || text(detail, "resource-type") != Some("instance")
            {
                return Err(Ignored::NoInstance);
            }
            let ids = v
                .get("resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(|arn| arn.rsplit_once(":instance/").map(|(_, id)| id.to_string()))
                .collect();
            (Kind::TagChange, ids, vec![])
        }
        ("AWS API Call via CloudTrail", "aws.ec2") => {
            let params = detail.get("requestParameters").ok_or(Ignored::NoInstance)?;
            let (mut instances, mut interfaces) = (Vec::new(), Vec::new());
            match text(detail, "eventName") {
                Some("CreateTags" | "DeleteTags") => {
                    let items = params
                        .get("resourcesSet")
                        .and_then(|r| r.get("items"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten();
                    for id in items.filter_map(|i| text(i, "resourceId")) {
                        if id.starts_with("i-") {
                            instances.push(id.to_string());
                        } else if id.starts_with("eni-") {
                            interfaces.push(id.to_string());
                        }
                    }
                }
                Some("ModifyInstanceAttribute") => {
                    instances.extend(text(params, "instanceId").map(str::to_string));
                }
                Some("ModifyNetworkInterfaceAttribute") => {
                    interfaces.extend(text(params, "networkInterfaceId").map(str::to_string));
                }
                _ => return Err(Ignored::Unknown),
            }
            (Kind::ApiCall, instances, interfaces)
        }
        _ => return Err(Ignored::Unknown),
    };
    // Ids are sent to the API: only what EC2 ids look like.
    let instances: Vec<String> = instances.into_iter().filter(|i| id_of(i, "i-")).collect();
    let interfaces: Vec<String> = interfaces
        .into_iter()
        .filter(|i| id_of(i, "eni-"))
        .collect();
    if instances.is_empty() && interfaces.is_empty() {
        return Err(Ignored::NoInstance);
    }
    Ok(Change {
        kind,
        account,
        region: region.to_string(),
        time: text(&v, "time").and_then(unix),
        instances,
        interfaces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of AWS's documentation ("Amazon EC2 events", "Tag Change on Resource",
    /// "AWS API Call via CloudTrail"), ids made valid.
    const STATE: &str = r#"{"version":"0","id":"7bf73129-1428-4cd3-a780-95db273d1602","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","account":"123456789012","time":"2021-11-11T21:29:54Z","region":"us-east-1","resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],"detail":{"instance-id":"i-abcd1111","state":"pending"}}"#;
    const TAG: &str = r#"{"version":"0","id":"bddcf1d6-0251-35a1-aab0-adc1fb47c11c","detail-type":"Tag Change on Resource","source":"aws.tag","account":"123456789012","time":"2018-09-18T20:41:38Z","region":"us-east-1","resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-0000000aaaaaaaaaa"],"detail":{"changed-tag-keys":["a","b"],"service":"ec2","resource-type":"instance","version":3,"tags":{"a":"1"}}}"#;
    const CREATE_TAGS: &str = r#"{"version":"0","id":"6f87d04b-9f74-4f04-a780-7acf4b0a9b38","detail-type":"AWS API Call via CloudTrail","source":"aws.ec2","account":"123456789012","time":"2024-02-01T10:00:00Z","region":"eu-west-1","resources":[],"detail":{"eventVersion":"1.08","eventSource":"ec2.amazonaws.com","eventName":"CreateTags","awsRegion":"eu-west-1","requestParameters":{"resourcesSet":{"items":[{"resourceId":"i-0123456789abcdef0"},{"resourceId":"sg-0123456789abcdef0"},{"resourceId":"eni-0123456789abcdef0"}]},"tagSet":{"items":[{"key":"services","value":"postgres"}]}}}}"#;

    #[test]
    fn the_documented_envelopes_name_their_instances() {
        let c = parse(STATE).unwrap();
        assert_eq!(
            (c.kind, c.account.as_str(), c.region.as_str(), c.time),
            (
                Kind::StateChange,
                "123456789012",
                "us-east-1",
                Some(1_636_666_194)
            )
        );
        assert_eq!(c.instances, ["i-abcd1111"]);
        let c = parse(TAG).unwrap();
        assert_eq!(
            (c.kind, c.instances.as_slice()),
            (Kind::TagChange, &["i-0000000aaaaaaaaaa".to_string()][..])
        );
        let c = parse(CREATE_TAGS).unwrap();
        assert_eq!(c.kind, Kind::ApiCall);
        assert_eq!(c.instances, ["i-0123456789abcdef0"]);
        assert_eq!(c.interfaces, ["eni-0123456789abcdef0"]);
        assert_eq!(c.region, "eu-west-1");
        let modify = CREATE_TAGS
            .replace("CreateTags", "ModifyNetworkInterfaceAttribute")
            .replace(
                r#""resourcesSet""#,
                r#""networkInterfaceId":"eni-0aaaaaaaaaaaaaaaa","x""#,
            );
        assert_eq!(
            parse(&modify).unwrap().interfaces,
            ["eni-0aaaaaaaaaaaaaaaa"]
        );
    }

    #[test]
    fn everything_else_is_ignored_with_a_reason() {
        assert_eq!(parse("not json"), Err(Ignored::Malformed));
        assert_eq!(parse("{}"), Err(Ignored::Malformed));
        assert_eq!(
            parse(r#"{"detail-type":"x","account":"1","region":"r"}"#),
            Err(Ignored::Malformed)
        );
        assert_eq!(
            parse(&STATE.replace(
                "EC2 Instance State-change Notification",
                "EC2 Spot Instance Interruption Warning"
            )),
            Err(Ignored::Unknown)
        );
        assert_eq!(
            parse(&TAG.replace(
                r#""resource-type":"instance""#,
                r#""resource-type":"volume""#
            )),
            Err(Ignored::NoInstance)
        );
        assert_eq!(
            parse(&CREATE_TAGS.replace("CreateTags", "RunInstances")),
            Err(Ignored::Unknown)
        );
        // Only EC2 ids are passed on to the API.
        assert_eq!(
            parse(&STATE.replace("i-abcd1111", "i-x; DROP")),
            Err(Ignored::NoInstance)
        );
    }
}
