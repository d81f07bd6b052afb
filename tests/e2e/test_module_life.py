"""Every process survives every life of the snapshot file: out of descriptors, hostile shapes,
publishes during an enumeration, directories swapped under the module, the module's own first
use, forks and real-time threads. Through the real libnss_ec2.so.2: glibc after
__nss_configure_lookup, getent -s hosts:ec2, or the module's entry points called with ctypes
(for status / errno / h_errno).

No moto here: snapshots come from `ec2cached refresh --from-file` (snapfile.fleet_json), and
hostile ones from rewriting their records (snapfile.Snap).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import LIBDIR, Host
from snapfile import Snap, fleet_json, fleets, hostile

# Python run in a child process: NSS limited to `ec2`, and glibc's struct hostent.
HOSTENT = """libc = ctypes.CDLL(None)
assert libc.__nss_configure_lookup(b"hosts", b"ec2") == 0
class HostEnt(ctypes.Structure):
    _fields_ = [("h_name", ctypes.c_char_p), ("h_aliases", ctypes.c_void_p), ("h_addrtype", ctypes.c_int),
                ("h_length", ctypes.c_int), ("h_addr_list", ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)))]
"""

PROBE_LIBDIR = os.environ.get("NSS_EC2_PROBE_LIBDIR")

UNAVAIL, SUCCESS = -1, 1
NO_RECOVERY = 3


@pytest.fixture
def h(tmp_path):
    """A host without moto: every snapshot here comes from --from-file."""
    return Host(tmp_path, "http://127.0.0.1:1")


def snapshot(h, name, doc):
    """The snapshot `ec2cached refresh --from-file` makes of DOC, as bytes (kept as NAME.snap)."""
    j = h.dir / f"{name}.json"
    j.write_text(doc)
    h.refresh("--from-file", str(j))
    data = h.snapshot.read_bytes()
    (h.dir / f"{name}.snap").write_bytes(data)
    return data


def private_dir(parent, name, owner=0, mode=0o755):
    d = parent / name
    d.mkdir()
    os.chmod(d, mode)
    os.chown(d, owner, owner)
    return d


def direct(libdir=LIBDIR):
    """Python prelude: the module loaded with ctypes, and byname2(name, af) -> (status, errno,
    h_errno, addresses) through its _nss_ec2_gethostbyname2_r entry point."""
    return f"""
import ctypes, errno, json, os, resource, socket, sys, time
so = ctypes.CDLL({libdir!r} + "/libnss_ec2.so.2")
class HostEnt(ctypes.Structure):
    _fields_ = [("h_name", ctypes.c_char_p), ("h_aliases", ctypes.c_void_p), ("h_addrtype", ctypes.c_int),
                ("h_length", ctypes.c_int), ("h_addr_list", ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)))]
def byname2(name, af=socket.AF_INET):
    h, buf, e, he = HostEnt(), ctypes.create_string_buffer(65536), ctypes.c_int(), ctypes.c_int()
    st = so._nss_ec2_gethostbyname2_r(name.encode(), af, ctypes.byref(h), buf, 65536, ctypes.byref(e), ctypes.byref(he))
    addrs, i = [], 0
    while st == 1 and h.h_addr_list[i]:
        addrs.append(socket.inet_ntop(af, bytes(h.h_addr_list[i][:h.h_length])))
        i += 1
    return [st, e.value, he.value, addrs]
def glibc(name):
    try:
        return socket.gethostbyname(name)
    except OSError as e:
        return "error: " + str(e)
def exhaust_descriptors():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    held = []
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as e:
        assert e.errno == errno.EMFILE, e
    return held
"""


def hosts(h, name, snap):
    """`getent -s hosts:ec2 hosts NAME` on snapshot SNAP: (exit code, addresses)."""
    code, out, err = h.getent("hosts", name, env=h.env(NSS_EC2_SNAPSHOT=str(snap)))
    assert err == "", err
    return code, [l.split()[0] for l in out]


def run(code, env, timeout=60):
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r


# --- 1. A transient error keeps the mapping; its errno is the real one ------------------------

def test_out_of_descriptors_a_publish_keeps_the_old_generation_until_descriptors_free_up(h):
    a = snapshot(h, "a", fleet_json(1, net="10.1"))
    b = snapshot(h, "b", fleet_json(1, net="10.2"))
    live = private_dir(h.dir, "live")
    snap = live / "hosts.snap"
    snap.write_bytes(a)
    (live / "next").write_bytes(b)
    code = direct() + f"""
