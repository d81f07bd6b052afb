"""Every row of spec/names.md, through moto, the real ec2cached and the real module."""

import socket
import subprocess

import pytest

READY = {"af-status": "ready"}


def seed(fleet):
    """The seed's fleet: tphon with three redis, a postgres primary, a readonly.postgres replica,
    one instance still provisioning; a search group; one stopped instance."""
    f = {}
    f["redis"] = [fleet.launch(tags={**READY, "services": "redis"})[0] for _ in range(3)]
    f["primary"] = fleet.launch(tags={**READY, "services": "postgres"})[0]
    f["replica"] = fleet.launch(tags={**READY, "services": "readonly.postgres"})[0]
    f["provisioning"] = fleet.launch(tags={"services": "redis"})[0]
    f["search"] = fleet.launch(groups=["Airavata Search"], tags=READY)[0]
    f["stopped"] = fleet.launch(tags={**READY, "services": "redis"})[0]
    fleet.ec2.stop_instances(InstanceIds=[f["stopped"]])
    return f


@pytest.fixture
def seeded(fleet, host):
    f = seed(fleet)
    host.configure(ready_tag="af-status=ready")
    host.refresh()
    return f


def v4(fleet, ids):
    return [fleet.ipv4(i) for i in fleet.ordered(ids)]


def test_groups_services_and_numbered_names(fleet, host, seeded):
    f = seeded
    tphon = f["redis"] + [f["primary"], f["replica"]]
    assert host.hosts("tphon.ec2") == (0, v4(fleet, tphon))
    assert host.hosts("redis.tphon.ec2") == (0, v4(fleet, f["redis"]))
    for n, addr in enumerate(v4(fleet, f["redis"]), 1):
        assert host.hosts(f"{n}.redis.tphon.ec2") == (0, [addr])
    assert host.hosts("4.redis.tphon.ec2") == (2, [])
    assert host.hosts("postgres.tphon.ec2") == (0, [fleet.ipv4(f["primary"])])
    assert host.hosts("1.postgres.tphon.ec2") == (0, [fleet.ipv4(f["primary"])])
    replica = [fleet.ipv4(f["replica"])]
    assert host.hosts("readonly.postgres.tphon.ec2") == (0, replica)
    assert host.hosts("1.readonly.postgres.tphon.ec2") == (0, replica)
    assert host.hosts("airavata-search.ec2") == (0, [fleet.ipv4(f["search"])])
    assert host.hosts("1.airavata-search.ec2") == (0, [fleet.ipv4(f["search"])])


def test_readiness_and_liveness(fleet, host, seeded):
    f = seeded
    prov = fleet.ipv4(f["provisioning"])
    assert prov not in host.hosts("tphon.ec2")[1]
    assert prov not in host.hosts("redis.tphon.ec2")[1]
    # Live but not ready: still reachable by instance id.
    assert host.hosts(f"{f['provisioning']}.ec2") == (0, [prov])
    assert host.hosts(f"{f['stopped']}.ec2") == (2, [])
    assert fleet.ipv4(f["stopped"]) not in host.hosts("redis.tphon.ec2")[1]


def test_case_insensitive_with_one_trailing_dot(fleet, host, seeded):
    want = [fleet.ipv4(seeded["primary"])]
    assert host.hosts("Postgres.TPHON.ec2.") == (0, want)
    assert host.hosts("POSTGRES.tphon.EC2") == (0, want)
    code, lines, _ = host.getent("hosts", "Postgres.TPHON.ec2.")
    assert lines[0].split()[1] == "postgres.tphon.ec2", "canonical name is the stored one"
    assert host.hosts("postgres.tphon.ec2..")[0] == 2


def test_listing_is_explicit(fleet, host, seeded):
    assert fleet.ipv4(seeded["replica"]) not in host.hosts("postgres.tphon.ec2")[1]
    # Tagging it with both puts it in both.
    fleet.tag(seeded["replica"], services="postgres, readonly.postgres")
    host.refresh()
    both = v4(fleet, [seeded["primary"], seeded["replica"]])
    assert host.hosts("postgres.tphon.ec2") == (0, both)


def test_services_tag_separators_and_custom_key(fleet, host):
    a = fleet.launch(tags={"roles": "web,\tapi  cache"})[0]
    host.configure(service_tag="roles")
    host.refresh()
    for s in ("web", "api", "cache"):
        assert host.hosts(f"{s}.tphon.ec2") == (0, [fleet.ipv4(a)])


def test_security_groups_filter(fleet, host):
    a = fleet.launch(groups=["tphon", "ssh-access"])[0]
    b = fleet.launch(groups=["other"])[0]
    host.configure(security_groups=["tphon"])
    host.refresh()
    assert host.hosts("tphon.ec2") == (0, [fleet.ipv4(a)])
    assert host.hosts("ssh-access.ec2")[0] == 2
    assert host.hosts("other.ec2")[0] == 2
    assert host.hosts(f"{b}.ec2")[0] == 2, "not polled: outside the configured groups"


