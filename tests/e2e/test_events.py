"""Issue 24 (first part): a tag flip in seconds through EC2's own change events. A poller with
`[events]` long-polls an SQS queue on moto; the events are sent to it as EventBridge delivers
them (the envelopes AWS documents), while the tag really moves on moto's EC2. What a user sees:
the name answers the new instance through the module within seconds, long before the next
sweep (interval 3600), the queue is emptied, `status` and the status file count the events.
"""

import json
import signal
import subprocess
import time

import boto3
import pytest
import yaml

from conftest import EC2CACHED, REGION, ROOT, Host, free_port  # noqa: F401
from faultproxy import FaultProxy
from fleethelp import Daemons, Node

TEMPLATE = ROOT / "deploy" / "ec2cached-events.yaml"


def template():
    """The CloudFormation template, its intrinsic functions (!Ref, !GetAtt, ...) read as plain
    values."""
    class Loader(yaml.SafeLoader):
        pass
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(TEMPLATE.read_text(), Loader=Loader)


def client(moto_url, service):
    return boto3.client(service, endpoint_url=moto_url, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def wait_answer(host, name, want, timeout):
    end = time.monotonic() + timeout
    while host.hosts(name) != (0, want) and time.monotonic() < end:
        time.sleep(0.05)
    return host.hosts(name) == (0, want)


def wait_swept(host, timeout=30):
    """Waits for a poller's first sweep (events wait for it)."""
    end = time.monotonic() + timeout
    while not host.snapshot.exists() and time.monotonic() < end:
        time.sleep(0.1)
    assert host.snapshot.exists(), host.log()[-2000:]


def events_poller(tmp_path, moto_url, url, **env):
    host = Node(tmp_path, "poller", moto_url, extra_env=env)
    host.config.write_text(f'snapshot = "{host.snapshot}"\nregions = ["{REGION}"]\ninterval = 3600\n'
                           f'[events]\nqueue_url = "{url}"\ndebounce_ms = 200\n')
    return host

ACCOUNT = "123456789012"  # moto's


def envelope(kind, instance_ids, account=ACCOUNT, region=REGION):
    """An EventBridge event as SQS delivers it (the message body)."""
    arns = [f"arn:aws:ec2:{region}:{account}:instance/{i}" for i in instance_ids]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if kind == "tag":
        return json.dumps({"version": "0", "id": "bddcf1d6-0251-35a1-aab0-adc1fb47c11c",
                           "detail-type": "Tag Change on Resource", "source": "aws.tag",
                           "account": account, "time": now, "region": region, "resources": arns,
                           "detail": {"changed-tag-keys": ["services"], "service": "ec2",
                                      "resource-type": "instance", "version": 3, "tags": {}}})
    if kind == "state":
        return json.dumps({"version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
                           "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
                           "account": account, "time": now, "region": region, "resources": arns,
                           "detail": {"instance-id": instance_ids[0], "state": "running"}})
    raise ValueError(kind)


@pytest.fixture
def queue(moto_url):
    sqs = client(moto_url, "sqs")
    url = sqs.create_queue(QueueName=f"ec2cached-events-{time.monotonic_ns()}")["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


def waiting(sqs, url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def start_with_postgres_on_a(fleet, host, daemons):
    """Launches a (tagged services=postgres) and b (untagged), starts HOST and waits for it to
    answer postgres.tphon.ec2 with a: (a, b, its process)."""
    a = fleet.launch(tags={"services": "postgres"})[0]
    b = fleet.launch()[0]
    p = daemons.start(host)
    assert wait_answer(host, "postgres.tphon.ec2", [fleet.ipv4(a)], 30)
    return a, b, p


def move_postgres(fleet, a, b):
    fleet.untag(a, "services")
    fleet.tag(b, services="postgres")


def test_a_tag_move_and_its_event_reach_the_poller_in_seconds(fleet, queue, tmp_path, moto_url):
    sqs, url = queue
    host = events_poller(tmp_path, moto_url, url)
    daemons = Daemons()
    try:
        a, b, _ = start_with_postgres_on_a(fleet, host, daemons)
        # The move, then its events (and two the poller must ignore), as EventBridge sends them.
        move_postgres(fleet, a, b)
        sent = time.monotonic()
        for body in (envelope("tag", [a]), envelope("tag", [b]), "not an event",
                     envelope("state", [b], account="999999999999")):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        answered = wait_answer(host, "postgres.tphon.ec2", [fleet.ipv4(b)], 10)
        took = time.monotonic() - sent
        assert answered, "the event was not applied"
        assert took < 3, f"{took:.1f} s from the event to the answer"
        print(f"\nevents: a tag move answered through the module {took:.2f} s after its event")
        end = time.monotonic() + 10
        while waiting(sqs, url) and time.monotonic() < end:
            time.sleep(0.2)
        assert waiting(sqs, url) == 0, "applied or ignored messages are deleted"
        st = json.loads((host.dir / "hosts.snap.status").read_text())
        assert st["events_received"].get("tag_change") == 2, st
        assert st["events_ignored"] == {"malformed": 1, "not_polled": 1}, st
        assert st["events_applied"] == 2, st
        status = host.ec2cached("status", check=False).stdout
        assert "events:" in status and "2 applied" in status, status
    finally:
        codes = daemons.stop_all()
    assert set(codes.values()) == {0}, codes


def test_an_events_config_is_checked(host):
    for body, key in [('[events]\nqueue_url = "sqs://q"\n', "events.queue_url"),
                      ('[events]\nqueue_url = "https://sqs.us-east-1.amazonaws.com/1/q"\n', "events.queue_url"),
                      ('[events]\nqueue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/q"\n'
                       'debounce_ms = 60000\n', "events.debounce_ms")]:
        host.config.write_text(f'snapshot = "{host.snapshot}"\n' + body)
        r = host.ec2cached("refresh", check=False)
        assert r.returncode == 2 and f"key `{key}`" in r.stderr, r.stderr


def test_the_template_passes_cfn_lint_and_its_rules_deliver_what_the_poller_applies(
        fleet, queue, tmp_path, moto_url):
    """The CloudFormation template (deploy/ec2cached-events.yaml) passes cfn-lint; its three
    rules, put on moto's EventBridge with its event patterns, deliver a tag change to the queue
    (PutEvents, as EC2 would send it), and the poller applies it in seconds."""
    import sys
    from pathlib import Path
    VENV_BIN = Path(sys.executable).parent
    r = subprocess.run([str(VENV_BIN / "cfn-lint"), str(TEMPLATE)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    # cfn-lint can fail: a rule pointing at a resource that does not exist.
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEMPLATE.read_text().replace("Arn: !GetAtt Queue.Arn", "Arn: !GetAtt Qeue.Arn", 1))
    assert subprocess.run([str(VENV_BIN / "cfn-lint"), str(broken)], capture_output=True,
                          timeout=120).returncode != 0
    sqs, url = queue
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    ev = client(moto_url, "events")
    rules = {k: v for k, v in template()["Resources"].items() if v["Type"] == "AWS::Events::Rule"}
    assert set(rules) == {"StateChangeRule", "TagChangeRule", "ApiCallRule"}
    for name, rule in rules.items():
        ev.put_rule(Name=f"{name}-{tmp_path.name}", EventPattern=json.dumps(rule["Properties"]["EventPattern"]))
        ev.put_targets(Rule=f"{name}-{tmp_path.name}", Targets=[{"Id": "q", "Arn": arn}])
    host = events_poller(tmp_path, moto_url, url)
    a = fleet.launch(tags={"services": "postgres"})[0]
    b = fleet.launch()[0]
    daemons = Daemons()
    try:
        daemons.start(host)
        assert wait_answer(host, "postgres.tphon.ec2", [fleet.ipv4(a)], 30)
        fleet.untag(a, "services")
        fleet.tag(b, services="postgres")
        sent = time.monotonic()
        entries = [{"Source": "aws.tag", "DetailType": "Tag Change on Resource",
                    "Resources": [f"arn:aws:ec2:{REGION}:123456789012:instance/{i}"],
                    "Detail": json.dumps({"changed-tag-keys": ["services"], "service": "ec2",
                                          "resource-type": "instance", "version": 2, "tags": {}})}
                   for i in (a, b)]
        # And one the rules do not take: a tag change on a volume.
        entries.append({**entries[0], "Detail": json.dumps({"service": "ec2", "resource-type": "volume"})})
        assert ev.put_events(Entries=entries)["FailedEntryCount"] == 0
        assert wait_answer(host, "postgres.tphon.ec2", [fleet.ipv4(b)], 10), host.log()[-2000:]
        took = time.monotonic() - sent
        assert took < 3, f"{took:.1f} s"
        st = json.loads((host.dir / "hosts.snap.status").read_text())
        assert st["events_received"] == {"tag_change": 2}, st
    finally:
        codes = daemons.stop_all()
    assert set(codes.values()) == {0}, codes


def test_sweeps_go_on_while_the_queue_is_down_and_repair_a_lost_event(fleet, tmp_path, moto_url):
    """SQS unreachable: `status` says the events do not flow (exit 1), the metrics say so, and
    sweeps go on: a tag move whose event was lost reaches the snapshot at the next sweep (here
    SIGHUP)."""
    dead = f"http://127.0.0.1:{free_port()}"
    url = "http://127.0.0.1:9/123456789012/nowhere"
    host = events_poller(tmp_path, moto_url, url, AWS_ENDPOINT_URL_SQS=dead)
    daemons = Daemons()
    try:
        a, b, p = start_with_postgres_on_a(fleet, host, daemons)
        end = time.monotonic() + 30
        while '"events_error": null' in (host.dir / "hosts.snap.status").read_text() and time.monotonic() < end:
            time.sleep(0.2)
        st = host.ec2cached("status", check=False)
        assert st.returncode == 1 and "events:" in st.stdout and "the queue fails" in st.stdout, st.stdout
        # One line an operator can act on, never the SDK's dump.
        line = next(x for x in st.stdout.splitlines() if "the queue fails" in x)
        assert "cannot reach SQS" in line and "SdkBody" not in line and len(line) < 400, line
        move_postgres(fleet, a, b)
        p.send_signal(signal.SIGHUP)
        assert wait_answer(host, "postgres.tphon.ec2", [fleet.ipv4(b)], 30), host.log()[-2000:]
    finally:
        codes = daemons.stop_all()
    assert set(codes.values()) == {0}, codes


def test_a_burst_of_500_events_makes_a_few_requests(fleet, queue, tmp_path, moto_url):
    """A script tagging 50 instances ten times over: 500 events, coalesced (debounce) into
    batches that each read the named instances once, a filter of up to 200 ids a request: a
    few DescribeInstances (one a batch), not 500."""
    sqs, url = queue
    proxy = FaultProxy(moto_url).start()
    try:
        host = events_poller(tmp_path, moto_url, url, AWS_ENDPOINT_URL_EC2=proxy.url)
        ids = fleet.launch(count=50)
        daemons = Daemons()
        try:
            daemons.start(host)
            assert wait_answer(host, f"{ids[0]}.ec2", [fleet.ipv4(ids[0])], 30)
            before = sum(v for (action, _), v in proxy.calls.items() if action == "DescribeInstances")
            for i in ids:
                fleet.tag(i, services="web")
            bodies = [envelope("tag", [i]) for i in ids] * 10
            for k in range(0, len(bodies), 10):
                sqs.send_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[k:k + 10])])
            assert wait_answer(host, "web.tphon.ec2", sorted(fleet.ipv4(i) for i in ids), 20) or \
                len(host.hosts("web.tphon.ec2")[1]) == 50, host.log()[-2000:]
            end = time.monotonic() + 20
            while waiting(sqs, url) and time.monotonic() < end:
                time.sleep(0.2)
            assert waiting(sqs, url) == 0
            calls = sum(v for (action, _), v in proxy.calls.items() if action == "DescribeInstances") - before
            st = json.loads((host.dir / "hosts.snap.status").read_text())
            assert st["events_received"]["tag_change"] == 500, st
            # The refetches' requests are counted in the API budget's total, as the sweep's are.
            assert st["api_requests_total"] >= 1 + calls, (st["api_requests_total"], calls)
            print(f"\nevents: 500 events, {calls} DescribeInstances")
            # One a batch (a filter of the ids named), batches gathered for the debounce: far
            # fewer than the 50 receives of 10 messages that one a receive would make.
            assert calls <= 25, calls
        finally:
            codes = daemons.stop_all()
        assert set(codes.values()) == {0}, codes
    finally:
        proxy.stop()


def test_a_tag_move_and_its_event_reach_twenty_followers_in_seconds(fleet, queue, tmp_path, moto_url):
    """A poller with [publish] and [events] (interval 3600: no sweep comes), 20 followers at a
    follow interval of 2 s through the real module: a tag move and its events reach every one
    within the follow interval and 3 s."""
    from test_fleet import Bucket, answer_times, make_follower, make_poller, wait_for
    from fleethelp import S3Proxy
    sqs, url = queue
    bucket = Bucket(moto_url)
    trap = S3Proxy(None).start()
    daemons = Daemons()
    try:
        a, b = fleet.launch(tags={"services": "postgres"})[0], fleet.launch()[0]
        poller = make_poller(tmp_path, moto_url, interval=3600)
        with open(poller.config, "a") as c:
            c.write(f'\n[events]\nqueue_url = "{url}"\ndebounce_ms = 200\n')
        daemons.start(poller)
        assert wait_for(lambda: bucket.get() is not None, 30), poller.log()
        followers = [make_follower(tmp_path, f"f{i:02d}", moto_url, trap, [poller.pub], interval=2)
                     for i in range(20)]
        for f in followers:
            daemons.start(f)
        assert len(answer_times(followers, [fleet.ipv4(a)], 60)) == 20
        fleet.untag(a, "services")
        fleet.tag(b, services="postgres")
        sent = time.monotonic()
        for i in (a, b):
            sqs.send_message(QueueUrl=url, MessageBody=envelope("tag", [i]))
        times = answer_times(followers, [fleet.ipv4(b)], 30, since=sent)
        assert len(times) == 20, sorted(times)
        worst, median = max(times.values()), sorted(times.values())[10]
        print(f"\nevents: tag move -> 20 followers (follow interval 2 s): p50 {median:.2f} s, max {worst:.2f} s")
        assert worst < 2 * 1.1 + 3, worst
        assert trap.count() == 0, "followers never call EC2"
    finally:
        codes = daemons.stop_all()
        trap.stop()
    assert set(codes.values()) == {0}, codes


def test_an_instance_whose_running_event_comes_before_its_tags_is_read_again(fleet, queue, tmp_path, moto_url):
    """An instance's `running` event can come before its tags exist (a script or a tool tags it
    just after launch), and a queue fed only by the state-change rule gets no Tag Change event.
    The poller reads such an instance again 5, 20 and 60 s later: its service name answers
    within seconds of its tags, with no sweep (interval 3600) and no other event."""
    sqs, url = queue
    host = events_poller(tmp_path, moto_url, url)
    daemons = Daemons()
    try:
        daemons.start(host)
        wait_swept(host)
        i = fleet.launch()[0]
        sqs.send_message(QueueUrl=url, MessageBody=envelope("state", [i]))
        assert wait_answer(host, f"{i}.ec2", [fleet.ipv4(i)], 10), host.log()[-2000:]
        fleet.tag(i, services="late")
        tagged = time.monotonic()
        assert wait_answer(host, "late.tphon.ec2", [fleet.ipv4(i)], 30), host.log()[-2000:]
        took = time.monotonic() - tagged
        print(f"\nevents: tags set after the running event answered {took:.1f} s after them")
        # The first recheck comes 5 s after the event's batch, the next 20 s after it.
        assert took < 25, took
        st = json.loads((host.dir / "hosts.snap.status").read_text())
        assert st["events_received"] == {"state_change": 1}, st
        assert st["events_apply_error"] is None, st
    finally:
        codes = daemons.stop_all()
    assert set(codes.values()) == {0}, codes


def test_a_poller_killed_mid_batch_loses_no_change(fleet, queue, tmp_path, moto_url):
    """A message is deleted only after the publish that reflects it: a poller killed (SIGKILL)
    while it gathers a batch leaves the events in the queue (they come back after the queue's
    visibility timeout), and the next run applies and deletes them."""
    sqs, url = queue
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "2"})
    host = events_poller(tmp_path, moto_url, url)
    host.config.write_text(host.config.read_text().replace("debounce_ms = 200", "debounce_ms = 5000"))
    daemons = Daemons()
    try:
        a, b, p = start_with_postgres_on_a(fleet, host, daemons)
        move_postgres(fleet, a, b)
        for i in (a, b):
            sqs.send_message(QueueUrl=url, MessageBody=envelope("tag", [i]))

        def in_flight():
            at = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
            return int(at["Attributes"]["ApproximateNumberOfMessagesNotVisible"])
        end = time.monotonic() + 10
        while in_flight() < 2 and time.monotonic() < end:
            time.sleep(0.05)
        assert in_flight() == 2, "the poller did not receive the events"
        p.kill()
        p.wait()
        daemons.procs.remove(p)
        assert host.hosts("postgres.tphon.ec2") == (0, [fleet.ipv4(a)]), "killed before its publish"
        time.sleep(2.5)
        assert waiting(sqs, url) == 2, "a killed poller's batch stays in the queue"
        host.config.write_text(host.config.read_text().replace("debounce_ms = 5000", "debounce_ms = 200"))
        daemons.start(host)
        assert wait_answer(host, "postgres.tphon.ec2", [fleet.ipv4(b)], 30), host.log()[-2000:]
        end = time.monotonic() + 20
        while waiting(sqs, url) and time.monotonic() < end:
            time.sleep(0.2)
        assert waiting(sqs, url) == 0, "the next run applied and deleted them"
        st = json.loads((host.dir / "hosts.snap.status").read_text())
        assert st["events_received"].get("tag_change", 0) >= 2, st
    finally:
        codes = daemons.stop_all()
    assert set(codes.values()) == {0}, codes


