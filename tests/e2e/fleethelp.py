"""Helpers for the fleet tests (test_fleet.py): hosts configured as pollers or followers, their
`ec2cached run` processes, the S3 bucket on moto, and an HTTP proxy of our own between the
followers and moto that counts every request (EC2 apart from S3) and can stop S3.

    proxy = S3Proxy(moto_url).start()
    proxy.fault = "slowdown"     # S3 answers 503 SlowDown; "reset": TCP reset; "404": NoSuchKey;
                                 # "403": AccessDenied; None: pass through
    proxy.ec2_delay = 2.0        # hold every DescribeInstances answer this long (a slow sweep
                                 # that saw the fleet as it was when it started)
    proxy.count("ec2"), proxy.count("s3", status=304), proxy.bytes("s3", status=200)
"""

import http.client
import http.server
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import boto3
from botocore.config import Config

from conftest import EC2CACHED, REGION, Host
from faultproxy import Served

BUCKET = "fleet"
KEY = "hosts.snap"
URL = f"s3://{BUCKET}/{KEY}"
OUTCOMES = ("unchanged", "installed", "refused_signature", "refused_rollback", "refused_corrupt",
            "refused_domain", "error")


def wait_for(pred, timeout=30.0, step=0.1):
    """Polls `pred` until it is true or `timeout` seconds passed; returns its last value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


def generation(data):
    """The snapshot's generation: header bytes 24..32, u64 LE unix seconds (of the sweep)."""
    return struct.unpack_from("<Q", data, 24)[0]


def toml_value(v):
    # JSON strings, numbers, booleans and lists of them are TOML too (paths here are plain).
    return json.dumps(v)


def write_config(path, top, sections):
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for name, keys in sections.items():
        if keys is None:
            continue
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in keys.items()]
    Path(path).write_text("\n".join(lines) + "\n")


class Node(Host):
    """A host of the fleet: its own private directory, config, snapshot, status file and log.

    A poller (the default, `regions` set) or a follower (`follow(...)`: no region, no naming key).
    `extra_env` goes into every command's environment (e.g. AWS_ENDPOINT_URL_EC2 for a trap).
    """

    def __init__(self, parent, name, moto_url, extra_env=None):
        d = Path(parent) / name
        d.mkdir(mode=0o755)
        os.chmod(d, 0o755)
        self.extra_env = dict(extra_env or {})
        self.name = name
        self.log_path = d / "ec2cached.log"
        super().__init__(d, moto_url)

    def env(self, **extra):
        return super().env(**{**self.extra_env, **extra})

    def poller(self, publish=None, **keys):
        """A poller's config: regions (unless given), top-level KEYS, and [publish] if given."""
        keys.setdefault("snapshot", str(self.snapshot))
        keys.setdefault("regions", [REGION])
        write_config(self.config, keys, {"publish": publish})
        return self

    def follower(self, trusted_keys, url=URL, **keys):
        """A follower's config: snapshot, interval (and other top-level KEYS), [follow]."""
        order = ["url", "trusted_keys", "fleet", "max_size", "max_age"]
        follow = {k: v for k, v in keys.items() if k in order}
        top = {k: v for k, v in keys.items() if k not in follow}
        top.setdefault("snapshot", str(self.snapshot))
        if url is not None:
            follow["url"] = url
        elif trusted_keys:
            # `install` only: the fleet is named (the pollers' default, their url).
            follow.setdefault("fleet", URL)
        follow["trusted_keys"] = list(trusted_keys)
        # url first, as the packaged config shows it.
        follow = dict(sorted(follow.items(), key=lambda kv: order.index(kv[0])))
        write_config(self.config, top, {"follow": follow})
        return self

    def keygen(self, name="signing.key"):
        """`ec2cached keygen --secret DIR/NAME`: (path, public key line)."""
        path = self.dir / name
        r = self.ec2cached("keygen", "--secret", str(path))
        return path, r.stdout.strip()

    def status_file(self):
        """The status file's JSON (empty before the first write)."""
        try:
            return json.loads((self.dir / (self.snapshot.name + ".status")).read_text())
        except (OSError, ValueError):
            return {}

    def outcome(self):
        return self.status_file().get("follow_outcome")

    def answer(self, name="postgres.tphon.ec2"):
        """What `getent hosts NAME` answers through the module: (exit code, addresses)."""
        return self.hosts(name)

    def snap_bytes(self):
        try:
            return self.snapshot.read_bytes()
        except FileNotFoundError:
            return None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Daemons:
    """`ec2cached run` processes, each logging to its node's log file; all stopped at the end."""

    def __init__(self):
        self.procs = []

    def start(self, node, env=None):
        log = open(node.log_path, "ab")
        try:
            p = subprocess.Popen([EC2CACHED, "--config", str(node.config), "run"],
                                 env=env or node.env(), stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
        finally:
            log.close()
        p.node = node
        self.procs.append(p)
        return p

    def stop(self, p, timeout=20):
        """SIGTERM, then the exit code (killed, and None, if it did not stop in time)."""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return None

    def stop_all(self, timeout=20):
        """Stops every process still running (SIGTERM to all first, then waits); their codes."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        codes = {}
        for p in self.procs:
            try:
                codes[p.node.name] = p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                codes[p.node.name] = None
        self.procs = []
        return codes

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []


def s3_client(url):
    return boto3.client("s3", endpoint_url=url, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(s3={"addressing_style": "path"}))


class Bucket:
    """The fleet's bucket on moto, read and written with boto3 behind ec2cached's back."""

    def __init__(self, url, name=BUCKET):
        self.s3 = s3_client(url)
        self.name = name
        self.s3.create_bucket(Bucket=name)

    def get(self, key=KEY):
        """The object's bytes, or None when there is none."""
        try:
            return self.s3.get_object(Bucket=self.name, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None

    def etag(self, key=KEY):
        try:
            return self.s3.head_object(Bucket=self.name, Key=key)["ETag"]
        except Exception:  # noqa: BLE001 (404 comes as a bare ClientError on HEAD)
            return None

    def put(self, data, key=KEY):
        return self.s3.put_object(Bucket=self.name, Key=key, Body=data)["ETag"]

    def generation(self, key=KEY):
        data = self.get(key)
        return None if data is None else generation(data)


S3_ERRORS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "404": (404, "NoSuchKey", "The specified key does not exist."),
    "403": (403, "AccessDenied", "Access Denied"),
}
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
       "expect", "host", "content-length"}


