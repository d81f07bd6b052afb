//! The config's checks, each error as the user reads it.

use super::*;
use crate::leaf::s3::S3Url;
use nss_ec2_snapshot::fleet::Zone;

fn parse(t: &str) -> Result<Config, String> {
    Config::parse(Path::new("/etc/x.toml"), t).map_err(|e| e.to_string())
}

#[test]
fn the_spec_example_parses() {
    let c = parse(
        r#"
domain          = "ec2"
snapshot        = "/var/lib/ec2cached/hosts.snap"
interval        = 30
regions         = ["us-east-1"]
security_groups = ["tphon"]
ready_tag       = "af-status=ready"
service_tag     = "services"
address         = "private"
max_age         = 3600
"#,
    )
    .unwrap();
    assert_eq!(
        c.rules.ready_tag,
        Some(("af-status".into(), "ready".into()))
    );
    assert_eq!(c.rules.security_groups, Some(vec!["tphon".to_string()]));
    assert_eq!(c.max_age, 3600);
    assert_eq!(parse("").unwrap().rules, Rules::default());
}

#[test]
fn every_key_with_a_wrong_type_names_that_key() {
    let keys = [
        "domain",
        "snapshot",
        "interval",
        "regions",
        "security_groups",
        "ready_tag",
        "service_tag",
        "address",
        "max_age",
        "api_timeout",
    ];
    for key in keys {
        for bad in ["true", "{ a = 1 }", "1.5"] {
            let got = parse(&format!("{key} = {bad}")).unwrap_err();
            assert!(
                got.starts_with(&format!("/etc/x.toml: key `{key}`: ")),
                "{key} = {bad}: {got}"
            );
            assert!(!got.contains('\n'));
        }
    }
}

#[test]
fn dns_listen_takes_address_port_pairs_once_each() {
    let c = parse("[dns]\nlisten = [\"127.0.0.153:53\", \"[::1]:5353\"]").unwrap();
    assert_eq!(
        c.dns_listen,
        vec![
            "127.0.0.153:53".parse().unwrap(),
            "[::1]:5353".parse().unwrap()
        ]
    );
    assert!(parse("").unwrap().dns_listen.is_empty());
    for (text, want) in [
        ("listen = []", "key `dns.listen`: lists no ADDRESS:PORT"),
        (
            "listen = [\"nope\"]",
            "key `dns.listen[0]`: \"nope\" is not ADDRESS:PORT",
        ),
        (
            "listen = [\"127.0.0.1\"]",
            "key `dns.listen[0]`: \"127.0.0.1\" is not",
        ),
        (
            "listen = [\"127.0.0.1:0\"]",
            "key `dns.listen[0]`: \"127.0.0.1:0\": port 0",
        ),
        (
            "listen = [\"127.0.0.1:53\", \"127.0.0.1:53\"]",
            "key `dns.listen[1]`: 127.0.0.1:53 is listed twice",
        ),
        (
            "listen = \"127.0.0.1:53\"",
            "key `dns.listen`: invalid type",
        ),
        ("port = 53", "unknown field `port`"),
    ] {
        let got = parse(&format!("[dns]\n{text}")).unwrap_err();
        assert!(got.starts_with("/etc/x.toml: "), "{got}");
        assert!(got.contains(want), "{text}: {got}");
        assert!(!got.contains('\n'), "{got}");
    }
}

#[test]
fn max_age_is_none_or_at_least_twice_the_interval() {
    assert_eq!(parse("interval = 60\nmax_age = 120").unwrap().max_age, 120);
    assert_eq!(parse("interval = 60\nmax_age = 0").unwrap().max_age, 0);
    assert_eq!(parse("max_age = 60").unwrap().max_age, 60);
    let e = parse("interval = 60\nmax_age = 119").unwrap_err();
    assert!(
        e.starts_with(
            "/etc/x.toml: key `max_age`: must be 0 (no limit) or at least 2 × `interval` (120 s)"
        ),
        "{e}"
    );
    assert!(parse("max_age = 59").is_err());
}

const KEY: &str = "ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

