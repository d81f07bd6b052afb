#!/usr/bin/env python3
"""The DNS benchmark (issue 13): the stub of `ec2cached run` (`[dns] listen`) against unbound
serving `ec2cached export --format unbound` and dnsmasq serving `ec2cached export --format hosts`,
with dnsperf, same names, same machine, one run.

    CARGO_TARGET_DIR=/var/cache/nss-ec2/target python3 bench/dns.py

For each fleet size: genfleet.py's fleet, `ec2cached refresh --from-file` into a scratch
directory (interval 30), the two exports, then the three servers, started one after the other
(each waited for until it answers) and then all running, each on its own loopback address and a
free high port (UDP and TCP):

- the stub: `ec2cached run` with `[dns] listen`, interval 86400 and AWS_ENDPOINT_URL on a closed
  loopback port, so every poll fails at once (connection refused; retried with a backoff growing to
  minutes) and the snapshot is never replaced;
- unbound, one thread, `module-config: "iterator"`, the export `include:`d (it is `server:`
  clauses itself), checked by unbound-checkconf first (at 100 000 instances it takes a minute or
  two to load, and drops the records beyond 4096 of the biggest names: after the run, an unbound
  loaded without those names gives its memory for comparison);
- dnsmasq (dnsmasq-base), `--addn-hosts=` the hosts export, `--local=/ec2/`, its default cache
  size (150; names from hosts files are kept apart from the cache and never evicted).

Each is checked before it is measured: a sample of names must give exactly the addresses of the
export. Then, in rounds, each server in turn (the order rotating each round): throughput with
`dnsperf -c 4 -T 1 -q 64 -l SECONDS` (its "Queries per second"), and latency at a fixed rate below
saturation (`-Q RATE -v`: one line per response with its latency; dnsperf has no percentiles, so
p50 and p99 are taken here over every response). Each figure is the best of the rounds (load from
neighbours on a shared VM only adds time). Every response code is counted: a run where anything
but NOERROR came back, or a query was lost, is reported in the table. Then each server's resident
memory (VmRSS, RssAnon, RssFile from /proc/PID/status), and the CPU each used per query during its
best throughput run (utime + stime from /proc/PID/stat, user and sys apart).

Environment: BENCH_DNS_SIZES (default "10 100000"), BENCH_DNS_SECONDS (per dnsperf run, default
10), BENCH_DNS_ROUNDS (default 3), BENCH_DNS_QPS (the latency runs' rate, default 5000),
BENCH_DNS_QUERIES (lines of the query file, default 10000), BENCH_DNS_ADDRS (three loopback
addresses: stub, unbound, dnsmasq; default 127.0.0.161 127.0.0.162 127.0.0.163), BENCH_DNS_PORT
(one port for all three, e.g. 53; default a free high port each), BENCH_OUT (default
docs/benchmarks.md), BENCH_DNS_KEEP=1 (keep the scratch directory: configs, exports, logs).
Quick run: BENCH_DNS_SIZES=10 BENCH_DNS_SECONDS=1 BENCH_DNS_ROUNDS=1 (about
10 s). Binary: EC2CACHED, else $CARGO_TARGET_DIR, ./target or /var/cache/nss-ec2/target. Needs
dnsperf, unbound, dnsmasq; root for a port below 1024.

The section "## DNS: the stub, unbound and dnsmasq (dnsperf)" of BENCH_OUT is replaced (or
appended); every other section is kept.
"""

