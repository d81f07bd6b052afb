"""Issue 13: the `.ec2` names over DNS: the stub inside `ec2cached run` (`[dns] listen`, or
sockets passed by systemd socket activation) and `ec2cached export`.

What a user sees: dig and kdig against the stub (every row of the contract's answer table),
static Go and musl programs resolving through a resolv.conf that names the stub, named-checkzone
on the exported zones, and unbound and dnsmasq serving the exports. Raw packets from Python
only for what no client sends (garbage, responses, several questions).

Most tests share one fleet on moto and one daemon (module fixture `served`): group tphon with two
postgres (one with IPv6), a replica that is only `readonly.postgres` and `readonly.mysql`
(so `mysql.tphon.ec2` is an empty non-terminal) and an instance without services; group big with
40 instances with IPv6 (more than 512 bytes of A records, more than 1232 of A + AAAA). Each
daemon, unbound and dnsmasq listens on a loopback address of its own (dnshelp.stub_address: a
block per pytest-xdist worker).
"""

import fcntl
import ipaddress
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from conftest import EC2CACHED, REGION, Host, free_port as free_tcp_port
from dnshelp import (
    Proc, ask, ask_x, build_clients, ec2cached_run, free_port, header, parse, query,
    rcode_of, recv_exact, resolve_with, stub_address, tcp, udp, wait_for,
)
from ec2fleet import Fleet
from fleethelp import generation, write_config

INTERVAL = 3600
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
TOOLS = ["dig", "kdig"]


def moto_ec2(moto_url):
    """A boto3 client on a freshly reset moto (the `ec2` fixture, for a module's fleet)."""
    urllib.request.urlopen(urllib.request.Request(moto_url + "/moto-api/reset", method="POST"))
    return boto3.client("ec2", endpoint_url=moto_url, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def dead_endpoint():
    """An EC2 endpoint nothing listens on: a daemon there polls and fails, never publishes."""
    return f"http://127.0.0.1:{free_tcp_port()}"


def stub_config(host, addr, more=(), **top):
    """A config for HOST: its snapshot, moto's region, interval 3600 (TOP overrides) and
    `[dns] listen` on ADDR:53 and MORE (no [dns] without ADDR)."""
    top = {"snapshot": str(host.snapshot), "regions": [REGION], "interval": INTERVAL, **top}
    write_config(host.config, top, {"dns": {"listen": [f"{addr}:53", *more]} if addr else None})


def soa_text(gen, ttl=INTERVAL, mname="ec2."):
    """The SOA's data: MNAME the zone's own name (RFC 6303; issue 23, item 11)."""
    return f"{mname} nobody.invalid. {gen} {ttl} {ttl} 604800 {ttl}"


class Served:
    """The module's fleet, snapshot and stub."""

    def __init__(self, fleet, host, addr, daemon, ids):
        self.fleet, self.host, self.addr, self.daemon = fleet, host, addr, daemon
        self.__dict__.update(ids)
        everyone = [self.p1, self.p2, self.replica, self.bare, *self.big]
        desc = fleet.describe(everyone)
        self.v4 = {i: desc[i]["PrivateIpAddress"] for i in everyone}
        self.v6 = {}
        for i in everyone:
            nic = [n for n in desc[i]["NetworkInterfaces"] if n["Attachment"]["DeviceIndex"] == 0][0]
            self.v6[i] = [a["Ipv6Address"] for a in nic.get("Ipv6Addresses", [])]
        key = lambda i: (desc[i]["LaunchTime"], i)  # noqa: E731 (the contract's order)
        self.postgres = sorted([self.p1, self.p2], key=key)
        self.tphon = sorted([self.p1, self.p2, self.replica, self.bare], key=key)
        self.big = sorted(self.big, key=key)

    def a(self, ids):
        return [self.v4[i] for i in ids]

    def aaaa(self, ids):
        return [a for i in ids for a in self.v6[i]]

    def generation(self):
        return generation(self.host.snapshot.read_bytes())

    def export(self, *args, **kw):
        return self.host.ec2cached("export", *args, **kw)


@pytest.fixture(scope="module")
def served(moto_url, tmp_path_factory):
    fleet = Fleet(moto_ec2(moto_url))
    ids = dict(
        p1=fleet.launch(tags={"services": "postgres"}, ipv6=True)[0],
        p2=fleet.launch(tags={"services": "postgres"})[0],
        replica=fleet.launch(tags={"services": "readonly.postgres, readonly.mysql"})[0],
        bare=fleet.launch()[0],
        big=fleet.launch(groups=["big"], count=40, ipv6=True),
    )
    host = Host(tmp_path_factory.mktemp("dns-served"), moto_url)
    addr = stub_address()
    stub_config(host, addr)
    daemon = ec2cached_run(host.config, host.dir / "ec2cached.log", host.env())
    try:
        # The stub starts before the first poll: SERVFAIL until that poll has published.
        ok = wait_for(lambda: rcode_of(addr, 53, "tphon.ec2", timeout=0.2) == NOERROR or not daemon.alive(), 60)
        assert ok and daemon.alive(), daemon.log()
        yield Served(fleet, host, addr, daemon, ids)
    finally:
        daemon.stop()


@pytest.fixture(params=TOOLS)
def tool(request):
    return request.param


def authoritative_answer(a):
    assert {"qr", "aa"} <= a.flags and "ra" not in a.flags and "tc" not in a.flags, a


def soa_only(a, s, owner="ec2."):
    """No answer, the SOA of D (serial = the snapshot's generation) in the authority section."""
    assert a.answers == [], a
    assert a.authority == [(owner, INTERVAL, "IN", "SOA", soa_text(s.generation()))], a


# 1. Answers: every row of the contract's table, through dig and kdig.

def test_the_daemon_says_where_it_answers(served):
    assert f"dns: answering for ec2 on udp {served.addr}:53, tcp {served.addr}:53" in served.daemon.log()
    assert "activated=false" in served.daemon.log()


def test_a_records_are_authoritative_with_the_interval_as_ttl_and_no_recursion(served, tool):
    s = served
    for name, ids in [
        ("postgres.tphon.ec2", s.postgres),
        ("tphon.ec2", s.tphon),
        ("2.postgres.tphon.ec2", s.postgres[1:2]),
        ("3.tphon.ec2", s.tphon[2:3]),
        ("readonly.postgres.tphon.ec2", [s.replica]),
        ("1.readonly.mysql.tphon.ec2", [s.replica]),
        (f"{s.bare}.ec2", [s.bare]),
    ]:
        a = ask(tool, s.addr, name, "A")
        assert a.status == "NOERROR", a
        authoritative_answer(a)
        assert "rd" in a.flags, "RD is copied from the query"
        assert a.answers == [(name + ".", INTERVAL, "IN", "A", ip) for ip in s.a(ids)], a
        assert a.authority == [], a
    # The module answers the same addresses.
    code, addrs, _ = s.host.ahosts("postgres.tphon.ec2", "ahostsv4")
    assert (code, sorted(addrs)) == (0, sorted(s.a(s.postgres)))
    # RD clear in the query: clear in the answer.
    a = ask(tool, s.addr, "postgres.tphon.ec2", "A", "+norec")
    assert a.status == "NOERROR" and "rd" not in a.flags and "aa" in a.flags and "ra" not in a.flags, a


def test_aaaa_records(served, tool):
    s = served
    assert s.v6[s.p1] and not s.v6[s.p2]
    for name, want in [("postgres.tphon.ec2", s.v6[s.p1]), (f"{s.p1}.ec2", s.v6[s.p1]),
                       ("big.ec2", s.aaaa(s.big))]:
        a = ask(tool, s.addr, name, "AAAA", "+tcp")
        assert a.status == "NOERROR", a
        authoritative_answer(a)
        assert a.answers == [(name + ".", INTERVAL, "IN", "AAAA", ip) for ip in want], a


def test_a_name_without_that_type_is_nodata_with_the_soa(served, tool):
    s = served
    for name, rtype in [(f"{s.p2}.ec2", "AAAA"), ("readonly.postgres.tphon.ec2", "AAAA"),
                        ("postgres.tphon.ec2", "MX"), ("postgres.tphon.ec2", "TXT"),
                        (f"{s.p1}.ec2", "PTR")]:
        a = ask(tool, s.addr, name, rtype)
        assert a.status == "NOERROR", a
        authoritative_answer(a)
        soa_only(a, s)


def test_an_empty_non_terminal_is_nodata(served, tool):
    s = served
    # Only readonly.mysql.tphon.ec2 exists below mysql.tphon.ec2.
    assert ask(tool, s.addr, "readonly.mysql.tphon.ec2", "A").rdata("A") == [s.v4[s.replica]]
    assert s.host.hosts("mysql.tphon.ec2")[0] == 2, "not a name of the snapshot"
    for rtype in ("A", "AAAA"):
        a = ask(tool, s.addr, "mysql.tphon.ec2", rtype)
        assert a.status == "NOERROR", a
        authoritative_answer(a)
        soa_only(a, s)
    assert ask(tool, s.addr, "other.mysql.tphon.ec2", "A").status == "NXDOMAIN"


def test_an_unknown_name_under_the_domain_is_nxdomain_with_the_soa(served, tool):
    s = served
    # `postgres\\.tphon.ec2`: one label "postgres.tphon" under ec2, not postgres.tphon.ec2.
    for name in ["nosuch.tphon.ec2", "3.postgres.tphon.ec2", "41.big.ec2", "nosuch.ec2",
                 "i-0123456789abcdef0.ec2", "a.b.c.postgres.tphon.ec2", "under_score.tphon.ec2",
                 "postgres\\.tphon.ec2"]:
        for rtype in ("A", "AAAA"):
            a = ask(tool, s.addr, name, rtype)
            assert a.status == "NXDOMAIN", a
            assert {"qr", "aa"} <= a.flags and "ra" not in a.flags, a
            soa_only(a, s)


def test_the_apex_has_soa_and_ns(served, tool):
    s = served
    gen = s.generation()
    a = ask(tool, s.addr, "ec2", "SOA")
    assert a.status == "NOERROR", a
    authoritative_answer(a)
    assert a.answers == [("ec2.", INTERVAL, "IN", "SOA", soa_text(gen))], a
    a = ask(tool, s.addr, "ec2", "NS")
    authoritative_answer(a)
    # The zone's own name (RFC 6303), which has no address: a priming resolver goes nowhere.
    assert a.answers == [("ec2.", INTERVAL, "IN", "NS", "ec2.")], a
    # ANY: one RRset (RFC 8482), the SOA.
    a = ask(tool, s.addr, "ec2", "ANY", "+tcp")
    authoritative_answer(a)
    assert a.answers == [("ec2.", INTERVAL, "IN", "SOA", soa_text(gen))], a
    for rtype in ("A", "AAAA", "MX"):
        a = ask(tool, s.addr, "ec2", rtype)
        assert a.status == "NOERROR", a
        authoritative_answer(a)
        soa_only(a, s)


def test_the_soa_serial_is_the_generation_of_the_served_snapshot(served):
    s = served
    gen = s.generation()
    # The generation is the time of the sweep, as `status` shows it.
    assert abs(gen - time.time()) < 600
    status = s.host.ec2cached("status", check=False).stdout
    utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(gen))
    assert re.search(rf"^generated:\s+{utc} ", status, re.M), status
    serial = int(ask("dig", s.addr, "ec2", "SOA").rdata("SOA")[0].split()[2])
    assert serial == gen
    zone = s.export("--format", "zone").stdout
    assert re.search(rf"\bSOA\s+ec2\. nobody\.invalid\. \( {gen} ", zone), zone


