"""A whole fleet through S3 (spec names.md part 2): pollers publish a signed snapshot to a bucket
on moto, followers (their own `ec2cached run`, state directory and [follow] config) install it,
and every name resolves through the real module (getent -s hosts:ec2 with each host's
NSS_EC2_SNAPSHOT). What a user sees: names, exit codes, one-line errors, `status`, the status
file and the snapshot's bytes.

Followers reach S3 through S3Proxy (fleethelp.py), which counts every request, tells EC2 from S3
and can stop S3; their AWS_ENDPOINT_URL_EC2 points at a trap that counts anything sent to it.
"""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import EC2CACHED, Host
from fleethelp import URL, Bucket, Daemons, Node, S3Proxy, generation, wait_for, write_config
from snapfile import resign

N_FOLLOWERS = 20
NAME = "postgres.tphon.ec2"


@pytest.fixture
def bucket(ec2, moto_url):
    """The fleet's bucket, on a moto just reset by the `ec2` fixture."""
    return Bucket(moto_url)


@pytest.fixture
def daemons():
    d = Daemons()
    yield d
    d.kill_all()


@pytest.fixture
def proxy(moto_url):
    p = S3Proxy(moto_url).start()
    yield p
    p.stop()


@pytest.fixture
def trap():
    """Where followers' EC2 requests would go (AWS_ENDPOINT_URL_EC2): it counts them."""
    p = S3Proxy(None).start()
    yield p
    p.stop()


def make_poller(tmp_path, moto_url, name="poller", key=None, url=URL, fleet=None, **keys):
    """A poller with [publish] to URL, signing with its own new key (or KEY: (path, public)),
    for FLEET (default: its url)."""
    p = Node(tmp_path, name, moto_url)
    p.key, p.pub = key or p.keygen()
    keys.setdefault("interval", 1)
    publish = {"url": url, "signing_key": str(p.key)}
    if fleet is not None:
        publish["fleet"] = fleet
    return p.poller(publish=publish, **keys)


def make_follower(tmp_path, name, url, trap, pubs, **keys):
    """A follower reaching S3 at URL (moto or a proxy); EC2 only at the trap. `follows`: the
    object's s3:// URL (default: the fleet's)."""
    f = Node(tmp_path, name, url, extra_env={"AWS_ENDPOINT_URL_EC2": trap.url})
    keys.setdefault("interval", 1)
    if "follows" in keys:
        keys["url"] = keys.pop("follows")
    return f.follower(pubs, **keys)


def move(fleet, frm, to, service="postgres"):
    """Moves the services tag from instance FRM to TO; returns when both calls are done."""
    fleet.untag(frm, "services")
    fleet.tag(to, services=service)
    return time.monotonic()


def after(gen):
    """Sleeps until the wall clock is past second GEN: the next sweep is strictly newer."""
    while time.time() < gen + 1.05:
        time.sleep(0.05)


def answer_times(nodes, want, timeout, since=None):
    """Polls every node until `getent hosts NAME` answers exactly WANT; returns {name: seconds
    from SINCE (default: now) to the first such answer} of those that did within TIMEOUT."""
    since = since or time.monotonic()
    pending = list(nodes)
    got = {}
    end = time.monotonic() + timeout
    while pending and time.monotonic() < end:
        for n in list(pending):
            if n.answer() == (0, want):
                got[n.name] = time.monotonic() - since
                pending.remove(n)
        time.sleep(0.05)
    return got


def last_line(stderr):
    lines = stderr.strip().splitlines()
    assert lines, "no message on stderr"
    return lines[-1]