import os
import platform
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TITLE = "## DNS: the stub, unbound and dnsmasq (dnsperf)"
SIZES = [int(x) for x in os.environ.get("BENCH_DNS_SIZES", "10 100000").split()]
SECONDS = float(os.environ.get("BENCH_DNS_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_DNS_ROUNDS", "3"))
RATE = int(os.environ.get("BENCH_DNS_QPS", "5000"))
NQUERIES = int(os.environ.get("BENCH_DNS_QUERIES", "10000"))
ADDRS = os.environ.get("BENCH_DNS_ADDRS", "127.0.0.161 127.0.0.162 127.0.0.163").split()
PORT = int(os.environ.get("BENCH_DNS_PORT", "0") or 0)
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "docs" / "benchmarks.md"))
SERVERS = ["stub", "unbound", "dnsmasq"]
LABEL = {"stub": "ec2cached stub", "unbound": "unbound", "dnsmasq": "dnsmasq"}
THROUGHPUT = ["-c", "4", "-T", "1", "-q", "64"]
CHECKED = 40  # names whose answers are checked against the export before the run
SMALL = 8  # group and service names queried: at most this many addresses (answer fits 512 bytes)
DNSPERF = ["?"]  # dnsperf's version
TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def find_binary():
    if os.environ.get("EC2CACHED"):
        return Path(os.environ["EC2CACHED"])
    dirs = [Path(os.environ["CARGO_TARGET_DIR"])] if os.environ.get("CARGO_TARGET_DIR") else []
    for t in dirs + [ROOT / "target", Path("/var/cache/nss-ec2/target")]:
        # The floor build (tests/lib.sh: TARGET/<rust target>/release).
        b = t / f"{os.uname().machine}-unknown-linux-gnu/release/ec2cached"
        if b.exists():
            return b
    sys.exit("bench/dns.py: no ec2cached: set CARGO_TARGET_DIR or EC2CACHED")


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem} GiB; kernel {platform.release()}"