def test_another_accounts_event_is_ignored_before_a_sweep_finds_an_instance(queue, tmp_path, moto_url):
    """The host's own account comes from STS (GetCallerIdentity), not only from the instances a
    sweep finds: in a region with no instance yet, an event claiming another account is ignored
    (`not_polled`), and the same event of the host's account is applied."""
    region = "eu-north-1"
    sqs = boto3.client("sqs", endpoint_url=moto_url, region_name=region,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    url = sqs.create_queue(QueueName=f"ec2cached-north-{time.monotonic_ns()}")["QueueUrl"]
    from ec2fleet import Fleet
    north = Fleet(boto3.client("ec2", endpoint_url=moto_url, region_name=region,
                               aws_access_key_id="testing", aws_secret_access_key="testing"),
                  cidr="10.77.0.0/16")
    host = Node(tmp_path, "poller", moto_url, extra_env={"AWS_REGION": region})
    host.config.write_text(f'snapshot = "{host.snapshot}"\nregions = ["{region}"]\ninterval = 3600\n'
                           f'[events]\nqueue_url = "{url}"\ndebounce_ms = 200\n')
    daemons = Daemons()
    try:
        daemons.start(host)
        wait_swept(host)
        i = north.launch()[0]
        sqs.send_message(QueueUrl=url, MessageBody=envelope("state", [i], account="999999999999", region=region))
        end = time.monotonic() + 15
        while waiting(sqs, url) and time.monotonic() < end:
            time.sleep(0.2)
        st = json.loads((host.dir / "hosts.snap.status").read_text())
        assert st["events_ignored"] == {"not_polled": 1}, st
        assert host.hosts(f"{i}.ec2")[0] != 0, "another account's event was applied"
        sqs.send_message(QueueUrl=url, MessageBody=envelope("state", [i], region=region))
        assert wait_answer(host, f"{i}.ec2", [north.ipv4(i)], 15), host.log()[-2000:]
    finally:
        codes = daemons.stop_all()
        sqs.delete_queue(QueueUrl=url)
    assert set(codes.values()) == {0}, codes