assert ctypes.CDLL(None).__nss_configure_lookup(b"hosts", b"ec2") == 0
out = [glibc("web.g.ec2")]
held = exhaust_descriptors()
os.rename({str(live / "next")!r}, {str(snap)!r})
time.sleep(0.3)
out += [glibc("web.g.ec2"), byname2("web.g.ec2")]
for fd in held:
    os.close(fd)
time.sleep(0.3)
out += [glibc("web.g.ec2")]
print(json.dumps(out))
"""
    got = json.loads(run(code, h.env(NSS_EC2_SNAPSHOT=str(snap))).stdout)
    assert got == [
        "10.1.0.0",
        "10.1.0.0", [SUCCESS, 0, 0, ["10.1.0.0"]],  # out of descriptors: the mapping it had
        "10.2.0.0",                                  # descriptors back: the new generation
    ], got


def test_a_fresh_process_out_of_descriptors_gets_emfile_then_recovers(h):
    snapshot(h, "a", fleet_json(1, net="10.1"))
    code = direct() + """
held = exhaust_descriptors()
out = [byname2("web.g.ec2")]
for fd in held:
    os.close(fd)
time.sleep(0.3)
out.append(byname2("web.g.ec2"))
print(json.dumps(out))
"""
    got = json.loads(run(code, h.env()).stdout)
    assert got == [[UNAVAIL, 24, NO_RECOVERY, []], [SUCCESS, 0, 0, ["10.1.0.0"]]], got  # 24: EMFILE


def test_each_kind_of_unusable_snapshot_has_its_own_errno(h):
    good = snapshot(h, "good", fleet_json(1))
    cases = h.dir / "cases"
    cases.mkdir(mode=0o755)

    def case(name, setup):
        d = private_dir(cases, name)
        setup(d / "hosts.snap")
        return d / "hosts.snap"

    stale = Snap(good)
    stale.put32(36, 60)  # max_age 60 s on a snapshot generated in 2024 or earlier
    stale.set_header(generated=1_700_000_000)
    want = {
        case("missing", lambda p: None): 2,                                       # ENOENT
        case("no-directory", lambda p: shutil.rmtree(p.parent)): 2,              # ENOENT
        case("writable", lambda p: (p.write_bytes(good), os.chmod(p, 0o666))): 13,  # EACCES
        case("fifo", lambda p: os.mkfifo(p)): 13,                                 # EACCES
        case("symlink", lambda p: p.symlink_to(h.dir / "good.snap")): 13,       # EACCES
        case("truncated", lambda p: p.write_bytes(good[:-1])): 5,                 # EIO
        case("empty", lambda p: p.write_bytes(b"")): 5,                           # EIO
        case("stale", lambda p: p.write_bytes(stale.bytes())): 116,               # ESTALE
    }
    for p, errno in want.items():
        r = run(direct() + 'print(json.dumps(byname2("web.g.ec2")))', h.env(NSS_EC2_SNAPSHOT=str(p)))
        assert json.loads(r.stdout) == [UNAVAIL, errno, NO_RECOVERY, []], p.parent.name


# --- 2. Work and answers bounded by the file --------------------------------------------------

def test_overlapping_ipv6_ranges_answer_unavail_not_a_flood(h):
    good = snapshot(h, "good", fleet_json(100, v6=1))
    bad = h.dir / "bad"
    bad.mkdir(mode=0o755)
    (bad / "hosts.snap").write_bytes(hostile(good, "ipv6-overlap"))
    env = h.env(NSS_EC2_SNAPSHOT=str(bad / "hosts.snap"))
    # Every instance claims all 100 IPv6 addresses of the file: before, web.g.ec2 answered
    # 100 × 100 of them (and a 0.9 MB file could ask glibc for gigabytes).
    for args in (["hosts", "web.g.ec2"], ["ahosts", "web.g.ec2"], ["ahostsv6", "1.web.g.ec2"]):
        code, out, err = h.getent(*args, env=env)
        assert (code, out, err) == (2, [], ""), args


def test_overlapping_member_ranges_make_a_bounded_enumeration(h):
    good = snapshot(h, "good", fleet_json(300))
    members = Snap(good).count("members")
    for shape, most in (("members-overlap", 0), ("members-per-instance", 2 * members)):
        d = h.dir / shape
        d.mkdir(mode=0o755)
        (d / "hosts.snap").write_bytes(hostile(good, shape))
        env = h.env(NSS_EC2_SNAPSHOT=str(d / "hosts.snap"))
        # `getent hosts` lists every name. Before, every one of the ~900 names listed all 300
        # or 1500 members (270 000 or 1 350 000 lines, quadratic in the file); now at most
        # twice the file's member records are walked, then the enumeration stops as corrupt.
        code, out, err = h.getent("hosts", env=env)
        assert code == 0 and err == "", (shape, code, err)
        assert len(out) <= most, (shape, len(out), most)
        if shape == "members-overlap":  # more members than instances: every name is corrupt
            assert h.getent("hosts", "web.g.ec2", env=env)[:2] == (2, [])


# --- 3. An enumeration keeps its generation ---------------------------------------------------

def test_a_publish_during_an_enumeration_changes_nothing_in_its_listing(h):
    a = snapshot(h, "a", fleet_json(400, net="10.1"))
    b = snapshot(h, "b", fleet_json(300, net="10.2", service="db"))
    live = private_dir(h.dir, "live")
    snap = live / "hosts.snap"
    code = f"""
