"""Two evaluation runs of the same problems, compared problem by problem.

    python scripts/paired.py eval_full_aochat2.json eval_full.json [--mode tools]

Names are results files in benchmarks/results (their ``.records.jsonl``, maybe gzipped, are read).
Prints, for the mode: problems right in both, only in the first run (won), only in the second
(lost), in neither, and each run's accuracy; a problem missing from either run is an error.
"""

from __future__ import annotations

import argparse
from collections import Counter

from readme_tables import records_of


def outcomes(name: str, mode: str) -> dict[tuple[str, str], bool]:
    """Whether each (set, id) of ``mode`` was right in the run ``name``."""
    right = {(r["set"], r["id"]): bool(r["correct"]) for r in records_of(name) if r["mode"] == mode}
    if not right:
        raise SystemExit(f"{name}: no records of mode {mode!r}")
    return right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--mode", default="tools")
    args = parser.parse_args()
    a, b = outcomes(args.first, args.mode), outcomes(args.second, args.mode)
    if a.keys() != b.keys():
        raise SystemExit(f"the runs hold different problems: {len(a.keys() ^ b.keys())} apart")
    counts = Counter((a[key], b[key]) for key in a)
    n = len(a)
    print(f"{n} problems, mode {args.mode}")
    print(f"  right in both:          {counts[True, True]}")
    print(f"  won (first only):       {counts[True, False]}")
    print(f"  lost (second only):     {counts[False, True]}")
    print(f"  right in neither:       {counts[False, False]}")
    for name, run in ((args.first, a), (args.second, b)):
        print(f"  {name}: {100 * sum(run.values()) / n:.2f}%")


if __name__ == "__main__":
    main()
