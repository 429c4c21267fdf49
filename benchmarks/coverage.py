#!/usr/bin/env python
"""How like its reviews each policy's candidates are, in and across domains (rank/coverage.py).

The case an outsider found (issue 13): two policies whose histories come from different
domains, spam reviewed only on SpamAssassin mails and insult only on Insults comments, and one
inventory holding both. Each policy's model then scores the other domain's items from data
unlike them: 178 of 184 real insults were queued under spam at P about 0.9.

Data (real texts, MiniLM, seeded): history 300 mails (policy ``spam``, their labels) and 300
comments (policy ``insult``); seeds 5 spam mails and 5 insults; inventories of other mails and
comments: ``mixed`` (``--mails`` + ``--comments``), and the in-domain controls ``mails`` and
``comments`` (each swept with its own policy's seeds only). For every sweep and policy: the
share of its candidates below the policy's threshold (the 5th percentile of its reviews'
nearest-review similarity, kept at training), whether the sweep warns, and that share split by
domain; and where real insults and spam were queued (one row per item: its riskiest policy).

    .venv/bin/python benchmarks/coverage.py [--mails 700 --comments 700]

Writes benchmarks/results/coverage.{md,json} (then run benchmarks/make_results.py).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
HISTORY, SEEDS = 300, 5


def _rows(table: pa.Table, rows, policy: str, prefix: str) -> pa.Table:
    part = table.take(pa.array(rows, pa.int64()))
    return pa.table(
        {
            "item_id": [f"{prefix}{i}" for i in part["item_id"].to_pylist()],
            "text": part["text"],
            "policy": [policy] * part.num_rows,
            "label": part["label"],
        }
    )


def make_data(mails: int, comments: int, seed: int = 0) -> dict:
    from riskrank.rank.app.datasets import load

    rng = np.random.default_rng(seed)
    out = {}
    for name, policy, prefix, n in (
        ("spamassassin", "spam", "mail-", mails),
        ("insults", "insult", "comment-", comments),
    ):
        data = load(name)
        label = data["label"].to_numpy()
        order = rng.permutation(data.num_rows)
        seeds = [int(r) for r in order if label[r] == 1][:SEEDS]
        rest = [int(r) for r in order if r not in set(seeds)]
        out[policy] = {
            "seeds": _rows(data, seeds, policy, prefix),
            "history": _rows(data, rest[:HISTORY], policy, prefix),
            "inventory": _rows(data, rest[HISTORY : HISTORY + n], policy, prefix),
        }
    return out


def _history(parts: list[pa.Table]) -> pa.Table:
    t = pa.concat_tables(parts)
    verdict = pa.array([2 * int(v) for v in t["label"].to_pylist()], pa.int8())
    return t.drop(["label"]).append_column("verdict", verdict)


def _seeds(parts: list[pa.Table]) -> pa.Table:
    t = pa.concat_tables(parts)
    return pa.table({"seed_id": t["item_id"], "policy": t["policy"], "text": t["text"]})


def _inventory(parts: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(parts).drop(["policy", "label"])


def base_rate_ways(ranker, cands: pa.Table, rows: np.ndarray, like: np.ndarray, y: np.ndarray):
    """One policy's calibrator (its own held-out reviews) on its candidates, three ways: as
    the sweep calibrated them (``adopted``), with the base rate re-estimated by EM on the rows
    the sweep would use (``em``: all, or those like its reviews where more than the warning's
    share are unlike) and with the calibrator's level kept (``kept``). Base rate (mean P) and
    ECE over all the policy's rows against the truth; the held-out rows of each class."""
    from riskrank.rank.calibration import shift_prior
    from riskrank.rank.coverage import WARN_SHARE
    from riskrank.rank.evaluation.metrics import expected_calibration_error

    table = cands.filter(pa.array(rows))
    policy = table["policy"][0].as_py()
    variant = ranker.variants(table)
    scores = ranker.predict(table)
    cal = ranker._own_calibrator(variant[0], policy)
    if cal is None:
        return None
    prior = like if (~like).sum() > WARN_SHARE * len(like) else np.ones(len(like), bool)
    shift, _ = shift_prior(cal, scores[prior])
    adopted = ranker.calibrate(scores, variant, [policy] * len(scores), covered=like).proba
    out = {"held_out_violating": round(cal.n * cal.base_rate)}
    out["held_out_benign"] = cal.n - out["held_out_violating"]
    for name, p in (
        ("adopted", adopted),
        ("em", cal.predict(scores, shift)),
        ("kept", cal.predict(scores)),
    ):
        out[name] = {
            "mean_p": round(float(p.mean()), 4),
            "ece": round(expected_calibration_error(p, y), 4),
        }
    return out


