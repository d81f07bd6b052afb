"""Issue 23, the exports (items 7 to 10, and the export side of 11): what BIND (named), NSD,
unbound and dnsmasq answer when they load `ec2cached export`, through the real servers.

* 7. `reverse-zone` writes one zone per /24 and per IPv6 /64, never wider: a server loading them
  refuses (is not authoritative for) the rest of a /8 or /32 it used to claim.
* 8. A name without addresses is in every export (a TXT record, `no address`), so every server
  answers NODATA for its A and AAAA, as the stub does, and NXDOMAIN only for names that do not
  exist.
* 9. No record twice: two instances of one name sharing an address answer it once.
* 10. A name gets at most 100 records of a type (BIND's default `max-records-per-type`: named
  refuses to load a zone with more; named-checkzone does not check it), said on stderr and in
  the export's comment; at 100 000 instances with a `region` zone every zone loads in named, NSD,
  unbound and dnsmasq.
* 11. SOA MNAME is the zone's own name, never `localhost.`; NS is the apex in the unbound export
  and `ns.invalid.` in the zone files (named refuses an in-zone NS without an address), so that
  no priming resolver is sent to 127.0.0.1.

No moto: the fleets are `describe-instances` JSON read by `ec2cached refresh --from-file`.
"""

import ipaddress
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from conftest import Host
from dnshelp import Proc, TYPES, ask_x, free_port, parse, query, stub_address, tcp, udp, wait_for
from fleethelp import generation
from snapfile import fleet_json, fleets
from test_dns import checkzone, dnsmasq, records

INTERVAL = 3600
NOERROR, NXDOMAIN = 0, 3
CAP = 100
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


# Fleets as describe-instances JSON.