def one_line(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ec2cached: "), lines[0]
    return lines[0]


# 1. The fleet.

def test_a_tag_move_reaches_twenty_followers_that_never_call_ec2(fleet, bucket, tmp_path, moto_url,
                                                                 daemons, proxy, trap):
    """One poller publishes to S3; 20 followers, each its own `ec2cached run` with its own state
    directory and a [follow] config, answer postgres.tphon.ec2 through the module with the
    poller's signed file, byte for byte. A services tag moved on EC2 reaches every one of them
    within a bounded wait. Followers send no EC2 request at all; while nothing changes they get
    only 304s (no body)."""
    a, b = fleet.launch(tags={"services": "postgres"})[0], fleet.launch()[0]
    ip_a, ip_b = fleet.ipv4(a), fleet.ipv4(b)
    poller = make_poller(tmp_path, moto_url)
    daemons.start(poller)
    assert wait_for(lambda: bucket.get() is not None, 30), poller.log()
    followers = [make_follower(tmp_path, f"f{i:02d}", proxy.url, trap, [poller.pub])
                 for i in range(N_FOLLOWERS)]
    t0 = time.monotonic()
    for f in followers:
        daemons.start(f)
    first = answer_times(followers, [ip_a], 60)
    assert len(first) == N_FOLLOWERS, {f.name: (f.answer(), f.log()[-500:]) for f in followers
                                       if f.name not in first}
    obj = bucket.get()
    for f in followers:
        assert f.snapshot.read_bytes() == obj, f"{f.name} installed other bytes than the object"
    print(f"\nfleet: {N_FOLLOWERS} followers answering {time.monotonic() - t0:.1f} s after start")

    moved = move(fleet, a, b)
    times = answer_times(followers, [ip_b], 30, since=moved)
    late = {f.name: (f.answer(), f.outcome(), f.status_file().get("last_error")) for f in followers
            if f.name not in times}
    assert not late, f"followers still not answering the moved tag after 30 s: {late}"
    worst = max(times.values())
    median = sorted(times.values())[len(times) // 2]
    print(f"fleet: tag move -> every follower: p50 {median:.2f} s, max {worst:.2f} s "
          f"(poller and followers at interval 1 s)")
    assert worst < 15, f"propagation took {worst:.1f} s with 1 s intervals"
    assert generation(bucket.get()) > generation(obj)

    # Nothing changes for 3 s: every follower checks (~3 times), every check is a 304.
    mark = proxy.mark()
    time.sleep(3)
    gets = proxy.entries("s3", "GET", since=mark)
    assert len(gets) >= N_FOLLOWERS, f"only {len(gets)} checks in 3 s from {N_FOLLOWERS} followers"
    assert {e[4] for e in gets} == {304}, sorted({e[4] for e in gets}, key=str)
    assert proxy.bytes("s3", since=mark) == 0

    obj = bucket.get()
    for f in followers:
        assert f.snapshot.read_bytes() == obj, f"{f.name} installed other bytes than the object"
        st = f.status_file()
        assert st.get("follow_outcome") in ("unchanged", "installed"), (f.name, st)
        assert st.get("s3_requests", 0) >= 3, (f.name, st)
        assert not st.get("api_requests_total"), (f.name, st)
    st = followers[0].ec2cached("status", check=False)
    assert st.returncode == 0, st.stdout
    assert f"follows {URL}" in st.stdout, st.stdout

    # No follower ever sent an EC2 request: neither to its EC2 endpoint nor to the shared one.
    assert trap.count() == 0, trap.entries()
    assert proxy.count("ec2") == 0, proxy.entries("ec2")[:5]
    assert proxy.count("s3", "PUT") == 0, "a follower wrote to S3"
    codes = daemons.stop_all()
    assert set(codes.values()) == {0}, codes


# 2. S3 goes away and comes back.

# What the follower's reason must mention for each fault of the proxy (any of these words).
S3_FAULTS = {
    "slowdown": ("slowdown", "503", "throttl"),
    "404": ("nosuchkey", "404", "no such key", "does not exist", "not found"),
    "reset": ("connection", "reset", "cannot reach", "unreachable"),
}


def says(fault, text):
    return any(w in (text or "").lower() for w in S3_FAULTS[fault])

def test_followers_keep_answering_through_an_s3_outage_and_catch_up(fleet, bucket, tmp_path, moto_url,
                                                                    daemons, proxy, trap):
    """S3 answers 503 SlowDown, then 404, then resets every connection: followers keep answering
    from the snapshot they installed (byte for byte), their status file and `status` (exit 1)
    say why; the poller meanwhile published a moved tag, and once S3 is back every follower
    answers it and `status` is healthy again."""
    a, b = fleet.launch(tags={"services": "postgres"})[0], fleet.launch()[0]
    ip_a, ip_b = fleet.ipv4(a), fleet.ipv4(b)
    poller = make_poller(tmp_path, moto_url)
    daemons.start(poller)
    assert wait_for(lambda: bucket.get() is not None, 30), poller.log()
    followers = [make_follower(tmp_path, f"f{i}", proxy.url, trap, [poller.pub]) for i in range(3)]
    for f in followers:
        daemons.start(f)
    assert len(answer_times(followers, [ip_a], 30)) == 3
    before = {f.name: f.snapshot.read_bytes() for f in followers}
    published = generation(bucket.get())

    for fault in S3_FAULTS:
        proxy.fault = fault
        if fault == "slowdown":
            move(fleet, a, b)
            assert wait_for(lambda: generation(bucket.get()) > published, 15), poller.log()

        def failed(f):
            st = f.status_file()
            return st.get("follow_outcome") == "error" and says(fault, st.get("last_error"))

        assert wait_for(lambda: all(failed(f) for f in followers), 20), \
            {f.name: f.status_file() for f in followers}
        for f in followers:
            assert f.snapshot.read_bytes() == before[f.name]
            assert f.answer() == (0, [ip_a]), f.name
        st = followers[0].ec2cached("status", check=False)
        assert st.returncode == 1, st.stdout
        assert "(error)" in st.stdout and "FAILED" in st.stdout, st.stdout
        assert says(fault, st.stdout), st.stdout
    assert says("slowdown", followers[0].log()), followers[0].log()[-2000:]

    proxy.fault = None
    times = answer_times(followers, [ip_b], 20)
    assert len(times) == 3, {f.name: (f.answer(), f.status_file()) for f in followers}
    print(f"\ns3 outage: every follower answered the moved tag {max(times.values()):.2f} s after S3 returned")
    for f in followers:
        assert f.snapshot.read_bytes() == bucket.get()
    assert wait_for(lambda: followers[0].ec2cached("status", check=False).returncode == 0, 5), \
        followers[0].ec2cached("status", check=False).stdout
    assert trap.count() == 0 and proxy.count("ec2") == 0
    codes = daemons.stop_all()
    assert set(codes.values()) == {0}, codes


# 3. Bad objects.

MAX_SIZE = 256 * 1024
BAD = {
    # kind: the outcomes it may be refused with
    "unsigned": {"refused_signature"},
    "unknown_key": {"refused_signature"},
    "tampered": {"refused_signature"},
    "truncated": {"refused_corrupt", "refused_signature"},
    "truncated_by_one": {"refused_corrupt", "refused_signature"},
    "huge": {"refused_corrupt"},
    "other_domain": {"refused_domain"},
    "older": {"refused_rollback"},
}


class World:
    """A poller (refresh only) and three instances; postgres is on one of them at a time (each
    move goes to the next, so three states in a row have different names)."""

    def __init__(self, fleet, bucket, tmp_path, moto_url):
        self.fleet, self.bucket, self.tmp, self.url = fleet, bucket, tmp_path, moto_url
        self.a = fleet.launch(tags={"services": "postgres"})[0]
        self.b, self.c = fleet.launch()[0], fleet.launch()[0]
        self.ip = {i: fleet.ipv4(i) for i in (self.a, self.b, self.c)}
        self.on = self.a
        self.poller = make_poller(tmp_path, moto_url)
        self.made = 0

    def publish(self):
        """poller: `ec2cached refresh` (sweep + upload); the object's bytes."""
        self.poller.refresh()
        return self.bucket.get()

    def move(self, to=None):
        """Moves postgres to the next instance (or TO), in a later second than anything so far."""
        after(int(time.time()))
        order = [self.a, self.b, self.c]
        other = order[(order.index(self.on) + 1) % 3] if to is None else to
        move(self.fleet, self.on, other)
        self.on = other
        return self.ip[other]

    def bad(self, kind, good, older=None):
        """A bad object of KIND made from the good object GOOD (OLDER: an earlier good one)."""
        self.made += 1
        n = self.made
        if kind == "unsigned":
            u = Node(self.tmp, f"unsigned{n}", self.url).poller()
            u.refresh()
            return u.snapshot.read_bytes()
        if kind == "unknown_key":
            q = make_poller(self.tmp, self.url, f"stranger{n}", url=f"s3://{self.bucket.name}/stranger.snap")
            q.refresh()
            return self.bucket.get("stranger.snap")
        if kind == "other_domain":
            r = make_poller(self.tmp, self.url, f"other{n}", key=(self.poller.key, self.poller.pub),
                            url=f"s3://{self.bucket.name}/other.snap", fleet=URL, domain="other")
            r.refresh()
            return self.bucket.get("other.snap")
        if kind == "tampered":
            # postgres now points elsewhere: its address rewritten (instance record and reverse
            # index), header untouched.
            here, there = socket.inet_aton(self.ip[self.on]), socket.inet_aton("10.20.63.254")
            assert good.count(here) >= 1
            return good.replace(here, there)
        if kind == "truncated":
            return good[: len(good) // 2]
        if kind == "truncated_by_one":
            return good[:-1]
        if kind == "huge":
            return good + b"\0" * MAX_SIZE
        if kind == "older":
            assert older is not None and generation(older) < generation(good)
            return older
        raise ValueError(kind)


@pytest.fixture
def world(fleet, bucket, tmp_path, moto_url):
    return World(fleet, bucket, tmp_path, moto_url)


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_object_is_refused_and_the_installed_snapshot_kept(world, tmp_path, trap, kind):
    """The object is replaced behind the pollers' back by a bad one: a follow check (`ec2cached
    refresh` on the follower) exits 1 and says why on stderr, the installed snapshot stays byte
    for byte, names still resolve, the status file and `status` name the refusal. The poller's
    next publish heals the fleet."""
    f = make_follower(tmp_path, "follower", world.url, trap, [world.poller.pub], max_size=MAX_SIZE)
    g1 = world.publish()
    assert len(g1) < MAX_SIZE
    f.refresh()
    assert f.snapshot.read_bytes() == g1
    want = world.ip[world.on]
    older = None
    if kind == "older":
        older = g1
        want = world.move()
        g2 = world.publish()
        assert generation(g2) > generation(g1)
        f.refresh()
        assert f.snapshot.read_bytes() == g2
    installed = f.snapshot.read_bytes()
    assert f.answer(NAME) == (0, [want])

    bad = world.bad(kind, installed, older)
    world.bucket.put(bad)
    r = f.refresh(check=False)
    assert r.returncode == 1, (r.returncode, r.stderr)
    why = last_line(r.stderr)
    assert why.startswith("ec2cached: "), why
    assert f.snapshot.read_bytes() == installed, "a refused object changed the installed snapshot"
    assert f.answer(NAME) == (0, [want])
    st = f.status_file()
    assert st.get("follow_outcome") in BAD[kind], st
    assert st.get("last_error"), st
    if kind == "huge":
        assert "max_size" in st["last_error"] and "max_size" in why, (st, why)
    status = f.ec2cached("status", check=False)
    assert status.returncode == 1, status.stdout
    assert st["follow_outcome"] in status.stdout, status.stdout
    assert f"follows {URL}" in status.stdout, status.stdout
    assert trap.count() == 0

    # The poller's next publish replaces the bad object; the follower installs it.
    want = world.move()
    good = world.publish()
    assert good != bad and generation(good) > generation(installed)
    r = f.refresh(check=False)
    assert r.returncode == 0, r.stderr
    assert f.snapshot.read_bytes() == good
    assert f.answer(NAME) == (0, [want])
    assert f.status_file().get("follow_outcome") == "installed"


def test_the_poller_replaces_a_rolled_back_object_even_when_its_names_are_current(world, tmp_path, trap):
    """postgres moves a -> b (published, installed), then someone puts the earlier object (a)
    back in S3, and postgres really moves back to a. Followers refuse the old object (rollback)
    and keep answering b; the poller's next sweep (names a, like the old object, but a later
    sweep) must still be uploaded, or followers answer b, wrongly, until republish_after (an
    hour by default)."""
    f = make_follower(tmp_path, "follower", world.url, trap, [world.poller.pub])
    g1 = world.publish()
    f.refresh()
    world.move(to=world.b)
    g2 = world.publish()
    f.refresh()
    assert f.snapshot.read_bytes() == g2
    world.bucket.put(g1)
    assert f.refresh(check=False).returncode == 1
    assert f.outcome() == "refused_rollback"
    want = world.move(to=world.a)
    g3 = world.publish()
    assert generation(g3) > generation(g2), (
        f"the poller left the rolled-back object (sweep {generation(g3)}) over its newer sweep: "
        f"publish_outcome {world.poller.status_file().get('publish_outcome')!r}")
    r = f.refresh(check=False)
    assert r.returncode == 0, r.stderr
    assert f.answer(NAME) == (0, [want])


def test_a_running_follower_refuses_bad_objects_and_says_so_until_a_good_one_comes(world, tmp_path, trap,
                                                                                   daemons):
    """A running follower (interval 1 s) meets an unsigned object, a truncated one and an older
    generation in turn: each is refused within seconds, the refusal stays visible in the status
    file and `status` while the bad object stays in S3 (it is not forgotten at the next 304), the
    installed snapshot stays byte for byte and answers; a good newer object heals it."""
    f = make_follower(tmp_path, "follower", world.url, trap, [world.poller.pub])
    g = world.publish()
    daemons.start(f)
    assert answer_times([f], [world.ip[world.on]], 20), f.log()
    assert f.snapshot.read_bytes() == g
    history = [g]
    for kind in ("unsigned", "truncated", "older"):
        installed = f.snapshot.read_bytes()
        want = world.ip[world.on]
        bad = world.bad(kind, installed, history[-2] if kind == "older" else None)
        world.bucket.put(bad)
        assert wait_for(lambda: f.outcome() in BAD[kind], 15), (kind, f.status_file(), f.log()[-1500:])
        outcome = f.outcome()
        time.sleep(2.5)  # two more checks of the same (bad) object
        st = f.status_file()
        assert st.get("follow_outcome") == outcome, (kind, st)
        status = f.ec2cached("status", check=False)
        assert status.returncode == 1 and outcome in status.stdout, (kind, status.stdout)
        assert f.snapshot.read_bytes() == installed, kind
        assert f.answer(NAME) == (0, [want]), kind
        # Heal: the poller publishes a newer sweep over the bad object.
        want = world.move()
        good = world.publish()
        assert generation(good) > generation(installed)
        history.append(good)
        assert answer_times([f], [want], 15), (kind, f.status_file(), f.log()[-1500:])
        assert wait_for(lambda: f.snapshot.read_bytes() == good, 5)
        assert wait_for(lambda: f.ec2cached("status", check=False).returncode == 0, 5), kind
    log = f.log().lower()
    assert "signature" in log and ("rollback" in log or "older" in log), log[-3000:]
    assert trap.count() == 0
    codes = daemons.stop_all()
    assert set(codes.values()) == {0}, codes



def test_a_running_follower_does_not_download_a_refused_object_again(world, tmp_path, trap, daemons):
    """Issue 22, item 7: an older object put back in S3 is refused (rollback), and while the
    installed snapshot it is older than stays, the next checks are conditional GETs answered 304:
    requests go on, downloaded bytes do not grow. A newer sweep is installed as before."""
    f = make_follower(tmp_path, "follower", world.url, trap, [world.poller.pub])
    g1 = world.publish()
    daemons.start(f)
    assert answer_times([f], [world.ip[world.on]], 20), f.log()
    world.move()
    g2 = world.publish()
    assert wait_for(lambda: f.snapshot.read_bytes() == g2, 15), f.log()[-1500:]
    world.bucket.put(g1)
    assert wait_for(lambda: f.outcome() == "refused_rollback", 15), (f.status_file(), f.log()[-1500:])
    before = f.status_file()
    time.sleep(3.5)  # three more checks of the same object
    after = f.status_file()
    assert after["follow_outcome"] == "refused_rollback", after
    assert after["s3_requests"] >= before["s3_requests"] + 2, (before, after)
    assert after["s3_bytes"] == before["s3_bytes"], "the refused object was downloaded again"
    assert f.snapshot.read_bytes() == g2
    want = world.move()
    g3 = world.publish()
    assert answer_times([f], [want], 15), f.log()[-1500:]
    assert f.snapshot.read_bytes() == g3
    codes = daemons.stop_all()
    assert set(codes.values()) == {0}, codes



def test_a_poller_says_when_it_replaces_an_object_signed_by_an_unknown_key(world, tmp_path, moto_url):
    """Issue 22, item 5: two pollers that do not list each other in peer_keys replace each
    other's objects at every sweep, and followers flap. The one that replaces an object signed
    by a key it does not know says so at once: a warning, a `status` line, a metric."""
    world.publish()
    other = make_poller(tmp_path, moto_url, name="other")
    with open(other.config, "a") as c:
        c.write(f'\n[metrics]\ntextfile = "{tmp_path}/other.prom"\n')
    world.move()
    r = other.refresh()
    assert "signed by ed25519:" in r.stderr and "peer_keys" in r.stderr, r.stderr
    assert world.poller.pub in r.stderr, r.stderr
    st = other.status_file()
    assert st["s3_foreign_replaced"] == 1 and world.poller.pub in st["s3_foreign_key"], st
    status = other.ec2cached("status").stdout
    assert "foreign object:" in status and world.poller.pub in status, status
    prom = (tmp_path / "other.prom").read_text()
    assert "ec2cached_s3_foreign_objects_replaced_total 1" in prom, prom
    # Its own object, replaced by its own next sweep, is not foreign.
    world.move()
    other.refresh()
    assert other.status_file()["s3_foreign_replaced"] == 1



def test_a_poller_does_not_download_a_huge_foreign_object_to_learn_its_header(world, tmp_path):
    """Issue 22, item 7: a poller read back up to 256 MiB of the published object, and held it,
    to learn a header. Now it reads what a pollers' sweep of this fleet could be (four times its
    own snapshot, at least 1 MiB): a 24 MiB object someone put there is replaced, not downloaded."""
    world.publish()
    world.bucket.put(b"\0" * (24 << 20))
    world.move()
    good = world.publish()
    assert good.startswith(b"\x89EC2SNAP"), "the poller's own snapshot replaced it"
    st = world.poller.status_file()
    assert st["publish_outcome"] == "uploaded", st
    assert st["s3_bytes"] < (8 << 20), f"{st['s3_bytes']} bytes read back"



def test_a_follower_that_cannot_install_keeps_the_object_instead_of_downloading_it_again(
        world, tmp_path, trap, daemons):
    """Issue 22, item 7: a local failure to install (here the snapshot's place is taken by a
    directory, as a full disk would fail it) made every check download the whole object again.
    Now the object is kept in memory: the next checks are 304s and install from memory, and once
    the place is free the object is installed without another download."""
    f = make_follower(tmp_path, "follower", world.url, trap, [world.poller.pub])
    f.snapshot.mkdir()
    world.publish()
    daemons.start(f)
    assert wait_for(lambda: f.outcome() == "error", 15), (f.status_file(), f.log()[-1500:])
    before = f.status_file()
    time.sleep(3.5)  # three more checks
    after = f.status_file()
    assert after["follow_outcome"] == "error", after
    assert after["s3_requests"] >= before["s3_requests"] + 2, (before, after)
    assert after["s3_bytes"] == before["s3_bytes"], "the object was downloaded again"
    f.snapshot.rmdir()
    assert wait_for(lambda: f.outcome() == "installed" or f.snapshot.is_file(), 15), f.log()[-1500:]
    assert f.snapshot.read_bytes() == world.bucket.get()
    assert f.status_file()["s3_bytes"] == before["s3_bytes"], "installed from memory"
    assert f.answer(NAME) == (0, [world.ip[world.on]])
    codes = daemons.stop_all()
    assert set(codes.values()) == {0}, codes


def test_a_new_follower_bounds_an_object_that_carries_no_max_age(world, tmp_path, trap):
    """Issue 22, item 1 (follower side): an object from a poller that bounded nothing (max_age
    0, as before fleets were bounded) was installed by a follower with nothing installed however
    old (a sweep of 1970, one of 5 hours). Now the follower bounds it: 4 hours, or its own
    `[follow] max_age`, which also lowers an object's own max_age."""
    good = world.publish()
    now = int(time.time())
    key = world.poller.key
    for age in (now - 1, 5 * 3600):
        world.bucket.put(resign(good, key, URL, generated=now - age, max_age=0))
        f = make_follower(tmp_path, f"new{age}", world.url, trap, [world.poller.pub])
        r = f.refresh(check=False)
        assert r.returncode == 1, r.stderr
        why = last_line(r.stderr)
        assert "expired" in why and "without max_age" in why and "(14400 s)" in why, why
        assert not f.snapshot.exists()
        assert f.status_file()["follow_outcome"] == "refused_rollback"
        assert f.answer(NAME)[0] != 0
    # An hour old: within the bound, installed and answered.
    world.bucket.put(resign(good, key, URL, generated=now - 3600, max_age=0))
    f = make_follower(tmp_path, "recent", world.url, trap, [world.poller.pub])
    f.refresh()
    assert f.answer(NAME) == (0, [world.ip[world.on]])
    # [follow] max_age = 1800: the same object is too old for this host, and so is the
    # poller's own (max_age 4 h) once re-dated 40 minutes back.
    strict = make_follower(tmp_path, "strict", world.url, trap, [world.poller.pub], max_age=1800)
    r = strict.refresh(check=False)
    assert r.returncode == 1 and "(1800 s)" in last_line(r.stderr), r.stderr
    world.bucket.put(resign(good, key, URL, generated=now - 2400))
    r = strict.refresh(check=False)
    assert r.returncode == 1 and "[follow] max_age (1800 s)" in last_line(r.stderr), r.stderr
    assert not strict.snapshot.exists()


def test_a_snapshot_signed_for_another_fleet_is_refused_even_by_a_trusted_key(world, tmp_path, trap):
    """Issue 22, item 4: staging and prod on the default domain, sharing a key, installed each
    other's snapshots. The signature now binds a fleet identity (by default the object's URL):
    prod's followers refuse staging's object and say whose it is; prod's poller replaces it and
    says so; staging's own followers install it."""
    staging_url = f"s3://{world.bucket.name}/staging.snap"
    staging = make_poller(tmp_path, world.url, "staging", key=(world.poller.key, world.poller.pub),
                          url=staging_url)
    f = make_follower(tmp_path, "prod", world.url, trap, [world.poller.pub])
    world.publish()
    f.refresh()
    installed = f.snapshot.read_bytes()
    want = world.ip[world.on]
    world.move()
    staging.refresh()
    theirs = world.bucket.get("staging.snap")
    assert generation(theirs) > generation(installed)
    world.bucket.put(theirs)
    r = f.refresh(check=False)
    assert r.returncode == 1, r.stderr
    why = last_line(r.stderr)
    assert f'signed for fleet "{staging_url}", not this one' in why, why
    assert f.snapshot.read_bytes() == installed and f.answer(NAME) == (0, [want])
    assert f.status_file()["follow_outcome"] == "refused_domain"
    # Prod's poller replaces it and says whose it was.
    r = world.poller.refresh()
    assert f'signed for fleet "{staging_url}"' in r.stderr, r.stderr
    assert "foreign object:" in world.poller.ec2cached("status").stdout
    f.refresh()
    assert f.answer(NAME) == (0, [world.ip[world.on]])
    # Staging's followers (fleet = its url) take staging's object.
    s = make_follower(tmp_path, "staging-follower", world.url, trap, [world.poller.pub],
                      follows=staging_url)
    s.refresh()
    assert s.snapshot.read_bytes() == theirs
    # A signature from before fleet identities binds no fleet: refused, and said why.
    world.bucket.put(resign(theirs, world.poller.key, "", generated=int(time.time()), unbound=True))
    r = f.refresh(check=False)
    assert r.returncode == 1 and "signed for no fleet" in last_line(r.stderr), r.stderr


# 4. Two pollers on one object.

def test_two_pollers_racing_never_put_an_older_sweep_over_a_newer_one(fleet, bucket, tmp_path, moto_url,
                                                                     daemons, proxy, trap):
    """Two pollers (own keys, each listing the other's in `peer_keys`, both trusted by the
    followers) publish one object; one of them is slow (each
    DescribeInstances answer reaches it 1.5 s late: its sweeps are older than the other's). While
    tags move, the object's generation never goes back, and followers end on the last state. Then
    a deterministic race: a slow sweep that started before a tag move finishes after the fast
    poller published the move: the object stays the fast one's (status: newer_published)."""
    a, b = fleet.launch(tags={"services": "postgres"})[0], fleet.launch()[0]
    ip = {a: fleet.ipv4(a), b: fleet.ipv4(b)}
    slow = make_poller(tmp_path, proxy.url, "slow")
    fast = make_poller(tmp_path, moto_url, "fast")
    for me, peer in ((slow, fast), (fast, slow)):
        me.poller(publish={"url": URL, "signing_key": str(me.key), "peer_keys": [peer.pub]}, interval=1)
    proxy.ec2_delay = 1.5
    f = make_follower(tmp_path, "follower", moto_url, trap, [slow.pub, fast.pub])

    gens, outcomes, stop = [], set(), threading.Event()

    def sample():
        while not stop.is_set():
            data = bucket.get()
            if data is not None:
                gens.append(generation(data))
            for p in (slow, fast):
                o = p.status_file().get("publish_outcome")
                if o:
                    outcomes.add((p.name, o))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    daemons.start(slow)
    daemons.start(fast)
    daemons.start(f)
    sampler.start()
    try:
        on = a
        for _ in range(4):
            time.sleep(2.5)
            other = b if on == a else a
            last_move = time.time()
            move(fleet, on, other)
            on = other
        assert answer_times([f], [ip[on]], 15), (f.status_file(), f.log()[-1500:])
        time.sleep(3)  # a few more rounds of both
    finally:
        stop.set()
        sampler.join(5)
    drops = [(x, y) for x, y in zip(gens, gens[1:]) if y < x]
    assert not drops, f"the object's generation went back: {drops}"
    assert len(set(gens)) >= 4, f"too few uploads seen: {sorted(set(gens))}"
    final = bucket.get()
    assert generation(final) >= int(last_move) - 1
    assert f.answer(NAME) == (0, [ip[on]])
    assert wait_for(lambda: f.snapshot.read_bytes() == bucket.get(), 5)
    assert {o for _, o in outcomes} <= {"uploaded", "unchanged", "newer_published"}, outcomes
    print(f"\nracing pollers: publish outcomes seen {sorted(outcomes)}; "
          f"{len(set(gens))} generations in S3, never backwards")
    codes = daemons.stop_all()
    assert set(codes.values()) == {0}, codes

    # The deterministic race, with `refresh`.
    proxy.ec2_delay = 2.5
    mark = proxy.mark_answered()
    p = subprocess.Popen([EC2CACHED, "--config", str(slow.config), "refresh"], env=slow.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Its sweep has read the fleet (the answer is held back): now the tag moves.
        assert wait_for(lambda: proxy.answered_since(mark, "DescribeInstances") > 0, 10)
        started = time.time()
        other = b if on == a else a
        after(int(started))
        move(fleet, on, other)
        fast.refresh()
        newer = bucket.get()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    print(f"racing pollers: the slow refresh exited {p.returncode}: {err.strip()[-300:]!r}")
    assert bucket.get() == newer, "an older sweep replaced a newer one in S3"
    assert generation(slow.snapshot.read_bytes()) < generation(newer)
    assert slow.status_file().get("publish_outcome") == "newer_published", slow.status_file()
    f.refresh()
    assert f.answer(NAME) == (0, [ip[other]])
    assert f.snapshot.read_bytes() == newer


# 5. ec2cached install.

LOOP = """
import ctypes, os, socket, sys, time
libc = ctypes.CDLL(None)
assert libc.__nss_configure_lookup(b'hosts', b'ec2') == 0
stop, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
last, n, errors = None, 0, 0
while not os.path.exists(stop) and time.monotonic() < deadline:
    try:
        a = socket.gethostbyname('postgres.tphon.ec2')
    except OSError as e:
        a, errors = 'error ' + str(e), errors + 1
    n += 1
    if a != last:
        print(a, flush=True)
        last = a
print('lookups', n, 'errors', errors, flush=True)
sys.exit(3 if errors else 0)
"""


def test_install_checks_like_a_follower_and_replaces_a_mapped_file_safely(world, tmp_path):
    """`ec2cached install FILE` on a host with [follow] trusted_keys (no url): a good signed
    snapshot installs (exit 0, names resolve, the same file again is fine); every bad kind is
    refused with exit 1, one line on stderr and the installed file untouched. A program that
    keeps resolving through the module while files are installed under it never fails and
    switches to the new answer."""
    h = Node(tmp_path, "installer", world.url).follower([world.poller.pub], url=None)
    files = tmp_path / "files"
    files.mkdir()

    def file(name, data):
        p = files / name
        p.write_bytes(data)
        return str(p)

    g1 = world.publish()
    r = h.ec2cached("install", file("g1.snap", g1), check=False)
    assert r.returncode == 0, r.stderr
    assert h.snapshot.read_bytes() == g1
    assert oct(h.snapshot.stat().st_mode & 0o777) == oct(0o644)
    assert h.answer(NAME) == (0, [world.ip[world.on]])
    assert h.ec2cached("install", file("g1.snap", g1), check=False).returncode == 0
    assert h.snapshot.read_bytes() == g1
    want = world.move()
    g2 = world.publish()

    stop = tmp_path / "stop"
    out = tmp_path / "loop.out"
    with open(out, "w") as o:
        loop = subprocess.Popen([sys.executable, "-c", LOOP, str(stop), "40"], env=h.env(), stdout=o,
                                stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: out.read_text().splitlines()[:1] == [world.ip[world.a]], 10), out.read_text()
        r = h.ec2cached("install", file("g2.snap", g2), check=False)
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: want in out.read_text().splitlines(), 5), out.read_text()
        assert h.snapshot.read_bytes() == g2
        for kind in BAD:
            if kind == "huge":
                continue  # the size cap is the follower's, for what it downloads
            bad = world.bad(kind, g2, g1)
            r = h.ec2cached("install", file(f"{kind}.snap", bad), check=False)
            assert r.returncode == 1, (kind, r.returncode, r.stderr)
            one_line(r.stderr)
            assert h.snapshot.read_bytes() == g2, kind
            assert h.answer(NAME) == (0, [want]), kind
        r = h.ec2cached("install", str(files / "missing.snap"), check=False)
        assert r.returncode == 1, r.stderr
        one_line(r.stderr)
        r = h.ec2cached("install", check=False)
        assert r.returncode == 2, r.stderr
        # A third generation, installed under the loop as well.
        want3 = world.move()
        g3 = world.publish()
        assert h.ec2cached("install", file("g3.snap", g3), check=False).returncode == 0
        assert wait_for(lambda: out.read_text().splitlines()[-1:] == [want3], 5), out.read_text()
        time.sleep(0.5)
    finally:
        stop.touch()
        try:
            code = loop.wait(timeout=20)
        except subprocess.TimeoutExpired:
            loop.kill()
            loop.wait()
            code = None
    lines = out.read_text().splitlines()
    assert code == 0, lines
    assert lines[:-1] == [world.ip[world.a], want, want3], lines
    assert lines[-1].startswith("lookups ") and lines[-1].endswith(" errors 0"), lines
    print(f"\ninstall under a running process: {lines[-1]}")


def test_install_without_trusted_keys_takes_an_unsigned_snapshot(world, tmp_path):
    """Without [follow] trusted_keys, `install` needs no signature: an unsigned snapshot (from a
    plain `refresh`) installs; so does a signed one, which the module reads as any snapshot; an
    older one is still refused."""
    h = Node(tmp_path, "plain", world.url)
    write_config(h.config, {"snapshot": str(h.snapshot)}, {})
    u = Node(tmp_path, "unsigned", world.url).poller()
    u.refresh()
    unsigned = tmp_path / "unsigned.snap"
    unsigned.write_bytes(u.snapshot.read_bytes())
    r = h.ec2cached("install", str(unsigned), check=False)
    assert r.returncode == 0, r.stderr
    assert h.snapshot.read_bytes() == unsigned.read_bytes()
    assert h.answer(NAME) == (0, [world.ip[world.on]])
    want = world.move()
    signed = tmp_path / "signed.snap"
    signed.write_bytes(world.publish())
    r = h.ec2cached("install", str(signed), check=False)
    assert r.returncode == 0, r.stderr
    assert h.answer(NAME) == (0, [want])
    r = h.ec2cached("install", str(unsigned), check=False)
    assert r.returncode == 1, r.stderr
    one_line(r.stderr)
    assert h.snapshot.read_bytes() == signed.read_bytes()


# 6. keygen.

def test_keygen_writes_a_private_key_once_and_prints_the_public_one(tmp_path):
    """`ec2cached keygen --secret FILE`: a 0600 file, one line `ed25519:<64 hex>` on stdout;
    a second run on the same file refuses (exit 1, one line on stderr, the key unchanged); two
    keys differ."""
    h = Host(tmp_path, "http://127.0.0.1:1")
    key = tmp_path / "signing.key"
    r = h.ec2cached("keygen", "--secret", str(key), check=False)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    pub = lines[0]
    assert pub.startswith("ed25519:") and len(pub) == 8 + 64, pub
    assert all(c in "0123456789abcdef" for c in pub[8:]), pub
    assert key.stat().st_mode & 0o777 == 0o600, oct(key.stat().st_mode)
    secret = key.read_bytes()
    r = h.ec2cached("keygen", "--secret", str(key), check=False)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert str(key) in one_line(r.stderr)
    assert r.stdout == ""
    assert key.read_bytes() == secret and key.stat().st_mode & 0o777 == 0o600
    other = h.ec2cached("keygen", "--secret", str(tmp_path / "other.key")).stdout.strip()
    assert other.startswith("ed25519:") and other != pub


def test_a_signing_key_others_can_read_is_refused(fleet, bucket, tmp_path, moto_url):
    """A poller whose signing key is readable by group or others does not publish with it: a
    one-line error naming the key, nothing in S3."""
    fleet.launch(tags={"services": "postgres"})
    p = make_poller(tmp_path, moto_url)
    os.chmod(p.key, 0o644)
    r = p.refresh(check=False)
    assert r.returncode in (1, 2), r.stderr
    assert str(p.key) in last_line(r.stderr), r.stderr
    assert bucket.get() is None


def test_a_signing_key_others_can_read_stops_the_unit_for_good(fleet, bucket, tmp_path, moto_url):
    """Issue 22, item 13: a signing key that cannot be used (here: readable by others) is a
    configuration error: `run` exits 2, which the unit does not restart, naming the key."""
    p = make_poller(tmp_path, moto_url)
    os.chmod(p.key, 0o644)
    r = subprocess.run([EC2CACHED, "--config", str(p.config), "run"], env=p.env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "[publish] signing_key" in r.stderr and str(p.key) in r.stderr, r.stderr
    assert bucket.get() is None


# 7. Config errors.

NOT_WITH_FOLLOW = {
    "regions": 'regions = ["us-east-1"]',
    "max_age": "max_age = 3600",
    "api_timeout": "api_timeout = 5",
    "security_groups": 'security_groups = ["tphon"]',
    "ready_tag": 'ready_tag = "af-status=ready"',
    "service_tag": 'service_tag = "role"',
    "address": 'address = "private"',
    "publish": '[publish]\nurl = "s3://fleet/other.snap"\nsigning_key = "/nonexistent.key"',
}


@pytest.mark.parametrize("key", list(NOT_WITH_FOLLOW))
def test_a_follower_config_with_a_pollers_key_is_one_clear_error(tmp_path, key):
    """A [follow] config with a key only a poller has: exit 2, one line naming both."""
    h = Host(tmp_path, "http://127.0.0.1:1")
    pub = "ed25519:" + "ab" * 32
    text = NOT_WITH_FOLLOW[key]
    top, section = (text, "") if not text.startswith("[") else ("", text)
    h.config.write_text(f'snapshot = "{h.snapshot}"\ninterval = 30\n{top}\n'
                        f'[follow]\nurl = "{URL}"\ntrusted_keys = ["{pub}"]\n{section}\n')
    for cmd in (["refresh"], ["status"], ["run"]):
        r = h.ec2cached(*cmd, check=False, timeout=20)
        assert r.returncode == 2, (cmd, r.returncode, r.stderr)
        line = one_line(r.stderr)
        assert line.startswith(f"ec2cached: {h.config}: key `{key}`"), line
        assert "[follow]" in line, line


def test_a_follower_without_trusted_keys_is_one_clear_error(tmp_path):
    """[follow] with a url but no trusted_keys: exit 2, one line naming the key."""
    h = Host(tmp_path, "http://127.0.0.1:1")
    h.config.write_text(f'snapshot = "{h.snapshot}"\n[follow]\nurl = "{URL}"\n')
    r = h.ec2cached("refresh", check=False)
    assert r.returncode == 2, r.stderr
    assert "trusted_keys" in one_line(r.stderr)


# The poller's max_age reaches the followers.

def test_followers_go_stale_when_the_poller_stops_even_if_nothing_changed(fleet, bucket, tmp_path, moto_url,
                                                                         daemons, trap):
    """max_age on a follower counts from the poller's last good sweep: while the poller runs
    (max_age 4 s), an unchanged fleet is re-published and followers keep answering past max_age;
    once it stops, followers stop answering (UNAVAIL) within max_age, and `status` says expired."""
    a = fleet.launch(tags={"services": "postgres"})[0]
    poller = make_poller(tmp_path, moto_url, max_age=4)
    pd = daemons.start(poller)
    assert wait_for(lambda: bucket.get() is not None, 30), poller.log()
    f = make_follower(tmp_path, "follower", moto_url, trap, [poller.pub])
    daemons.start(f)
    assert answer_times([f], [fleet.ipv4(a)], 20), f.log()
    end = time.monotonic() + 7
    while time.monotonic() < end:
        assert f.answer(NAME) == (0, [fleet.ipv4(a)])
        time.sleep(0.5)
    stopped_at = time.monotonic()
    assert daemons.stop(pd) == 0
    assert wait_for(lambda: f.answer(NAME)[0] == 2, 10), (f.answer(NAME), f.status_file())
    print(f"\nstale follower: UNAVAIL {time.monotonic() - stopped_at:.1f} s after the poller stopped (max_age 4 s)")
    st = f.ec2cached("status", check=False)
    assert st.returncode == 1 and "expired" in st.stdout, st.stdout
    assert f.outcome() in ("unchanged", "installed"), f.status_file()
    assert trap.count() == 0


# 8. What the review of fleet mode found: a foreign object must not stall the pollers, the
# writers' lock is private, and a follower is ready only once it serves names.

def test_a_foreign_object_dated_ahead_does_not_stall_the_poller(world, tmp_path):
    """Someone with s3:PutObject puts an unsigned snapshot dated two minutes ahead over the
    object. It is no poller's sweep (not signed by the poller or a peer): the poller's next
    sweep replaces it (`uploaded`, not `newer_published`)."""
    from snapfile import fnv1a

    world.publish()
    u = Node(tmp_path, "intruder", world.url).poller()
    u.refresh()
    data = bytearray(u.snapshot.read_bytes())
    data[24:32] = (int(time.time()) + 120).to_bytes(8, "little")
    data[152:160] = fnv1a(bytes(data[:152])).to_bytes(8, "little")
    world.bucket.put(bytes(data))
    world.move()
    got = world.publish()
    assert world.poller.status_file().get("publish_outcome") == "uploaded"
    assert got == world.poller.snapshot.read_bytes()
    assert generation(got) <= int(time.time())


def test_the_writers_lock_is_private_and_belongs_to_the_state_directory_owner(world, tmp_path):
    """`sudo ec2cached install` creates `<snapshot>.lock` mode 0600 and hands it to the owner of
    the state directory (the daemon's account): no other account can take the lock and stall
    every writer."""
    good = world.publish()
    node = Node(tmp_path, "installed", world.url).follower([world.poller.pub], url=None)
    os.chown(node.dir, 65534, 65534)
    src = tmp_path / "good.snap"
    src.write_bytes(good)
    r = node.ec2cached("install", str(src))
    assert r.returncode == 0, r.stderr
    st = os.stat(node.dir / "hosts.snap.lock")
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, 65534)
    # Not a symlink that root would follow.
    os.unlink(node.dir / "hosts.snap.lock")
    os.symlink(tmp_path / "elsewhere", node.dir / "hosts.snap.lock")
    r = node.ec2cached("install", str(src), check=False)
    assert r.returncode == 1 and "hosts.snap.lock" in r.stderr, r.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_a_follower_is_ready_only_once_it_serves_names(world, tmp_path, trap):
    """READY=1 (Type=notify, Before=nss-lookup.target) means `.ec2` names resolve: a follower
    whose first object is refused has nothing to serve and stays not ready; it becomes ready
    when a good object is installed."""
    from test_operator import Notify

    u = Node(tmp_path, "unsigned", world.url).poller()
    u.refresh()
    world.bucket.put(u.snapshot.read_bytes())
    f = make_follower(tmp_path, "f", world.url, trap, [world.poller.pub])
    notify = Notify(tmp_path / "notify")
    d = subprocess.Popen([EC2CACHED, "--config", str(f.config), "run"],
                         env={**f.env(), "NOTIFY_SOCKET": notify.path}, stderr=subprocess.DEVNULL)
    try:
        assert not notify.wait_ready(3), "READY=1 with no snapshot"
        assert f.outcome() == "refused_signature"
        world.publish()
        assert notify.wait_ready(10), "no READY=1 after a good object"
        assert f.answer()[0] == 0
    finally:
        d.terminate()
        d.wait(timeout=20)
