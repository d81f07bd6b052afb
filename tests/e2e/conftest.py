"""Harness for the end-to-end tests: a real moto EC2 server on loopback, the real ec2cached
binary, and the real libnss_ec2.so.2 loaded by the real glibc (getent -s hosts:ec2, Python's
resolver after __nss_configure_lookup).

Paths come from the environment that tests/run sets: EC2CACHED (the binary) and NSS_EC2_LIBDIR
(a folder holding libnss_ec2.so.2).

tests/run runs them on two pytest-xdist workers. Each worker is a session of its own, with its
own moto (a free port) and tmp_path; anything else a test puts on this machine (a fixed loopback
address or port, a file with a fixed name outside tmp_path, a cache) must differ per worker
(PYTEST_XDIST_WORKER) or be taken under a lock, as `debs` (test_packages.py) and `nscd_fetched`
are. Not xdist_group: with pytest 9.2, --dist loadgroup silently stops grouping
(pytest-xdist issue 1386).
"""

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from ec2fleet import AMI, Fleet  # noqa: F401 (Fleet is used by tests through the fixture)

ROOT = Path(__file__).resolve().parents[2]
# The floor build's binaries (tests/lib.sh: $REL, e.g. target/x86_64-unknown-linux-gnu/release).
REL = Path(os.environ.get("NSS_EC2_REL", ROOT / f"target/{os.uname().machine}-unknown-linux-gnu/release"))
EC2CACHED = os.environ.get("EC2CACHED", str(REL / "ec2cached"))
LIBDIR = os.environ.get("NSS_EC2_LIBDIR", str(ROOT / "target/nss"))
REGION = "us-east-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_url():
    port = free_port()
    log = os.environ.get("MOTO_LOG", "/dev/null")
    if log != "/dev/null" and "PYTEST_XDIST_WORKER" in os.environ:
        log += "." + os.environ["PYTEST_XDIST_WORKER"]  # a moto, and a log, per worker
    log = open(log, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    # Up to a deadline, not a count of tries: under pytest-xdist every worker starts its moto at
    # the same moment, and importing moto takes seconds of CPU.
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            status = proc.poll()
            if status is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError("moto server did not start"
                                   + (f" (exit status {status})" if status is not None else " in 60 s"))
            time.sleep(0.1)
    yield url
    # SIGKILL: moto keeps nothing worth a clean exit, and after SIGTERM its interpreter spends
    # seconds of CPU freeing its heap (more with a busy neighbour: over 10 s seen under xdist).
    proc.kill()
    proc.wait()


@pytest.fixture(scope="session")
def nscd_fetched():
    """tools/get-nscd, once, before a test starts nscd (tools/with-nscd, bench/bench.py). On first
    use it downloads Debian's nscd into its cache, replacing the tree there: two pytest-xdist
    workers doing that at once could take it from under each other. A lock on the script lets one
    fetch and the other find it. A failure is left to the test, which reports it as before."""
    script = ROOT / "tools" / "get-nscd"
    with open(script) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run([str(script)], capture_output=True, timeout=600)


def aws_env(url):
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.pop("AWS_PROFILE", None)
    return env


@pytest.fixture
def ec2(moto_url):
    """A boto3 client on a freshly reset moto."""
    urllib.request.urlopen(urllib.request.Request(moto_url + "/moto-api/reset", method="POST"))
    return boto3.client(
        "ec2",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def fleet(ec2):
    return Fleet(ec2)


class Host:
    """One host: a config file, a snapshot, ec2cached and lookups through the module."""

    def __init__(self, tmp, moto_url):
        # A private directory: the module refuses snapshots in folders others can write.
        self.dir = tmp
        os.chmod(tmp, 0o755)
        self.snapshot = tmp / "hosts.snap"
        self.config = tmp / "ec2cached.toml"
        self.url = moto_url
        self.configure()

    def configure(self, **keys):
        keys.setdefault("snapshot", str(self.snapshot))
        keys.setdefault("regions", [REGION])
        lines = [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
        self.config.write_text("\n".join(lines) + "\n")

    def env(self, **extra):
        env = aws_env(self.url)
        env["NSS_EC2_SNAPSHOT"] = str(self.snapshot)
        env["LD_LIBRARY_PATH"] = LIBDIR
        env.update(extra)
        return env

    def ec2cached(self, *args, check=True, timeout=120, env=None):
        r = subprocess.run(
            [EC2CACHED, "--config", str(self.config), *args],
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"ec2cached {args} failed ({r.returncode}): {r.stderr}")
        return r

    def refresh(self, *args, **kw):
        return self.ec2cached("refresh", *args, **kw)

    def getent(self, *args, services="ec2", env=None):
        """getent -s hosts:SERVICES ...; returns (exit code, stdout lines, stderr)."""
        r = subprocess.run(
            ["getent", "-s", f"hosts:{services}", *args],
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        return r.returncode, r.stdout.splitlines(), r.stderr

    def hosts(self, name):
        """Addresses `getent hosts NAME` prints (IPv6 first if any, as getent does)."""
        code, lines, err = self.getent("hosts", name)
        assert err == "", err
        return code, [l.split()[0] for l in lines]

    def ahosts(self, name, cmd="ahosts"):
        code, lines, err = self.getent(cmd, name)
        assert err == "", err
        addrs = []
        for l in lines:
            a = l.split()[0]
            if a not in addrs:
                addrs.append(a)
        return code, addrs, lines

    def python(self, code, env=None):
        """Runs Python code with NSS configured to hosts: ec2 only."""
        prelude = (
            "import ctypes, socket\n"
            "libc = ctypes.CDLL(None)\n"
            "assert libc.__nss_configure_lookup(b'hosts', b'ec2') == 0\n"
        )
        r = subprocess.run(
            [sys.executable, "-c", prelude + code],
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return r


@pytest.fixture
def host(tmp_path, moto_url):
    return Host(tmp_path, moto_url)
