#!/usr/bin/env python3
"""The zones and accounts benchmark (issue 12): what [[zone]] and [[account]] cost.

    bench/zones.py gen N > fleet.json   # genfleet.py's fleet, plus Name and team tags, az, VPC
    bench/zones.py toml N               # the first N (1..5) [[zone]] entries below, as TOML
    bench/zones.py accounts [--per 2500] [--interval 25] [--sweeps 4]
    bench/zones.py refresh [--sizes 10000,100000] [--runs 3]
    bench/zones.py lookups [--size 100000] [--iter 100000]
    bench/zones.py report [--write]
    bench/zones.py all [--write]        # accounts, refresh, lookups, report

- accounts: moto's server (bench/fleetmoto.py: pages of 1 000 instances, as on AWS) with 2
  accounts x 2 regions x --per instances, each account reached through AssumeRole (moto acts in
  the role's account), and `ec2cached run` (five zones, two [[account]] entries, one labelled)
  for --sweeps sweeps after the first, through a counting proxy on loopback (AWS_ENDPOINT_URL: EC2
  and STS both): DescribeInstances per sweep, by account and region; AssumeRole over the run and
  the lifetime of the credentials moto returned; names of both accounts through the module.
- refresh: `ec2cached refresh --from-file` at each size, the default zone (no [[zone]]) on
  genfleet.py's fleet and on this script's (the same fleet with more tags and fields), and five
  zones on this script's: CPU (user, sys), wall, peak RSS, names, snapshot bytes; best of --runs.
- lookups: bench/bench.py at one size (BENCH_SIZES), twice in a row: the default zone, then
  BENCH_ZONES=5, each written to a scratch file (never docs/benchmarks.md).
- report: the "## Zones and accounts" section from the saved results (--results, default
  /tmp/nss-ec2-zones); --write replaces or appends it in docs/benchmarks.md (--out), keeping every
  other section (bench/bench.py and bench/fleet keep this one).

Paths as bench/fleet: EC2CACHED, NSS_EC2_LIBDIR, else $CARGO_TARGET_DIR, ./target or
/var/cache/nss-ec2/target. `accounts` needs boto3 and moto[server] (the tests' venv, NSS_EC2_VENV or
~/.cache/nss-ec2/venv; the script re-executes itself with it); `lookups` needs root (bench.py).
"""

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The zones of the benchmark, in config order; BENCH_ZONES=N (bench/bench.py) takes the first N.
ZONES = [
    dict(key="security-group", services=True),  # the default zone, written out
    dict(key="tag:Name", under="name"),
    dict(key="az", under="az"),
    dict(key="tag:team", services=True),  # at the top, like the groups: team values are not groups
    dict(key="vpc", under="vpc"),
]
TEAMS = ["shop", "data", "search", "infra", "pay", "ads", "ml", "edge"]
AZS = ["us-east-1a", "us-east-1b", "us-east-1c"]


def zones_toml(n):
    """The first N [[zone]] entries as TOML (N = 0: none, the default zone)."""
    if not 0 <= n <= len(ZONES):
        raise ValueError(f"zones: 0 to {len(ZONES)}, not {n}")
    out = []
    for z in ZONES[:n]:
        out.append("\n[[zone]]")
        out += [f"{k} = {json.dumps(v)}" for k, v in z.items()]
    return "\n".join(out) + ("\n" if out else "")


def zones_text(n):
    """The zones in words, for reports."""
    def one(z):
        s = f"`{z['key']}`" + (f" under `{z['under']}`" if z.get("under") else " at the top")
        return s + (" with services" if z.get("services") else "")
    return "; ".join(one(z) for z in ZONES[:n])