def module_names(host, address):
    """The names the module gives an address (gethostbyaddr): canonical first, then aliases."""
    code, lines, err = host.getent("hosts", address)
    assert code == 0 and len(lines) == 1, (code, lines, err)
    return lines[0].split()[1:]


def test_ptr_gives_the_instance_name_first_then_its_numbered_names(served, tool):
    s = served
    for inst, address in [(s.p1, s.v4[s.p1]), (s.p1, s.v6[s.p1][0]), (s.replica, s.v4[s.replica]),
                          (s.big[39], s.v6[s.big[39]][0])]:
        names = module_names(s.host, address)
        assert names[0] == f"{inst}.ec2" and len(names) >= 2, names
        a = ask_x(tool, s.addr, address)
        assert a.status == "NOERROR", a
        authoritative_answer(a)
        rev = ipaddress.ip_address(address).reverse_pointer + "."
        assert a.answers == [(rev, INTERVAL, "IN", "PTR", n + ".") for n in names], a
    # The replica's numbered names.
    assert {"1.readonly.postgres.tphon.ec2", "1.readonly.mysql.tphon.ec2"} <= set(
        module_names(s.host, s.v4[s.replica]))
    # Another type at an instance's reverse name: NOERROR, nothing, the /24 zone's SOA.
    rev = ipaddress.ip_address(s.v4[s.p1]).reverse_pointer
    zone = rev.split(".", 1)[1] + "."
    for rtype in ("TXT", "A"):
        a = ask(tool, s.addr, rev, rtype)
        assert a.status == "NOERROR" and "aa" in a.flags and a.answers == [], a
        assert [(r[0], r[3]) for r in a.authority] == [(zone, "SOA")], a


def refused(a):
    assert a.status == "REFUSED", a
    assert "aa" not in a.flags and "ra" not in a.flags, a
    assert a.answers == [] and a.authority == [], a


def test_reverse_names_outside_the_exports_zones_are_refused(served, tool):
    """Reverse names in no zone of the exports (an IPv4 /24 or IPv6 /64 holding an instance
    address) are not ours: REFUSED. Inside one, another address is NXDOMAIN with the zone's
    SOA (issue 23, item 6)."""
    s = served
    others = ["10.99.0.1", "127.0.0.1", "2001:db8::1"]
    assert not set(others) & set(s.v4.values())
    for address in others:
        refused(ask_x(tool, s.addr, address))
    for partial in ["20.10.in-addr.arpa", "10.in-addr.arpa", "in-addr.arpa",
                    ipaddress.ip_address(s.v6[s.p1][0]).reverse_pointer.split(".", 18)[18]]:
        refused(ask(tool, s.addr, partial, "PTR"))
    zone = ipaddress.ip_address(s.v4[s.p1]).reverse_pointer.split(".", 1)[1]
    stranger = next(f"{k}.{zone}" for k in range(254, 0, -1)
                    if ipaddress.ip_address(".".join(reversed(f"{k}.{zone}".split(".")[:4])))
                    not in {ipaddress.ip_address(v) for v in s.v4.values()})
    for name in (stranger, f"01.{zone}", f"_dns-sd._udp.{zone}"):
        a = ask(tool, s.addr, name, "PTR")
        assert a.status == "NXDOMAIN" and "aa" in a.flags, a
        assert [(r[0], r[3]) for r in a.authority] == [(zone + ".", "SOA")], a


