"""Issue 14: `ec2cached facts` (IMDSv2 + the snapshot), the Facter and Ansible fact files as the
package installs them, the `[metrics] textfile` Prometheus metrics, and the alert rules.

IMDS is a loopback stub of our own (ImdsStub: the IMDSv2 token flow, recorded); facts and metrics
are checked through what a user runs: `ec2cached facts`, Debian's facter and ansible, getent
through the module, promtool.
"""

import http.server
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import REGION, free_port
from faultproxy import FaultProxy, Served
from fleethelp import OUTCOMES, URL, Bucket, Daemons, Node, generation, wait_for, write_config
from test_packages import debs  # noqa: F401 (the fixture, for a run of this file alone)

ACCOUNT = "000123456789"
ZONE = "us-east-1c"
TOKEN_TTL = "x-aws-ec2-metadata-token-ttl-seconds"
TOKEN = "x-aws-ec2-metadata-token"
DOCUMENT = "/latest/dynamic/instance-identity/document"


class ImdsStub(Served):
    """IMDSv2 on loopback: PUT /latest/api/token (with the TTL header) hands out a token, and
    GET of the identity document answers only with that token (401 otherwise), like the real
    service. `requests` records (method, path, headers) of every request; `instance_id` is who
    this host is; `hang=True` accepts connections and never answers."""

    def __init__(self, instance_id):
        self.instance_id = instance_id
        self.requests = []
        self.tokens = set()
        self.hang = False
        self.release = threading.Event()
        self.lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, status, body=b"", headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def record(self):
                with stub.lock:
                    stub.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                if stub.hang:
                    stub.release.wait(30)
                    self.close_connection = True
                    return True
                return False

            def do_PUT(self):
                if self.record():
                    return
                self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                ttl = self.headers.get(TOKEN_TTL)
                if self.path != "/latest/api/token" or not ttl or not ttl.isdigit():
                    return self.send(400)
                token = f"tok-{len(stub.tokens)}-{os.urandom(8).hex()}"
                with stub.lock:
                    stub.tokens.add(token)
                self.send(200, token.encode(), [("Content-Type", "text/plain"), (TOKEN_TTL, ttl)])

            def do_GET(self):
                if self.record():
                    return
                if self.headers.get(TOKEN) not in stub.tokens:
                    return self.send(401)
                if self.path != DOCUMENT:
                    return self.send(404)
                doc = {
                    "accountId": ACCOUNT,
                    "architecture": "x86_64",
                    "availabilityZone": ZONE,
                    "billingProducts": None,
                    "devpayProductCodes": None,
                    "marketplaceProductCodes": None,
                    "imageId": "ami-12c6146b",
                    "instanceId": stub.instance_id,
                    "instanceType": "t3.micro",
                    "kernelId": None,
                    "pendingTime": "2024-01-01T00:00:00Z",
                    "privateIp": "10.20.0.4",
                    "ramdiskId": None,
                    "region": REGION,
                    "version": "2017-09-30",
                }
                self.send(200, json.dumps(doc, indent=2).encode(), [("Content-Type", "text/plain")])

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.release.set()
        super().stop()

    def start(self):
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def seen(self):
        with self.lock:
            return list(self.requests)


@pytest.fixture
def imds():
    stubs = []

    def make(instance_id):
        s = ImdsStub(instance_id).start()
        stubs.append(s)
        return s

    yield make
    for s in stubs:
        s.stop()


def facts_env(host, endpoint, **extra):
    """The environment of `ec2cached facts` on an instance: IMDS at ENDPOINT (not disabled)."""
    env = host.env(AWS_EC2_METADATA_SERVICE_ENDPOINT=endpoint, **extra)
    env.pop("AWS_EC2_METADATA_DISABLED", None)
    return env


