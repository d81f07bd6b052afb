"""Issue 22: the feed and its operations, through the real binary.

Each test failed on the code before the fix it names.
"""

import subprocess

from conftest import EC2CACHED, ROOT
from test_facts_metrics import imds  # noqa: F401 (a fixture)


def test_run_without_a_follow_url_is_a_configuration_error_the_unit_does_not_restart(tmp_path):
    """`[follow]` without `url` made `run` exit 1, and systemd restarted it every 5 s for ever.
    Now it is exit 2, a configuration error, which the unit does not restart."""
    cfg = tmp_path / "ec2cached.toml"
    cfg.write_text(f'snapshot = "{tmp_path}/hosts.snap"\n[follow]\n')
    r = subprocess.run([EC2CACHED, "--config", str(cfg), "run"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "[follow] has no `url`" in r.stderr and str(cfg) in r.stderr, r.stderr
    unit = (ROOT / "debian" / "ec2cached.service").read_text().splitlines()
    assert "RestartPreventExitStatus=2" in unit
    assert "Restart=on-failure" in unit
    # `install` on such a host is still what it is for.
    r = subprocess.run([EC2CACHED, "--config", str(cfg), "install", "/dev/null"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "not a regular file" in r.stderr, r.stderr


def test_install_of_a_fifo_is_refused_at_once(tmp_path):
    """`ec2cached install FIFO` hung for ever: it opened the file before checking its type."""
    import os
    fifo = tmp_path / "snap.fifo"
    os.mkfifo(fifo)
    cfg = tmp_path / "ec2cached.toml"
    cfg.write_text(f'snapshot = "{tmp_path}/hosts.snap"\n')
    r = subprocess.run([EC2CACHED, "--config", str(cfg), "install", str(fifo)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 1, r
    assert r.stderr.strip() == f"ec2cached: cannot read {fifo}: not a regular file", r.stderr


def test_sigterm_is_served_while_a_publish_waits_for_the_writers_lock(fleet, host):
    """Issue 22, item 12: the daemon waited for the writers' lock (up to 10 s, another writer
    beside it) on its only runtime thread, and SIGTERM waited with it. Now the wait is off the
    runtime: the daemon exits at once, cleanly, and the lock holder's snapshot is untouched."""
    import fcntl
    import os
    import signal
    import time

    fleet.launch(tags={"services": "redis"})
    host.configure(interval=1)
    lock = open(f"{host.snapshot}.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    d = subprocess.Popen([EC2CACHED, "--config", str(host.config), "run"], env=host.env(),
                         stderr=subprocess.PIPE, text=True)
    try:
        # Wait until the daemon holds the lock file open: its publish is waiting for the lock.
        lock_path = os.path.realpath(f"{host.snapshot}.lock")

        def waiting():
            fds = f"/proc/{d.pid}/fd"
            return any(os.path.realpath(os.path.join(fds, n)) == lock_path for n in os.listdir(fds))

        deadline = time.monotonic() + 20
        while not waiting() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting(), "the daemon never came to wait for the writers' lock"
        time.sleep(0.5)
        assert d.poll() is None
        sent = time.monotonic()
        d.send_signal(signal.SIGTERM)
        code = d.wait(timeout=15)
        took = time.monotonic() - sent
    finally:
        if d.poll() is None:
            d.kill()
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    err = d.stderr.read()
    assert code == 0, err
    assert took < 3, f"SIGTERM took {took:.1f} s to be served: {err[-1500:]}"
    assert not host.snapshot.exists(), "nothing was published under another writer's lock"



def test_facts_keep_a_service_whole_when_a_name_ends_like_it(fleet, host, imds):
    """Issue 22, item 18: a [[name]] `postgres.tphon` made `facts` list the service
    `readonly.postgres` (of group tphon) as `readonly`: the longest set ending the service's
    name was stripped. Now the service's own set is (a zone's, never a [[name]])."""
    import json

    from test_facts_metrics import facts_env, tphon

    f = tphon(fleet)
    me = f["me"]
    host.config.write_text(
        f'snapshot = "{host.snapshot}"\nregions = ["us-east-1"]\n'
        '[[zone]]\nkey = "security-group"\nservices = true\n'
        '[[name]]\nname = "postgres.tphon"\nmatch = ["tag:services"]\n')
    host.refresh()
    got = json.loads(host.ec2cached("facts", env=facts_env(host, imds(me).url)).stdout)
    assert got["services"] == ["postgres", "readonly.postgres"], got
    assert "postgres.tphon" in got["groups"], got
    assert host.hosts("readonly.postgres.tphon.ec2") == (0, [fleet.ipv4(me)])