def test_names_outside_the_domain_are_refused_and_never_recursed(served, tool):
    s = served
    for name, rtype in [("example.com", "A"), ("com", "NS"), (".", "NS"), ("ec2.example.com", "A"),
                        ("notec2", "A"), ("localhost", "A")]:
        a = ask(tool, s.addr, name, rtype)  # RD set: a recursive query
        refused(a)
        assert "rd" in a.flags, a
    # Class other than IN.
    refused(ask(tool, s.addr, "postgres.tphon.ec2", "A", cls="CH"))
    refused(ask(tool, s.addr, "version.bind", "TXT", cls="CH"))


def test_zone_transfers_are_refused(served):
    s = served
    for rtype in ("AXFR", "IXFR"):
        (r,) = tcp(s.addr, 53, [query("ec2", rtype, qid=0x1234)])
        h = header(r)
        assert (h["id"], h["qr"], h["rcode"], h["aa"], h["an"]) == (0x1234, 1, REFUSED, 0, 0), h
    r = subprocess.run(["dig", f"@{s.addr}", "+time=3", "+tries=1", "ec2", "AXFR"],
                       capture_output=True, text=True, timeout=20)
    assert "Transfer failed" in r.stdout and "SOA" not in r.stdout.split("<<>>")[-1], r.stdout


def test_the_case_of_the_query_is_echoed(served):
    # dig sends the name as typed (kdig lowercases it before sending: not usable here).
    s, tool = served, "dig"
    a = ask(tool, s.addr, "Postgres.TPHON.ec2", "A")
    assert a.status == "NOERROR", a
    assert a.question[0][0] == "Postgres.TPHON.ec2.", a
    assert a.answers == [("Postgres.TPHON.ec2.", INTERVAL, "IN", "A", ip) for ip in s.a(s.postgres)], a
    rev = ipaddress.ip_address(s.v6[s.p1][0]).reverse_pointer
    a = ask(tool, s.addr, rev.upper(), "PTR")
    assert a.status == "NOERROR" and a.answers and all(r[0] == rev.upper() + "." for r in a.answers), a
    a = ask(tool, s.addr, "NoSuch.TPHON.EC2", "A")
    assert a.status == "NXDOMAIN" and a.question[0][0] == "NoSuch.TPHON.EC2.", a
    # The same from raw packets, to the byte.
    m = parse(udp(s.addr, 53, query("pOSTGRES.tphon.EC2", "AAAA")))
    assert m["questions"] == [("pOSTGRES.tphon.EC2.", 28, 1)], m
    assert [r[:2] + r[3:] for r in m["answers"]] == [("pOSTGRES.tphon.EC2.", 28, a) for a in s.v6[s.p1]], m


def test_the_apex_echoes_the_case_of_the_query(served):
    # As every other answer does (the NS answer at the apex too).
    s = served
    a = ask("dig", s.addr, "Ec2", "NS")
    assert a.answers == [("Ec2.", INTERVAL, "IN", "NS", "ec2.")], a
    a = ask("dig", s.addr, "Ec2", "SOA")
    assert a.status == "NOERROR" and a.question[0][0] == "Ec2.", a
    assert a.answers == [("Ec2.", INTERVAL, "IN", "SOA", soa_text(s.generation()))], a


# 2. Sizes: 512 bytes without EDNS, the EDNS size up to 1232, TCP whole.

def truncated(a, limit):
    assert a.status == "NOERROR" and "tc" in a.flags and not a.tcp, a
    assert a.size <= limit, a
    return len(a.answers)


def test_a_udp_answer_without_edns_is_truncated_to_512_bytes(served, tool):
    s = served
    a = ask(tool, s.addr, "big.ec2", "A", "+ignore", "+noedns", "+notcp")
    n = truncated(a, 512)
    # The first records that fit, in order: ~30 of 40 (16 bytes each).
    assert 20 < n < 40, a
    assert a.rdata("A") == s.a(s.big)[:n], a
    assert a.edns is None, a
    # Without +ignore, the client retries over TCP and gets every address.
    a = ask(tool, s.addr, "big.ec2", "A", "+noedns")
    assert a.tcp and "tc" not in a.flags and a.rdata("A") == s.a(s.big), a


def test_the_edns_size_is_honoured_up_to_1232(served, tool):
    s = served
    # 40 A records fit in 1232 bytes: no truncation.
    a = ask(tool, s.addr, "big.ec2", "A", "+ignore", "+notcp", "+bufsize=1232")
    assert a.status == "NOERROR" and "tc" not in a.flags and not a.tcp, a
    assert a.rdata("A") == s.a(s.big) and 512 < a.size <= 1232, a
    assert a.edns == (0, 1232), a
    # A 4096-byte offer is answered with the stub's 1232 (40 AAAA, 28 bytes each, fit; what
    # does not fit 1232 is truncated: test_dns_hardening.py, 100 000 addresses).
    a = ask(tool, s.addr, "big.ec2", "AAAA", "+ignore", "+notcp", "+bufsize=4096")
    assert "tc" not in a.flags and 1000 < a.size <= 1232 and a.edns == (0, 1232), a
    n1232 = len(a.answers)
    # 600 bytes: more than 512 allows, fewer than 1232.
    no_edns = truncated(ask(tool, s.addr, "big.ec2", "AAAA", "+ignore", "+notcp", "+noedns"), 512)
    a = ask(tool, s.addr, "big.ec2", "AAAA", "+ignore", "+notcp", "+bufsize=600")
    n600 = truncated(a, 600)
    assert a.size > 512 and no_edns < n600 < 40, (no_edns, a)
    assert a.rdata("AAAA") == s.aaaa(s.big)[:n600], a
    assert n600 < n1232
    # Below 512: clamped up to 512 (the OPT record takes its 11 bytes).
    a = ask(tool, s.addr, "big.ec2", "AAAA", "+ignore", "+notcp", "+bufsize=100")
    assert truncated(a, 512) in (no_edns, no_edns - 1), a
    assert a.size > 400, a


def test_tcp_gives_the_whole_answer(served, tool):
    s = served
    a = ask(tool, s.addr, "big.ec2", "AAAA", "+tcp")
    assert a.status == "NOERROR" and a.tcp and "tc" not in a.flags and a.size > 1000, a
    authoritative_answer(a)
    assert a.rdata("AAAA") == s.aaaa(s.big), a
    assert len(a.answers) == 40, a


