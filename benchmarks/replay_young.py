#!/usr/bin/env python
"""Which model should rank a young policy? The replay's items, scored three ways each round.

Follows the replay's exploit arm (benchmarks/replay.py, same seeds and trials: the library's
default ranker, reviews of 100 items a round) and, every round, scores the items not yet
reviewed with three models on the same candidates:

* ``cold``      the cold-start model the replay starts from (the other data set's history,
                seed evidence only), kept as if no review had come back;
* ``full``      the retrained ranker's full booster (every evidence column; what ranked a
                policy with history before the transfer booster existed);
* ``transfer``  the retrained ranker's transfer booster (policy-relative seed evidence and the
                policy's own history evidence; what ranks a young policy now).

Both retrained boosters come from one ``RiskRanker.fit`` (the policy is young, so both are
learned), scored through ``RiskRanker.score(..., variant=...)``.

    .venv/bin/python benchmarks/replay_young.py [--sets insults,spamassassin] [--trials 1]
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

from riskrank.rank.evaluation.metrics import average_precision  # noqa: E402
from riskrank.rank.ranker import RiskRanker  # noqa: E402

MODELS = ("cold", "full", "transfer")


def round_aps(d: replay.Set, st: replay.State, ctx: dict) -> dict:
    """AP of each model on the items not yet reviewed (and not seeds), same candidates."""
    crow = ctx["base_rows"]
    rows = np.array(sorted(st.verdict), int)
    open_rows = ~np.isin(crow, rows) & ~np.isin(crow, st.seeds)
    y = d.y[crow[open_rows]]
    out = {"cold": ctx["cold"].predict(ctx["base"].filter(pa.array(open_rows)))}
    if len(rows):
        hist = d.history(
            rows, [st.verdict[r] for r in rows], [f"round-{st.reviewed_in[r]}" for r in rows]
        )
        cands = replay.history_candidates(d, ctx, rows, hist)
        train = pa.concat_tables(
            [ctx["other_cands"], cands.filter(pa.array(np.isin(crow, rows)))],
            promote_options="permissive",
        )
        model = RiskRanker(n_jobs=1, cold_start=False).fit(
            train, history=pa.concat_tables([ctx["other_hist"], hist])
        )
        pool = cands.filter(pa.array(open_rows))
        for name in ("full", "transfer"):
            if name in model.models_:
                variant = np.full(pool.num_rows, name, dtype=object)
                out[name] = model.score(pool, variant=variant, calibrate=False, top=0).scores
    return {k: round(float(average_precision(y, v)), 4) for k, v in out.items()}


def follow(d: replay.Set, ctx: dict, max_rounds: int) -> list[dict]:
    st = replay.State(seeds=ctx["seed_rows"])
    positives = int(d.y.sum()) - replay.N_SEEDS
    rounds = []
    for rnd in range(max_rounds):
        aps = round_aps(d, st, ctx)
        rounds.append(
            {
                "round": rnd,
                "reviewed": len(st.verdict),
                "positives_reviewed": int(sum(st.verdict.values())),
                **aps,
            }
        )
        print(d.name, rounds[-1], flush=True)
        decisions, _ = replay.riskrank_queue(d, st, ctx, "exploit")
        replay.review(d, st, decisions, rnd)
        if st.curve[-1][1] >= replay.TARGET * positives:
            break
    return rounds


def markdown(meta: dict, results: dict) -> str:
    lines = [
        "# Which model ranks a young policy (replay, issue 13)",
        "",
        f"`python benchmarks/replay_young.py --sets {','.join(results)} --trials "
        f"{meta['trials']}` (commit {meta['library']['commit']}; {meta['seconds']} s; load "
        f"average at the end {meta['load_average_end']}). Along the replay's exploit arm, each "
        "round's items not yet reviewed are scored by the cold-start model kept, the retrained "
        "full booster and the retrained transfer booster (the docstring of "
        "benchmarks/replay_young.py). AP on those items; mean over trials.",
        "",
    ]
    for name, trials in results.items():
        lines += [
            f"{name}:",
            "",
            "| round | reviewed (violating) | " + " | ".join(MODELS) + " |",
            "|---" * (len(MODELS) + 2) + "|",
        ]
        for r in range(max(len(t) for t in trials)):
            at = [t[r] for t in trials if r < len(t)]
            cells = [
                f"{np.mean([x[m] for x in at]):.3f}" if all(m in x for x in at) else ""
                for m in MODELS
            ]
            rev = np.mean([x["reviewed"] for x in at])
            pos = np.mean([x["positives_reviewed"] for x in at])
            lines.append(f"| {r + 1} | {rev:.0f} ({pos:.0f}) | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", default="insults,spamassassin")
    p.add_argument("--trials", type=int, default=1)
    p.add_argument("--max-rounds", type=int, default=40)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args()
    library = quality.library_state()
    names = args.sets.split(",")
    data = replay.load_sets(names)
    t0 = time.time()
    results: dict = {n: [] for n in names}
    for trial in range(args.trials):
        for name in names:
            ctx = replay.trial_context(data[name], [data[quality.OTHER[name]]], trial)
            results[name].append(follow(data[name], ctx, args.max_rounds))
    meta = {
        "trials": args.trials,
        "seconds": round(time.time() - t0),
        "load_average_end": [round(x, 1) for x in os.getloadavg()],
        "library": library,
    }
    out = Path(args.out)
    (out / "replay_young.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (out / "replay_young.md").write_text(markdown(meta, results))
    print(markdown(meta, results))


if __name__ == "__main__":
    main()
