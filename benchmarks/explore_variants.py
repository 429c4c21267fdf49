#!/usr/bin/env python
"""Ways of choosing the exploration share, compared on the replay (benchmarks/replay.py).

Each variant runs replay's arm (d) (``arrange_queue(explore=0.1)``, every other step the
library's) with another ``rank.exploration.ExploreRule``: its ``reasons`` (the turn order),
``scores`` (per reason, a score and who qualifies) and ``count`` (how many of the budget's
slots explore). ``library`` is whatever ``rank.exploration`` does at the commit run
(``unweighted`` until the yield weighting was adopted, ``yield`` since); the others are written
out here so that a variant means the same at every commit. ``exploit`` is arm (c), run here so
that every pair shares a process. Variants share each (set, trial)'s seeds, recall and
cold-start model, as replay's arms do.

Besides reviews to 50% / 80% and violations found in rounds 1-3, every round records what the
exploration cost: the true labels of the explore picks (per reason) and of the exploit units
they displaced (the next units in risk order, which arm (c) would have reviewed instead).

    .venv/bin/python benchmarks/explore_variants.py --sets insults --variants library,yield \\
        --trials 5 --out /tmp/explore/run1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality  # noqa: E402
import replay  # noqa: E402

from riskrank.index.signals import TextEmbeddingSignal  # noqa: E402
from riskrank.rank.campaigns import CAMPAIGN_THRESHOLDS  # noqa: E402
from riskrank.rank.exploration import DEFAULT_RULE, ExploreRule  # noqa: E402


def _p(units: pa.Table) -> np.ndarray:
    return np.asarray(units["risk_probability"].to_numpy(zero_copy_only=False), np.float64)


def unweighted_scores(units: pa.Table, closeness: np.ndarray, cover: np.ndarray) -> dict:
    """The library's choice until the yield weighting (f7557d3): what a verdict teaches alone,
    p nearest 0.5 (either side), the farthest unit, the largest never-reviewed campaign."""
    p = _p(units)
    size = np.asarray(units["campaign_size"].to_numpy(), np.float64)
    link = CAMPAIGN_THRESHOLDS.get("text", 1.0)
    return {
        "uncertain": (-np.abs(p - 0.5), np.isfinite(p)),
        "uncovered": (-closeness, np.ones(len(p), bool)),
        "campaign": (size, (size > 1) & (cover < link)),
    }


def yield_scores(units: pa.Table, closeness: np.ndarray, cover: np.ndarray) -> dict:
    """Each reason weighted by the unit's chance of being a violation: unsure but on the
    violating side; uncovered x p; never-reviewed campaign size x p."""
    p = _p(units)
    size = np.asarray(units["campaign_size"].to_numpy(), np.float64)
    link = CAMPAIGN_THRESHOLDS.get("text", 1.0)
    far = 1.0 - np.clip(closeness, 0.0, 1.0)
    return {
        "uncertain": (-(p - 0.5), (p >= 0.5) & (p <= 0.9)),
        "uncovered": (p * far, np.isfinite(p)),
        "campaign": (p * size, (size > 1) & (cover < link)),
    }


def yield_both_sides_scores(units: pa.Table, closeness: np.ndarray, cover: np.ndarray) -> dict:
    """``yield`` with ``uncertain`` as before (p nearest 0.5 on either side): where the young
    policy's p sits below 0.5 under the whole cut, that is the next unit in risk order."""
    return {
        **yield_scores(units, closeness, cover),
        "uncertain": unweighted_scores(units, closeness, cover)["uncertain"],
    }


def opportunity_count(units: pa.Table, budget: int, explore: float) -> int:
    """At most ``explore`` of the budget; each slot kept only as far as the exploit unit it
    displaces is unlikely a violation: round(share x budget x (1 - mean p of those units))."""
    most = DEFAULT_RULE.count(units, budget, explore)
    if most == 0:
        return 0
    tail = _p(units)[budget - most : budget]
    return int(np.floor(most * (1.0 - float(np.mean(tail))) + 0.5))


VARIANTS: dict[str, ExploreRule] = {
    "exploit": DEFAULT_RULE,  # replay's arm (c), explore=0, run here so that pairs share a process
    "library": DEFAULT_RULE,
    "unweighted": ExploreRule(scores=unweighted_scores),
    "yield": ExploreRule(scores=yield_scores),
    "opportunity": ExploreRule(scores=unweighted_scores, count=opportunity_count),
    "yield-opportunity": ExploreRule(scores=yield_scores, count=opportunity_count),
    "uncovered-only": ExploreRule(reasons=("uncovered",), scores=unweighted_scores),
    "yield-uncovered-only": ExploreRule(reasons=("uncovered",), scores=yield_scores),
    "yield-both-sides": ExploreRule(scores=yield_both_sides_scores),
}


