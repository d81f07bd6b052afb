"""The benchmark behind `bench/run`: nss-ec2 against /etc/hosts, DNS and the floor, in one run.

Everything is measured through the real glibc with `bench/lookup.c` (getaddrinfo in a loop,
p50/p99 per call), each source in its own process and mount namespace (its own /etc/hosts and
/etc/resolv.conf bind-mounted), on this machine, in this run. Writes docs/benchmarks.md.
"""

import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
STAGE = TARGET / "nss"
EC2CACHED = TARGET / "release" / "ec2cached"
SIZES = [int(x) for x in os.environ.get("BENCH_SIZES", "10 1000 10000 100000").split()]
ITER = int(os.environ.get("BENCH_ITER", "100000"))
HIT = "1.postgres.g1.ec2"  # one instance; exists at every size (genfleet: instance 1)
MISS = "nosuch.g1.ec2"
DNS_ADDR = "127.0.0.77"

work = Path(tempfile.mkdtemp(prefix="nss-ec2-bench."))
os.chmod(work, 0o755)


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def build_tools():
    sh("cc", "-O2", "-o", str(work / "lookup"), str(ROOT / "bench/lookup.c"), "-ldl")
    sh("cc", "-O2", "-shared", "-fPIC", "-o", str(work / "libnss_floor.so.2"), str(ROOT / "bench/floor.c"))


def in_ns(cmd, hosts=None, resolv=None, env=None):
    """Runs cmd in a private mount namespace with the given /etc/hosts and /etc/resolv.conf."""
    binds = ""
    if hosts:
        binds += f"mount --bind {hosts} /etc/hosts && "
    if resolv:
        binds += f"mount --bind {resolv} /etc/resolv.conf && "
    full = {**os.environ, "LD_LIBRARY_PATH": f"{STAGE}:{work}", **(env or {})}
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", binds + 'exec "$@"', "sh", *cmd],
                       capture_output=True, text=True, env=full, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd}: {r.stderr}")
    return r.stdout


def lookup(services, name, n, family="unspec", warm=False, **ns):
    args = [str(work / "lookup"), services, name, str(n), family] + (["warm"] if warm else [])
    out = in_ns(args, **ns)
    d = dict(kv.split("=") for kv in out.split())
    return {k: int(v) for k, v in d.items()}


def memory(snapshot):
    """Private dirty memory a process gains by loading the module and resolving 1000 times."""
    code = r'''
import ctypes, re, socket, sys
def rollup():
    t = open("/proc/self/smaps_rollup").read()
    return {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", t, re.M)}
libc = ctypes.CDLL(None)
libc.__nss_configure_lookup(b"hosts", b"files")
socket.getaddrinfo("localhost", None)
before = rollup()
libc.__nss_configure_lookup(b"hosts", b"ec2")
for _ in range(1000):
    socket.getaddrinfo(sys.argv[1], None)
after = rollup()
mapped = 0
for l in open("/proc/self/maps"):
    if l.rstrip().endswith("hosts.snap"):
        a, b = (int(x, 16) for x in l.split()[0].split("-"))
        mapped += b - a
print(after["Private_Dirty"] - before["Private_Dirty"], mapped // 1024, after["Rss"] - before["Rss"])
'''
    out = in_ns([sys.executable, "-c", code, HIT], env={"NSS_EC2_SNAPSHOT": str(snapshot)})
    dirty, mapped, rss = map(int, out.split())
    return dirty, mapped, rss


