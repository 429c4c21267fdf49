#!/usr/bin/env python
"""Which campaign decisions of one replay run were impure, and how the ranker scored them.

Runs one (set, method, trial) of ``benchmarks/replay.py`` exactly as the replay does and prints
every decision that gave 3 or more members a wrong verdict: its size, the representative's
label and probability, and the probabilities of the members that share its label and of those
that do not. Replay numbers move with the thread count (float sums in the searches can flip a
LightGBM split): run it with the threads of the run it explains.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replay_impure.py spamassassin campaign-explore 1
"""

from __future__ import annotations

import argparse

import numpy as np
import quality
import replay

from riskrank.index.signals.text import TextEmbeddingSignal


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("set", choices=sorted(quality.POLICY))
    p.add_argument("method", choices=[m for m in replay.METHODS if m.startswith("campaign")])
    p.add_argument("trial", type=int)
    p.add_argument("--max-rounds", type=int, default=40)
    args = p.parse_args()
    signal = TextEmbeddingSignal()
    data = {n: replay.Set(n, signal) for n in {args.set, quality.OTHER[args.set]}}
    d = data[args.set]
    ctx = replay.trial_context(d, [data[quality.OTHER[args.set]]], args.trial)
    ctx.update(young_model="transfer", lexical=True)  # replay.py's defaults
    queue, review, last = replay.riskrank_queue, replay.review, {}

    def scored_queue(d_, st, ctx_, method):
        decisions, last["p"] = queue(d_, st, ctx_, method)
        return decisions, last["p"]

    def reviewed(d_, st, decisions, rnd):
        for members in decisions:
            y, p = d_.y[members], last["p"][members]
            wrong = y != y[0]
            if wrong.sum() >= 3:
                print(
                    f"round {rnd}: {len(members)} members, representative label {y[0]} "
                    f"p {p[0]:.3f}; {wrong.sum()} wrong verdicts; p of members with its label: "
                    f"median {np.median(p[~wrong]):.3f}; of the others: median "
                    f"{np.median(p[wrong]):.3f} (min {p[wrong].min():.3f}, "
                    f"max {p[wrong].max():.3f})"
                )
        return review(d_, st, decisions, rnd)

    replay.riskrank_queue, replay.review = scored_queue, reviewed
    res = replay.run(d, args.method, ctx, args.max_rounds)
    print(
        f"{args.method}: {res['to_80']} decisions to 80%, {res['purity']}, "
        f"{res['wrong_verdicts']} wrong verdicts"
    )


if __name__ == "__main__":
    main()
