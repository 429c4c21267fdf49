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
at random (the old eval), and the number of distinct raw scores sharing one probability. Both
scenarios also report ECE *without* the base-rate re-estimate (the calibrator's own prior).
Warm reports what comparing re-estimated probabilities with the unchanged held-out threshold
would have removed (the rule not adopted: ``shift_threshold`` keeps the raw-score cut). Cold
reports the other ways of estimating the new policy's probabilities that were tried (two-
Gaussian mixtures on the sweep's scores, free or with the source's class shapes shifted).

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
from riskrank.rank.calibration import ScoreCalibrator  # noqa: E402
from riskrank.rank.evaluation.metrics import (  # noqa: E402
    average_precision,
    expected_calibration_error,
)
from riskrank.rank.evaluation.report import evaluate  # noqa: E402
from riskrank.rank.queue import ScoredCandidates, build_queue  # noqa: E402
from riskrank.rank.ranker import POOLED, RiskRanker, seed_matched  # noqa: E402

RESULTS = quality.RESULTS
BINS = 10


def ece(p: np.ndarray, y: np.ndarray) -> float:
    return expected_calibration_error(p, y, BINS)


def reliability(p: np.ndarray, y: np.ndarray) -> list[dict]:
    b = np.clip((p * BINS).astype(int), 0, BINS - 1)
    return [
        {
            "bin": i,
            "n": int((b == i).sum()),
            "mean_p": float(p[b == i].mean()),
            "frac_violating": float(y[b == i].mean()),
        }
        for i in range(BINS)
        if (b == i).any()
    ]


def queue_for(ranker: RiskRanker, cands: pa.Table) -> tuple[pa.Table, ScoredCandidates]:
    scores, variant = ranker.predict(cands), ranker.variants(cands)
    # As ``RiskRanker.score`` in a sweep: the base rate on the rows like the policy's reviews,
    # and a policy none of whose rows a seed is close to taken as absent (example seeds here).
    policies = cands["policy"].to_pylist()
    levels = {"text": TextEmbeddingSignal.presence_threshold}
    covered, matched = ranker.covered(cands), seed_matched(cands, (), levels)
    cal = ranker.calibrate(scores, variant, policies, covered=covered, matched=matched)
    scored = ScoredCandidates(
        scores,
        cal.proba,
        [""] * len(scores),
        variant,
        cal.calibration,
        cal.action_threshold,
        cal.base_rates,
    )
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
        "p": p.tolist(),
        "y": y.tolist(),
        "calibration": sorted(set(q.calibration)),
        "action_threshold": float(t.iloc[0]) if len(t) else None,
        "removed": int(acted.sum()),
        "removed_violating": int(y[acted].sum()),
        "queue_ap": evaluate(queue, labels)["AP"],
        "probability_only_ap": average_precision(d.y, prob_only),
        "raw_scores_sharing_a_probability": distinct_raw - distinct_p,
        "base_rates": {k: round(v, 4) for k, v in scored.base_rates.items()},
        "true_base_rate": float(d.y.mean()),
        "coverage": len(q) / len(d.sweep_ids),
    }


def cold_alternatives(scores: np.ndarray, source_heldout) -> dict:
    """Other estimates of a cold policy's probabilities, on the same scores."""
    out = {}
    for cov in ("full", "tied"):
        p, w = gmm_proba(scores, cov)
        out[f"two-Gaussian mixture ({cov} covariance)"] = {"p": p, "base_rate": w}
    p, w = shifted_shape_proba(scores, *source_heldout)
    out["source class shapes, common offset"] = {"p": p, "base_rate": w}
    return out


def no_shift_proba(ranker: RiskRanker, scored: ScoredCandidates) -> np.ndarray:
    """Cold rows through the borrowed calibrator as it is: the other policy's base rate."""
    cal: ScoreCalibrator = ranker.calibration_["cold"][POOLED]
    return cal.predict(scored.scores)


def gmm_proba(scores: np.ndarray, covariance: str) -> tuple[np.ndarray, float]:
    """Two-Gaussian mixture on the sweep's scores alone: P(upper component), its weight."""
    from sklearn.mixture import GaussianMixture

    x = scores.reshape(-1, 1)
    g = GaussianMixture(2, covariance_type=covariance, n_init=3, random_state=0).fit(x)
    hi = int(np.argmax(g.means_[:, 0]))
    return g.predict_proba(x)[:, hi], float(g.weights_[hi])


