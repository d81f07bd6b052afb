"""Zones, AND-names and many accounts (spec/names.md part 2: "Zones", "Names by several
conditions", "Many accounts and regions"), through moto, the real ec2cached and the real module.

Accounts on moto: the host's own (moto's default, 123456789012) and others reached through
AssumeRole: moto hands back credentials that act in the role's account, whether or not the role
exists. Every fleet has its own address block, so an address says which instance answered.
"""

import json
import re
import signal
import subprocess
import time

import boto3
import pytest

from conftest import EC2CACHED, Host
from ec2fleet import AMI, Fleet
from faultproxy import FaultProxy

PROD = "111122223333"  # a role account, labelled "prod"
OTHER = "444455556666"  # a role account, unlabelled: merges with the host's
REGIONS = ["us-east-1", "eu-west-1"]
READY = {"af-status": "ready"}


def role(acct):
    return f"arn:aws:iam::{acct}:role/ec2cached-read"


def aws(moto_url, service, region, acct=None):
    """A boto3 client acting in the host's account, or (acct) in another through AssumeRole."""
    creds = dict(aws_access_key_id="testing", aws_secret_access_key="testing")
    if acct:
        sts = boto3.client("sts", endpoint_url=moto_url, region_name="us-east-1", **creds)
        c = sts.assume_role(RoleArn=f"arn:aws:iam::{acct}:role/setup", RoleSessionName="setup")
        c = c["Credentials"]
        creds = dict(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                     aws_session_token=c["SessionToken"])
    return boto3.client(service, endpoint_url=moto_url, region_name=region, **creds)


def fleet_in(moto_url, region, acct=None, **kw):
    return Fleet(aws(moto_url, "ec2", region, acct), **kw)


def write_config(host, body, **top):
    """The config: top-level keys (snapshot and regions by default), then TOML tables."""
    top.setdefault("snapshot", str(host.snapshot))
    top.setdefault("regions", REGIONS)
    host.config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in top.items()) + body)


class World:
    """Instances across fleets: id -> (fleet, description)."""

    def __init__(self):
        self.where = {}

    def launch(self, fleet, **kw):
        i = fleet.launch(**kw)[0]
        self.where[i] = fleet
        return i

    def add(self, fleet, ids):
        for i in ids:
            self.where[i] = fleet

    def desc(self, i):
        return self.where[i].describe([i])[i]

    def ip(self, i):
        return self.desc(i)["PrivateIpAddress"]

    def ordered(self, ids):
        """The contract's order across accounts and regions: launch time, then id."""
        d = {i: self.desc(i) for i in ids}
        return sorted(ids, key=lambda i: (d[i]["LaunchTime"], i))

    def ips(self, ids):
        return [self.ip(i) for i in self.ordered(ids)]


def assert_set(host, name, want_ips):
    """NAME resolves to exactly these addresses in this order, and N.NAME to each of them."""
    assert host.hosts(name) == (0, want_ips), name
    for n, a in enumerate(want_ips, 1):
        assert host.hosts(f"{n}.{name}") == (0, [a]), f"{n}.{name}"
    assert host.hosts(f"{len(want_ips) + 1}.{name}")[0] == 2, f"{len(want_ips) + 1}.{name}"


def not_published_lines(text):
    return [l for l in text.splitlines() if "not published" in l]


# 1. A config from the spec alone: every zone key, an AND-name, three accounts in two regions.

ZONES = """
[[zone]]
key = "security-group"
services = true

[[zone]]
key = "tag:Name"
under = "name"

[[zone]]
key = "az"
under = "az"

[[zone]]
key = "vpc"
under = "vpc"

[[zone]]
key = "region"
under = "region"

[[zone]]
key = "tag:team"
under = ""
services = true

[[zone]]
key = "asg"
under = "asg"

[[name]]
name = "web.prod"
match = ["tag:role=web", "tag:env=prod", "security-group=frontend"]
"""

ACCOUNTS = f"""
[[account]]

[[account]]
role_arn = "{role(OTHER)}"
regions = ["eu-west-1"]

[[account]]
role_arn = "{role(PROD)}"
label = "prod"
"""


