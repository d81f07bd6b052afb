"""Issue 22: the feed and its operations, through the real binary.

Each test failed on the code before the fix it names.
"""

import subprocess
import time

import pytest

from conftest import EC2CACHED, ROOT
from test_facts_metrics import imds  # noqa: F401 (a fixture)


def test_run_without_a_follow_url_is_a_configuration_error_the_unit_does_not_restart(tmp_path):
    """`[follow]` without `url` made `run` exit 1, and systemd restarted it every 5 s for ever.
    Now it is exit 2, a configuration error, which the unit does not restart."""
    cfg = tmp_path / "ec2cached.toml"
    cfg.write_text(f'snapshot = "{tmp_path}/hosts.snap"\n[follow]\n')
    r = subprocess.run([EC2CACHED, "--config", str(cfg), "run"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "[follow] has no `url`" in r.stderr and str(cfg) in r.stderr, r.stderr
    unit = (ROOT / "debian" / "ec2cached.service").read_text().splitlines()
    assert "RestartPreventExitStatus=2" in unit
    assert "Restart=on-failure" in unit
    # `install` on such a host is still what it is for.
    r = subprocess.run([EC2CACHED, "--config", str(cfg), "install", "/dev/null"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "not a regular file" in r.stderr, r.stderr


def test_install_of_a_fifo_is_refused_at_once(tmp_path):
    """`ec2cached install FIFO` hung for ever: it opened the file before checking its type."""
    import os
    fifo = tmp_path / "snap.fifo"
    os.mkfifo(fifo)
    cfg = tmp_path / "ec2cached.toml"
    cfg.write_text(f'snapshot = "{tmp_path}/hosts.snap"\n')
    r = subprocess.run([EC2CACHED, "--config", str(cfg), "install", str(fifo)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 1, r
    assert r.stderr.strip() == f"ec2cached: cannot read {fifo}: not a regular file", r.stderr


def test_sigterm_is_served_while_a_publish_waits_for_the_writers_lock(fleet, host):
    """Issue 22, item 12: the daemon waited for the writers' lock (up to 10 s, another writer
    beside it) on its only runtime thread, and SIGTERM waited with it. Now the wait is off the
    runtime: the daemon exits at once, cleanly, and the lock holder's snapshot is untouched."""
    import fcntl
    import os
    import signal
    import time

    fleet.launch(tags={"services": "redis"})
    host.configure(interval=1)
    lock = open(f"{host.snapshot}.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    d = subprocess.Popen([EC2CACHED, "--config", str(host.config), "run"], env=host.env(),
                         stderr=subprocess.PIPE, text=True)
    try:
        # Wait until the daemon holds the lock file open: its publish is waiting for the lock.
        lock_path = os.path.realpath(f"{host.snapshot}.lock")

        def waiting():
            fds = f"/proc/{d.pid}/fd"
            return any(os.path.realpath(os.path.join(fds, n)) == lock_path for n in os.listdir(fds))

        deadline = time.monotonic() + 20
        while not waiting() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting(), "the daemon never came to wait for the writers' lock"
        time.sleep(0.5)
        assert d.poll() is None
        sent = time.monotonic()
        d.send_signal(signal.SIGTERM)
        code = d.wait(timeout=15)
        took = time.monotonic() - sent
    finally:
        if d.poll() is None:
            d.kill()
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    err = d.stderr.read()
    assert code == 0, err
    assert took < 3, f"SIGTERM took {took:.1f} s to be served: {err[-1500:]}"
    assert not host.snapshot.exists(), "nothing was published under another writer's lock"



def test_facts_keep_a_service_whole_when_a_name_ends_like_it(fleet, host, imds):
    """Issue 22, item 18: a [[name]] `postgres.tphon` made `facts` list the service
    `readonly.postgres` (of group tphon) as `readonly`: the longest set ending the service's
    name was stripped. Now the service's own set is (a zone's, never a [[name]])."""
    import json

    from test_facts_metrics import facts_env, tphon

    f = tphon(fleet)
    me = f["me"]
    host.config.write_text(
        f'snapshot = "{host.snapshot}"\nregions = ["us-east-1"]\n'
        '[[zone]]\nkey = "security-group"\nservices = true\n'
        '[[name]]\nname = "postgres.tphon"\nmatch = ["tag:services"]\n')
    host.refresh()
    got = json.loads(host.ec2cached("facts", env=facts_env(host, imds(me).url)).stdout)
    assert got["services"] == ["postgres", "readonly.postgres"], got
    assert "postgres.tphon" in got["groups"], got
    assert host.hosts("readonly.postgres.tphon.ec2") == (0, [fleet.ipv4(me)])


# Items 1, 2, 3, 9, 10, 15 and 17 through the real binary (the Rust unit tests say why; these
# say what a user sees).

from test_fleet import NAME, last_line, make_follower, make_poller, world, bucket, trap  # noqa: E402,F401
from fleethelp import URL  # noqa: E402
from snapfile import resign  # noqa: E402

DAY = 86_400


def test_a_new_follower_refuses_an_old_object_of_a_default_poller(world, tmp_path, trap):
    """Item 1: an object a default poller signed (max_age 4 h) 90 days ago, or in 1970, put back
    in S3, was installed by a follower with nothing installed. Now it is refused as expired."""
    good = world.publish()
    now = int(time.time())
    for n, when in enumerate((now - 90 * DAY, 1)):
        world.bucket.put(resign(good, world.poller.key, URL, generated=when))
        f = make_follower(tmp_path, f"new{n}", world.url, trap, [world.poller.pub])
        r = f.refresh(check=False)
        assert r.returncode == 1, r.stderr
        why = last_line(r.stderr)
        assert "expired" in why and "more than its max_age (14400 s)" in why, why
        assert not f.snapshot.exists() and f.answer(NAME)[0] != 0
        assert f.status_file()["follow_outcome"] == "refused_rollback"


def test_removing_the_snapshot_does_not_reopen_rollback(world, tmp_path, trap):
    """Item 1: the newest sweep a follower verified is kept beside the snapshot
    (hosts.snap.high-water): an emptied state directory but that file does not let an older
    signed object in; a newer one installs."""
    f = make_follower(tmp_path, "follower", world.url, trap, [world.poller.pub])
    g1 = world.publish()
    world.move()
    g2 = world.publish()
    f.refresh()
    assert f.snapshot.read_bytes() == g2
    mark = f.dir / "hosts.snap.high-water"
    assert mark.read_text().split() == [str(int.from_bytes(g2[24:32], "little")), world.poller.pub, URL]
    f.snapshot.unlink()
    world.bucket.put(g1)
    r = f.refresh(check=False)
    assert r.returncode == 1 and "older than the newest sweep this host has verified" in last_line(r.stderr), \
        r.stderr
    assert not f.snapshot.exists()
    world.move()
    g3 = world.publish()
    f.refresh()
    assert f.snapshot.read_bytes() == g3 and f.answer(NAME) == (0, [world.ip[world.on]])


def test_a_clock_stepped_back_lets_no_old_sweep_in_and_says_so(world, tmp_path, trap):
    """Item 2: a snapshot installed while this host's clock was 90 days ahead (here put in place
    as that install left it) was ignored once the clock stepped back, and an old sweep went in.
    Now it blocks every earlier sweep; the refusal, `status` (exit 1, a `clock:` line) and the
    docs say what to do, and the operator's step (remove the snapshot and the mark) recovers."""
    import os
    good = world.publish()
    f = make_follower(tmp_path, "follower", world.url, trap, [world.poller.pub])
    ahead = resign(good, world.poller.key, URL, generated=int(time.time()) + 90 * DAY)
    f.snapshot.write_bytes(ahead)
    os.chmod(f.snapshot, 0o644)
    world.move()
    world.publish()
    r = f.refresh(check=False)
    assert r.returncode == 1, r.stderr
    why = last_line(r.stderr)
    assert "refused_rollback" in why and "in this host's future" in why and "clock was wrong" in why, why
    assert f.snapshot.read_bytes() == ahead
    st = f.ec2cached("status", check=False)
    assert st.returncode == 1 and "clock:" in st.stdout and "in this host's future" in st.stdout, st.stdout
    # The documented step: remove the snapshot and the mark beside it.
    f.snapshot.unlink()
    (f.dir / "hosts.snap.high-water").unlink(missing_ok=True)
    f.refresh()
    assert f.answer(NAME) == (0, [world.ip[world.on]])
    assert "clock:" not in f.ec2cached("status", check=False).stdout


def test_a_removed_key_keeps_what_it_signed_but_blocks_nothing(world, tmp_path, trap, moto_url):
    """Item 3: after its key left trusted_keys, the snapshot it signed kept blocking newer
    sweeps as "rollback". Now `status` says so (exit 1, `trust:`) and the next good object
    from a key trusted now replaces it, even an earlier sweep."""
    f = make_follower(tmp_path, "follower", world.url, trap, [world.poller.pub])
    installed = world.publish()
    f.refresh()
    new_key, new_pub = world.poller.keygen("new.key")
    f.follower([new_pub], interval=1)
    st = f.ec2cached("status", check=False)
    assert st.returncode == 1, st.stdout
    trust = [l for l in st.stdout.splitlines() if l.startswith("trust:")]
    assert trust and "no key trusted now signed it" in trust[0], st.stdout
    gen = int.from_bytes(installed[24:32], "little")
    earlier = resign(installed, new_key, URL, generated=gen - 10)
    world.bucket.put(earlier)
    f.refresh()
    assert f.snapshot.read_bytes() == earlier
    assert f.ec2cached("status", check=False).returncode == 0


def plain_host(tmp_path, name):
    """A host without [follow]: a config with its snapshot path only."""
    d = tmp_path / name
    d.mkdir()
    cfg = d / "ec2cached.toml"
    cfg.write_text(f'snapshot = "{d}/hosts.snap"\n')
    return d, cfg


def test_concurrent_installs_into_a_fresh_directory_all_succeed(world, tmp_path):
    """Item 9: three `install`s at once into a fresh state directory failed (22 times in 150
    rounds) with `cannot create ...hosts.snap.lock: File exists`. Now every one succeeds."""
    good = world.publish()
    src = tmp_path / "good.snap"
    src.write_bytes(good)
    for n in range(20):
        d, cfg = plain_host(tmp_path, f"round{n}")
        procs = [subprocess.Popen([EC2CACHED, "--config", str(cfg), "install", str(src)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
        outs = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
        assert all(code == 0 for code, _ in outs), outs
        assert (d / "hosts.snap").read_bytes() == good


def test_concurrent_refreshes_lose_no_count(fleet, host):
    """Item 10: the status file was read, changed and written outside any lock, so writers side
    by side lost each other's updates and `*_total` counters went down (Prometheus reads a
    reset). Now every refresh's requests are counted."""
    import json
    fleet.launch(tags={"services": "redis"})
    host.refresh()
    before = json.loads((host.dir / "hosts.snap.status").read_text())["api_requests_total"]
    procs = [subprocess.Popen([EC2CACHED, "--config", str(host.config), "refresh"], env=host.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    after = json.loads((host.dir / "hosts.snap.status").read_text())["api_requests_total"]
    assert after - before == 6 * before, (before, after)


def test_a_slow_api_never_expires_a_healthy_pollers_snapshot(fleet, host, moto_url):
    """Item 15: polls were spaced from the end of a cycle while a snapshot is stamped at its
    sweep's start, so with slow pages a max_age of about 2 × interval expired between healthy
    polls (lookups answered UNAVAIL). Now polls start an interval after the last one started:
    with 3 s sweeps (two pages, 1.5 s each), interval 4 and max_age 9, no lookup fails."""
    from faultproxy import FaultProxy
    for _ in range(3):
        fleet.launch(tags={"services": "redis"})
    proxy = FaultProxy(moto_url).start()
    try:
        proxy.page_size = 2
        host.url = proxy.url
        host.configure(interval=4, max_age=9, api_timeout=5)
        host.refresh()
        proxy.fault, proxy.slow_seconds = "slow", 1.5
        d = subprocess.Popen([EC2CACHED, "--config", str(host.config), "run"], env=host.env(),
                             stderr=subprocess.PIPE, text=True)
        try:
            fails, asked = 0, 0
            end = time.monotonic() + 30
            while time.monotonic() < end:
                asked += 1
                fails += host.hosts("redis.tphon.ec2")[0] != 0
                time.sleep(0.2)
        finally:
            d.terminate()
            d.wait(timeout=15)
        assert proxy.faults_injected >= 8, proxy.faults_injected
        assert fails == 0, f"{fails} of {asked} lookups failed: {d.stderr.read()[-1500:]}"
    finally:
        proxy.stop()


@pytest.mark.parametrize("body,key", [
    ('security_groups = []\n', "security_groups"),
    ('[[name]]\nname = "pg.tphon.ec2"\nmatch = ["tag:role=pg"]\n', "name[0].name"),
    ('regions = ["us-east-1", "us-east-1"]\n', "regions[1]"),
    ('[[account]]\nrole_arn = "arn:aws:iam::111122223333:role/r"\nexternal_id = "x"\n', "account[0].external_id"),
    ('[[zone]]\nkey = "asg"\nunder = "g"\n[[zone]]\nkey = "tag:aws:autoscaling:groupName"\nunder = "g"\n',
     "zone[1].key"),
])
def test_configs_that_would_surprise_are_refused_naming_the_key(tmp_path, body, key):
    """Item 17: each of these was accepted and surprised at run time (every name gone, a name
    under `.ec2.ec2`, a region swept twice, STS refusing every poll, two zones of one key under
    one label). Now `refresh` exits 2 with one line naming the entry and key."""
    cfg = tmp_path / "ec2cached.toml"
    cfg.write_text(f'snapshot = "{tmp_path}/hosts.snap"\n' + body)
    r = subprocess.run([EC2CACHED, "--config", str(cfg), "refresh"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"key `{key}`" in lines[0], lines


def test_install_on_a_poller_is_bounded_by_its_max_age(world, tmp_path):
    """Review of item 1: `install` on a host with [publish] (no [follow]) took a sweep of any
    age. The spec: with [publish] or [follow], never a sweep older than the fleet's max_age."""
    from snapfile import Snap
    good = world.publish()
    # Unsigned (as an operator's file), of 1970, carrying no max_age.
    plain = Snap(good)
    off = plain.get32(136)
    plain.b = plain.b[:off]
    plain.put32(136, 0)
    plain.put32(140, 0)
    import struct
    struct.pack_into("<Q", plain.b, 16, off)
    plain.set_header(generated=100, max_age=0)
    f = tmp_path / "old.snap"
    f.write_bytes(plain.bytes())
    r = world.poller.ec2cached("install", str(f), check=False)
    assert r.returncode == 1 and "expired" in r.stderr and "(14400 s)" in r.stderr, r.stderr
    assert world.poller.snapshot.read_bytes() == good
    # On a host with neither [follow] nor [publish] it is the operator's own file.
    d, cfg = plain_host(tmp_path, "plain")
    r = subprocess.run([EC2CACHED, "--config", str(cfg), "install", str(f)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
