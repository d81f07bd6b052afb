"""What an operator sees in the first hour: one readable line for each common failure, `status`
before any snapshot exists, readiness (READY=1) only once names resolve, and whether the
installed module can read what the daemon writes."""

import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import EC2CACHED, free_port
from faultproxy import FaultProxy

DEBUG_DUMP = ("DispatchFailure", "ConnectorError", "Some(", "{ ", "source:")


def one_readable_line(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    for junk in DEBUG_DUMP:
        assert junk not in line, line
    return line


def test_dead_endpoint_says_so_in_one_line(fleet, host):
    dead = f"http://127.0.0.1:{free_port()}"
    r = host.refresh(check=False, env=host.env(AWS_ENDPOINT_URL=dead))
    assert r.returncode == 1
    line = one_readable_line(r.stderr)
    assert line == (f"ec2cached: cannot reach the EC2 API at {dead}: connection refused "
                    "(DescribeInstances in us-east-1, page 1)"), line
    st = host.ec2cached("status", check=False)
    assert f"cannot reach the EC2 API at {dead}: connection refused" in st.stdout


def test_missing_credentials_say_where_they_were_looked_for(fleet, host, tmp_path):
    env = host.env(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
                   AWS_EC2_METADATA_DISABLED="true")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
              "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
              "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        env.pop(k, None)
    r = host.refresh(check=False, env=env)
    assert r.returncode == 1
    line = one_readable_line(r.stderr)
    assert line.startswith("ec2cached: no AWS credentials found (tried: environment, profile, web identity, "
                           "ECS, IMDS)"), line


def test_service_errors_name_the_code_first(fleet, host, moto_url):
    proxy = FaultProxy(moto_url).start()
    try:
        proxy.fault = "throttle"
        host.url = proxy.url
        host.configure(api_timeout=1)
        r = host.refresh(check=False)
        line = one_readable_line(r.stderr)
        assert line.startswith("ec2cached: the EC2 API refused: RequestLimitExceeded"), line
        assert line.endswith("(DescribeInstances in us-east-1, page 1)"), line
    finally:
        proxy.stop()


def test_status_without_a_snapshot_says_why(host):
    st = host.ec2cached("status", check=False)
    assert st.returncode == 1
    assert "state:          no snapshot: .ec2 names answer UNAVAIL (DNS is asked)" in st.stdout, st.stdout
    assert "why:            no poll has run yet" in st.stdout, st.stdout
    assert "last error" not in st.stdout, st.stdout
    # After a failed first poll: no snapshot yet, and the reason is the poll's error.
    host.refresh(check=False, env=host.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}"))
    st = host.ec2cached("status", check=False)
    assert "why:            no poll has succeeded yet (last error below)" in st.stdout, st.stdout
    assert "last error:" in st.stdout and "connection refused" in st.stdout, st.stdout


def test_status_names_the_module_and_warns_when_it_cannot_read_the_snapshot(fleet, host, tmp_path):
    fleet.launch()
    host.refresh()
    st = host.ec2cached("status")
    line = next(l for l in st.stdout.splitlines() if l.startswith("module:"))
    assert line.endswith("libnss_ec2.so.2 reads snapshot format 1 (this snapshot: 1)"), line
    assert os.path.realpath(line.split()[1]) == os.path.realpath(os.path.join(host.env()["LD_LIBRARY_PATH"],
                                                                              "libnss_ec2.so.2"))
    # A module that reads only an older format (here a stand-in that says format 0), a foreign
    # libnss_ec2.so.2 that does not say, and a file the loader cannot load (as glibc cannot):
    # status fails and says what to do.
    cases = {
        "old": ("unsigned _nss_ec2_snapshot_version(void) { return 0; }\n", "upgraded to the version of ec2cached"),
        "foreign": ("int _nss_ec2_gethostbyname2_r(void) { return -1; }\n", "is not nss-ec2's module"),
        "broken": (None, "cannot be loaded"),
    }
    for name, (body, says) in cases.items():
        d = tmp_path / name
        d.mkdir()
        if body is None:
            (d / "libnss_ec2.so.2").write_bytes(b"\x7fELF truncated")
        else:
            (d / "m.c").write_text(body)
            subprocess.run(["cc", "-shared", "-fPIC", "-o", str(d / "libnss_ec2.so.2"), str(d / "m.c")], check=True)
        st = host.ec2cached("status", check=False, env=host.env(LD_LIBRARY_PATH=str(d)))
        assert st.returncode == 1, st.stdout
        line = next(l for l in st.stdout.splitlines() if l.startswith("module:"))
        assert "WARNING" in line and says in line, line
    # No module on the loader's path at all (a poller): said, and not a failure. (Only where
    # the system has none installed: glibc's search would find that one.)
    if "libnss_ec2.so.2" not in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout:
        st = host.ec2cached("status", check=False, env=host.env(LD_LIBRARY_PATH=str(tmp_path)))
        line = next(l for l in st.stdout.splitlines() if l.startswith("module:"))
        assert "libnss_ec2.so.2 not installed" in line, line
        assert st.returncode == 0, st.stdout


class Notify:
    """The systemd side of sd_notify: a datagram socket whose messages the test reads."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def wait_ready(self, timeout):
        self.sock.settimeout(timeout)
        try:
            while True:
                msg = self.sock.recv(4096).decode()
                if "READY=1" in msg.split("\n"):
                    return True
        except socket.timeout:
            return False


def run_daemon(host, notify, env=None):
    env = {**(env or host.env()), "NOTIFY_SOCKET": notify.path}
    return subprocess.Popen([EC2CACHED, "--config", str(host.config), "run"], env=env,
                            stderr=subprocess.DEVNULL)


def stop(d):
    d.send_signal(signal.SIGTERM)
    assert d.wait(timeout=20) == 0


def test_ready_only_once_names_resolve(fleet, host, tmp_path, moto_url):
    """Type=notify with Before=nss-lookup.target: READY=1 must mean `.ec2` names resolve."""
    a = fleet.launch(tags={"services": "redis"})[0]
    proxy = FaultProxy(moto_url).start()
    try:
        proxy.fault = "503"
        host.url = proxy.url
        host.configure(api_timeout=1, interval=2)
        notify = Notify(tmp_path / "notify")
        d = run_daemon(host, notify)
        try:
            # The API fails and no snapshot exists: not ready, however long it tries.
            assert not notify.wait_ready(4), "READY=1 before any snapshot"
            assert not host.snapshot.exists()
            proxy.fault = None
            assert notify.wait_ready(15), "no READY=1 after the API healed"
            # At READY=1 the names already resolve.
            assert host.hosts("redis.tphon.ec2") == (0, [fleet.ipv4(a)])
            assert not notify.wait_ready(3), "READY=1 sent twice"
        finally:
            stop(d)
        # A restart during an API outage: the kept snapshot is good, so READY=1 comes at once.
        proxy.fault = "503"
        t0 = time.monotonic()
        d = run_daemon(host, notify)
        try:
            assert notify.wait_ready(5), "a kept snapshot did not make the daemon ready"
            assert time.monotonic() - t0 < 5
        finally:
            stop(d)
        # ... unless it is past its max_age (the module would answer UNAVAIL): then not ready.
        proxy.fault = None
        host.configure(api_timeout=1, interval=1, max_age=2)
        host.refresh()
        time.sleep(3.5)
        assert host.hosts("redis.tphon.ec2")[0] == 2, "an expired snapshot still answers"
        proxy.fault = "503"
        d = run_daemon(host, notify)
        try:
            assert not notify.wait_ready(4), "READY=1 with an expired snapshot and no poll"
        finally:
            stop(d)
    finally:
        proxy.stop()


@pytest.mark.parametrize("args", [["--help"], ["help", "refresh"]])
def test_help_is_complete(args):
    r = subprocess.run([EC2CACHED, *args], capture_output=True, text=True)
    assert r.returncode == 0
    if args == ["--help"]:
        for want in ("/etc/ec2cached.toml", "explain NAME|INSTANCE-ID", "Exit status:", "refresh [--from-file"):
            assert want in r.stdout, r.stdout
    else:
        assert "--from-file" in r.stdout