def test_zones_and_names_across_accounts_and_regions(ec2, host, moto_url):
    w = World()
    host_us = Fleet(ec2, cidr="10.1.0.0/16", az="us-east-1a")
    host_eu = fleet_in(moto_url, "eu-west-1", cidr="10.2.0.0/16", az="eu-west-1b")
    other_eu = fleet_in(moto_url, "eu-west-1", OTHER, cidr="10.3.0.0/16", az="eu-west-1a")
    prod_us = fleet_in(moto_url, "us-east-1", PROD, cidr="10.4.0.0/16", az="us-east-1a")
    prod_eu = fleet_in(moto_url, "eu-west-1", PROD, cidr="10.5.0.0/16", az="eu-west-1c")
    web = {**READY, "role": "web", "team": "shop"}

    # Launched in waves a second apart (moto's launch times are whole seconds), so that launch
    # order is not the order in which accounts and regions are swept.
    o1 = w.launch(other_eu, groups=["frontend"], tags={**web, "Name": "Web 04", "env": "prod"})
    time.sleep(1.1)
    a4 = w.launch(host_eu, groups=["frontend"],
                  tags={**web, "Name": "web-03", "env": "prod", "services": "nginx"})
    p2 = w.launch(prod_eu, groups=["db"],
                  tags={**READY, "Name": "db-01", "team": "data", "services": "postgres"})
    time.sleep(1.1)
    a1 = w.launch(host_us, groups=["frontend"],
                  tags={**web, "Name": "Web 01", "env": "prod", "services": "nginx"})
    a2 = w.launch(host_us, groups=["frontend"], tags={**web, "Name": "web-02", "env": "staging"})
    # Live, every condition of web.prod but not ready: only its I.D resolves.
    a5 = w.launch(host_us, groups=["frontend"],
                  tags={"role": "web", "env": "prod", "team": "shop", "Name": "web-05"})
    p1 = w.launch(prod_us, groups=["frontend"],
                  tags={**web, "Name": "web-01", "env": "prod", "services": "nginx"})
    # A real Auto Scaling group (moto tags its instances aws:autoscaling:groupName).
    host_us.ec2.create_launch_template(
        LaunchTemplateName="batch",
        LaunchTemplateData={
            "ImageId": AMI,
            "SecurityGroupIds": [host_us.group("workers")],
            "TagSpecifications": [{"ResourceType": "instance",
                                   "Tags": [{"Key": "team", "Value": "batch"},
                                            {"Key": "af-status", "Value": "ready"}]}],
        },
    )
    aws(moto_url, "autoscaling", "us-east-1").create_auto_scaling_group(
        AutoScalingGroupName="Batch ASG", LaunchTemplate={"LaunchTemplateName": "batch"},
        MinSize=2, MaxSize=2, DesiredCapacity=2, VPCZoneIdentifier=host_us.subnet)
    asg = [i["InstanceId"] for r in host_us.ec2.describe_instances(
        Filters=[{"Name": "tag:aws:autoscaling:groupName", "Values": ["Batch ASG"]}])["Reservations"]
        for i in r["Instances"]]
    assert len(asg) == 2, "moto's Auto Scaling group launched its instances"
    w.add(host_us, asg)

    write_config(host, ZONES + ACCOUNTS, ready_tag="af-status=ready")
    r = host.refresh()
    st = host.ec2cached("status")
    assert not_published_lines(r.stderr + st.stdout) == [], r.stderr + st.stdout

    frontend = [o1, a4, a1, a2]
    # The merged set is in launch order, not in the order accounts and regions are swept.
    assert w.ordered(frontend) == [o1, a4] + w.ordered([a1, a2])
    # Security groups (the default zone, with services), merged across accounts and regions.
    assert_set(host, "frontend.ec2", w.ips(frontend))
    assert_set(host, "nginx.frontend.ec2", w.ips([a4, a1]))
    assert_set(host, "workers.ec2", w.ips(asg))
    # tag:Name under "name": values go through the label rules.
    assert_set(host, "web-01.name.ec2", [w.ip(a1)])
    assert_set(host, "web-02.name.ec2", [w.ip(a2)])
    assert_set(host, "web-03.name.ec2", [w.ip(a4)])
    assert_set(host, "web-04.name.ec2", [w.ip(o1)])
    assert host.hosts("web-05.name.ec2")[0] == 2, "not ready: in no zone"
    # az, vpc, region.
    assert w.desc(a1)["Placement"]["AvailabilityZone"] == "us-east-1a"
    assert_set(host, "us-east-1a.az.ec2", w.ips([a1, a2] + asg))
    assert_set(host, "eu-west-1b.az.ec2", [w.ip(a4)])
    assert_set(host, "eu-west-1a.az.ec2", [w.ip(o1)])
    assert_set(host, f"{host_us.vpc}.vpc.ec2", w.ips([a1, a2] + asg))
    assert_set(host, f"{other_eu.vpc}.vpc.ec2", [w.ip(o1)])
    assert_set(host, "us-east-1.region.ec2", w.ips([a1, a2] + asg))
    assert_set(host, "eu-west-1.region.ec2", w.ips([o1, a4]))
    # tag:team at the top, with services; asg under "asg".
    assert_set(host, "shop.ec2", w.ips(frontend))
    assert_set(host, "nginx.shop.ec2", w.ips([a4, a1]))
    assert_set(host, "batch.ec2", w.ips(asg))
    assert_set(host, "batch-asg.asg.ec2", w.ips(asg))
    # The AND-name: not a2 (staging), not a5 (not ready), not p1 (labelled account).
    assert_set(host, "web.prod.ec2", w.ips([o1, a4, a1]))

    # The labelled account: its names under prod.ec2 ...
    assert_set(host, "frontend.prod.ec2", [w.ip(p1)])
    assert_set(host, "nginx.frontend.prod.ec2", [w.ip(p1)])
    assert_set(host, "web-01.name.prod.ec2", [w.ip(p1)])
    assert_set(host, "web.prod.prod.ec2", [w.ip(p1)])
    assert_set(host, "db.prod.ec2", [w.ip(p2)])
    assert_set(host, "postgres.db.prod.ec2", [w.ip(p2)])
    assert_set(host, "db-01.name.prod.ec2", [w.ip(p2)])
    assert_set(host, "eu-west-1c.az.prod.ec2", [w.ip(p2)])
    assert_set(host, "us-east-1a.az.prod.ec2", [w.ip(p1)])
    assert_set(host, f"{prod_us.vpc}.vpc.prod.ec2", [w.ip(p1)])
    assert_set(host, "us-east-1.region.prod.ec2", [w.ip(p1)])
    assert_set(host, "eu-west-1.region.prod.ec2", [w.ip(p2)])
    assert_set(host, "shop.prod.ec2", [w.ip(p1)])
    assert_set(host, "data.prod.ec2", [w.ip(p2)])
    # ... and not at the top.
    for name in ("db.ec2", "postgres.db.ec2", "db-01.name.ec2", "eu-west-1c.az.ec2", "data.ec2",
                 f"{prod_us.vpc}.vpc.ec2", "1.db.ec2"):
        assert host.hosts(name)[0] == 2, f"{name}: the labelled account's name leaks to the top"
    # Nor does the unlabelled accounts' sets leak under prod.
    assert host.hosts("web-03.name.prod.ec2")[0] == 2
    assert host.hosts("eu-west-1b.az.prod.ec2")[0] == 2

    # I.D: every live instance of every account, ready or not, at the top and only there.
    for i in [o1, a4, p2, a1, a2, a5, p1] + asg:
        assert host.hosts(f"{i}.ec2") == (0, [w.ip(i)]), i
    assert host.hosts(f"{p1}.prod.ec2")[0] == 2
    assert host.hosts(f"{a1}.prod.ec2")[0] == 2
    # Reverse: I.D first, then the numbered names that single the instance out, in its namespace.
    code, lines, _ = host.getent("hosts", w.ip(p1))
    assert code == 0 and lines[0].split()[1] == f"{p1}.ec2", lines
    assert set(lines[0].split()[2:]) == {
        "1.frontend.prod.ec2", "1.nginx.frontend.prod.ec2", "1.web-01.name.prod.ec2",
        "1.us-east-1a.az.prod.ec2", f"1.{prod_us.vpc}.vpc.prod.ec2", "1.us-east-1.region.prod.ec2",
        "1.shop.prod.ec2", "1.nginx.shop.prod.ec2", "1.web.prod.prod.ec2"}, lines
    code, lines, _ = host.getent("hosts", w.ip(o1))
    assert code == 0 and lines[0].split()[1] == f"{o1}.ec2", lines
    assert set(lines[0].split()[2:]) == {
        "1.frontend.ec2", "1.web-04.name.ec2", "1.eu-west-1a.az.ec2", f"1.{other_eu.vpc}.vpc.ec2",
        "1.eu-west-1.region.ec2", "1.shop.ec2", "1.web.prod.ec2"}, lines

    # Stable numbering: a second refresh gives the same answers.
    before = {n: host.hosts(n) for n in ("1.frontend.ec2", "2.frontend.ec2", "3.web.prod.ec2",
                                         "2.eu-west-1.region.ec2")}
    host.refresh()
    assert {n: host.hosts(n) for n in before} == before


