#!/usr/bin/env python
"""Can the decisions be trusted? Calibration and automatic-action precision, warm and cold.

For each data set (SpamAssassin, Insults) and trial t (seeds: ``n`` positive history items drawn
with ``numpy.random.default_rng(t)``, as in benchmarks/quality.py, whose cached MiniLM indexes
and data splits this reuses):

* warm: ``RiskRanker`` (library defaults: precision target 0.95) fitted on the data set's own
  history candidates (with exemplars and the lexical probe), scoring its sweep;
* cold: the OTHER data set's warm ranker scores this sweep recalled without history, so its
  cold-start booster serves a policy it has never seen (the product's own cold path).

Recall is exhaustive (k = every indexed item), so the queue holds the whole inventory. The queue
is built by ``rank.queue.build_queue`` from ``RiskRanker.calibrate`` exactly as a sweep builds it.
Per scenario, pooled over trials: expected calibration error (10 equal-width bins, over every
queue row), the reliability curve, the precision and volume of automatic ``remove`` actions, the
AP of the queue order (``riskrank eval``) against the AP of probability alone with ties broken
at random (the old eval), and the number of distinct raw scores sharing one probability. Cold
also reports ECE with the borrowed calibrator *without* the base-rate re-estimate, the
alternative the issue asked to measure against.

    .venv/bin/python benchmarks/calibration.py [--trials 5] [--n-seeds 5]
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

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/quality.py
sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402  (the data sets, splits and cached indexes)

from riskrank.index.signals import TextEmbeddingSignal  # noqa: E402
from riskrank.rank.calibration import ScoreCalibrator, shift_prior  # noqa: E402
from riskrank.rank.evaluation.metrics import average_precision  # noqa: E402
from riskrank.rank.evaluation.report import evaluate  # noqa: E402
from riskrank.rank.queue import ScoredCandidates, build_queue  # noqa: E402
from riskrank.rank.ranker import POOLED, RiskRanker  # noqa: E402

RESULTS = quality.RESULTS
BINS = 10


def ece(p: np.ndarray, y: np.ndarray) -> float:
    b = np.clip((p * BINS).astype(int), 0, BINS - 1)
    return float(
        sum(abs(p[b == i].mean() - y[b == i].mean()) * (b == i).mean() for i in range(BINS) if
            (b == i).any())
    )


def reliability(p: np.ndarray, y: np.ndarray) -> list[dict]:
    b = np.clip((p * BINS).astype(int), 0, BINS - 1)
    return [
        {"bin": i, "n": int((b == i).sum()), "mean_p": float(p[b == i].mean()),
         "frac_violating": float(y[b == i].mean())}
        for i in range(BINS) if (b == i).any()
    ]


def queue_for(ranker: RiskRanker, cands: pa.Table) -> tuple[pa.Table, ScoredCandidates]:
    scores, variant = ranker.predict(cands), ranker.variants(cands)
    cal = ranker.calibrate(scores, variant, cands["policy"].to_pylist())
    scored = ScoredCandidates(scores, cal.proba, [""] * len(scores), variant, cal.calibration,
                              cal.action_threshold, cal.base_rates)
    return build_queue(cands, scored), scored


def measure(d, queue: pa.Table, scored: ScoredCandidates, ranker: RiskRanker) -> dict:
    """Everything one trial contributes for one data set and scenario."""
    labels = pa.table({"item_id": d.sweep_ids, "label": d.y})
    truth = dict(zip(d.sweep_ids, d.y))
    q = queue.to_pandas()
    y = np.array([truth[i] for i in q.item_id])
    p = q.risk_probability.to_numpy()
    acted = (q.action == "remove").to_numpy()
    prob_only = np.full(len(d.sweep_ids), -np.inf)
    rows = [d.sweep_row[i] for i in q.item_id]
    prob_only[rows] = p
    distinct_raw = len(np.unique(scored.scores))
    distinct_p = len(np.unique(scored.proba))
    t = q.action_threshold.dropna()
    return {
        "p": p.tolist(), "y": y.tolist(),
        "calibration": sorted(set(q.calibration)),
        "action_threshold": float(t.iloc[0]) if len(t) else None,
        "removed": int(acted.sum()), "removed_violating": int(y[acted].sum()),
        "queue_ap": evaluate(queue, labels)["AP"],
        "probability_only_ap": average_precision(d.y, prob_only),
        "raw_scores_sharing_a_probability": distinct_raw - distinct_p,
        "base_rates": {k: round(v, 4) for k, v in scored.base_rates.items()},
        "true_base_rate": float(d.y.mean()),
        "coverage": len(q) / len(d.sweep_ids),
    }


def no_shift_proba(ranker: RiskRanker, scored: ScoredCandidates) -> np.ndarray:
    """Cold rows through the borrowed calibrator as it is: the other policy's base rate."""
    cal: ScoreCalibrator = ranker.calibration_["cold"][POOLED]
    return cal.predict(scored.scores)