def first_line(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return next((line.strip() for line in (r.stdout + r.stderr).splitlines() if line.strip()), "?")


def versions(binary):
    unbound = re.search(r"Version (\S+)", subprocess.run(["unbound", "-V"], capture_output=True,
                                                         text=True).stdout)
    dnsmasq = re.search(r"version (\S+)", first_line(["dnsmasq", "--version"]))
    return {"ec2cached": first_line([str(binary), "--version"]),
            "unbound": unbound.group(1) if unbound else "?",
            "dnsmasq": dnsmasq.group(1) if dnsmasq else "?"}


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def busy_jiffies():
    """All CPUs' busy time (everything but idle and iowait) since boot, in ticks."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(f) - f[3] - f[4]


def cpu_ticks(pid):
    """(utime, stime) of a process (all its threads), in ticks."""
    s = open(f"/proc/{pid}/stat").read()
    f = s[s.rindex(")") + 2:].split()
    return int(f[11]), int(f[12])


def memory(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM", "Threads"):
            out[k] = int(v.split()[0])  # kB, or a count
    return out


def free_port(addr):
    """A port free for both UDP and TCP on addr (the stub, unbound and dnsmasq bind both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((addr, 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((addr, port))
                except OSError:
                    continue
        return port
    raise RuntimeError(f"no free port on {addr}")


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again, nothing listens: connections are refused


# ---------------------------------------------------------------------------------------------
# A minimal DNS client: readiness and the answer check

def query(addr, port, name, qtype, timeout=1.0):
    """(rcode, sorted addresses) of one UDP query, or None without an answer."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(lab)]) + lab.encode() for lab in name.rstrip(".").split("."))
    q += b"\0" + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, (addr, port))
            while True:
                m, _ = s.recvfrom(65535)
                if len(m) >= 12 and struct.unpack(">H", m[:2])[0] == qid:
                    break
        except OSError:
            return None

    def skip(i):
        while True:
            n = m[i]
            if n == 0:
                return i + 1
            if n & 0xC0 == 0xC0:
                return i + 2
            i += n + 1

    flags, qd, an = struct.unpack(">HHH", m[2:8])
    i = 12
    for _ in range(qd):
        i = skip(i) + 4
    got = []
    for _ in range(an):
        i = skip(i)
        t, _, _, ln = struct.unpack(">HHIH", m[i:i + 10])
        i += 10
        if t == qtype == 1:
            got.append(socket.inet_ntop(socket.AF_INET, m[i:i + ln]))
        elif t == qtype == 28:
            got.append(socket.inet_ntop(socket.AF_INET6, m[i:i + ln]))
        i += ln
    return flags & 0xF, sorted(got)


def wait_answer(name, proc, addr, port, qname, qtype, want, limit):
    """Waits until the server answers qname with want (it may still be loading its data)."""
    last = None
    while time.monotonic() - proc.started < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}); log: {tail(proc)}")
        last = query(addr, port, qname, qtype, timeout=0.1)
        if last == (0, want):
            return time.monotonic() - proc.started
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer {qname} with {want} in {limit} s (last: {last}); "
                       f"log: {tail(proc)}")


def tail(proc):
    try:
        return Path(proc.log).read_text()[-2000:]
    except (AttributeError, OSError):
        return "?"


# ---------------------------------------------------------------------------------------------
# The fleet, the exports and the query file

def prepare(binary, n, d):
    fleet = d / "fleet.json"
    with open(fleet, "w") as f:
        subprocess.run([sys.executable, str(ROOT / "bench/genfleet.py"), str(n)], stdout=f, check=True)
    cfg = d / "refresh.toml"
    cfg.write_text(f'snapshot = "{d}/hosts.snap"\ndomain = "ec2"\ninterval = 30\n')
    r = subprocess.run([str(binary), "--config", str(cfg), "refresh", "--from-file", str(fleet)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"refresh: {r.stderr}")
    names = int(re.search(r"(\d+) names", r.stderr).group(1))
    fleet.unlink()
    for fmt in ("unbound", "hosts"):
        r = subprocess.run([str(binary), "--config", str(cfg), "export", "--format", fmt,
                            "--output", str(d / f"export.{fmt}")], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"export --format {fmt}: {r.stderr}")
    log(f"{n} instances: {names} names; exports: unbound {(d / 'export.unbound').stat().st_size} bytes, "
        f"hosts {(d / 'export.hosts').stat().st_size} bytes")
    return cfg, names


def worst_aaaa(hosts, path):
    """A query file of AAAA of the 5 names with the most addresses (the biggest groups), and
    those names with their counts of IPv4 and IPv6 addresses."""
    v4, v6 = {}, {}
    cut = {}
    for raw in open(hosts):
        # The export keeps at most 100 records of a name and type and says what it cut:
        # "#   g1.ec2. A: 100 of 10000 records exported, ...": the real counts.
        m = re.match(r"#\s+(\S+)\. (A|AAAA): \d+ of (\d+) records", raw)
        if m:
            cut[(m.group(1), m.group(2))] = int(m.group(3))
        line = raw.split("#", 1)[0].split()
        for name in line[1:]:
            (v6 if ":" in line[0] else v4)[name] = (v6 if ":" in line[0] else v4).get(name, 0) + 1
    for (name, qt), n in cut.items():
        (v4 if qt == "A" else v6)[name] = n
    top = sorted(v4, key=lambda x: (-v4[x], x))[:5]
    path.write_text("".join(f"{n} AAAA\n" for n in top) * 200)
    return [(n, v4[n], v6.get(n, 0)) for n in top], path


def query_file(hosts, path, rng):
    """NQUERIES lines `name A|AAAA` drawn from the hosts export: numbered names (1.postgres.g1.ec2,
    40 %), instance ids (i-0...ec2, 30 %), group and service names with at most SMALL addresses
    (tphon.ec2, postgres.tphon.ec2; 15 %: at 100 000 instances g1.ec2 has 10 000 and its answer
    would be truncated), AAAA of names with an IPv6 address (15 %). Every one exists: NOERROR.
    Returns the kinds' counts and {(name, qtype): addresses} for the answer check."""
    v4, v6 = {}, {}
    for line in open(hosts):
        line = line.split("#", 1)[0].split()
        if len(line) < 2:
            continue
        for name in line[1:]:
            (v6 if ":" in line[0] else v4).setdefault(name, []).append(line[0])
    numbered = sorted(n for n in v4 if n.split(".", 1)[0].isdigit())
    ids = sorted(n for n in v4 if n.startswith("i-"))
    small = sorted(n for n in v4 if not n.split(".", 1)[0].isdigit() and not n.startswith("i-")
                   and len(v4[n]) + len(v6.get(n, [])) <= SMALL)
    six = sorted(n for n in v6 if len(v4.get(n, [])) + len(v6[n]) <= SMALL)
    kinds = [("numbered", numbered, "A", 40), ("instance id", ids, "A", 30),
             ("group/service", small, "A", 15), ("AAAA", six, "AAAA", 15)]
    kinds = [k for k in kinds if k[1]]
    lines, counts = [], {}
    for kind, pool, qt, weight in kinds:
        k = round(NQUERIES * weight / sum(w for *_, w in kinds))
        counts[kind] = k
        lines += [f"{rng.choice(pool)} {qt}" for _ in range(k)]
    rng.shuffle(lines)
    path.write_text("\n".join(lines) + "\n")
    want = {}
    for line in lines:
        name, qt = line.split()
        want[(name, 1 if qt == "A" else 28)] = sorted(v4[name] if qt == "A" else v6[name])
        if len(want) == CHECKED:
            break
    return counts, want


# ---------------------------------------------------------------------------------------------
# The servers

def spawn(name, cmd, log_path, env=None):
    f = open(log_path, "w")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env)
    f.close()
    p.log = str(log_path)
    p.started = time.monotonic()
    log(f"{name}: pid {p.pid}: {' '.join(cmd)}")
    return p


def start_stub(binary, d, addr, port):
    cfg = d / "run.toml"
    cfg.write_text(f'snapshot = "{d}/hosts.snap"\ndomain = "ec2"\ninterval = 86400\n'
                   f'[dns]\nlisten = ["{addr}:{port}"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{closed_port()}", AWS_ACCESS_KEY_ID="bench",
               AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    return spawn("stub", [str(binary), "--config", str(cfg), "run"], d / "stub.log", env)


def start_unbound(d, addr, port, export="export.unbound", name="unbound"):
    conf = d / f"{name}.conf"
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
    verbosity: 0
    num-threads: 1
    module-config: "iterator"
    do-ip6: no
    access-control: 127.0.0.0/8 allow
remote-control:
    control-enable: no
include: "{d}/{export}"
""")
    r = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"unbound-checkconf {conf}: {r.stdout}{r.stderr}")
    return spawn(name, ["unbound", "-d", "-c", str(conf)], d / f"{name}.log")


def start_dnsmasq(d, addr, port):
    return spawn("dnsmasq", ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                             "--no-hosts", f"--addn-hosts={d}/export.hosts", "--local=/ec2/",
                             f"--listen-address={addr}", "--bind-interfaces", f"--port={port}",
                             "--user=root", "--pid-file=", "--log-facility=-"], d / "dnsmasq.log")


# ---------------------------------------------------------------------------------------------
# dnsperf

def dnsperf(addr, port, qfile, args, d, pid):
    """One dnsperf run against the server with pid: its output, its own CPU (s), the server's
    CPU (s) and the wall time."""
    out = d / "dnsperf.out"
    cmd = ["dnsperf", "-s", addr, "-p", str(port), "-d", str(qfile), "-l", f"{SECONDS:g}", "-t", "2", *args]
    before = cpu_ticks(pid)
    t = time.monotonic()
    with open(out, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t
    after = cpu_ticks(pid)
    server_cpu = ((after[0] - before[0]) / TICK, (after[1] - before[1]) / TICK)  # user, sys
    text = out.read_text()
    if status != 0 or "Queries per second" not in text:
        raise RuntimeError(f"{' '.join(cmd)}: {text[-2000:]}")
    m = re.search(r"^Version (\S+)", text, re.M)
    if m:
        DNSPERF[0] = m.group(1)  # dnsperf says its version only when it runs
    return text, ru.ru_utime + ru.ru_stime, server_cpu, wall


def codes(text):
    m = re.search(r"Response codes:\s*(.*)", text)
    got = dict((c, int(k)) for c, k in re.findall(r"([A-Z]+) (\d+) \(", m.group(1))) if m else {}
    lost = int(re.search(r"Queries lost:\s*(\d+)", text).group(1))
    return got, lost


def throughput(addr, port, qfile, d, pid):
    text, perf_cpu, server_cpu, wall = dnsperf(addr, port, qfile, THROUGHPUT, d, pid)
    qps = float(re.search(r"Queries per second:\s*([\d.]+)", text).group(1))
    done = int(re.search(r"Queries completed:\s*(\d+)", text).group(1))
    got, lost = codes(text)
    return dict(qps=qps, codes=got, lost=lost, done=done, server_cpu=sum(server_cpu), server_user=server_cpu[0],
                server_sys=server_cpu[1], perf_cpu=perf_cpu, wall=wall)


def latency(addr, port, qfile, d, pid):
    text, perf_cpu, server_cpu, wall = dnsperf(addr, port, qfile, ["-Q", str(RATE), "-v"], d, pid)
    lat = sorted(float(x) * 1e6 for x in re.findall(r"^> NOERROR \S+ \S+ ([\d.]+)$", text, re.M))
    got, lost = codes(text)
    if not lat:
        raise RuntimeError(f"no NOERROR response in: {text[-2000:]}")

    def pct(p):
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
    return dict(p50=pct(50), p99=pct(99), n=len(lat), codes=got, lost=lost, server_cpu=sum(server_cpu),
                perf_cpu=perf_cpu, wall=wall)


def measure_size(binary, n, work):
    d = work / f"s{n}"
    d.mkdir(mode=0o755)
    _, names = prepare(binary, n, d)
    qfile = d / "queries.txt"
    mix, want = query_file(d / "export.hosts", qfile, random.Random(13 + n))
    # The worst query of issue 23: AAAA of the biggest group names (most members without IPv6;
    # every getaddrinfo asks AAAA), over UDP: the answer is what 512 bytes hold, or NODATA.
    worst_names, worst_file = worst_aaaa(d / "export.hosts", d / "worst.txt")
    ports = [PORT or free_port(a) for a in ADDRS]
    procs = {}
    try:
        where = dict(zip(SERVERS, zip(ADDRS, ports)))
        start = {"stub": lambda: start_stub(binary, d, *where["stub"]),
                 "unbound": lambda: start_unbound(d, *where["unbound"]),
                 "dnsmasq": lambda: start_dnsmasq(d, *where["dnsmasq"])}
        (qname, qtype), first = next(iter(want.items()))
        load = {}
        for s in SERVERS:  # one after the other: each load time is its own
            procs[s] = start[s]()
            load[s] = wait_answer(s, procs[s], *where[s], qname, qtype, first, limit=600)
            wrong = [(k, v, query(*where[s], *k)) for k, v in want.items()]
            wrong = [w for w in wrong if w[2] != (0, w[1])]
            if wrong:
                raise RuntimeError(f"{s} answers wrong: {wrong[:5]}")
            log(f"{s}: answering on {where[s][0]}:{where[s][1]} after {load[s]:.1f} s; "
                f"{len(want)} names checked against the export")
        busy0, t0, load0 = busy_jiffies(), time.monotonic(), loadavg()
        ours = 0.0
        tp = {s: [] for s in SERVERS}
        lt = {s: [] for s in SERVERS}
        worst = {s: [] for s in SERVERS}
        for r in range(ROUNDS):
            order = SERVERS[r % 3:] + SERVERS[:r % 3]
            for s in order:
                x = throughput(*where[s], qfile, d, procs[s].pid)
                tp[s].append(x)
                y = latency(*where[s], qfile, d, procs[s].pid)
                lt[s].append(y)
                ours += x["perf_cpu"] + x["server_cpu"] + y["perf_cpu"] + y["server_cpu"]
                z = throughput(*where[s], worst_file, d, procs[s].pid)
                worst[s].append(z)
                ours += z["perf_cpu"] + z["server_cpu"]
                log(f"{n} round {r + 1} {s}: AAAA of the biggest groups {z['qps']:.0f} q/s ({z['codes']}, "
                    f"lost {z['lost']}, server CPU {z['server_cpu'] / z['wall']:.0%})")
                log(f"{n} round {r + 1} {s}: {x['qps']:.0f} q/s ({x['codes']}, lost {x['lost']}, "
                    f"server CPU {x['server_cpu'] / x['wall']:.0%}, dnsperf CPU {x['perf_cpu'] / x['wall']:.0%}); "
                    f"at {RATE} q/s p50 {y['p50']:.0f} µs p99 {y['p99']:.0f} µs ({y['codes']}, lost {y['lost']})")
        elapsed = time.monotonic() - t0
        others = max(0.0, (busy_jiffies() - busy0) / TICK - ours) / elapsed
        load1 = loadavg()
        mem = {s: memory(procs[s].pid) for s in SERVERS}
        # unbound keeps at most 4096 records of one name and type (its RRset limit) and says so
        # for every record it drops: the big group and service names (none of them queried).
        dropped = re.findall(r"RRset '(\S+) .*more than (\d+) records, record ignored",
                             Path(procs["unbound"].log).read_text())
        for s in SERVERS:
            if procs[s].poll() is not None:
                raise RuntimeError(f"{s} exited during the run: {tail(procs[s])}")
        try:
            lean = unbound_lean(d, procs, {x for x, _ in dropped}, (qname, qtype, first))
        except (RuntimeError, OSError) as e:  # a side figure: the table stands without it
            log(f"unbound without the big names: {e}")
            lean = None
        return dict(n=n, names=names, mix=mix, tp=tp, lt=lt, worst=worst, worst_names=worst_names,
                    mem=mem, load=load, others=others, lean=lean,
                    dropped=(len(dropped), len({x for x, _ in dropped}), max((x for _, x in dropped), default="")),
                    load0=load0, load1=load1, elapsed=elapsed)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def unbound_lean(d, procs, big, check):
    """unbound's memory without the names it cannot serve whole (more than 4096 records of one
    type), which make most of its load time and memory at 100 000 instances. After the run, the other unbound stopped: (names left out,
    records left out, seconds to answer, /proc status) or None when no name was too big."""
    if not big:
        return None
    procs["unbound"].terminate()
    procs["unbound"].wait()
    out, left = [], 0
    for line in open(d / "export.unbound"):
        m = re.match(r'\s*local-data: "(\S+) ', line)
        if m and m.group(1) in big:
            left += 1
        else:
            out.append(line)
    (d / "export.unbound-lean").write_text("".join(out))
    addr, port = ADDRS[1], PORT or free_port(ADDRS[1])
    procs["unbound-lean"] = p = start_unbound(d, addr, port, "export.unbound-lean", "unbound-lean")
    ready = wait_answer("unbound-lean", p, addr, port, *check, limit=600)
    mem = memory(p.pid)
    log(f"unbound without {len(big)} names ({left} records): answering after {ready:.1f} s, "
        f"RSS {mem['VmRSS'] / 1024:.1f} MiB")
    return len(big), left, ready, mem


# ---------------------------------------------------------------------------------------------
# The report

def answers(runs):
    """'all NOERROR', else what came back: codes and lost queries over every run."""
    tot, lost = {}, 0
    for r in runs:
        for c, k in r["codes"].items():
            tot[c] = tot.get(c, 0) + k
        lost += r["lost"]
    if set(tot) <= {"NOERROR"} and not lost:
        return "all NOERROR"
    return "**" + ", ".join(f"{c} {k}" for c, k in sorted(tot.items())) + (f", lost {lost}" if lost else "") + "**"


def verdict(res, largest):
    """The targets: at every size, issue 23's (throughput and p50 at least unbound's, less memory
    and less CPU a query); at the largest, also issue 13's p99 (at most unbound's)."""
    tp = {s: max(x["qps"] for x in res["tp"][s]) for s in SERVERS}
    p50 = {s: min(x["p50"] for x in res["lt"][s]) for s in SERVERS}
    p99 = {s: min(x["p99"] for x in res["lt"][s]) for s in SERVERS}
    rss = {s: res["mem"][s]["VmRSS"] for s in SERVERS}
    cpu = {s: cpu_per_query(res["tp"][s]) for s in SERVERS}
    checks = [("throughput", tp["stub"] >= tp["unbound"], f"{tp['stub']:.0f} vs {tp['unbound']:.0f} q/s"),
              ("p50", p50["stub"] <= p50["unbound"], f"{p50['stub']:.0f} vs {p50['unbound']:.0f} µs"),
              ("memory", rss["stub"] < rss["unbound"],
               f"{rss['stub'] / 1024:.1f} vs {rss['unbound'] / 1024:.1f} MiB"),
              ("CPU per query", cpu["stub"] < cpu["unbound"],
               f"{cpu['stub']:.1f} vs {cpu['unbound']:.1f} µs")]
    if largest:
        checks.insert(2, ("p99", p99["stub"] <= p99["unbound"],
                          f"{p99['stub']:.0f} vs {p99['unbound']:.0f} µs"))
    return checks


def cpu_per_query(runs):
    """The server's CPU (user + sys) per query answered in its best throughput run, in µs."""
    best = max(runs, key=lambda x: x["qps"])
    return best["server_cpu"] * 1e6 / max(1, best["done"])


def report(results, vers, started):
    w = [TITLE, ""]
    w.append(f"Made by `bench/dns.py` (`bench/run` runs it after `bench/bench.py`; it replaces only this "
             f"section). One run, one machine: each fleet of genfleet.py published with "
             f"`ec2cached refresh --from-file` (interval 30: the TTL), exported with `ec2cached export "
             f"--format unbound` and `--format hosts`, and served at once by the three servers, each "
             f"on its own loopback address:")
    w.append("")
    w.append("- **ec2cached stub**: `ec2cached run` with `[dns] listen` (one thread on its UDP socket, 32 queries a system call), "
             "reading its own copy of the snapshot with the module's trust rules; its AWS endpoint is a closed port and its interval "
             "a day, so it only ever answers from that snapshot. Its memory includes the daemon's (AWS SDK, "
             "async runtime).")
    w.append("- **unbound**: `num-threads: 1`, `module-config: \"iterator\"`, the unbound export "
             "`include:`d (`local-zone: \"ec2.\" static`, `local-data`, `local-data-ptr`).")
    w.append("- **dnsmasq**: `--addn-hosts=` the hosts export, `--local=/ec2/`, default cache size (150: "
             "names from hosts files are stored apart from it and never evicted).")
    w.append("")
    mix = results[0]["mix"]
    w.append(f"Queries: one file of {sum(mix.values())} lines per size, the same for all three, "
             f"names drawn at random from the hosts export: "
             + ", ".join(f"{k} {v}" for k, v in mix.items())
             + f" (group and service names with at most {SMALL} addresses only: at 100 000 "
             f"instances `g1.ec2` has 10 000, an answer truncated over UDP). Every name exists; each "
             f"server's answers to {CHECKED} of them were checked against the export before the run. "
             f"Throughput: `dnsperf {' '.join(THROUGHPUT)} -l {SECONDS:g}` (\"Queries per second\"); "
             f"latency: `dnsperf -Q {RATE} -l {SECONDS:g} -v`, p50 and p99 over every response's "
             f"latency as dnsperf measured it (send to receive, 1 µs resolution). Rounds: {ROUNDS}, "
             f"each server in turn in each (order rotating); each figure is the best of the rounds. RSS: "
             f"/proc/PID/status after the run (anon: heap and stacks; file: mapped files, for the "
             f"stub the snapshot's pages it touched and its binary). CPU/query: the server's "
             f"utime + stime during its best throughput run ÷ queries answered.")
    w.append("")
    w.append(f"- machine: {machine()}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}")
    w.append(f"- versions: {vers['ec2cached']}, unbound {vers['unbound']}, dnsmasq {vers['dnsmasq']}, "
             f"dnsperf {DNSPERF[0]}")
    w.append("- conditions: a shared VM; load average (1, 5, 15 min) and the CPU other work used while "
             "measuring: " + "; ".join(f"{r['n']} instances: {r['load0']} → {r['load1']}, others "
                                      f"{r['others']:.2f} cores on average" for r in results))
    w.append("")
    for res in results:
        w.append(f"### {res['n']} instances ({res['names']} names)")
        w.append("")
        w.append("| server | QPS | p50 µs | p99 µs | RSS MiB | anon / file MiB | CPU µs/query (user + sys) | server CPU | AAAA of the biggest groups, QPS | answers |")
        w.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for s in SERVERS:
            tp, lt, m = res["tp"][s], res["lt"][s], res["mem"][s]
            best = max(tp, key=lambda x: x["qps"])
            per_q = 1e6 / max(1, best["done"])
            cpu_q = (f"{best['server_cpu'] * per_q:.1f} ({best['server_user'] * per_q:.1f} + "
                     f"{best['server_sys'] * per_q:.1f})")
            w.append(f"| {LABEL[s]} | {best['qps']:.0f} | {min(x['p50'] for x in lt):.0f} | "
                     f"{min(x['p99'] for x in lt):.0f} | {m['VmRSS'] / 1024:.1f} | "
                     f"{m['RssAnon'] / 1024:.1f} / {m['RssFile'] / 1024:.1f} | {cpu_q} | "
                     f"{best['server_cpu'] / best['wall']:.0%} | "
                     f"{max(x['qps'] for x in res['worst'][s]):.0f} | {answers(tp + lt + res['worst'][s])} |")
        w.append("")
        w.append("AAAA of the biggest groups: `dnsperf` throughput as above on a file of AAAA queries "
                 "for the five names with the most addresses ("
                 + ", ".join(f"`{nm}` {a4} IPv4 / {a6} IPv6" for nm, a4, a6 in res["worst_names"])
                 + "), the worst case of issue 23 (every getaddrinfo asks AAAA, and most VPCs are "
                 "IPv4-only; counts as the snapshot holds them): the stub's work is bounded by the answer "
                 "(512 bytes over UDP, or NODATA), not by the group; the exports hold at most 100 "
                 "records of a name and type.")
        w.append("")
        perf = max(x["perf_cpu"] / x["wall"] for s in SERVERS for x in res["tp"][s])
        w.append(f"Ready to answer after start (one after the other; unbound after unbound-checkconf): "
                 + ", ".join(f"{LABEL[s]} {res['load'][s]:.1f} s" for s in SERVERS)
                 + f". \"server CPU\": the server's share of one core during its best throughput run; "
                 f"dnsperf itself used up to {perf:.0%} of a core. Spread over the rounds, QPS: "
                 + ", ".join(f"{LABEL[s]} {min(x['qps'] for x in res['tp'][s]):.0f}–"
                             f"{max(x['qps'] for x in res['tp'][s]):.0f}" for s in SERVERS)
                 + "; p99 µs: " + ", ".join(f"{LABEL[s]} {min(x['p99'] for x in res['lt'][s]):.0f}–"
                                          f"{max(x['p99'] for x in res['lt'][s]):.0f}" for s in SERVERS) + ".")
        w.append("")
        k, names, limit = res["dropped"]
        if k:
            w.append(f"unbound dropped {k} records of {names} names (\"RRset ... has more than {limit} records, "
                     f"record ignored\"): it serves at most {limit} addresses of a name, the stub and dnsmasq "
                     f"all of them. None of those names is queried here.")
            w.append("")
        if res["lean"]:
            names, left, ready, m = res["lean"]
            w.append(f"Those {names} names make most of unbound's load time and memory: loaded without "
                     f"them ({left} `local-data` lines left out), after the run, unbound answered after "
                     f"{ready:.1f} s with an RSS of {m['VmRSS'] / 1024:.1f} MiB (anon "
                     f"{m['RssAnon'] / 1024:.1f}).")
            w.append("")
    big = max(r["n"] for r in results)
    for r in sorted(results, key=lambda r: r["n"]):
        checks = verdict(r, r["n"] == big)
        unmet = [c for c, ok, _ in checks if not ok]
        what = "p50 and p99" if r["n"] == big else "p50"
        w.append(f"Target at {r['n']} instances (the stub at least matches unbound's throughput and "
                 f"{what}, with less memory and less CPU a query): "
                 + ("**met**" if not unmet else "**not met** (" + ", ".join(unmet) + ")")
                 + ": " + "; ".join(f"{c} {txt}" for c, _, txt in checks) + ".")
        w.append("")
    return "\n".join(w).rstrip("\n") + "\n"


def write_section(path, section):
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    m = re.search(rf"^{re.escape(TITLE)}\n.*?(?=^## |\Z)", text, flags=re.S | re.M)
    if m:
        text = text[:m.start()] + section + ("\n" if m.end() < len(text) else "") + text[m.end():]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main():
    for tool in ("dnsperf", "unbound", "unbound-checkconf", "dnsmasq"):
        if not shutil.which(tool):
            sys.exit(f"bench/dns.py: no {tool} (Debian packages dnsperf, unbound, dnsmasq-base; "
                     "tests/run installs them, keeping unbound's own service stopped)")
    if len(ADDRS) != 3:
        sys.exit("bench/dns.py: BENCH_DNS_ADDRS: three addresses (stub, unbound, dnsmasq)")
    binary = find_binary()
    vers = versions(binary)
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="nss-ec2-dns."))
    os.chmod(work, 0o755)  # the snapshot's folder: no one else may write it
    try:
        results = [measure_size(binary, n, work) for n in SIZES]
    finally:
        if os.environ.get("BENCH_DNS_KEEP"):
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = report(results, vers, started)
    print(text)
    write_section(OUT, text)
    log(f"written to {OUT}")


if __name__ == "__main__":
    main()