# 2. Precedence and reserved labels.

def test_precedence_and_reserved_labels(ec2, host, moto_url):
    w = World()
    f = Fleet(ec2, cidr="10.1.0.0/16")
    w1 = w.launch(f, groups=["web"], tags={"Name": "web"})
    w2 = w.launch(f, groups=["other"], tags={"Name": "web"})
    d1 = w.launch(f, groups=["misc"], tags={"Name": "db", "role": "cache"})
    d2 = w.launch(f, groups=["misc"], tags={"Name": "dbx", "role": "db"})
    r1 = w.launch(f, groups=["name", "prod", "misc"], tags={"Name": "reserved"})
    # A Name tag that is another instance's id: I.D comes first.
    x1 = w.launch(f, groups=["misc"])
    f.tag(x1, Name=w1)
    write_config(host, """
[[zone]]
key = "security-group"
services = true

[[zone]]
key = "tag:Name"

[[zone]]
key = "tag:Name"
under = "name"

[[name]]
name = "db"
match = ["tag:role=db"]

[[account]]
regions = ["us-east-1"]

[[account]]
role_arn = "%s"
regions = ["us-east-1"]
label = "prod"
""" % role(PROD), regions=["us-east-1"])
    r = host.refresh()

    # The security-group zone comes before the tag:Name zone: web.ec2 is group web's.
    assert_set(host, "web.ec2", [w.ip(w1)])
    # [[name]] beats every zone: db.ec2 is role=db's, not Name=db's.
    assert_set(host, "db.ec2", [w.ip(d2)])
    assert_set(host, "dbx.ec2", [w.ip(d2)])
    assert_set(host, "reserved.ec2", [w.ip(r1)])
    # Under "name" nothing collides.
    assert_set(host, "web.name.ec2", w.ips([w1, w2]))
    assert_set(host, "db.name.ec2", [w.ip(d1)])
    # Reserved: a zone's `under` label and an account label are not values at the top.
    for n in ("name.ec2", "1.name.ec2", "prod.ec2", "1.prod.ec2"):
        assert host.hosts(n)[0] == 2, n
    assert_set(host, "misc.ec2", w.ips([d1, d2, r1, x1]))
    # An instance id first: another instance's Name tag does not take it.
    assert host.hosts(f"{w1}.ec2") == (0, [w.ip(w1)])
    assert host.hosts(f"1.{w1}.ec2")[0] == 2

    want = [
        'its name name.ec2 is reserved (a zone\'s `under` label)',
        'its name prod.ec2 is reserved (an account label)',
        'its name db.ec2 is taken by [[name]] "db"',
        'its name web.ec2 is taken by zone security-group',
        f"its name {w1}.ec2 is an instance id",
    ]
    st = host.ec2cached("status", check=False)
    for text, where in ((r.stderr, "refresh"), (st.stdout, "status")):
        lines = not_published_lines(text.replace('\\"', '"'))
        for wnt in want:
            hits = [l for l in lines if wnt in l]
            assert len(hits) == 1, (where, wnt, lines)
    status_lines = not_published_lines(st.stdout)
    assert any('group "name"' in l for l in status_lines), status_lines
    assert any('group "prod"' in l for l in status_lines), status_lines
    assert any('tag:Name value "db"' in l for l in status_lines), status_lines
    assert any('tag:Name value "web"' in l for l in status_lines), status_lines
    # A loss is reported once per refresh, not once per instance or per numbered name.
    assert len(status_lines) == len(set(status_lines)), status_lines


