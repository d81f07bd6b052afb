"""Every EC2 Linux (README "Supported systems"): the glibc floor of every binary in every package,
the Debian packages installed with apt in Debian 11 and 13 roots, the RPMs linted and installed
with `rpm --root` into a scratch root (nsswitch.conf plain, and managed by authselect), and the
release archive installed with its own Makefile."""

import fcntl
import os
import re
import shutil
import subprocess
import tarfile

import pytest

from pkghelp import FLEET, REL, ROOT, TARGET, Root, debs, run  # noqa: F401 (debs: a fixture)

PROBE_LIBDIR = os.environ.get("NSS_EC2_PROBE_LIBDIR") or str(TARGET / "nss-probe")

FLOOR = os.environ.get("NSS_EC2_GLIBC", "2.28")
ARCH = os.uname().machine
VERSION = re.search(r'^version = "(.*)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
MAKE_VARS = [f"CARGO_TARGET_DIR={TARGET}", f"REL={REL}"]


def made_once(name, build):
    """Runs `build()` once per test run (under pytest-xdist: the first worker, holding a lock; the
    others wait for it and find its result stamped with the run's id)."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    stamp = TARGET / f"{name}.testrun"
    TARGET.mkdir(parents=True, exist_ok=True)
    with open(TARGET / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (run_id and stamp.is_file() and stamp.read_text() == run_id):
            build()
            if run_id:
                stamp.write_text(run_id)


@pytest.fixture(scope="session")
def rpms():
    """`make rpm`: the two binary RPMs, from the release binaries tests/run built."""
    out = TARGET / "rpm"
    made_once("rpm", lambda: run("make", "-C", str(ROOT), "rpm", *MAKE_VARS, timeout=1800))
    found = {p.name.rsplit("-", 2)[0]: p for p in out.glob(f"*-{VERSION}-1.{ARCH}.rpm")}
    assert set(found) == {"nss-ec2", "ec2cached"}, list(out.iterdir())
    return found


@pytest.fixture(scope="session")
def dist():
    """`make dist`: the release archive."""
    made_once("dist", lambda: run("make", "-C", str(ROOT), "dist", *MAKE_VARS, timeout=1800))
    tar = TARGET / "dist" / f"nss-ec2-{VERSION}-{ARCH}-linux-gnu.tar.gz"
    assert tar.is_file()
    return tar


def floor(*paths):
    r = subprocess.run([str(ROOT / "tools" / "glibc-floor"), "--max", FLOOR, *map(str, paths)],
                       capture_output=True, text=True)
    print(r.stdout, r.stderr)
    return r


def test_every_packaged_binary_asks_for_glibc_2_28_at_most(debs, rpms, dist):
    v1, _ = debs
    r = floor(*v1.values(), *rpms.values(), dist)
    assert r.returncode == 0, r.stdout + r.stderr
    # Both binaries of each of the five artefacts: the module and the daemon, deb, rpm, tar.
    checked = [l for l in r.stdout.splitlines() if ": GLIBC " in l]
    assert len(checked) == 6, r.stdout
    def v(text):
        return tuple(int(x) for x in text.split("."))
    assert all(v(l.split(": GLIBC ")[1].split()[0]) <= v(FLOOR) for l in checked), r.stdout
    assert f"glibc floor: {FLOOR} over 6 binaries" in r.stdout, r.stdout


def test_the_floor_check_fails_on_a_binary_of_this_machine(tmp_path):
    """The check above can fail: this machine's own getent (Debian 12) asks for glibc 2.34, and
    for GLIBC_PRIVATE, a version no other glibc build has."""
    r = floor("/usr/bin/getent")
    assert r.returncode == 1 and "TOO NEW" in r.stdout, r.stdout
    assert "libc.so.6 2.34 " in r.stdout and "GLIBC_PRIVATE" in r.stdout, r.stdout
    # A version marker that is not a release number counts by the release that brought it.
    r = floor("--max", "2.35", "/usr/bin/getent")
    assert r.returncode == 1 and "GLIBC_ABI_DT_RELR" in r.stdout, r.stdout


def test_the_floor_check_refuses_what_it_cannot_read(tmp_path):
    """Bad input is exit 2 with one line that says what, never a pass: a damaged ELF file, a
    file that is neither ELF nor a package, a missing one, a --max that is not a version."""
    damaged = tmp_path / "libnss_ec2.so.2"
    damaged.write_bytes((REL / "libnss_ec2.so").read_bytes()[:3000])
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    for args in ([damaged], [text], [tmp_path / "missing"], ["--max", "two", REL / "libnss_ec2.so"]):
        r = floor(*args)
        assert r.returncode == 2 and r.stderr.startswith("glibc-floor: ") and not r.stdout, (args, r)
        assert "Traceback" not in r.stderr, r.stderr


def test_the_debian_packages_depend_on_the_real_floor(debs):
    v1, _ = debs
    for name, deb in v1.items():
        depends = run("dpkg-deb", "-f", str(deb), "Depends")
        libc = re.findall(r"libc6 \(>= ([0-9.]+)\)", depends)
        assert libc == [FLOOR], (name, depends)


@pytest.mark.parametrize("suite", ["bullseye", "trixie"])
def test_debian_11_and_13_install_resolve_and_purge(debs, tmp_path, suite):
    """apt-get install of both packages in a Debian 11 (glibc 2.31) or 13 root: the hosts line,
    the daemon's first publish, a plain `getent hosts` through nsswitch.conf, and a purge that
    gives nsswitch.conf back byte for byte."""
    v1, _ = debs
    root = Root(tmp_path / "root", suite)
    glibc = root.sh("getconf GNU_LIBC_VERSION").stdout.split()[-1]
    print(suite, "glibc", glibc)
    if suite == "bullseye":
        assert glibc == "2.31", glibc
    original = root.nsswitch()
    for d in v1.values():
        shutil.copy(d, root.path / "tmp" / d.name)
    # (No --no-download: bullseye's apt 2.2 then fails on local files, "Pathname to install is not
    # absolute". Nothing is downloaded: every dependency is in the root.)
    r = root.sh("apt-get install -y " + " ".join(f"/tmp/{d.name}" for d in v1.values()))
    print(r.stdout[-2000:], r.stderr[-2000:])
    assert root.hosts_line().split() == ["hosts:", "files", "ec2", "[NOTFOUND=return]", "dns"], root.hosts_line()
    # Installed, not started: no process runs from this root.
    assert not [p for p in processes_in(root.path) if p.endswith("ec2cached")]
    assert root.sh("ec2cached --version").stdout.strip() == f"ec2cached {VERSION}"
    (root.path / "tmp" / "fleet.json").write_text(FLEET)
    r = root.sh("setpriv --reuid=ec2cached --regid=ec2cached --init-groups "
                "/usr/sbin/ec2cached refresh --from-file /tmp/fleet.json")
    assert "published /var/lib/ec2cached/hosts.snap" in r.stderr, r.stderr
    assert root.sh("getent hosts web.tphon.ec2").stdout.split()[:2] == ["127.0.0.1", "web.tphon.ec2"]
    assert root.sh("getent hosts nosuch.tphon.ec2", check=False).returncode == 2
    # On this glibc too (2.31: a real libpthread.so.0 mapped with the module), a panic inside the
    # module (the test build, NSS_EC2_PANIC_PROBE) is caught at its boundary: UNAVAIL, silent.
    shutil.copytree(PROBE_LIBDIR, root.path / "tmp" / "probe")
    for args in ("hosts web.tphon.ec2", "ahosts web.tphon.ec2", "hosts 127.0.0.1"):
        r = root.sh(f"NSS_EC2_PANIC_PROBE=1 LD_LIBRARY_PATH=/tmp/probe getent -s hosts:ec2 {args}", check=False)
        assert (r.returncode, r.stdout, r.stderr) == (2, "", ""), args
    r = root.sh("LD_LIBRARY_PATH=/tmp/probe getent -s hosts:ec2 hosts web.tphon.ec2")
    assert r.stdout.split()[:2] == ["127.0.0.1", "web.tphon.ec2"], "the probe build answers when the probe is off"
    root.sh("apt-get purge -y ec2cached libnss-ec2")
    assert root.nsswitch() == original
    assert not (root.path / "var/lib/ec2cached").exists()


def processes_in(path):
    """The executables of the processes whose root directory is `path`."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/root") == str(path):
                out.append(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            pass
    return out


# --- RPMs ---------------------------------------------------------------------------------------

def test_rpmlint_finds_no_errors(rpms):
    """rpmlint, with the three filters of rpm/nss-ec2.rpmlintrc (each says why), finds no error."""
    r = subprocess.run(["rpmlint", "-r", str(ROOT / "rpm/nss-ec2.rpmlintrc"), *map(str, rpms.values())], capture_output=True, text=True, timeout=600)
    print(r.stdout, r.stderr)
    assert not re.search(r"^\S+: E: ", r.stdout, re.M), r.stdout
    assert re.search(r"\b0 errors\b", r.stdout), r.stdout


def test_the_rpms_ship_the_right_files(rpms):
    def q(rpm, *fmt):
        return run("rpm", "-qp", *fmt, str(rpm))

    lib = q(rpms["nss-ec2"], "-l").split()
    assert "/usr/lib64/libnss_ec2.so.2" in lib, lib
    assert any(p.startswith("/usr/share/man/man8/libnss_ec2.8") for p in lib), lib
    daemon = q(rpms["ec2cached"], "-l").split()
    for want in ("/usr/sbin/ec2cached", "/etc/ec2cached.toml", "/usr/lib/systemd/system/ec2cached.service",
                 "/usr/lib/systemd/system/ec2cached-dns.socket", "/usr/lib/sysusers.d/ec2cached.conf",
                 "/etc/facter/facts.d/ec2cached", "/etc/ansible/facts.d/ec2cached.fact",
                 "/usr/share/ec2cached/ec2cached.rules.yml", "/usr/share/ec2cached/resolved-ec2.conf",
                 "/usr/share/ec2cached/dnsmasq-ec2.conf", "/var/lib/ec2cached"):
        assert want in daemon, want
    assert any(p.startswith("/usr/share/man/man8/ec2cached.8") for p in daemon), daemon
    # The configuration is the administrator's: kept on upgrade and erase.
    conf = q(rpms["ec2cached"], "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]")
    assert re.search(r"^/etc/ec2cached.toml cn$", conf, re.M), conf
    # The same unit as the Debian package (its hardening is tested there), the socket never enabled.
    tree = TARGET / "rpm-unpacked"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    rpm2cpio = subprocess.Popen(["rpm2cpio", str(rpms["ec2cached"])], stdout=subprocess.PIPE)
    run("cpio", "-idm", "--quiet", stdin=rpm2cpio.stdout, cwd=tree)
    rpm2cpio.wait()
    assert (tree / "usr/lib/systemd/system/ec2cached.service").read_text() == \
        (ROOT / "debian/ec2cached.service").read_text()
    scripts = q(rpms["ec2cached"], "--scripts")
    assert "ec2cached-dns.socket" not in re.sub(r"disable --now [^\n]*", "", scripts), scripts
    # The floor, in RPM's words: automatic requirements on glibc's versions, none above 2.28.
    needs = q(rpms["nss-ec2"], "-R") + q(rpms["ec2cached"], "-R")
    versions = set(re.findall(r"\(GLIBC_([0-9.]+)\)", needs))
    assert versions and max(versions, key=lambda v: tuple(map(int, v.split(".")))) == FLOOR, needs


class RpmRoot(Root):
    """A scratch root made from a debootstrapped Debian 12 one, with /usr/lib64 known to its
    loader, into which `rpm --root` installs (scriptlets run chrooted in it)."""

    def __init__(self, path):
        super().__init__(path)
        (path / "etc/ld.so.conf.d/lib64.conf").write_text("/usr/lib64\n")
        run("rpm", "--root", str(path), "--initdb")

    def rpm(self, *args, check=True):
        r = subprocess.run(["rpm", "--root", str(self.path), *args], capture_output=True, text=True, timeout=600)
        if check and r.returncode != 0:
            raise AssertionError(f"rpm {args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        # Debian's rpm says it should not install packages (use alien); the scriptlets' own
        # output is what the tests read.
        r.stderr = "".join(l for l in r.stderr.splitlines(keepends=True)
                           if not re.match(r"rpm: (RPM should not be used directly|However assuming you know)", l))
        return r

    def install(self, rpms):
        # --nodeps: the Debian root's own packages are not in its RPM database.
        return self.rpm("-i", "--nodeps", *map(str, rpms.values()))

    def resolves(self):
        (self.path / "tmp" / "fleet.json").write_text(FLEET)
        r = self.sh("setpriv --reuid=ec2cached --regid=ec2cached --init-groups "
                    "/usr/sbin/ec2cached refresh --from-file /tmp/fleet.json")
        assert "published /var/lib/ec2cached/hosts.snap" in r.stderr, r.stderr
        return self.sh("getent hosts web.tphon.ec2", check=False).stdout.split()[:2] == ["127.0.0.1", "web.tphon.ec2"]


def test_rpms_install_resolve_and_erase_on_a_plain_nsswitch_conf(rpms, tmp_path):
    root = RpmRoot(tmp_path / "root")
    original = root.nsswitch()
    root.install(rpms)
    assert root.hosts_line().split() == ["hosts:", "files", "ec2", "[NOTFOUND=return]", "dns"]
    assert root.sh("stat -c '%U %a' /var/lib/ec2cached").stdout.split() == ["ec2cached", "755"]
    assert root.resolves()
    assert "libnss_ec2.so.2" in root.sh("ldconfig -p").stdout
    # An upgrade (here: the same version again) never adds it twice, nor back after the admin
    # took it out.
    root.rpm("-U", "--replacepkgs", "--nodeps", *map(str, rpms.values()))
    assert root.hosts_line().split().count("ec2") == 1
    root.rpm("-e", "ec2cached", "nss-ec2")
    assert root.nsswitch() == original
    assert not (root.path / "usr/lib64/libnss_ec2.so.2").exists()


AUTHSELECT_PROFILES = {
    # authselect 1.2's sssd profile (RHEL 8 and 9): no hosts line, that one is the administrator's.
    "sssd": "passwd:     sss files systemd\ngroup:      sss files systemd\nnetgroup:   sss files\n"
            "automount:  sss files\nservices:   sss files\n",
    # Its minimal profile sets the hosts line unless with-custom-hosts is enabled.
    "minimal": "passwd:     files systemd\ngroup:      files systemd\n"
               'hosts:      resolve [!UNAVAIL=return] files myhostname dns {exclude if "with-custom-hosts"}\n',
}


def authselect_root(tmp_path, profile, user_nsswitch=True):
    """A scratch root whose nsswitch.conf authselect (tests/e2e/fake-authselect) manages."""
    root = RpmRoot(tmp_path / "root")
    shutil.copy(ROOT / "tests/e2e/fake-authselect", root.path / "usr/bin/authselect")
    for name, text in AUTHSELECT_PROFILES.items():
        d = root.path / "usr/share/authselect/default" / name
        d.mkdir(parents=True)
        (d / "nsswitch.conf").write_text(text)
    if user_nsswitch:  # authselect 1.2 seeds it with the system's file when first installed
        (root.path / "etc/authselect").mkdir()
        shutil.copy(root.path / "etc/nsswitch.conf", root.path / "etc/authselect/user-nsswitch.conf")
    root.sh(f"authselect select {profile} --force")
    assert root.sh("authselect check").returncode == 0
    return root


def test_rpms_on_authselect_wire_user_nsswitch_conf_and_survive_a_select(rpms, tmp_path):
    """RHEL 8/9: the hosts line goes into /etc/authselect/user-nsswitch.conf and authselect
    writes nsswitch.conf; a later `authselect select` keeps it, `authselect check` stays happy,
    and erasing takes it out of both."""
    root = authselect_root(tmp_path, "sssd")
    before = root.nsswitch()
    user_before = (root.path / "etc/authselect/user-nsswitch.conf").read_text()
    r = root.install(rpms)
    assert root.hosts_line().split() == ["hosts:", "files", "ec2", "[NOTFOUND=return]", "dns"], root.nsswitch()
    assert os.readlink(root.path / "etc/nsswitch.conf") == "/etc/authselect/nsswitch.conf"
    assert "ec2 [NOTFOUND=return] dns" in (root.path / "etc/authselect/user-nsswitch.conf").read_text()
    assert root.sh("authselect check").returncode == 0, "the package edited a file authselect owns"
    assert not r.stderr.strip(), r.stderr
    assert root.resolves()
    root.sh("authselect select sssd --force")
    assert "ec2" in root.hosts_line().split(), "a new authselect select dropped the hosts line"
    root.rpm("-e", "ec2cached", "nss-ec2")
    assert root.nsswitch() == before
    assert (root.path / "etc/authselect/user-nsswitch.conf").read_text() == user_before
    assert root.sh("authselect check").returncode == 0


def test_rpms_on_authselect_with_a_profile_owning_hosts_say_how(rpms, tmp_path):
    """Where the profile sets the hosts line (minimal, nis), the package says how to hand it over
    (with-custom-hosts); once the administrator does, names resolve."""
    root = authselect_root(tmp_path, "minimal")
    before = root.nsswitch()
    r = root.install(rpms)
    assert "authselect enable-feature with-custom-hosts" in r.stderr, r.stderr
    assert root.nsswitch() == before
    assert root.sh("authselect check").returncode == 0
    root.sh("authselect enable-feature with-custom-hosts")
    assert root.hosts_line().split() == ["hosts:", "files", "ec2", "[NOTFOUND=return]", "dns"], root.nsswitch()
    assert root.resolves()


def test_rpms_on_authselect_without_user_nsswitch_conf_change_nothing_and_say_how(rpms, tmp_path):
    """authselect 1.3 and later (Fedora 36+, RHEL 10): only a profile decides the hosts line, and
    an edit would break `authselect check` and every later apply-changes. The package leaves the
    files alone and says what to do (docs/platforms.md, "Supported systems")."""
    profile = "minimal"
    root = authselect_root(tmp_path, profile, user_nsswitch=False)
    before = root.nsswitch()
    r = root.install(rpms)
    assert "custom profile" in r.stderr, r.stderr
    assert root.nsswitch() == before
    assert root.sh("authselect check").returncode == 0
    root.rpm("-e", "ec2cached", "nss-ec2")
    assert root.nsswitch() == before


# --- the release archive ------------------------------------------------------------------------

def test_the_release_archive_installs_with_its_own_makefile(dist, tmp_path):
    with tarfile.open(dist) as t:
        names = t.getnames()
        t.extractall(tmp_path, filter="data")
    top = f"nss-ec2-{VERSION}-{ARCH}-linux-gnu"
    for want in ("bin/ec2cached", "bin/libnss_ec2.so", "man/ec2cached.8", "man/libnss_ec2.8", "INSTALL",
                 "Makefile", "ec2cached/ec2cached.toml", "ec2cached/ec2cached.rules.yml",
                 "debian/ec2cached.service", "debian/ec2cached.ec2cached-dns.socket", "tools/nsswitch-ec2"):
        assert f"{top}/{want}" in names, want
    src = tmp_path / top
    dest = tmp_path / "dest"
    # The Makefile of the archive installs the archive's binaries, builds nothing: `make` alone
    # installs. On a host without dpkg-architecture or gcc (a stock RHEL or Amazon Linux; here
    # they fail), the module goes where the loader's cache has libc.so.6.
    env = {k: v for k, v in os.environ.items() if k not in ("CARGO_TARGET_DIR", "NSS_EC2_REL")}
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    for tool in ("gcc", "dpkg-architecture", "cargo", "cargo-zigbuild"):
        (shadow / tool).write_text("#!/bin/sh\nexit 127\n")
        (shadow / tool).chmod(0o755)
    env["PATH"] = f"{shadow}:/usr/sbin:/usr/bin:/sbin:/bin"
    r = subprocess.run(["make", "-C", str(src), f"DESTDIR={dest}"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "Cargo.toml" not in r.stderr, r.stdout + r.stderr
    libc = run("/sbin/ldconfig", "-p")
    libdir = os.path.dirname(os.path.realpath(re.search(r"^\s*libc\.so\.6 \(libc6,%s.*=> (\S+)" % ("AArch64" if ARCH == "aarch64" else "x86-64"), libc, re.M).group(1)))
    made = {"/" + str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    for want in (f"{libdir}/libnss_ec2.so.2", "/usr/sbin/ec2cached", "/etc/ec2cached.toml",
                 "/usr/lib/systemd/system/ec2cached.service", "/usr/lib/sysusers.d/ec2cached.conf",
                 "/usr/share/man/man8/ec2cached.8", "/etc/facter/facts.d/ec2cached"):
        assert want in made, (want, made)
    assert (dest / "usr/sbin/ec2cached").read_bytes() == (REL / "ec2cached").read_bytes()
    nss = tmp_path / "nsswitch.conf"
    nss.write_text("passwd: files\nhosts: files dns\n")
    run("make", "-C", str(src), "nsswitch-add", f"NSSWITCH={nss}", env=env)
    assert "hosts: files ec2 [NOTFOUND=return] dns\n" in nss.read_text()
    run("make", "-C", str(src), "nsswitch-remove", f"NSSWITCH={nss}", env=env)
    assert nss.read_text() == "passwd: files\nhosts: files dns\n"


# --- the hosts line edit outside Debian (tools/nsswitch-ec2) ------------------------------------

LIBVIRT = '{if "with-libvirt":libvirt libvirt_guest }{if "with-mdns4":mdns4_minimal [NOTFOUND=return] }'


@pytest.mark.parametrize("before, after", [
    ("hosts: files dns", "hosts: files ec2 [NOTFOUND=return] dns"),
    ("hosts:\tfiles\tdns", "hosts:\tfiles\tec2 [NOTFOUND=return] dns"),
    ("hosts:dns", "hosts:ec2 [NOTFOUND=return] dns"),
    ("hosts: files mdns4_minimal [NOTFOUND=return] dns myhostname",
     "hosts: files mdns4_minimal [NOTFOUND=return] ec2 [NOTFOUND=return] dns myhostname"),
    # Before resolve when it comes first (systemd-resolved would answer NOTFOUND for it).
    ("hosts: files myhostname resolve [!UNAVAIL=return] dns",
     "hosts: files myhostname ec2 [NOTFOUND=return] resolve [!UNAVAIL=return] dns"),
    ("hosts: files # dns later", "hosts: files ec2 [NOTFOUND=return] # dns later"),
    ("hosts: files", "hosts: files ec2 [NOTFOUND=return]"),
    ("hosts: files dns # see ec2(8)", "hosts: files ec2 [NOTFOUND=return] dns # see ec2(8)"),
    # An authselect profile's template (a custom profile, docs/platforms.md, "Supported systems").
    (f"hosts: files myhostname {LIBVIRT}resolve [!UNAVAIL=return] dns",
     f"hosts: files myhostname {LIBVIRT}ec2 [NOTFOUND=return] resolve [!UNAVAIL=return] dns"),
])
def test_the_hosts_line_edit_adds_once_and_removes_byte_for_byte(tmp_path, before, after):
    f = tmp_path / "nsswitch.conf"
    text = f"passwd: files\n{before}\nnetworks: files\n"
    f.write_text(text)
    f.chmod(0o640)
    tool = str(ROOT / "tools" / "nsswitch-ec2")
    run("sh", tool, "add", str(f))
    assert f.read_text() == f"passwd: files\n{after}\nnetworks: files\n"
    run("sh", tool, "add", str(f))
    assert len(re.findall(r"[\s}:]ec2\s", f.read_text())) == 1
    assert (f.stat().st_mode & 0o777) == 0o640
    run("sh", tool, "remove", str(f))
    assert f.read_text() == text
    assert not list(tmp_path.glob("*.nss-ec2.*")), "a temporary file was left"


def test_the_hosts_line_edit_keeps_an_administrators_own_ec2(tmp_path):
    f = tmp_path / "nsswitch.conf"
    f.write_text("hosts: files dns ec2\n")
    run("sh", str(ROOT / "tools" / "nsswitch-ec2"), "add", str(f))
    assert f.read_text() == "hosts: files dns ec2\n"
    run("sh", str(ROOT / "tools" / "nsswitch-ec2"), "remove", str(f))
    assert f.read_text() == "hosts: files dns\n"