def refresh(n):
    d = work / f"s{n}"
    d.mkdir(mode=0o755)
    fleet = d / "fleet.json"
    with open(fleet, "w") as f:
        subprocess.run([sys.executable, str(ROOT / "bench/genfleet.py"), str(n)], stdout=f, check=True)
    cfg = d / "ec2cached.toml"
    cfg.write_text(f'snapshot = "{d}/hosts.snap"\nready_tag = "af-status=ready"\n')
    t = time.monotonic()
    p = subprocess.Popen([str(EC2CACHED), "--config", str(cfg), "refresh", "--from-file", str(fleet)],
                         stderr=subprocess.PIPE, text=True)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t
    err = p.stderr.read()
    if status != 0:
        raise RuntimeError(err)
    names = int(re.search(r"(\d+) names", err).group(1))
    snap = d / "hosts.snap"
    # The same names for files and DNS: one line per name, its first address.
    enum = in_ns(["getent", "-s", "hosts:ec2", "hosts"], env={"NSS_EC2_SNAPSHOT": str(snap)})
    first = {}
    for line in enum.splitlines():
        addr, name = line.split()[:2]
        if ":" not in addr:
            first.setdefault(name, addr)
    hosts = d / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in first.items()))
    return {
        "n": n, "dir": d, "snap": snap, "hosts": hosts, "names": names,
        "wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024,
        "size": snap.stat().st_size,
    }


