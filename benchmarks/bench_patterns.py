"""`re` vs `regex` (with timeout=) on the normal path of check_value: typical registry patterns
against typical valid and invalid values. Prints µs per match; not a test.

    .venv/bin/python benchmarks/bench_patterns.py
"""

from __future__ import annotations

import re
import timeit

import regex

CASES = [
    (r"AC[0-9a-f]{32}", "AC" + "0123456789abcdef" * 2),
    (r"^https://", "https://hooks.example.com/stripe/webhook"),
    (r"^sk_(live|test)_[A-Za-z0-9]{24,}\Z", "sk_live_" + "A1b2C3d4" * 4),
    (r"[a-z0-9-]+\.slack\.com", "acme-corp.slack.com"),
    (r"\d{3}-\d{4}", "12-34567"),  # invalid
]
TIMEOUT = 0.1


def main() -> None:
    n = 200_000
    print(f"{'pattern':40} {'re µs':>8} {'regex µs':>9} {'regex+timeout µs':>17} {'ratio':>6}")
    for pattern, value in CASES:
        plain = re.compile(pattern, re.ASCII).fullmatch
        other = regex.compile(pattern, regex.ASCII).fullmatch
        t_re = min(timeit.repeat(lambda: plain(value), number=n, repeat=3)) / n * 1e6
        t_rx = min(timeit.repeat(lambda: other(value), number=n, repeat=3)) / n * 1e6
        t_to = min(timeit.repeat(lambda: other(value, timeout=TIMEOUT), number=n, repeat=3)) / n * 1e6
        print(f"{pattern[:40]:40} {t_re:8.3f} {t_rx:9.3f} {t_to:17.3f} {t_to / t_re:6.1f}x")


if __name__ == "__main__":
    main()
