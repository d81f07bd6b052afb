//! The fast path of [`crate::respond`]: the query almost every client sends (one question, A or
//! AAAA, class IN, a name under the domain made of host-name characters, no EDNS or EDNS 0
//! without options) read and answered straight from and into bytes, with no message built in
//! between: a tenth of hickory-proto's work and one allocation (the answer).
//!
//! It gives exactly the bytes the general path gives: the same records in the same order,
//! names compressed as hickory-proto compresses them, the same cut and TC. Anything it does not
//! recognise goes to the general path (it returns `None`), so it can only be a shortcut, never a
//! second set of rules: `stub_tests::the_fast_path_answers_as_the_general_one` and the fuzz
//! target compare both on every query.

use crate::{for_each_address, Transport, Zone, EDNS_PAYLOAD, SOA_EXPIRE, TCP_MAX};
use nss_ec2_snapshot::{Family, Find};

const HEADER: usize = 12;
/// A name's labels at most (255 bytes of one-byte labels).
const MAX_LABELS: usize = 128;
/// The RNAME of every SOA ([`crate::SOA_RNAME`]) on the wire.
const RNAME_WIRE: &[u8] = b"\x06nobody\x07invalid\x00";
const NOERROR: u8 = 0;
const NXDOMAIN: u8 = 3;

/// The answer to `query`, or `None` when the general path must answer it.
pub(crate) fn respond(zone: &Zone<'_>, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let (snap, index) = zone.served?;
    let q = Question::read(query)?;
    let domain = snap.domain();
    // The name's last labels must be the domain's (a reverse name never is: its last label is
    // `arpa`, and a domain `…arpa` goes the general way), with at least one label before them.
    let dlabels = domain.split(|&c| c == b'.').count();
    q.labels.checked_sub(dlabels).filter(|&r| r > 0)?;
    if domain.ends_with(b"arpa") {
        return None;
    }
    let mut full = [0u8; 255];
    let mut len = 0;
    for (k, label) in q.label_iter().enumerate() {
        if k > 0 {
            full[len] = b'.';
            len += 1;
        }
        for &c in label {
            full[len] = c.to_ascii_lowercase();
            len += 1;
        }
    }
    // The domain part, compared without case.
    let suffix_at = len.checked_sub(domain.len() + 1)? + 1;
    if full[..len].get(suffix_at..) != Some(domain) || full[suffix_at - 1] != b'.' {
        return None;
    }
    let limit = q.limit(transport);
    let family = if q.qtype == 1 { Family::V4 } else { Family::V6 };
    let ttl = snap.header().interval_secs;
    let (rcode, found) = match snap.find(&full[..len]).ok()? {
        Find::Found(a) => (NOERROR, Some(a)),
        Find::NotFound | Find::OutOfZone if index.is_empty_non_terminal(&full[..len]) => {
            (NOERROR, None)
        }
        Find::NotFound | Find::OutOfZone => (NXDOMAIN, None),
    };
    let tail = if q.edns.is_some() { OPT_LEN } else { 0 };
    let mut out = Vec::with_capacity(limit.min(512));
    q.write_header(&mut out, rcode);
    out.extend_from_slice(q.question);
    let mut given = 0usize;
    let mut written = 0u16;
    if let Some(found) = found {
        let rtype: u16 = q.qtype;
        for_each_address(found, index, family, limit, |a| {
            given += 1;
            if out.len() + 12 + a.len() + tail > limit {
                return;
            }
            out.extend_from_slice(&[0xc0, 0x0c]);
            out.extend_from_slice(&rtype.to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(a.len() as u16).to_be_bytes());
            out.extend_from_slice(a);
            written += 1;
        })
        .ok()?;
    }
    if written == 0 && given > 0 {
        return None;
    }
    if written == 0 {
        // NXDOMAIN or NODATA: the zone's SOA in the authority section, its owner and MNAME
        // compressed as hickory-proto does (against the question's own spelling of the
        // domain, byte for byte); any other spelling goes the general way.
        // hickory-proto offers at most its first 64 labels as pointer targets: the domain's
        // must be among them.
        if q.labels - dlabels >= 64 {
            return None;
        }
        let at = HEADER + q.name_len - (domain.len() + 2);
        if query.get(at..HEADER + q.name_len - 1)? != wire_labels(domain, &mut [0u8; 256])
            || domain
                .split(|&c| c == b'.')
                .any(|l| l == b"invalid" || l == b"nobody")
        {
            return None;
        }
        let pointer = 0xc000u16 | at as u16;
        out.extend_from_slice(&pointer.to_be_bytes());
        out.extend_from_slice(&6u16.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&((2 + RNAME_WIRE.len() + 20) as u16).to_be_bytes());
        out.extend_from_slice(&pointer.to_be_bytes());
        out.extend_from_slice(RNAME_WIRE);
        out.extend_from_slice(&crate::soa_serial(snap).to_be_bytes());
        let i = i32::try_from(ttl).unwrap_or(i32::MAX) as u32;
        for v in [i, i, SOA_EXPIRE, ttl] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out[9] = 1; // NSCOUNT
    } else {
        out[6..8].copy_from_slice(&written.to_be_bytes());
        if usize::from(written) < given && transport == Transport::Udp {
            out[2] |= 0x02; // TC: the whole answer is for TCP.
        }
    }
    if let Some(dnssec_ok) = q.edns {
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        out[11] = 1; // ARCOUNT
    }
    (out.len() <= limit).then_some(out)
}

