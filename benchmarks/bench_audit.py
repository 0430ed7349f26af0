"""The audit of N installations (two encrypted secrets each), timed beside the floor
`COPY (SELECT …) TO STDOUT` of the same rows, in one run.

    .venv/bin/python benchmarks/bench_audit.py                  # 1,000,000 installations
    .venv/bin/python benchmarks/bench_audit.py --rows 200000 --jobs 2 --keep

Targets (issue 5): audit time <= 3 x the COPY time, peak RSS <= 300 MB summed over the audit's
processes. The audit runs as an operator runs it — `python -m toolkit audit --format json` in a
subprocess — and its time is that process's wall time (interpreter start and imports
included). Its memory is sampled every 10 ms over the process and its children (/proc VmRSS,
summed) — and each process's own peak (VmHWM) is summed too, an upper bound.
The COPY floor streams the same rows to a sink that discards them, once before and once after
the audit (the mean is the baseline); a first untimed COPY warms the cache for both.

The machine is often shared (other jobs, CI): the script also prints the CPU seconds the audit's
processes used, plus one COPY's worth for its database backends, halved — what the run would
take with both cores to itself — next to the load average.
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
    env.update(DATABASE_URL=url, ENCRYPTION_KEY=CURRENT_KEY, TOOLKIT_REGISTRY=str(registry))
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="installations (default 1,000,000)")
    parser.add_argument("--jobs", type=int, default=None, help="audit --jobs (default: the audit's default)")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--database", help="reuse an existing bench database instead of creating one")
    args = parser.parse_args(argv)

    name = args.database
    if name is None:
        name = _datagen.create_database("bench_audit")
        started = time.perf_counter()
        stats = _datagen.fill(_datagen.dsn(name), args.rows, [bytes.fromhex(CURRENT_KEY)])
        print(f"generated {stats['installations']:,} installations, {stats['users']:,} users, "
              f"{2 * stats['installations']:,} secrets in {time.perf_counter() - started:.1f} s "
              f"(table {stats['table_size']}) — database {name}")
    try:
        dsn = _datagen.dsn(name)
        with tempfile.TemporaryDirectory() as tmp:
            registry = _datagen.write_registry(Path(tmp) / "registry.json")
            time_copy(dsn)  # warm the cache: both timed runs read the same pages
            copy_before, pg_before = time_copy(dsn)
            audit = run_audit(_datagen.url(name), registry, args.jobs, Path(tmp) / "report.json")
            copy_after, pg_after = time_copy(dsn)
        copy = (copy_before + copy_after) / 2
        pg_cpu = (pg_before + pg_after) / 2
        summary = audit["summary"]
        ratio = audit["wall"] / copy
        print(f"COPY (SELECT …) TO STDOUT  {copy_before:.2f} s before, {copy_after:.2f} s after the audit "
              f"(baseline {copy:.2f} s)")
        print(f"audit                      {audit['wall']:.2f} s wall ({summary['duration_s']:.2f} s inside "
              f"run_audit), {summary['installations']:,} installations, {summary['secrets_decrypted']:,} "
              f"secrets decrypted, {summary['findings']:,} findings, jobs={summary['jobs']}")
        print(f"ratio audit / COPY         {ratio:.2f}  (target <= 3)")
        # What the same work would take with both cores to itself: the audit's processes'
        # CPU plus its backends' (about one COPY's worth), shared by two cores — against the
        # COPY's own CPU time, which is its wall time on an idle machine.
        idle = (audit["cpu"] + pg_cpu) / 2
        print(f"CPU                        audit processes {audit['cpu']:.2f} s, COPY backend {pg_cpu:.2f} s: "
              f"on two idle cores ~{idle:.2f} s vs ~{pg_cpu:.2f} s, ratio ~{idle / pg_cpu:.2f} "
              f"(load average {os.getloadavg()[0]:.2f})")
        print(f"peak RSS                   {audit['peak_mb']:.0f} MB summed over {audit['processes']} processes "
              f"(sum of each process's own peak: {audit['hwm_sum_mb']:.0f} MB; target <= 300)")
        print(f"command                    {audit['command']}")
    finally:
        if args.keep or args.database:
            print(f"kept database {name}")
        else:
            _datagen.drop_database(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
