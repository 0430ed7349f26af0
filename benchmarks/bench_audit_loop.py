"""The audit's per-row cost in instructions, without a database: repeatable on a busy machine.

Builds COPY lines like the engine's query emits (two secrets, a select and an email per
installation, as benchmarks/_datagen.py writes them) and feeds them to `row_auditor.Auditor` in
batches, as a worker does. Run under callgrind twice, with N and 2N rows: the difference of
the two totals divided by N is the cost of one row, with interpreter start-up and imports
cancelled out.

    python benchmarks/bench_audit_loop.py --iv 12            # wall-clock µs per row
    python benchmarks/bench_audit_loop.py --callgrind        # instructions per row, 12 and 16-byte IVs and mixed

`--callgrind` runs valgrind itself. Point PYTHONPATH at another checkout to compare versions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

CURRENT, PREVIOUS = bytes([7]) * 32, bytes([8]) * 32


def copy_lines(rows: int, iv_length: int | str, previous_share: float) -> list[bytes]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    ciphers = (AESGCM(CURRENT), AESGCM(PREVIOUS))
    lines = []
    for n in range(1, rows + 1):
        config = {}
        for key in ("apiKey", "webhookSecret"):
            size = (12 if n % 2 else 16) if iv_length == "mixed" else iv_length
            under = 1 if previous_share and n % round(1 / previous_share) == 0 else 0
            iv = os.urandom(size)
            sealed = ciphers[under].encrypt(iv, f"secret-{key}-{n}".encode(), None)
            config[key] = f"{iv.hex()}:{sealed[-16:].hex()}:{sealed[:-16].hex()}"
        config.update(region="eu", accountEmail=f"ops{n % 997}@example.com")
        lines.append(b"%d\t%d\tstripe\tconfigured\t\t%s\n" % (n, n // 3 + 1, json.dumps(config).encode()))
    return lines


def audit(lines) -> float:
    from _datagen import REGISTRY

    from toolkit.audit.row_auditor import Auditor
    from toolkit.crypto import Keyring
    from toolkit.registry import parse_registry

    auditor = Auditor(parse_registry(REGISTRY), Keyring.from_materials([CURRENT, PREVIOUS]))
    started = time.process_time()
    for start in range(0, len(lines), 16384):
        auditor.write_many(lines[start:start + 16384])
    return time.process_time() - started


def instructions(rows: int, iv: str, previous_share: float) -> int:
    """callgrind's total for auditing `rows` lines, which are made beforehand (encrypting them
    is not counted) and read from a file by the measured process (a few instructions a line)."""
    with tempfile.TemporaryDirectory() as folder:
        out, data = Path(folder) / "callgrind.out", Path(folder) / "lines"
        data.write_bytes(b"".join(copy_lines(rows, iv if iv == "mixed" else int(iv), previous_share)))
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
             "--lines", str(data), "--quiet"],
            check=True, capture_output=True, env=os.environ,
        )
        summary = re.search(rb"^summary: (\d+)", out.read_bytes(), re.M)
        return int(summary.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--iv", default="16", help="12, 16 or mixed")
    parser.add_argument("--previous-share", type=float, default=0.0, help="share of secrets under the previous key")
    parser.add_argument("--callgrind", action="store_true", help="instructions per row (needs valgrind)")
    parser.add_argument("--lines", type=Path, help=argparse.SUPPRESS)  # the measured child's input
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    iv = args.iv if args.iv == "mixed" else int(args.iv)
    if args.callgrind:
        for label, iv_arg, share in (("12-byte IVs", "12", 0.0), ("16-byte IVs", "16", 0.0),
                                     ("mixed IVs, 10% previous key", "mixed", 0.1)):
            low = instructions(args.rows, iv_arg, share)
            high = instructions(2 * args.rows, iv_arg, share)
            print(f"{label:<30} {(high - low) / args.rows:>10,.0f} instructions per row")
        return
    if args.lines:
        lines = args.lines.read_bytes().splitlines(keepends=True)
    else:
        lines = copy_lines(args.rows, iv, args.previous_share)  # outside the measured part
    seconds = audit(lines)
    if not args.quiet:
        print(f"{args.rows} rows, IV {args.iv}: {seconds / args.rows * 1e6:.2f} µs CPU per row")


if __name__ == "__main__":
    main()
