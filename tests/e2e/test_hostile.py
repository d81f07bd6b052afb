"""The module inside hostile hosts: untrusted files, set-uid programs, forks, closed descriptors,
and a daemon publishing thousands of generations under threads that resolve."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import LIBDIR

HERE = Path(__file__).resolve().parent


def from_file(host, tmp, name, addrs, group="g", out="web"):
    """A snapshot where NAME.g.ec2 resolves to ADDRS (via ec2cached refresh --from-file)."""
    inst = ",".join(
        f'{{"InstanceId":"i-{name}{k:03x}","State":{{"Name":"running"}},"LaunchTime":"2024-01-01T00:00:0{k % 10}Z",'
        f'"SecurityGroups":[{{"GroupName":"{group}"}}],"Tags":[{{"Key":"services","Value":"{name}"}}],'
        f'"PrivateIpAddress":"{a}"}}'
        for k, a in enumerate(addrs)
    )
    j = tmp / f"{name}.json"
    j.write_text(f'{{"Reservations":[{{"Instances":[{inst}]}}]}}')
    host.refresh("--from-file", str(j))
    dst = tmp / f"{out}.snap"
    shutil.copy(host.snapshot, dst)
    return dst


@pytest.fixture
def good(host, tmp_path):
    return from_file(host, tmp_path, "web", ["10.7.0.1"])


def unavail(host, snap):
    """getent through ec2 only fails, silently, fast; and the status is UNAVAIL (not NOTFOUND)."""
    env = host.env(NSS_EC2_SNAPSHOT=str(snap))
    t = time.monotonic()
    code, out, err = host.getent("hosts", "web.g.ec2", env=env)
    assert (code, out, err) == (2, [], ""), snap
    assert time.monotonic() - t < 5
    code, _, _ = host.getent("hosts", "localhost", services="ec2 [UNAVAIL=return] files", env=env)
    return code == 2


def answers(host, snap):
    code, out, _ = host.getent("hosts", "web.g.ec2", env=host.env(NSS_EC2_SNAPSHOT=str(snap)))
    return code == 0 and out[0].split()[0] == "10.7.0.1"


def test_untrusted_and_not_a_file(host, tmp_path, good):
    assert answers(host, good), "control: the good snapshot answers"
    cases = {}
    d = tmp_path / "cases"
    d.mkdir(mode=0o755)

    def case(name, setup):
        sub = d / name
        sub.mkdir(mode=0o755)
        p = sub / "hosts.snap"
        setup(p)
        cases[name] = p

    case("missing", lambda p: None)
    case("fifo", lambda p: os.mkfifo(p))
    case("directory", lambda p: p.mkdir())
    case("device", lambda p: p.symlink_to("/dev/zero"))
    case("symlink-loop", lambda p: (p.symlink_to(p.parent / "b"), (p.parent / "b").symlink_to(p)))
    case("being-written", lambda p: p.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2]))
    case("empty", lambda p: p.write_bytes(b""))

    def owned_by_nobody(p):
        shutil.copy(good, p)
        os.chown(p, 65534, 65534)

    case("other-owner", owned_by_nobody)
    for mode in (0o664, 0o646, 0o666):
        case(f"mode-{mode:o}", lambda p, m=mode: (shutil.copy(good, p), os.chmod(p, m)))
    for mode in (0o777, 0o775, 0o1777):
        case(f"dir-{mode:o}", lambda p, m=mode: (shutil.copy(good, p), os.chmod(p.parent, m)))
    # A symlink, even to a trusted file: the module opens the file without following a symlink
    # (test_module_life.py has the attacks this closes).
    case("symlink-to-good", lambda p: p.symlink_to(good))
    for name, p in cases.items():
        assert unavail(host, p), f"{name}: not UNAVAIL"


def test_setuid_programs_ignore_the_environment(host, tmp_path):
    """A set-uid root program run by nobody reads only the compiled-in path."""
    work = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        os.chmod(work, 0o755)
        probe = work / "probe"
        subprocess.run(["cc", "-O2", "-o", str(probe), str(HERE / "probe.c"),
                        f"-Wl,--disable-new-dtags,-rpath,{LIBDIR}"], check=True)
        setuid = work / "probe-setuid"
        shutil.copy(probe, setuid)
        os.chmod(setuid, 0o4755)
        default = from_file(host, tmp_path, "web", ["10.1.1.1"], out="default")
        envsnap = work / "env"
        envsnap.mkdir(mode=0o755)
        shutil.copy(from_file(host, tmp_path, "web", ["10.2.2.2"], out="env"), envsnap / "hosts.snap")
        shutil.copy(default, work / "default.snap")
        script = (
            "set -e; mount -t tmpfs -o mode=0755 tmpfs /var/lib; mkdir /var/lib/ec2cached; "
            f"cp {work}/default.snap /var/lib/ec2cached/hosts.snap; "
            f"export NSS_EC2_SNAPSHOT={envsnap}/hosts.snap; "
            "for p in probe probe-setuid; do "
            f"setpriv --reuid=65534 --regid=65534 --clear-groups {work}/$p web.g.ec2 || true; done"
        )
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                           capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]})
        assert r.stdout.split() == ["10.2.2.2", "10.1.1.1"], (r.stdout, r.stderr)
    finally:
        shutil.rmtree(work)


def test_fork_closed_descriptors_and_threads(host, tmp_path, good):
    """Threads inside the module while the main thread forks: every child resolves.

    The threads call the module's entry point directly: glibc's own resolver state
    (resolv_conf's lock, taken by gethostbyname_r before any NSS module runs) is not fork-safe,
    and a child forked while another thread holds it hangs whatever the modules do.
    """
    code = (
        "import os, socket, threading, ctypes\n"
        f"so = ctypes.CDLL({LIBDIR!r} + '/libnss_ec2.so.2')\n"
        "class HostEnt(ctypes.Structure):\n"
        "    _fields_ = [('h_name', ctypes.c_char_p), ('h_aliases', ctypes.c_void_p), ('h_addrtype', ctypes.c_int),\n"
        "                ('h_length', ctypes.c_int), ('h_addr_list', ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)))]\n"
        "def resolve():\n"
        "    h, buf, e, he = HostEnt(), ctypes.create_string_buffer(1024), ctypes.c_int(), ctypes.c_int()\n"
        "    st = so._nss_ec2_gethostbyname2_r(b'web.g.ec2', socket.AF_INET, ctypes.byref(h), buf, 1024, ctypes.byref(e), ctypes.byref(he))\n"
        "    return '.'.join(str(h.h_addr_list[0][i]) for i in range(4)) if st == 1 else None\n"
        "want = '10.7.0.1'\n"
        "assert resolve() == want\n"
        "stop = False\n"
        "bad = []\n"
        "def spin():\n"
        "    while not stop:\n"
        "        if resolve() != want: bad.append(1)\n"
        "ts = [threading.Thread(target=spin) for _ in range(4)]\n"
        "[t.start() for t in ts]\n"
        "children = 0\n"
        "for _ in range(200):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os._exit(0 if resolve() == want else 3)\n"
        "    _, st = os.waitpid(pid, 0)\n"
        "    assert os.waitstatus_to_exitcode(st) == 0, st\n"
        "    children += 1\n"
        "stop = True\n"
        "[t.join() for t in ts]\n"
        "assert not bad\n"
        # Close every descriptor above 2, then put other files on the low numbers.
        "os.closerange(3, 65536)\n"
        "for fd in range(3, 12): os.dup2(os.open('/dev/null', os.O_RDONLY), fd)\n"
        "ctypes.CDLL(None).__nss_configure_lookup(b'hosts', b'ec2')\n"
        "assert socket.gethostbyname('web.g.ec2') == want\n"
        "print('ok', children)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=host.env(NSS_EC2_SNAPSHOT=str(good)),
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["ok", "200"], r.stderr


def test_threads_while_thousands_of_generations_are_published(host, tmp_path):
    a = from_file(host, tmp_path, "web", [f"10.1.0.{i}" for i in range(1, 9)], out="a")
    b = from_file(host, tmp_path, "web", [f"10.2.0.{i}" for i in range(1, 9)], out="b")
    live = tmp_path / "live"
    live.mkdir(mode=0o755)
    snap = live / "hosts.snap"
    shutil.copy(a, snap)
    code = f"""
import ctypes, os, socket, threading, time
ctypes.CDLL(None).__nss_configure_lookup(b'hosts', b'ec2')
A, B = {a.read_bytes()!r}, {b.read_bytes()!r}
snap = {str(snap)!r}
def fds(): return len(os.listdir('/proc/self/fd'))
def maps(): return sum(1 for l in open('/proc/self/maps') if l.rstrip().endswith('hosts.snap') or 'hosts.snap (deleted)' in l)
socket.gethostbyname_ex('web.g.ec2')
fd0 = fds()
stop = False
seen, mixed, lookups = set(), [], [0]
def reader():
    while not stop:
        addrs = socket.gethostbyname_ex('web.g.ec2')[2]
        gens = {{x.split('.')[1] for x in addrs}}
        if len(gens) != 1 or len(addrs) != 8: mixed.append(addrs)
        seen.update(gens)
        lookups[0] += 1
ts = [threading.Thread(target=reader) for _ in range(4)]
[t.start() for t in ts]
publishes = 0
end = time.monotonic() + 6
while time.monotonic() < end or publishes < 3000:
    tmp = snap + '.tmp'
    with open(tmp, 'wb') as f: f.write(B if publishes % 2 else A)
    os.rename(tmp, snap)
    publishes += 1
    if publishes % 50 == 0: time.sleep(0.01)
stop = True
[t.join() for t in ts]
time.sleep(0.25)
socket.gethostbyname_ex('web.g.ec2')
import json
print(json.dumps(dict(publishes=publishes, lookups=lookups[0], mixed=len(mixed), seen=sorted(seen),
                      fd_delta=fds() - fd0, maps=maps())))
"""
    r = subprocess.run([sys.executable, "-c", code], env=host.env(NSS_EC2_SNAPSHOT=str(snap)),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    print(got)
    assert got["publishes"] >= 3000
    assert got["mixed"] == 0, "an answer mixed two generations"
    assert got["seen"] == ["1", "2"], "both generations were served"
    assert got["fd_delta"] == 0, "descriptors leaked"
    assert got["maps"] == 1, "exactly one snapshot mapping remains"
