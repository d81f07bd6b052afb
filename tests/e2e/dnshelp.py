"""Helpers for the DNS tests (test_dns.py): loopback addresses of their own, `ec2cached run`
processes with a stub, dig and kdig as a user runs them (their printed answer parsed), raw DNS
packets from Python for what no client sends, and the static Go and musl clients.

    addr = stub_address()                  # 127.0.53.X, free, distinct per xdist worker
    a = ask("dig", addr, "postgres.tphon.ec2", "AAAA", "+tcp")
    a.status, a.flags, a.answers, a.rdata("A"), a.authority, a.size, a.edns, a.tcp
    header(udp(addr, 53, packet))          # raw exchange, parsed header
"""

import fcntl
import ipaddress
import os
import random
import re
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import fleethelp
from conftest import EC2CACHED, ROOT

# 127.0.53.X: a block of addresses per pytest-xdist worker ("gw0" -> 1, serial -> 0), so that
# workers never pick the same address; inside a block, addresses are handed out in turn and
# skipped while something (a test of another run, a stale process) holds port 53 there.
BLOCK = 40


def worker_index():
    w = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(w[2:]) + 1 if w.startswith("gw") and w[2:].isdigit() else 0


_next = [0]


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def port_free(addr, port):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(family(addr), kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def stub_address(port=53):
    """A loopback address of this worker's block where PORT is free over UDP and TCP."""
    base = 10 + (worker_index() % 6) * BLOCK
    for _ in range(BLOCK):
        addr = f"127.0.53.{base + _next[0] % BLOCK}"
        _next[0] += 1
        if port_free(addr, port):
            return addr
    raise RuntimeError(f"no free address in 127.0.53.{base}-{base + BLOCK - 1}")


def free_port(addr):
    """A port free over UDP and TCP on ADDR (for unbound, dnsmasq, socket activation)."""
    for _ in range(50):
        with socket.socket(family(addr), socket.SOCK_DGRAM) as s:
            s.bind((addr, 0))
            port = s.getsockname()[1]
        if port_free(addr, port):
            return port
    raise RuntimeError(f"no free port on {addr}")


def wait_for(pred, timeout, step=0.05):
    """Polls PRED until it is true or TIMEOUT seconds passed; its last value."""
    return fleethelp.wait_for(pred, timeout, step)


# Processes: ec2cached run, unbound, dnsmasq. Stopped with a bounded wait, killed otherwise.

class Proc:
    """A background process logging to LOG; `stop()` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, argv, log, env=None, pass_fds=(), **kw):
        self.log_path = Path(log)
        with open(self.log_path, "ab") as out:
            self.p = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, pass_fds=pass_fds, **kw)
        self.pid = self.p.pid

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.p.poll() is None

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=10):
        """SIGTERM, then the exit code; SIGKILL (and None) if it did not stop in time."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return None


def ec2cached_run(config, log, env):
    return Proc([EC2CACHED, "--config", str(config), "run"], log, env=env)


# dig and kdig, as a user reads them.

HEADER = re.compile(r"->>HEADER<<- opcode: (\w+)[,;] status: (\w+)[,;] id: (\d+)")
FLAGS = re.compile(r"^;; [Ff]lags: ([a-z ]*);", re.M)


class Answer:
    """One answer as dig or kdig printed it."""

    def __init__(self, tool, text):
        self.tool, self.text = tool, text
        m = list(HEADER.finditer(text))
        assert m, f"{tool} printed no answer:\n{text}"
        # After a truncated UDP answer, dig retries over TCP and prints that answer last.
        self.opcode, self.status, self.id = m[-1].group(1), m[-1].group(2), int(m[-1].group(3))
        self.flags = set(FLAGS.findall(text)[-1].split())
        body = text[m[-1].start():]
        self.question = self.section(body, "QUESTION")
        self.answers = self.section(body, "ANSWER")
        self.authority = self.section(body, "AUTHORITY")
        size = re.search(r";; MSG SIZE\s+rcvd: (\d+)|;; Received (\d+) B", body)
        self.size = int(size.group(1) or size.group(2)) if size else None
        self.tcp = bool(re.search(r"^;; (SERVER:|From) .*\(TCP\)", body, re.M))
        e = re.search(r"; EDNS: version: (\d+), flags:[^;]*; udp: (\d+)", body) or re.search(
            r";; Version: (\d+); flags: [^;]*; UDP size: (\d+) B", body)
        self.edns = (int(e.group(1)), int(e.group(2))) if e else None

    @staticmethod
    def section(body, name):
        """The records of a section as tuples (owner, ttl, class, type, rdata) (the question:
        (owner, class, type))."""
        m = re.search(rf"^;; {name} SECTION:\n(.*?)(?:\n\n|\n;; [A-Z]|\Z)", body, re.M | re.S)
        if not m:
            return []
        out = []
        for line in m.group(1).splitlines():
            if name == "QUESTION":
                out.append(tuple(line.lstrip(";").split()))
            elif line and not line.startswith(";"):
                f = line.split(None, 4)
                out.append((f[0], int(f[1]), f[2], f[3], f[4]))
        return out

    def rdata(self, rtype=None, section="answers"):
        return [r[4] for r in getattr(self, section) if rtype is None or r[3] == rtype]

    def __repr__(self):
        return f"<{self.tool} answer>\n{self.text}"


def ask(tool, server, name, rtype="A", *opts, port=53, cls=None, timeout=3):
    """Runs dig or kdig against SERVER:PORT (one try, TIMEOUT s); the printed answer, parsed."""
    if tool == "dig":
        argv = ["dig", f"@{server}", "-p", str(port), f"+time={timeout}", "+tries=1", name, rtype]
    else:
        argv = ["kdig", f"@{server}", "-p", str(port), f"+timeout={timeout}", "+retry=0", name, rtype]
    if cls:
        argv.append(cls)
    argv += list(opts)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout * 4 + 5)
    return Answer(tool, r.stdout + r.stderr)