def test_several_queries_on_one_tcp_connection(served):
    s = served
    answers = tcp(s.addr, 53, [query("big.ec2", "A", qid=1), query("postgres.tphon.ec2", "AAAA", qid=2),
                               query("nosuch.ec2", qid=3), query("example.com", qid=4)])
    got = [parse(r) for r in answers]
    assert [(m["id"], m["rcode"]) for m in got] == [(1, NOERROR), (2, NOERROR), (3, NXDOMAIN), (4, REFUSED)]
    assert [r[3] for r in got[0]["answers"]] == s.a(s.big)
    assert [r[3] for r in got[1]["answers"]] == s.v6[s.p1]


def exchange(conn, packet):
    """PACKET on the open TCP connection CONN: the answer, or None when the server closed it."""
    try:
        conn.sendall(struct.pack(">H", len(packet)) + packet)
        n = conn.recv(2)
        if len(n) < 2:
            return None
        return recv_exact(conn, struct.unpack(">H", n)[0])
    except ConnectionError:
        return None


def test_at_most_64_tcp_connections_at_once(served):
    """64 connections at once, 8 per client address: a 9th from one address takes the place of
    its longest idle one (issue 23, item 4: the whole rule is in test_dns_hardening.py)."""
    s = served
    q = query("postgres.tphon.ec2", qid=64)

    def answered_connection(src):
        # Connections of earlier tests may take a moment to be counted out: retry briefly.
        end = time.monotonic() + 3
        while True:
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(3)
            c.bind((src, 0))
            c.connect((s.addr, 53))
            if exchange(c, q):
                return c
            c.close()
            if time.monotonic() > end:
                return None
            time.sleep(0.05)

    conns = []
    try:
        for k in range(64):
            conns.append(answered_connection(f"127.0.8.{k // 8 + 1}"))
            assert conns[-1], f"connection {len(conns)} was not served"
        # The held ones are served.
        assert exchange(conns[0], q) and exchange(conns[63], q)
        # A 9th from one client address takes the place of that client's longest idle one.
        extra = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        extra.settimeout(3)
        extra.bind(("127.0.8.1", 0))
        extra.connect((s.addr, 53))
        assert exchange(extra, q)
        # (conns[0] was just used: conns[1] had waited longest of that client's.)
        assert exchange(conns[1], q) is None
        conns.pop(1).close()
        extra.close()
        # One of them goes away: room for another.
        conns.pop().close()
        c = answered_connection("127.0.8.8")
        assert c
        c.close()
    finally:
        for c in conns:
            c.close()


def test_a_client_trickling_a_query_is_closed_within_3_s(served):
    """A query must arrive whole within 3 s of its first byte: a slow client cannot hold one of
    the 64 connection slots for long (each byte resetting a read timeout would let it)."""
    s = served
    q = query("postgres.tphon.ec2", qid=7)
    framed = struct.pack(">H", len(q)) + q
    with socket.create_connection((s.addr, 53), timeout=10) as c:
        start = time.monotonic()
        closed = None
        for b in framed:
            try:
                c.sendall(bytes([b]))
            except OSError:
                closed = time.monotonic() - start
                break
            c.settimeout(1.0)
            try:
                if c.recv(1) == b"":
                    closed = time.monotonic() - start
                    break
            except socket.timeout:
                pass
            if time.monotonic() - start > 8:
                break
    assert closed is not None and 2.5 < closed < 6, closed
    # A prompt client is served as before.
    assert parse(tcp(s.addr, 53, [q])[0])["rcode"] == NOERROR


# 3. Protocol errors.

def test_edns_version_1_is_badvers(served, tool):
    s = served
    opts = ["+edns=1", "+noednsnegotiation"] if tool == "dig" else ["+edns=1"]
    a = ask(tool, s.addr, "postgres.tphon.ec2", "A", *opts)
    assert a.status == "BADVERS", a
    assert a.edns and a.edns[0] == 0 and a.answers == [], a
    # Raw: rcode 16 is 0 in the header and 1 in the OPT's extended rcode; the OPT says version 0.
    r = udp(s.addr, 53, query("postgres.tphon.ec2", edns=(1, 1232)))
    m = parse(r)
    assert m["rcode"] == 0 and m["an"] == 0 and len(m["additional"]) == 1, m
    opt = m["additional"][0]
    assert opt[1] == 41 and (opt[2] >> 24, (opt[2] >> 16) & 0xFF) == (1, 0), opt


def test_an_opcode_other_than_query_is_notimp(served):
    s = served
    a = ask("dig", s.addr, "postgres.tphon.ec2", "A", "+opcode=status")
    assert a.status == "NOTIMP" and a.opcode == "STATUS" and a.answers == [], a
    for opcode in range(1, 16):
        h = header(udp(s.addr, 53, query("postgres.tphon.ec2", qid=77, flags=0x0100 | opcode << 11)))
        assert (h["id"], h["qr"], h["opcode"], h["rcode"], h["an"]) == (77, 1, opcode, NOTIMP, 0), h


def test_garbage_gets_no_answer(served):
    """What cannot be parsed as a query is never answered: a FORMERR to a spoofed packet could
    start an endless exchange between two UDP services (issue 23, item 4)."""
    s = served
    for garbage in [
        b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",  # one question, no bytes of it
        b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xff" * 30,  # label length 255
        b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03ec2",  # name without its end
        b"\xbe\xef\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff",
    ]:
        assert udp(s.addr, 53, garbage) is None, garbage
    assert udp(s.addr, 53, query("postgres.tphon.ec2")) is not None


def test_zero_or_two_questions_are_formerr(served):
    s = served
    for qs in ([], [("postgres.tphon.ec2", "A"), ("tphon.ec2", "A")]):
        r = udp(s.addr, 53, query(None, questions=qs, qid=99))
        m = parse(r)
        assert (m["id"], m["qr"], m["rcode"], m["an"]) == (99, 1, FORMERR, 0), m


def test_short_packets_and_responses_get_no_answer(served):
    s = served
    ok = query("postgres.tphon.ec2", qid=5)
    response = bytes([ok[0], ok[1], ok[2] | 0x80]) + ok[3:]
    for packet in [b"", ok[:11], b"\x00" * 11, response, udp(s.addr, 53, ok)]:
        assert udp(s.addr, 53, packet, timeout=0.5) is None, packet
    # Over TCP, a response closes the connection.
    assert tcp(s.addr, 53, [response]) == [None]
    # Still answering.
    assert header(udp(s.addr, 53, ok))["rcode"] == NOERROR


# 4. The static Go and musl programs: no NSS, only DNS through /etc/resolv.conf.

@pytest.fixture(scope="session")
def clients():
    return build_clients()


