"""An HTTP proxy of the project's own between ec2cached and moto that injects EC2 API faults.

    proxy = FaultProxy(upstream_url); proxy.start(); ...; proxy.fault = "throttle"
    proxy.page_size = 5          # rewrite DescribeInstances MaxResults, to get many pages
    proxy.fail_from = 3          # only fail DescribeInstances requests from the 3rd on

Faults: None (pass through), "repeat_token" (a page after the first names the token it was sent
as the next one), "throttle" (RequestLimitExceeded), "500", "503", "slow" (answers
after `slow_seconds`), "reset" (TCP reset, no answer), "malformed" (200 with broken XML),
"expired" (ExpiredToken).

    proxy.fault_region = "eu-west-1"   # `fault` only for DescribeInstances signed for that region
    proxy.fail_assume_role_for = "111122223333"  # STS AssumeRole into a role of that account
                                                 # answers AccessDenied
    proxy.calls[("AssumeRole", "us-east-1")]     # requests seen, by Action and signing region
    proxy.role_arns                              # RoleArn of every AssumeRole seen, in order
    proxy.assume_role_forms                      # and each one's form ({key: [values]})
"""

import collections
import http.server
import re
import socket
import struct
import threading
import time
import urllib.parse
import urllib.request


def sts_error_xml(code, message):
    return (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ).encode()


def signing_region(authorization):
    """The region of a SigV4 Authorization header's credential scope (`Credential=AKID/DATE/
    REGION/SERVICE/aws4_request`), or ""."""
    m = re.search(r"Credential=[^/]+/[^/]+/([^/]+)/", authorization or "")
    return m.group(1) if m else ""


def error_xml(code, message):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        "<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
    ).encode()


class Served:
    """start() and stop() for the loopback http.server a proxy holds in `self.server`."""

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class FaultProxy(Served):
    def __init__(self, upstream):
        self.upstream = upstream
        self.fault = None
        self.page_size = None
        self.fail_from = None
        self.slow_seconds = 3.0
        self.requests = 0
        self.faults_injected = 0
        self.fault_region = None
        self.fail_assume_role_for = None
        self.calls = collections.Counter()
        self.role_arns = []
        self.assume_role_forms = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, status, body, ctype="text/xml"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
                describe = form.get("Action") == ["DescribeInstances"]
                action = form.get("Action", [""])[0]
                region = signing_region(self.headers.get("Authorization"))
                role_arn = form.get("RoleArn", [""])[0]
                with proxy.lock:
                    proxy.calls[(action, region)] += 1
                    if action == "AssumeRole":
                        proxy.role_arns.append(role_arn)
                        proxy.assume_role_forms.append(form)
                    if describe:
                        proxy.requests += 1
                    n = proxy.requests
                    fault = proxy.fault
                    if proxy.fail_from is not None:
                        fault = fault if describe and n >= proxy.fail_from else None
                    if proxy.fault_region is not None:
                        fault = fault if describe and region == proxy.fault_region else None
                    deny = (action == "AssumeRole" and proxy.fail_assume_role_for is not None
                            and f":{proxy.fail_assume_role_for}:" in role_arn)
                    if proxy.page_size and describe:
                        form["MaxResults"] = [str(proxy.page_size)]
                        body = urllib.parse.urlencode(form, doseq=True).encode()
                    if fault or deny:
                        proxy.faults_injected += 1
                if deny:
                    return self.send(403, sts_error_xml(
                        "AccessDenied", f"User: arn:aws:iam::123456789012:user/testing is not "
                        f"authorized to perform: sts:AssumeRole on resource: {role_arn}"))
                if fault == "throttle":
                    return self.send(503, error_xml("RequestLimitExceeded", "Request limit exceeded."))
                if fault == "500":
                    return self.send(500, error_xml("InternalError", "An internal error has occurred"))
                if fault == "503":
                    return self.send(503, error_xml("Unavailable", "The service is unavailable"))
                if fault == "expired":
                    return self.send(400, error_xml("ExpiredToken", "The security token included in the request is expired"))
                if fault == "malformed":
                    return self.send(200, b"<DescribeInstancesResponse><reservationSet><item><instancesSet")
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if fault == "slow":
                    time.sleep(proxy.slow_seconds)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                req = urllib.request.Request(proxy.upstream + self.path, data=body, headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        data = r.read()
                        sent = form.get("NextToken", [""])[0]
                        if fault == "repeat_token" and sent:
                            # The API hands back the token it was sent: the next page would be
                            # this one again.
                            data = re.sub(rb"<nextToken>.*?</nextToken>", b"", data, flags=re.S)
                            data = data.replace(b"</DescribeInstancesResponse>",
                                                b"<nextToken>" + sent.encode() + b"</nextToken></DescribeInstancesResponse>")
                        self.send(r.status, data, r.headers.get("Content-Type", "text/xml"))
                except urllib.error.HTTPError as e:
                    self.send(e.code, e.read())

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
