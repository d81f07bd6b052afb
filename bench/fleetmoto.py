"""moto's server (EC2 and S3 on one loopback port) for the fleet benchmark (bench/fleet), with
two changes to DescribeInstances, so that a sweep costs the requests it costs on AWS and the
benchmark measures ec2cached rather than moto's slowest path.

    python fleetmoto.py -H 127.0.0.1 -p PORT

1. Pages count instances. moto's `MaxResults` counts reservations, so 10 000 instances launched
   1 000 (or 100) at a time come back in one page. EC2 counts instances: a page here holds whole
   reservations, in moto's order, up to `MaxResults` instances (at least one reservation), and
   NextToken is the id of its last reservation, as in moto. Launched 100 per reservation, 10 000
   instances take 10 pages of 1 000, as on AWS. Without MaxResults, or with InstanceIds, moto's
   own code answers.
2. The tags of one resource are found by a dictionary lookup. moto answers DescribeInstances by
   asking, for each instance, `describe_tags(filters={"resource-id": [ID]})`, which scans the tags
   of every resource: O(n²) per sweep, minutes for 10 000 tagged instances. For that exact filter
   (one literal id) the replacement returns the same list, in the same order, from
   `self.tags[ID]`; every other call goes to moto's own code.

Nothing else is changed: moto still serializes every instance of a sweep in Python, which is what
makes a 10 000-instance sweep take tens of seconds here (bench/fleet measures and prints it).
"""

import sys

from moto.core.responses import ActionResult
from moto.ec2.models.tags import TagBackend
from moto.ec2.responses.instances import InstanceResponse
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

_describe_tags = TagBackend.describe_tags


def describe_tags(self, filters=None):
    ids = (filters or {}).get("resource-id") if filters and list(filters) == ["resource-id"] else None
    if ids and len(ids) == 1 and not any(c in ids[0] for c in "*?[\\"):
        rid = ids[0]
        if rid not in self.tags:  # a defaultdict: do not add an entry by looking
            return []
        rtype = EC2_PREFIX_TO_RESOURCE.get(get_prefix(rid), "")
        return [{"resource_id": rid, "key": k, "value": v, "resource_type": rtype}
                for k, v in self.tags[rid].items()]
    return _describe_tags(self, filters)


TagBackend.describe_tags = describe_tags

_describe_instances = InstanceResponse.describe_instances


def describe_instances(self):
    if "MaxResults" not in self.data or self._get_param("InstanceIds", []):
        return _describe_instances(self)
    self.error_on_dryrun()
    reservations = self.ec2_backend.describe_instances(filters=self._filters_from_querystring())
    token = self._get_param("NextToken")
    start = [r.id for r in reservations].index(token) + 1 if token else 0
    max_results = max(1, int(self._get_param("MaxResults")))
    page, n = [], 0
    for r in reservations[start:]:
        if page and n + len(r.instances) > max_results:
            break
        page.append(r)
        n += len(r.instances)
    more = start + len(page) < len(reservations)
    return ActionResult({"Reservations": page, "NextToken": page[-1].id if more else None})


InstanceResponse.describe_instances = describe_instances

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
