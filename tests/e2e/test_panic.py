"""A bug in the module must not hurt the program that loaded it.

The module is built a second time with the test-only `panic-probe` feature (tests/run: build_probe,
staged in NSS_EC2_PROBE_LIBDIR); with NSS_EC2_PANIC_PROBE set, every lookup panics inside it.
Through the real glibc the program must see UNAVAIL (the next source answers), print nothing, keep
running, and keep resolving.
"""

import os
import subprocess
import sys

import pytest

PROBE_LIBDIR = os.environ.get("NSS_EC2_PROBE_LIBDIR")


@pytest.fixture
def probe(host):
    assert PROBE_LIBDIR, "NSS_EC2_PROBE_LIBDIR is unset: run tests/run, which builds the probe module"
    assert os.path.exists(os.path.join(PROBE_LIBDIR, "libnss_ec2.so.2"))
    return host.env(LD_LIBRARY_PATH=PROBE_LIBDIR, NSS_EC2_PANIC_PROBE="1")


def getent(env, *args, services="ec2"):
    return subprocess.run(["getent", "-s", f"hosts:{services}", *args], env=env, capture_output=True,
                          text=True, timeout=30)


def test_a_panic_in_every_entry_point_is_unavail_and_silent(fleet, host, probe):
    a = fleet.launch(tags={"services": "postgres"})[0]
    host.refresh()
    ip = fleet.ipv4(a)
    # The probe build answers like the real one when the probe is off.
    quiet = dict(probe)
    del quiet["NSS_EC2_PANIC_PROBE"]
    assert getent(quiet, "hosts", "postgres.tphon.ec2").stdout.split()[0] == ip

    for args in (["hosts", "postgres.tphon.ec2"], ["ahosts", "postgres.tphon.ec2"],
                 ["ahostsv4", "postgres.tphon.ec2"], ["ahostsv6", "postgres.tphon.ec2"],
                 ["hosts", ip], ["hosts", "::ffff:" + ip]):
        r = getent(probe, *args)
        # 2: not found (UNAVAIL from the only source), not a signal: the process was not aborted.
        assert (r.returncode, r.stdout, r.stderr) == (2, "", ""), args
    # Enumeration: nothing listed, nothing printed, a clean exit.
    r = getent(probe, "hosts")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_after_a_panic_the_next_source_answers_and_the_program_goes_on(fleet, host, probe, tmp_path):
    fleet.launch(tags={"services": "postgres"})
    host.refresh()
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.99.0.1 postgres.tphon.ec2\n")
    code = (
        "import ctypes, socket\n"
        "libc = ctypes.CDLL(None)\n"
        "assert libc.__nss_configure_lookup(b'hosts', b'ec2 files') == 0\n"
        "for _ in range(200):\n"
        "    assert socket.gethostbyname('postgres.tphon.ec2') == '10.99.0.1'\n"
        "    assert socket.getaddrinfo('postgres.tphon.ec2', 5432)[0][4][0] == '10.99.0.1'\n"
        "print('alive')\n"
    )
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f'mount --bind {hosts} /etc/hosts && exec "$@"', "sh", sys.executable, "-c", code],
                       env=probe, capture_output=True, text=True, timeout=60)
    # UNAVAIL from the panicking module hands the lookup to `files`, 400 times in one process.
    assert (r.returncode, r.stdout, r.stderr) == (0, "alive\n", "")