def one_line(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ec2cached: "), lines[0]
    return lines[0]


def by_dots(names):
    """The order of `names` in the facts: by number of dots, then alphabetically."""
    return sorted(names, key=lambda s: (s.count("."), s))


# 1. `ec2cached facts`.

def tphon(fleet):
    """tphon: two redis and one instance ("me") that is both postgres and readonly.postgres (a
    multi-label service) and also in "Web Front"; a search instance."""
    f = {}
    f["redis1"] = fleet.launch(tags={"services": "redis"})[0]
    f["me"] = fleet.launch(groups=["tphon", "Web Front"], tags={"services": "postgres, readonly.postgres"})[0]
    f["redis2"] = fleet.launch(tags={"services": "redis"})[0]
    f["search"] = fleet.launch(groups=["search"])[0]
    return f


def want_facts(fleet, f):
    me = f["me"]
    # Its place in tphon (launch time, then id) makes its numbered name there.
    n = fleet.ordered([f["redis1"], me, f["redis2"]]).index(me) + 1
    services = [f"{p}{s}.{g}.ec2" for p in ("", "1.") for s in ("postgres", "readonly.postgres")
                for g in ("tphon", "web-front")]
    return {
        "instance_id": me,
        "region": REGION,
        "availability_zone": ZONE,
        "account_id": ACCOUNT,
        "groups": ["tphon", "web-front"],
        "services": ["postgres", "readonly.postgres"],
        "names": by_dots([f"{me}.ec2", "tphon.ec2", "web-front.ec2", f"{n}.tphon.ec2", "1.web-front.ec2",
                          *services]),
    }


def test_facts_are_the_hosts_identity_groups_services_and_names(fleet, host, imds):
    f = tphon(fleet)
    host.refresh()
    me = f["me"]
    stub = imds(me)
    r = host.ec2cached("facts", env=facts_env(host, stub.url))
    assert r.stderr == "", r.stderr
    got = json.loads(r.stdout)
    assert got == want_facts(fleet, f), json.dumps(got, indent=1)
    assert list(got) == ["instance_id", "region", "availability_zone", "account_id", "groups", "services",
                         "names"], "keys out of order"
    # The account id is a JSON string with its zeros, never a number.
    assert f'"account_id": "{ACCOUNT}"' in r.stdout, r.stdout
    # Every name listed answers with this host through the module; names it is not behind do not.
    ip = fleet.ipv4(me)
    for name in got["names"]:
        code, addrs = host.hosts(name)
        assert code == 0 and ip in addrs, (name, code, addrs)
    for name in ("redis.tphon.ec2", "search.ec2", f"{f['redis1']}.ec2"):
        code, addrs = host.hosts(name)
        assert code == 0 and ip not in addrs, (name, code, addrs)
    # The IMDSv2 flow: a PUT for a token with a TTL, then the document with that token, once.
    seen = stub.seen()
    assert [(m, p) for m, p, _ in seen] == [("PUT", "/latest/api/token"), ("GET", DOCUMENT)], seen
    assert seen[0][2].get(TOKEN_TTL, "").isdigit(), seen[0]
    assert seen[1][2].get(TOKEN) in stub.tokens, seen[1]
    # (The stub is strict: the document without a token is refused, as IMDSv2-only instances do.)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(stub.url + DOCUMENT, timeout=5)
    assert e.value.code == 401
    # Another host of the fleet gets its own facts from the same snapshot.
    r = host.ec2cached("facts", env=facts_env(host, imds(f["search"]).url))
    other = json.loads(r.stdout)
    assert (other["groups"], other["services"]) == (["search"], []), other
    assert other["names"] == [f"{f['search']}.ec2", "search.ec2", "1.search.ec2"], other


def test_facts_of_a_host_that_is_live_but_not_ready(fleet, host, imds):
    """ready_tag set and missing: the host is in the snapshot by its id only."""
    ready = fleet.launch(tags={"af-status": "ready", "services": "redis"})[0]
    me = fleet.launch(tags={"services": "redis"})[0]
    host.configure(ready_tag="af-status=ready")
    host.refresh()
    got = json.loads(host.ec2cached("facts", env=facts_env(host, imds(me).url)).stdout)
    assert (got["instance_id"], got["groups"], got["services"], got["names"]) == (me, [], [], [f"{me}.ec2"]), got
    assert host.hosts(f"{me}.ec2") == (0, [fleet.ipv4(me)])
    assert host.hosts("redis.tphon.ec2") == (0, [fleet.ipv4(ready)])


def facts_fails(host, env, timeout=30):
    """`ec2cached facts` that must fail: (the one line on stderr, seconds it took)."""
    t = time.monotonic()
    r = host.ec2cached("facts", check=False, env=env, timeout=timeout)
    took = time.monotonic() - t
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == "", r.stdout
    return one_line(r.stderr), took


def test_facts_without_imds_fail_fast_in_one_line(fleet, host, imds):
    fleet.launch()
    host.refresh()
    dead = f"http://127.0.0.1:{free_port()}"
    line, took = facts_fails(host, facts_env(host, dead))
    assert line == (f"ec2cached: no instance identity from the instance metadata service (IMDSv2) at {dead}: "
                    "connection refused"), line
    assert took < 3, took
    # A metadata service that takes the connection and never answers: bounded, well under 10 s.
    stub = imds("i-0123456789abcdef0")
    stub.hang = True
    line, took = facts_fails(host, facts_env(host, stub.url), timeout=20)
    assert took < 10, took
    assert line.startswith("ec2cached: no instance identity from the instance metadata service (IMDSv2) at "
                           f"{stub.url}: "), line
    assert stub.seen(), "the stub was never asked"
    # The token request is what went unanswered (a container behind a hop limit of 1): said,
    # with the fix (issue 22, item 18).
    assert "token request (PUT /latest/api/token) got no answer" in line, line
    assert "--http-put-response-hop-limit 2" in line, line


def test_facts_through_the_endpoint_set_in_the_aws_config_file(fleet, host, imds, tmp_path):
    """The SDK also takes the endpoint from the profile (`ec2_metadata_service_endpoint`, the way
    it is set where the environment cannot be, e.g. for a service): facts work through it, and a
    failure names that endpoint, or at least says the profile's key decides it."""
    me = fleet.launch()[0]
    host.refresh()
    stub = imds(me)
    conf = tmp_path / "aws-config"
    conf.write_text(f"[default]\nec2_metadata_service_endpoint = {stub.url}\n")
    env = facts_env(host, "", AWS_CONFIG_FILE=str(conf))
    env.pop("AWS_EC2_METADATA_SERVICE_ENDPOINT")
    assert json.loads(host.ec2cached("facts", env=env).stdout)["instance_id"] == me
    dead = f"http://127.0.0.1:{free_port()}"
    conf.write_text(f"[default]\nec2_metadata_service_endpoint = {dead}\n")
    line, _ = facts_fails(host, env)
    assert line.startswith("ec2cached: no instance identity from the instance metadata service (IMDSv2) at "), line
    assert line.endswith(": connection refused"), line
    assert dead in line or "ec2_metadata_service_endpoint" in line, line


def test_facts_of_a_host_not_in_the_snapshot_or_without_one(fleet, host, imds):
    running = fleet.launch()[0]
    stopped = fleet.launch()[0]
    fleet.ec2.stop_instances(InstanceIds=[stopped])
    # No snapshot yet.
    line, _ = facts_fails(host, facts_env(host, imds(running).url))
    assert line.startswith(f"ec2cached: no snapshot at {host.snapshot}: "), line
    host.refresh()
    # A stopped instance, and one this sweep never saw (launched since).
    for who in (stopped, "i-0123456789abcdef0"):
        line, _ = facts_fails(host, facts_env(host, imds(who).url))
        assert re.fullmatch(
            rf"ec2cached: {who} is not in the snapshot at {re.escape(str(host.snapshot))} \(sweep of [^)]+\): "
            r"not running, not in the polled groups or regions, or launched since", line), line
    assert json.loads(host.ec2cached("facts", env=facts_env(host, imds(running).url)).stdout)["instance_id"] == running
    # A snapshot past its max_age answers UNAVAIL in the module; facts say so too.
    host.configure(interval=1, max_age=2)
    host.refresh()
    time.sleep(3.2)
    assert host.hosts(f"{running}.ec2")[0] == 2
    line, _ = facts_fails(host, facts_env(host, imds(running).url))
    assert f"the snapshot at {host.snapshot} is from " in line and "older than its max_age (2 s)" in line, line


# 2. The fact files as the package installs them, read by Debian's Facter and Ansible.

@pytest.fixture(scope="session")
def ec2cached_deb(request):
    """The ec2cached .deb from test_packages.py's session fixture `debs` (dpkg-buildpackage: a
    minute or two), built once per session. An imported fixture is a second fixture with its own
    cache, so when test_packages.py runs in the same session its own definition is used."""
    try:
        for item in request.session.items:
            if item.path.name == "test_packages.py":
                defs = request._fixturemanager.getfixturedefs("debs", item)
                if defs:
                    return defs[-1].execute(request)[0]["ec2cached"]
                break
    except (AttributeError, TypeError):  # another pytest: build it here
        pass
    return request.getfixturevalue("debs")[0]["ec2cached"]


class Installed:
    """The unpacked ec2cached package over the real /etc and /usr/sbin: overlayfs in a private
    mount namespace of each command, so facter and ansible find /etc/facter/facts.d/ec2cached,
    /etc/ansible/facts.d/ec2cached.fact, /etc/ec2cached.toml (snapshot: SNAPSHOT) and
    /usr/sbin/ec2cached where the package puts them, and the real system is not touched."""

    def __init__(self, tmp, deb, snapshot):
        self.tmp = tmp
        tmp.mkdir()
        tree = tmp / "pkg"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
        self.tree = tree
        self.layers = {}
        for target, files in (("/etc", ("etc/facter/facts.d/ec2cached", "etc/ansible/facts.d/ec2cached.fact")),
                              ("/usr/sbin", ("usr/sbin/ec2cached",))):
            upper, work = tmp / f"upper{target.replace('/', '-')}", tmp / f"work{target.replace('/', '-')}"
            upper.mkdir()
            work.mkdir()
            for f in files:
                dst = upper / Path(f).relative_to(target.lstrip("/"))
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes((tree / f).read_bytes())
                os.chmod(dst, (tree / f).stat().st_mode & 0o7777)
            self.layers[target] = (upper, work)
        conf = (tree / "etc/ec2cached.toml").read_text()
        (self.layers["/etc"][0] / "ec2cached.toml").write_text(f"snapshot = {json.dumps(str(snapshot))}\n" + conf)
        self.home = tmp / "home"
        self.home.mkdir()

    def run(self, *argv, endpoint, timeout=120):
        mounts = " && ".join(
            f"mount -t overlay overlay -o lowerdir={t},upperdir={u},workdir={w} {t}"
            for t, (u, w) in self.layers.items())
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.home),
            "ANSIBLE_HOME": str(self.home / ".ansible"),
            "ANSIBLE_LOCAL_TEMP": str(self.tmp / "ansible-local"),
            "ANSIBLE_REMOTE_TMP": str(self.tmp / "ansible-remote"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint,
        }
        t = time.monotonic()
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"',
                            "sh", *argv], env=env, capture_output=True, text=True, timeout=timeout)
        r.took = time.monotonic() - t
        return r

    def facter(self, endpoint):
        return self.run("facter", "--json", "ec2cached", endpoint=endpoint)

    def ansible(self, endpoint):
        """The local facts of `ansible -m setup`: (ansible_local, the run)."""
        r = self.run("ansible", "localhost", "-c", "local", "-i", "localhost,", "-m", "setup",
                     "-a", "filter=ansible_local", endpoint=endpoint)
        assert r.returncode == 0, (r.stdout, r.stderr)
        head, _, body = r.stdout.partition(" => ")
        assert head.strip() == "localhost | SUCCESS", r.stdout
        return json.loads(body)["ansible_facts"]["ansible_local"], r


