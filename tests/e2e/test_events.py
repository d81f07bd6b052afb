"""Issue 24 (first part): a tag flip in seconds through EC2's own change events. A poller with
`[events]` long-polls an SQS queue on moto; the events are sent to it as EventBridge delivers
them (the envelopes AWS documents), while the tag really moves on moto's EC2. What a user sees:
the name answers the new instance through the module within seconds, long before the next
sweep (interval 3600), the queue is emptied, `status` and the status file count the events.
"""

import json
import time

import boto3
import pytest

from conftest import EC2CACHED, REGION, Host  # noqa: F401
from fleethelp import Daemons, Node

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
    sqs = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    url = sqs.create_queue(QueueName=f"ec2cached-events-{time.monotonic_ns()}")["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


def waiting(sqs, url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def test_a_tag_move_and_its_event_reach_the_poller_in_seconds(fleet, queue, tmp_path, moto_url):
    sqs, url = queue
    host = Node(tmp_path, "poller", moto_url)
    a = fleet.launch(tags={"services": "postgres"})[0]
    b = fleet.launch()[0]
    host.config.write_text(f'snapshot = "{host.snapshot}"\nregions = ["{REGION}"]\ninterval = 3600\n'
                           f'[events]\nqueue_url = "{url}"\ndebounce_ms = 200\n')
    daemons = Daemons()
    try:
        daemons.start(host)
        end = time.monotonic() + 30
        while host.hosts("postgres.tphon.ec2") != (0, [fleet.ipv4(a)]) and time.monotonic() < end:
            time.sleep(0.1)
        assert host.hosts("postgres.tphon.ec2") == (0, [fleet.ipv4(a)])
        # The move, then its events (and two the poller must ignore), as EventBridge sends them.
        fleet.untag(a, "services")
        fleet.tag(b, services="postgres")
        sent = time.monotonic()
        for body in (envelope("tag", [a]), envelope("tag", [b]), "not an event",
                     envelope("state", [b], account="999999999999")):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        end = time.monotonic() + 10
        while host.hosts("postgres.tphon.ec2") != (0, [fleet.ipv4(b)]) and time.monotonic() < end:
            time.sleep(0.05)
        took = time.monotonic() - sent
        assert host.hosts("postgres.tphon.ec2") == (0, [fleet.ipv4(b)]), "the event was not applied"
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
