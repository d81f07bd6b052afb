"""Writes `aws ec2 describe-instances` JSON for a synthetic fleet of N instances.

    python3 bench/genfleet.py N > fleet.json

Groups g0..g9 (plus tphon for the first instances), services redis/postgres/web/queue/cache,
every tenth instance with an IPv6 address, all running and ready.
"""

import json
import sys

n = int(sys.argv[1])
services = ["redis", "postgres", "web", "queue", "cache"]
instances = []
for i in range(n):
    groups = [f"g{i % 10}"] + (["tphon"] if i < 5 else [])
    tags = [{"Key": "services", "Value": services[i % 5] + ("" if i % 7 else ", readonly.postgres")},
            {"Key": "af-status", "Value": "ready"}]
    nic = {"Attachment": {"DeviceIndex": 0}, "Ipv6Addresses": []}
    if i % 10 == 0:
        nic["Ipv6Addresses"].append({"Ipv6Address": f"2001:db8::{i >> 16:x}:{i & 0xffff:x}"})
    instances.append({
        "InstanceId": f"i-{i:017x}",
        "State": {"Code": 16, "Name": "running"},
        "LaunchTime": f"2024-01-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}+00:00",
        "SecurityGroups": [{"GroupName": g, "GroupId": f"sg-{g}"} for g in groups],
        "Tags": tags,
        "PrivateIpAddress": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        "NetworkInterfaces": [nic],
    })
# One reservation per 100 instances, as RunInstances batches would give.
doc = {"Reservations": [{"Instances": instances[k:k + 100]} for k in range(0, n, 100)]}
json.dump(doc, sys.stdout)
