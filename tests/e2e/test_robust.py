"""The daemon under crashes, full disks and odd data: never a lost or half snapshot, never a panic."""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from conftest import EC2CACHED

ROOT = Path(__file__).resolve().parents[2]


def gen(tmp, n, name):
    out = tmp / name
    with open(out, "w") as f:
        subprocess.run([sys.executable, str(ROOT / "bench/genfleet.py"), str(n)], stdout=f, check=True)
    return out


def instance(i, **kw):
    d = {"InstanceId": i, "State": {"Name": "running"}, "LaunchTime": "2024-01-01T00:00:00Z",
         "SecurityGroups": [{"GroupName": "tphon"}], "Tags": [], "PrivateIpAddress": "10.0.0.1"}
    d.update(kw)
    return d


def write_fleet(path, *reservations):
    path.write_text(json.dumps({"Reservations": [{"Instances": list(r)} for r in reservations]}))
    return path


def temps(host):
    return [p for p in host.dir.iterdir() if p.name.startswith(".hosts.snap.") and p.name.endswith(".tmp")]


def test_kill_9_during_publish_never_leaves_a_half_snapshot(host, tmp_path):
    # Two fleets told apart by the address of g0's first member (genfleet numbers from 10.0.0.0).
    a = gen(tmp_path, 20000, "a.json")
    b_doc = json.loads(a.read_text())
    b_doc["Reservations"][0]["Instances"][0]["PrivateIpAddress"] = "10.99.99.99"
    b = tmp_path / "b.json"
    b.write_text(json.dumps(b_doc))
    host.refresh("--from-file", str(a))
    t = time.monotonic()
    host.refresh("--from-file", str(b))
    took = time.monotonic() - t
    rng = random.Random(7)
    kills = 0
    for k in range(100):
        p = subprocess.Popen([EC2CACHED, "--config", str(host.config), "refresh", "--from-file", str(a if k % 2 else b)],
                             env=host.env(), stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, took * 1.2))
        p.kill()
        p.wait()
        kills += 1
        code, addrs, _ = host.ahosts("1.g0.ec2", "ahostsv4")
        assert code == 0 and addrs[0] in ("10.0.0.0", "10.99.99.99"), (k, code, addrs)
        assert len(temps(host)) <= 2, "temp files pile up (at most the killed run's snapshot and status)"
    host.refresh("--from-file", str(a))
    assert temps(host) == [], "the next run removes what killed runs left"
    assert host.ahosts("1.g0.ec2", "ahostsv4")[:2] == (0, ["10.0.0.0"])
    print(f"kills survived: {kills}, refresh of 20 000 took {took:.3f}s")


def test_full_disk_keeps_the_old_snapshot(host, tmp_path):
    small = write_fleet(tmp_path / "small.json", [instance("i-1", Tags=[{"Key": "services", "Value": "redis"}])])
    big = gen(tmp_path, 3000, "big.json")
    disk = tmp_path / "disk"
    disk.mkdir(mode=0o755)
    host.configure(snapshot=str(disk / "hosts.snap"))
    script = f"""
set -e
mount -t tmpfs -o size=96k,mode=0755 tmpfs {disk}
{EC2CACHED} --config {host.config} refresh --from-file {small}
cp {disk}/hosts.snap {tmp_path}/before.snap
if {EC2CACHED} --config {host.config} refresh --from-file {big} 2>{tmp_path}/err.txt; then echo published; else echo refused; fi
cmp {disk}/hosts.snap {tmp_path}/before.snap && echo same
ls -A {disk}
"""
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, env=host.env(), timeout=60)
    out = r.stdout.split()
    assert "refused" in out and "same" in out, (r.stdout, r.stderr)
    assert [x for x in out if x.endswith(".tmp")] == [], "no temp file left on the full disk"
    err = (tmp_path / "err.txt").read_text().strip().splitlines()[-1]
    assert "No space left on device" in err, err
    assert err.startswith("ec2cached: cannot publish"), err


def test_every_character_ec2_allows(fleet, host):
    # Tag values: letters, digits, spaces and + - = . _ : / @; group names add ( ) # , [ ] & ; { } ! $ *
    a = fleet.launch(groups=["Web (prod)/eu#1"], tags={"services": "a+b=c.d_e:f/g@h, Ünïcode", "k": ""})[0]
    host.configure(ready_tag="k=")
    host.refresh()
    assert host.hosts("web-prod-eu-1.ec2") == (0, [fleet.ipv4(a)])
    assert host.hosts("a-b-c.d-e-f-g-h.web-prod-eu-1.ec2") == (0, [fleet.ipv4(a)])
    assert host.hosts("1.n-code.web-prod-eu-1.ec2") == (0, [fleet.ipv4(a)])


def test_empty_values(fleet, host):
    a = fleet.launch(tags={"services": "", "af-status": ""})[0]
    host.configure(ready_tag="af-status=ready")
    host.refresh()
    assert host.hosts("tphon.ec2")[0] == 2, "empty ready tag is not ready"
    assert host.hosts(f"{a}.ec2")[0] == 0


def test_ten_thousand_services_on_one_instance(host, tmp_path):
    services = ", ".join(f"s{k}" for k in range(10000))
    f = write_fleet(tmp_path / "f.json", [instance("i-1", Tags=[{"Key": "services", "Value": services}])])
    r = host.refresh("--from-file", str(f))
    assert "published" in r.stderr and "20003 names" in r.stderr, r.stderr  # tphon, 1.tphon, 10 000 × (S, 1.S), i-1
    assert host.hosts("s9999.tphon.ec2") == (0, ["10.0.0.1"])
    assert host.hosts("1.s0.tphon.ec2") == (0, ["10.0.0.1"])
    code, lines, err = host.getent("hosts", "10.0.0.1")
    assert code == 0 and err == ""
    fields = lines[0].split()
    assert fields[1] == "i-1.ec2" and len(fields) == 2 + 1 + 10000, "every numbered name is an alias"


def test_duplicate_ids_across_pages(host, tmp_path):
    f = write_fleet(tmp_path / "f.json",
                    [instance("i-1", PrivateIpAddress="10.0.0.1")],
                    [instance("i-1", PrivateIpAddress="10.0.0.2"), instance("i-2", PrivateIpAddress="10.0.0.3")])
    r = host.refresh("--from-file", str(f))
    assert 'instance i-1: listed more than once' in r.stderr
    assert host.hosts("tphon.ec2") == (0, ["10.0.0.1", "10.0.0.3"])


def test_bad_json_is_refused(host, tmp_path):
    good = write_fleet(tmp_path / "g.json", [instance("i-1")])
    host.refresh("--from-file", str(good))
    before = host.snapshot.read_bytes()
    for text in ["", "{", "[]", "{}", '{"Reservations": 5}', '{"Reservations":[{"Instances":[{"InstanceId":"i-1","PrivateIpAddress":"999.1.1.1"}]}]}',
                 '{"Reservations":[{"Instances":[{"InstanceId":"i-1","LaunchTime":"yesterday"}]}]}']:
        (tmp_path / "bad.json").write_text(text)
        r = host.refresh("--from-file", str(tmp_path / "bad.json"), check=False)
        assert r.returncode == 1
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith(f"ec2cached: {tmp_path}/bad.json"), r.stderr
        assert host.snapshot.read_bytes() == before
