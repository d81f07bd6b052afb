"""The daemon over time: tag moves, outages, signals, bad config, big groups, the .so itself."""

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import EC2CACHED, LIBDIR, free_port, Fleet


def wait_for(pred, timeout=30.0, step=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def test_tag_moves_between_refreshes(fleet, host):
    a, b = fleet.launch(tags={"services": "postgres"})[0], fleet.launch()[0]
    host.refresh()
    assert host.hosts("postgres.tphon.ec2") == (0, [fleet.ipv4(a)])
    fleet.untag(a, "services")
    fleet.tag(b, services="postgres")
    host.refresh()
    assert host.hosts("postgres.tphon.ec2") == (0, [fleet.ipv4(b)])
    assert host.hosts("2.postgres.tphon.ec2")[0] == 2


def test_running_process_picks_up_a_new_snapshot(fleet, host):
    a = fleet.launch(tags={"services": "postgres"})[0]
    b = fleet.launch()[0]
    host.refresh()
    code = (
        "import ctypes, socket, sys\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.__nss_configure_lookup(b'hosts', b'ec2')\n"
        "for line in sys.stdin:\n"
        "    try:\n"
        "        print(socket.gethostbyname('postgres.tphon.ec2'), flush=True)\n"
        "    except OSError as e:\n"
        "        print('error', e, flush=True)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], env=host.env(), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == fleet.ipv4(a)
        fleet.untag(a, "services")
        fleet.tag(b, services="postgres")
        host.refresh()
        time.sleep(0.3)  # the module looks at the file at most every 100 ms
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == fleet.ipv4(b)
    finally:
        p.kill()
        p.wait()


def test_api_outage_leaves_the_snapshot_byte_for_byte(fleet, host):
    fleet.launch(tags={"services": "redis"})
    host.refresh()
    before = host.snapshot.read_bytes()
    dead = f"http://127.0.0.1:{free_port()}"
    r = host.refresh(check=False, env={**host.env(), "AWS_ENDPOINT_URL": dead})
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last == f"ec2cached: cannot reach the EC2 API at {dead}: connection refused (DescribeInstances in us-east-1, page 1)", r.stderr
    assert host.snapshot.read_bytes() == before
    assert host.hosts("redis.tphon.ec2")[0] == 0
    st = host.ec2cached("status", check=False)
    assert st.returncode == 1
    assert "last error:" in st.stdout and "DescribeInstances" in st.stdout
    assert "FAILED" in st.stdout
    # Healing: the next good poll clears the failure.
    host.refresh()
    st = host.ec2cached("status", check=False)
    assert st.returncode == 0, st.stdout


def test_bad_credentials_fail_cleanly(fleet, host):
    fleet.launch()
    host.refresh()
    before = host.snapshot.read_bytes()
    env = host.env()
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(k)
    env.update(AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent")
    r = host.refresh(check=False, env=env)
    assert r.returncode != 0
    assert "credentials" in r.stderr.lower(), r.stderr
    assert host.snapshot.read_bytes() == before


@pytest.fixture
def own_moto(tmp_path):
    """A moto server of this test's own, which the test may stop and start on one port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs = []

    def start():
        p = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)

        def up():
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                return True
            except OSError:
                return False

        assert wait_for(up, 30)
        return p

    def stop():
        # SIGKILL: the API is gone at once (after SIGTERM moto takes seconds of CPU to exit).
        p = procs.pop()
        p.kill()
        p.wait()

    yield url, start, stop
    for p in procs:
        p.kill()
        p.wait()


def test_daemon_survives_the_api_going_away_and_recovers(host, own_moto):
    import boto3

    url, start, stop = own_moto
    start()
    host.url = url

    def client():
        return boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                            aws_access_key_id="t", aws_secret_access_key="t")

    fleet = Fleet(client())
    a = fleet.launch(tags={"services": "redis"})[0]
    host.configure(interval=1)
    d = subprocess.Popen([EC2CACHED, "--config", str(host.config), "run"],
                         env=host.env(), stderr=subprocess.PIPE, text=True)
    try:
        a_ip = fleet.ipv4(a)
        assert wait_for(lambda: host.hosts("redis.tphon.ec2") == (0, [a_ip]), 30)
        before = host.snapshot.read_bytes()
        stop()
        # Several failed polls: the daemon keeps running and the snapshot stays as it was.
        assert wait_for(lambda: "FAILED" in host.ec2cached("status", check=False).stdout, 30)
        time.sleep(2)
        assert d.poll() is None
        assert host.snapshot.read_bytes() == before
        assert host.hosts("redis.tphon.ec2") == (0, [a_ip])
        # The API comes back (empty: a new moto); the daemon recovers within its backoff ceiling.
        start()
        fleet2 = Fleet(client())
        b = fleet2.launch(tags={"services": "redis"})[0]
        # By b's own name: a new moto gives b the address a had, so the group name alone would
        # show b's address from the old snapshot, before any poll succeeded.
        assert wait_for(lambda: host.hosts(f"{b}.ec2") == (0, [fleet2.ipv4(b)]), 30)
        assert host.hosts("redis.tphon.ec2") == (0, [fleet2.ipv4(b)])
        assert host.ec2cached("status", check=False).returncode == 0
    finally:
        d.send_signal(signal.SIGTERM)
        assert d.wait(timeout=20) == 0
    log = d.stderr.read()
    assert "poll failed, keeping the last snapshot" in log
    assert "ec2cached stopping" in log


def test_run_polls_on_sighup_and_stops_on_sigterm(fleet, host):
    a = fleet.launch()[0]
    host.configure(interval=3600)
    d = subprocess.Popen([EC2CACHED, "--config", str(host.config), "run"],
                         env=host.env(), stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: host.hosts("tphon.ec2")[0] == 0, 30)
        b = fleet.launch()[0]
        assert fleet.ipv4(b) not in host.hosts("tphon.ec2")[1]
        d.send_signal(signal.SIGHUP)
        assert wait_for(lambda: fleet.ipv4(b) in host.hosts("tphon.ec2")[1], 30)
    finally:
        d.send_signal(signal.SIGINT)
        assert d.wait(timeout=20) == 0
    assert "SIGHUP: polling now" in d.stderr.read()


BAD_CONFIGS = [
    ("interval = \"x\"", "key `interval`"),
    ("interval = 0", "key `interval`"),
    ("address = \"both\"", "key `address`"),
    ("ready_tag = \"ready\"", "key `ready_tag`"),
    ("security_groups = \"tphon\"", "key `security_groups`"),
    ("regions = [1]", "key `regions[0]`"),
    ("domain = \"a b\"", "key `domain`"),
    ("colour = \"blue\"", "key `colour`: unknown field `colour`"),
    ("this is not toml", ""),
]


@pytest.mark.parametrize("text,key", BAD_CONFIGS)
def test_bad_config_is_one_clear_line(fleet, host, text, key):
    fleet.launch()
    host.refresh()
    before = host.snapshot.read_bytes()
    host.config.write_text(f'snapshot = "{host.snapshot}"\n{text}\n')
    r = host.refresh(check=False)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"ec2cached: {host.config}: {key}"), lines[0]
    assert host.snapshot.read_bytes() == before


def test_unreadable_config(host):
    r = subprocess.run([EC2CACHED, "--config", "/nonexistent.toml", "status"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "ec2cached: /nonexistent.toml: cannot read: No such file or directory (os error 2)"


def test_config_the_account_cannot_read(host, tmp_path):
    d = tmp_path / "conf"
    d.mkdir(mode=0o755)
    cfg = d / "ec2cached.toml"
    cfg.write_text("interval = 30\n")
    os.chmod(cfg, 0o600)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        EC2CACHED, "--config", str(cfg), "status"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == f"ec2cached: {cfg}: cannot read: Permission denied (os error 13)"


def test_explain(fleet, host):
    a = fleet.launch(tags={"services": "redis", "af-status": "ready"})[0]
    b = fleet.launch(tags={"services": "redis"})[0]
    c = fleet.launch(tags={"services": "web", "af-status": "ready"})[0]
    host.configure(ready_tag="af-status=ready")
    r = host.ec2cached("explain", "redis.tphon.ec2")
    assert a in r.stdout
    r = host.ec2cached("explain", "web2.tphon.ec2", check=False)
    assert r.returncode == 1
    assert f"{b}: live but not ready" in r.stdout
    assert f"{c}: ready (af-status=ready); its services tag does not list web2" in r.stdout
    r = host.ec2cached("explain", b)
    assert "live but not ready" in r.stdout and f"{b}.ec2" in r.stdout


def test_1100_instances_behind_one_name(fleet, host):
    # moto pages by reservation: one instance each, so the sweep takes two pages of 1 000.
    ids = [fleet.launch(tags={"services": "worker"})[0] for _ in range(1100)]
    host.configure(interval=30)
    host.refresh()
    want = sorted(fleet.ipv4(i) for i in ids[:3])
    code, addrs = host.hosts("worker.tphon.ec2")
    assert code == 0 and len(addrs) == 1100
    assert set(want) <= set(addrs)
    code, addrs, _ = host.ahosts("tphon.ec2", "ahostsv4")
    assert code == 0 and len(addrs) == 1100
    code, lines, _ = host.getent("-A", "ahosts", "worker.tphon.ec2")
    assert code == 0 and len({l.split()[0] for l in lines}) == 1100
    r = host.python("print(len(socket.getaddrinfo('worker.tphon.ec2', 80, socket.AF_INET, socket.SOCK_STREAM)))\n"
                    "print(len(socket.gethostbyname_ex('worker.tphon.ec2')[2]))\n")
    assert r.stdout.split() == ["1100", "1100"], r.stderr
    assert host.hosts("1100.worker.tphon.ec2")[0] == 0
    st = host.ec2cached("status").stdout
    assert "2 request(s)" in st, "1 100 instances take two pages of 1 000"


def test_the_shared_object(host):
    so = os.path.join(LIBDIR, "libnss_ec2.so.2")
    dyn = subprocess.run(["readelf", "-d", so], capture_output=True, text=True, check=True).stdout
    assert "Library soname: [libnss_ec2.so.2]" in dyn
    needed = {l.split("[")[1].rstrip("]") for l in dyn.splitlines() if "(NEEDED)" in l}
    # An unwinder is linked in (nss-ec2/build.rs): nothing but glibc. Built for the glibc 2.28
    # floor, that is libc and the loader, and libpthread and libdl: before glibc 2.34 the
    # functions std needs from them (pthread_key_create, dlsym, ...) lived there, and since then
    # they are empty stubs of glibc (docs/platforms.md, "The floor build").
    assert {n for n in needed if not n.startswith("ld-linux")} <= {"libc.so.6", "libpthread.so.0", "libdl.so.2"}, needed
    assert "libc.so.6" in needed and len(needed) <= 4, needed
    undefined = subprocess.run(["nm", "-D", "--undefined-only", so], capture_output=True, text=True,
                               check=True).stdout
    assert "_Unwind_" not in undefined, "the unwinder must come from inside the module"
    syms = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True, check=True).stdout
    exported = {l.split()[-1] for l in syms.splitlines() if l.split()[1] in "TDBRW"}
    assert exported == {
        f"_nss_ec2_{f}" for f in (
            "gethostbyname4_r", "gethostbyname3_r", "gethostbyname2_r", "gethostbyname_r",
            "gethostbyaddr2_r", "gethostbyaddr_r", "sethostent", "gethostent_r", "endhostent",
            # Not NSS: the snapshot format it reads, for `ec2cached status`.
            "snapshot_version",
        )
    }
