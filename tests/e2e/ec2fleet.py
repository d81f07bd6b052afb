"""Builds EC2 fleets on an EC2 API (moto in the tests and the demo) with boto3."""

import ipaddress

AMI = "ami-12c6146b"


class Fleet:
    """Builds instances on moto: a VPC with an IPv6 block, groups by name, tagged instances."""

    def __init__(self, ec2, cidr="10.20.0.0/16", az=None):
        """`cidr`: the VPC's block (the subnet is its first /18); fleets in several accounts or
        regions on one moto need distinct blocks to have distinct addresses. `az`: the
        subnet's availability zone (default: moto's choice)."""
        self.ec2 = ec2
        vpc = ec2.create_vpc(CidrBlock=cidr, AmazonProvidedIpv6CidrBlock=True)["Vpc"]
        self.vpc = vpc["VpcId"]
        v6 = ec2.describe_vpcs(VpcIds=[self.vpc])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"][0][
            "Ipv6CidrBlock"
        ]
        sub = dict(
            VpcId=self.vpc,
            CidrBlock=str(next(ipaddress.ip_network(cidr).subnets(new_prefix=18))),
            Ipv6CidrBlock=v6.replace("/56", "/64"),
        )
        if az:
            sub["AvailabilityZone"] = az
        self.subnet = ec2.create_subnet(**sub)["Subnet"]["SubnetId"]
        self.groups = {}

    def group(self, name):
        if name not in self.groups:
            self.groups[name] = self.ec2.create_security_group(
                GroupName=name, Description=name, VpcId=self.vpc
            )["GroupId"]
        return self.groups[name]

    def launch(self, groups=("tphon",), tags=None, count=1, ipv6=False, ip=None):
        kw = dict(
            ImageId=AMI,
            MinCount=count,
            MaxCount=count,
            SubnetId=self.subnet,
            SecurityGroupIds=[self.group(g) for g in groups],
        )
        if tags:
            kw["TagSpecifications"] = [
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ]
        if ipv6:
            kw["Ipv6AddressCount"] = 1
        if ip:
            kw["PrivateIpAddress"] = ip
        return [i["InstanceId"] for i in self.ec2.run_instances(**kw)["Instances"]]

    def describe(self, ids):
        out = {}
        for r in self.ec2.describe_instances(InstanceIds=list(ids))["Reservations"]:
            for i in r["Instances"]:
                out[i["InstanceId"]] = i
        return out

    def ordered(self, ids):
        """Ids in the contract's order: launch time, then id."""
        d = self.describe(ids)
        return sorted(ids, key=lambda i: (d[i]["LaunchTime"], i))

    def ipv4(self, i):
        return self.describe([i])[i]["PrivateIpAddress"]

    def ipv6(self, i):
        inst = self.describe([i])[i]
        nic = [n for n in inst["NetworkInterfaces"] if n["Attachment"]["DeviceIndex"] == 0][0]
        return [a["Ipv6Address"] for a in nic.get("Ipv6Addresses", [])]

    def tag(self, i, **tags):
        self.ec2.create_tags(Resources=[i], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def untag(self, i, *keys):
        self.ec2.delete_tags(Resources=[i], Tags=[{"Key": k} for k in keys])