def test_launch_order_is_time_then_id(host, tmp_path):
    # Launch times under our control: the JSON that `aws ec2 describe-instances` prints.
    def inst(i, t, ip):
        return (
            f'{{"InstanceId":"{i}","State":{{"Name":"running"}},"LaunchTime":"{t}",'
            f'"SecurityGroups":[{{"GroupName":"g"}}],"PrivateIpAddress":"{ip}"}}'
        )

    doc = (
        '{"Reservations":[{"Instances":['
        + ",".join(
            [
                inst("i-0c", "2024-01-01T00:00:03Z", "10.0.0.3"),
                inst("i-0b", "2024-01-01T00:00:01Z", "10.0.0.2"),
                inst("i-0a", "2024-01-01T00:00:01Z", "10.0.0.1"),
                inst("i-09", "2024-01-01T00:00:02+00:00", "10.0.0.9"),
            ]
        )
        + "]}]}"
    )
    j = tmp_path / "fleet.json"
    j.write_text(doc)
    host.refresh("--from-file", str(j))
    assert host.hosts("g.ec2") == (0, ["10.0.0.1", "10.0.0.2", "10.0.0.9", "10.0.0.3"])
    assert host.hosts("1.g.ec2") == (0, ["10.0.0.1"])
    assert host.hosts("4.g.ec2") == (0, ["10.0.0.3"])


def test_skipped_labels_and_collisions_are_reported_once(fleet, host):
    fleet.launch(groups=["Airavata Search", "!!!", "tphon"], tags={"services": "1, ok, a..b, " + "x" * 64})
    fleet.launch(groups=["airavata-search"])
    r = host.refresh()
    err = r.stderr
    assert err.count('group \\"Airavata Search\\"') + err.count('group "Airavata Search"') == 1, err
    assert "taken by group" in err
    assert "empty label" in err
    assert "would clash with numbered names" in err
    assert "over 63" in err
    assert host.hosts("ok.airavata-search.ec2")[0] == 2, "the losing group's services are not published"
    st = host.ec2cached("status", check=False).stdout
    assert "not published:" in st


def test_ipv6_from_the_primary_interface(fleet, host):
    a = fleet.launch(tags={"services": "web"}, ipv6=True)[0]
    b = fleet.launch(tags={"services": "web"})[0]
    host.refresh()
    v6 = fleet.ipv6(a)
    assert v6, "moto gave the instance an IPv6 address"
    order = fleet.ordered([a, b])
    code, addrs, _ = host.ahosts("web.tphon.ec2", "ahostsv6")
    assert code == 0 and v6[0] in addrs
    code, addrs, _ = host.ahosts("web.tphon.ec2", "ahostsv4")
    assert code == 0 and addrs == [fleet.ipv4(i) for i in order]
    # getent hosts asks IPv6 first and prints that family only.
    assert host.hosts(f"{a}.ec2") == (0, v6)
    assert host.hosts(f"{b}.ec2") == (0, [fleet.ipv4(b)])
    # AF_UNSPEC through gethostbyname4_r gives both families.
    code, lines, _ = host.getent("-A", "ahosts", f"{a}.ec2")
    got = {l.split()[0] for l in lines}
    assert got == {fleet.ipv4(a), v6[0]}


def test_no_data_versus_no_name(fleet, host):
    a = fleet.launch()[0]
    host.refresh()
    r = host.python(
        "def err(name, fam):\n"
        "    try:\n"
        "        socket.getaddrinfo(name, None, fam)\n"
        "        return 0\n"
        "    except socket.gaierror as e:\n"
        "        return e.errno\n"
        f"print(err('{a}.ec2', socket.AF_INET6), err('nosuch.tphon.ec2', socket.AF_INET6),"
        f" err('{a}.ec2', socket.AF_INET))\n"
    )
    assert r.returncode == 0, r.stderr
    nodata, noname, ok = map(int, r.stdout.split())
    assert nodata == -5, "EAI_NODATA: the name exists, it has no IPv6"
    assert noname == -2, "EAI_NONAME: no such name"
    assert ok == 0


def test_public_address(fleet, host):
    inside = fleet.launch()[0]  # VPC subnet: no public IPv4
    r = fleet.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
    outside = r["Instances"][0]["InstanceId"]
    public = fleet.describe([outside])[outside]["PublicIpAddress"]
    host.configure(address="public")
    host.refresh()
    assert host.hosts(f"{outside}.ec2") == (0, [public])
    assert host.ahosts(f"{inside}.ec2", "ahostsv4")[0] == 2, "no public IPv4: no A"


def test_reverse_lookups(fleet, host, seeded):
    f = seeded
    order = fleet.ordered(f["redis"])
    first = order[0]
    code, lines, err = host.getent("hosts", fleet.ipv4(first))
    assert code == 0 and err == ""
    fields = lines[0].split()
    assert fields[0] == fleet.ipv4(first)
    assert fields[1] == f"{first}.ec2"
    tphon_pos = fleet.ordered(f["redis"] + [f["primary"], f["replica"]]).index(first) + 1
    assert set(fields[2:]) == {f"{tphon_pos}.tphon.ec2", "1.redis.tphon.ec2"}
    # Not ready: canonical name only.
    code, lines, _ = host.getent("hosts", fleet.ipv4(f["provisioning"]))
    assert lines[0].split()[1:] == [f"{f['provisioning']}.ec2"]
    # An address that is not ours is UNAVAIL: the next source answers it.
    assert host.getent("hosts", "10.99.99.99")[0] == 2
    code, lines, _ = host.getent("hosts", "127.0.0.1", services="ec2 [NOTFOUND=return] files")
    assert code == 0 and "localhost" in lines[0]


