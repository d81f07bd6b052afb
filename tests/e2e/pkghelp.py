"""Shared by the package tests (test_packages.py: Debian 12; test_platforms.py: Debian 11 and 13,
the RPMs and the release archive): building the packages once per run, throwaway roots made with
debootstrap (tests/mkchroot), and the fleet their daemons publish from a file."""

import fcntl
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
# The floor build's binaries (tests/lib.sh: $REL), which every package ships.
REL = Path(os.environ.get("NSS_EC2_REL", TARGET / f"{os.uname().machine}-unknown-linux-gnu/release"))
DNS_ADDR = "127.0.0.78"


def run(*args, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    r = subprocess.run(args, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def host_arch(var):
    """dpkg-architecture's DEB_HOST_<var> for this machine: ARCH (amd64, arm64, ...) names the
    .deb files, MULTIARCH (x86_64-linux-gnu, aarch64-linux-gnu, ...) the library directory."""
    return run("dpkg-architecture", f"-qDEB_HOST_{var}").strip()


@pytest.fixture(scope="session")
def debs(tmp_path_factory):
    """Builds the two packages from a copy of this tree (version 0.1.0), with the binaries that
    tests/run built and tested (NSS_EC2_PREBUILT, see debian/rules), and repacks them as 0.1.1.

    Once per run: under pytest-xdist the first worker that needs them builds them, holding a lock,
    and the others, waiting on it, find that build (stamped with the run's id) and use it."""
    work = TARGET / "deb-work"
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    stamp = work / "testrun"
    TARGET.mkdir(parents=True, exist_ok=True)
    with open(TARGET / "deb-work.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (run_id and stamp.is_file() and stamp.read_text() == run_id):
            build_debs(work)
            if run_id:
                stamp.write_text(run_id)
    v1 = {p.name.split("_")[0]: p for p in work.glob("*_0.1.0_*.deb") if "dbgsym" not in p.name}
    assert set(v1) == {"libnss-ec2", "ec2cached"}, list(work.iterdir())
    v2 = {name: work / f"{name}_0.1.1_{host_arch('ARCH')}.deb" for name in v1}
    assert all(p.is_file() for p in v2.values()), list(work.iterdir())
    return v1, v2


def build_debs(work):
    shutil.rmtree(work, ignore_errors=True)
    src = work / "src"
    src.mkdir(parents=True)
    tar = subprocess.Popen(["tar", "-C", str(ROOT), "--exclude=./target", "--exclude=./fuzz/target",
                            "--exclude=./.git", "-cf", "-", "."], stdout=subprocess.PIPE)
    run("tar", "-C", str(src), "-xf", "-", stdin=tar.stdout)
    tar.wait()
    env = {**os.environ}
    env.setdefault("NSS_EC2_PREBUILT", str(REL))
    run("dpkg-buildpackage", "-b", "-us", "-uc", cwd=src, env=env, timeout=3600)
    v1 = {p.name.split("_")[0]: p for p in work.glob("*_0.1.0_*.deb") if "dbgsym" not in p.name}
    assert set(v1) == {"libnss-ec2", "ec2cached"}, list(work.iterdir())
    for name, deb in v1.items():
        tree = work / f"{name}-v2"
        run("dpkg-deb", "-R", str(deb), str(tree))
        ctl = tree / "DEBIAN" / "control"
        text = ctl.read_text()
        # The version, and the relations built from it (ec2cached: Breaks: libnss-ec2 (<< 0.1.0)).
        assert "(<< 0.1.0)" in text or name != "ec2cached", text
        text = re.sub(r"^Version: .*$", "Version: 0.1.1", text, flags=re.M).replace("(<< 0.1.0)", "(<< 0.1.1)")
        ctl.write_text(text)
        out = work / f"{name}_0.1.1_{host_arch('ARCH')}.deb"
        run("dpkg-deb", "--root-owner-group", "-b", str(tree), str(out))


class Root:
    """A throwaway Debian root (12, or `suite`: bullseye, trixie); commands run chrooted in a
    private mount namespace."""

    def __init__(self, path, suite="bookworm"):
        self.path = path
        run(str(ROOT / "tests" / "mkchroot"), str(path), suite, timeout=1800)
        (path / "etc" / "resolv.conf").unlink(missing_ok=True)
        (path / "etc" / "resolv.conf").write_text(f"nameserver {DNS_ADDR}\noptions timeout:1 attempts:1\n")
        # debootstrap leaves no /etc/hosts; an installed system has one.
        (path / "etc" / "hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")

    def sh(self, script, check=True):
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            f"mount -t proc proc {self.path}/proc && mount --bind /dev {self.path}/dev && "
                            f'exec chroot {self.path} /bin/sh -c "$1"', "sh", script],
                           capture_output=True, text=True, timeout=600,
                           env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
        if check and r.returncode != 0:
            raise AssertionError(f"{script}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def nsswitch(self):
        """The root's /etc/nsswitch.conf, through a link (authselect's) as the root sees it."""
        return self.sh("cat /etc/nsswitch.conf").stdout

    def hosts_line(self):
        return next(l for l in self.nsswitch().splitlines() if l.startswith("hosts:"))

    def dpkg_i(self, *debs, check=True):
        for d in debs:
            shutil.copy(d, self.path / "tmp" / d.name)
        return self.sh("dpkg -i " + " ".join(f"/tmp/{d.name}" for d in debs), check=check)


FLEET = """{"Reservations":[{"Instances":[
 {"InstanceId":"i-0web","State":{"Name":"running"},"LaunchTime":"2024-01-01T00:00:00+00:00",
  "SecurityGroups":[{"GroupName":"tphon"}],"Tags":[{"Key":"services","Value":"web"}],
  "PrivateIpAddress":"127.0.0.1"}]}]}"""
