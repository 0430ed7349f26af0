"""The audit of N installations (two secrets each), timed beside two COPY floors of the same
rows, best of three alternating runs, on several kinds of data.

    .venv/bin/python benchmarks/bench_audit.py                       # 1,000,000 rows, every data set
    .venv/bin/python benchmarks/bench_audit.py --rows 200000 --data 12,plaintext --runs 3

Data sets (benchmarks/_datagen.py): `12` and `16` (every IV 12 / 16 bytes, one planted
plaintext per 1000 rows), `mixed` (every other row 12-byte IVs, 5% of rows under the previous
key: stale-key findings), `plaintext` (every apiKey in plaintext: one finding per row).

Targets (issue 13): clean data <= 3 x psql's COPY (aim 2.5) and all-plaintext data <= 4 x,
peak RSS <= 300 MB summed over the audit's processes. The audit runs as an operator runs it —
`python -m toolkit audit --format json` in a subprocess, interpreter start and imports
included. Its memory is sampled every 10 ms over the process and its children (/proc VmRSS,
summed); each process's own peak (VmHWM) is summed too, an upper bound.

The floors: psycopg2's `COPY (SELECT …) TO STDOUT` into a sink that drops every row (the
floor earlier runs used), and psql's `\copy (select …) to /dev/null` (the floor of the issue).
Each run times the three in turn (COPY, \copy, audit), three runs, and the best of each
counts; a first untimed COPY warms the cache. The machine is often shared: the script prints
the audit's CPU seconds (its processes, reaped) and the load average before and after.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _datagen  # noqa: E402

ROOT = _datagen.ROOT
COPY_SQL = ("COPY (SELECT id, user_id, app_id, status, config, installed_at, updated_at "
            "FROM app_installations) TO STDOUT")
CURRENT_KEY = "5f" * 32
PREVIOUS_KEY = "a0" * 32  # the `mixed` data's rotated-out key (ENCRYPTION_KEY_PREVIOUS)


class _Discard:
    """A COPY sink that drops every row (a C-level write: the floor is the database's)."""

    def __init__(self):
        self.write = collections.deque(maxlen=0).append


def _cpu_seconds(pid: int) -> float:
    """user + system CPU of a process (the PostgreSQL backend serving our COPY)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_copy(dsn: str) -> tuple[float, float]:
    """(wall seconds, the backend's CPU seconds) of the COPY floor."""
    connection = psycopg2.connect(dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
            connection.commit()
            cpu = _cpu_seconds(backend)
            started = time.perf_counter()
            cursor.copy_expert(COPY_SQL, _Discard())
            return time.perf_counter() - started, _cpu_seconds(backend) - cpu
    finally:
        connection.close()


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
    except OSError:
        pass
    return found


def _memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of one process in kB; zeros once it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


class TreeMemory(threading.Thread):
    """Samples the summed RSS of a process and all its descendants."""

    def __init__(self, pid: int, interval: float = 0.01):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self.processes: set[int] = set()
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            pids, stack = [], [self.pid]
            while stack:
                pid = stack.pop()
                pids.append(pid)
                stack += _children(pid)
            total = 0
            for pid in pids:
                rss, hwm = _memory_kb(pid)
                total += rss
                if hwm:
                    self.hwm_kb[pid] = max(hwm, self.hwm_kb.get(pid, 0))
            self.processes.update(pids)
            self.peak_kb = max(self.peak_kb, total)
            self.done.wait(self.interval)


def run_audit(url: str, registry: Path, jobs: int | None, output: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "ENCRYPTION_KEY", "TOOLKIT_"))}
    # A fresh audit store per run (output's folder is the run's own): the run is an operator's
    # first full audit, saved as every audit is, and nothing lands in the user's state dir.
    env.update(DATABASE_URL=url, ENCRYPTION_KEY=CURRENT_KEY, ENCRYPTION_KEY_PREVIOUS=PREVIOUS_KEY,
               TOOLKIT_REGISTRY=str(registry), TOOLKIT_STATE_DIR=str(output.parent / f"state-{time.time_ns()}"))
    command = [sys.executable, "-m", "toolkit", "audit", "--format", "json", "--output", str(output),
               "--fail-on", "never"]
    if jobs is not None:
        command += ["--jobs", str(jobs)]
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    memory = TreeMemory(process.pid)
    memory.start()
    _, stderr = process.communicate()
    wall = time.perf_counter() - started
    memory.done.set()
    memory.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the audit and its workers, reaped
    cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    if process.returncode != 0:
        raise SystemExit(f"audit failed with exit code {process.returncode}: {stderr.strip()}")
    summary = json.loads(output.read_text())["summary"]
    return {"wall": wall, "cpu": cpu, "summary": summary, "peak_mb": memory.peak_kb / 1024,
            "hwm_sum_mb": sum(memory.hwm_kb.values()) / 1024, "processes": len(memory.processes),
            "command": " ".join(command[1:])}


DATA_SETS = {
    "12": dict(iv_length=12),
    "16": dict(iv_length=16),
    "mixed": dict(iv_length="mixed", previous_share=0.05),
    "plaintext": dict(iv_length=16, plaintext_share=1.0),
}


def time_psql_copy(dsn: str) -> float:
    """Wall seconds of psql's `\\copy (select …) to /dev/null` (client start included)."""
    select = COPY_SQL[len("COPY ("):-len(") TO STDOUT")]
    started = time.perf_counter()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", dsn, "-c", f"\\copy ({select}) to /dev/null"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def bench(name: str, url: str, dsn: str, registry: Path, jobs, runs: int, output: Path) -> dict:
    time_copy(dsn)  # warm the cache: every timed run reads the same pages
    copies, psqls, audits = [], [], []
    for _ in range(runs):  # alternating, so a busy moment of the machine hits all three alike
        copies.append(time_copy(dsn))
        psqls.append(time_psql_copy(dsn))
        audits.append(run_audit(url, registry, jobs, output))
    best = min(audits, key=lambda a: a["wall"])
    copy = min(c[0] for c in copies)
    psql = min(psqls)
    return {"data": name, "copy": copy, "psql": psql, "audit": best,
            "peak_mb": max(a["peak_mb"] for a in audits), "hwm_mb": max(a["hwm_sum_mb"] for a in audits)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="installations (default 1,000,000)")
    parser.add_argument("--data", default=",".join(DATA_SETS), help=f"data sets, comma-separated ({', '.join(DATA_SETS)})")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs; the best counts (default 3)")
    parser.add_argument("--jobs", type=int, default=None, help="audit --jobs (default: the audit's default)")
    parser.add_argument("--keep", action="store_true", help="keep the databases (their names are printed)")
    args = parser.parse_args(argv)
    wanted = [d.strip() for d in args.data.split(",") if d.strip()]
    unknown = [d for d in wanted if d not in DATA_SETS]
    if unknown:
        parser.error(f"unknown data set {', '.join(unknown)}; choose from {', '.join(DATA_SETS)}")

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    results = []
    for data in wanted:
        name = _datagen.create_database(f"bench_audit_{data}")
        try:
            started = time.perf_counter()
            keys = [bytes.fromhex(CURRENT_KEY), bytes.fromhex(PREVIOUS_KEY)]
            stats = _datagen.fill(_datagen.dsn(name), args.rows, keys, **DATA_SETS[data])
            print(f"[{data}] generated {stats['installations']:,} installations, {stats['users']:,} users in "
                  f"{time.perf_counter() - started:.1f} s (table {stats['table_size']}) — database {name}")
            with tempfile.TemporaryDirectory() as tmp:
                registry = _datagen.write_registry(Path(tmp) / "registry.json")
                result = bench(data, _datagen.url(name), _datagen.dsn(name), registry, args.jobs, args.runs,
                               Path(tmp) / "report.json")
            results.append(result)
            _print(result)
        finally:
            if args.keep:
                print(f"kept database {name}")
            else:
                _datagen.drop_database(name)
    print()
    print(f"{'data':<10} {'psql':>6} {'COPY':>6} {'audit':>7} {'/psql':>6} {'/COPY':>6} {'CPU s':>6} "
          f"{'RSS MB':>7} {'findings':>9}")
    for r in results:
        a = r["audit"]
        print(f"{r['data']:<10} {r['psql']:>6.2f} {r['copy']:>6.2f} {a['wall']:>7.2f} {a['wall'] / r['psql']:>6.2f} "
              f"{a['wall'] / r['copy']:>6.2f} {a['cpu']:>6.2f} {r['peak_mb']:>7.0f} {a['summary']['findings']:>9,}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if results:
        print(f"command: {results[0]['audit']['command']}")
    return 0


def _print(r: dict) -> None:
    a, summary = r["audit"], r["audit"]["summary"]
    print(f"[{r['data']}] psql \\copy … to /dev/null {r['psql']:.2f} s, COPY … TO STDOUT {r['copy']:.2f} s (best of each)")
    print(f"[{r['data']}] audit {a['wall']:.2f} s wall (best; {summary['duration_s']:.2f} s inside run_audit), "
          f"{a['cpu']:.2f} s CPU, {summary['installations']:,} installations, {summary['secrets_decrypted']:,} "
          f"secrets decrypted, {summary['findings']:,} findings, jobs={summary['jobs']}")
    print(f"[{r['data']}] ratio audit / psql {a['wall'] / r['psql']:.2f}, / COPY {a['wall'] / r['copy']:.2f}; "
          f"peak RSS {r['peak_mb']:.0f} MB summed (max over runs; sum of each process's peak {r['hwm_mb']:.0f} MB); "
          f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