@pytest.fixture
def installed(ec2cached_deb, tmp_path, host):
    return Installed(tmp_path / "installed", ec2cached_deb, host.snapshot)


def test_facter_and_ansible_read_the_installed_fact_files(fleet, host, imds, installed):
    f = tphon(fleet)
    host.refresh()
    stub = imds(f["me"])
    want = want_facts(fleet, f)
    # The fact files run the installed binary with the default configuration.
    for path in ("etc/facter/facts.d/ec2cached", "etc/ansible/facts.d/ec2cached.fact"):
        assert "/usr/sbin/ec2cached facts" in (installed.tree / path).read_text(), path
        assert (installed.tree / path).stat().st_mode & 0o777 == 0o755, path

    r = installed.facter(stub.url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"ec2cached": want}, r.stdout
    # The environment reached the fact script (the stub was asked, with a token).
    assert ("GET", DOCUMENT) in [(m, p) for m, p, _ in stub.seen()]

    local, r = installed.ansible(stub.url)
    assert local.get("ec2cached") == want, json.dumps(local, indent=1)
    assert r.stderr.strip() == "", r.stderr
    # The overlays were private to each command: the real /etc does not have this configuration.
    real = Path("/etc/ec2cached.toml")
    assert not real.exists() or str(host.snapshot) not in real.read_text()


def test_facter_and_ansible_without_imds_leave_the_fact_out_and_say_why(fleet, host, installed):
    fleet.launch()
    host.refresh()
    dead = f"http://127.0.0.1:{free_port()}"
    why = f"ec2cached: no instance identity from the instance metadata service (IMDSv2) at {dead}: connection refused"
    r = installed.facter(dead)
    assert r.returncode == 0 and r.took < 10, (r.returncode, r.took, r.stderr)
    assert json.loads(r.stdout) == {"ec2cached": None}, r.stdout
    assert why in r.stderr, r.stderr
    local, r = installed.ansible(dead)
    assert r.took < 30, r.took
    assert not isinstance(local.get("ec2cached"), dict), local
    assert why in " ".join(r.stderr.split()), r.stderr


# 3. [metrics] textfile.

REASONS = ("throttled", "denied", "credentials", "timeout", "unreachable", "api_error", "malformed_response",
           "config", "input", "publish", "s3")
RULES = Path(__file__).resolve().parents[2] / "ec2cached" / "ec2cached.rules.yml"


def promtool(*args, stdin=None):
    return subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True, timeout=60)


class Metrics(dict):
    """The samples of a textfile (`name` or `name{label="v"}` to a float), checked with promtool
    on the way: it exits 0 and says nothing, and every family has HELP and TYPE."""

    def __init__(self, path):
        text = Path(path).read_text()
        r = promtool("check", "metrics", stdin=text)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), (r.returncode, r.stdout, r.stderr, text)
        super().__init__()
        self.text = text
        self.types = {}
        helps = set()
        for line in text.splitlines():
            if line.startswith("# HELP "):
                helps.add(line.split()[2])
            elif line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                self.types[name] = kind
            elif line:
                key, value = line.rsplit(" ", 1)
                self[key] = float(value)
        self.families = {k.split("{")[0] for k in self}
        assert self.families == set(self.types) == helps, text

    def by(self, name, label):
        """{label value: sample} of a labelled family."""
        out = {}
        for k, v in self.items():
            m = re.fullmatch(rf'{name}\{{{label}="([^"]*)"\}}', k)
            if m:
                out[m.group(1)] = v
        return out


def status_counts(node):
    """(names, live instances) as `ec2cached status` shows them."""
    out = node.ec2cached("status").stdout
    names = int(re.search(r"^names: +(\d+)$", out, re.M).group(1))
    live = int(re.search(r"^instances: +(\d+) live$", out, re.M).group(1))
    return names, live


def textfile_dir(node):
    d = node.dir / "node-exporter"
    d.mkdir(exist_ok=True)
    return d


def only_the_textfile(d):
    left = sorted(p.name for p in d.iterdir())
    assert left == ["ec2cached.prom"], left
    assert (d / "ec2cached.prom").stat().st_mode & 0o777 == 0o644