def test_a_named_set_keeps_its_numbered_names_across_accounts(ec2, host, moto_url):
    """Issue 22, item 14: a top-level [[name]] `db.prod`, a zone under `db` and an account
    labelled `prod` made `1.db.prod.ec2` twice (the name's first member, and value "1" of the
    zone in prod): every refresh failed (`name "1.db.prod.ec2" appears twice`) and all names
    went stale. Now the set owns its numbered names: the refresh succeeds, the zone's value is
    reported as not published, every other name resolves."""
    w = World()
    f = Fleet(ec2, cidr="10.1.0.0/16")
    d1 = w.launch(f, groups=["misc"], tags={"role": "db"})
    p = fleet_in(moto_url, "us-east-1", PROD, cidr="10.9.0.0/16")
    n1 = w.launch(p, groups=["misc"], tags={"shard": "1"})
    n2 = w.launch(p, groups=["misc"], tags={"shard": "2"})
    n3 = w.launch(p, groups=["misc"], tags={"shard": "east"})
    write_config(host, """
[[zone]]
key = "tag:shard"
under = "db"

[[name]]
name = "db.prod"
match = ["tag:role=db"]

[[account]]
regions = ["us-east-1"]

[[account]]
role_arn = "%s"
regions = ["us-east-1"]
label = "prod"
""" % role(PROD), regions=["us-east-1"])
    r = host.refresh(check=False)
    assert r.returncode == 0, r.stderr
    assert host.hosts("db.prod.ec2") == (0, [w.ip(d1)])
    assert host.hosts("1.db.prod.ec2") == (0, [w.ip(d1)])
    # The set's numbered names are all its own, however few members it has today: values "1"
    # and "2" are not published; another value is.
    assert host.hosts("2.db.prod.ec2")[0] == 2
    assert_set(host, "east.db.prod.ec2", [w.ip(n3)])
    assert host.hosts(f"{n1}.ec2") == (0, [w.ip(n1)])
    assert host.hosts(f"{n2}.ec2") == (0, [w.ip(n2)])
    lines = not_published_lines(host.ec2cached("status", check=False).stdout.replace('\\"', '"'))
    for v in ("1", "2"):
        assert any(f'tag:shard value "{v}"' in l and 'is a numbered name of [[name]] "db.prod"' in l
                   for l in lines), lines


