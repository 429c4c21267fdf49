#!/usr/bin/env python
"""How well a young policy's probabilities are calibrated, round by round of the replay.

Follows the replay (benchmarks/replay.py: same sets, seeds and trials; the library's default
ranker retrained on each round's 100 reviews). In every round from the first retrain on, the
policy being replayed is young (a few hundred reviews of its own, the other data set's history
beside it): the ``transfer`` booster scores it. Its items not yet reviewed are calibrated three
ways, from one model and the same raw scores:

* ``library``  what ``RiskRanker.calibrate`` does now: the transfer variant's pooled
               calibrator with its level moved to the policy's held-out reviews
               (``fit_offset``), no EM (``calibration`` = ``policy_reviews``);
* ``em``       what it did before: the policy's own held-out calibrator where it had one,
               else the pooled one, with the base rate re-estimated on these items by EM
               (``shift_prior``); the library's own path with ``young_calibration_`` empty;
* ``pooled``   the pooled calibrator as it is (no move, no EM).

Per round: the true share of violations among the items not yet reviewed, each way's mean
probability there (its estimate of that share) and expected calibration error (10 equal-width
bins), and the mean probability of the round's queue against the share of it reviewers then
found violating.

    .venv/bin/python benchmarks/young_calibration.py [--sets spamassassin,insults]
        [--trials 3] [--rounds 10] [--methods exploit,explore]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality  # noqa: E402
import replay  # noqa: E402

from riskrank.rank.evaluation.metrics import expected_calibration_error  # noqa: E402
from riskrank.rank.ranker import POOLED  # noqa: E402

WAYS = ("library", "em", "pooled")


def probe(d: replay.Set, record: dict):
    """The replay's per-round hook: each way's probabilities on the items not yet reviewed."""

    def look(model, pool, scored, rows) -> None:
        record.clear()
        young = scored.variant == "transfer"
        if not young.any():  # round 0: the cold-start model
            return
        y = d.y[rows].astype(float)
        ways = {"library": scored.proba}
        kept, model.young_calibration_ = model.young_calibration_, {}
        try:
            ways["em"] = model.calibrate(
                scored.scores,
                scored.variant,
                pool["policy"].to_pylist(),
                covered=model.covered(pool),
            ).proba
        finally:
            model.young_calibration_ = kept
        ways["pooled"] = model.calibration_["transfer"][POOLED].predict(scored.scores)
        record.update(
            true=float(y[young].mean()),
            kind=sorted(set(scored.calibration[young])),
            **{
                w: [float(p[young].mean()), expected_calibration_error(p[young], y[young])]
                for w, p in ways.items()
            },
            _proba={w: p for w, p in ways.items()},
            _rows=rows,
        )

    return look


def follow(d: replay.Set, ctx: dict, method: str, rounds: int) -> list[dict]:
    """The replay's ``method`` arm for ``rounds`` rounds; one record per retrained round."""
    record: dict = {}
    ctx["probe"] = probe(d, record)
    out = []
    original = replay.review

    def review(d_, st, decisions, rnd):
        if record:
            queued = [m for ms in decisions for m in ms]
            where = {r: i for i, r in enumerate(record["_rows"])}
            at = [where[m] for m in queued if m in where]
            row = {k: v for k, v in record.items() if not k.startswith("_")}
            row["round"] = rnd
            row["reviews"] = len(st.verdict)
            row["queue_violating"] = float(d.y[queued].mean())
            row["queue_mean_p"] = {w: float(p[at].mean()) for w, p in record["_proba"].items()}
            out.append(row)
            print(d.name, method, json.dumps(row), flush=True)
        return original(d_, st, decisions, rnd)

    replay.review = review
    try:
        replay.run(d, method, ctx, rounds)
    finally:
        replay.review = original
        del ctx["probe"]
    return out