def gen(n):
    """genfleet.py's fleet of N (same instances, groups, services, so the same names by the
    default zone), each instance also with a Name tag (node-NNNNNN, unique), a team tag (TEAMS,
    round robin), an availability zone (AZS, by reservation of 100) and a VPC (4, by 1 000)."""
    doc = json.loads(subprocess.run([sys.executable, str(ROOT / "bench/genfleet.py"), str(n)],
                                    check=True, capture_output=True, text=True).stdout)
    i = 0
    for r in doc["Reservations"]:
        for inst in r["Instances"]:
            inst["Tags"] += [{"Key": "Name", "Value": f"node-{i:06d}"},
                             {"Key": "team", "Value": TEAMS[i % len(TEAMS)]}]
            inst["Placement"] = {"AvailabilityZone": AZS[(i // 100) % len(AZS)]}
            inst["VpcId"] = f"vpc-{(i // 1000) % 4:017x}"
            i += 1
    return doc


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def target_dirs():
    out = []
    if os.environ.get("CARGO_TARGET_DIR"):
        out.append(Path(os.environ["CARGO_TARGET_DIR"]))
    return out + [ROOT / "target", Path("/var/cache/nss-ec2/target")]


def find_binary():
    if os.environ.get("EC2CACHED"):
        return Path(os.environ["EC2CACHED"])
    for t in target_dirs():
        # The floor build (tests/lib.sh: TARGET/<rust target>/release).
        b = t / f"{os.uname().machine}-unknown-linux-gnu/release/ec2cached"
        if b.exists():
            return b
    sys.exit("bench/zones.py: no ec2cached: set EC2CACHED")


def find_libdir():
    if os.environ.get("NSS_EC2_LIBDIR"):
        return Path(os.environ["NSS_EC2_LIBDIR"])
    for t in target_dirs():
        if (t / "nss/libnss_ec2.so.2").exists():
            return t / "nss"
    sys.exit("bench/zones.py: no libnss_ec2.so.2: set NSS_EC2_LIBDIR")


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem} GiB; kernel {platform.release()}"


def version(binary):
    return subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()


def private_dir(prefix):
    d = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(d, 0o755)  # the module refuses snapshots in folders others can write
    return d


# ---------------------------------------------------------------------------------------------
# refresh: CPU of `ec2cached refresh --from-file` by zones

def refresh_once(binary, cfg, fleet, snap):
    t = time.monotonic()
    p = subprocess.Popen([str(binary), "--config", str(cfg), "refresh", "--from-file", str(fleet)],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t
    err = p.stderr.read()
    if status != 0:
        raise RuntimeError(err)
    return dict(wall=wall, user=ru.ru_utime, sys=ru.ru_stime, cpu=ru.ru_utime + ru.ru_stime,
                rss_mb=ru.ru_maxrss / 1024, names=int(re.search(r"(\d+) names", err).group(1)),
                size=snap.stat().st_size)


def cmd_refresh(a):
    binary = find_binary()
    work = private_dir("nss-ec2-zones-refresh.")
    rows = []
    try:
        for n in a.sizes:
            plain, rich = work / f"plain{n}.json", work / f"zones{n}.json"
            with open(plain, "w") as f:
                subprocess.run([sys.executable, str(ROOT / "bench/genfleet.py"), str(n)], stdout=f, check=True)
            # In a child, as genfleet.py: a process forked from one holding the fleet in memory
            # would carry that memory in its peak RSS (ru_maxrss survives exec).
            with open(rich, "w") as f:
                subprocess.run([sys.executable, __file__, "gen", str(n)], stdout=f, check=True)
            cases = [("default zone (no [[zone]])", "genfleet.py", plain, 0),
                     ("default zone (no [[zone]])", "zones.py gen", rich, 0),
                     ("five [[zone]] entries", "zones.py gen", rich, 5)]
            runs = {k: [] for k in range(len(cases))}
            for _ in range(a.runs):  # in rounds: a neighbour's load spell hits every case alike
                for k, (_, _, fleet, z) in enumerate(cases):
                    d = work / f"s{n}-{k}"
                    d.mkdir(mode=0o755, exist_ok=True)
                    cfg = d / "ec2cached.toml"
                    cfg.write_text(f'snapshot = "{d}/hosts.snap"\nready_tag = "af-status=ready"\n'
                                   + zones_toml(z))
                    runs[k].append(refresh_once(binary, cfg, fleet, d / "hosts.snap"))
            for k, (zones, src, fleet, z) in enumerate(cases):
                best = min(runs[k], key=lambda r: r["cpu"])
                med = sorted(r["cpu"] for r in runs[k])[len(runs[k]) // 2]
                row = dict(n=n, zones=zones, nzones=z, input=src, input_bytes=fleet.stat().st_size,
                           cpu_median=med, runs=len(runs[k]),
                           rss_mb=max(r["rss_mb"] for r in runs[k]), **{k2: best[k2] for k2 in
                                                                        ("wall", "user", "sys", "cpu",
                                                                         "names", "size")})
                rows.append(row)
                log(f"refresh {n} {zones} on {src}: CPU {row['cpu']:.2f} s (user {row['user']:.2f}, "
                    f"sys {row['sys']:.2f}; median {med:.2f}), wall {row['wall']:.2f} s, "
                    f"{row['names']} names, {row['size']} bytes, peak RSS {row['rss_mb']:.0f} MB")
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    save(a, "refresh", dict(rows=rows, runs=a.runs, version=version(binary), machine=machine(),
                            date=time.time()))


# ---------------------------------------------------------------------------------------------
# accounts: `ec2cached run` on moto, 2 accounts x 2 regions, requests counted by a proxy

ACCOUNTS = [("111122223333", "prod"), ("444455556666", None)]  # (account, label)
REGIONS = ["us-east-1", "eu-west-1"]
GROUPS = [f"g{i}" for i in range(10)]
SERVICES = ["redis", "postgres", "web", "queue", "cache"]
AMI = "ami-12c6146b"
PER_RESERVATION = 100


def role_arn(acct):
    return f"arn:aws:iam::{acct}:role/ec2cached-read"


class CountingProxy:
    """A pass-through HTTP proxy on loopback in front of moto (as tests/e2e/faultproxy.FaultProxy,
    without faults) that counts every request by Action, signing region and account (the access
    key's: the host's, or one AssumeRole handed out), and keeps each AssumeRole's request and the
    Expiration of the credentials moto returned."""

    def __init__(self, upstream):
        import collections
        import http.server
        import threading
        import urllib.error
        import urllib.parse
        import urllib.request

        self.upstream = upstream
        self.calls = collections.Counter()  # (action, region, account)
        self.assumes = []  # dict(t, role_arn, duration, expiration, key)
        self.key_account = {}  # access key id -> account
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
                action = form.get("Action", [""])[0]
                auth = self.headers.get("Authorization") or ""
                m = re.search(r"Credential=([^/]+)/[^/]+/([^/]+)/", auth)
                key, region = (m.group(1), m.group(2)) if m else ("", "")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                req = urllib.request.Request(proxy.upstream + self.path, data=body, headers=headers, method="POST")
                t = time.time()
                try:
                    with urllib.request.urlopen(req, timeout=300) as r:
                        status, data, ctype = r.status, r.read(), r.headers.get("Content-Type", "text/xml")
                except urllib.error.HTTPError as e:
                    status, data, ctype = e.code, e.read(), "text/xml"
                with proxy.lock:
                    proxy.calls[(action, region, proxy.key_account.get(key, "host"))] += 1
                    if action == "AssumeRole":
                        text = data.decode(errors="replace")
                        exp = re.search(r"<Expiration>(.*?)</Expiration>", text)
                        ak = re.search(r"<AccessKeyId>(.*?)</AccessKeyId>", text)
                        arn = form.get("RoleArn", [""])[0]
                        acct = arn.split(":")[4] if arn.count(":") >= 5 else "?"
                        if ak:
                            proxy.key_account[ak.group(1)] = acct
                        proxy.assumes.append(dict(t=t, role_arn=arn, status=status,
                                                  duration=form.get("DurationSeconds", [None])[0],
                                                  expiration=exp.group(1) if exp else None))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return dict(self.calls), list(self.assumes)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _venv_python():
    venv = os.environ.get("NSS_EC2_VENV") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nss-ec2", "venv")
    return os.path.join(venv, "bin", "python")


def need_moto():
    """Re-executes this script with the tests' venv when this Python has no boto3 or moto."""
    try:
        import boto3  # noqa: F401
        import moto  # noqa: F401
    except ImportError:
        py = _venv_python()
        if os.access(py, os.X_OK) and os.path.realpath(sys.executable) != os.path.realpath(py):
            os.execv(py, [py, __file__, *sys.argv[1:]])
        sys.exit(f"bench/zones.py: needs boto3 and moto[server] (the tests' venv {py}: tests/run makes it)")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clients(url, acct, region):
    import boto3
    creds = dict(aws_access_key_id="testing", aws_secret_access_key="testing")
    sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1", **creds)
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{acct}:role/setup", RoleSessionName="setup")["Credentials"]
    return boto3.client("ec2", endpoint_url=url, region_name=region, aws_access_key_id=c["AccessKeyId"],
                        aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])


def build_fleet(url, per):
    """PER instances in each account and region (straight to moto, not through the proxy): 100 a
    reservation, groups g0..g9 and services by reservation (as bench/fleet), tags Name (bNN:
    one per reservation) and team, each account and region its own VPC and address block.
    Returns {(acct, region): [(instance id, address, group, service)]}."""
    out = {}
    k = 0
    for acct, _ in ACCOUNTS:
        for region in REGIONS:
            k += 1
            ec2 = clients(url, acct, region)
            vpc = ec2.create_vpc(CidrBlock=f"10.{k}.0.0/16")["Vpc"]["VpcId"]
            subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{k}.0.0/16")["Subnet"]["SubnetId"]
            sgs = {g: ec2.create_security_group(GroupName=g, Description=g, VpcId=vpc)["GroupId"]
                   for g in GROUPS}
            got = []
            for b in range((per + PER_RESERVATION - 1) // PER_RESERVATION):
                count = min(PER_RESERVATION, per - b * PER_RESERVATION)
                group, service = GROUPS[b % len(GROUPS)], SERVICES[(b // len(GROUPS)) % len(SERVICES)]
                tags = {"services": service, "Name": f"b{b:02d}", "team": TEAMS[b % len(TEAMS)]}
                r = ec2.run_instances(ImageId=AMI, MinCount=count, MaxCount=count, SubnetId=subnet,
                                      SecurityGroupIds=[sgs[group]],
                                      TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                          {"Key": k2, "Value": v} for k2, v in tags.items()]}])
                got += [(i["InstanceId"], i["PrivateIpAddress"], group, service) for i in r["Instances"]]
            out[(acct, region)] = got
            log(f"fleet: {len(got)} instances in {acct} {region}")
    return out


def getent(libdir, snap, name):
    env = dict(os.environ, NSS_EC2_SNAPSHOT=str(snap), LD_LIBRARY_PATH=str(libdir))
    r = subprocess.run(["getent", "-s", "hosts:ec2", "ahostsv4", name], env=env, capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        return None
    out = []
    for line in r.stdout.splitlines():
        a = line.split()[0]
        if a not in out:
            out.append(a)
    return out


def cmd_accounts(a):
    need_moto()
    import urllib.request
    import moto

    binary, libdir = find_binary(), find_libdir()
    work = private_dir("nss-ec2-zones-accounts.")
    procs = []
    started = time.time()
    proxy = None
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with open(work / "moto.log", "wb") as out:
            procs.append(subprocess.Popen([sys.executable, str(ROOT / "bench/fleetmoto.py"), "-H", "127.0.0.1",
                                           "-p", str(port)], stdout=out, stderr=subprocess.STDOUT))
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("moto did not start")
        t = time.monotonic()
        fleet = build_fleet(url, a.per)
        build_s = time.monotonic() - t
        log(f"fleet of {sum(map(len, fleet.values()))} instances built in {build_s:.0f} s")

        proxy = CountingProxy(url)
        snap = work / "hosts.snap"
        cfg = work / "ec2cached.toml"
        accounts = "".join(f'\n[[account]]\nrole_arn = "{role_arn(acct)}"\n' + (f'label = "{label}"\n' if label else "")
                           for acct, label in ACCOUNTS)
        cfg.write_text(f'snapshot = "{snap}"\nregions = {json.dumps(REGIONS)}\ninterval = {a.interval}\n'
                       f'api_timeout = {a.api_timeout}\n' + zones_toml(5) + accounts)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ENDPOINT_URL=proxy.url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
        with open(work / "ec2cached.log", "wb") as out:
            daemon = subprocess.Popen([str(binary), "--config", str(cfg), "run"], env=env, stdout=out,
                                      stderr=subprocess.STDOUT)
        procs.append(daemon)
        t_run = time.time()
        status_path = Path(str(snap) + ".status")
        sweeps, last = [], None
        deadline = time.monotonic() + a.limit
        while len(sweeps) < a.sweeps + 1:
            if daemon.poll() is not None:
                raise RuntimeError("ec2cached run exited: " + (work / "ec2cached.log").read_text()[-2000:])
            if time.monotonic() > deadline:
                log(f"time limit: {len(sweeps)} sweeps")
                break
            try:
                st = json.loads(status_path.read_text())
            except (OSError, ValueError):
                st = {}
            if st.get("last_success") and st.get("last_success") != last:
                last = st["last_success"]
                calls, assumes = proxy.snapshot()
                sweeps.append(dict(seen=time.time(), status=st, calls=calls, assumes=len(assumes)))
                log(f"sweep {len(sweeps)}: {st.get('requests')} requests, {st.get('instances')} instances, "
                    f"{st.get('names')} names, {st.get('sweep_ms')} ms; proxy: "
                    f"{sum(v for (ac, _, _), v in calls.items() if ac == 'DescribeInstances')} DescribeInstances, "
                    f"{len(assumes)} AssumeRole so far")
            time.sleep(0.25)
        t_end = time.time()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=120)
        calls, assumes = proxy.snapshot()
        failures = json.loads(status_path.read_text()).get("consecutive_failures")

        # Requests per sweep, by account and region: differences between sweep completions (a
        # sweep's requests all fall between the completion before it and its own).
        def describes(c):
            out = {}
            for (ac, region, acct), v in c.items():
                if ac == "DescribeInstances":
                    out[f"{acct} {region}"] = out.get(f"{acct} {region}", 0) + v
            return out

        per_sweep = []
        prev = {}
        for s in sweeps:
            d = describes(s["calls"])
            per_sweep.append({k: d.get(k, 0) - prev.get(k, 0) for k in sorted(set(d) | set(prev))})
            prev = d
        actions = {}
        for (ac, region, acct), v in calls.items():
            actions[ac] = actions.get(ac, 0) + v
        lifetimes = []
        from datetime import datetime
        for x in assumes:
            if x["expiration"]:
                exp = datetime.fromisoformat(x["expiration"].replace("Z", "+00:00")).timestamp()
                lifetimes.append(round(exp - x["t"]))

        # Names of both accounts, through the module (getent, NSS_EC2_SNAPSHOT, LD_LIBRARY_PATH).
        checks = []

        def check(name, want, what):
            got = getent(libdir, snap, name)
            ok = got is not None and sorted(got) == sorted(want)
            checks.append(dict(name=name, what=what, want=len(want), got=None if got is None else len(got), ok=ok))
            log(f"{'ok ' if ok else 'BAD'} {name}: {what}: {len(want)} wanted, {None if got is None else len(got)} answered")

        for (acct, region), insts in fleet.items():
            i, ip, _, _ = insts[-1]
            check(f"{i}.ec2", [ip], f"instance id, account {acct}, {region}")
        for acct, label in ACCOUNTS:
            dom = f"{label}.ec2" if label else "ec2"
            members = [x for r in REGIONS for x in fleet[(acct, r)]]
            g1 = [ip for _, ip, g, _ in members if g == "g1"]
            check(f"g1.{dom}", g1, f"group g1, account {acct} ({label or 'unlabelled'}), both regions")
            pg = [ip for _, ip, g, s in members if g == "g1" and s == "postgres"]
            check(f"postgres.g1.{dom}", pg, f"service postgres in g1, account {acct}")
        top = sweeps[-1]["status"] if sweeps else {}
        after_first = len(assumes) - sweeps[0]["assumes"] if sweeps else None
        res = dict(per=a.per, interval=a.interval, api_timeout=a.api_timeout, build_s=build_s,
                   run_s=t_end - t_run, sweeps=len(sweeps), per_sweep=per_sweep,
                   status_requests=[s["status"].get("requests") for s in sweeps],
                   sweep_ms=[s["status"].get("sweep_ms") for s in sweeps],
                   instances=top.get("instances"), names=top.get("names"), problems=top.get("problems"),
                   actions=actions, calls=[[list(k), v] for k, v in sorted(calls.items())],
                   assumes=assumes, assumes_after_first_sweep=after_first, lifetimes=lifetimes,
                   sweep_seen=[s["seen"] - t_run for s in sweeps], exit=code, failures=failures, checks=checks,
                   snapshot_bytes=snap.stat().st_size, version=version(binary), moto=moto.__version__,
                   machine=machine(), date=time.time(), whole_s=time.time() - started,
                   config=cfg.read_text())
        save(a, "accounts", res)
        log(f"per sweep: {per_sweep}; actions over the run: {actions}; AssumeRole: {assumes}")
    finally:
        if proxy:
            proxy.close()
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if a.keep:
            log(f"kept {work}")
        else:
            import shutil
            shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# lookups: bench/bench.py at one size, one zone then five

def parse_bench(text, n):
    """From a bench.py report: the AF_UNSPEC row at N instances, first use, memory, snapshot
    bytes. Reports without a "floor hit" column (older ones) give the floor as None."""
    sec = text.split("## Lookups by fleet size, AF_UNSPEC", 1)[1].split("\n## ", 1)[0]
    head = [c.strip() for c in next(l for l in sec.splitlines() if l.startswith("| instances")).strip("|").split("|")]
    row = next(l for l in sec.splitlines() if l.startswith(f"| {n} |"))
    cells = dict(zip(head, [c.strip() for c in row.strip("|").split("|")]))
    p50 = lambda c: float(cells[c].split("/")[0]) if c in cells else None
    out = dict(names=int(cells["names"]), ec2=p50("ec2 hit"), ec2_miss=p50("ec2 miss"), floor=p50("floor hit"),
               ratio=float(cells["ec2 ÷ floor"]), ec2_p99=float(cells["ec2 hit"].split("/")[1]))
    m = re.search(rf"^\| {n} \| [\d.]+ \| [\d.]+ \| \d+ \| (\d+) \|", text.split("## The daemon", 1)[1], re.M)
    out["snapshot_bytes"] = int(m.group(1)) if m else None
    fu = re.search(rf"^\| {n} \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", text.split("## A new process", 1)[1], re.M)
    out["first_use"] = float(fu.group(2)) if fu else None
    mem = re.search(rf"^\| {n} \| (\d+) \|", text.split("## Memory per process", 1)[1], re.M)
    out["dirty_kib"] = int(mem.group(1)) if mem else None
    out["date"] = re.search(r"^- date: (.*?);", text, re.M).group(1)
    return out


def cmd_lookups(a):
    """bench.py at one size, default zone and BENCH_ZONES=5 in turn, --pairs times, the order
    swapped every pair (0 5, 5 0, ...): a drift in the machine's load does not favour one."""
    runs = []
    for k in range(a.pairs):
        for z in ((0, 5) if k % 2 == 0 else (5, 0)):
            out = Path(a.scratch) / f"bench-{a.size}-zones{z}-{k + 1}.md"
            if out.exists():
                out.unlink()
            env = dict(os.environ, BENCH_SIZES=str(a.size), BENCH_ITER=str(a.iter), BENCH_OUT=str(out))
            env.setdefault("CARGO_TARGET_DIR", str(find_binary().parents[1]))
            env.pop("BENCH_ZONES", None)
            if z:
                env["BENCH_ZONES"] = str(z)
            log(f"bench.py: BENCH_SIZES={a.size} BENCH_ITER={a.iter} BENCH_ZONES={z or '(unset)'} BENCH_OUT={out}")
            t = time.monotonic()
            r = subprocess.run([sys.executable, str(ROOT / "bench/bench.py")], env=env, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(r.stderr[-3000:])
            runs.append(dict(parse_bench(out.read_text(), a.size), zones=z, pair=k + 1, out=str(out),
                             seconds=time.monotonic() - t))
            log(f"zones {z}: {runs[-1]}")
    committed = None
    try:
        committed = parse_bench((ROOT / "docs/benchmarks.md").read_text(), a.size)
    except (StopIteration, IndexError, KeyError, AttributeError, ValueError):
        pass
    save(a, "lookups", dict(size=a.size, iter=a.iter, pairs=a.pairs, runs=runs, committed=committed,
                            machine=machine(), date=time.time()))


# ---------------------------------------------------------------------------------------------
# results and report

def save(a, name, data):
    d = Path(a.results)
    d.mkdir(parents=True, exist_ok=True)
    # Which build ran (binaries are rebuilt under a long run's feet): the binary's mtime.
    data.setdefault("binary_built", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(find_binary().stat().st_mtime)))
    (d / f"{name}.json").write_text(json.dumps(data, indent=1))
    log(f"saved {d / (name + '.json')}")


def load(a, name):
    p = Path(a.results) / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def report(a):
    acc, ref, lk = load(a, "accounts"), load(a, "refresh"), load(a, "lookups")
    w = []
    w.append("## Zones and accounts")
    w.append("")
    w.append("Made by `bench/zones.py` (issue 12): what `[[zone]]` and `[[account]]` cost. The five zones, in config "
             f"order: {zones_text(5)}. `bench/zones.py gen N` is `bench/genfleet.py N` (same instances, "
             "groups and services) plus, per instance, a unique Name tag, a team tag (8 teams), an "
             "availability zone (3, by reservation) and a VPC (4, by 1 000 instances). `bench/zones.py all --write` "
             "makes every part below and writes this section (about 20 minutes; `accounts`, `refresh`, "
             "`lookups` one by one, then `report --write`); `bench/run` and `bench/fleet --write` keep it.")
    w.append("")
    any_ = acc or ref or lk
    if any_:
        dates = ", ".join(f"{what} {time.strftime('%Y-%m-%d %H:%M', time.gmtime(x['date']))}"
                          for what, x in (("accounts", acc), ("refresh", ref), ("lookups", lk)) if x)
        w.append(f"- machine: {any_['machine']}; {(acc or ref or {}).get('version', '')}"
                 + (f"; moto {acc['moto']}" if acc else ""))
        w.append(f"- dates (UTC, each part's end): {dates}")
        built = ", ".join(f"{what} {x['binary_built']}" for what, x in (("accounts", acc), ("refresh", ref),
                                                                         ("lookups", lk)) if x and x.get("binary_built"))
        if built:
            w.append(f"- `ec2cached` binary used, by its mtime (UTC): {built}")
        w.append("")
    if acc:
        n_total = acc["per"] * len(ACCOUNTS) * len(REGIONS)
        pages = -(-acc["per"] // 1000)
        w.append("### Two accounts × two regions on moto: requests")
        w.append("")
        w.append(f"`bench/zones.py accounts --per {acc['per']} --interval {acc['interval']}`: moto's server "
                 f"(`bench/fleetmoto.py`: pages of 1 000 instances, as on AWS) with {acc['per']} instances in "
                 f"each of 2 accounts × 2 regions ({n_total} in all; "
                 f"account {ACCOUNTS[0][0]} labelled `{ACCOUNTS[0][1]}`, account {ACCOUNTS[1][0]} unlabelled, "
                 "both through `role_arn`: moto's AssumeRole acts in the role's account; regions "
                 f"{' and '.join(REGIONS)}), the five zones, and `ec2cached run` (interval {acc['interval']} s, "
                 f"api_timeout {acc['api_timeout']} s) for {acc['sweeps']} sweeps ({acc['run_s'] / 60:.1f} min). "
                 "Its AWS_ENDPOINT_URL, for EC2 and STS alike, was a counting proxy on loopback in front of "
                 "moto (`CountingProxy` in bench/zones.py: every request by Action, signing region and the "
                 "account of its access key; each AssumeRole's answer).")
        w.append("")
        dl = [sum(s.values()) for s in acc["per_sweep"]]
        keys = sorted({k for s in acc["per_sweep"] for k in s})
        w.append("| sweep | " + " | ".join(f"DescribeInstances, {k}" for k in keys) + " | total | `requests` in status |")
        w.append("|---:|" + "---:|" * (len(keys) + 2))
        for k, (s, req) in enumerate(zip(acc["per_sweep"], acc["status_requests"]), 1):
            w.append(f"| {k} | " + " | ".join(str(s.get(x, 0)) for x in keys) + f" | {sum(s.values())} | {req} |")
        w.append("")
        n_roles = len({x["role_arn"] for x in acc["assumes"]})
        life = acc["lifetimes"][0] if acc["lifetimes"] else None
        durs = sorted({str(x["duration"]) for x in acc["assumes"] if x["duration"]})
        durs = ", ".join(durs) if durs else "none (the SDK's default; moto's is 3600 s)"
        offsets = ", ".join(f"{x['t'] - acc['assumes'][0]['t']:.1f} s" for x in acc["assumes"])
        other = {k: v for k, v in acc["actions"].items() if k not in ("DescribeInstances", "AssumeRole")}
        w.append(f"- DescribeInstances per sweep: {'/'.join(map(str, sorted(set(dl))))} "
                 f"(wanted: ceil({acc['per']}/1000) = {pages} pages × {len(ACCOUNTS) * len(REGIONS)} "
                 f"account-regions = {pages * len(ACCOUNTS) * len(REGIONS)}); over the run "
                 f"{acc['actions'].get('DescribeInstances', 0)} for {acc['sweeps']} sweeps (a sweep cut short by "
                 "SIGTERM may add its first pages).")
        after = acc.get("assumes_after_first_sweep")
        w.append(f"- AssumeRole over the run: **{acc['actions'].get('AssumeRole', 0)}** for {n_roles} role "
                 f"account(s) ({', '.join(x['role_arn'] for x in acc['assumes'])}), at {offsets} from the "
                 "first (each when the sweep first reached its account)"
                 + (f"; {after} after the first sweep completed" if after is not None else "")
                 + f": none per sweep or per region. DurationSeconds sent: {durs}; the credentials moto returned "
                 f"expire {life} s after issue"
                 + (f", so about {n_roles * 3600 / life:.0f} AssumeRole per hour for {n_roles} role accounts "
                    "(accounts × 3600 / lifetime), whatever the interval or the number of regions."
                    if life else "."))
        w.append(f"- other API calls: {json.dumps(other) if other else 'none'}.")
        med = sorted(acc["sweep_ms"])[len(acc["sweep_ms"]) // 2] / 1000 if acc["sweep_ms"] else float("nan")
        w.append(f"- the snapshot: {acc['instances']} instances, {acc['names']} names, {acc['snapshot_bytes']} bytes; "
                 f"problems: {len(acc['problems'] or [])}; a sweep of {n_total} instances on moto: median "
                 f"{med:.0f} s (`sweep_ms`; moto serializes every instance in Python); building the fleet: "
                 f"{acc['build_s']:.0f} s; `run` exited {acc['exit']} on SIGTERM.")
        ok = sum(c["ok"] for c in acc["checks"])
        w.append(f"- names through the module (`getent -s hosts:ec2 ahostsv4 NAME` with NSS_EC2_SNAPSHOT and "
                 f"LD_LIBRARY_PATH): {ok} of {len(acc['checks'])} answer exactly the expected instances: "
                 + "; ".join(f"`{c['name']}` ({c['what']}: {c['got']} of {c['want']})" for c in acc["checks"]) + ".")
        w.append("")
    if ref:
        big = [r for r in ref["rows"] if r["n"] == max(x["n"] for x in ref["rows"])]
        more_json = (f"{(big[1]['input_bytes'] / big[0]['input_bytes'] - 1) * 100:.0f} % more JSON"
                     if len(big) > 1 else "more JSON")
        w.append("### Refresh from file: one zone and five")
        w.append("")
        w.append(f"`bench/zones.py refresh`: `ec2cached refresh --from-file` (ready_tag set, as bench/bench.py), "
                 f"best of {ref['runs']} runs by CPU (user + sys, from wait4), made in rounds over the cases; "
                 "peak RSS the highest. The default zone on genfleet.py's input is bench/bench.py's case; on "
                 f"`zones.py gen`'s input (the same instances with four more fields: {more_json}) it "
                 "separates the cost of reading the input from that of the zones.")
        w.append("")
        w.append("| instances | zones | input | input bytes | names | snapshot bytes | CPU s (user + sys) | wall s | peak RSS MB |")
        w.append("|---:|---|---|---:|---:|---:|---:|---:|---:|")
        for r in ref["rows"]:
            w.append(f"| {r['n']} | {r['zones']} | `{r['input']}` | {r['input_bytes']} | {r['names']} | {r['size']} "
                     f"| {r['cpu']:.2f} ({r['user']:.2f} + {r['sys']:.2f}) | {r['wall']:.2f} | {r['rss_mb']:.0f} |")
        w.append("")
    if ref:
        sent = []
        for n in sorted({r["n"] for r in ref["rows"]}):
            one = next(r for r in ref["rows"] if r["n"] == n and r["nzones"] == 0 and r["input"] == "zones.py gen")
            five = next(r for r in ref["rows"] if r["n"] == n and r["nzones"] == 5)
            sent.append(f"at {n}: CPU × {five['cpu'] / one['cpu']:.2f}, names × {five['names'] / one['names']:.2f}, "
                        f"snapshot × {five['size'] / one['size']:.2f}, peak RSS × {five['rss_mb'] / one['rss_mb']:.2f}")
        big = max(r["n"] for r in ref["rows"])
        five = next(r for r in ref["rows"] if r["n"] == big and r["nzones"] == 5)
        w.append("Five zones ÷ the default zone on the same input: " + "; ".join(sent) + ". The refresh targets of "
                 f"\"Targets\" (at 100 000: CPU ≤ 2 s, peak RSS ≤ 300 MB) are stated for the default zone; five zones at "
                 f"{big} take {five['cpu']:.2f} s and {five['rss_mb']:.0f} MB, "
                 + ("within them." if five["cpu"] <= 2 and five["rss_mb"] <= 300 else "beyond them."))
        w.append("")
    if lk:
        com, runs = lk["committed"], lk["runs"]
        w.append("### Lookups with five zones")
        w.append("")
        w.append(f"`bench/zones.py lookups --pairs {lk['pairs']}`: `bench/bench.py` with BENCH_SIZES={lk['size']} "
                 f"BENCH_ITER={lk['iter']}, the default zone and BENCH_ZONES=5 (the five zones above, fleets from "
                 f"`zones.py gen`) in turn, {lk['pairs']} of each, the order swapped every pair, each report "
                 "written to a scratch file (BENCH_OUT). Each figure as in the tables above: `1.postgres.g1.ec2`, "
                 "AF_UNSPEC, the best p50 of 7 runs made in rounds with the floor module (which answers a "
                 "constant), so that \"ec2 ÷ floor\" compares within one bench.py run.")
        w.append("")
        w.append("| zones | run | names | snapshot bytes | ec2 hit p50 µs | ec2 miss p50 µs | floor p50 µs "
                 "| ec2 ÷ floor | first use µs | private dirty KiB |")
        w.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")

        def row(label, when, r):
            fl = f"{r['floor']:.2f}" if r.get("floor") is not None else "–"
            w.append(f"| {label} | {when} | {r['names']} | {r.get('snapshot_bytes') or '–'} | {r['ec2']:.2f} "
                     f"| {r['ec2_miss']:.2f} | {fl} | {r['ratio']:.2f} | {r.get('first_use') or '–'} "
                     f"| {r.get('dirty_kib') if r.get('dirty_kib') is not None else '–'} |")

        if com:
            row("default", f"committed, above ({com['date']})", com)
        for r in runs:
            row("five `[[zone]]`" if r["zones"] else "default", f"{r['date']} (pair {r['pair']})", r)
        w.append("")
        one = [r for r in runs if not r["zones"]]
        five = [r for r in runs if r["zones"]]
        w.append(f"At {lk['size']} instances, ec2 ÷ floor with five zones: "
                 + ", ".join(f"{r['ratio']:.2f}" for r in five) + "; with the default zone in the same session: "
                 + ", ".join(f"{r['ratio']:.2f}" for r in one)
                 + (f" (committed: {com['ratio']:.2f})" if com else "")
                 + f". Best ec2 p50 (the figure that repeats on a shared VM), five zones ÷ default: "
                 f"{min(r['ec2'] for r in five):.2f} ÷ {min(r['ec2'] for r in one):.2f} µs = "
                 f"{min(r['ec2'] for r in five) / min(r['ec2'] for r in one):.2f}, "
                 f"with {five[0]['names'] / one[0]['names']:.1f} × the names and "
                 f"{five[0]['snapshot_bytes'] / one[0]['snapshot_bytes']:.1f} × the snapshot bytes."
                 + "".join(f" In the {'five-zone' if r['zones'] else 'default'} run of pair {r['pair']} the floor's "
                           f"p50 ({r['floor']:.2f} µs) is above the others' (from {min(x['floor'] for x in runs):.2f}) "
                           f"while ec2's ({r['ec2']:.2f}) is not: load on the floor's runs, hence its low ratio."
                           for r in runs if r.get("floor") and r["floor"] > 1.2 * min(x["floor"] for x in runs)
                           and r["ec2"] <= 1.1 * min(x["ec2"] for x in runs)))
        w.append("")
    return "\n".join(w).rstrip("\n") + "\n"


def write_section(path, section):
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    m = re.search(r"^## Zones and accounts\n.*?(?=^## |\Z)", text, flags=re.S | re.M)
    if m:
        text = text[:m.start()] + section + ("\n" if m.end() < len(text) else "") + text[m.end():]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def cmd_report(a):
    text = report(a)
    print(text)
    if a.write:
        write_section(a.out, text)
        log(f"written to {a.out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("n", type=int)
    t = sub.add_parser("toml")
    t.add_argument("n", type=int)
    parsers = {c: sub.add_parser(c) for c in ("accounts", "refresh", "lookups", "report", "all")}
    for c, p in parsers.items():
        p.add_argument("--results", default="/tmp/nss-ec2-zones", help="where results are saved and read")
        if c in ("accounts", "all"):
            p.add_argument("--per", type=int, default=2500, help="instances per account and region")
            p.add_argument("--interval", type=int, default=25)
            p.add_argument("--api-timeout", type=int, default=120)
            p.add_argument("--sweeps", type=int, default=4, help="sweeps measured after the first")
            p.add_argument("--limit", type=int, default=900, help="seconds of `run` at most")
            p.add_argument("--keep", action="store_true")
        if c in ("refresh", "all"):
            p.add_argument("--sizes", default="10000,100000")
            p.add_argument("--runs", type=int, default=3)
        if c in ("lookups", "all"):
            p.add_argument("--size", type=int, default=100000)
            p.add_argument("--iter", type=int, default=100000)
            p.add_argument("--pairs", type=int, default=2, help="runs of each, order swapped per pair")
            p.add_argument("--scratch", default="/tmp")
        if c in ("report", "all"):
            p.add_argument("--write", action="store_true")
            p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    a = ap.parse_args()
    if a.cmd == "gen":
        json.dump(gen(a.n), sys.stdout)
        return
    if a.cmd == "toml":
        sys.stdout.write(zones_toml(a.n))
        return
    if hasattr(a, "sizes"):
        a.sizes = [int(x) for x in a.sizes.split(",")]
    if a.cmd in ("accounts", "all"):
        cmd_accounts(a)
    if a.cmd in ("refresh", "all"):
        cmd_refresh(a)
    if a.cmd in ("lookups", "all"):
        cmd_lookups(a)
    if a.cmd in ("report", "all"):
        cmd_report(a)


if __name__ == "__main__":
    main()