# 3. A failing account, a failing region.

@pytest.fixture
def proxy(moto_url):
    p = FaultProxy(moto_url).start()
    yield p
    p.stop()


def test_a_failing_account_or_region_fails_the_poll_and_changes_nothing(ec2, host, moto_url, proxy):
    w = World()
    a = w.launch(Fleet(ec2, cidr="10.1.0.0/16"), groups=["frontend"])
    p = w.launch(fleet_in(moto_url, "eu-west-1", PROD, cidr="10.5.0.0/16"), groups=["db"])
    host.url = proxy.url
    write_config(host, f"""
[[account]]
regions = ["us-east-1"]

[[account]]
role_arn = "{role(PROD)}"
label = "prod"
""", api_timeout=1)
    host.refresh()
    assert host.hosts("frontend.ec2") == (0, [w.ip(a)])
    assert host.hosts("db.prod.ec2") == (0, [w.ip(p)])
    before = host.snapshot.read_bytes()

    def failed_refresh():
        r = host.refresh(check=False)
        assert r.returncode == 1, r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("ec2cached: "), last
        assert host.snapshot.read_bytes() == before, "the snapshot is byte-for-byte the old one"
        assert host.hosts("frontend.ec2") == (0, [w.ip(a)])
        assert host.hosts("db.prod.ec2") == (0, [w.ip(p)])
        st = host.ec2cached("status", check=False)
        assert st.returncode == 1, st.stdout
        m = re.search(r"last error:\s+\S+ \(\d+ s ago\): (.*)", st.stdout)
        assert m, st.stdout
        return last, m.group(1)

    # The role cannot be assumed: the account fails, and the poll with it.
    proxy.fail_assume_role_for = PROD
    last, status_error = failed_refresh()
    assert proxy.faults_injected >= 1
    assert "AccessDenied" in last, last
    assert re.search(r"\(DescribeInstances in account 111122223333 \(prod\), (us-east-1|eu-west-1), "
                     r"page 1\)$", last), last
    assert "account 111122223333 (prod)" in status_error, status_error

    # One region of that account fails.
    proxy.fail_assume_role_for = None
    proxy.fault, proxy.fault_region = "500", "eu-west-1"
    last, status_error = failed_refresh()
    assert "InternalError" in last, last
    assert last.endswith("(DescribeInstances in account 111122223333 (prod), eu-west-1, page 1)"), last
    assert "eu-west-1" in status_error and "111122223333" in status_error, status_error
    assert proxy.calls[("DescribeInstances", "eu-west-1")] >= 2

    # The host's own account in its region.
    proxy.fault_region = "us-east-1"
    last, _ = failed_refresh()
    assert last.endswith("(DescribeInstances in the host's account, us-east-1, page 1)"), last

    # Healed: the same names again, from a good poll.
    proxy.fault = proxy.fault_region = None
    host.refresh()
    assert host.ec2cached("status", check=False).returncode == 0
    assert host.hosts("db.prod.ec2") == (0, [w.ip(p)])