def instance(n, groups, public=None, v6=(), services=""):
    """The n-th launched instance (id i-<n>, launched n seconds after T0) in GROUPS, with a
    public IPv4 PUBLIC (the A of `address = "public"`) and IPv6 addresses V6."""
    return {
        "InstanceId": f"i-{n:017x}", "State": {"Name": "running"},
        "LaunchTime": (T0 + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "SecurityGroups": [{"GroupName": g} for g in groups],
        "Tags": [{"Key": "services", "Value": services}] if services else [],
        "PrivateIpAddress": f"10.9.{n >> 8 & 255}.{n & 255}",
        "PublicIpAddress": public,
        "NetworkInterfaces": [{"Attachment": {"DeviceIndex": 0},
                               "Ipv6Addresses": [{"Ipv6Address": a} for a in v6]}],
    }


def iid(n):
    return f"i-{n:017x}"


def snapshot_host(tmp, doc, top=None, zones=""):
    """A host whose snapshot `ec2cached refresh --from-file` made of DOC (JSON text); TOP: more
    top-level keys, ZONES: TOML appended (`[[zone]]` entries)."""
    host = Host(tmp, "http://127.0.0.1:1")
    host.configure(interval=INTERVAL, **(top or {}))
    if zones:
        host.config.write_text(host.config.read_text() + zones)
    (tmp / "fleet.json").write_text(doc)
    host.refresh("--from-file", str(tmp / "fleet.json"))
    return host


# The small fleet, `address = "public"`, launch order as listed:
#   web: W1 (54.1.2.3, one IPv6), W2 (54.1.2.4), N1 (no public IP: no address)
#   dark: N2, service db, no address (dark, db.dark, 1.dark, 1.db.dark: no address at all)
#   six: S1, IPv6 only
#   dup: D1, D2 with the same public IPv4 and IPv6 (two VPCs)
#   huge: 150 instances, 54.2.0.0-149 and 2600:1f18:0:2::0-95 (hex) (one /24, one /64)
#   MANY: in 120 groups g0..g119: 121 names for its address (54.1.4.1)
W1, W2, N1, N2, S1, D1, D2, MANY = 1, 2, 3, 4, 5, 6, 7, 8
HUGE = list(range(100, 250))
V6_NET1 = "2600:1f18:0:1::"
V6_NET2 = "2600:1f18:0:2::"


def small_fleet():
    insts = [
        instance(W1, ["web"], "54.1.2.3", [V6_NET1 + "3"]),
        instance(W2, ["web"], "54.1.2.4"),
        instance(N1, ["web"]),
        instance(N2, ["dark"], services="db"),
        instance(S1, ["six"], v6=[V6_NET1 + "6"]),
        instance(D1, ["dup"], "54.1.3.9", [V6_NET1 + "9"]),
        instance(D2, ["dup"], "54.1.3.9", [V6_NET1 + "9"]),
        instance(MANY, [f"g{k}" for k in range(120)], "54.1.4.1"),
    ]
    insts += [instance(n, ["huge"], f"54.2.0.{k}", [f"{V6_NET2}{k:x}"]) for k, n in enumerate(HUGE)]
    return json.dumps({"Reservations": [{"Instances": insts}]})


NO_ADDRESS = [f"{iid(N1)}.ec2", "3.web.ec2", f"{iid(N2)}.ec2", "dark.ec2", "1.dark.ec2",
              "db.dark.ec2", "1.db.dark.ec2"]


# The servers.

def start_named(d, zones):
    """named (BIND) serving ZONES [(origin, file)] on 127.0.0.1 (it listens only on the addresses
    of interfaces), as a primary of each, with BIND's defaults for zone data. named answers an
    RRset in an order of its own (not the file's)."""
    d.mkdir()
    port = free_port("127.0.0.1")
    conf = d / "named.conf"
    conf.write_text(f"""options {{
  directory "{d}";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  pid-file none;
  session-keyfile none;
  managed-keys-directory "{d}";
  recursion no;
  notify no;
  dnssec-validation no;
}};
controls {{ }};
""" + "".join(f'zone "{o}" {{ type primary; file "{f}"; }};\n' for o, f in zones))
    r = subprocess.run(["named-checkconf", str(conf)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return Proc(["named", "-g", "-4", "-c", str(conf)], d / "named.log"), ("127.0.0.1", port)


def start_nsd(d, zones):
    d.mkdir()
    addr = stub_address()
    port = free_port(addr)
    conf = d / "nsd.conf"
    conf.write_text(f"""server:
  ip-address: {addr}@{port}
  do-ip6: no
  database: ""
  zonelistfile: "{d}/zone.list"
  xfrdfile: "{d}/xfrd.state"
  xfrdir: "{d}"
  pidfile: ""
  username: ""
  chroot: ""
  server-count: 1
  verbosity: 1
remote-control:
  control-enable: no
""" + "".join(f'zone:\n  name: "{o}"\n  zonefile: "{f}"\n' for o, f in zones))
    r = subprocess.run(["nsd-checkconf", str(conf)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return Proc(["nsd", "-d", "-c", str(conf)], d / "nsd.log"), (addr, port)


def start_unbound(d, export):
    d.mkdir()
    addr = stub_address()
    port = free_port(addr)
    conf = d / "unbound.conf"
    conf.write_text(f"""server:
  interface: {addr}
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{d}"
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
    r = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return Proc(["unbound", "-d", "-c", str(conf)], d / "unbound.log"), (addr, port)


def start_dnsmasq(d, *args):
    d.mkdir()
    addr = stub_address()
    port = free_port(addr)
    return dnsmasq(d, addr, port, *args), (addr, port)


class Servers:
    """Servers loading one host's exports: named and nsd (`zone` and `reverse-zone`), unbound,
    dnsmasq (`dnsmasq`) and dnsmasq-hosts (`hosts` with `local=/ec2/`). `.at[name]` is its
    (address, port); `.exports` the export files, `.stderr` what each export said. WAIT: until
    every server answers (else call `ready()`)."""

    def __init__(self, host, tmp, wait=True):
        self.dir = tmp
        self.exports, self.stderr = {}, {}
        for fmt in ("zone", "unbound", "dnsmasq", "hosts"):
            out = tmp / f"ec2.{fmt}"
            self.stderr[fmt] = host.ec2cached("export", "--format", fmt, "--output", str(out)).stderr
            self.exports[fmt] = out
        rev = tmp / "rev"
        rev.mkdir()
        r = host.ec2cached("export", "--format", "reverse-zone", "--output", str(rev))
        self.stderr["reverse-zone"] = r.stderr
        self.reverse = [tuple(line.split(" ")) for line in r.stdout.splitlines()]
        zones = [("ec2", self.exports["zone"])] + [(o.rstrip("."), p) for o, p in self.reverse]
        starts = {
            "named": lambda: start_named(tmp / "named", zones),
            "nsd": lambda: start_nsd(tmp / "nsd", zones),
            "unbound": lambda: start_unbound(tmp / "unbound", self.exports["unbound"]),
            "dnsmasq": lambda: start_dnsmasq(tmp / "dnsmasq", f"--conf-file={self.exports['dnsmasq']}"),
            "dnsmasq-hosts": lambda: start_dnsmasq(tmp / "dnsmasq-hosts",
                                                   f"--addn-hosts={self.exports['hosts']}", "--local=/ec2/"),
        }
        self.procs, self.at = {}, {}
        try:
            for name, start in starts.items():
                self.procs[name], self.at[name] = start()
            if wait:
                self.ready()
        except BaseException:
            self.stop()
            raise

    def ready(self, timeout=120):
        """Every server answers a query for the apex (whatever it answers), or has exited."""
        def up(name):
            return not self.procs[name].alive() or udp(*self.at[name], query("ec2", "SOA"), timeout=0.3) is not None
        for name in self.procs:
            assert wait_for(lambda: up(name), timeout), f"{name} does not answer:\n{self.procs[name].log()}"
            assert self.procs[name].alive(), f"{name} exited:\n{self.procs[name].log()}"

    def stop(self):
        for p in self.procs.values():
            p.stop()


def ask(server, name, rtype):
    """(rcode, [rdata of RTYPE in the answer]) from SERVER (address, port), over TCP (whole)."""
    m = parse(tcp(*server, [query(name, rtype)], timeout=10)[0])
    return m["rcode"], [r[3] for r in m["answers"] if r[1] == TYPES[rtype]]


def soa_of(server, zone):
    rcode, soa = ask(server, zone, "SOA")
    assert rcode == NOERROR and len(soa) == 1, (zone, rcode, soa)
    return soa[0].split(" ")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exports-small")
    host = snapshot_host(tmp, small_fleet(), {"address": "public"})
    s = Servers(host, tmp)
    s.host = host
    try:
        yield s
    finally:
        s.stop()


ZONE_SERVERS = ["named", "nsd"]
ALL_SERVERS = ["named", "nsd", "unbound", "dnsmasq", "dnsmasq-hosts"]


# 7. Reverse zones: one per /24 and per /64.

def v6_origin(address, nibbles=16):
    rp = ipaddress.ip_address(address).reverse_pointer
    return ".".join(rp.split(".")[32 - nibbles:]) + "."


def test_reverse_zones_are_one_per_24_and_64_and_the_rest_of_the_8_is_not_claimed(small):
    s = small
    origins = [o for o, _ in s.reverse]
    assert origins == ["2.1.54.in-addr.arpa.", "3.1.54.in-addr.arpa.", "4.1.54.in-addr.arpa.",
                       "0.2.54.in-addr.arpa.", v6_origin(V6_NET1 + "3"), v6_origin(V6_NET2 + "1")], origins
    assert all(len(o.split(".")) == 6 for o in origins[:4]) and all(len(o.split(".")) == 19 for o in origins[4:])
    assert sorted(os.listdir(s.dir / "rev")) == sorted(f"{o}zone" for o in origins)
    for origin, path in s.reverse:
        checkzone(origin, path)
        check = subprocess.run(["nsd-checkzone", origin, path], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
    for server in ZONE_SERVERS:
        at = s.at[server]
        # The instances' own addresses answer, from the /24 or /64 zone.
        for address, first in (("54.1.2.3", iid(W1)), (V6_NET1 + "9", iid(D1)), ("54.2.0.7", iid(HUGE[7]))):
            a = ask_x("dig", at[0], address, port=at[1])
            assert a.status == "NOERROR" and f"{first}.ec2." in [r[4] for r in a.answers], (server, a)
        # Another customer's address in the same /8 (or /16), and another /64 of the /32: the
        # server is not authoritative for them (REFUSED); a /8 zone answered NXDOMAIN.
        for address in ("54.1.9.9", "54.200.1.1", "2600:1f18:0:3::1", "2600:1f18:ffff::1"):
            a = ask_x("dig", at[0], address, port=at[1])
            assert a.status == "REFUSED", (server, address, a)


def test_a_wider_zone_of_an_earlier_export_is_removed_and_files_not_ours_stay(small, tmp_path):
    s = small
    d = tmp_path / "rev"
    d.mkdir()
    # As an export before zones were /24 and /64 wrote them, next to files not ours.
    first = s.exports["zone"].parent / "rev" / f"{s.reverse[0][0]}zone"
    header = first.read_text().splitlines()[0]
    assert header.startswith("; ec2cached export --format reverse-zone:"), header
    (d / "54.in-addr.arpa.zone").write_text(header + "\n$ORIGIN 54.in-addr.arpa.\n")
    (d / "8.1.f.1.0.0.6.2.ip6.arpa.zone").write_text(header + "\n")
    (d / "1.in-addr.arpa.zone").write_text("; written by hand\n")
    (d / "notes.txt").write_text(header + "\n")
    r = s.host.ec2cached("export", "--format", "reverse-zone", "--output", str(d))
    for old in ("54.in-addr.arpa.zone", "8.1.f.1.0.0.6.2.ip6.arpa.zone"):
        assert not (d / old).exists() and f"removed {d / old}" in r.stderr, r.stderr
    assert sorted(os.listdir(d)) == sorted(["1.in-addr.arpa.zone", "notes.txt"]
                                           + [f"{o}zone" for o, _ in s.reverse])


# 8. Names without addresses: NODATA everywhere, not NXDOMAIN.

def test_every_export_keeps_the_names_without_addresses(small):
    s = small
    zone = s.exports["zone"].read_text()
    for name in NO_ADDRESS:
        rel = name.removesuffix(".ec2")
        assert f"\n{rel}\tIN\tTXT\t\"no address\"\n" in zone, name
        assert f"\n  local-data: '{name}. {INTERVAL} IN TXT \"no address\"'\n" in s.exports["unbound"].read_text()
        assert f"\ntxt-record={name},\"no address\"\n" in s.exports["dnsmasq"].read_text()
        # A hosts file cannot hold a name without an address: it says so.
        assert f"\n# {name}: no address" in s.exports["hosts"].read_text()


@pytest.mark.parametrize("server", ["named", "nsd", "unbound", "dnsmasq"])
def test_a_name_without_addresses_is_nodata_from_every_server(small, server):
    at = small.at[server]
    for name in NO_ADDRESS:
        for rtype in ("A", "AAAA"):
            assert ask(at, name, rtype) == (NOERROR, []), (server, name, rtype)
    # As before: a name with IPv6 only is NODATA for A; names that do not exist are NXDOMAIN.
    assert ask(at, "six.ec2", "A") == (NOERROR, [])
    assert ask(at, "six.ec2", "AAAA") == (NOERROR, [V6_NET1 + "6"])
    for name in ("nosuch.ec2", "2.dark.ec2", "x.dark.ec2", "i-0123456789abcdef0.ec2"):
        assert ask(at, name, "A")[0] == NXDOMAIN, (server, name)


# 9. No record twice.

def test_no_export_holds_a_record_twice(small):
    s = small
    recs = records(s.exports["zone"].read_text())
    assert len(recs) == len(set(recs)), [r for r in recs if recs.count(r) > 1]
    assert recs.count(("dup", "A", "54.1.3.9")) == recs.count(("dup", "AAAA", V6_NET1 + "9")) == 1
    for fmt in ("unbound", "dnsmasq", "hosts"):
        lines = [x for x in s.exports[fmt].read_text().splitlines() if x and not x.startswith("#")]
        assert len(lines) == len(set(lines)), (fmt, [x for x in lines if lines.count(x) > 1])
    for _, path in s.reverse:
        recs = records(open(path).read())
        assert len(recs) == len(set(recs)), path


@pytest.mark.parametrize("server", ALL_SERVERS)
def test_two_instances_sharing_an_address_answer_it_once(small, server):
    at = small.at[server]
    assert ask(at, "dup.ec2", "A") == (NOERROR, ["54.1.3.9"]), server
    assert ask(at, "dup.ec2", "AAAA") == (NOERROR, [V6_NET1 + "9"]), server
    # Each instance keeps its own name for it; the PTR is the first launched's.
    assert ask(at, f"{iid(D2)}.ec2", "A") == (NOERROR, ["54.1.3.9"])
    rcode, ptr = ask(at, ipaddress.ip_address("54.1.3.9").reverse_pointer, "PTR")
    assert rcode == NOERROR and sorted(ptr) == sorted({f"{iid(D1)}.ec2.", "1.dup.ec2."} if server != "dnsmasq-hosts"
                                                       and server != "dnsmasq" else {f"{iid(D1)}.ec2."}), (server, ptr)
    assert server == "named" or ptr[0] == f"{iid(D1)}.ec2.", (server, ptr)


# 10. At most 100 records of a type per name.

def first_hundred(rtype):
    return sorted(str(ipaddress.ip_address(f"54.2.0.{k}" if rtype == "A" else f"{V6_NET2}{k:x}"))
                  for k in range(CAP))


def test_a_name_over_100_records_is_cut_and_said(small):
    s = small
    many = ipaddress.ip_address("54.1.4.1").reverse_pointer
    for fmt in ("zone", "unbound", "dnsmasq", "hosts"):
        c = ";" if fmt == "zone" else "#"
        text = s.exports[fmt].read_text()
        want = ["huge.ec2. A: 100 of 150 records exported, 50 left out",
                "huge.ec2. AAAA: 100 of 150 records exported, 50 left out"]
        if fmt == "unbound":
            want.append(f"{many}. PTR: 100 of 121 records exported, 21 left out")
        head = [x for x in text.splitlines() if x.startswith(f"{c}   ")]
        assert head == [f"{c}   {w}" for w in want], (fmt, text[:2000])
        assert f"\n{c} Cut: {len(want)} record sets hold more than 100 records (the most BIND loads" in text
        warned = [x for x in s.stderr[fmt].splitlines() if x.startswith("ec2cached: warning: ")]
        assert [w.split(" (")[0] for w in warned] == [f"ec2cached: warning: {w}" for w in want], s.stderr[fmt]
    # The PTR cut: in its zone and on stderr.
    zone = dict(s.reverse)["4.1.54.in-addr.arpa."]
    assert f"\n;   {many}. PTR: 100 of 121 records exported, 21 left out\n" in open(zone).read()
    assert f"ec2cached: warning: {many}. PTR: 100 of 121" in s.stderr["reverse-zone"]
    assert "huge" not in s.stderr["reverse-zone"]


@pytest.mark.parametrize("server", ALL_SERVERS)
def test_every_server_loads_the_first_100_records_of_a_big_name(small, server):
    at = small.at[server]
    for rtype in ("A", "AAAA"):
        rcode, got = ask(at, "huge.ec2", rtype)
        assert (rcode, sorted(got)) == (NOERROR, first_hundred(rtype)), (server, rtype, rcode, len(got))
    # Each instance keeps its own address, cut or not.
    assert ask(at, f"{iid(HUGE[149])}.ec2", "A") == (NOERROR, ["54.2.0.149"])
    rcode, ptr = ask(at, ipaddress.ip_address("54.1.4.1").reverse_pointer, "PTR")
    # The first 100 of I.D and its numbered names (named answers them in an order of its own).
    assert rcode == NOERROR and f"{iid(MANY)}.ec2." in ptr, (server, rcode, ptr[:3])
    assert server == "named" or ptr[0] == f"{iid(MANY)}.ec2.", (server, ptr[:3])
    # dnsmasq gives one PTR (the first name); the others the first 100.
    assert len(ptr) == (1 if server.startswith("dnsmasq") else CAP), (server, len(ptr))


# 11. SOA and NS: the zone's own name, never localhost.

def test_soa_mname_is_the_zone_s_own_name_and_no_ns_leads_to_an_address(small):
    s = small
    for fmt, path in [*s.exports.items(), *s.reverse]:
        assert "localhost" not in open(path).read(), fmt
    for server in ("named", "nsd", "unbound"):
        at = s.at[server]
        zones = ["ec2"] + ([o.rstrip(".") for o, _ in s.reverse] if server != "unbound" else [])
        for zone in zones:
            mname, rname, serial, *_ = soa_of(at, zone)
            assert (mname, rname) == (f"{zone}.", "nobody.invalid."), (server, zone)
            assert int(serial) == generation(s.host.snapshot.read_bytes()) % 2**32
            rcode, ns = ask(at, zone, "NS")
            # RFC 6303: the apex (unbound); in zone files, a name with no address anywhere
            # (RFC 6761), as named refuses an in-zone NS without one.
            assert (rcode, ns) == (NOERROR, [f"{zone}." if server == "unbound" else "ns.invalid."]), (server, zone)
            # The apex has no address: a resolver priming from the NS finds none.
            for rtype in ("A", "AAAA"):
                assert ask(at, zone, rtype) == (NOERROR, []), (server, zone, rtype)


# 10, at scale: 100 000 instances, one `region` name holding them all.

REGION_ZONE = '\n[[zone]]\nkey = "region"\n'


def test_100000_instances_in_one_region_name_load_in_every_server(tmp_path):
    started = time.monotonic()
    n = 100_000
    doc = fleets(fleet_json(n // 2, net="10.1"), fleet_json(n // 2, net="10.2"))
    insts = [i for r in json.loads(doc)["Reservations"] for i in r["Instances"]]
    order = sorted(insts, key=lambda i: (i["LaunchTime"], i["InstanceId"]))
    host = snapshot_host(tmp_path, doc, zones=REGION_ZONE)
    # The servers load while the zone files are checked (dnsmasq takes longest).
    servers = Servers(host, tmp_path, wait=False)
    try:
        # Said on stderr and at the top of every export.
        for fmt in ("zone", "unbound", "dnsmasq", "hosts"):
            cut = "us-east-1.ec2. A: 100 of 100000 records exported, 99900 left out"
            assert f"ec2cached: warning: {cut} (" in servers.stderr[fmt], servers.stderr[fmt]
            c = ";" if fmt == "zone" else "#"
            assert f"\n{c} Cut: 1 record set holds more than 100 records" in servers.exports[fmt].read_text()[:2000]
            assert f"\n{c}   {cut}\n" in servers.exports[fmt].read_text()[:2000]
        # Every zone file passes named-checkzone and nsd-checkzone: the forward zone and 392 /24s.
        assert len(servers.reverse) == 2 * 196
        for origin, path in [("ec2", servers.exports["zone"]), *servers.reverse]:
            checkzone(origin, path)
            r = subprocess.run(["nsd-checkzone", origin, str(path)], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
        servers.ready()
        named, nsd = servers.procs["named"].log(), servers.procs["nsd"].log()
        assert named.count("/IN: loaded serial ") == 1 + len(servers.reverse) and "not loaded" not in named, named[-3000:]
        assert nsd.count(" read with success") == 1 + len(servers.reverse) and ": error:" not in nsd, nsd[-3000:]
        want = sorted(i["PrivateIpAddress"] for i in order[:CAP])
        last = order[-1]
        ptr = ipaddress.ip_address(last["PrivateIpAddress"]).reverse_pointer

        def check(server):
            at = servers.at[server]
            rcode, got = ask(at, "us-east-1.ec2", "A")
            assert (rcode, sorted(got)) == (NOERROR, want), (server, rcode, len(got))
            assert ask(at, f"{n}.us-east-1.ec2", "A") == (NOERROR, [last["PrivateIpAddress"]]), server
            assert ask(at, f"{last['InstanceId']}.ec2", "A") == (NOERROR, [last["PrivateIpAddress"]]), server
            rcode, names = ask(at, ptr, "PTR")
            # (named answers an RRset in an order of its own: not always `I.D` first.)
            assert rcode == NOERROR and f"{last['InstanceId']}.ec2." in names, (server, names)
            if server != "named":
                assert names[0] == f"{last['InstanceId']}.ec2.", (server, names)
            assert ask(at, f"{n + 1}.us-east-1.ec2", "A")[0] == NXDOMAIN, server

        with ThreadPoolExecutor(len(servers.at)) as pool:
            list(pool.map(check, servers.at))
    finally:
        servers.stop()
    print(f"100 000 instances: exported, checked and served in {time.monotonic() - started:.1f} s")