import ctypes, json, os, socket, time
{HOSTENT}libc.gethostent.restype = ctypes.POINTER(HostEnt)
def entry():
    p = libc.gethostent()
    if not p:
        return None
    e, addrs, i = p.contents, [], 0
    while e.h_addr_list[i]:
        addrs.append(socket.inet_ntop(e.h_addrtype, bytes(e.h_addr_list[i][:e.h_length])))
        i += 1
    return [e.h_name.decode(), addrs]
def listing(publish_after=None):
    libc.sethostent(0)
    out = []
    while True:
        if len(out) == publish_after:
            os.rename({str(h.dir / "b.snap")!r}, {str(snap)!r})
            time.sleep(0.3)
            socket.gethostbyname("1.db.g.ec2")  # the process now maps the new generation
        e = entry()
        if e is None:
            break
        out.append(e)
    libc.endhostent()
    return out
first = listing()
during = listing(publish_after=len(first) // 3)
after = listing()
print(json.dumps([first, during, after]))
"""
    snap.write_bytes(a)
    first, during, after = json.loads(run(code, h.env(NSS_EC2_SNAPSHOT=str(snap))).stdout)
    assert len(first) > 1000 and first[0][1][0].startswith("10.1.")
    assert during == first, "the enumeration skipped, repeated or mixed entries"
    assert after and all(a.startswith("10.2.") for _, addrs in after for a in addrs)


# --- 4. The directory is checked through its descriptor ---------------------------------------

def test_a_symlinked_snapshot_is_refused_wherever_it_points(h):
    good = snapshot(h, "good", fleet_json(1))
    trusted = private_dir(h.dir, "trusted")
    attacker = private_dir(h.dir, "attacker", owner=65534)
    # A root-owned file in a directory another account controls (a hard link, say), reached
    # through a symlink in a trusted directory: before, the trusted directory of the link was
    # checked, not the directory of the file.
    (attacker / "hosts.snap").write_bytes(good)
    (trusted / "hosts.snap").symlink_to(attacker / "hosts.snap")
    # And a symlink to a trusted file: refused too (the daemon never publishes a symlink).
    (trusted / "other.snap").symlink_to(h.dir / "good.snap")
    for p in (trusted / "hosts.snap", trusted / "other.snap"):
        r = run(direct() + 'print(json.dumps(byname2("web.g.ec2")))', h.env(NSS_EC2_SNAPSHOT=str(p)))
        assert json.loads(r.stdout) == [UNAVAIL, 13, NO_RECOVERY, []], p  # EACCES
        assert h.getent("hosts", "web.g.ec2", env=h.env(NSS_EC2_SNAPSHOT=str(p)))[:2] == (2, [])
    # A path through a symlinked directory is fine: the directory checked is the real one.
    real = private_dir(h.dir, "real")
    (real / "hosts.snap").write_bytes(good)
    (h.dir / "via").symlink_to(real)
    assert hosts(h, "web.g.ec2", h.dir / "via/hosts.snap") == (0, ["10.1.0.0"])


def test_a_directory_swapped_during_the_check_never_gets_its_file_trusted(h):
    good = snapshot(h, "good", fleet_json(1, net="10.7"))
    evil = snapshot(h, "evil", fleet_json(1, net="10.66"))
    # attacker/d flips between trusted/ (the good snapshot) and mine/ (a directory the attacker
    # owns, holding a root-owned file with the attacker's choice of content, a hard link say).
    attacker = private_dir(h.dir, "attacker", owner=65534)
    trusted = private_dir(h.dir, "trusted")
    mine = private_dir(h.dir, "mine", owner=65534)
    (trusted / "hosts.snap").write_bytes(good)
    (mine / "hosts.snap").write_bytes(evil)
    flipper = f"""
import os
a = {str(attacker)!r}
os.symlink({str(trusted)!r}, a + "/d")
while True:
    for target in ({str(mine)!r}, {str(trusted)!r}):
        os.symlink(target, a + "/t")
        os.rename(a + "/t", a + "/d")
"""
    # Each child loads the module and opens the snapshot afresh (its first use) while the
    # flipper runs; the parent never loads the module.
    probe = f"""
import ctypes, json, os
class HostEnt(ctypes.Structure):
    _fields_ = [("h_name", ctypes.c_char_p), ("h_aliases", ctypes.c_void_p), ("h_addrtype", ctypes.c_int),
                ("h_length", ctypes.c_int), ("h_addr_list", ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)))]
