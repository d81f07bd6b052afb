//! `refresh --from-file`: a fleet from the JSON that `aws ec2 describe-instances` prints,
//! filtered as the API filters would filter it.

use crate::config::Config;
use crate::poller::Sweep;
use nss_ec2_snapshot::fleet::Ec2Instance;
use serde::Deserialize;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

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
    #[serde(default)]
    network_card_index: Option<i64>,
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
            let primary = i.network_interfaces.iter().find(|n| {
                // Network card 0, device 0 (instances with several cards have a device 0 on
                // each; a missing card index is card 0).
                n.attachment.as_ref().is_some_and(|a| {
                    a.device_index == Some(0) && a.network_card_index.unwrap_or(0) == 0
                })
            });
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
    fn parses_describe_instances_output() {
        let text = r#"{"Reservations":[{"Instances":[{
            "InstanceId":"i-0abc","State":{"Name":"running","Code":16},
            "LaunchTime":"2024-05-01T10:00:00.250Z",
            "SecurityGroups":[{"GroupName":"tphon","GroupId":"sg-1"}],
            "Tags":[{"Key":"services","Value":"redis, postgres"}],
            "PrivateIpAddress":"10.0.0.5","PublicIpAddress":"",
            "NetworkInterfaces":[
              {"Attachment":{"DeviceIndex":1},"Ipv6Addresses":[{"Ipv6Address":"2001:db8::9"}]},
              {"Attachment":{"DeviceIndex":0,"NetworkCardIndex":1},"Ipv6Addresses":[{"Ipv6Address":"2001:db8::7"}]},
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
