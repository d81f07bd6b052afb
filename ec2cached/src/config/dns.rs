//! `[dns]`: where the DNS stub listens.

use super::{at, Checked};
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    listen: Vec<String>,
}

/// `[dns] listen`: at least one `ADDRESS:PORT`, each once.
pub(super) fn listen(d: RawDns) -> Checked<Vec<SocketAddr>> {
    if d.listen.is_empty() {
        return Err(at(
            "dns.listen",
            "lists no ADDRESS:PORT (leave [dns] out for no stub)",
        ));
    }
    let mut out = Vec::new();
    for (i, text) in d.listen.iter().enumerate() {
        let key = format!("dns.listen[{i}]");
        let a = parse_listen(text).map_err(|e| at(&key, e))?;
        if out.contains(&a) {
            return Err(at(&key, format!("{a} is listed twice")));
        }
        out.push(a);
    }
    Ok(out)
}

/// `[dns] listen` entries: `ADDRESS:PORT`.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not ADDRESS:PORT (127.0.0.153:53, [::1]:53)"))?;
    if a.port() == 0 {
        return Err(format!(
            "{text:?}: port 0 is not a port clients can be told"
        ));
    }
    Ok(a)
}