# 4. The poller is frugal: AssumeRole once per account, one request per page per sweep.

def test_run_assumes_each_role_once_and_sends_one_request_per_page(ec2, host, moto_url, proxy):
    w = World()
    prod_us = fleet_in(moto_url, "us-east-1", PROD, cidr="10.4.0.0/16")
    # three reservations in pages of two: two pages
    prod = [w.launch(prod_us, groups=["frontend"]) for _ in range(3)]
    prod.append(w.launch(fleet_in(moto_url, "eu-west-1", PROD, cidr="10.5.0.0/16"), groups=["frontend"]))
    other = [w.launch(fleet_in(moto_url, "us-east-1", OTHER, cidr="10.6.0.0/16"), groups=["frontend"]),
             w.launch(fleet_in(moto_url, "eu-west-1", OTHER, cidr="10.7.0.0/16"), groups=["frontend"])]
    pages = 2 + 1 + 1 + 1
    proxy.page_size = 2
    host.url = proxy.url
    write_config(host, f"""
[[account]]
role_arn = "{role(PROD)}"
label = "prod"

[[account]]
role_arn = "{role(OTHER)}"
external_id = "tphon-42"
""", interval=1, api_timeout=2)
    d = subprocess.Popen([EC2CACHED, "--config", str(host.config), "run"], env=host.env(),
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while host.hosts("frontend.prod.ec2")[0] != 0:
            assert time.monotonic() < deadline, "the daemon published nothing"
            assert d.poll() is None, "the daemon exited"
            time.sleep(0.1)
        time.sleep(8)
        st = host.ec2cached("status", check=False)
    finally:
        d.send_signal(signal.SIGTERM)
        code = d.wait(timeout=20)
    log = d.stderr.read()
    with proxy.lock:
        describes = proxy.requests
        assumes = list(proxy.role_arns)
    assert code == 0, log
    assert f"{pages} request(s)" in st.stdout, st.stdout
    assert host.hosts("frontend.prod.ec2") == (0, w.ips(prod))
    assert host.hosts("frontend.ec2") == (0, w.ips(other))
    sweeps = [int(re.search(r"requests=(\d+)", l).group(1))
              for l in log.splitlines() if "published" in l and "requests=" in l]
    assert len(sweeps) >= 5, f"interval 1 for 8 s: only {len(sweeps)} polls\n{log}"
    assert set(sweeps) == {pages}, sweeps
    # Every request the proxy saw belongs to a logged sweep, but those of one cut short by
    # SIGTERM: no retries, no page read twice.
    assert pages * len(sweeps) <= describes <= pages * (len(sweeps) + 1), (describes, sweeps)
    external = {f["RoleArn"][0]: f.get("ExternalId") for f in proxy.assume_role_forms}
    assert external == {role(PROD): None, role(OTHER): ["tphon-42"]}, external
    # Credentials are built once per account (shared by its regions), not per poll.
    assert sorted(assumes) == sorted([role(PROD), role(OTHER)]), (
        f"AssumeRole {len(assumes)} times over {len(sweeps)} polls of 2 role accounts in 2 regions "
        f"each: {assumes}")


# 5. explain.

def test_explain_shows_conditions_zone_values_and_candidates(ec2, host, moto_url):
    w = World()
    f = Fleet(ec2, cidr="10.1.0.0/16", az="us-east-1b")
    s = w.launch(f, groups=["frontend"], tags={"role": "web", "env": "staging"})
    write_config(host, f"""
[[zone]]
key = "security-group"
services = true

[[zone]]
key = "tag:team"

[[zone]]
key = "az"
under = "az"

[[name]]
name = "web.prod"
match = ["tag:role=web", "tag:env=prod", "security-group=frontend"]

[[account]]
regions = ["us-east-1"]

[[account]]
role_arn = "{role(PROD)}"
regions = ["us-east-1"]
label = "prod"
""", regions=["us-east-1"])
    host.refresh()
    assert host.hosts("web.prod.ec2")[0] == 2

    r = host.ec2cached("explain", s, check=False)
    out = r.stdout
    assert f"instance {s}: ready" in out, out
    assert '  [[name]] "web.prod": condition tag:env=prod fails: env=staging\n' in out, out
    assert '  group "frontend": frontend.ec2\n' in out, out
    assert '  zone az (under "az") az value "us-east-1b": us-east-1b.az.ec2\n' in out, out
    assert "  not in zone tag:team: no team tag\n" in out, out
    assert host.hosts("us-east-1b.az.ec2") == (0, [w.ip(s)])

    # The name has no instance: explain lists the candidates and the condition each fails.
    r = host.ec2cached("explain", "web.prod.ec2", check=False)
    assert r.returncode != 0, r.stdout
    out = r.stdout
    assert out.startswith("web.prod.ec2: no such name"), out
    assert '[[name]] "web.prod"' in out, f"no candidates for the [[name]]:\n{out}"
    cand = [l for l in out.splitlines() if l.strip().startswith(f"{s}:")]
    assert cand and "condition tag:env=prod fails: env=staging" in cand[0], out
    assert "no zone or [[name]] of this config gives a name like" not in out, out

    # Fixed: the instance now meets every condition.
    f.tag(s, env="prod")
    host.refresh()
    assert host.hosts("web.prod.ec2") == (0, [w.ip(s)])
    out = host.ec2cached("explain", s).stdout
    assert '  [[name]] "web.prod": every condition holds: web.prod.ec2\n' in out, out
    out = host.ec2cached("explain", "web.prod.ec2").stdout
    assert out.startswith("web.prod.ec2: 1 instance(s)"), out
    assert f"1. {s} {w.ip(s)}" in out, out


# 6. Config errors name the key.

CONFIG_ERRORS = {
    "zone[0].key": '[[zone]]\nkey = "colour"\n',
    "zone[1].under": '[[zone]]\nkey = "az"\n[[zone]]\nkey = "vpc"\nunder = "a.b"\n',
    "name[0].name": '[[name]]\nname = "1.web"\nmatch = ["tag:role=web"]\n',
    "name[0].match": '[[name]]\nname = "web"\nmatch = []\n',
    "name[0].match[0]": '[[name]]\nname = "web.prod"\nmatch = ["colour=blue"]\n',
    "name[0].match[1]": '[[name]]\nname = "web.prod"\nmatch = ["tag:role=web", "tag:"]\n',
    "account[0].role_arn": '[[account]]\nrole_arn = "111122223333"\n',
    "account[0].external_id": '[[account]]\nexternal_id = "x-1"\n',
    "account[1].label": f'[[account]]\nlabel = "prod"\n[[account]]\nrole_arn = "{role(PROD)}"\n'
                        'label = "prod"\n',
    "account[0].label": '[[zone]]\nkey = "az"\nunder = "prod"\n[[account]]\nlabel = "prod"\n',
}


@pytest.mark.parametrize("key", list(CONFIG_ERRORS))
def test_config_errors_name_the_key(tmp_path, key):
    h = Host(tmp_path, "http://127.0.0.1:1")
    write_config(h, CONFIG_ERRORS[key])
    for cmd in (["refresh"], ["status"]):
        r = h.ec2cached(*cmd, check=False, timeout=20)
        assert r.returncode == 2, (cmd, r.returncode, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith(f"ec2cached: {h.config}: key `{key}`: "), lines[0]
    assert not h.snapshot.exists()


@pytest.mark.parametrize("table", ["zone", "name", "account"])
def test_a_follower_config_with_zones_names_or_accounts_is_refused(tmp_path, table):
    h = Host(tmp_path, "http://127.0.0.1:1")
    body = {
        "zone": '[[zone]]\nkey = "az"\nunder = "az"\n',
        "name": '[[name]]\nname = "web.prod"\nmatch = ["tag:role=web"]\n',
        "account": f'[[account]]\nrole_arn = "{role(PROD)}"\n',
    }[table]
    h.config.write_text(f'snapshot = "{h.snapshot}"\ninterval = 30\n'
                        f'[follow]\nurl = "s3://fleet/hosts.snap"\n'
                        f'trusted_keys = ["ed25519:{"ab" * 32}"]\n{body}')
    for cmd in (["refresh"], ["status"], ["run"]):
        r = h.ec2cached(*cmd, check=False, timeout=20)
        assert r.returncode == 2, (cmd, r.returncode, r.stderr)
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith(f"ec2cached: {h.config}: key `{table}`: not allowed with [follow]"), line
