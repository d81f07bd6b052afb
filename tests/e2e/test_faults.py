"""EC2 API faults injected by a proxy of our own between ec2cached and moto: the published
snapshot never changes on a failed poll, `status` shows the error, `run` backs off and heals."""

import re
import signal
import subprocess
import time

import pytest

from conftest import EC2CACHED
from faultproxy import FaultProxy

FAULTS = {
    "throttle": "RequestLimitExceeded",
    "500": "InternalError",
    "503": "Unavailable",
    "slow": "timeout",
    "reset": "cannot reach the EC2 API at http://127.0.0.1:",
    "malformed": "malformed response",
    "expired": "ExpiredToken",
}


@pytest.fixture
def proxy(moto_url):
    p = FaultProxy(moto_url).start()
    yield p
    p.stop()


@pytest.fixture
def proxied(host, proxy):
    host.url = proxy.url
    host.configure(api_timeout=1)
    return host


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failed_poll_changes_nothing(fleet, proxied, proxy, fault):
    host = proxied
    fleet.launch(tags={"services": "redis"})
    host.refresh()
    before = host.snapshot.read_bytes()
    proxy.fault = fault
    t0 = int(time.time())
    r = host.refresh(check=False)
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ec2cached: "), last
    assert last.endswith(" (DescribeInstances in us-east-1, page 1)"), last
    assert FAULTS[fault].lower() in last.lower(), last
    assert proxy.faults_injected >= 1
    assert host.snapshot.read_bytes() == before, "the snapshot is byte-for-byte the old one"
    assert host.hosts("redis.tphon.ec2")[0] == 0
    st = host.ec2cached("status", check=False)
    assert st.returncode == 1
    m = re.search(r"last error:\s+(\S+) \(\d+ s ago\): (.*)", st.stdout)
    assert m, st.stdout
    assert FAULTS[fault].lower() in m.group(2).lower()
    when = time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ")
    assert abs(time.mktime(when) - time.timezone - t0) <= 5


def test_failure_on_the_third_page(fleet, proxied, proxy):
    host = proxied
    for _ in range(12):
        fleet.launch(tags={"services": "redis"})
    proxy.page_size = 5  # 12 reservations in pages of 5: three pages
    host.refresh()
    assert "3 request(s)" in host.ec2cached("status").stdout
    before = host.snapshot.read_bytes()
    proxy.fault = "500"
    proxy.fail_from = proxy.requests + 3  # pages 1 and 2 pass, page 3 and its retries fail
    r = host.refresh(check=False)
    assert r.returncode == 1
    assert "page 3" in r.stderr, r.stderr
    assert host.snapshot.read_bytes() == before
    assert proxy.faults_injected >= 1


def test_run_backs_off_and_recovers_within_an_interval(fleet, proxied, proxy):
    host = proxied
    a = fleet.launch(tags={"services": "redis"})[0]
    interval = 4
    host.configure(api_timeout=1, interval=interval)
    d = subprocess.Popen([EC2CACHED, "--config", str(host.config), "run"], env=host.env(),
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while host.hosts("redis.tphon.ec2")[0] != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        before = host.snapshot.read_bytes()
        proxy.fault = "500"
        # Until the daemon has failed (and backed off) at least twice in a row.
        deadline = time.monotonic() + 60
        while not re.search(r"failing:\s+([2-9]|\d\d+) poll", host.ec2cached("status", check=False).stdout):
            assert time.monotonic() < deadline, "the daemon did not keep polling"
            time.sleep(0.2)
        assert host.snapshot.read_bytes() == before
        assert "FAILED" in host.ec2cached("status", check=False).stdout
        # The API heals, with a new instance: the daemon finds it within one interval.
        b = fleet.launch(tags={"services": "redis"})[0]
        want = sorted([fleet.ipv4(a), fleet.ipv4(b)])
        proxy.fault = None
        healed = time.monotonic()
        while sorted(host.hosts("redis.tphon.ec2")[1]) != want:
            assert time.monotonic() - healed < interval + 2, "not recovered within one interval"
            time.sleep(0.1)
        assert host.ec2cached("status", check=False).returncode == 0
    finally:
        d.send_signal(signal.SIGTERM)
        assert d.wait(timeout=20) == 0
    log = d.stderr.read()
    retries = [float(x) for x in re.findall(r"retry_in=\"?(\d+\.\d)s", log)]
    assert len(retries) >= 2, log
    assert all(0.5 <= x <= interval for x in retries), retries


def test_throttling_waits_an_interval_not_a_backoff_step(fleet, proxied, proxy):
    """RequestLimitExceeded means the account's budget is spent: a sweep again after 1 s would
    spend it again (at 100 000 instances, 100 pages a second). The daemon waits an interval."""
    host = proxied
    fleet.launch(tags={"services": "redis"})
    interval = 3
    host.configure(api_timeout=1, interval=interval)
    proxy.fault = "throttle"
    d = subprocess.Popen([EC2CACHED, "--config", str(host.config), "run"], env=host.env(),
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not re.search(r"failing:\s+[3-9] poll", host.ec2cached("status", check=False).stdout):
            assert time.monotonic() < deadline, "the daemon did not keep polling"
            time.sleep(0.2)
    finally:
        d.send_signal(signal.SIGTERM)
        assert d.wait(timeout=20) == 0
    log = d.stderr.read()
    retries = [float(x) for x in re.findall(r"retry_in=\"?(\d+\.\d)s", log)]
    assert len(retries) >= 3, log
    assert all(0.9 * interval - 0.05 <= x <= 1.1 * interval + 0.05 for x in retries), retries
    # Each sweep is one page and its SDK retries (3 attempts): no more.
    assert proxy.requests <= 3 * (len(retries) + 1), (proxy.requests, retries)


def test_a_repeated_page_token_fails_the_sweep_instead_of_ending_it(fleet, proxied, proxy):
    """The SDK's paginator stops quietly on a repeated token, which would publish the pages
    read so far as the whole fleet. A sweep that sees one fails, and nothing is published."""
    host = proxied
    for _ in range(7):
        fleet.launch(tags={"services": "redis"})
    proxy.page_size = 3  # three pages
    host.refresh()
    assert host.hosts("7.redis.tphon.ec2")[0] == 0
    before = host.snapshot.read_bytes()
    proxy.fault = "repeat_token"
    r = host.refresh(check=False)
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "page token it had already sent" in last, last
    assert last.endswith("(DescribeInstances in us-east-1, page 2)"), last
    assert host.snapshot.read_bytes() == before
    assert host.hosts("7.redis.tphon.ec2")[0] == 0
