"""Creates the seed's fleet on an EC2 endpoint (the demo's moto) and prints what it made.

Group tphon: three redis, a postgres primary, a readonly.postgres replica (ready), one redis
still provisioning (no af-status=ready tag); group "Airavata Search" with two search nodes; one
stopped redis.
"""

import sys
import time
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from ec2fleet import Fleet  # noqa: E402

url = sys.argv[1]
ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id="demo", aws_secret_access_key="demo")
fleet = Fleet(ec2)
ready = {"af-status": "ready"}
made = []
for n in range(3):
    made += [("redis", fleet.launch(tags={**ready, "services": "redis", "Name": f"redis-{n}"}, ipv6=n == 0)[0])]
made += [("postgres primary", fleet.launch(tags={**ready, "services": "postgres"})[0])]
time.sleep(1.1)  # launch times have one-second resolution: the primary comes first
made += [("postgres replica", fleet.launch(tags={**ready, "services": "postgres, readonly.postgres"})[0])]
made += [("redis, provisioning", fleet.launch(tags={"services": "redis"})[0])]
made += [("search", i) for i in fleet.launch(groups=["Airavata Search"], tags=ready, count=2)]
stopped = fleet.launch(tags={**ready, "services": "redis"})[0]
ec2.stop_instances(InstanceIds=[stopped])
made += [("redis, stopped", stopped)]
d = fleet.describe([i for _, i in made])
for what, i in made:
    print(f"  {i}  {d[i]['PrivateIpAddress']:<12} {d[i]['State']['Name']:<8} {what}")