def alert_rules(path=RULES):
    """{alert name: rule} of the rules file."""
    doc = yaml.safe_load(Path(path).read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"]}


def rule_metrics():
    """The metrics the alert expressions use."""
    exprs = " ".join(r["expr"] for r in alert_rules().values())
    return set(re.findall(r"\bec2cached_[a-z0-9_]+", exprs))


# Of the metrics the rules use: those only a host in a fleet writes (a poller with [publish], a
# follower), and those only a poller writes.
FLEET_ONLY = {"ec2cached_fleet_info", "ec2cached_s3_confirmed_sweep_timestamp_seconds"}
POLLER_ONLY = {"ec2cached_sweep_duration_seconds", "ec2cached_s3_confirmed_sweep_timestamp_seconds"}


def test_poller_metrics_after_failed_and_good_polls(fleet, host, moto_url):
    d = textfile_dir(host)
    prom = d / "ec2cached.prom"
    write_config(host.config, {"snapshot": str(host.snapshot), "regions": [REGION], "interval": 30, "api_timeout": 1},
                 {"metrics": {"textfile": str(prom)}})
    fleet.launch(tags={"services": "redis"}, count=2)
    fleet.launch(groups=["search"])
    proxy = FaultProxy(moto_url).start()
    try:
        host.url = proxy.url
        # A dead endpoint before any snapshot.
        dead = f"http://127.0.0.1:{free_port()}"
        assert host.refresh(check=False, env=host.env(AWS_ENDPOINT_URL=dead)).returncode == 1
        m = Metrics(prom)
        assert m.by("ec2cached_poll_failures_total", "reason") == {r: (1 if r == "unreachable" else 0) for r in REASONS}
        assert m["ec2cached_consecutive_failures"] == 1
        assert m["ec2cached_snapshot_present"] == 0
        assert m["ec2cached_interval_seconds"] == 30
        assert m["ec2cached_unpublished_names"] == 0
        for absent in ("ec2cached_last_success_timestamp_seconds", "ec2cached_snapshot_generation_timestamp_seconds",
                       "ec2cached_instances", "ec2cached_names", "ec2cached_sweep_duration_seconds",
                       "ec2cached_follow_fetches_total", "ec2cached_s3_requests_total", *FLEET_ONLY):
            assert absent not in m.families, (absent, m.text)
        assert m.types["ec2cached_poll_failures_total"] == "counter"
        assert m.types["ec2cached_api_requests_total"] == "counter"
        only_the_textfile(d)
        requests = m["ec2cached_api_requests_total"]

        # A good poll through the proxy.
        t0 = time.time()
        host.refresh()
        t1 = time.time()
        m = Metrics(prom)
        gen = generation(host.snapshot.read_bytes())
        assert int(t0) <= gen <= t1, (t0, gen, t1)
        assert m["ec2cached_snapshot_generation_timestamp_seconds"] == gen
        assert m["ec2cached_last_success_timestamp_seconds"] == gen
        assert m["ec2cached_snapshot_present"] == 1
        assert m["ec2cached_consecutive_failures"] == 0
        assert m["ec2cached_snapshot_max_age_seconds"] == 0
        names, live = status_counts(host)
        assert (m["ec2cached_names"], m["ec2cached_instances"]) == (names, live) and live == 3, m.text
        assert 0 < m["ec2cached_sweep_duration_seconds"] <= t1 - t0
        assert m["ec2cached_api_requests_total"] == requests + proxy.requests == requests + 1
        assert m.by("ec2cached_poll_failures_total", "reason")["unreachable"] == 1, "a counter went back"
        assert m.types["ec2cached_instances"] == "gauge"
        # What the alerts use is there (a follower's fetch counter apart: it tells followers;
        # and what only a host in a fleet writes).
        want = rule_metrics() - {"ec2cached_follow_fetches_total"} - FLEET_ONLY
        assert want <= m.families, want - m.families
        assert not FLEET_ONLY & m.families, m.text
        only_the_textfile(d)
        good = dict(m)

        # Throttled: the counts go on, the snapshot's values stay.
        proxy.fault = "throttle"
        sent = proxy.requests
        assert host.refresh(check=False).returncode == 1
        m = Metrics(prom)
        assert m.by("ec2cached_poll_failures_total", "reason") == {
            r: (1 if r in ("unreachable", "throttled") else 0) for r in REASONS}
        assert m["ec2cached_consecutive_failures"] == 1
        for same in ("ec2cached_snapshot_generation_timestamp_seconds", "ec2cached_last_success_timestamp_seconds",
                     "ec2cached_instances", "ec2cached_names", "ec2cached_snapshot_present",
                     "ec2cached_sweep_duration_seconds"):
            assert m[same] == good[same], same
        # The failed sweep's requests count too, the SDK's retries included: exactly what the
        # API received.
        assert proxy.requests > sent + 1
        assert m["ec2cached_api_requests_total"] == good["ec2cached_api_requests_total"] + (proxy.requests - sent)

        # Unreachable again: two failures in a row.
        assert host.refresh(check=False, env=host.env(AWS_ENDPOINT_URL=dead)).returncode == 1
        m = Metrics(prom)
        assert m.by("ec2cached_poll_failures_total", "reason")["unreachable"] == 2
        assert m["ec2cached_consecutive_failures"] == 2
        only_the_textfile(d)
    finally:
        proxy.stop()


def test_the_daemon_writes_metrics_after_every_cycle(fleet, tmp_path, moto_url):
    node = Node(tmp_path, "poller", moto_url)
    d = textfile_dir(node)
    prom = d / "ec2cached.prom"
    write_config(node.config, {"snapshot": str(node.snapshot), "regions": [REGION], "interval": 1, "api_timeout": 1},
                 {"metrics": {"textfile": str(prom)}})
    fleet.launch(tags={"services": "redis"})
    # A temp file a killed writer left (its pid is gone): removed at start.
    gone = subprocess.Popen(["true"])
    gone.wait()
    (d / f".ec2cached.prom.{gone.pid}.AbC123.tmp").write_text("half")
    proxy = FaultProxy(moto_url).start()
    daemons = Daemons()
    try:
        node.url = proxy.url
        p = daemons.start(node)

        def metrics():
            try:
                return Metrics(prom)
            except FileNotFoundError:
                return None

        m = wait_for(lambda: (m := metrics()) and m.get("ec2cached_api_requests_total", 0) >= 2 and m, 20)
        assert m, node.log()
        assert m["ec2cached_snapshot_present"] == 1 and m["ec2cached_consecutive_failures"] == 0, m.text
        first = m["ec2cached_last_success_timestamp_seconds"]
        only_the_textfile(d)
        # Failed cycles are written too.
        proxy.fault = "throttle"
        m = wait_for(lambda: (m := metrics()) and m["ec2cached_consecutive_failures"] >= 2 and m, 30)
        assert m, node.log()
        throttled = m.by("ec2cached_poll_failures_total", "reason")["throttled"]
        assert throttled >= 2 and throttled == m["ec2cached_consecutive_failures"], m.text
        assert m["ec2cached_snapshot_present"] == 1
        proxy.fault = None
        m = wait_for(lambda: (m := metrics()) and m["ec2cached_consecutive_failures"] == 0 and m, 30)
        assert m, node.log()
        assert m["ec2cached_last_success_timestamp_seconds"] > first
        assert daemons.stop(p) == 0
        m = Metrics(prom)
        snap = node.snapshot.read_bytes()
        assert m["ec2cached_snapshot_generation_timestamp_seconds"] == generation(snap)
        assert abs(m["ec2cached_last_success_timestamp_seconds"] - time.time()) < 10
        names, live = status_counts(node)
        assert (m["ec2cached_names"], m["ec2cached_instances"]) == (names, live) and live == 1
        # Two good cycles, two failed ones, at least one good one again: one page each.
        assert 5 <= m["ec2cached_api_requests_total"] <= proxy.requests, (m.text, proxy.requests)
        only_the_textfile(d)
    finally:
        daemons.kill_all()
        proxy.stop()


def test_follower_metrics_count_fetches_by_outcome(fleet, tmp_path, moto_url):
    bucket = Bucket(moto_url)
    fleet.launch(tags={"services": "postgres"})
    fleet.launch()
    poller = Node(tmp_path, "poller", moto_url)
    key, pub = poller.keygen()
    pprom = textfile_dir(poller) / "ec2cached.prom"
    write_config(poller.config, {"snapshot": str(poller.snapshot), "regions": [REGION], "interval": 1},
                 {"publish": {"url": URL, "signing_key": str(key)}, "metrics": {"textfile": str(pprom)}})
    dead = f"http://127.0.0.1:{free_port()}"
    follower = Node(tmp_path, "follower", moto_url, extra_env={"AWS_ENDPOINT_URL_EC2": dead})
    d = textfile_dir(follower)
    prom = d / "ec2cached.prom"
    write_config(follower.config, {"snapshot": str(follower.snapshot), "interval": 1},
                 {"follow": {"url": URL, "trusted_keys": [pub]}, "metrics": {"textfile": str(prom)}})

    poller.refresh()
    obj = bucket.get()
    pm = Metrics(pprom)
    assert pm["ec2cached_s3_requests_total"] >= 1 and pm["ec2cached_s3_bytes_total"] >= len(obj), pm.text
    assert pm["ec2cached_snapshot_generation_timestamp_seconds"] == generation(obj)
    # The sweep it put in S3, and its fleet (by default the object's url): the fleet alert's.
    assert pm["ec2cached_s3_confirmed_sweep_timestamp_seconds"] == generation(obj), pm.text
    assert pm[f'ec2cached_fleet_info{{fleet="{URL}",role="poller"}}'] == 1, pm.text
    want = rule_metrics() - {"ec2cached_follow_fetches_total"}
    assert want <= pm.families, want - pm.families

    t0 = time.time()
    follower.refresh()
    m = Metrics(prom)
    assert m.by("ec2cached_follow_fetches_total", "outcome") == {o: (1 if o == "installed" else 0) for o in OUTCOMES}
    assert m.types["ec2cached_follow_fetches_total"] == "counter"
    # The poller's sweep, not the follower's fetch.
    assert m["ec2cached_snapshot_generation_timestamp_seconds"] == generation(obj) == generation(
        follower.snapshot.read_bytes())
    assert int(t0) <= m["ec2cached_last_success_timestamp_seconds"] <= time.time()
    assert m["ec2cached_snapshot_present"] == 1 and m["ec2cached_consecutive_failures"] == 0
    assert (m["ec2cached_names"], m["ec2cached_instances"]) == status_counts(follower) and m["ec2cached_instances"] == 2
    assert m["ec2cached_interval_seconds"] == 1
    assert m["ec2cached_s3_requests_total"] >= 1 and m["ec2cached_s3_bytes_total"] >= len(obj), m.text
    for poll_only in ("ec2cached_poll_failures_total", "ec2cached_api_requests_total",
                      "ec2cached_unpublished_names", *POLLER_ONLY):
        assert poll_only not in m.families, (poll_only, m.text)
    assert m[f'ec2cached_fleet_info{{fleet="{URL}",role="follower"}}'] == 1, m.text
    assert rule_metrics() - POLLER_ONLY <= m.families, rule_metrics() - POLLER_ONLY - m.families
    only_the_textfile(d)
    requests, received, good = m["ec2cached_s3_requests_total"], m["ec2cached_s3_bytes_total"], dict(m)

    follower.refresh()
    m = Metrics(prom)
    assert m.by("ec2cached_follow_fetches_total", "outcome") == {
        o: (1 if o in ("installed", "unchanged") else 0) for o in OUTCOMES}
    assert m["ec2cached_s3_requests_total"] > requests
    # A `refresh` keeps no ETag: it may fetch the object again, once.
    assert received <= m["ec2cached_s3_bytes_total"] <= received + len(obj), m.text

    # An object signed by a key the follower does not trust.
    stranger = Node(tmp_path, "stranger", moto_url)
    skey, _ = stranger.keygen()
    stranger.poller(publish={"url": f"s3://{bucket.name}/stranger.snap", "signing_key": str(skey)})
    stranger.refresh()
    bucket.put(bucket.get("stranger.snap"))
    assert follower.refresh(check=False).returncode == 1
    m = Metrics(prom)
    assert m.by("ec2cached_follow_fetches_total", "outcome") == {
        o: (1 if o in ("installed", "unchanged", "refused_signature") else 0) for o in OUTCOMES}
    assert m["ec2cached_consecutive_failures"] == 1
    for same in ("ec2cached_snapshot_generation_timestamp_seconds", "ec2cached_last_success_timestamp_seconds",
                 "ec2cached_snapshot_present", "ec2cached_instances", "ec2cached_names"):
        assert m[same] == good[same], same
    only_the_textfile(d)

    # `install` writes the metrics too.
    prom.unlink()
    copy = tmp_path / "hosts.snap.copy"
    copy.write_bytes(obj)
    follower.ec2cached("install", str(copy), check=False)
    m = Metrics(prom)
    assert m["ec2cached_snapshot_generation_timestamp_seconds"] == generation(obj)
    only_the_textfile(d)


def test_a_poller_whose_uploads_fail_says_which_sweep_s3_holds(fleet, tmp_path, moto_url):
    """Issue 22, item 16: the sweep a poller last found in S3 (uploaded, or the same names
    already there) is in its metrics beside its own snapshot's: when its uploads fail the two
    part, and the fleet alert reads the first."""
    fleet.launch(tags={"services": "postgres"})
    bucket = Bucket(moto_url)
    poller = Node(tmp_path, "poller", moto_url)
    key, _ = poller.keygen()
    prom = textfile_dir(poller) / "ec2cached.prom"
    write_config(poller.config, {"snapshot": str(poller.snapshot), "regions": [REGION], "interval": 30},
                 {"publish": {"url": URL, "signing_key": str(key)}, "metrics": {"textfile": str(prom)}})
    confirmed = "ec2cached_s3_confirmed_sweep_timestamp_seconds"

    def sweep():
        # A sweep stamped a second later than the last (stamps are whole seconds).
        time.sleep(1.1)
        return poller.refresh(check=False, env=poller.env(AWS_ENDPOINT_URL_S3=s3))

    s3 = moto_url
    assert sweep().returncode == 0
    m = Metrics(prom)
    first = generation(bucket.get())
    assert m[confirmed] == m["ec2cached_snapshot_generation_timestamp_seconds"] == first, m.text
    # S3 unreachable: swept and published locally, not uploaded.
    s3 = f"http://127.0.0.1:{free_port()}"
    r = sweep()
    assert r.returncode == 1, r.stderr
    m = Metrics(prom)
    assert m["ec2cached_snapshot_generation_timestamp_seconds"] == generation(poller.snapshot.read_bytes()) > first
    assert m[confirmed] == first, m.text
    assert m.by("ec2cached_poll_failures_total", "reason")["s3"] == 1 and m["ec2cached_consecutive_failures"] == 1
    # S3 back: the same names are there, recent, and are not uploaded again, but the sweep that
    # found them is what S3 is current as of.
    s3 = moto_url
    assert sweep().returncode == 0
    m = Metrics(prom)
    now_swept = generation(poller.snapshot.read_bytes())
    assert poller.status_file()["publish_outcome"] == "unchanged"
    assert generation(bucket.get()) == first < now_swept == m[confirmed], m.text
    assert m["ec2cached_consecutive_failures"] == 0


def test_an_expired_snapshot_is_not_present_in_the_metrics(fleet, host):
    """Past its max_age the module answers UNAVAIL from the snapshot: the metrics say no
    snapshot (and the NoSnapshot alert can fire), even though the file is still there; its age
    stays in the metrics, so the stale alert keeps firing instead of resolving."""
    prom = textfile_dir(host) / "ec2cached.prom"
    write_config(host.config, {"snapshot": str(host.snapshot), "regions": [REGION], "interval": 1, "max_age": 2},
                 {"metrics": {"textfile": str(prom)}})
    a = fleet.launch()[0]
    host.refresh()
    m = Metrics(prom)
    assert (m["ec2cached_snapshot_present"], m["ec2cached_snapshot_max_age_seconds"]) == (1, 2), m.text
    time.sleep(3.2)
    assert host.hosts(f"{a}.ec2")[0] == 2
    dead = f"http://127.0.0.1:{free_port()}"
    assert host.refresh(check=False, env=host.env(AWS_ENDPOINT_URL=dead)).returncode == 1
    m = Metrics(prom)
    assert m["ec2cached_snapshot_present"] == 0, m.text
    assert m["ec2cached_snapshot_generation_timestamp_seconds"] == generation(host.snapshot.read_bytes()), m.text
    assert m["ec2cached_consecutive_failures"] == 1


def test_the_textfile_must_be_a_prom_file(host):
    for bad in (host.dir / "ec2cached.txt", host.dir / "ec2cached"):
        write_config(host.config, {"snapshot": str(host.snapshot), "regions": [REGION]},
                     {"metrics": {"textfile": str(bad)}})
        for cmd in (("refresh",), ("status",)):
            r = host.ec2cached(*cmd, check=False)
            assert r.returncode == 2, (cmd, r.returncode, r.stderr)
            assert "metrics.textfile" in one_line(r.stderr) and ".prom" in r.stderr, r.stderr
        assert not bad.exists()
    assert not host.snapshot.exists()


def test_a_textfile_that_cannot_be_written_does_not_stop_the_poll(fleet, host):
    prom = host.dir / "missing" / "ec2cached.prom"
    write_config(host.config, {"snapshot": str(host.snapshot), "regions": [REGION]},
                 {"metrics": {"textfile": str(prom)}})
    a = fleet.launch(tags={"services": "redis"})[0]
    r = host.refresh()
    assert str(prom) in r.stderr, r.stderr
    assert host.hosts("redis.tphon.ec2") == (0, [fleet.ipv4(a)])


# 4. The alert rules.

def humanize_duration(v):
    """Prometheus' humanizeDuration for whole seconds of a minute or more."""
    v = int(v)
    d, h, m, s = v // 86400, v // 3600 % 24, v // 60 % 60, v % 60
    if d:
        return f"{d}d {h}h {m}m {s}s"
    if h:
        return f"{h}h {m}m {s}s"
    return f"{m}m {s}s"


def expected(rules, name, instance, value, fleet=None):
    """What promtool shows for alert NAME with value VALUE: on INSTANCE (a host's alert, with its
    instance and job labels) or, with FLEET, on that fleet (a fleet's alert: its `fleet` label
    alone); the rule's labels, and its annotations rendered (the templates this file's rules use)."""
    rule = rules[name]
    own = {"fleet": fleet} if fleet is not None else {"instance": instance, "job": "node"}
    ann = {}
    for k, t in rule.get("annotations", {}).items():
        for label, v in own.items():
            t = re.sub(r"\{\{ *\$labels\.%s *\}\}" % label, lambda _: v, t)
        t = re.sub(r"\{\{ *\$value *\| *humanizeDuration *\}\}", humanize_duration(value), t)
        t = re.sub(r"\{\{ *\$value *\}\}", f"{value:g}", t)
        assert "{{" not in t, f"{name}: a template this test cannot render: {t}"
        ann[k] = t
    return {"exp_labels": {**own, **rule["labels"]}, "exp_annotations": ann}


def series(metric, instance, values, **labels):
    labels = {"instance": instance, "job": "node", **labels}
    return {"series": metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}", "values": values}


def minutes(f, n=40):
    """A series' values, one a minute for N + 1 minutes: f(t), t the sample's time in seconds."""
    return " ".join(str(f(60 * m)) for m in range(n + 1))


FLEET_A, FLEET_B = "s3://fleet-a/hosts.snap", "s3://fleet-b/hosts.snap"
# The rules' part that allows for the sweep's duration (issue 22, item 16), as the mutations
# below take it out again.
SWEEP_ALLOWANCE = " + 2 * (ec2cached_sweep_duration_seconds or 0 * ec2cached_interval_seconds)"


def rule_tests(rules_path):
    """promtool's unit tests of the five alerts: each fires when it should and not otherwise.
    Each test group is named (promtool prints the name of a group that fails)."""
    rules = alert_rules(rules_path)
    gen, interval = "ec2cached_snapshot_generation_timestamp_seconds", "ec2cached_interval_seconds"
    last, fetches = "ec2cached_last_success_timestamp_seconds", "ec2cached_follow_fetches_total"
    took, confirmed = "ec2cached_sweep_duration_seconds", "ec2cached_s3_confirmed_sweep_timestamp_seconds"
    stale = lambda *alerts: [expected(rules, "Ec2cachedSnapshotStale", i, v) for i, v in alerts]  # noqa: E731
    failing = lambda *alerts: [expected(rules, "Ec2cachedPollsFailing", i, v) for i, v in alerts]  # noqa: E731
    bare = lambda *alerts: [expected(rules, "Ec2cachedNoSnapshot", i, v) for i, v in alerts]  # noqa: E731
    # An alert on a whole fleet (by its `fleet` label): no instance or job label.
    fleet_stale = lambda *alerts: [  # noqa: E731
        expected(rules, "Ec2cachedFleetStale", None, v, fleet=f) for f, v in alerts]

    def poller(instance, swept, s3=None, fleet=None, sweep=2, failures=None):
        """A poller at interval 30 whose snapshots are of the sweeps SWEPT, each taking SWEEP
        seconds; with FLEET, one with [publish] to it that found the sweeps S3 in S3;
        FAILURES: its consecutive failures."""
        out = [series(gen, instance, swept), series(interval, instance, "30x40"),
               series(took, instance, f"{sweep}x40")]
        if fleet:
            out += [series(confirmed, instance, s3),
                    series("ec2cached_fleet_info", instance, "1x40", fleet=fleet, role="poller")]
        if failures:
            out.append(series("ec2cached_consecutive_failures", instance, failures))
        return out

    def follower(instance, fleet):
        """A follower of FLEET at interval 30: it holds the object of the sweep at 0 (an unchanged
        fleet is uploaded again only every republish_after) and confirms it every minute (304)."""
        return [series(gen, instance, "0x40"), series(last, instance, "0+60x40"),
                series(fetches, instance, "0+1x40", outcome="unchanged"), series(interval, instance, "30x40"),
                series("ec2cached_fleet_info", instance, "1x40", fleet=fleet, role="follower")]

    # A poller of 100 pages at interval 30: sweeps of 120 s, one after the other (each longer
    # than the interval). A snapshot is stamped when its sweep starts and lands when it ends: at
    # t, the installed one is from the sweep that started 120 to 240 s before.
    slow = lambda t: max(0, t // 120 * 120 - 120)  # noqa: E731
    return {
        "rule_files": [str(rules_path)],
        "evaluation_interval": "1m",
        "tests": [
            {
                # Interval 30 s, so stale past 90 s. Pollers: a snapshot as new as the clock,
                # and one that stopped at 0 (older than 90 s from 2m, firing from 7m); neither
                # says how long its sweep takes (a host fed by `install`: no sweep of its own).
                # Followers: one holding an old object it keeps confirming (an unchanged fleet),
                # and one whose checks stopped succeeding at 0.
                "name": "pollers and followers",
                "interval": "1m",
                "input_series": [
                    series(gen, "poller-fresh", "0+60x30"), series(interval, "poller-fresh", "30x30"),
                    series(gen, "poller-stale", "0x30"), series(interval, "poller-stale", "30x30"),
                    series(gen, "follower-ok", "0x30"), series(last, "follower-ok", "0+60x30"),
                    series(fetches, "follower-ok", "0+1x30", outcome="unchanged"),
                    series(interval, "follower-ok", "30x30"),
                    series(gen, "follower-stuck", "0x30"), series(last, "follower-stuck", "0x30"),
                    series(fetches, "follower-stuck", "0+1x30", outcome="error"),
                    series(interval, "follower-stuck", "30x30"),
                ],
                "alert_rule_test": [
                    {"eval_time": "6m", "alertname": "Ec2cachedSnapshotStale", "exp_alerts": []},
                    {"eval_time": "7m", "alertname": "Ec2cachedSnapshotStale",
                     "exp_alerts": stale(("follower-stuck", 420), ("poller-stale", 420))},
                    {"eval_time": "20m", "alertname": "Ec2cachedSnapshotStale",
                     "exp_alerts": stale(("follower-stuck", 1200), ("poller-stale", 1200))},
                    {"eval_time": "20m", "alertname": "Ec2cachedPollsFailing", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "Ec2cachedNoSnapshot", "exp_alerts": []},
                    # No fleet here: the fleet alert has nothing to say.
                    {"eval_time": "20m", "alertname": "Ec2cachedFleetStale", "exp_alerts": []},
                ],
            },
            {
                # Both pollers of the fleet stopped at 0 (sweeps and uploads); the followers
                # keep confirming the last object. Stale past 3 intervals and two sweeps (94 s):
                # from 2m, firing from 7m.
                "name": "a fleet whose pollers stopped",
                "interval": "1m",
                "input_series": [
                    *poller("poller-a", "0x40", "0x40", FLEET_A), *poller("poller-b", "0x40", "0x40", FLEET_A),
                    *follower("follower", FLEET_A),
                ],
                "alert_rule_test": [
                    {"eval_time": "6m", "alertname": "Ec2cachedFleetStale", "exp_alerts": []},
                    {"eval_time": "7m", "alertname": "Ec2cachedFleetStale",
                     "exp_alerts": fleet_stale((FLEET_A, 420))},
                    {"eval_time": "20m", "alertname": "Ec2cachedSnapshotStale",
                     "exp_alerts": stale(("poller-a", 1200), ("poller-b", 1200))},
                ],
            },
            {
                # Issue 22, item 16 (a): slow sweeps are no staleness. "slow" (of fleet A)
                # sweeps healthily, its snapshot and the sweep it confirms in S3 120 to 240 s old:
                # past 3 intervals (90 s), within 3 intervals and two sweeps (330 s). A standalone
                # poller that sweeps the same way stops at 20m (its last snapshot: of the sweep
                # started at 18m): stale from 24m, firing from 29m.
                "name": "slow sweeps",
                "interval": "1m",
                "input_series": [
                    *poller("slow", minutes(slow), minutes(slow), FLEET_A, sweep=120),
                    *follower("follower", FLEET_A),
                    *poller("slow-stopped", minutes(lambda t: slow(min(t, 1200))), sweep=120),
                ],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "Ec2cachedSnapshotStale", "exp_alerts": []},
                    {"eval_time": "28m", "alertname": "Ec2cachedSnapshotStale", "exp_alerts": []},
                    {"eval_time": "29m", "alertname": "Ec2cachedSnapshotStale",
                     "exp_alerts": stale(("slow-stopped", 29 * 60 - 1080))},
                    {"eval_time": "40m", "alertname": "Ec2cachedSnapshotStale",
                     "exp_alerts": stale(("slow-stopped", 40 * 60 - 1080))},
                    {"eval_time": "10m", "alertname": "Ec2cachedFleetStale", "exp_alerts": []},
                    {"eval_time": "40m", "alertname": "Ec2cachedFleetStale", "exp_alerts": []},
                ],
            },
            {
                # Issue 22, item 16 (b): the one poller of fleet A sweeps every minute, but from
                # 10m its uploads fail (the last sweep it found in S3: 10m's; every poll fails,
                # reason s3). Its own names are current; the followers confirm (304) an object
                # that is not. The fleet is stale past 94 s: from 12m, firing from 17m.
                "name": "a poller whose uploads fail",
                "interval": "1m",
                "input_series": [
                    *poller("poller", "0+60x40", "0+60x10 600x30", FLEET_A, failures="0x10 1+1x30"),
                    *follower("follower-1", FLEET_A), *follower("follower-2", FLEET_A),
                ],
                "alert_rule_test": [
                    {"eval_time": "16m", "alertname": "Ec2cachedFleetStale", "exp_alerts": []},
                    {"eval_time": "17m", "alertname": "Ec2cachedFleetStale",
                     "exp_alerts": fleet_stale((FLEET_A, 420))},
                    {"eval_time": "30m", "alertname": "Ec2cachedFleetStale",
                     "exp_alerts": fleet_stale((FLEET_A, 1200))},
                    # One alert for the fleet, none for each of its hosts.
                    {"eval_time": "30m", "alertname": "Ec2cachedSnapshotStale", "exp_alerts": []},
                    {"eval_time": "30m", "alertname": "Ec2cachedPollsFailing",
                     "exp_alerts": failing(("poller", 20))},
                ],
            },
            {
                # Issue 22, item 16 (c): fleet A's two pollers sweep every minute (their own
                # snapshots always current). poller-a's uploads fail from the start, poller-b's
                # from 15m. While poller-b uploads the fleet is current (poller-a is
                # Ec2cachedPollsFailing's); then it is stale however new the pollers' own
                # snapshots: from 17m, firing from 22m.
                "name": "pollers with fresh snapshots of their own",
                "interval": "1m",
                "input_series": [
                    *poller("poller-a", "0+60x40", "0x40", FLEET_A, failures="1+1x40"),
                    *poller("poller-b", "0+60x40", "0+60x15 900x25", FLEET_A, failures="0x15 1+1x25"),
                    *follower("follower", FLEET_A),
                ],
                "alert_rule_test": [
                    {"eval_time": "14m", "alertname": "Ec2cachedFleetStale", "exp_alerts": []},
                    {"eval_time": "14m", "alertname": "Ec2cachedPollsFailing",
                     "exp_alerts": failing(("poller-a", 15))},
                    {"eval_time": "21m", "alertname": "Ec2cachedFleetStale", "exp_alerts": []},
                    {"eval_time": "22m", "alertname": "Ec2cachedFleetStale",
                     "exp_alerts": fleet_stale((FLEET_A, 420))},
                    {"eval_time": "22m", "alertname": "Ec2cachedSnapshotStale", "exp_alerts": []},
                ],
            },
            {
                # Issue 22, item 16 (d): two fleets in one Prometheus, and a poller of neither
                # (no [publish]). Fleet A is healthy; fleet B's one poller stopped at 0. B is
                # stale (from 2m, firing from 7m), A is not.
                "name": "two fleets",
                "interval": "1m",
                "input_series": [
                    *poller("a-poller", "0+60x40", "0+60x40", FLEET_A), *follower("a-follower", FLEET_A),
                    *poller("b-poller", "0x40", "0x40", FLEET_B), *follower("b-follower", FLEET_B),
                    *poller("alone", "0+60x40"),
                ],
                "alert_rule_test": [
                    {"eval_time": "6m", "alertname": "Ec2cachedFleetStale", "exp_alerts": []},
                    {"eval_time": "7m", "alertname": "Ec2cachedFleetStale",
                     "exp_alerts": fleet_stale((FLEET_B, 420))},
                    {"eval_time": "20m", "alertname": "Ec2cachedFleetStale",
                     "exp_alerts": fleet_stale((FLEET_B, 1200))},
                    {"eval_time": "20m", "alertname": "Ec2cachedSnapshotStale",
                     "exp_alerts": stale(("b-poller", 1200))},
                ],
            },
            {
                # "failing" fails every poll from 1m; "flapping" every other one; "recovered"
                # failed from 0 to 11m, then succeeded.
                "name": "failing polls",
                "interval": "1m",
                "input_series": [
                    series("ec2cached_consecutive_failures", "failing", "0 1+1x30"),
                    series("ec2cached_consecutive_failures", "flapping", " ".join(["0 1"] * 15)),
                    series("ec2cached_consecutive_failures", "recovered", "1+1x11 0x20"),
                    series("ec2cached_snapshot_present", "failing", "1x30"),
                ],
                "alert_rule_test": [
                    {"eval_time": "9m", "alertname": "Ec2cachedPollsFailing", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "Ec2cachedPollsFailing",
                     "exp_alerts": failing(("recovered", 11))},
                    {"eval_time": "11m", "alertname": "Ec2cachedPollsFailing",
                     "exp_alerts": failing(("failing", 11), ("recovered", 12))},
                    {"eval_time": "12m", "alertname": "Ec2cachedPollsFailing",
                     "exp_alerts": failing(("failing", 12))},
                    {"eval_time": "25m", "alertname": "Ec2cachedPollsFailing",
                     "exp_alerts": failing(("failing", 25))},
                    {"eval_time": "25m", "alertname": "Ec2cachedNoSnapshot", "exp_alerts": []},
                ],
            },
            {
                # "bare" never had a snapshot; "healed" had none for its first 5 minutes.
                "name": "no snapshot",
                "interval": "1m",
                "input_series": [
                    series("ec2cached_snapshot_present", "bare", "0x30"),
                    series("ec2cached_snapshot_present", "healed", "0x5 1x25"),
                ],
                "alert_rule_test": [
                    {"eval_time": "9m", "alertname": "Ec2cachedNoSnapshot", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "Ec2cachedNoSnapshot", "exp_alerts": bare(("bare", 0))},
                    {"eval_time": "25m", "alertname": "Ec2cachedNoSnapshot", "exp_alerts": bare(("bare", 0))},
                    {"eval_time": "25m", "alertname": "Ec2cachedSnapshotStale", "exp_alerts": []},
                ],
            },
            {
                # "ahead" installed a sweep stamped an hour ahead of the clock (this host's clock
                # stepped back); "fine" has one a minute old. Evaluated at 0 the time is 0.
                "name": "a sweep in the future",
                "interval": "1m",
                "input_series": [
                    series(gen, "ahead", "3600x30"), series(gen, "fine", "-60+60x30"),
                ],
                "alert_rule_test": [
                    {"eval_time": "9m", "alertname": "Ec2cachedSweepInTheFuture", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "Ec2cachedSweepInTheFuture",
                     "exp_alerts": [expected(rules, "Ec2cachedSweepInTheFuture", "ahead", 3000)]},
                    {"eval_time": "56m", "alertname": "Ec2cachedSweepInTheFuture", "exp_alerts": []},
                ],
            },
        ],
    }