def shifted_shape_proba(scores, src_scores, src_y, iters=500) -> tuple[np.ndarray, float]:
    """The source's class-conditional score Gaussians (held-out rows), moved by one common
    offset: offset and base rate fitted on the sweep by EM. The oracle fit showed the
    transferred slope holds and the location moves; this tests whether that is learnable."""
    from scipy.stats import norm

    m0, m1 = src_scores[~src_y].mean(), src_scores[src_y].mean()
    v0, v1 = src_scores[~src_y].var(), src_scores[src_y].var()
    pi, d = 0.5, float(np.median(scores) - np.median(src_scores))
    for _ in range(iters):
        a = pi * norm.pdf(scores, m1 + d, np.sqrt(v1))
        b = (1 - pi) * norm.pdf(scores, m0 + d, np.sqrt(v0))
        r = a / (a + b + 1e-300)
        new_pi = float(r.mean())
        new_d = float(
            (r * (scores - m1) / v1 + (1 - r) * (scores - m0) / v0).sum()
            / (r / v1 + (1 - r) / v0).sum()
        )
        done = abs(new_pi - pi) < 1e-8 and abs(new_d - d) < 1e-8
        pi, d = new_pi, new_d
        if done:
            break
    return r, pi


def cold_heldout_scores(ranker: RiskRanker, hc: pa.Table, review: pa.Table):
    """The cold booster's scores and labels on its own held-out rows, drawn as ``fit`` draws
    them (the rows with a verdict, in order; ``random_state``, ``calibration_fraction``)."""
    verdict = dict(
        zip(
            zip(review["item_id"].to_pylist(), review["policy"].to_pylist()),
            review["verdict"].to_pylist(),
        )
    )
    keys = list(zip(hc["item_id"].to_pylist(), hc["policy"].to_pylist()))
    have = np.array([k in verdict for k in keys])
    rows = np.flatnonzero(have)
    rng = np.random.default_rng(ranker.random_state)
    held = rows[rng.random(len(rows)) < ranker.calibration_fraction]
    t = hc.take(pa.array(held))
    X = np.column_stack(
        [np.asarray(t[f].to_numpy(zero_copy_only=False), float) for f in ranker.cold_features_]
    )
    y = np.array([verdict[keys[i]] >= 2 for i in held])
    return ranker.models_["cold"].predict(X), y


def summarise(trials: list[dict]) -> dict:
    p = np.concatenate([t["p"] for t in trials])
    y = np.concatenate([t["y"] for t in trials]).astype(float)
    removed = sum(t["removed"] for t in trials)
    hits = sum(t["removed_violating"] for t in trials)
    out = {
        "trials": len(trials),
        "ece": ece(p, y),
        "ece_per_trial": [round(ece(np.array(t["p"]), np.array(t["y"], float)), 4) for t in trials],
        "reliability": reliability(p, y),
        "calibration": sorted({c for t in trials for c in t["calibration"]}),
        "action_thresholds": [t["action_threshold"] for t in trials],
        "removed": removed,
        "removed_per_trial": [t["removed"] for t in trials],
        "remove_precision": hits / removed if removed else None,
        "queue_ap": float(np.mean([t["queue_ap"] for t in trials])),
        "probability_only_ap": float(np.mean([t["probability_only_ap"] for t in trials])),
        "raw_scores_sharing_a_probability": sum(
            t["raw_scores_sharing_a_probability"] for t in trials
        ),
        "coverage": float(np.mean([t["coverage"] for t in trials])),
        "true_base_rate": trials[0]["true_base_rate"],
        "estimated_base_rates": [t["base_rates"] for t in trials],
    }
    out["ece_without_base_rate_reestimate"] = ece(
        np.concatenate([t["p_no_shift"] for t in trials]), y
    )
    for key in trials[0].get("alternatives", {}):
        out.setdefault("cold_alternatives", {})[key] = {
            "ece": ece(np.concatenate([t["alternatives"][key]["p"] for t in trials]), y),
            "base_rates": [round(t["alternatives"][key]["base_rate"], 4) for t in trials],
        }
    if "removed_unmoved_threshold" in trials[0]:
        n = sum(t["removed_unmoved_threshold"] for t in trials)
        hits = sum(t["removed_unmoved_threshold_violating"] for t in trials)
        out["removed_unmoved_threshold"] = n
        out["removed_unmoved_threshold_precision"] = hits / n if n else None
    if "held_out_threshold" in trials[0]:
        out["held_out_thresholds"] = [t["held_out_threshold"] for t in trials]
    return out


