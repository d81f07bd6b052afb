#!/usr/bin/env python3
"""Writes the seed corpus of the `dns_query` fuzz target into fuzz/corpus/dns_query/.

    python3 fuzz/seed_dns.py            # from anywhere; rewrites only the seed-* files

Each file is one fuzz input, as `nss_ec2_dns::testing::fuzz_one` reads it: one mode byte
(bit 0: 0 UDP, 1 TCP; bit 1: 0 the fixture snapshot is served, 1 no snapshot; bit 2: the
fixture of the two-label domain `prod.internal`, `fixture_multi_label()`), then the DNS
message in wire format (no TCP length prefix). The queries ask about the names of
`nss_ec2_dns::testing::fixture()` (domain `ec2`): every answer kind of the stub (addresses,
NODATA, NXDOMAIN, the apex, PTR, REFUSED, SERVFAIL, truncation of `big.ec2`), with and without
EDNS, the reverse zones' apexes and negative answers, CD and DO, and the malformed shapes (zero or two questions, opcode NOTIFY, QR set, class CH, a valid
and a looping compression pointer, truncated packets, a packet shorter than a header).

Standard library only: the messages are written byte by byte with `struct`. The other files
of that directory (named by their SHA-1, as libFuzzer names them) are what libFuzzer found: of
a 10-minute run's corpus, the 60 inputs that add the most coverage to the seeds (greedy over
the per-input features of `-set_cover_merge=1`), none larger than 273 bytes.
"""

import ipaddress
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "dns_query")

UDP, TCP, NO_SNAPSHOT, CORP = 0, 1, 2, 4

A, NS, SOA, PTR, MX, TXT, AAAA, OPT, AXFR, ANY = 1, 2, 6, 12, 15, 16, 28, 41, 252, 255
IN, CH = 1, 3

QR, RD = 0x8000, 0x0100
NOTIFY = 4 << 11