@pytest.mark.parametrize("kind", ["go", "musl"])
def test_static_go_and_musl_programs_resolve_through_the_stub(served, clients, tmp_path, kind):
    s = served
    prog = clients[kind]
    r = subprocess.run(["readelf", "-d", str(prog)], capture_output=True, text=True, timeout=30)
    assert "There is no dynamic section in this file." in r.stdout, r.stdout
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {s.addr}\noptions timeout:1 attempts:2\n")
    # The stub's answer: A and AAAA, as dig sees it.
    want = ask("dig", s.addr, "postgres.tphon.ec2", "A").rdata("A") + \
        ask("dig", s.addr, "postgres.tphon.ec2", "AAAA").rdata("AAAA")
    assert sorted(want) == sorted(s.a(s.postgres) + s.v6[s.p1])
    t = time.monotonic()
    code, out, err = resolve_with(prog, resolv, "postgres.tphon.ec2")
    assert (code, sorted(out), err) == (0, sorted(want), ""), (out, err)
    # Well within the first try's timeout: the stub answered both queries.
    assert time.monotonic() - t < 1.0
    # A name with addresses of one family only (AAAA is NODATA).
    code, out, err = resolve_with(prog, resolv, f"{s.p2}.ec2")
    assert (code, out, err) == (0, [s.v4[s.p2]], ""), (out, err)
    code, out, err = resolve_with(prog, resolv, "big.ec2")
    every = s.a(s.big) + s.aaaa(s.big)
    if kind == "go":
        # Go retries a truncated answer over TCP.
        assert code == 0 and sorted(out) == sorted(every), (out, err)
    else:
        # musl 1.2.3 takes what fits in 512 bytes (TCP fallback came in 1.2.4).
        assert code == 0 and out and set(out) < set(every) and len(set(out)) == len(out), (out, err)
    # An unknown name fails, with the program's usual message.
    code, out, err = resolve_with(prog, resolv, "nosuch.tphon.ec2.")
    assert code == 2 and out == [], (out, err)
    assert ("no such host" if kind == "go" else "Name does not resolve") in err, err


# 5. `ec2cached export`.

def records(zone_text):
    """(owner, type, rdata) of a zone file's record lines (owner relative, as written)."""
    out = []
    for line in zone_text.splitlines():
        if line and not line.startswith((";", "$", "@")):
            owner, cls, rtype, rdata = line.split("\t")
            assert cls == "IN", line
            out.append((owner, rtype, rdata))
    return out


