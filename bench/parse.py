"""The request parser alone: time per line, for two checkouts in one run.

    python3 bench/parse.py --root /path/to/other/checkout [--rounds 5]

Each round times ``protocol.parse_request_line`` over a batch of lines in a
fresh interpreter per checkout (alternating, so both see the same load) and
prints the medians and their ratio. Lines: a raw ``PING`` (the fast path, one
dictionary lookup), ``get sample.txt`` and a chat line (the decoded path).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

# Run in the checkout under test: prints ns per line for each sample line.
_PROBE = """
import sys, timeit
from filedock import protocol as p
lines = [b"PING", b"get sample.txt", b"hello there, how are you"]
for line in lines:
    p.parse_request_line(line)
    number = 200_000
    best = min(timeit.repeat(lambda: p.parse_request_line(line), number=number, repeat=3))
    print(f"{best / number * 1e9:.1f}")
"""
LABELS = ("PING (fast path)", "get sample.txt", "a chat line")


def probe(root: Path) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    return [float(value) for value in out.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    roots = {"other": args.root.resolve(), "this": HERE}
    results: dict[str, list[list[float]]] = {name: [] for name in roots}
    for _ in range(args.rounds):
        for name, root in roots.items():
            results[name].append(probe(root))
    print(f"{args.rounds} rounds, medians of ns per line; other = {roots['other']}")
    print(f"{'line':<20}{'other':>10}{'this':>10}{'this/other':>12}")
    for index, label in enumerate(LABELS):
        other = statistics.median(r[index] for r in results["other"])
        this = statistics.median(r[index] for r in results["this"])
        print(f"{label:<20}{other:>10.1f}{this:>10.1f}{this / other:>12.2f}")


if __name__ == "__main__":
    main()
