"""Harness for the end-to-end tests: a real moto EC2 server on loopback, the real ec2cached
binary, and the real libnss_ec2.so.2 loaded by the real glibc (getent -s hosts:ec2, Python's
resolver after __nss_configure_lookup).

Paths come from the environment that tests/run sets: EC2CACHED (the binary) and NSS_EC2_LIBDIR
(a folder holding libnss_ec2.so.2).
"""

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
EC2CACHED = os.environ.get("EC2CACHED", str(ROOT / "target/release/ec2cached"))
LIBDIR = os.environ.get("NSS_EC2_LIBDIR", str(ROOT / "target/nss"))
REGION = "us-east-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_url():
    port = free_port()
    log = open(os.environ.get("MOTO_LOG", "/dev/null"), "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


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
