"""Count how geoinv answers the bad-input catalogue (tests/bad_input_cases.py).

Usage::

    python -m benchmarks bad_input_audit [--json benchmarks/results/bad_inputs.json] [--quick]

Prints one line per case and a table of outcomes per kind of input: clear
(a geoinv error naming the problem), misleading (a geoinv error about
something else), traceback (a raw Python exception), silent (accepted, or a
protected file changed) and hang (no answer within the time limit).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import RESULTS, write_json

from tests.bad_input_cases import CASES, OUTCOMES, classify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=RESULTS / "bad_inputs.json")
    parser.add_argument("--timeout", type=int, default=60, help="seconds before a case counts as a hang")
    parser.add_argument("--quick", action="store_true", help="the first case of each kind of input")
    args = parser.parse_args()
    cases = [entry for index, entry in enumerate(CASES) if entry.kind not in {c.kind for c in CASES[:index]}] \
        if args.quick else CASES
    rows = []
    for entry in cases:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            outcome, said = classify(entry, Path(folder), args.timeout)
        rows.append({"kind": entry.kind, "case": entry.name, "outcome": outcome, "message": said[:400],
                     "seconds": round(time.perf_counter() - start, 2)})
        print(f"{outcome:<11}{entry.kind:<16}{entry.name}: {said[:140]!r}", flush=True)
    kinds = sorted({row["kind"] for row in rows})
    print(f"\n{'kind':<16}" + "".join(f"{o:>11}" for o in OUTCOMES) + f"{'total':>8}")
    for kind in [*kinds, "all"]:
        counts = Counter(row["outcome"] for row in rows if kind in ("all", row["kind"]))
        print(f"{kind:<16}" + "".join(f"{counts[o]:>11}" for o in OUTCOMES) + f"{sum(counts.values()):>8}")
    write_json(args.json.stem, {"rows": rows, "args": vars(args)}, path=args.json)


if __name__ == "__main__":
    main()