/// Our OPT record: root name, type, payload size, extended RCODE and version, flags, no data.
const OPT_LEN: usize = 11;

/// `domain` (dotted, lower case) as wire labels without the root: `\x03ec2`.
fn wire_labels<'b>(domain: &[u8], buf: &'b mut [u8; 256]) -> &'b [u8] {
    let mut n = 0;
    for l in domain.split(|&c| c == b'.') {
        if n + 1 + l.len() > buf.len() {
            return &[];
        }
        buf[n] = l.len() as u8;
        buf[n + 1..n + 1 + l.len()].copy_from_slice(l);
        n += 1 + l.len();
    }
    &buf[..n]
}

/// A query in the one shape the fast path answers.
struct Question<'q> {
    header: &'q [u8],
    /// The question section as sent: the name (no compression), type and class.
    question: &'q [u8],
    /// The name's length on the wire, its root byte included.
    name_len: usize,
    labels: usize,
    qtype: u16,
    /// With EDNS 0: whether DO was set.
    edns: Option<bool>,
    payload: u16,
}

impl<'q> Question<'q> {
    fn read(m: &'q [u8]) -> Option<Question<'q>> {
        let header = m.get(..HEADER)?;
        let count = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
        // A query (QR clear), opcode QUERY, one question, nothing else but at most an OPT.
        if header[2] & 0xf8 != 0 || count(4) != 1 || count(6) != 0 || count(8) != 0 {
            return None;
        }
        let additional = count(10);
        let mut at = HEADER;
        let mut labels = 0;
        loop {
            let len = usize::from(*m.get(at)?);
            if len == 0 {
                at += 1;
                break;
            }
            // No pointer in a question as clients send it, no extended label type.
            if len > 63 || labels == MAX_LABELS {
                return None;
            }
            let label = m.get(at + 1..at + 1 + len)?;
            if !label
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
            {
                return None;
            }
            labels += 1;
            at += 1 + len;
        }
        let name_len = at - HEADER;
        if name_len > 255 {
            return None;
        }
        let fixed = m.get(at..at + 4)?;
        let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        if !matches!(qtype, 1 | 28) || fixed[2..4] != [0, 1] {
            return None;
        }
        let question = &m[HEADER..at + 4];
        at += 4;
        let (edns, payload) = match additional {
            0 => (None, 512),
            1 => {
                // Root owner, type OPT, version 0, no options, and nothing after it.
                let opt = m.get(at..)?;
                if opt.len() != OPT_LEN
                    || opt[..3] != [0, 0, 41]
                    || opt[6] != 0
                    || opt[9..] != [0, 0]
                {
                    return None;
                }
                let payload = u16::from_be_bytes([opt[3], opt[4]]);
                (Some(opt[7] & 0x80 != 0), payload)
            }
            _ => return None,
        };
        if additional == 0 && at != m.len() {
            return None;
        }
        Some(Question {
            header,
            question,
            name_len,
            labels,
            qtype,
            edns,
            payload,
        })
    }

    /// The name's labels, as sent.
    fn label_iter(&self) -> impl Iterator<Item = &'q [u8]> {
        let mut rest = &self.question[..self.name_len - 1];
        std::iter::from_fn(move || {
            let (&len, tail) = rest.split_first()?;
            let (label, after) = tail.split_at(usize::from(len));
            rest = after;
            Some(label)
        })
    }

    /// The largest answer: 512 bytes over UDP, or the client's EDNS size within
    /// [`EDNS_PAYLOAD`]; 65 535 over TCP.
    fn limit(&self, transport: Transport) -> usize {
        match transport {
            Transport::Tcp => TCP_MAX,
            Transport::Udp if self.edns.is_some() => {
                usize::from(self.payload.clamp(512, EDNS_PAYLOAD))
            }
            Transport::Udp => 512,
        }
    }

    /// The answer's header: the query's ID, QR and AA, RD and CD copied, `rcode`, one question
    /// (the other counts are set as the records are written).
    fn write_header(&self, out: &mut Vec<u8>, rcode: u8) {
        let h = self.header;
        out.extend_from_slice(&h[..2]);
        out.push(0x80 | 0x04 | (h[2] & 0x01));
        out.push((h[3] & 0x10) | rcode);
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    }
}