def summarise(result, truth: dict[str, tuple[str, int]], swept: set[str], ranker=None) -> dict:
    """Per policy: the report's coverage and the share below split by domain; the warnings;
    where each domain's violations were queued; with ``ranker``, ``base_rate_ways``."""
    from riskrank.rank.coverage import nearest_review

    report = result.report
    cands = result.candidates
    pols = np.asarray(cands["policy"].to_pylist(), dtype=object)
    domain = np.asarray([truth[i][0] for i in cands["item_id"].to_pylist()], dtype=object)
    per = {}
    for policy, d in sorted(report["decisions"].items()):
        cov = d.get("history_coverage", {}).get("text")
        if cov is None:
            continue
        near = nearest_review(cands, "text")
        by_domain = {}
        for dom in sorted(set(domain[pols == policy])):
            m = (pols == policy) & (domain == dom) & np.isfinite(near)
            by_domain[dom] = {
                "candidates": int(m.sum()),
                "share_below": round(float((near[m] < cov["threshold"]).mean()), 4),
            }
        own = "mail" if policy == "spam" else "comment"  # the domain its violations are in
        rows = pols == policy
        ids = np.asarray(cands["item_id"].to_pylist(), dtype=object)[rows]
        violating = np.array([truth[i] == (own, 1) for i in ids], bool)
        like = ~(near[rows] < cov["threshold"])  # the rows the base rate is estimated on
        per[policy] = {
            **cov,
            "by_domain": by_domain,
            "estimated_base_rate": d.get("estimated_base_rate"),
            "true_share": round(float(violating.mean()), 4),
            "true_share_like": round(float(violating[like].mean()), 4),
        }
        if ranker is not None:
            per[policy]["calibration"] = base_rate_ways(
                ranker, cands, rows, like, violating.astype(float)
            )
    queue = result.queue
    placed: dict[str, dict[str, int]] = {}
    rows = zip(
        queue["item_id"].to_pylist(),
        queue["policy"].to_pylist(),
        queue["unlike_reviews"].to_pylist(),
    )
    for item, policy, unlike in rows:
        dom, label = truth[item]
        if label:
            key = f"violating {dom}"
            placed.setdefault(key, {}).setdefault(policy, 0)
            placed[key][policy] += 1
            if unlike:  # of those, flagged as unlike the policy's reviews
                flagged = f"{policy} (unlike_reviews)"
                placed[key][flagged] = placed[key].get(flagged, 0) + 1
    warned = [w for w in report["warnings"] if "farther from every item" in w]
    # The queue's order against the truth (a violation of either policy): average precision
    # over every violation swept, and benign items queued under a policy at P >= 0.5.
    hits = np.array([truth[i][1] for i in queue["item_id"].to_pylist()], bool)
    positives = sum(label for item, (_, label) in truth.items() if item in swept)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    ap = float(precision[hits].sum() / positives) if positives else float("nan")
    p = np.asarray(queue["risk_probability"].to_pylist(), float)
    return {
        "policies": per,
        "warnings": warned,
        "violations_queued_under": placed,
        "average_precision": round(ap, 4),
        "benign_at_p50": int(((~hits) & (p >= 0.5)).sum()),
    }


def run(mails: int, comments: int) -> dict:
    from riskrank.rank.pipeline import sweep, train

    data = make_data(mails, comments)
    spam, insult = data["spam"], data["insult"]
    truth = {}
    for policy, dom in (("spam", "mail"), ("insult", "comment")):
        inv = data[policy]["inventory"]
        truth.update(
            {i: (dom, int(v)) for i, v in zip(inv["item_id"].to_pylist(), inv["label"].to_pylist())}
        )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        model = train(
            _history([spam["history"], insult["history"]]),
            _seeds([spam["seeds"], insult["seeds"]]),
            Path(tmp) / "model",
            show_progress=False,
        )
        t_train = time.time() - t0
        sweeps = {
            "mixed": (
                [spam["inventory"], insult["inventory"]],
                [spam["seeds"], insult["seeds"]],
            ),
            "mails (spam seeds)": ([spam["inventory"]], [spam["seeds"]]),
            "comments (insult seeds)": ([insult["inventory"]], [insult["seeds"]]),
        }
        out = {}
        for name, (inv, seeds) in sweeps.items():
            table = _inventory(inv)
            result = sweep(table, _seeds(seeds), model, k=None, show_progress=False)
            swept = set(table["item_id"].to_pylist())
            out[name] = summarise(result, truth, swept, model.ranker)
    text = next(s for s in model.signals if s.describe().get("type") == "text_embedding")
    encoder = {k: text.describe().get(k) for k in ("model", "backend", "precision")}
    return {
        "train_s": round(t_train, 1),
        "sweeps": out,
        "mails": mails,
        "comments": comments,
        "encoder": encoder,
    }


