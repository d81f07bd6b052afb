"""Snapshot files for the module's tests: fleets as `describe-instances` JSON (for
`ec2cached refresh --from-file`), and hostile rewrites of a real snapshot's records (layout:
snapshot/src/format.rs), header re-sealed so that the module reads past its checks.

Also a generator of hostile files of a given size, for measuring the module's worst case:

    python3 tests/e2e/snapfile.py SNAPSHOT SHAPE OUT

rewrites SNAPSHOT (made by `ec2cached refresh --from-file` from `fleet_json`) into OUT, SHAPE one
of `SHAPES`.
"""

import json
import struct
import sys

# Section index and record size (snapshot/src/format.rs).
SECTIONS = {"strings": (0, 1), "names": (1, 16), "members": (2, 4), "instances": (3, 32),
            "ipv6": (4, 16), "aliases": (5, 4), "hash": (6, 4), "rev4": (7, 8), "rev6": (8, 20)}


def fnv1a(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


class Snap:
    """A snapshot's bytes with helpers to read and rewrite its records."""

    def __init__(self, data):
        self.b = bytearray(data)

    def get32(self, at):
        return struct.unpack_from("<I", self.b, at)[0]

    def put32(self, at, v):
        struct.pack_into("<I", self.b, at, v)

    def section(self, name):
        k, _ = SECTIONS[name]
        return self.get32(64 + 8 * k), self.get32(64 + 8 * k + 4)

    def count(self, name):
        return self.section(name)[1] // SECTIONS[name][1]

    def record(self, name, i):
        return self.section(name)[0] + i * SECTIONS[name][1]

    def set_names(self, first, count):
        """Every name's member range."""
        for i in range(self.count("names")):
            self.put32(self.record("names", i) + 8, first)
            self.put32(self.record("names", i) + 12, count)

    def set_ipv6(self, first, count):
        """Every instance's IPv6 range."""
        for i in range(self.count("instances")):
            self.put32(self.record("instances", i) + 12, first)
            self.put32(self.record("instances", i) + 16, count)

    def set_header(self, generated=None, max_age=None):
        if generated is not None:
            struct.pack_into("<Q", self.b, 24, generated)
        if max_age is not None:
            self.put32(36, max_age)
        self.seal()

    def seal(self):
        struct.pack_into("<Q", self.b, 152, fnv1a(bytes(self.b[:152])))

    def bytes(self):
        return bytes(self.b)


def resign(data, secret_path, fleet, generated=None, max_age=None, unbound=False):
    """DATA (a signed or unsigned snapshot) signed again with the `keygen` secret at SECRET_PATH
    for FLEET, written here from docs/snapshot-format.md ("Signed snapshots") and not from the
    Rust code, after setting its sweep time and max_age. UNBOUND: the first trailer (magic
    SIG1, no fleet), as pollers before fleet identities signed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = bytes.fromhex(open(secret_path).read().strip().split(":", 1)[1])
    key = Ed25519PrivateKey.from_private_bytes(seed)
    s = Snap(data)
    off = s.get32(136)
    if off:
        s.b = s.b[:off]
    s.put32(136, 0)
    s.put32(140, 0)
    s.set_header(generated, max_age)
    n = len(s.b)
    fleet = fleet.encode()
    tlen = 104 if unbound else 106 + len(fleet)
    struct.pack_into("<Q", s.b, 16, n + tlen)
    s.put32(136, n)
    s.put32(140, tlen)
    s.seal()
    if unbound:
        msg = bytes(s.b)
        tail = b"\x89EC2SIG1"
    else:
        msg = bytes(s.b) + b"\x89EC2SIG2" + struct.pack("<H", len(fleet)) + fleet
        tail = b""
    pub = key.public_key().public_bytes_raw()
    return msg + tail + pub + key.sign(msg)


def fleet_json(n, group="g", service="web", net="10.1", v6=0):
    """`describe-instances` JSON: n running instances in GROUP listing SERVICE, private IPv4
    NET.x.y, and `v6` IPv6 addresses each (2001:db8:NET:i::k)."""
    instances = []
    tag = net.replace(".", "")
    for i in range(n):
        nic = {"Attachment": {"DeviceIndex": 0},
               "Ipv6Addresses": [{"Ipv6Address": f"2001:db8:{tag}:{i & 0xffff:x}::{k:x}"}
                                 for k in range(v6)]}
        instances.append({
            "InstanceId": f"i-{tag}{i:013x}", "State": {"Name": "running"},
            "LaunchTime": f"2024-01-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
            "SecurityGroups": [{"GroupName": group}],
            "Tags": [{"Key": "services", "Value": service}],
            "PrivateIpAddress": f"{net}.{(i >> 8) & 255}.{i & 255}",
            "NetworkInterfaces": [nic],
        })
    return json.dumps({"Reservations": [{"Instances": instances}]})


def fleets(*docs):
    """One `describe-instances` document of several `fleet_json` ones (distinct `net`s)."""
    return json.dumps({"Reservations": [r for d in docs for r in json.loads(d)["Reservations"]]})


def hostile(data, shape):
    """One of SHAPES applied to a snapshot's bytes."""
    s = Snap(data)
    members, instances, v6 = s.count("members"), s.count("instances"), s.count("ipv6")
    if shape == "members-overlap":          # every name: every member record
        s.set_names(0, members)
    elif shape == "members-per-instance":   # every name: as many members as instances
        s.set_names(0, instances)
    elif shape == "ipv6-overlap":           # every instance: every IPv6 address
        s.set_ipv6(0, v6)
    elif shape == "ipv6-cap":               # every instance: the first 64
        s.set_ipv6(0, min(v6, 64))
    elif shape == "both":
        s.set_names(0, instances)
        s.set_ipv6(0, min(v6, 64))
    else:
        raise ValueError(shape)
    return s.bytes()


SHAPES = ["members-overlap", "members-per-instance", "ipv6-overlap", "ipv6-cap", "both"]

if __name__ == "__main__":
    src, shape, out = sys.argv[1:4]
    with open(src, "rb") as f:
        data = f.read()
    with open(out, "wb") as f:
        f.write(hostile(data, shape))