#[test]
fn publish_and_follow_sections_parse() {
    let c = parse(
        "interval = 30\nmax_age = 600\n[publish]\nurl = \"s3://my-bucket/fleet/hosts.snap\"\n\
         signing_key = \"/etc/ec2cached/signing.key\"\n",
    )
    .unwrap();
    let p = c.publish.unwrap();
    assert_eq!(p.url.to_string(), "s3://my-bucket/fleet/hosts.snap");
    assert!(p.peer_keys.is_empty());
    let peers = parse(&format!(
        "[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"\npeer_keys = [\"{KEY}\"]"
    ))
    .unwrap();
    assert_eq!(peers.publish.unwrap().peer_keys.len(), 1);
    for bad in [
        "s3://-b/k",
        "s3://b..c/k",
        "s3://bc-/k",
        "s3://bcd/a\u{7}b",
        "s3://bcd/",
    ] {
        assert!(S3Url::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(p.republish_after, 150);
    // Issue 22, item 1: a fleet's max_age is bounded: 4 h unless set (so an hour between
    // uploads of an unchanged fleet, as before), never 0.
    let c = parse("[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"").unwrap();
    assert_eq!(
        (c.max_age, c.publish.unwrap().republish_after),
        (14_400, 3600)
    );
    let c =
        parse("interval = 7200\n[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"").unwrap();
    assert_eq!(c.max_age, 28_800);
    let e =
        parse("max_age = 0\n[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"").unwrap_err();
    assert!(
        e.contains("key `max_age`: must not be 0 with [publish]"),
        "{e}"
    );
    assert_eq!(
        parse("interval = 30").unwrap().max_age,
        0,
        "without [publish], unbounded as before"
    );
    let f = parse(&format!(
        "interval = 10\n[follow]\nurl = \"s3://b-1/k\"\ntrusted_keys = [\"{KEY}\"]\n"
    ))
    .unwrap()
    .follow
    .unwrap();
    assert_eq!(f.trusted_keys.len(), 1);
    assert_eq!(f.max_size, DEFAULT_MAX_SIZE);
    // The fleet identity defaults to the url, on both sides (issue 22, item 4).
    assert_eq!(f.fleet, "s3://b-1/k");
    assert_eq!(f.max_age, None);
    let p = parse("[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"")
        .unwrap()
        .publish
        .unwrap();
    assert_eq!(p.fleet, "s3://b-1/k");
    let p = parse("[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"\nfleet = \"prod\"")
        .unwrap()
        .publish
        .unwrap();
    assert_eq!(p.fleet, "prod");
    // No url: `install` checks signatures, nothing is followed; the fleet is then named.
    let f = parse(&format!(
        "[follow]\ntrusted_keys = [\"{KEY}\"]\nfleet = \"prod\"\nmax_age = 600"
    ))
    .unwrap()
    .follow
    .unwrap();
    assert!(f.url.is_none());
    assert_eq!((f.fleet.as_str(), f.max_age), ("prod", Some(600)));
}

#[test]
fn fleet_mistakes_name_the_key() {
    let follow = format!("[follow]\nurl = \"s3://b-1/k\"\ntrusted_keys = [\"{KEY}\"]\n");
    for key in [
        "regions = [\"us-east-1\"]",
        "max_age = 3600",
        "security_groups = [\"a\"]",
        "ready_tag = \"a=b\"",
        "service_tag = \"s\"",
        "address = \"public\"",
        "api_timeout = 5",
    ] {
        let got = parse(&format!("{key}\n{follow}")).unwrap_err();
        let name = key.split(' ').next().unwrap();
        assert!(
            got.starts_with(&format!(
                "/etc/x.toml: key `{name}`: not allowed with [follow]"
            )),
            "{got}"
        );
    }
    let got = parse(&format!(
        "{follow}[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\""
    ))
    .unwrap_err();
    assert!(
        got.contains("key `publish`: not allowed with [follow]"),
        "{got}"
    );
    let cases = [
        (
            "[follow]\nurl = \"s3://b-1/k\"".to_string(),
            "key `follow.trusted_keys`: must list",
        ),
        (
            "[follow]\nurl = \"http://b/k\"\ntrusted_keys = []".into(),
            "key `follow.url`: \"http://b/k\" is not s3://BUCKET/KEY",
        ),
        (
            "[follow]\ntrusted_keys = [\"ed25519:00\"]".into(),
            "key `follow.trusted_keys[0]`: ",
        ),
        (
            format!("[follow]\ntrusted_keys = [\"{KEY}\"]\nmax_size = 10"),
            "key `follow.max_size`: must be 4096 bytes to 1 GiB",
        ),
        (
            "[follow]\nurl = \"s3://b-1/k\"\ncolour = 1".into(),
            "key `follow.colour`: unknown field",
        ),
        (
            format!("[follow]\ntrusted_keys = [\"{KEY}\"]"),
            "key `follow.fleet`: must name the fleet with trusted_keys and no url",
        ),
        (
            "[follow]\nfleet = \"prod\"".into(),
            "key `follow.fleet`: needs trusted_keys",
        ),
        (
            format!("[follow]\nurl = \"s3://b-1/k\"\ntrusted_keys = [\"{KEY}\"]\nfleet = \"a b\""),
            "key `follow.fleet`: must be printable ASCII without spaces",
        ),
        (
            format!("[follow]\nurl = \"s3://b-1/k\"\ntrusted_keys = [\"{KEY}\"]\nmax_age = 0"),
            "key `follow.max_age`: must be at least 120 s (4 × interval, and a minute)",
        ),
        (
            "[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"\nfleet = \"\"".into(),
            "key `publish.fleet`: must be 1 to 255 characters",
        ),
        (
            "[publish]\nurl = \"s3://b-1/hosts snap\"\nsigning_key = \"/k\"".into(),
            "key `publish.url`: is the default fleet identity, which must be printable ASCII \
             without spaces: set `fleet`",
        ),
        (
            "max_age = 604801\n[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"".into(),
            "key `max_age`: must be at most 604800 s (7 days) with [publish]",
        ),
        (
            "interval = 60\nmax_age = 200\n[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"".into(),
            "key `max_age`: must be at least 4 × `interval` (240 s) with [publish]",
        ),
        (
            "interval = 60\nmax_age = 600\n[publish]\nurl = \"s3://b-1/k\"\nsigning_key = \"/k\"\nrepublish_after = 300".into(),
            "key `publish.republish_after`: must be at least `interval` (60 s) and at most max_age / 4 (150 s)",
        ),
    ];
    for (text, want) in cases {
        let got = parse(&text).unwrap_err();
        assert!(got.contains(want), "{text:?}: {got}");
        assert!(!got.contains('\n'), "{got}");
    }
}

#[test]
fn errors_name_file_and_key_on_one_line() {
    let cases = [
        (
            "interval = \"x\"",
            "/etc/x.toml: key `interval`: invalid type",
        ),
        ("interval = 0", "/etc/x.toml: key `interval`: must be"),
        (
            "regions = [1]",
            "/etc/x.toml: key `regions[0]`: invalid type",
        ),
        (
            "address = \"both\"",
            "/etc/x.toml: key `address`: unknown variant",
        ),
        (
            "ready_tag = \"ready\"",
            "/etc/x.toml: key `ready_tag`: \"ready\" is not KEY=VALUE",
        ),
        (
            "domain = \"Bad_Domain\"",
            "/etc/x.toml: key `domain`: label",
        ),
        (
            "colour = 1",
            "/etc/x.toml: key `colour`: unknown field `colour`",
        ),
        ("interval = ", "/etc/x.toml: "),
        ("max_age = -1", "/etc/x.toml: key `max_age`: invalid value"),
        (
            "interval = 60\nmax_age = 59",
            "/etc/x.toml: key `max_age`: must be 0 (no limit) or at least 2 × `interval` (120 s)",
        ),
        ("max_age = 59", "/etc/x.toml: key `max_age`: must be 0"),
    ];
    for (text, want) in cases {
        let got = parse(text).unwrap_err();
        assert!(got.starts_with(want), "{text:?}: {got}");
        assert!(!got.contains('\n'), "{got}");
    }
}

#[test]
fn zones_names_and_accounts_that_would_clash_are_refused() {
    let arn = |id: &str, role: &str| format!("arn:aws:iam::{id}:role/{role}");
    for (text, key, what) in [
        (
            "[[zone]]\nkey = \"az\"\nunder = \"az\"\n[[zone]]\nkey = \"az\"\nunder = \"az\"".to_string(),
            "zone[1].key",
            "listed twice",
        ),
        (
            "[[zone]]\nkey = \"tag:rack\"\nunder = \"web\"\n[[name]]\nname = \"web\"\nmatch = [\"tag:role=web\"]".into(),
            "name[0].name",
            "`under` label",
        ),
        (
            "[[name]]\nname = \"prod\"\nmatch = [\"tag:env\"]\n[[account]]\nlabel = \"prod\"".into(),
            "name[0].name",
            "account label",
        ),
        (
            "[[name]]\nname = \"a\"\nmatch = [\"tag:x\"]\n[[name]]\nname = \"a\"\nmatch = [\"tag:y\"]".into(),
            "name[1].name",
            "listed twice",
        ),
        (
            "[[name]]\nname = \"a\"\nmatch = [\"asg=\"]".into(),
            "name[0].match[0]",
            "empty value",
        ),
        (
            format!("[[account]]\nrole_arn = {:?}", arn("abc", "r")),
            "account[0].role_arn",
            "12 digits",
        ),
        (
            format!("[[account]]\nrole_arn = {:?}", arn("111122223333", "")),
            "account[0].role_arn",
            "not a role ARN",
        ),
        (
            format!(
                "regions = [\"us-east-1\"]\n[[account]]\nrole_arn = {:?}\n[[account]]\nrole_arn = {:?}",
                arn("111122223333", "a"),
                arn("111122223333", "b")
            ),
            "account[1].role_arn",
            "listed twice",
        ),
    ] {
        let e = parse(&text).unwrap_err();
        assert!(
            e.contains(&format!("key `{key}`")) && e.contains(what),
            "{text}\n=> {e}"
        );
    }
    // The spec's own example: a [[name]] web.prod next to an account labelled prod.
    let ok = parse(&format!(
        "regions = [\"us-east-1\"]\n[[name]]\nname = \"web.prod\"\nmatch = [\"tag:role=web\"]\n\
         [[account]]\nlabel = \"prod\"\nrole_arn = {:?}",
        arn("111122223333", "r")
    ))
    .unwrap();
    assert_eq!(ok.rules.account_labels, ["prod"]);
    assert_eq!(ok.rules.zones, [Zone::default_zone()]);
}

/// Configs that parsed before and surprised at run time (issue 22, item 17): each refused, the
/// entry and key named.
#[test]
fn configs_that_would_surprise_are_refused_with_the_key() {
    let refused = |text: &str, key: &str, what: &str| {
        let e = parse(text).unwrap_err();
        assert!(e.starts_with(&format!("/etc/x.toml: key `{key}`: ")), "{e}");
        assert!(e.contains(what), "{e}");
    };
    refused("security_groups = []", "security_groups", "lists no group");
    refused(
        "[[name]]\nname = \"pg.tphon.ec2\"\nmatch = [\"tag:role=pg\"]",
        "name[0].name",
        "ends in the domain \"ec2\"",
    );
    refused(
        "domain = \"corp\"\n[[name]]\nname = \"corp\"\nmatch = [\"tag:role=pg\"]",
        "name[0].name",
        "ends in the domain",
    );
    refused(
        "regions = [\"us-east-1\", \"eu-west-1\", \"us-east-1\"]",
        "regions[2]",
        "\"us-east-1\" is listed twice",
    );
    refused(
        "[[account]]\nregions = [\"us-east-1\", \"us-east-1\"]",
        "account[0].regions[1]",
        "listed twice",
    );
    let arn = "arn:aws:iam::111122223333:role/r";
    refused(
        &format!("[[account]]\nrole_arn = \"{arn}\"\nexternal_id = \"x\""),
        "account[0].external_id",
        "is 1 characters: STS takes 2 to 1224",
    );
    refused(
        &format!(
            "[[account]]\nrole_arn = \"{arn}\"\nexternal_id = \"{}\"",
            "x".repeat(1225)
        ),
        "account[0].external_id",
        "STS takes 2 to 1224",
    );
    refused(
        "[[zone]]\nkey = \"asg\"\nunder = \"g\"\n[[zone]]\nkey = \"tag:aws:autoscaling:groupName\"\nunder = \"g\"",
        "zone[1].key",
        "listed twice",
    );
    // Their good neighbours still parse.
    for ok in [
        "security_groups = [\"tphon\"]",
        "[[name]]\nname = \"pg.tphon\"\nmatch = [\"tag:role=pg\"]",
        "[[name]]\nname = \"ec2x.tphon\"\nmatch = [\"tag:role=pg\"]",
        "regions = [\"us-east-1\", \"eu-west-1\"]",
        &format!("[[account]]\nrole_arn = \"{arn}\"\nexternal_id = \"xy\""),
        "[[zone]]\nkey = \"asg\"\nunder = \"g\"\n[[zone]]\nkey = \"tag:aws:autoscaling:groupName\"\nunder = \"h\"",
    ] {
        assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok));
    }
}