def summary(results: dict) -> list[dict]:
    rows = []
    for (name, method), runs in sorted(results.items()):
        recs = [r for run in runs for r in run]
        if not recs:
            continue
        for w in WAYS:
            ratio = np.array([r[w][0] / r["true"] for r in recs])
            rows.append(
                {
                    "set": name,
                    "arm": method,
                    "way": w,
                    "rounds": len(recs),
                    "abs_log_ratio": float(np.mean(np.abs(np.log(ratio)))),
                    "ratio_min": float(ratio.min()),
                    "ratio_max": float(ratio.max()),
                    "ece": float(np.mean([r[w][1] for r in recs])),
                    "queue_gap": float(
                        np.mean([abs(r["queue_mean_p"][w] - r["queue_violating"]) for r in recs])
                    ),
                }
            )
    return rows


def markdown(meta: dict, rows: list[dict]) -> str:
    lines = [
        "# A young policy's probabilities, round by round of the replay (issue 13)",
        "",
        f"`python benchmarks/young_calibration.py --sets {meta['sets']} --trials {meta['trials']} "
        f"--rounds {meta['rounds']} --methods {meta['methods']}` (commit "
        f"{meta['library']['commit']}; {meta['seconds']} s; load average at the end "
        f"{meta['load_average_end']}). Every retrained round of each trial (the young policy "
        "scored by the transfer booster), items not yet reviewed. `estimate / true`: each "
        "way's mean probability over the true share of violations (|log| averaged, and its "
        "range); ECE: 10 bins; queue gap: |mean probability of the round's queue - share of "
        "it found violating|. Ways: the docstring. Plot, per trial and round: "
        "`results/young_calibration.png`.",
        "",
        "| set | arm | way | rounds | mean abs log(estimate / true) | estimate / true, range "
        "| ECE | queue gap |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['arm']} | {r['way']} | {r['rounds']} | {r['abs_log_ratio']:.2f} "
            f"| {r['ratio_min']:.2f}-{r['ratio_max']:.2f} | {r['ece']:.3f} | "
            f"{r['queue_gap']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(results)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for run in results[key]:
            r = [x["reviews"] for x in run]
            for w, style in zip(WAYS, ("-", "--", ":")):
                ax.plot(r, [x[w][0] / x["true"] for x in run], style, color=f"C{WAYS.index(w)}")
        ax.axhline(1.0, color="k", lw=0.5)
        ax.set_yscale("log")
        ax.set_title(f"{key[0]}, {key[1]}")
        ax.set_xlabel("reviews of the policy")
        ax.set_ylabel("estimated / true share of violations")
    handles = [plt.Line2D([], [], color=f"C{i}", ls=s) for i, s in enumerate(("-", "--", ":"))]
    fig.legend(handles, WAYS, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", default="spamassassin,insults")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--methods", default="exploit,explore")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args()
    library = quality.library_state()
    names = args.sets.split(",")
    data = replay.load_sets(names)
    t0 = time.time()
    results: dict = {}
    for trial in range(args.trials):
        for name in names:
            ctx = replay.trial_context(data[name], [data[quality.OTHER[name]]], trial)
            ctx["lexical"] = True
            for method in args.methods.split(","):
                runs = results.setdefault((name, method), [])
                runs.append(follow(data[name], ctx, method, args.rounds))
    meta = {
        "sets": args.sets,
        "trials": args.trials,
        "rounds": args.rounds,
        "methods": args.methods,
        "seconds": round(time.time() - t0),
        "load_average_end": [round(x, 1) for x in os.getloadavg()],
        "library": library,
    }
    rows = summary(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "young_calibration.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "summary": rows,
                "rounds": {f"{k[0]}/{k[1]}": v for k, v in results.items()},
            },
            indent=1,
        )
    )
    (out / "young_calibration.md").write_text(markdown(meta, rows))
    plot(results, out / "young_calibration.png")
    print(markdown(meta, rows))


if __name__ == "__main__":
    main()