seen = {{}}
for _ in range(1500):
    pid = os.fork()
    if pid == 0:
        so = ctypes.CDLL({LIBDIR!r} + "/libnss_ec2.so.2")
        h, buf, e, he = HostEnt(), ctypes.create_string_buffer(1024), ctypes.c_int(), ctypes.c_int()
        st = so._nss_ec2_gethostbyname2_r(b"web.g.ec2", 2, ctypes.byref(h), buf, 1024, ctypes.byref(e), ctypes.byref(he))
        os._exit(3 if st != 1 else {{7: 1, 66: 2}}.get(h.h_addr_list[0][1], 4))
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    seen[code] = seen.get(code, 0) + 1
print(json.dumps(seen))
"""
    f = subprocess.Popen([sys.executable, "-c", flipper])
    try:
        r = run(probe, h.env(NSS_EC2_SNAPSHOT=str(attacker / "d/hosts.snap")), timeout=120)
    finally:
        f.kill()
        f.wait()
    seen = json.loads(r.stdout)
    print(seen)
    assert "2" not in seen, f"the attacker's file was trusted {seen['2']} times"
    assert seen.get("1", 0) > 0, "the trusted directory's file answers"


# --- 5, 6. Set-up before any caller; a real mutex ---------------------------------------------

def test_the_set_up_is_a_load_time_constructor():
    """The module's set-up is an entry of its .init_array (run by the loader inside dlopen,
    before any entry point can be called), and adds no exported symbol. The built module has no
    symbol table (zig's linker strips it, as the packages' strip does), so the constructor is
    found by name in the test build, which keeps one (tests/lib.sh build_probe), and the module
    has the same .init_array."""
    def init_array(so):
        sections = subprocess.run(["readelf", "-S", "--wide", so], capture_output=True, text=True,
                                  check=True).stdout
        fields = next(l for l in sections.splitlines() if " .init_array " in l).split()
        at = fields.index(".init_array")
        return int(fields[at + 2], 16), int(fields[at + 4], 16)

    so = os.path.join(LIBDIR, "libnss_ec2.so.2")
    probe = os.path.join(PROBE_LIBDIR, "libnss_ec2.so.2")
    start, size = init_array(probe)
    symbols = subprocess.run(["nm", "-C", probe], capture_output=True, text=True, check=True).stdout
    ctor = [int(l.split()[0], 16) for l in symbols.splitlines() if l.endswith(" nss_ec2::CONSTRUCTOR")]
    assert len(ctor) == 1 and start <= ctor[0] < start + size, (ctor, hex(start), size)
    assert init_array(so)[1] == size, "the module's .init_array differs from the test build's"
    exported = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True,
                              check=True).stdout.split()[2::3]
    assert all(n.startswith("_nss_ec2_") and "constructor" not in n for n in exported), exported


@pytest.fixture
def probe_env(h):
    assert PROBE_LIBDIR, "NSS_EC2_PROBE_LIBDIR is unset: run tests/run, which builds the probe module"
    snapshot(h, "a", fleet_json(2))
    return h.env(LD_LIBRARY_PATH=PROBE_LIBDIR)


def test_first_use_from_many_threads_waits_for_the_set_up_and_prints_nothing(h, probe_env):
    """The probe build's constructor takes 300 ms (NSS_EC2_PANIC_PROBE_SLOW_INIT) and every
    lookup panics: threads racing to the module's first use through glibc must all see UNAVAIL,
    silently. Before, the first caller marked the module set up before installing the silent
    panic hook and the fork handlers: the others went on meanwhile, and panicked aloud (or, had
    one forked while another held the lock, left a child spinning forever)."""
    code = """