def run_trial(data: dict, t: int, n: int, scenarios=("warm", "cold")) -> dict:
    """One trial: a warm ranker per data set, then warm and cold queues for each."""
    rankers, cands, held = {}, {}, {}
    for name, d in data.items():
        seeds, svec = d.seeds(n, t)
        # as the demo's seeds: a severe policy whose suggested action is removal
        seeds = seeds.append_column("action", pa.array(["remove"] * seeds.num_rows))
        hc = quality.history_candidates(d, seeds, svec, exemplars=True)
        rankers[name] = RiskRanker().fit(hc, history=d.review)
        if "cold" in scenarios:
            held[name] = cold_heldout_scores(rankers[name], hc, d.review)
        cands[name] = {
            sc: quality.sweep_candidates(d, seeds, svec, exemplars=sc == "warm") for sc in scenarios
        }
    out: dict = {}
    for name, d in data.items():
        out[name] = {}
        for scenario in scenarios:
            ranker = rankers[name] if scenario == "warm" else rankers[quality.OTHER[name]]
            queue, scored = queue_for(ranker, cands[name][scenario])
            m = measure(d, queue, scored, ranker)
            ids = cands[name][scenario]["item_id"].to_pylist()
            row_of = {i: r for r, i in enumerate(ids)}
            in_queue = [row_of[i] for i in queue["item_id"].to_pylist()]
            if scenario == "cold":
                # same queue rows, the borrowed calibrator left with its own base rate
                m["p_no_shift"] = no_shift_proba(ranker, scored)[in_queue].tolist()
                m["alternatives"] = cold_alternatives(scored.scores, held[quality.OTHER[name]])
                for alt in m["alternatives"].values():
                    alt["p"] = alt["p"][in_queue].tolist()
            else:
                # the rule not taken: the policy's calibrator with the history's base rate
                own = ranker.calibration_["full"][d.policy]
                m["p_no_shift"] = own.predict(scored.scores)[in_queue].tolist()
                th = ranker.thresholds_[d.policy]
                m["held_out_threshold"] = {k: v for k, v in th.to_dict().items() if k != "cuts"}
                # ... and re-estimated probabilities against the held-out probability threshold
                naive = (
                    (np.array(m["p"]) >= th.threshold)
                    if th.threshold is not None
                    else np.zeros(len(m["p"]), bool)
                )
                m["removed_unmoved_threshold"] = int(naive.sum())
                m["removed_unmoved_threshold_violating"] = int(np.array(m["y"])[naive].sum())
            out[name][scenario] = m
    return out