def test_reverse_ipv6(fleet, host):
    a = fleet.launch(tags={"services": "web"}, ipv6=True)[0]
    host.refresh()
    v6 = fleet.ipv6(a)[0]
    code, lines, _ = host.getent("hosts", v6)
    assert code == 0
    assert lines[0].split()[1:] == [f"{a}.ec2", "1.tphon.ec2", "1.web.tphon.ec2"]


def test_enumeration_lists_every_name(fleet, host, seeded):
    code, lines, err = host.getent("hosts")
    assert code == 0 and err == ""
    names = {l.split()[1] for l in lines}
    for n in ("tphon.ec2", "redis.tphon.ec2", "3.redis.tphon.ec2", "postgres.tphon.ec2",
              "1.readonly.postgres.tphon.ec2", "airavata-search.ec2", f"{seeded['provisioning']}.ec2"):
        assert n in names, n
    assert f"{seeded['stopped']}.ec2" not in names
    # One line per address: a group of 5 prints 5 lines.
    assert sum(1 for l in lines if l.split()[1] == "tphon.ec2") == 5


def test_another_language_resolves(fleet, host, seeded):
    want = fleet.ipv4(seeded["primary"])
    r = host.python(
        "print(socket.getaddrinfo('postgres.tphon.ec2', 5432, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])\n"
        "print(socket.gethostbyname('1.postgres.tphon.ec2'))\n"
        f"print(socket.gethostbyaddr('{want}')[0])\n"
        "print(socket.getaddrinfo('postgres.tphon.ec2', None, 0, 0, 0, socket.AI_CANONNAME)[0][3])\n"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [want, want, f"{seeded['primary']}.ec2", "postgres.tphon.ec2"]


def test_zone_discipline(fleet, host, seeded, tmp_path):
    """UNAVAIL outside the domain, NOTFOUND inside: `files ec2 [NOTFOUND=return] dns` is safe."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.9.9.9 nosuch.tphon.ec2\n10.8.8.8 other.example ec2\n")

    def ns(*args, services):
        cmd = ["getent", "-s", f"hosts:{services}", *args]
        r = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f'mount --bind {hosts} /etc/hosts && exec "$@"', "sh", *cmd],
            env=host.env(), capture_output=True, text=True, timeout=30,
        )
        return r.returncode, r.stdout.split()

    guarded = "ec2 [NOTFOUND=return] files"
    assert ns("hosts", "other.example", services=guarded)[1][:2] == ["10.8.8.8", "other.example"]
    assert ns("hosts", "ec2", services=guarded)[0] == 0, "the bare domain is not ours"
    assert ns("hosts", "nosuch.tphon.ec2", services=guarded)[0] == 2, "in-zone miss stops there"
    assert ns("hosts", "nosuch.tphon.ec2", services="ec2 files")[1][0] == "10.9.9.9"
    # Out of zone is UNAVAIL, not NOTFOUND:
    assert ns("hosts", "other.example", services="ec2 [UNAVAIL=return] files")[0] == 2
    assert ns("ahosts", "other.example", services=guarded)[0] == 0


def test_missing_or_unusable_snapshot_is_unavail_and_silent(fleet, host, tmp_path):
    for setup in ("missing", "garbage", "empty", "directory"):
        snap = tmp_path / setup / "hosts.snap"
        snap.parent.mkdir()
        if setup == "garbage":
            snap.write_bytes(b"\x89EC2SNAP" + b"\xff" * 500)
        elif setup == "empty":
            snap.write_bytes(b"")
        elif setup == "directory":
            snap.mkdir()
        env = host.env(NSS_EC2_SNAPSHOT=str(snap))
        code, lines, err = host.getent("hosts", "x.tphon.ec2", env=env)
        assert (code, err) == (2, ""), setup
        code, lines, err = host.getent("hosts", "localhost", services="ec2 files", env=env)
        assert code == 0 and err == "", setup
        code, _, _ = host.getent("hosts", "localhost", services="ec2 [UNAVAIL=return] files", env=env)
        assert code == 2, f"{setup}: answered UNAVAIL"


def test_max_age(fleet, host):
    import time

    fleet.launch()
    host.configure(max_age=2, interval=1)  # max_age may not be below 2 × interval
    host.refresh()
    assert host.hosts("tphon.ec2")[0] == 0
    time.sleep(3.5)
    assert host.hosts("tphon.ec2")[0] == 2
    code, _, _ = host.getent("hosts", "localhost", services="ec2 [UNAVAIL=return] files")
    assert code == 2, "expired is UNAVAIL"
    assert "expired" in host.ec2cached("status", check=False).stdout