def summarise(trials: list[dict]) -> dict:
    p = np.concatenate([t["p"] for t in trials])
    y = np.concatenate([t["y"] for t in trials]).astype(float)
    removed = sum(t["removed"] for t in trials)
    hits = sum(t["removed_violating"] for t in trials)
    out = {
        "trials": len(trials),
        "ece": ece(p, y),
        "ece_per_trial": [round(ece(np.array(t["p"]), np.array(t["y"], float)), 4)
                          for t in trials],
        "reliability": reliability(p, y),
        "calibration": sorted({c for t in trials for c in t["calibration"]}),
        "action_thresholds": [t["action_threshold"] for t in trials],
        "removed": removed,
        "removed_per_trial": [t["removed"] for t in trials],
        "remove_precision": hits / removed if removed else None,
        "queue_ap": float(np.mean([t["queue_ap"] for t in trials])),
        "probability_only_ap": float(np.mean([t["probability_only_ap"] for t in trials])),
        "raw_scores_sharing_a_probability": sum(t["raw_scores_sharing_a_probability"]
                                                for t in trials),
        "coverage": float(np.mean([t["coverage"] for t in trials])),
        "true_base_rate": trials[0]["true_base_rate"],
        "estimated_base_rates": [t["base_rates"] for t in trials],
    }
    for key, name in (("p_no_shift", "ece_without_base_rate_reestimate"),
                      ("p_shift", "ece_with_base_rate_reestimate")):
        if key in trials[0]:
            out[name] = ece(np.concatenate([t[key] for t in trials]), y)
    if "held_out_threshold" in trials[0]:
        out["held_out_thresholds"] = [t["held_out_threshold"] for t in trials]
    if "warm_em_base_rate" in trials[0]:
        out["warm_em_base_rates"] = [round(t["warm_em_base_rate"], 4) for t in trials]
    return out


def run_trial(data: dict, t: int, n: int, scenarios=("warm", "cold")) -> dict:
    """One trial: a warm ranker per data set, then warm and cold queues for each."""
    rankers, cands = {}, {}
    for name, d in data.items():
        seeds, svec = d.seeds(n, t)
        # as the demo's seeds: a severe policy whose suggested action is removal
        seeds = seeds.append_column("action", pa.array(["remove"] * seeds.num_rows))
        hc = quality.history_candidates(d, seeds, svec, exemplars=True)
        rankers[name] = RiskRanker().fit(hc, history=d.review)
        cands[name] = {
            sc: quality.sweep_candidates(d, seeds, svec, exemplars=sc == "warm")
            for sc in scenarios
        }
    out: dict = {}
    for name, d in data.items():
        out[name] = {}
        for scenario in scenarios:
            ranker = rankers[name] if scenario == "warm" else rankers[quality.OTHER[name]]
            queue, scored = queue_for(ranker, cands[name][scenario])
            m = measure(d, queue, scored, ranker)
            ids = cands[name][scenario]["item_id"].to_pylist()
            if scenario == "cold":
                # same queue rows, the borrowed calibrator left with its own base rate
                by_id = dict(zip(ids, no_shift_proba(ranker, scored)))
                m["p_no_shift"] = [by_id[i] for i in queue["item_id"].to_pylist()]
            else:
                # the alternative not taken: re-estimate the base rate warm too
                own = ranker.calibration_["full"][d.policy]
                shift, prior = shift_prior(own, scored.scores)
                by_id = dict(zip(ids, own.predict(scored.scores, shift)))
                m["p_shift"] = [by_id[i] for i in queue["item_id"].to_pylist()]
                m["warm_em_base_rate"] = prior
                m["held_out_threshold"] = ranker.thresholds_[d.policy].to_dict()
            out[name][scenario] = m
    return out