def checkzone(origin, path):
    r = subprocess.run(["named-checkzone", origin, str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("OK"), r.stdout + r.stderr
    return r.stdout


def test_the_zone_export_passes_named_checkzone_and_says_what_the_stub_says(served, tmp_path):
    s = served
    out = tmp_path / "ec2.zone"
    s.export("--format", "zone", "--output", str(out))
    text = out.read_text()
    gen = s.generation()
    assert f"$ORIGIN ec2.\n$TTL {INTERVAL}\n" in text, text
    # MNAME: the zone's own name; NS: a name without address (named refuses an in-zone NS
    # without one), never localhost. (issue 23).
    assert f"@\tIN\tSOA\tec2. nobody.invalid. ( {gen} {INTERVAL} {INTERVAL} 604800 {INTERVAL} )\n" \
           f"@\tIN\tNS\tns.invalid.\n" in text, text
    assert f"serial {gen}" in checkzone("ec2", out)
    recs = records(text)
    assert ("postgres.tphon", "A", s.v4[s.postgres[0]]) in recs
    assert ("mysql.tphon", "A", s.v4[s.replica]) not in recs
    # Every name of the zone answers the same from the stub (one TCP connection, raw queries).
    names = {}
    for owner, rtype, rdata in recs:
        names.setdefault((owner + ".ec2.", rtype), []).append(rdata)
    assert len({n for n, _ in names}) > 90, "4 + 40 instances, their groups and services"
    keys = sorted(names)
    got = tcp(s.addr, 53, [query(n, t) for n, t in keys])
    for (n, t), r in zip(keys, got):
        m = parse(r)
        assert m["rcode"] == NOERROR and [a[3] for a in m["answers"]] == names[(n, t)], (n, t, m)
    # Of every instance, both families.
    for i in [s.p1, s.p2, s.replica, s.bare, *s.big]:
        assert names[(f"{i}.ec2.", "A")] == [s.v4[i]]
        assert names.get((f"{i}.ec2.", "AAAA"), []) == s.v6[i]


def test_the_reverse_zone_export_writes_one_zone_per_24_and_64(served, tmp_path):
    s = served
    d = tmp_path / "rev"
    d.mkdir()
    r = s.export("--format", "reverse-zone", "--output", str(d))
    listed = [line.split(" ") for line in r.stdout.splitlines()]
    # One zone per /24 and per /64 holding an instance address, in address order (issue 23).
    ids = [s.p1, s.p2, s.replica, s.bare, *s.big]
    nets = sorted({ipaddress.ip_network(f"{s.v4[i]}/24", strict=False) for i in ids}) + \
        sorted({ipaddress.ip_network(f"{a}/64", strict=False) for i in ids for a in s.v6[i]})
    origins = [".".join(n.network_address.reverse_pointer.split(".")[1 if n.version == 4 else 16:]) + "."
               for n in nets]
    assert [o for o, _ in listed] == origins, r.stdout
    assert sorted(os.listdir(d)) == sorted(f"{o}zone" for o, _ in listed)
    ptrs = {}
    for origin, path in listed:
        assert path == str(d / f"{origin}zone")
        checkzone(origin, path)
        text = open(path).read()
        assert f"$ORIGIN {origin}\n" in text and f"( {s.generation()} " in text, text
        for owner, rtype, rdata in records(text):
            assert rtype == "PTR", owner
            ptrs.setdefault(f"{owner}.{origin}", []).append(rdata)
    # Every instance address, with the names the stub (and the module) give it, in order.
    addresses = [a for i in [s.p1, s.p2, s.replica, s.bare, *s.big] for a in [s.v4[i], *s.v6[i]]]
    assert len(ptrs) == len(addresses) == 4 + 1 + 80
    for a in [s.v4[s.p1], s.v6[s.p1][0], s.v4[s.replica], s.v4[s.big[7]]]:
        stub = [r[4] for r in ask_x("dig", s.addr, a).answers]
        assert ptrs[ipaddress.ip_address(a).reverse_pointer + "."] == stub == \
            [n + "." for n in module_names(s.host, a)]


def test_a_reverse_zone_without_instances_now_is_removed_and_nothing_else(served, tmp_path):
    s = served
    d = tmp_path / "rev"
    d.mkdir()
    header = s.export("--format", "reverse-zone", "--output", str(d)).stdout
    zone = Path(header.splitlines()[0].split(" ")[1]).read_text()
    # As an earlier export would have left it: a /24 with no instance now, and files not ours.
    origin = header.splitlines()[0].split(" ")[0]
    (d / "0.16.172.in-addr.arpa.zone").write_text(zone.replace(f"$ORIGIN {origin}", "$ORIGIN 0.16.172.in-addr.arpa."))
    (d / "192.in-addr.arpa.zone").write_text("; written by hand\n")
    (d / "notes.txt").write_text(zone)
    r = s.export("--format", "reverse-zone", "--output", str(d))
    assert not (d / "0.16.172.in-addr.arpa.zone").exists()
    assert f"removed {d / '0.16.172.in-addr.arpa.zone'}" in r.stderr, r.stderr
    assert (d / "192.in-addr.arpa.zone").exists() and (d / "notes.txt").exists()
    assert sorted(os.listdir(d)) == sorted(["192.in-addr.arpa.zone", "notes.txt"]
                                           + [f"{line.split(' ')[0]}zone" for line in r.stdout.splitlines()])


def test_export_to_stdout_equals_the_output_file_which_is_replaced_atomically(served, tmp_path):
    s = served
    for fmt in ("hosts", "zone", "dnsmasq", "unbound"):
        out = tmp_path / f"ec2.{fmt}"
        stdout = s.export("--format", fmt).stdout
        assert stdout and s.export("--format", fmt, "--output", str(out)).stdout == ""
        assert out.read_text() == stdout
        first = os.stat(out)
        # Again, under a umask that would make a plain new file 0600: a new inode, mode 0644.
        r = subprocess.run([EC2CACHED, "--config", str(s.host.config), "export", "--format", fmt,
                            "--output", str(out)], env=s.host.env(), capture_output=True, text=True,
                           timeout=60, preexec_fn=lambda: os.umask(0o077))
        assert r.returncode == 0, r.stderr
        second = os.stat(out)
        assert second.st_ino != first.st_ino
        assert stat.S_IMODE(first.st_mode) == stat.S_IMODE(second.st_mode) == 0o644
        assert out.read_text() == stdout
    # No temp file left beside them.
    assert sorted(os.listdir(tmp_path)) == ["ec2.dnsmasq", "ec2.hosts", "ec2.unbound", "ec2.zone"]


def test_the_hosts_export_lists_instances_first(served):
    s = served
    lines = [l for l in s.export("--format", "hosts").stdout.splitlines() if not l.startswith("#")]
    n = len(s.v4) + sum(len(v) for v in s.v6.values())
    per_instance = [l.split("\t") for l in lines[:n]]
    # Every instance address: `ADDR<TAB>I.D numbered...`, the names the module gives it.
    for addr, names in per_instance:
        assert names.split(" ")[0].startswith("i-"), (addr, names)
    line = dict((a, n) for a, n in per_instance)
    assert line[s.v4[s.p1]].split(" ") == module_names(s.host, s.v4[s.p1])
    assert line[s.v6[s.p1][0]].split(" ") == module_names(s.host, s.v6[s.p1][0])
    assert len(line) == n
    rest = [l.split("\t") for l in lines[n:]]
    assert all(" " not in n and not n.startswith("i-") for _, n in rest), rest
    assert [a for a, n in rest if n == "postgres.tphon.ec2"] == s.a(s.postgres) + s.v6[s.p1]


def one_line_error(r, code=1):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1 and lines[0].startswith("ec2cached: "), r.stderr
    assert r.stdout == "", r.stdout
    return lines[0]


def test_export_errors(served, host, tmp_path):
    # No snapshot.
    stub_config(host, None)
    for fmt in ("zone", "hosts", "reverse-zone"):
        args = ["--output", str(tmp_path)] if fmt == "reverse-zone" else []
        line = one_line_error(host.ec2cached("export", "--format", fmt, *args, check=False))
        assert line.startswith(f"ec2cached: no snapshot at {host.snapshot}: "), line
    assert sorted(os.listdir(tmp_path)) == ["ec2cached.toml"]
    # reverse-zone needs --output DIR.
    s = served
    line = one_line_error(s.export("--format", "reverse-zone", check=False))
    assert "--output must name a directory" in line, line
    f = tmp_path / "file"
    f.write_text("x")
    line = one_line_error(s.export("--format", "reverse-zone", "--output", str(f), check=False))
    assert "--output must name a directory" in line, line
    assert f.read_text() == "x"
    # A bad format is a command-line error.
    assert s.export("--format", "bind", check=False).returncode == 2


# 6. Other servers serving the exports answer what the stub answers.

def every_name(s):
    """Every name of the snapshot (from the zone export), with the types to ask for each."""
    names = sorted({owner + ".ec2" for owner, _, _ in records(s.export("--format", "zone").stdout)})
    assert len(names) > 90
    return [(n, t) for n in names for t in ("A", "AAAA")]


def answers(server, port, keys):
    """(rcode, sorted addresses) of each (name, type) of KEYS: raw UDP queries with EDNS 1232
    (every answer here fits)."""
    out = {}
    for name, rtype in keys:
        m = parse(udp(server, port, query(name, rtype, edns=(0, 1232)), timeout=2))
        assert not m["tc"], (server, name, rtype)
        out[(name, rtype)] = (m["rcode"], sorted(r[3] for r in m["answers"]))
    return out


def assert_serves_like_the_stub(s, server, port, ptr="all"):
    """SERVER:PORT answers A and AAAA of every name of the snapshot as the stub does (rcode and
    addresses: NODATA where the stub says NODATA), NXDOMAIN for names that do not exist, and PTR
    for instance addresses (PTR="all": the same records in the same order; "first": only the
    stub's first, I.D)."""
    keys = every_name(s)
    want = answers(s.addr, 53, keys)
    got = answers(server, port, keys)
    assert got == want, {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    # And through dig, as a user compares them.
    for name, rtype in [("postgres.tphon.ec2", "A"), ("big.ec2", "AAAA"), (f"{s.p1}.ec2", "AAAA")]:
        a, b = (ask("dig", x, name, rtype, "+tcp", port=p) for x, p in ((s.addr, 53), (server, port)))
        assert a.status == b.status == "NOERROR" and sorted(a.rdata(rtype)) == sorted(b.rdata(rtype)), (a, b)
    for name in ("nosuch.tphon.ec2", "nosuch.ec2", "3.postgres.tphon.ec2", "i-0123456789abcdef0.ec2"):
        a = ask("dig", server, name, "A", port=port)
        assert a.status == "NXDOMAIN" and a.answers == [], a
    for address in (s.v4[s.p1], s.v6[s.p1][0], s.v4[s.replica], s.v6[s.big[0]][0]):
        stub = [r[4] for r in ask_x("dig", s.addr, address).answers]
        a = ask_x("dig", server, address, port=port)
        assert a.status == "NOERROR", a
        assert [r[4] for r in a.answers] == (stub if ptr == "all" else stub[:1]), (address, a, stub)


def test_unbound_serves_the_unbound_export_like_the_stub(served, tmp_path):
    s = served
    export = tmp_path / "ec2.unbound.conf"
    s.export("--format", "unbound", "--output", str(export))
    addr = stub_address()
    port = free_port(addr)
    conf = tmp_path / "unbound.conf"
    conf.write_text(f"""server:
  interface: {addr}
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{tmp_path}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  num-threads: 1
  rrset-roundrobin: no
  do-ip6: no
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  include: "{export}"
remote-control:
  control-enable: no
""")
    r = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    p = Proc(["unbound", "-d", "-c", str(conf)], tmp_path / "unbound.log")
    try:
        assert wait_for(lambda: rcode_of(addr, port, "postgres.tphon.ec2", timeout=0.2) == NOERROR
                        or not p.alive(), 20) and p.alive(), p.log()
        assert_serves_like_the_stub(s, addr, port)
        # The SOA of the zone's own name (issue 23), and the empty non-terminal is NODATA there too.
        a = ask("dig", addr, "ec2", "SOA", port=port)
        gen = s.generation()
        assert a.rdata("SOA") == [f"ec2. nobody.invalid. {gen} {INTERVAL} {INTERVAL} 604800 {INTERVAL}"], a
        a = ask("dig", addr, "mysql.tphon.ec2", "A", port=port)
        assert a.status == "NOERROR" and a.answers == [], a
    finally:
        p.stop()


def dnsmasq(tmp_path, addr, port, *args):
    return Proc(["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", f"--listen-address={addr}",
                 "--bind-interfaces", f"--port={port}", "--user=root", "--pid-file=", "--log-facility=-",
                 *args], tmp_path / "dnsmasq.log")


def test_dnsmasq_serves_the_dnsmasq_export_like_the_stub(served, tmp_path):
    s = served
    export = tmp_path / "ec2.dnsmasq.conf"
    s.export("--format", "dnsmasq", "--output", str(export))
    text = export.read_text()
    assert "\nlocal=/ec2/\n" in text, text
    assert f"host-record={s.p1}.ec2," in text
    addr = stub_address()
    port = free_port(addr)
    p = dnsmasq(tmp_path, addr, port, f"--conf-file={export}")
    try:
        assert wait_for(lambda: rcode_of(addr, port, "postgres.tphon.ec2", timeout=0.2) == NOERROR
                        or not p.alive(), 20) and p.alive(), p.log()
        # dnsmasq gives an address one PTR: the first name of its host-record, I.D.
        assert_serves_like_the_stub(s, addr, port, ptr="first")
        # The TTL is the interval.
        a = ask("dig", addr, "postgres.tphon.ec2", "A", port=port)
        assert {r[1] for r in a.answers} == {INTERVAL}, a
    finally:
        p.stop()


def test_dnsmasq_serves_the_hosts_export_like_the_stub(served, tmp_path):
    s = served
    export = tmp_path / "ec2.hosts"
    s.export("--format", "hosts", "--output", str(export))
    addr = stub_address()
    port = free_port(addr)
    p = dnsmasq(tmp_path, addr, port, f"--addn-hosts={export}", "--local=/ec2/")
    try:
        assert wait_for(lambda: rcode_of(addr, port, "postgres.tphon.ec2", timeout=0.2) == NOERROR
                        or not p.alive(), 20) and p.alive(), p.log()
        # From a hosts file, dnsmasq gives an address one PTR: its first name, I.D.
        assert_serves_like_the_stub(s, addr, port, ptr="first")
    finally:
        p.stop()


# 7. Daemons of their own: no snapshot, a publish, an expired snapshot, bind errors, config
# errors, socket activation.

def test_servfail_without_a_usable_snapshot_and_the_stub_follows_each_install(fleet, host):
    a = fleet.launch(tags={"services": "postgres"})[0]
    addr = stub_address()
    stub_config(host, addr, interval=1, max_age=2, api_timeout=1)
    # The daemon's API is dead: it never publishes; the stub answers from what is installed.
    d = ec2cached_run(host.config, host.dir / "ec2cached.log", host.env(AWS_ENDPOINT_URL=dead_endpoint()))
    try:
        assert wait_for(lambda: rcode_of(addr, 53, "postgres.tphon.ec2", timeout=0.2) is not None
                        or not d.alive(), 20) and d.alive(), d.log()
        assert not host.snapshot.exists()
        for tool in TOOLS:
            for name in ("postgres.tphon.ec2", "ec2", "nosuch.ec2"):
                x = ask(tool, addr, name, "A")
                assert x.status == "SERVFAIL" and "aa" not in x.flags and "ra" not in x.flags, x
                assert x.answers == [] and x.authority == [], x
            refused(ask(tool, addr, "example.com", "A"))
            # Reverse names are answered only for addresses of a snapshot.
            refused(ask_x(tool, addr, fleet.ipv4(a)))
        # A snapshot installed by `refresh` (another process): answered within 0.1 s or so.
        host.refresh()
        t = time.monotonic()
        assert wait_for(lambda: ask("dig", addr, "postgres.tphon.ec2").rdata("A") == [fleet.ipv4(a)], 2), d.log()
        assert time.monotonic() - t < 2
        # A corrupt one (replaced by rename, as an install would): SERVFAIL again.
        good = host.snapshot.read_bytes()
        tmp = host.dir / ".corrupt"
        tmp.write_bytes(good[:200] + b"\xff" * (len(good) - 200))
        os.chmod(tmp, 0o644)
        os.rename(tmp, host.snapshot)
        assert wait_for(lambda: ask("dig", addr, "postgres.tphon.ec2").status == "SERVFAIL", 2)
        x = ask("kdig", addr, "postgres.tphon.ec2")
        assert x.status == "SERVFAIL" and "aa" not in x.flags, x
        # Good again, then past its max_age (2 s): SERVFAIL, and export refuses it too.
        host.refresh()
        assert wait_for(lambda: ask("dig", addr, "postgres.tphon.ec2").status == "NOERROR", 2)
        gen = generation(host.snapshot.read_bytes())
        assert wait_for(lambda: ask("dig", addr, "postgres.tphon.ec2").status == "SERVFAIL", 6)
        assert time.time() > gen + 2
        for tool in TOOLS:
            x = ask(tool, addr, "postgres.tphon.ec2", "A")
            assert x.status == "SERVFAIL" and "aa" not in x.flags and x.answers == [], x
        line = one_line_error(host.ec2cached("export", "--format", "zone", check=False))
        assert "older than its max_age (2 s)" in line, line
        assert d.alive(), d.log()
    finally:
        d.stop()


def test_the_stub_follows_a_publish(fleet, host):
    a = fleet.launch(tags={"services": "postgres"})[0]
    addr = stub_address()
    port6 = free_port("::1")
    stub_config(host, addr, more=[f"[::1]:{port6}"])  # and IPv6
    d = ec2cached_run(host.config, host.dir / "ec2cached.log", host.env())
    try:
        # The daemon's first poll.
        assert wait_for(lambda: ask("dig", addr, "postgres.tphon.ec2").rdata("A") == [fleet.ipv4(a)]
                        or not d.alive(), 30), d.log()
        assert f"dns: answering for ec2 on udp {addr}:53, udp [::1]:{port6}, tcp {addr}:53, tcp [::1]:{port6}" \
            in d.log(), d.log()
        for opts in ([], ["+tcp"]):
            x = ask("kdig", "::1", "postgres.tphon.ec2", "A", *opts, port=port6)
            assert x.rdata("A") == [fleet.ipv4(a)] and x.tcp == bool(opts), x
        gen = generation(host.snapshot.read_bytes())
        # The fleet changes; `refresh` publishes.
        b = fleet.launch(tags={"services": "postgres"})[0]
        fleet.ec2.terminate_instances(InstanceIds=[a])
        time.sleep(max(0.0, gen + 1.05 - time.time()))  # a new second: a new serial
        host.refresh()
        t = time.monotonic()
        assert wait_for(lambda: ask("dig", addr, "postgres.tphon.ec2").rdata("A") == [fleet.ipv4(b)], 2), d.log()
        assert time.monotonic() - t < 2
        assert ask("dig", addr, f"{a}.ec2").status == "NXDOMAIN"
        new = generation(host.snapshot.read_bytes())
        assert new > gen
        assert ask("kdig", addr, "ec2", "SOA").rdata("SOA") == [soa_text(new)]
        # SIGHUP: the daemon polls at once and the stub answers its publish.
        c = fleet.launch(tags={"services": "postgres"})[0]
        d.p.send_signal(signal.SIGHUP)
        want = [fleet.ipv4(i) for i in fleet.ordered([b, c])]
        assert wait_for(lambda: ask("dig", addr, "postgres.tphon.ec2").rdata("A") == want, 20), d.log()
    finally:
        d.stop()


def run_fails(host, argv=(), env=None):
    """`ec2cached run` that must exit at once: (exit code, its last stderr line, stderr)."""
    r = subprocess.run([*argv, EC2CACHED, "--config", str(host.config), "run"], capture_output=True,
                       text=True, timeout=30, env=env or host.env(AWS_ENDPOINT_URL=dead_endpoint()))
    lines = r.stderr.strip().splitlines()
    return r.returncode, lines[-1] if lines else "", r.stderr


def test_a_second_daemon_on_the_same_address_exits_1(served, tmp_path):
    s = served
    other = Host(tmp_path, s.host.url)
    stub_config(other, s.addr)
    code, last, err = run_fails(other)
    assert code == 1, err
    assert re.fullmatch(rf"ec2cached: \[dns\] listen: cannot listen on {re.escape(s.addr)}:53: "
                        r"Address already in use \(os error 98\)", last), err
    assert err.count("cannot listen") == 1, err
    assert not other.snapshot.exists()
    # The first one answers on.
    assert ask("dig", s.addr, "postgres.tphon.ec2").rdata("A") == s.a(s.postgres)


def test_a_port_below_1024_needs_privilege_or_the_socket_unit(tmp_path):
    # A directory the unprivileged user can read (pytest's tmp_path is under a 0700 folder).
    d = tempfile.mkdtemp(prefix="ec2cached-dns-")
    try:
        os.chmod(d, 0o755)
        host = Host(Path(d), "http://127.0.0.1:9")
        addr = stub_address()
        stub_config(host, addr)
        os.chmod(host.config, 0o644)
        code, last, err = run_fails(host, ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        assert code == 1, err
        assert last == (f"ec2cached: [dns] listen: cannot listen on {addr}:53: Permission denied (os error 13) "
                        "(a port below 1024 needs a capability: use the packaged ec2cached-dns.socket)"), err
    finally:
        shutil.rmtree(d)


@pytest.mark.parametrize("listen, key, what", [
    ([], "dns.listen", "lists no ADDRESS:PORT"),
    (["nope"], "dns.listen[0]", '"nope" is not ADDRESS:PORT (127.0.0.153:53, [::1]:53)'),
    (["127.0.0.1"], "dns.listen[0]", '"127.0.0.1" is not ADDRESS:PORT'),
    (["127.0.0.1:0"], "dns.listen[0]", "port 0"),
    (["127.0.0.1:53", "[::1]:53", "127.0.0.1:53"], "dns.listen[2]", "127.0.0.1:53 is listed twice"),
])
def test_bad_dns_listen_is_a_config_error(host, listen, key, what):
    write_config(host.config, {"snapshot": str(host.snapshot)}, {"dns": {"listen": listen}})
    for cmd in ("status", "run"):
        r = host.ec2cached(cmd, check=False, timeout=20)
        line = one_line_error(r, code=2)
        assert line.startswith(f"ec2cached: {host.config}: key `{key}`: "), line
        assert what in line, line


def test_unknown_key_in_dns_is_a_config_error(host):
    host.config.write_text('[dns]\nlisten = ["127.0.0.1:53"]\nport = 53\n')
    line = one_line_error(host.ec2cached("status", check=False), code=2)
    assert str(host.config) in line and "unknown field `port`" in line, line


WRAPPER = """
import os, sys
udp, tcp = int(sys.argv[1]), int(sys.argv[2])
os.dup2(udp, 3)
os.dup2(tcp, 4)
os.close(udp)
os.close(tcp)
os.environ["LISTEN_FDS"] = "2"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[3], sys.argv[3:])
"""


def test_socket_activation_refuses_a_socket_that_cannot_serve(served, tmp_path):
    """A Unix socket, or a TCP socket that does not listen, passed as the stub's: `run` says which
    descriptor and exits 1, instead of serving nothing or spinning on accept."""
    host = Host(tmp_path, served.host.url)
    shutil.copyfile(served.host.snapshot, host.snapshot)
    os.chmod(host.snapshot, 0o644)
    stub_config(host, None)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((stub_address(), 0))
    for other, why in [(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), "invalid"),
                       (socket.socket(socket.AF_INET, socket.SOCK_STREAM), "not listening")]:
        if other.family == socket.AF_UNIX:
            other.bind(str(tmp_path / "sock"))
            other.listen(1)
        fds = [fcntl.fcntl(x.fileno(), fcntl.F_DUPFD_CLOEXEC, 10) for x in (u, other)]
        other.close()
        try:
            r = subprocess.run([sys.executable, "-c", WRAPPER, str(fds[0]), str(fds[1]), EC2CACHED,
                                "--config", str(host.config), "run"], pass_fds=fds, capture_output=True,
                               text=True, timeout=30, env=host.env(AWS_ENDPOINT_URL=dead_endpoint()))
        finally:
            for fd in fds:
                os.close(fd)
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 1, r.stderr
        assert last.startswith("ec2cached: descriptor 4 passed by systemd is not a UDP socket or a "
                               "listening TCP socket"), last
        assert why in last.lower(), last
        (tmp_path / "sock").unlink(missing_ok=True)
    u.close()


def test_socket_activation_uses_the_passed_sockets(served, tmp_path):
    s = served
    host = Host(tmp_path, s.host.url)
    shutil.copyfile(s.host.snapshot, host.snapshot)
    os.chmod(host.snapshot, 0o644)
    stub_config(host, None)  # no [dns]
    addr = stub_address()
    port = free_port(addr)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    u.bind((addr, port))
    t.bind((addr, port))
    t.listen(16)
    fds = [fcntl.fcntl(x.fileno(), fcntl.F_DUPFD_CLOEXEC, 10) for x in (u, t)]
    u.close()
    t.close()
    try:
        d = Proc([sys.executable, "-c", WRAPPER, str(fds[0]), str(fds[1]), EC2CACHED, "--config",
                  str(host.config), "run"], tmp_path / "ec2cached.log",
                 env=host.env(AWS_ENDPOINT_URL=dead_endpoint()), pass_fds=fds)
    finally:
        for fd in fds:
            os.close(fd)
    try:
        assert wait_for(lambda: rcode_of(addr, port, "postgres.tphon.ec2", timeout=0.2) == NOERROR
                        or not d.alive(), 20) and d.alive(), d.log()
        for tool in TOOLS:
            for opts in ([], ["+tcp"]):
                a = ask(tool, addr, "postgres.tphon.ec2", "A", *opts, port=port)
                assert a.tcp == bool(opts) and a.rdata("A") == s.a(s.postgres), a
                authoritative_answer(a)
        assert f"dns: answering for ec2 on udp {addr}:{port}, tcp {addr}:{port}" in d.log(), d.log()
        assert "activated=true" in d.log(), d.log()
    finally:
        d.stop()
