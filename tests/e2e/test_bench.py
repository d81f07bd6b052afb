"""The benchmark (`bench/bench.py`, what `bench/run` runs) keeps working: a small run of it, through
the real glibc, DNS, nscd and the floor modules, produces every section of its report.

Only that it runs and reports is checked here, never a timing: the figures are for
docs/benchmarks.md, made by a full `bench/run`.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def test_bench_reports_every_source_and_target(tmp_path):
    out = tmp_path / "benchmarks.md"
    env = {**os.environ, "CARGO_TARGET_DIR": str(TARGET), "BENCH_SIZES": "10 200", "BENCH_ITER": "300",
           "BENCH_OUT": str(out)}
    r = subprocess.run([sys.executable, str(ROOT / "bench/bench.py")], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text in r.stdout  # printed and written alike

    def section(title):
        m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
        assert m, f"no section {title!r} in:\n{text}"
        return m.group(1)

    def rows(body):
        return [[c.strip() for c in line.strip("|").split("|")] for line in body.splitlines()
                if line.startswith("|") and not line.startswith("|---")][1:]

    # Every target has a row, a figure, and a verdict; the summary line agrees with the table.
    targets = rows(section("Targets"))
    assert len(targets) == 10
    assert all(t[3] in ("met", "**not met**") and t[2] for t in targets)
    met = sum(t[3] == "met" for t in targets)
    assert f"targets: {met} of 10 met" in r.stdout

    # One row per fleet size, with the number of names ec2cached published for it.
    published = [int(n) for n in re.findall(r"published \S+: (\d+) names", r.stderr)]
    for family in ("AF_UNSPEC", "AF_INET"):
        lookups = rows(section(f"Lookups by fleet size, {family} (p50 / p99 µs)"))
        assert [row[0] for row in lookups] == ["10", "200"]
        assert [int(row[1]) for row in lookups] == published
        for row in lookups:
            for cell in row[2:8]:  # ec2, files and DNS, hit and miss
                p50, p99 = (float(x) for x in cell.split(" / "))
                assert 0 < p50 <= p99

    # nscd ran (a hit through it is only counted when its source was hidden, see bench.py).
    nscd = rows(section("Through nscd (p50 / p99 µs)"))
    assert [(row[0], row[1]) for row in nscd] == [(n, f) for n in ("10", "200") for f in ("AF_UNSPEC", "AF_INET")]
    assert [row[0] for row in rows(section("A new process's first lookup"))] == ["10", "200"]
    assert [row[0] for row in rows(section("Memory per process"))] == ["10", "200"]
    daemon = rows(section("The daemon: `ec2cached refresh --from-file`"))
    assert [int(row[4]) > 0 for row in daemon] == [True, True]
    assert "NEEDED: " in section("The module")