def render(summary: dict, meta: dict) -> str:
    lines = [
        "# Calibration and automatic actions (benchmarks/calibration.py)", "",
        f"{meta['trials']} trials, {meta['n_seeds']} seeds per policy, exhaustive recall "
        f"(queue = whole sweep inventory). Commit {meta['commit']}; load average "
        f"{meta['load_before']} before, {meta['load_after']} after; {meta['seconds']:.0f} s.", "",
        "| data set | scenario | calibration | ECE | ECE if the base rate were handled the "
        "other way (cold: not re-estimated; warm: re-estimated) | "
        "remove threshold(s) | removed (sum) | remove precision | queue AP | "
        "probability-only AP | raw scores sharing a p |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, by_sc in summary.items():
        for sc, s in by_sc.items():
            th = sorted({"none" if x is None else f"{x:.3f}" for x in s["action_thresholds"]})
            prec = "n/a (0 removed)" if s["remove_precision"] is None else \
                f"{s['remove_precision']:.3f}"
            nos = s.get("ece_without_base_rate_reestimate",
                        s.get("ece_with_base_rate_reestimate"))
            lines.append(
                f"| {name} | {sc} | {', '.join(s['calibration'])} | {s['ece']:.3f} | "
                f"{'' if nos is None else f'{nos:.3f}'} | {', '.join(th)} | {s['removed']:,} | "
                f"{prec} | {s['queue_ap']:.3f} | {s['probability_only_ap']:.3f} | "
                f"{s['raw_scores_sharing_a_probability']} |")
    lines += ["", "Warm action thresholds chosen on held-out history (per trial: held-out "
              "rows, cut size, precision, one-sided 95% lower bound; no threshold when the "
              "bound never reaches 0.95):", ""]
    for name, by_sc in summary.items():
        for h in by_sc["warm"].get("held_out_thresholds", []):
            th = "none" if h["threshold"] is None else f"P >= {h['threshold']:.3f}"
            lines.append(f"- {name}: {th}; {h['n_heldout']} held out, best cut "
                         f"{h['n_selected']} items, precision {h['precision'] or 0:.3f}, "
                         f"lower bound {h['precision_lcb'] or 0:.3f}")
    lines += ["", "Base rates (cold: re-estimated by EM on the sweep, per trial):", ""]
    for name, by_sc in summary.items():
        if "cold" not in by_sc:
            continue
        s = by_sc["cold"]
        est = [v for b in s["estimated_base_rates"] for v in b.values()]
        lines.append(f"- {name}: true {s['true_base_rate']:.3f}, estimated "
                     f"{', '.join(f'{v:.3f}' for v in est)}")
    # RESULTS.md (benchmarks/) embeds this file: the picture's path is relative to it
    lines += ["", "![reliability](results/calibration_reliability.png)", ""]
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(5.5 * len(summary), 5))
    for ax, (name, by_sc) in zip(np.atleast_1d(axes), summary.items()):
        ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect")
        for sc, s in by_sc.items():
            r = s["reliability"]
            ax.plot([b["mean_p"] for b in r], [b["frac_violating"] for b in r], marker="o",
                    label=f"{sc} (ECE {s['ece']:.3f})")
        ax.set_title(name)
        ax.set_xlabel("predicted P(violating), 10 bins")
        ax.set_ylabel("share violating")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--n-seeds", type=int, default=5)
    ap.add_argument("--out", default=str(RESULTS / "calibration"))
    ap.add_argument("--datasets", nargs="+", default=["spamassassin", "insults"],
                    choices=["spamassassin", "insults"], help="cold needs both")
    args = ap.parse_args(argv)
    t0, load_before = time.time(), os.getloadavg()
    signal = TextEmbeddingSignal()
    data = {n: quality.Data(n, signal) for n in args.datasets}
    scenarios = ("warm", "cold") if len(data) == 2 else ("warm",)
    per: dict = {n: {sc: [] for sc in scenarios} for n in data}
    for t in range(args.trials):
        t1 = time.time()
        for name, by_sc in run_trial(data, t, args.n_seeds, scenarios).items():
            for sc, m in by_sc.items():
                per[name][sc].append(m)
                quality.log(f"  trial {t} {name} {sc}: ECE {ece(np.array(m['p']), np.array(m['y'], float)):.3f} "  # noqa: E501
                            f"removed {m['removed']} ({m['removed_violating']} violating), "
                            f"threshold {m['action_threshold']}, base rates {m['base_rates']}")
        quality.log(f"trial {t} done in {time.time() - t1:.0f} s")
    summary = {n: {sc: summarise(ts) for sc, ts in by.items()} for n, by in per.items()}
    meta = {
        "trials": args.trials, "n_seeds": args.n_seeds,
        "commit": quality.library_state()["commit"],
        "library_uncommitted": quality.library_state()["library_uncommitted"],
        "load_before": " ".join(f"{x:.1f}" for x in load_before),
        "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "seconds": time.time() - t0,
        "command": "python benchmarks/calibration.py " + " ".join(argv or sys.argv[1:]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    slim = {n: {sc: {k: v for k, v in s.items()} for sc, s in by.items()}
            for n, by in summary.items()}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": slim}, indent=1))
    out.with_suffix(".md").write_text(render(summary, meta))
    plot(summary, out.parent / "calibration_reliability.png")
    print(render(summary, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