def s3_error(code, message):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}'
            "</Message><RequestId>0000000000000000</RequestId></Error>").encode()


def classify(method, path, body):
    """("ec2", Action) for an EC2 Query API request, ("s3", METHOD) for anything else."""
    query = urllib.parse.urlsplit(path).query
    for src in (query, body.decode("latin-1") if method == "POST" else ""):
        action = urllib.parse.parse_qs(src).get("Action")
        if action:
            return "ec2", action[0]
    return "s3", method


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that went away mid-answer (a daemon stopped by the test) is no error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class S3Proxy(Served):
    """An HTTP proxy to moto that records every request (kind, action/method, path, status,
    body bytes sent back) and injects S3 faults (`fault`) or holds DescribeInstances answers
    (`ec2_delay`). `upstream=None`: a trap that answers every request 403 (and counts it)."""

    def __init__(self, upstream):
        self.upstream = urllib.parse.urlsplit(upstream) if upstream else None
        self.fault = None
        self.ec2_delay = 0.0
        self.log = []
        self.answered = []  # (kind, what) as soon as moto answered, before any ec2_delay
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def read_body(self):
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

            def record(self, kind, what, status, nbytes):
                with proxy.lock:
                    proxy.log.append((kind, what, self.command, self.path, status, nbytes))

            def reply(self, status, body, headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                if status not in (204, 304):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body and self.command != "HEAD" and status not in (204, 304):
                    self.wfile.write(body)

            def reset(self):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            def forward(self):
                body = self.read_body()
                kind, what = classify(self.command, self.path, body)
                if proxy.upstream is None:
                    self.record(kind, what, 403, 0)
                    return self.reply(403, s3_error("AccessDenied", "trap: nothing may call this endpoint"),
                                      [("Content-Type", "application/xml")])
                fault = proxy.fault if kind == "s3" else None
                if fault == "reset":
                    self.record(kind, what, "reset", 0)
                    return self.reset()
                if fault in S3_ERRORS:
                    status, code, msg = S3_ERRORS[fault]
                    self.record(kind, what, status, 0)
                    return self.reply(status, s3_error(code, msg), [("Content-Type", "application/xml")])
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    rheaders = [(k, v) for k, v in r.getheaders() if k.lower() not in HOP]
                    if self.command == "HEAD" and r.getheader("Content-Length"):
                        rheaders.append(("Content-Length", r.getheader("Content-Length")))
                    status = r.status
                finally:
                    conn.close()
                with proxy.lock:
                    proxy.answered.append((kind, what))
                if kind == "ec2" and what == "DescribeInstances" and proxy.ec2_delay:
                    time.sleep(proxy.ec2_delay)
                self.record(kind, what, status, 0 if self.command == "HEAD" else len(data))
                if self.command == "HEAD":
                    self.send_response(status)
                    for k, v in rheaders:
                        self.send_header(k, v)
                    self.end_headers()
                    return
                self.reply(status, data, rheaders)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = forward

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def entries(self, kind=None, what=None, status=None, since=0):
        with self.lock:
            log = list(self.log[since:])
        return [e for e in log if (kind is None or e[0] == kind) and (what is None or e[1] == what)
                and (status is None or e[4] == status)]

    def count(self, kind=None, what=None, status=None, since=0):
        return len(self.entries(kind, what, status, since))

    def bytes(self, kind=None, what=None, status=None, since=0):
        return sum(e[5] for e in self.entries(kind, what, status, since))

    def mark(self):
        """A position in the log, for counting only what comes after it."""
        with self.lock:
            return len(self.log)

    def answered_since(self, mark, what):
        """Requests WHAT that moto answered after `mark_answered()` returned MARK."""
        with self.lock:
            return sum(1 for _, w in self.answered[mark:] if w == what)

    def mark_answered(self):
        with self.lock:
            return len(self.answered)