def markdown(res: dict, command: str, load: tuple, seconds: float) -> str:
    from riskrank.rank.coverage import QUANTILE, WARN_SHARE

    lines = [
        "# How like its reviews a policy's candidates are (issue 13)",
        "",
        f"Command: `{command}`  ",
        f"Load average at start {load}; {seconds:.0f} s in all (train {res['train_s']} s). "
        f"History: {HISTORY} SpamAssassin mails (spam) + {HISTORY} Insults comments (insult); "
        f"inventory {res['mails']} other mails + {res['comments']} other comments; "
        "{model} ({backend}, {precision}); `k=None` (every item recalled).".format(
            **res.get("encoder", {"model": "MiniLM", "backend": "?", "precision": "?"})
        ),
        "",
        f"Threshold per policy: the {QUANTILE:.0%} quantile of its reviews' similarity to their "
        f"nearest other review; a sweep warns where more than {WARN_SHARE:.0%} of a policy's "
        "candidates fall below it.",
        "",
        "| sweep | policy | threshold | candidates | below | mails below | comments below "
        "| warned | base rate: estimated / true among the rows like its reviews / among all |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in res["sweeps"].items():
        for policy, c in s["policies"].items():
            dom = c["by_domain"]

            def share(d, dom=dom):
                return f"{dom[d]['share_below']:.1%} of {dom[d]['candidates']}" if d in dom else "-"

            warned = any(w.startswith(f"policy '{policy}'") for w in s["warnings"])
            lines.append(
                f"| {name} | {policy} | {c['threshold']:.3f} | {c['candidates']} | "
                f"{c['share_below']:.1%} | {share('mail')} | {share('comment')} | "
                f"{'yes' if warned else 'no'} | {c['estimated_base_rate']} / "
                f"{c['true_share_like']} / {c['true_share']} |"
            )
    lines += [
        "",
        "Each policy's own calibrator over all its candidates (`base_rate_ways`): as the sweep "
        "calibrated them, with EM's re-estimated base rate, and with the calibrator's level "
        "kept (mean P / ECE against the truth; held-out violating / benign rows):",
        "",
        "| sweep | policy | held out | true share | adopted | EM | kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in res["sweeps"].items():
        for policy, c in s["policies"].items():
            w = c.get("calibration")
            if not w:
                continue
            cell = [f"{w[k]['mean_p']:.3f} / {w[k]['ece']:.3f}" for k in ("adopted", "em", "kept")]
            lines.append(
                f"| {name} | {policy} | {w['held_out_violating']} / {w['held_out_benign']} | "
                f"{c['true_share']} | " + " | ".join(cell) + " |"
            )
    lines += [
        "",
        "Where the violations were queued (one row per item, its riskiest policy), and how many "
        "of those rows say `unlike_reviews`:",
        "",
    ]
    for name, s in res["sweeps"].items():
        lines.append(
            f"- {name}: {json.dumps(s['violations_queued_under'], sort_keys=True)}; queue AP "
            f"{s['average_precision']:.4f}, benign items at P >= 0.5: {s['benign_at_p50']}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mails", type=int, default=700)
    p.add_argument("--comments", type=int, default=700)
    p.add_argument("--out", default=str(HERE / "results" / "coverage"))
    args = p.parse_args()
    load = tuple(round(x, 2) for x in os.getloadavg())
    t0 = time.time()
    res = run(args.mails, args.comments)
    command = ".venv/bin/python benchmarks/coverage.py" + (
        f" --mails {args.mails} --comments {args.comments}"
        if (args.mails, args.comments) != (700, 700)
        else ""
    )
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(res, command, load, time.time() - t0))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