def failed_groups(out):
    """The names of the test groups promtool says failed."""
    return set(re.findall(r"^\s*name: (.*),\s*$", out, re.M))


def test_the_alert_rules_pass_promtool_and_fire_when_they_should(tmp_path):
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 5 rules found" in r.stdout, r.stdout
    assert set(alert_rules()) == {"Ec2cachedSnapshotStale", "Ec2cachedFleetStale", "Ec2cachedPollsFailing",
                                  "Ec2cachedNoSnapshot", "Ec2cachedSweepInTheFuture"}
    tests = tmp_path / "ec2cached.test.yml"
    tests.write_text(json.dumps(rule_tests(RULES), indent=1))  # JSON is YAML
    r = promtool("test", "rules", str(tests))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout, r.stdout
    # The unit tests can fail: the same tests on rules that are wrong, each in one way, fail
    # (at least) the test groups named.
    doc = yaml.safe_load(RULES.read_text())
    old_stale = "time() - ec2cached_snapshot_generation_timestamp_seconds > 3 * ec2cached_interval_seconds"
    confirmed = "ec2cached_s3_confirmed_sweep_timestamp_seconds"
    wrong = {
        "stale after 30 intervals": ("Ec2cachedSnapshotStale", "expr",
                                     lambda e: e.replace("> 3 * ec2cached_interval", "> 30 * ec2cached_interval"),
                                     {"pollers and followers"}),
        "stale by the snapshot's age on followers too": ("Ec2cachedSnapshotStale", "expr", lambda e: old_stale,
                                                         {"pollers and followers"}),
        "failing after 5m": ("Ec2cachedPollsFailing", "for", lambda f: "5m", {"failing polls"}),
        # Issue 22, item 16: the old rules' defects, one at a time.
        "stale whatever the sweep's duration": ("Ec2cachedSnapshotStale", "expr",
                                                lambda e: e.replace(SWEEP_ALLOWANCE, ""), {"slow sweeps"}),
        "never stale without a sweep of its own": ("Ec2cachedSnapshotStale", "expr",
                                                   lambda e: e.replace(SWEEP_ALLOWANCE,
                                                                       " + 2 * ec2cached_sweep_duration_seconds"),
                                                   {"pollers and followers"}),
        "fleet stale whatever the sweep's duration": ("Ec2cachedFleetStale", "expr",
                                                      lambda e: e.replace(" + 2 * ec2cached_sweep_duration_seconds",
                                                                          ""),
                                                      {"slow sweeps"}),
        "fleet stale by the pollers' own snapshots": ("Ec2cachedFleetStale", "expr",
                                                      lambda e: e.replace(confirmed, "ec2cached_snapshot_generation_"
                                                                                     "timestamp_seconds"),
                                                      {"a poller whose uploads fail",
                                                       "pollers with fresh snapshots of their own"}),
        # The old rule's one max() over every host, but labelled by fleet as the tests expect:
        # each fleet's newest sweep in S3 is any fleet's.
        "in the future only past an hour": ("Ec2cachedSweepInTheFuture", "expr",
                                            lambda e: e.replace("> 300", "> 3600"),
                                            {"a sweep in the future"}),
        "one max() for every fleet": ("Ec2cachedFleetStale", "expr",
                                      lambda e: e.replace(f"{confirmed} * on(instance, job) group_left(fleet)",
                                                          f"scalar(max({confirmed})) *"),
                                      {"two fleets"}),
    }
    for what, (alert, key, change, groups) in wrong.items():
        broken_doc = json.loads(json.dumps(doc))
        rule = next(r for g in broken_doc["groups"] for r in g["rules"] if r["alert"] == alert)
        assert change(rule[key]) != rule[key], what
        rule[key] = change(rule[key])
        broken = tmp_path / "broken.rules.yml"
        broken.write_text(json.dumps(broken_doc, indent=1))
        r = promtool("check", "rules", str(broken))
        assert r.returncode == 0, (what, r.stdout + r.stderr)
        tests.write_text(json.dumps(rule_tests(broken), indent=1))
        r = promtool("test", "rules", str(tests))
        assert r.returncode == 1 and "FAILED" in r.stdout + r.stderr, (what, r.stdout + r.stderr)
        assert groups <= failed_groups(r.stdout + r.stderr), (what, r.stdout + r.stderr)
