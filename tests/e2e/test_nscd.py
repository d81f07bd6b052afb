"""nscd in front of the module: it caches `ec2` answers for the refresh interval (the TTL the
module hands it) plus at most nscd's own prune period.

A private nscd (tools/with-nscd: Debian's, of the running glibc, with its own /run and an
nsswitch.conf of `hosts: ec2`) runs in a mount namespace; `getent ahostsv4` there is left on
nsswitch.conf, so glibc asks nscd first.
"""

import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Reads a line per lookup from stdin and answers with the addresses nscd gives (or "none").
SCRIPT = """\
echo started
while read -r name; do
    out=$(getent ahostsv4 "$name" | awk '{print $1}' | sort -u | tr '\\n' ' ')
    echo "${out:-none}"
done
"""


class Nscd:
    def __init__(self, host):
        (host.dir / "nsswitch.conf").write_text("hosts: ec2\n")
        self.p = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", str(ROOT / "tools/with-nscd"),
             str(host.dir / "nsswitch.conf"), "sh", "-c", SCRIPT],
            env=host.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "started"

    def lookup(self, name):
        self.p.stdin.write(name + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().split()

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def test_nscd_caches_ec2_names_for_the_interval_plus_its_prune_period(nscd_fetched, fleet, host):
    a = fleet.launch(tags={"services": "postgres"})[0]
    b = fleet.launch()[0]
    host.configure(interval=3)
    host.refresh()
    d = Nscd(host)
    try:
        assert d.lookup("postgres.tphon.ec2") == [fleet.ipv4(a)]
        fleet.untag(a, "services")
        fleet.tag(b, services="postgres")
        host.refresh()
        moved = time.monotonic()
        # The module alone now says b (a new process opens the new snapshot); nscd still has a.
        assert host.hosts("postgres.tphon.ec2") == (0, [fleet.ipv4(b)])
        assert d.lookup("postgres.tphon.ec2") == [fleet.ipv4(a)]
        # ... until the TTL the module handed it (the interval) has run out and nscd's prune
        # thread has run: it wakes at most every 15 s (CACHE_PRUNE_INTERVAL in glibc's nscd).
        seen = None
        while time.monotonic() - moved < 3 + 15 + 10:
            seen = d.lookup("postgres.tphon.ec2")
            if seen == [fleet.ipv4(b)]:
                break
            time.sleep(0.25)
        took = time.monotonic() - moved
        assert seen == [fleet.ipv4(b)], f"nscd still answers {seen} after {took:.1f} s"
        assert took < 3 + 15 + 5, f"nscd kept the old answer {took:.1f} s, interval 3 s"
        print(f"nscd answered the new address {took:.1f} s after the refresh (interval 3 s)")
        assert d.lookup("nosuch.tphon.ec2") == ["none"]
    finally:
        d.close()
