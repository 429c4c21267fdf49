"""The README's demo and review-loop figures, from the logs of fresh-clone runs.

Each run is one fresh clone of main after its CI (`.ci/run`), then ``make demo`` and the
README's "review loop" block run side by side (the developers' check before a stop). This
script reads the three logs of each run and writes one table row per run: commit, the CI's
and the demo's exit status and seconds, the demo's AP, and the loop's counts (day 1's
campaigns and items, verdicts imported, history rows, model version, day 2's items) and
seconds. Nothing is re-run; the logs stay where the runs wrote them (outside the repository).

    python benchmarks/demo_loop_runs.py --run CI_LOG,DEMO_LOG,LOOP_LOG [--run ...] \
        --out benchmarks/results/demo_and_loop.md [--append]

``--append`` keeps the rows (and the list of logs) already in ``--out`` and adds these runs':
the logs of earlier runs live on the machine that ran them and are not re-read.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

COLUMNS = (
    "commit",
    "CI rc / s",
    "demo rc / s",
    "demo AP",
    "loop rc / s",
    "day 1 campaigns / items / s",
    "day 1 slots",
    "verdicts imported (items)",
    "history rows (quarantined)",
    "model version",
    "day 2 items / s",
)


def _status(text: str, tag: str) -> str:
    m = re.search(rf"^{tag} (-?\d+) (\d+) s$", text, re.M)
    return f"{m.group(1)} / {m.group(2)}" if m else "-"


def _values(text: str, label: str) -> list[str]:
    """Every value printed after ``label`` at a line's start (a summary table's row)."""
    return re.findall(rf"^{re.escape(label)}\s+(\S+)", text, re.M)


def row(ci: Path, demo: Path, loop: Path) -> dict[str, str]:
    ci_text = ci.read_text(errors="replace")
    demo_text = demo.read_text(errors="replace")
    loop_text = loop.read_text(errors="replace")
    first = ci_text.splitlines()[0].split() if ci_text.strip() else ["-"]
    queued = _values(loop_text, "queued (campaigns)")
    items = _values(loop_text, "items in the queued campaigns")
    seconds = _values(loop_text, "seconds")
    history = _values(loop_text, "history rows")
    quarantined = _values(loop_text, "history quarantined")

    def at(values: list[str], i: int) -> str:
        return values[i] if len(values) > i else "-"

    return {
        "commit": first[0],
        "CI rc / s": _status(ci_text, "CI_RC"),
        "demo rc / s": _status(demo_text, "DEMO_RC"),
        "demo AP": at(_values(demo_text, "AP")[-1:], 0),
        "loop rc / s": _status(loop_text, "LOOP_RC"),
        "day 1 campaigns / items / s": f"{at(queued, 0)} / {at(items, 0)} / {at(seconds, 0)}",
        "day 1 slots": at(re.findall(r"^slots\s+(.+?)\s*$", loop_text, re.M), 0),
        "verdicts imported (items)": at(_values(loop_text, "verdicts imported (items)"), 0),
        # the train's printout first (3,250 rows), then the import's (after the verdicts)
        "history rows (quarantined)": (
            f"{at(history, 0)} -> {at(history, 1)} ({at(quarantined, 0)})"
        ),
        "model version": at(_values(loop_text, "model version"), 0),
        "day 2 items / s": f"{at(items, 1)} / {at(seconds, 1)}",
    }


def earlier(path: Path) -> tuple[list[str], list[str]]:
    """The table rows and the logs listed in an existing results file, as lines."""
    if not path.exists():
        return [], []
    lines = path.read_text().splitlines()
    rows = [x for x in lines if x.startswith("| ") and not x.startswith("| commit")]
    logs = [x[3:-1] for x in lines if x.startswith("- `") and x.endswith("`")]
    return rows, logs


def markdown(rows: list[dict[str, str]], runs: list[str], kept=((), ())) -> str:
    lines = [
        "# `make demo` and the README's review loop, in fresh clones (README figures)",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += list(kept[0])
    lines += ["| " + " | ".join(r[c] for c in COLUMNS) + " |" for r in rows]
    lines += ["", "Logs read (CI, demo, loop):", ""]
    lines += [f"- `{r}`" for r in [*kept[1], *runs]]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, help="CI_LOG,DEMO_LOG,LOOP_LOG")
    p.add_argument("--out", required=True)
    p.add_argument("--append", action="store_true", help="keep the runs already in --out")
    args = p.parse_args()
    rows = []
    for spec in args.run:
        parts = [Path(x) for x in spec.split(",")]
        if len(parts) != 3:
            p.error(f"--run {spec!r}: three logs, comma-separated (CI, demo, loop)")
        rows.append(row(*parts))
    kept = earlier(Path(args.out)) if args.append else ((), ())
    Path(args.out).write_text(markdown(rows, args.run, kept))
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