def _reason_of(text: str) -> str:
    """The reason key back from the library's reason text."""
    for key, words in (
        ("uncertain", "unsure"),
        ("uncovered", "far from"),
        ("campaign", "campaign"),
    ):
        if words in text:
            return key
    return text


class Recorder:
    """replay's ``observe`` hook: per round, the labels of the explore picks and of the exploit
    units they displaced (the next units in risk order below the exploit cut)."""

    def __init__(self, d: replay.Set) -> None:
        self.d, self.rounds = d, []

    def __call__(self, ranked: pa.Table, out: pa.Table) -> None:
        slot = out["slot"].to_pylist()
        y = [int(self.d.y[self.d.row[i]]) for i in out["item_id"].to_pylist()]
        p = _p(out)
        why = [_reason_of(r) for r in out["slot_reason"].to_pylist()]
        picks = [
            (why[k], y[k], round(float(p[k]), 3)) for k in range(len(y)) if slot[k] == "explore"
        ]
        # arrange_queue keeps the ranked order (replay passes no reviewed pairs): the exploit
        # units are its first rows, and the ones displaced come right after them.
        n, shown = len(picks), out.num_rows
        cut = ranked.slice(shown - n, n)["item_id"].to_pylist() if n else []
        self.rounds.append(
            {
                "picks": picks,
                "displaced_y": [int(self.d.y[self.d.row[i]]) for i in cut],
                "displaced_p": [round(float(v), 3) for v in _p(ranked)[shown - n : shown]],
            }
        )


def summary_rows(results: dict) -> list[str]:
    lines = [
        "| set | variant | trials | reviews to 80% | to 50% | found rounds 1-3 | "
        "explore picks | violations among picks | among displaced | per reason |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, var), trials in results.items():
        to80 = [t["to_80"] for t in trials]
        to50 = [t["to_50"] for t in trials]
        early = [t["rounds"][min(2, len(t["rounds"]) - 1)]["found"] for t in trials]
        picks = [pk for t in trials for r in t["explore"] for pk in r["picks"]]
        disp = [y for t in trials for r in t["explore"] for y in r["displaced_y"]]
        per = {}
        for why, y, _ in picks:
            per.setdefault(why, []).append(y)
        per_txt = ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(per.items()))
        # None: a trial that stopped (--max-rounds) before reaching the mark
        mean80 = np.mean(to80) if None not in to80 else None
        mean50 = f"{np.mean(to50):.1f}" if None not in to50 else None
        lines.append(
            f"| {name} | {var} | {len(trials)} | {mean80} {to80} | {mean50} | "
            f"{np.mean(early):.1f} {early} | {len(picks)} | {sum(y for _, y, _ in picks)} | "
            f"{sum(disp)}/{len(disp)} | {per_txt} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=None, help="default insults (or the --data sets)")
    quality.add_data_options(ap)
    ap.add_argument("--variants", default="library")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--first-trial", type=int, default=0)
    ap.add_argument("--max-rounds", type=int, default=40)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    own = quality.register_data(args.data, args.cold_from)
    args.sets = args.sets or ",".join(own or ["insults"])
    if unknown := [n for n in args.sets.split(",") if n not in quality.POLICY]:
        ap.error(f"unknown set(s) {unknown}: spamassassin, insults or a --data NAME")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    library = quality.library_state()
    signal = TextEmbeddingSignal()
    names = args.sets.split(",")
    data = replay.load_sets(names, signal)
    results: dict = {}
    t0 = time.time()
    for trial in range(args.first_trial, args.first_trial + args.trials):
        for name in names:
            d = data[name]
            others = [data[o] for o in quality.cold_sources(name)]
            ctx = replay.trial_context(d, others, trial)
            ctx["young_model"], ctx["lexical"] = "transfer", True
            for var in args.variants.split(","):
                rec = Recorder(d)
                ctx["explore_rule"], ctx["observe"] = VARIANTS[var], rec
                method = "exploit" if var == "exploit" else "explore"
                res = replay.run(d, method, ctx, args.max_rounds)
                res["explore"], res["trial"] = rec.rounds, trial
                res["load"] = os.getloadavg()
                results.setdefault((name, var), []).append(res)
                print(
                    f"{name} trial {trial} {var}: to80 {res['to_80']} to50 {res['to_50']} "
                    f"found r1-3 {res['rounds'][min(2, len(res['rounds']) - 1)]['found']} "
                    f"({time.time() - t0:.0f} s, load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
                (out / "variants.json").write_text(
                    json.dumps(
                        {
                            "library": library,
                            "args": vars(args),
                            "results": {f"{k[0]}/{k[1]}": v for k, v in results.items()},
                        },
                        indent=1,
                    )
                )
    table = "\n".join(summary_rows(results))
    (out / "variants.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