def render(summary: dict, meta: dict) -> str:
    lines = [
        "# Calibration and automatic actions (benchmarks/calibration.py)",
        "",
        f"{meta['trials']} trials, {meta['n_seeds']} seeds per policy, exhaustive recall "
        f"(queue = whole sweep inventory). Commit {meta['commit']}; load average "
        f"{meta['load_before']} before, {meta['load_after']} after; {meta['seconds']:.0f} s.",
        "",
        "Every policy's base rate is re-estimated on the sweep (EM); `ECE, prior kept` is the "
        "same calibrator with its own held-out base rate (cold: the other data set's). Remove "
        "thresholds are as the queue shows them: the held-out cut, moved with the base rate.",
        "",
        "| data set | scenario | calibration | ECE | ECE, prior kept | "
        "remove threshold(s) | removed (sum) | remove precision | queue AP | "
        "probability-only AP | raw scores sharing a p |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, by_sc in summary.items():
        for sc, s in by_sc.items():
            th = sorted({"none" if x is None else f"{x:.3f}" for x in s["action_thresholds"]})
            prec = (
                "n/a (0 removed)"
                if s["remove_precision"] is None
                else f"{s['remove_precision']:.4f}"
            )
            lines.append(
                f"| {name} | {sc} | {', '.join(s['calibration'])} | {s['ece']:.3f} | "
                f"{s['ece_without_base_rate_reestimate']:.3f} | {', '.join(th)} | "
                f"{s['removed']:,} | {prec} | {s['queue_ap']:.3f} | "
                f"{s['probability_only_ap']:.3f} | {s['raw_scores_sharing_a_probability']} |"
            )
    lines += [
        "",
        "Warm action thresholds chosen on held-out history (per trial: held-out "
        "rows, cut size, precision, one-sided 95% lower bound; no threshold when the "
        "bound never reaches 0.95):",
        "",
    ]
    for name, by_sc in summary.items():
        for h in by_sc["warm"].get("held_out_thresholds", []):
            th = "none" if h["threshold"] is None else f"P >= {h['threshold']:.3f}"
            lines.append(
                f"- {name}: {th}; {h['n_heldout']} held out, best cut "
                f"{h['n_selected']} items, precision {h['precision'] or 0:.3f}, "
                f"lower bound {h['precision_lcb'] or 0:.3f}"
            )
    lines += [
        "",
        "The rule not adopted: re-estimated probabilities compared with the held-out "
        "probability threshold unchanged (the adopted rule keeps the held-out raw-score "
        "cut, `rank.calibration.shift_threshold`):",
        "",
    ]
    for name, by_sc in summary.items():
        w = by_sc["warm"]
        if w.get("removed_unmoved_threshold"):
            lines.append(
                f"- {name}: {w['removed_unmoved_threshold']:,} removed, precision "
                f"{w['removed_unmoved_threshold_precision']:.4f} (adopted: "
                f"{w['removed']:,}, {w['remove_precision'] or 0:.4f})"
            )
        else:
            lines.append(f"- {name}: 0 removed either way")
    lines += ["", "Base rates re-estimated by EM on the sweep, per trial:", ""]
    for name, by_sc in summary.items():
        for sc, s in by_sc.items():
            est = [v for b in s["estimated_base_rates"] for v in b.values()]
            lines.append(
                f"- {name} {sc}: true {s['true_base_rate']:.3f}, estimated "
                f"{', '.join(f'{v:.3f}' for v in est)}"
            )
    alts = [
        (n, by["cold"]) for n, by in summary.items() if "cold_alternatives" in by.get("cold", {})
    ]
    if alts:
        lines += [
            "",
            "Cold: other estimates tried on the same scores (ECE over the same rows; "
            "base rate per trial):",
            "",
            "| data set | method | ECE | base rate per trial |",
            "| --- | --- | --- | --- |",
        ]
        for name, s in alts:
            est = [v for b in s["estimated_base_rates"] for v in b.values()]
            lines.append(
                f"| {name} | EM on the transferred calibrator (adopted) | "
                f"{s['ece']:.3f} | {', '.join(f'{v:.2f}' for v in est)} |"
            )
            lines.append(
                f"| {name} | transferred calibrator, prior kept | "
                f"{s['ece_without_base_rate_reestimate']:.3f} | |"
            )
            for method, a in s["cold_alternatives"].items():
                lines.append(
                    f"| {name} | {method} | {a['ece']:.3f} | "
                    f"{', '.join(f'{v:.2f}' for v in a['base_rates'])} |"
                )
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
            ax.plot(
                [b["mean_p"] for b in r],
                [b["frac_violating"] for b in r],
                marker="o",
                label=f"{sc} (ECE {s['ece']:.3f})",
            )
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
    ap.add_argument(
        "--datasets",
        nargs="+",
        default=["spamassassin", "insults"],
        choices=["spamassassin", "insults"],
        help="cold needs both",
    )
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
                quality.log(
                    f"  trial {t} {name} {sc}: ECE {ece(np.array(m['p']), np.array(m['y'], float)):.3f} "  # noqa: E501
                    f"removed {m['removed']} ({m['removed_violating']} violating), "
                    f"threshold {m['action_threshold']}, base rates {m['base_rates']}"
                )
        quality.log(f"trial {t} done in {time.time() - t1:.0f} s")
    summary = {n: {sc: summarise(ts) for sc, ts in by.items()} for n, by in per.items()}
    meta = {
        "trials": args.trials,
        "n_seeds": args.n_seeds,
        "commit": quality.library_state()["commit"],
        "library_uncommitted": quality.library_state()["library_uncommitted"],
        "load_before": " ".join(f"{x:.1f}" for x in load_before),
        "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "seconds": time.time() - t0,
        "command": "python benchmarks/calibration.py " + " ".join(argv or sys.argv[1:]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    slim = {
        n: {sc: {k: v for k, v in s.items()} for sc, s in by.items()} for n, by in summary.items()
    }
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": slim}, indent=1))
    out.with_suffix(".md").write_text(render(summary, meta))
    plot(summary, out.parent / "calibration_reliability.png")
    print(render(summary, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
