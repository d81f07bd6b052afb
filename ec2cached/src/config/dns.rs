//! `[dns]`: where the DNS stub listens, and whom it answers.

use super::{at, Checked};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    listen: Option<Vec<String>>,
    allow: Option<Vec<String>>,
}

/// `[dns]`, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dns {
    /// `listen`: `ADDRESS:PORT` entries, each once, none unspecified (`0.0.0.0`, `::`).
    pub listen: Vec<SocketAddr>,
    /// `allow`: the networks whose queries are answered besides loopback's (which always is).
    pub allow: Vec<Net>,
}

/// A network: an address and a prefix length (`10.0.0.0/8`; a bare address is one host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    /// The address (host bits ignored).
    pub addr: IpAddr,
    /// The prefix length, up to 32 or 128.
    pub prefix: u8,
}

impl Net {
    /// True when `ip` (an IPv4-mapped IPv6 address as its IPv4 address) is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> (u128, u8) {
            match a.to_canonical() {
                IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, width), (host, hwidth)) = (bits(self.addr), bits(ip));
        if width != hwidth {
            return false;
        }
        let keep = u32::from(self.prefix);
        let mask = if keep == 0 {
            0
        } else {
            u128::MAX << (128 - keep)
        };
        net & mask == host & mask
    }

    fn parse(text: &str) -> Result<Net, String> {
        let bad = || format!("{text:?} is not ADDRESS or ADDRESS/PREFIX (10.0.0.0/8, fd00::/8)");
        let (a, p) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        // An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 one it maps.
        if addr.is_ipv6() && addr.to_canonical().is_ipv4() {
            if prefix < 96 {
                return Err(format!(
                    "{text:?}: an IPv4-mapped network needs a prefix of 96 or more"
                ));
            }
            return Ok(Net {
                addr: addr.to_canonical(),
                prefix: prefix - 96,
            });
        }
        Ok(Net { addr, prefix })
    }
}

/// True when `ip` may query the stub: loopback always, else a network of `allow` (unbound's
/// `access-control` is the model: refuse by default what is not listed).
pub fn allowed(allow: &[Net], ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback() || allow.iter().any(|n| n.contains(ip))
}

/// `[dns]`: `listen` (at least one `ADDRESS:PORT` unless the sockets come from systemd and
/// `allow` is set), `allow`.
pub(super) fn dns(d: RawDns) -> Checked<Dns> {
    let listen = d.listen.unwrap_or_default();
    let allow_text = d.allow.unwrap_or_default();
    if listen.is_empty() && allow_text.is_empty() {
        return Err(at(
            "dns.listen",
            "lists no ADDRESS:PORT (leave [dns] out for no stub)",
        ));
    }
    let mut out = Vec::new();
    for (i, text) in listen.iter().enumerate() {
        let key = format!("dns.listen[{i}]");
        let a = parse_listen(text).map_err(|e| at(&key, e))?;
        if out.contains(&a) {
            return Err(at(&key, format!("{a} is listed twice")));
        }
        out.push(a);
    }
    let mut allow = Vec::new();
    for (i, text) in allow_text.iter().enumerate() {
        allow.push(Net::parse(text).map_err(|e| at(format!("dns.allow[{i}]"), e))?);
    }
    Ok(Dns { listen: out, allow })
}

/// `[dns] listen` entries: `ADDRESS:PORT`, never an unspecified address (a reply to a query
/// sent to 127.0.0.2 would leave from 127.0.0.1, and clients drop it).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not ADDRESS:PORT (127.0.0.153:53, [::1]:53)"))?;
    if a.port() == 0 {
        return Err(format!(
            "{text:?}: port 0 is not a port clients can be told"
        ));
    }
    if a.ip().to_canonical().is_unspecified() {
        return Err(format!(
            "{text:?}: an unspecified address would answer from another address than the one \
             asked (clients drop such answers): list each address to answer on"
        ));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_what_they_should() {
        let n = Net::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("fd00::1".parse().unwrap()));
        let one = Net::parse("192.168.1.5").unwrap();
        assert!(one.contains("192.168.1.5".parse().unwrap()));
        assert!(!one.contains("192.168.1.6".parse().unwrap()));
        let v6 = Net::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(Net::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Net::parse("10.0.0.0/33").is_err() && Net::parse("x").is_err());
        let mapped = Net::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains("10.200.0.1".parse().unwrap()));
        assert!(!mapped.contains("11.0.0.1".parse().unwrap()));
        assert!(Net::parse("::ffff:10.0.0.0/64").is_err());
        assert!(allowed(&[], "127.0.0.5".parse().unwrap()));
        assert!(allowed(&[], "::1".parse().unwrap()));
        assert!(!allowed(&[], "10.0.0.1".parse().unwrap()));
        assert!(allowed(&[n], "10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn an_unspecified_listen_address_is_refused() {
        for a in ["0.0.0.0:5354", "[::]:53", "[::ffff:0.0.0.0]:53"] {
            let e = parse_listen(a).unwrap_err();
            assert!(e.contains("unspecified address"), "{e}");
        }
        assert!(parse_listen("127.0.0.153:53").is_ok());
    }
}