def ask_x(tool, server, address, *opts, port=53):
    """A PTR query for ADDRESS (dig -x / kdig -x)."""
    argv = [tool, f"@{server}", "-p", str(port), "-x", address]
    argv += ["+time=3", "+tries=1"] if tool == "dig" else ["+timeout=3", "+retry=0"]
    r = subprocess.run(argv + list(opts), capture_output=True, text=True, timeout=20)
    return Answer(tool, r.stdout + r.stderr)


# Raw packets, for what dig and kdig do not send.

TYPES = {"A": 1, "NS": 2, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "IXFR": 251, "AXFR": 252, "ANY": 255}


def qname(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(name, rtype="A", qid=None, flags=0x0100, cls=1, questions=None, edns=None):
    """A DNS query message: NAME/RTYPE (QUESTIONS: a list of (name, type) instead), FLAGS as
    the second 16 bits of the header, EDNS: None or (version, payload size)."""
    qid = random.randrange(1 << 16) if qid is None else qid
    qs = questions if questions is not None else [(name, rtype)]
    body = b"".join(qname(n) + struct.pack(">HH", TYPES[t], cls) for n, t in qs)
    ar = b""
    if edns is not None:
        version, size = edns
        ar = b"\0" + struct.pack(">HHBBHH", 41, size, 0, version, 0, 0)
    return struct.pack(">HHHHHH", qid, flags, len(qs), 0, 0, 1 if ar else 0) + body + ar


def header(msg):
    """The header of a DNS message as a dict."""
    qid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", msg[:12])
    return dict(id=qid, qr=flags >> 15, opcode=(flags >> 11) & 15, aa=(flags >> 10) & 1,
                tc=(flags >> 9) & 1, rd=(flags >> 8) & 1, ra=(flags >> 7) & 1, rcode=flags & 15,
                qd=qd, an=an, ns=ns, ar=ar)


def udp(server, port, packet, timeout=1.0):
    """Sends PACKET; the reply, or None when none came within TIMEOUT."""
    with socket.socket(family(server), socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (server, port))
        try:
            return s.recvfrom(65535)[0]
        except socket.timeout:
            return None


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


def tcp(server, port, packets, timeout=3.0):
    """Sends PACKETS on one TCP connection, one after the other's answer; the answers (None
    for one the server closed the connection instead of answering)."""
    out = []
    with socket.create_connection((server, port), timeout=timeout) as s:
        for p in packets:
            s.sendall(struct.pack(">H", len(p)) + p)
            n = recv_exact(s, 2)
            out.append(None if n is None else recv_exact(s, struct.unpack(">H", n)[0]))
    return out


def read_name(msg, off):
    """A (possibly compressed) name at OFF: (text with the final dot, offset after it)."""
    labels, end = [], None
    for _ in range(128):
        n = msg[off]
        if n & 0xC0 == 0xC0:
            end = off + 2 if end is None else end
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        off += 1
        if n == 0:
            break
        labels.append(msg[off:off + n].decode("ascii"))
        off += n
    return ".".join(labels) + ".", (off if end is None else end)


def parse(msg):
    """A whole DNS message: the header's fields, `questions` [(name, type, class)] and the
    sections `answers`, `authority`, `additional` [(owner, type, ttl, rdata)]; rdata is text for
    A, AAAA, NS, PTR, SOA, bytes otherwise."""
    h = header(msg)
    off, qs = 12, []
    for _ in range(h["qd"]):
        name, off = read_name(msg, off)
        t, c = struct.unpack(">HH", msg[off:off + 4])
        off += 4
        qs.append((name, t, c))
    sections = []
    for count in (h["an"], h["ns"], h["ar"]):
        recs = []
        for _ in range(count):
            name, off = read_name(msg, off)
            t, _c, ttl, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
            off += 10
            rd = msg[off:off + rdlen]
            if t == 1:
                v = str(ipaddress.IPv4Address(rd))
            elif t == 28:
                v = str(ipaddress.IPv6Address(rd))
            elif t in (2, 12):
                v = read_name(msg, off)[0]
            elif t == 6:
                mname, o = read_name(msg, off)
                rname, o = read_name(msg, o)
                v = " ".join([mname, rname, *map(str, struct.unpack(">IIIII", msg[o:o + 20]))])
            else:
                v = rd
            off += rdlen
            recs.append((name, t, ttl, v))
        sections.append(recs)
    assert off == len(msg), f"{len(msg) - off} bytes after the last record"
    h.update(questions=qs, answers=sections[0], authority=sections[1], additional=sections[2])
    return h


def rcode_of(server, port, name, rtype="A", timeout=1.0):
    """The rcode of a raw UDP query, or None without an answer."""
    r = udp(server, port, query(name, rtype), timeout)
    return None if r is None else header(r)["rcode"]


# Static Go and musl clients (tests/dns), built once into $CARGO_TARGET_DIR/dns-clients.

def clients_dir():
    target = Path(os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")))
    return target / "dns-clients"


def build_clients():
    """Builds tests/dns/golookup.go (CGO_ENABLED=0) and musllookup.c (musl-gcc -static) unless
    the binary is newer than its source; a lock keeps two pytest-xdist workers from building at
    once. Returns {"go": path, "musl": path}."""
    d = clients_dir()
    d.mkdir(parents=True, exist_ok=True)
    src = ROOT / "tests" / "dns"
    out = {"go": d / "golookup", "musl": d / "musllookup"}
    builds = {
        "go": (src / "golookup.go", lambda tmp: (
            ["go", "build", "-o", str(tmp), str(src / "golookup.go")],
            dict(os.environ, CGO_ENABLED="0", GOFLAGS="-trimpath",
                 GOCACHE=str(d / "gocache"), GOPATH=str(d / "gopath")))),
        "musl": (src / "musllookup.c", lambda tmp: (
            ["musl-gcc", "-static", "-O2", "-Wall", "-o", str(tmp), str(src / "musllookup.c")],
            None)),
    }
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for kind, (source, cmd) in builds.items():
            binary = out[kind]
            if binary.exists() and binary.stat().st_mtime > source.stat().st_mtime:
                continue
            tmp = d / f".{binary.name}.{os.getpid()}.tmp"
            argv, env = cmd(tmp)
            r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, f"{argv}: {r.stdout}{r.stderr}"
            os.replace(tmp, binary)
    return out


def resolve_with(client, resolv_conf, name, timeout=30):
    """Runs CLIENT NAME in a private mount namespace where RESOLV_CONF is /etc/resolv.conf:
    (exit code, stdout lines, stderr)."""
    script = 'mount --bind "$1" /etc/resolv.conf && exec "$2" "$3"'
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                        str(resolv_conf), str(client), name],
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout.split(), r.stderr