def start_dnsmasq(hosts):
    p = subprocess.Popen(["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                          f"--addn-hosts={hosts}", f"--listen-address={DNS_ADDR}", "--bind-interfaces",
                          "--port=53", "--local=/ec2/", "--cache-size=10000", "--user=root"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)  # dnsmasq binds before it reads its hosts file; it exits at once on error
    if p.poll() is not None:
        raise RuntimeError(p.stderr.read().decode())
    return p


def main():
    build_tools()
    resolv = work / "resolv.conf"
    resolv.write_text(f"nameserver {DNS_ADDR}\noptions timeout:1 attempts:1\n")
    hosts10 = work / "hosts10"
    hosts10.write_text("127.0.0.1 localhost\n" + "".join(f"10.9.0.{i} h{i}.example\n" for i in range(1, 9))
                       + f"10.0.0.1 {HIT}\n")
    rows = []
    base = {}
    base["files10"] = lookup("files", HIT, ITER, hosts=hosts10)
    base["files10_inet"] = lookup("files", HIT, ITER, "inet", hosts=hosts10)
    base["floor"] = lookup("floor", HIT, ITER)
    base["floor_cold"] = min(lookup("floor", HIT, 10, warm=True)["first_ns"] for _ in range(5))
    fleets = [refresh(n) for n in SIZES]
    for f in fleets:
        env = {"NSS_EC2_SNAPSHOT": str(f["snap"])}
        r = {"fleet": f}
        r["ec2"] = lookup("ec2", HIT, ITER, env=env)
        r["ec2_inet"] = lookup("ec2", HIT, ITER, "inet", env=env)
        r["ec2_miss"] = lookup("ec2", MISS, ITER, env=env)
        r["ec2_cold"] = min(lookup("ec2", HIT, 10, warm=True, env=env)["first_ns"] for _ in range(5))
        fn = max(20, min(ITER, ITER * 10 // max(f["names"], 1)))
        r["files"] = lookup("files", HIT, fn, hosts=f["hosts"])
        r["files_miss"] = lookup("files", MISS, fn, hosts=f["hosts"])
        dns = start_dnsmasq(f["hosts"])
        try:
            dn = max(200, ITER // 20)
            r["dns"] = lookup("dns", HIT, dn, resolv=resolv)
            r["dns_miss"] = lookup("dns", MISS, dn, resolv=resolv)
        finally:
            dns.terminate()
            dns.wait()
        r["mem"] = memory(f["snap"])
        rows.append(r)
    report(base, rows)


def us(ns):
    return f"{ns / 1000:.2f}"


def report(base, rows):
    f10 = base["files10"]["p50_ns"]
    floor = base["floor"]["p50_ns"]
    so = STAGE / "libnss_ec2.so.2"
    stripped = work / "stripped.so"
    shutil.copy(so, stripped)
    sh("strip", str(stripped))
    needed = re.findall(r"NEEDED.*\[(.*)\]", sh("readelf", "-d", str(so)).stdout)
    lines = []
    w = lines.append
    w("# Benchmarks")
    w("")
    w("Made by `bench/run` (one run, one machine; absolute times drift between runs, ratios hold better).")
    w("")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    glibc = sh("ldd", "--version").stdout.splitlines()[0]
    w(f"- machine: {cpu}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB;"
      f" kernel {platform.release()}; {glibc}")
    w(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {ITER} lookups per figure (fewer for big /etc/hosts and DNS)")
    w(f"- query: `{HIT}` (one instance), miss `{MISS}`; getaddrinfo AF_UNSPEC unless marked AF_INET")
    w("")
    w("## Baselines")
    w("")
    w("| source | p50 µs | p99 µs |")
    w("|---|---:|---:|")
    w(f"| `files`, 10 names | {us(f10)} | {us(base['files10']['p99_ns'])} |")
    w(f"| `files`, 10 names, AF_INET | {us(base['files10_inet']['p50_ns'])} | {us(base['files10_inet']['p99_ns'])} |")
    w(f"| floor (a C module answering a constant) | {us(floor)} | {us(base['floor']['p99_ns'])} |")
    w("")
    w("## Lookups by fleet size (p50 / p99 µs)")
    w("")
    w("| instances | names | ec2 hit | ec2 AF_INET | ec2 miss | files hit | files miss | DNS hit | DNS miss | ec2 ÷ files@10 | ec2 ÷ floor | ec2 ÷ DNS |")
    w("|---:|---:|---|---|---|---|---|---|---|---:|---:|---:|")
    for r in rows:
        f = r["fleet"]
        pp = lambda k: f"{us(r[k]['p50_ns'])} / {us(r[k]['p99_ns'])}"
        e = r["ec2"]["p50_ns"]
        w(f"| {f['n']} | {f['names']} | {pp('ec2')} | {pp('ec2_inet')} | {pp('ec2_miss')} | {pp('files')} | {pp('files_miss')} "
          f"| {pp('dns')} | {pp('dns_miss')} | {e / f10:.2f} | {e / floor:.2f} | {e / r['dns']['p50_ns']:.3f} |")
    w("")
    e10, emax = rows[0]["ec2"]["p50_ns"], rows[-1]["ec2"]["p50_ns"]
    w(f"Flatness: ec2 p50 at {rows[-1]['fleet']['n']} ÷ at {rows[0]['fleet']['n']} instances = {emax / e10:.2f}.")
    w("")
    w("## A new process's first lookup")
    w("")
    w("`lookup … warm`: the module is already loaded and glibc's resolver warmed by a `files` lookup, so the")
    w("first call measures only the module's first use (open, trust checks, mmap, page faults of the pages it")
    w("touches). Best of 5 processes.")
    w("")
    w("| instances | ec2 first lookup µs | ec2 steady p50 µs | cold ÷ steady | floor first µs | (ec2 − floor) first µs |")
    w("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        c, s = r["ec2_cold"], r["ec2"]["p50_ns"]
        w(f"| {r['fleet']['n']} | {us(c)} | {us(s)} | {c / s:.1f} | {us(base['floor_cold'])} | {us(c - base['floor_cold'])} |")
    w("")
    w("## Memory per process")
    w("")
    w("| instances | private dirty added (KiB) | RSS added (KiB) | snapshot mapped (KiB) |")
    w("|---:|---:|---:|---:|")
    for r in rows:
        d, m, rss = r["mem"]
        w(f"| {r['fleet']['n']} | {d} | {rss} | {m} |")
    w("")
    w("## The daemon: `ec2cached refresh --from-file`")
    w("")
    w("| instances | wall s | CPU s | peak RSS MB | snapshot bytes |")
    w("|---:|---:|---:|---:|---:|")
    for r in rows:
        f = r["fleet"]
        w(f"| {f['n']} | {f['wall']:.2f} | {f['cpu']:.2f} | {f['rss_mb']:.0f} | {f['size']} |")
    w("")
    w("## The module")
    w("")
    w(f"- `libnss_ec2.so.2`: {so.stat().st_size} bytes, {stripped.stat().st_size} stripped; NEEDED: {', '.join(needed)}")
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "docs" / "benchmarks.md"
    out.write_text(text)
    print(f"written to {out}")


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(work, ignore_errors=True)