def header(qid, flags=RD, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", qid, flags, qd, an, ns, ar)


def name(text):
    """Uncompressed wire name; '' or '.' is the root."""
    out = b""
    for label in text.strip(".").split(".") if text.strip(".") else []:
        raw = label.encode()
        assert 0 < len(raw) < 64
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def question(qname, qtype=A, qclass=IN):
    wire = qname if isinstance(qname, bytes) else name(qname)
    return wire + struct.pack(">HH", qtype, qclass)


def opt(payload=1232, version=0, do=False, options=b""):
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\0" + struct.pack(">HHIH", OPT, payload, ttl, len(options)) + options


def query(qname, qtype=A, qclass=IN, edns=None, qid=0x1234, flags=RD):
    """One question, and an OPT record when `edns` is a dict of `opt` arguments."""
    msg = header(qid, flags, ar=1 if edns is not None else 0) + question(qname, qtype, qclass)
    if edns is not None:
        msg += opt(**edns)
    return msg


def ptr_name(addr):
    return ipaddress.ip_address(addr).reverse_pointer


SEEDS = {}


def seed(label, mode, msg):
    assert label not in SEEDS, label
    SEEDS[label] = bytes([mode]) + msg


E512, E1232, E4096 = {"payload": 512}, {"payload": 1232}, {"payload": 4096}

# Names of the fixture, each kind of answer.
seed("a-postgres", UDP, query("postgres.tphon.ec2", A))
seed("aaaa-postgres-edns1232", UDP, query("postgres.tphon.ec2", AAAA, edns=E1232))
seed("any-postgres-tcp", TCP, query("postgres.tphon.ec2", ANY))
seed("mx-postgres-nodata", UDP, query("postgres.tphon.ec2", MX))
seed("a-nth-postgres", UDP, query("1.postgres.tphon.ec2", A, edns=E4096))
seed("a-group-tphon", UDP, query("tphon.ec2", A))
seed("aaaa-group-tphon-tcp", TCP, query("tphon.ec2", AAAA))
seed("a-big-udp", UDP, query("big.ec2", A))
seed("a-big-edns512", UDP, query("big.ec2", A, edns=E512))
seed("a-big-edns4096", UDP, query("big.ec2", A, edns=E4096))
seed("a-big-tcp", TCP, query("big.ec2", A))
seed("any-big-tcp-edns", TCP, query("big.ec2", ANY, edns=E4096))
seed("a-ent-mysql", UDP, query("mysql.tphon.ec2", A))
seed("a-readonly-mysql", UDP, query("readonly.mysql.tphon.ec2", A, edns=E1232))
seed("a-i-1", UDP, query("i-1.ec2", A))
seed("aaaa-i-1-do", UDP, query("i-1.ec2", AAAA, edns={"payload": 1232, "do": True}))
seed("aaaa-i-3", UDP, query("i-3.ec2", AAAA))
seed("a-nxdomain", UDP, query("nosuch.tphon.ec2", A))
seed("a-bad-label", UDP, query(b"\x05a.b_c\x03ec2\x00", A))
# The apex.
seed("soa-apex", UDP, query("ec2", SOA))
seed("ns-apex", UDP, query("ec2", NS, edns=E1232))
seed("any-apex", UDP, query("ec2", ANY))
seed("a-apex", UDP, query("ec2", A))
seed("axfr-apex-tcp", TCP, query("ec2", AXFR))
# Reverse names.
seed("ptr-10.0.0.1", UDP, query(ptr_name("10.0.0.1"), PTR))
seed("ptr-2600--1", UDP, query(ptr_name("2600::1"), PTR, edns=E1232))
seed("ptr-2600--3-tcp", TCP, query(ptr_name("2600::3"), PTR))
seed("ptr-9.9.9.9", UDP, query(ptr_name("9.9.9.9"), PTR))
seed("ptr-10.1.0.7", UDP, query(ptr_name("10.1.0.7"), PTR))
seed("a-ptr-name", UDP, query(ptr_name("10.0.0.1"), A))
seed("ptr-partial-in-addr", UDP, query("0.10.in-addr.arpa", PTR))
# The reverse zones of the exports (issue 23): apexes of a /24 and a /64, another address and
# another type in them, a name between a /64's apex and its addresses, above every zone.
seed("soa-apex-v4-zone", UDP, query("0.0.10.in-addr.arpa", SOA))
seed("ns-apex-v4-zone-tcp", TCP, query("0.0.10.in-addr.arpa", NS))
seed("ptr-other-in-zone", UDP, query(ptr_name("10.0.0.200"), PTR))
seed("aaaa-ptr-name", UDP, query(ptr_name("10.0.0.1"), AAAA, edns=E1232))
seed("soa-apex-v6-zone", UDP, query(".".join(ptr_name("2600::1").split(".")[16:]), SOA))
seed("ptr-v6-between", UDP, query(".".join(ptr_name("2600::1").split(".")[8:]), PTR))
seed("any-ptr-v6", TCP, query(ptr_name("2600::3"), ANY))
seed("soa-above-zones", UDP, query("10.in-addr.arpa", SOA))
seed("cd-do-flags", UDP, query("i-1.ec2", A, flags=RD | 0x0010, edns={"payload": 1232, "do": True}))
# Outside the zone, and without a snapshot.
seed("a-example.com", UDP, query("example.com", A))
seed("a-postgres-nosnap", UDP | NO_SNAPSHOT, query("postgres.tphon.ec2", A))
seed("soa-apex-nosnap-tcp", TCP | NO_SNAPSHOT, query("ec2", SOA, edns=E1232))
seed("a-example.com-nosnap", UDP | NO_SNAPSHOT, query("example.com", A))
seed("ptr-10.0.0.1-nosnap", UDP | NO_SNAPSHOT, query(ptr_name("10.0.0.1"), PTR))
# Case.
seed("a-POSTGRES-upper", UDP, query("POSTGRES.TPHON.EC2", A))
seed("ptr-mixed-case-ip6", UDP, query(ptr_name("2600::1").upper(), PTR))
seed("soa-Ec2-mixed", TCP, query("Ec2", SOA))
# EDNS: version 1 (BADVERS), an option (a client cookie).
seed("a-edns-version1", UDP, query("postgres.tphon.ec2", A, edns={"payload": 1232, "version": 1}))
cookie = struct.pack(">HH", 10, 8) + b"\x01\x02\x03\x04\x05\x06\x07\x08"
seed("a-edns-cookie", UDP, query("i-1.ec2", A, edns={"payload": 4096, "options": cookie}))
# The two-label domain (the fast path's suffix and compression, against the general path).
seed("corp-a-i-1", UDP | CORP, query("i-1.prod.internal", A))
seed("corp-aaaa-web-edns", UDP | CORP, query("web.prod.internal", AAAA, edns=E1232))
seed("corp-a-ent-db", UDP | CORP, query("db.prod.internal", A))
seed("corp-a-nxdomain-upper", TCP | CORP, query("x.PROD.internal", A))
seed("corp-a-short-labels", UDP | CORP, query("a.b.c", A))
# Malformed or refused messages.
seed("zero-questions", UDP, header(0x0001, qd=0))
seed("zero-questions-edns", UDP, header(0x0002, qd=0, ar=1) + opt())
seed(
    "two-questions",
    UDP,
    header(0x0003, qd=2) + question("postgres.tphon.ec2", A) + question("i-1.ec2", AAAA),
)
seed("notify-opcode", UDP, query("ec2", SOA, flags=NOTIFY))
seed("qr-set", UDP, query("postgres.tphon.ec2", A, flags=QR | RD))
seed("class-ch", UDP, query("postgres.tphon.ec2", A, qclass=CH))
seed("class-ch-version.bind", UDP, query("version.bind", TXT, qclass=CH))
# Compression: valid pointers (the second question's name is "postgres" + a pointer to the
# first question's "tphon.ec2" at offset 12; an answer record pointing at the question's
# name), looping ones (a pointer to itself; a label then a pointer back to that label), and a
# forward pointer (to a name after the question).
seed(
    "compress-valid-2q",
    UDP,
    header(0x0004, qd=2) + question("tphon.ec2", A) + question(b"\x08postgres\xc0\x0c", A),
)
seed(
    "compress-valid-an",
    UDP,
    header(0x0005, an=1)
    + question("postgres.tphon.ec2", A)
    + b"\xc0\x0c"
    + struct.pack(">HHIH", A, IN, 30, 4)
    + bytes([10, 0, 0, 1]),
)
seed("compress-loop-self", UDP, header(0x0006) + b"\xc0\x0c" + struct.pack(">HH", A, IN))
seed("compress-loop-label", UDP, header(0x0007) + b"\x01a\xc0\x0c" + struct.pack(">HH", A, IN))
seed("compress-forward", UDP, header(0x0008) + b"\xc0\x12" + struct.pack(">HH", A, IN) + b"\x01a\0")
# Truncated packets, and one shorter than a header.
full = query("postgres.tphon.ec2", A, edns=E1232)
seed("truncated-in-name", UDP, full[:20])
seed("truncated-before-type", UDP, full[: 12 + len(name("postgres.tphon.ec2"))])
seed("truncated-in-opt", UDP, full[:-5])
seed("truncated-counts-lie", TCP, header(0x0009, qd=1, an=3, ar=2) + question("i-1.ec2", A))
seed("header-only-11-bytes", UDP, header(0x000A)[:11])
seed("header-only-12-bytes", UDP, header(0x000B, qd=0))


def main():
    os.makedirs(OUT, exist_ok=True)
    for label, data in SEEDS.items():
        with open(os.path.join(OUT, "seed-" + label), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {OUT}")


if __name__ == "__main__":
    main()
