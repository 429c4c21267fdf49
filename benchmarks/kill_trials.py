"""kill -9 trials: many retrains, sweeps and standing-index updates killed at random points.

Each trial starts a worker process (a retrain over an existing model, or a sweep into a
fresh directory), SIGKILLs it at a random moment, checks what a reader would load right
then (a model must load as the old one or the new one, or be refused; an index must load
whole or be refused; a table must be readable), re-runs the same call and compares the
outputs with an uninterrupted run's: byte-identical model files, the same queue (ids and
probabilities). An update trial (issue 12) updates a copy of a day-0 standing index to day 1
(3,000 items: 10% edited, 5% taken down, 15% new); right after the kill a reader must see day 0
or day 1 whole, and the re-run must give the uninterrupted day 1. The runs use the hashing
text signal of the test suite (tests/), so a trial costs seconds; every file format, lock and
swap is the real one.

    python benchmarks/kill_trials.py --trials 20 --seed 0

Writes benchmarks/results/kill.{md,json} (then run benchmarks/make_results.py).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the hashing signal and the harness

from kill_harness import run_trials, run_update_trials  # noqa: E402


def summarise(trials) -> dict:
    out = {}
    for kind in ("train", "sweep", "update"):
        ts = [t for t in trials if t.kind == kind]
        out[kind] = {
            "trials": len(ts),
            "killed_mid_run": sum(t.killed for t in ts),
            "finished_before_kill": sum(not t.killed for t in ts),
            "rerun_equal": sum(t.equal for t in ts),
            "rerun_different": sum(not t.equal for t in ts),
            "after_kill": dict(collections.Counter(t.after_kill for t in ts if t.killed)),
        }
    return out


def markdown(summary: dict, args, load_before, load_after, seconds: float) -> str:
    lines = [
        "# kill -9 trials: retrain, sweep and standing-index update",
        "",
        f"Command: `python benchmarks/kill_trials.py --trials {args.trials} --seed {args.seed}`  ",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}; load average at start {load_before}, "
        f"at end {load_after}; {seconds:.0f} s in all.",
        "",
        "Kill points: uniform over 1.5x the uninterrupted run's duration (after the worker has "
        "imported): a third of the draws fall after the reference run's end, but under a "
        "rising load the killed runs are slower, so fewer finish first (table).",
        "",
        "| run | trials | killed mid-run | finished first | re-run equal | re-run different |",
        "|---|---|---|---|---|---|",
    ]
    for kind, s in summary.items():
        lines.append(
            f"| {kind} | {s['trials']} | {s['killed_mid_run']} | {s['finished_before_kill']} "
            f"| {s['rerun_equal']} | {s['rerun_different']} |"
        )
    lines += ["", "What a reader found right after a kill (killed runs only):", ""]
    for kind, s in summary.items():
        found = ", ".join(f"{k}: {v}" for k, v in sorted(s["after_kill"].items())) or "-"
        lines.append(f"- {kind}: {found}")
    lines += [
        "",
        "Crashes of the harness: 0 (a loaded model that was neither the old nor the new one, "
        "an unreadable table, or an index that loaded despite a bad checksum stops the run). "
        "Losses: 0 items: every re-run's report has the uninterrupted run's items in / indexed / "
        "quarantined counts (and every sweep checks in = indexed + quarantined).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20, help="trials of each kind (default 20)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        trials = run_trials(Path(tmp), args.trials, args.seed)
        trials += run_update_trials(Path(tmp) / "update", args.trials, args.seed)
    seconds = time.time() - t0
    load_after = tuple(round(x, 2) for x in os.getloadavg())
    summary = summarise(trials)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "kill.json").write_text(
        json.dumps(
            {
                "summary": summary,
                "trials": [asdict(t) for t in trials],
                "load_before": load_before,
                "load_after": load_after,
                "seconds": round(seconds, 1),
            },
            indent=2,
        )
    )
    text = markdown(summary, args, load_before, load_after, seconds)
    (results / "kill.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