import ctypes, socket, threading
assert ctypes.CDLL(None).__nss_configure_lookup(b"hosts", b"ec2") == 0
go = threading.Barrier(8)
results = []
def first_use():
    go.wait()
    for _ in range(50):
        try:
            socket.gethostbyname("web.g.ec2")
            results.append("answered")
        except OSError:
            results.append("unavail")
ts = [threading.Thread(target=first_use) for _ in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
print(sorted(set(results)), len(results))
"""
    env = dict(probe_env, NSS_EC2_PANIC_PROBE="1", NSS_EC2_PANIC_PROBE_SLOW_INIT="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "['unavail'] 400\n", "")


def test_a_panic_inside_the_lock_releases_it(h, probe_env):
    """The probe build panics inside the critical section of every lookup (NSS_EC2_PANIC_PROBE
    =lock): the lock's guard must release it while unwinding, or the next lookup waits forever.
    Before, a hand-made spin lock stayed taken."""
    code = direct(PROBE_LIBDIR) + """
out = [byname2("web.g.ec2") for _ in range(3)]
print(json.dumps(out))
"""
    r = subprocess.run([sys.executable, "-c", code], env=dict(probe_env, NSS_EC2_PANIC_PROBE="lock"),
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stderr) == (0, "")
    assert json.loads(r.stdout) == [[UNAVAIL, 5, NO_RECOVERY, []]] * 3  # EIO


def test_real_time_threads_on_one_cpu_all_finish(h, tmp_path):
    """A SCHED_FIFO thread that wakes up while a lower-priority one holds the lock must sleep
    until the holder is done, not spin: on one CPU a spinning higher-priority thread never lets
    the holder run (the old spin lock's sched_yield does not yield to lower priorities).
    Skipped where real-time scheduling is not allowed (no CAP_SYS_NICE or RT budget)."""
    snapshot(h, "a", fleet_json(1))
    src = tmp_path / "rt.c"
    src.write_text(r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>
typedef int (*byname2_t)(const char *, int, struct hostent *, char *, size_t, int *, int *);
static byname2_t byname2;
static volatile int stop;
static long done[2];
static int cpu = -1, denied, unpinned;
static void *loop(void *arg) {
    long id = (long)arg;
    /* Priority first, then the CPU: a thread that moved to the CPU before becoming real-time
       could wait forever behind the other, already real-time, one. */
    struct sched_param p = { .sched_priority = id ? 20 : 10 };
    if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &p)) { denied = 1; return 0; }
    cpu_set_t one; CPU_ZERO(&one); CPU_SET(cpu, &one);
    if (pthread_setaffinity_np(pthread_self(), sizeof one, &one)) { unpinned = 1; return 0; }
    struct timespec nap = { 0, 50000 };
    char buf[1024]; struct hostent h; int e, he;
    while (!stop) {
        if (byname2("web.g.ec2", 2, &h, buf, sizeof buf, &e, &he) != 1) { done[id] = -1000000; break; }
        done[id]++;
        if (id) nanosleep(&nap, 0);   /* the high-priority thread wakes up at any moment */
    }
    return 0;
}
int main(int argc, char **argv) {
    void *so = dlopen(argv[1], RTLD_NOW);
    if (!so) { puts(dlerror()); return 2; }
    byname2 = (byname2_t)dlsym(so, "_nss_ec2_gethostbyname2_r");
    cpu_set_t mine; CPU_ZERO(&mine);
    sched_getaffinity(0, sizeof mine, &mine);
    for (int c = 0; c < CPU_SETSIZE && cpu < 0; c++) if (CPU_ISSET(c, &mine)) cpu = c;
    pthread_t t[2];
    for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, loop, (void *)i);
    struct timespec run = { 1, 0 };
    nanosleep(&run, 0);
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    if (unpinned) { puts("cannot pin the threads to one CPU"); return 3; }
    if (denied) return 77;
    printf("%ld %ld\n", done[0], done[1]);
    return 0;
}
""")
    exe = tmp_path / "rt"
    subprocess.run(["cc", "-O2", "-pthread", "-o", str(exe), str(src), "-ldl"], check=True)
    # Both threads on the first CPU this process may use; the main thread, a normal one free to
    # run elsewhere, stops them after 1 s.
    r = subprocess.run([str(exe), os.path.join(LIBDIR, "libnss_ec2.so.2")], env=h.env(),
                       capture_output=True, text=True, timeout=30)
    if r.returncode == 77:
        pytest.skip("SCHED_FIFO not allowed here")
    assert r.returncode == 0, r.stdout + r.stderr
    low, high = map(int, r.stdout.split())
    assert low > 0 and high > 0, r.stdout


# --- 7. Small gaps ------------------------------------------------------------------------------

def test_a_generation_time_near_the_end_of_time_does_not_overflow_max_age(h):
    s = Snap(snapshot(h, "a", fleet_json(1)))
    s.set_header(generated=2**64 - 10, max_age=3600)
    d = private_dir(h.dir, "future")
    (d / "hosts.snap").write_bytes(s.bytes())
    # generated + max_age wrapped around to 3589 (1970): the snapshot looked stale (ESTALE).
    assert hosts(h, "web.g.ec2", d / "hosts.snap") == (0, ["10.1.0.0"])


def test_res_options_inet6_gethostbyname_and_gethostbyname2(h):
    """With RES_OPTIONS=inet6 (glibc's deprecated RES_USE_INET6), gethostbyname and
    gethostbyname2(AF_INET6) through glibc still get family-exact answers from the module: IPv4
    for gethostbyname (glibc 2.36 no longer maps it), the IPv6 addresses for AF_INET6, and
    "no data" for a name without IPv6 — never IPv4 addresses dressed as IPv6."""
    snapshot(h, "a", fleets(fleet_json(2, v6=1), fleet_json(1, group="v4", net="10.9")))
    code = """
import ctypes, json, socket
""" + HOSTENT + """libc.gethostbyname.restype = ctypes.POINTER(HostEnt)
libc.gethostbyname2.restype = ctypes.POINTER(HostEnt)
libc.__h_errno_location.restype = ctypes.POINTER(ctypes.c_int)
def show(p):
    if not p:
        return ["h_errno", libc.__h_errno_location().contents.value]
    e, out, i = p.contents, [], 0
    while e.h_addr_list[i]:
        out.append(socket.inet_ntop(e.h_addrtype, bytes(e.h_addr_list[i][:e.h_length])))
        i += 1
    return [e.h_name.decode(), e.h_addrtype, e.h_length, out]
print(json.dumps([show(libc.gethostbyname(b"web.g.ec2")),
                  show(libc.gethostbyname2(b"web.g.ec2", socket.AF_INET6)),
                  show(libc.gethostbyname2(b"1.v4.ec2", socket.AF_INET6)),
                  show(libc.gethostbyname2(b"1.v4.ec2", socket.AF_INET))]))
"""
    got = json.loads(run(code, h.env(RES_OPTIONS="inet6")).stdout)
    assert got == [
        ["web.g.ec2", 2, 4, ["10.1.0.0", "10.1.0.1"]],
        ["web.g.ec2", 10, 16, ["2001:db8:101::", "2001:db8:101:1::"]],
        ["h_errno", 4],  # NO_DATA
        ["1.v4.ec2", 2, 4, ["10.9.0.0"]],
    ], got
