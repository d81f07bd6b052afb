hosts before=dns,resolve ec2 [NOTFOUND=return] skip-if-present=ec2
hosts remove-only ec2
