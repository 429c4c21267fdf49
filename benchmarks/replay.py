#!/usr/bin/env python
"""Replay of the review loop: simulated reviewers return the true labels, round after round.

Per data set (the sweep side of benchmarks/quality.py's split: SpamAssassin's new groups,
Insults' test set) and trial t (``numpy.random.default_rng(t)``):

* 5 violating items are drawn as seeds; they are known, never queued and not counted as found.
* The policy has no review history. The model's history holds the OTHER data set's policy
  (its sweep side, labelled, with its own 5 seeds drawn by the same rng): round 0 is ranked by
  the model trained on that alone (cold start), later rounds by the model retrained on it plus
  every verdict of this policy so far (what ``riskrank review import`` does).
* Each round reviewers decide 100 queue entries (items, or campaigns in campaign mode); the
  loop stops at 80% of the violations found or after ``--max-rounds`` rounds.

Methods (same seeds and trials):
  (a) bank      max cosine to a seed bank; every confirmed violation joins the bank.
  (b) logreg    logistic regression on the MiniLM vectors of the reviewed items (+ the seeds as
                positives), retrained each round; round 0 (no negatives yet) ranks as (a).
  (b') logreg-lex the same on the MiniLM vector plus the lexical probe's word and character
                n-grams: the features riskrank's arms have (``--lexical``, the default).
  (c) exploit   riskrank: ``recall`` (exhaustive, with the reviewed items as exemplars),
                ``RiskRanker`` retrained each round (the policy is young: its transfer
                booster ranks it; ``--young-model`` compares), ``arrange_queue(explore=0)``.
  (d) explore   the same with ``arrange_queue(explore=0.1)``.
  (e) campaign  the same in campaign mode (``campaigns=True``, explore 0): one decision per
                campaign, the representative's true label applied to every member (a member
                whose true label differs gets a wrong verdict: that is the purity cost).
  (e') campaign-explore  campaign mode with 10% exploration: the product's default
                campaign mode (``--campaign-mode`` keeps ``--explore 0.1``).

The product's path, with the lexical n-gram probe refitted on the reviewed texts every round
(``--no-lexical`` leaves it out, as this replay did before it became the default), except the
library's recall/ranker/queue functions are called on cached MiniLM indexes instead of
re-embedding per round. Two
shortcuts change no number (``--check-cache`` asserts the first each round; the second follows
from the fit's order of random draws): the seeds' evidence is recalled once per (set, trial)
and each round adds only the reviewed items' ``hist_text_*`` columns; the per-round ranker is
fitted without the cold-start booster, which a policy with history never uses. Measured on
4 rounds x 3 riskrank arms x 2 sets, interleaved with the old code: identical rounds, 222 s
before, 96 s after (load average 7-9).

    .venv/bin/python benchmarks/replay.py [--trials 5] [--max-rounds 40]
    # on a labelled set of your own (item_id, text, label; see quality.read_labelled), its
    # round 0 ranked by a model of both shipped sets' histories (two policies: --cold-from
    # spamassassin or insults borrows one); results under runs/replay/:
    .venv/bin/python benchmarks/replay.py --data mine=labelled.parquet [--cold-from insults]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality  # noqa: E402

from riskrank.index.signals import SignalBatch, TextEmbeddingSignal  # noqa: E402
from riskrank.rank.evaluation.metrics import average_precision  # noqa: E402
from riskrank.rank.exploration import DEFAULT_RULE, arrange_queue  # noqa: E402
from riskrank.rank.queue import build_queue  # noqa: E402
from riskrank.rank.ranker import (  # noqa: E402
    MIN_POLICY_REVIEWS,
    RiskRanker,
    ScoredCandidates,
)
from riskrank.recall.candidates import candidate_schema  # noqa: E402
from riskrank.recall.history import ReviewedExemplars  # noqa: E402
from riskrank.recall.lexical import LexicalProbe, lexical_features  # noqa: E402
from riskrank.recall.recaller import recall  # noqa: E402

ROUND, N_SEEDS, TARGET = 100, 5, 0.8
# --young-model cold: the cold-start model ranks until the policy has this many reviews (after
# the first 100 it ranked the rest better than the retrained full booster on Insults; after
# 200, no better: see RESULTS.md, replay).
KEEP_COLD_REVIEWS = 200
LOADS: list[list[float]] = []  # load average (1, 5, 15 min) after each (set, method, trial)
METHODS = ("bank", "logreg", "exploit", "campaign", "explore", "logreg-lex", "campaign-explore")
LABEL = {
    "bank": "(a) seed bank max cosine",
    "logreg": "(b) logreg on reviewed",
    "logreg-lex": "(b') logreg on reviewed, vectors + n-grams",
    "exploit": "(c) riskrank exploit",
    "explore": "(d) riskrank + 10% explore",
    "campaign": "(e) riskrank campaign mode",
    "campaign-explore": "(e') riskrank campaign mode + 10% explore",
}


class Set:
    """One data set's sweep side: cached index, vectors and labels in index order."""

    def __init__(self, name: str, signal: TextEmbeddingSignal) -> None:
        self.name, self.policy = name, quality.POLICY[name]
        _, sweep = quality.split(name)
        self.index = quality.open_index(name, "sweep", sweep, signal)
        si = self.index.signals["text"]
        self.ids = list(si.ids)
        self.row = {i: r for r, i in enumerate(self.ids)}
        label = dict(zip(sweep["item_id"].to_pylist(), sweep["label"].to_pylist()))
        text = dict(zip(sweep["item_id"].to_pylist(), sweep["text"].to_pylist()))
        self.y = np.array([label[i] for i in self.ids], int)
        self.text = [text[i] for i in self.ids]
        self.X = np.ascontiguousarray(si.vectors, np.float32)
        self.ngrams = None  # (b')'s features, made on first use

    def seeds(self, trial: int) -> tuple[np.ndarray, pa.Table, dict]:
        rng = np.random.default_rng(trial)
        rows = np.sort(rng.choice(np.flatnonzero(self.y == 1), N_SEEDS, replace=False))
        table = pa.table(
            {
                "seed_id": [self.ids[r] for r in rows],
                "policy": [self.policy] * N_SEEDS,
                "text": [self.text[r] for r in rows],
            }
        )
        batch = SignalBatch(self.X[rows], np.ones(N_SEEDS, bool), [None] * N_SEEDS)
        return rows, table, {"text": batch}

    def history(self, rows: np.ndarray, verdicts: np.ndarray, sweep_ids: list[str]) -> pa.Table:
        return pa.table(
            {
                "item_id": [self.ids[r] for r in rows],
                "policy": [self.policy] * len(rows),
                "verdict": pa.array(2 * np.asarray(verdicts), pa.int8()),
                "sweep_id": sweep_ids,
            }
        )


@dataclass
class State:
    """What the reviewers have decided so far in one (method, trial) run."""

    seeds: np.ndarray
    verdict: dict[int, int] = field(default_factory=dict)  # row -> label given
    reviewed_in: dict[int, int] = field(default_factory=dict)  # row -> round
    decisions: int = 0
    curve: list[tuple[int, int]] = field(default_factory=list)  # (decisions, found) per decision
    purity: list[tuple[int, int]] = field(default_factory=list)  # (members, same label)


def load_sets(names: list[str], signal: TextEmbeddingSignal | None = None) -> dict[str, Set]:
    """Each named set and the ones its cold start learns from (``quality.cold_sources``),
    each once (``signal``: default MiniLM)."""
    signal = signal or TextEmbeddingSignal()
    donors = {o for n in names for o in quality.cold_sources(n)}
    return {n: Set(n, signal) for n in {*names, *donors}}


def bank_scores(d: Set, st: State) -> np.ndarray:
    bank = np.concatenate([st.seeds, [r for r, v in st.verdict.items() if v == 1]]).astype(int)
    return (d.X @ d.X[bank].T).max(1)


def logreg_scores(d: Set, st: State, X=None) -> np.ndarray:
    """(b): logistic regression on the reviewed items' features ``X`` (default the MiniLM
    vectors) with the seeds as positives; every item scored."""
    from sklearn.linear_model import LogisticRegression

    X = d.X if X is None else X
    rows = np.array(list(st.verdict), int)
    y = np.array([st.verdict[r] for r in rows], int)
    if len(rows) == 0 or y.min() == 1:
        return bank_scores(d, st)  # no negatives yet: a classifier cannot be fitted
    y = np.concatenate([y, np.ones(len(st.seeds), int)])
    train = X[np.concatenate([rows, st.seeds]).astype(int)]
    return LogisticRegression(C=1.0, max_iter=2000).fit(train, y).decision_function(X)


def logreg_lex_scores(d: Set, st: State) -> np.ndarray:
    """(b'): (b) with the lexical probe's word and character n-grams beside the MiniLM vector,
    the features riskrank's arms get with ``--lexical``: a baseline as strong in features."""
    import scipy.sparse as sp

    if d.ngrams is None:
        d.ngrams = sp.hstack([sp.csr_matrix(d.X), lexical_features(d.text)]).tocsr()
    return logreg_scores(d, st, d.ngrams)


def history_candidates(d: Set, ctx: dict, rows: np.ndarray, hist: pa.Table) -> pa.Table:
    """``recall(d.index, seeds, k=all, exemplars=reviewed rows, exclude_self=True)``, built from
    the seed-only recall of this (set, trial) plus this round's ``hist_text_*`` columns.

    The seeds never change within a trial, so their evidence (most of recall's cost: a probe
    self-trained on the seeds, neighbourhoods, background z-scores) is computed once per trial
    and reused by every round and arm; only the reviewed items' evidence is new each round.
    Same columns, order, types and values as recall's own table: ``--check-cache`` asserts it.
    """
    base, ids = ctx["base"], ctx["base_ids"]
    exemplars = ReviewedExemplars("text", d.X[rows], hist.select(["item_id", "policy", "verdict"]))
    signal = d.index.signals["text"].signal
    ev = exemplars.evidence(
        d.policy,
        ids,
        d.X[ctx["base_rows"]],
        exclude_self=True,
        near_copy_sim=signal.match_thresholds[1],
    )
    types = {f.name: f.type for f in candidate_schema([signal], history=True)}
    # recall writes a signal's history columns after its seed and benign-seed evidence.
    at = base.column_names.index("text_benign_margin") + 1
    for j, (name, values) in enumerate(ev.items()):
        col = pa.array(list(values) if values.dtype == object else values).cast(types[name])
        base = base.add_column(at + j, name, col)
    lexical = None
    if ctx.get("lexical"):
        # As rank.pipeline.train fits it: on the reviewed texts (this policy's reviews only:
        # the other set's rows carry no history evidence here either).
        lexical = LexicalProbe.fit(
            [d.text[r] for r in rows],
            hist["policy"].to_pylist(),
            hist["verdict"].to_pylist(),
            hist["item_id"].to_pylist(),
        )
        texts = [d.text[r] for r in ctx["base_rows"]]
        lex = lexical.evidence(d.policy, ids, texts, exclude_self=True)
        at = base.column_names.index("text")  # recall adds it after every signal's evidence
        for j, (name, values) in enumerate(lex.items()):
            base = base.add_column(at + j, name, pa.array(values, pa.float32()))
    if ctx.get("check_cache"):
        slow = recall(
            d.index,
            ctx["seeds"],
            k=len(d.ids),
            exclude_self=True,
            exemplars={"text": exemplars},
            seed_vectors=ctx["svec"],
            lexical=lexical,
            show_progress=False,
        )
        same_table(base, slow, what=f"{d.name}: cached candidates vs recall()")
    return base


def same_table(got: pa.Table, want: pa.Table, what: str) -> None:
    """Same columns, order, types and values (NaN equal to NaN, which Arrow's equals denies)."""
    if got.schema != want.schema:
        raise AssertionError(f"{what}: schema {got.schema.names} != {want.schema.names}")
    for name in want.column_names:
        a, b = got[name], want[name]
        if pa.types.is_floating(a.type):
            ok = np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True)
        else:
            ok = a.to_pylist() == b.to_pylist()
        if not ok:
            raise AssertionError(f"{what}: column {name!r} differs")


def riskrank_queue(d: Set, st: State, ctx: dict, method: str) -> tuple[list, np.ndarray]:
    """One round of the product's path: recall, retrain, score, arrange the queue."""
    rows = np.array(sorted(st.verdict), int)
    crow = ctx["base_rows"]
    young = ctx.get("young_model", "transfer")
    if len(rows) == 0 or (young == "cold" and len(rows) < KEEP_COLD_REVIEWS):
        cands, model = ctx["base"], ctx["cold"]
    else:
        hist = d.history(
            rows, [st.verdict[r] for r in rows], [f"round-{st.reviewed_in[r]}" for r in rows]
        )
        cands = history_candidates(d, ctx, rows, hist)
        train = pa.concat_tables(
            [ctx["other_cands"], cands.filter(pa.array(np.isin(crow, rows)))],
            promote_options="permissive",
        )
        # cold_start=False: the policy now has history evidence, so its rows are scored by
        # the full booster; the cold one would be fitted (half the fit) and never used. The
        # full booster is the same either way (it is fitted first, from the same rng draws).
        # young == "full": every policy with history on the full booster (before the
        # transfer booster existed).
        model = RiskRanker(
            n_jobs=1,
            cold_start=False,
            min_policy_reviews=0 if young == "full" else MIN_POLICY_REVIEWS,
        ).fit(train, history=pa.concat_tables([ctx["other_hist"], hist]))
    open_rows = ~np.isin(crow, rows) & ~np.isin(crow, st.seeds)
    pool = cands.filter(pa.array(open_rows))
    # The product's score() also writes reasons (pred_contrib): not needed here.
    scored = model.calibrate_scored(
        ScoredCandidates.uncalibrated(
            model.predict(pool), [""] * pool.num_rows, model.variants(pool)
        ),
        pool["policy"].to_pylist(),
        covered=model.covered(pool),  # as the product's score() calibrates
    )
    proba = scored.proba
    if "probe" in ctx:  # benchmarks/young_calibration.py: each round's model and scores
        ctx["probe"](model, pool, scored, crow[open_rows])
    ranked = build_queue(pool, scored)
    queue = arrange_queue(
        ranked,
        d.index,
        budget=ROUND,
        campaigns=method.startswith("campaign"),
        explore=0.1 if method.endswith("explore") else 0.0,
        rule=ctx.get("explore_rule", DEFAULT_RULE),
    )
    if "observe" in ctx:  # benchmarks/explore_variants.py: what each round's slots were
        ctx["observe"](ranked, queue)
    full = np.full(len(d.ids), -np.inf)
    full[crow[open_rows]] = proba
    members = (
        queue["campaign_members"].to_pylist()
        if method.startswith("campaign")
        else [[i] for i in queue["item_id"].to_pylist()]
    )
    return [[d.row[m] for m in ms] for ms in members], full


def review(d: Set, st: State, decisions: list[list[int]], rnd: int) -> None:
    """Simulated reviewers: the representative's true label, applied to every member."""
    found = st.curve[-1][1] if st.curve else 0
    for members in decisions:
        v = int(d.y[members[0]])
        for m in members:
            st.verdict[m] = v
            st.reviewed_in[m] = rnd
            found += int(v == 1 and d.y[m] == 1)
        st.decisions += 1
        st.curve.append((st.decisions, found))
        st.purity.append((len(members), int((d.y[members] == v).sum())))


BASELINES = {"bank": bank_scores, "logreg": logreg_scores, "logreg-lex": logreg_lex_scores}


def run(d: Set, method: str, ctx: dict, max_rounds: int) -> dict:
    st = State(seeds=ctx["seed_rows"])
    positives = int(d.y.sum()) - N_SEEDS
    rounds = []
    for rnd in range(max_rounds):
        t0 = time.time()
        open_mask = np.ones(len(d.ids), bool)
        open_mask[list(st.verdict)] = False
        open_mask[st.seeds] = False
        if method in BASELINES:
            scores = BASELINES[method](d, st)
            scores = np.where(open_mask, scores, -np.inf)
            top = np.argsort(-scores, kind="stable")[:ROUND]
            decisions = [[int(r)] for r in top if open_mask[r]]
        else:
            decisions, scores = riskrank_queue(d, st, ctx, method)
        ap = average_precision(d.y[open_mask], scores[open_mask])
        review(d, st, decisions, rnd)
        found = st.curve[-1][1]
        rounds.append(
            {
                "round": rnd,
                "decisions": st.decisions,
                "items_reviewed": len(st.verdict),
                "found": found,
                "recall": round(found / positives, 4),
                "ap_unreviewed": round(float(ap), 4),
                "seconds": round(time.time() - t0, 1),
            }
        )
        if found >= TARGET * positives or not open_mask.any():
            break
    return {
        "rounds": rounds,
        "positives": positives,
        "to_50": reviews_to(st.curve, 0.5 * positives),
        "to_80": reviews_to(st.curve, 0.8 * positives),
        "purity": purity(st.purity),
        "wrong_verdicts": int(sum(m - s for m, s in st.purity)),
    }


def reviews_to(curve: list[tuple[int, int]], goal: float) -> int | None:
    """Decisions spent when the found count first reaches ``goal`` (None: never)."""
    for decisions, found in curve:
        if found >= goal:
            return decisions
    return None


def purity(pairs: list[tuple[int, int]]) -> dict:
    multi = [(m, s) for m, s in pairs if m >= 2]
    return {
        "decisions_on_campaigns": len(multi),
        "members": sum(m for m, _ in multi),
        "purity": round(sum(s for _, s in multi) / sum(m for m, _ in multi), 4) if multi else None,
    }


def other_context(others: list[Set], trial: int) -> dict:
    """The other data sets as the model's history (each its own policy, recalled from its own
    seeds): their candidates and the cold-start model."""
    cands, hist = [], []
    for o in others:
        rows, seeds, svec = o.seeds(trial)
        c = recall(o.index, seeds, k=len(o.ids), seed_vectors=svec, show_progress=False)
        keep = ~np.isin(np.array([o.row[i] for i in c["item_id"].to_pylist()]), rows)
        c = c.filter(pa.array(keep))
        crow = np.array([o.row[i] for i in c["item_id"].to_pylist()])
        cands.append(c)
        hist.append(o.history(crow, o.y[crow], ["other"] * len(crow)))
    cands, hist = pa.concat_tables(cands), pa.concat_tables(hist)
    return {
        "other_cands": cands,
        "other_hist": hist,
        "cold": RiskRanker(n_jobs=1).fit(cands, history=hist),
    }


def cold_overlap(d: Set, o: Set) -> str | None:
    """A warning where ``d``'s texts are also in ``o``, the set its cold-start model learns
    from: the round-0 model has then seen their labels, and the replay's early rounds flatter
    riskrank (a --data set cut from SpamAssassin or Insults, an outsider's note)."""
    seen = {" ".join(t.split()) for t in o.text}
    shared = sum(" ".join(t.split()) in seen for t in d.text)
    if not shared:
        return None
    return (
        f"replay: {shared:,} of {d.name}'s {len(d.text):,} texts are also in {o.name}, whose "
        f"items train its cold-start model (round 0 has seen their labels); take --cold-from "
        f"the other set or leave them out"
    )


def trial_context(d: Set, others: list[Set], trial: int, check_cache: bool = False) -> dict:
    """What every round and arm of one (set, trial) shares: the seeds, their candidates (seed
    evidence only: every item, as recall returns it with no history) and the other sets."""
    ctx = other_context(others, trial)
    ctx["seed_rows"], ctx["seeds"], ctx["svec"] = d.seeds(trial)
    ctx["base"] = recall(
        d.index,
        ctx["seeds"],
        k=len(d.ids),
        exclude_self=True,
        seed_vectors=ctx["svec"],
        show_progress=False,
    )
    ctx["base_ids"] = np.asarray(ctx["base"]["item_id"].to_pylist(), dtype=object)
    ctx["base_rows"] = np.array([d.row[i] for i in ctx["base_ids"]])
    ctx["check_cache"] = check_cache
    return ctx


def _mean_of(trials: list[dict], key: str) -> tuple[float | None, list]:
    vals = [t[key] for t in trials]
    return (float(np.mean(vals)) if all(v is not None for v in vals) else None), vals


def _mean_or_none(vals: list) -> float | None:
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def summarise(results: dict) -> list[dict]:
    """Per data set and method: mean reviews to 50% / 80% over trials (None if not reached)."""
    out = []
    for name, by_method in results.items():
        for method, trials in by_method.items():
            m50, v50 = _mean_of(trials, "to_50")
            m80, v80 = _mean_of(trials, "to_80")
            early = [t["rounds"][0]["found"] for t in trials]
            out.append(
                {
                    "set": name,
                    "method": method,
                    "trials": len(trials),
                    "positives": trials[0]["positives"],
                    "to_50": m50,
                    "to_80": m80,
                    "to_50_trials": v50,
                    "to_80_trials": v80,
                    "found_round0": float(np.mean(early)),
                    "found_after_3": float(
                        np.mean(
                            [t["rounds"][min(2, len(t["rounds"]) - 1)]["found"] for t in trials]
                        )
                    ),
                    "purity": _mean_or_none([t["purity"]["purity"] for t in trials]),
                    "wrong_verdicts": float(np.mean([t["wrong_verdicts"] for t in trials])),
                }
            )
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a (not reached)"


def _early(meta: dict) -> int:
    """How many rounds the "found in rounds 1-N" column covers (``found_after_3``): three, or
    all of a shorter replay's (it said "1-3" after 2 rounds: an outsider's report)."""
    return min(3, int(meta.get("max_rounds") or 3))


def _versus(best, ran: dict | None, what: str) -> str:
    """``best`` against a method's reviews to 80%: a method left out (``--methods``) is "not
    run", not "not reached" (an outsider's report)."""
    return f"n/a ({what} not run)" if ran is None else _ratio(best, ran["to_80"])


def _pays_back(explore: list, exploit: list) -> str:
    """Whether exploration needed fewer reviews to 80% on average over the trials both
    finished (same seeds), with the trials in which it did. (A majority of trials said "yes"
    where exploration won three trials by 1-6 reviews, lost two by 4-6 and needed more on
    average: an outsider's report.) A trial only one of them finished counts for that one
    (the trials exploration never finished were left out, and four of five unfinished read
    "yes": a reviewer's report)."""
    trials = [(d, c) for d, c in zip(explore, exploit) if d is not None or c is not None]
    if not trials:
        return "n/a"
    both = [(d, c) for d, c in trials if d is not None and c is not None]
    lost = sum(d is None for d, _ in trials)  # exploit finished, exploration did not
    won = sum(c is None for _, c in trials)
    fewer = sum(d < c for d, c in both) + won
    mean = float(np.mean([d - c for d, c in both])) if both else 0.0
    verdict = "yes" if (won - lost or -mean) > 0 else "no"
    said = f"{mean:+.1f} reviews on average" if both else "no trial finished by both"
    if lost or won:
        said += f" over the {len(both)} trials both finished"
    if lost:
        said += f"; it did not reach 80% in {lost} trial(s) where exploit did"
    if won:
        said += f"; exploit did not in {won} trial(s) where it did"
    return f"{verdict} ({said}; fewer in {fewer} of {len(trials)} trials)"


def _n(mean: float | None) -> str:
    """A mean number of reviews, or "not reached" (it printed None: a reviewer's report)."""
    return "not reached" if mean is None else str(mean)


def _reached(mean: float | None, trials: list) -> str:
    """A mean and its trials, "not reached" where a trial did not reach the goal (it said
    "None [None, 300]": an outsider's report)."""
    listed = ", ".join("not reached" if v is None else str(v) for v in trials)
    return f"{'not reached' if mean is None else mean} [{listed}]"


def goal_check(summary: list[dict], early: int = 3) -> list[str]:
    lines = []
    by = {(s["set"], s["method"]): s for s in summary}
    for name in dict.fromkeys(s["set"] for s in summary):
        got = {m: by.get((name, m)) for m in METHODS}
        rr = [
            got[m]["to_80"]
            for m in ("exploit", "explore", "campaign", "campaign-explore")
            if got[m] and got[m]["to_80"] is not None
        ]
        best = min(rr) if rr else None
        a, b = got["bank"], got["logreg"]
        positives = next(s["positives"] for s in summary if s["set"] == name)
        floor = int(np.ceil(TARGET * positives))
        lines.append(
            f"- {name}: best riskrank (c-e') reviews to 80% = {_n(best)}; vs (a) "
            f"{_versus(best, a, '(a)')} (goal <= 0.7x), vs (b) {_versus(best, b, '(b)')} "
            f"(goal <= 0.9x). One review per item can do no better than {floor} "
            f"(every review a violation): {_versus(floor, a, '(a)')} of (a), "
            f"{_versus(floor, b, '(b)')} of (b)."
        )
        if got["logreg-lex"]:
            b2 = got["logreg-lex"]["to_80"]
            lines.append(
                f"- {name}: vs (b') logreg on vectors + n-grams ({_n(b2)}): {_ratio(best, b2)}."
            )
        c, d, e = got["exploit"], got["explore"], got["campaign"]
        if c and d:
            lines.append(
                f"- {name}: exploration's early yield (violations found in rounds 1-{early}):"
                f" (d) {d['found_after_3']:.0f} vs (c) {c['found_after_3']:.0f} = "
                f"{_ratio(d['found_after_3'], c['found_after_3'])} (goal >= 0.90x); "
                f"pays back by the end: reviews to 80% (d) {_n(d['to_80'])} vs (c) "
                f"{_n(c['to_80'])} ({_ratio(d['to_80'], c['to_80'])}): "
                f"{_pays_back(d['to_80_trials'], c['to_80_trials'])}."
            )
        e2 = got["campaign-explore"]
        if e and e2:
            lines.append(
                f"- {name}: exploration in campaign mode: early yield (e') "
                f"{e2['found_after_3']:.0f} vs (e) {e['found_after_3']:.0f} = "
                f"{_ratio(e2['found_after_3'], e['found_after_3'])}; decisions to 80% (e') "
                f"{_n(e2['to_80'])} vs (e) {_n(e['to_80'])} ({_ratio(e2['to_80'], e['to_80'])}): "
                f"{_pays_back(e2['to_80_trials'], e['to_80_trials'])}."
            )
        if c and e:
            lines.append(
                f"- {name}: campaign mode decisions to 80% (e) {_n(e['to_80'])} vs (c) "
                f"{_n(c['to_80'])} ({_ratio(e['to_80'], c['to_80'])}; goal <= 0.5x on "
                f"SpamAssassin) at purity {_fmt(e['purity'])} (goal >= 0.98), "
                f"{e['wrong_verdicts']:.0f} wrong verdicts per trial."
            )
    return lines


def markdown(meta: dict, summary: list[dict], results: dict) -> str:
    # The command as it was given (runs before it was recorded: as it would have been).
    command = meta.get("command") or (
        f"python benchmarks/replay.py --trials {meta['trials']} --max-rounds {meta['max_rounds']}"
    )
    data = [
        f"`{n}` = `{d['file']}` (sha256 {d['sha256'][:16]}..., sweep side {d['rows']['sweep']} "
        f"rows, cold start from {d['cold_from']})"
        for n, d in meta.get("data", {}).items()
    ]
    lines = [
        "# Replay",
        "",
        *([f"Data: {'; '.join(data)}.", ""] if data else []),
        f"`{command}` (sets {meta['sets']}; complete: {meta['complete']}; seconds of the "
        f"trials {meta['seconds']}, of embedding or reading the sets before them "
        f"{_recorded(meta.get('data_seconds'))}; load average at the end "
        f"{meta['load_average_end']}; commit "
        f"{meta['library']['commit']}). Each round 100 decisions; stop at 80% of the violations"
        " found. Violations exclude the 5 seeds. Trial t: seeds drawn with "
        "`numpy.random.default_rng(t)`. Methods and set-up: the docstring of "
        f"benchmarks/replay.py. Plot: `{meta.get('plot', 'results/replay.png')}`."
        + (
            ""
            if meta["complete"]
            else " **Stopped before every trial finished: the trials "
            "column says how many each row has.**"
        ),
        "",
        *[line for w in meta.get("warnings", []) for line in (f"**Warning**: {w}.", "")],
        "| data set | method | trials | decisions to 50% | decisions to 80% | found in round 1 "
        f"| found in rounds 1-{_early(meta)} | purity of campaign decisions | wrong verdicts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['set']} | {LABEL[s['method']]} | {s['trials']} | "
            f"{_reached(s['to_50'], s['to_50_trials'])} | "
            f"{_reached(s['to_80'], s['to_80_trials'])} | "
            f"{s['found_round0']:.0f} | {s['found_after_3']:.0f} | "
            f"{_fmt(s['purity'])} | {s['wrong_verdicts']:.0f} |"
        )
    lines += ["", "### Goal check", "", *goal_check(summary, _early(meta)), ""]
    lines += per_round_tables(results)
    return "\n".join(lines) + "\n"


def per_round_tables(results: dict) -> list[str]:
    """Per data set, per round: violations found (cumulative) / AP on the items not yet
    reviewed, the mean over the trials that ran that round (a trial stops at 80%)."""
    lines = [
        "### Per round, mean over trials: violations found (cumulative) / AP on the items "
        "not yet reviewed (in brackets: trials still running at that round, where fewer "
        "than all)",
        "",
    ]
    for name, by_method in results.items():
        n = max(len(t["rounds"]) for ts in by_method.values() for t in ts)
        lines += [
            f"{name}:",
            "",
            "| round | " + " | ".join(LABEL[m] for m in by_method) + " |",
            "|---" * (len(by_method) + 1) + "|",
        ]
        for r in range(n):
            cells = []
            for trials in by_method.values():
                at = [t["rounds"][r] for t in trials if r < len(t["rounds"])]
                if not at:
                    cells.append("")
                    continue
                found = np.mean([x["found"] for x in at])
                ap = np.mean([x["ap_unreviewed"] for x in at])
                more = f" ({len(at)})" if len(at) < len(trials) else ""
                cells.append(f"{found:.0f} / {ap:.3f}{more}")
            lines.append(f"| {r + 1} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, (name, by_method) in zip(axes[0], results.items()):
        for method, trials in by_method.items():
            for k, t in enumerate(trials):
                xs = [r["decisions"] for r in t["rounds"]]
                ys = [r["recall"] for r in t["rounds"]]
                ax.plot(
                    xs,
                    ys,
                    color=f"C{METHODS.index(method)}",
                    alpha=0.8,
                    lw=1.2,
                    label=LABEL[method] if k == 0 else None,
                )
        ax.axhline(TARGET, color="grey", ls=":", lw=1)
        ax.set(
            title=f"{name}: violations found per review decision",
            xlabel="review decisions",
            ylabel="share of violations found",
            ylim=(0, 1.02),
        )
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)  # rewritten after every run: open figures would pile up


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--max-rounds", type=_at_least_one, default=40)
    p.add_argument("--sets", default=None, help="default spamassassin,insults (or the --data sets)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument(
        "--out",
        default=None,
        help="default benchmarks/results (with --data: runs/replay under the current "
        "directory; the committed results stay)",
    )
    quality.add_data_options(p, pooled=True)
    p.add_argument(
        "--check-cache",
        action="store_true",
        help="every round, also run recall() with the reviewed items and assert the "
        "cached candidate table equals it (slower)",
    )
    p.add_argument(
        "--young-model",
        choices=("transfer", "full", "cold"),
        default="transfer",
        help="what ranks a policy with few reviews of its own: the library's transfer "
        "booster (default), the full booster (the code before it), or the "
        f"cold-start model until {KEEP_COLD_REVIEWS} reviews",
    )
    p.add_argument(
        "--lexical",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="riskrank arms use the lexical n-gram probe fitted on the reviewed texts, "
        "as the product's train does (default; --no-lexical: embeddings only, "
        "as the replay was run before this option became the default)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a one-set run from the replay_<set>.json in --out: the runs it "
        "finished are kept, the missing (trial, method) runs are run (its meta "
        "then names both code states)",
    )
    p.add_argument(
        "--combine",
        action="store_true",
        help="only merge replay_<set>.json files (runs with one --sets each, run in "
        "parallel) into replay.{json,md,png}",
    )
    args = p.parse_args()
    if unknown := [m for m in args.methods.split(",") if m not in METHODS]:
        p.error(f"unknown method(s) {unknown}: {', '.join(METHODS)}")
    # The replay draws seeds from a set's sweep side only: its history side is never read.
    own = quality.register_data(args.data, args.cold_from, sides=("sweep",))
    args.sets = args.sets or ",".join(own or quality.SHIPPED)
    # A set of the user's own: under the directory they ran it from (it was the library's
    # clone, wherever they stood: an outsider's report); the committed results: in the repo.
    args.out = args.out or ("runs/replay" if own else str(ROOT / "benchmarks/results"))
    if args.combine:
        return combine(args)
    # The code this process imported: later commits are not re-imported by a running replay.
    args.library = quality.library_state()
    signal = TextEmbeddingSignal()
    names = args.sets.split(",")
    if unknown := [n for n in names if n not in quality.POLICY]:
        p.error(f"unknown set(s) {unknown}: spamassassin, insults or a --data NAME")
    t_data = time.time()
    data = load_sets(names, signal)
    args.data_seconds = round(time.time() - t_data)  # embedding the sets (cached: reading)
    # Kept in the results too: a replay.md read later, without the terminal's log, stated
    # its goal check with no word of it (an outsider's report).
    args.warnings = []
    for name in names:
        for other in quality.cold_sources(name):
            if warning := cold_overlap(data[name], data[other]):
                print(warning, file=sys.stderr, flush=True)
                args.warnings.append(warning.removeprefix("replay: "))
    results: dict = {n: {m: [] for m in args.methods.split(",")} for n in names}
    if args.resume:
        resume(args, results)
    t0 = time.time()
    for trial in range(args.trials):
        for name in names:
            todo = [m for m, runs in results[name].items() if len(runs) <= trial]
            if not todo:
                continue
            d = data[name]
            others = [data[o] for o in quality.cold_sources(name)]
            ctx = trial_context(d, others, trial, args.check_cache)
            ctx["young_model"] = args.young_model
            ctx["lexical"] = args.lexical
            for method in todo:
                res = run(d, method, ctx, args.max_rounds)
                results[name][method].append(res)
                LOADS.append([round(x, 2) for x in os.getloadavg()])
                write(args, results, t0, complete=False)
                last = res["rounds"][-1]
                print(
                    f"{name} trial {trial} {method:>8}: rounds {len(res['rounds'])} "
                    f"found {last['found']}/{res['positives']} to50 {res['to_50']} "
                    f"to80 {res['to_80']} purity {res['purity']['purity']} "
                    f"({time.time() - t0:.0f} s)",
                    flush=True,
                )
    for s in write(args, results, t0, complete=True):
        print(s)


def _recorded(value):
    """A run's (or each combined part's) seconds; parts written before it: 'not recorded'."""
    if isinstance(value, list):
        return "[" + ", ".join(str(_recorded(v)) for v in value) + "]"
    return "not recorded" if value is None else value


def _at_least_one(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: at least 1 round")
    return n


def _shown(path: Path) -> str:
    """``path`` relative to the repository where it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def resume(args, results: dict) -> None:
    """``results`` start from the runs a stopped one-set replay wrote (same options)."""
    if len(results) != 1:
        raise SystemExit("--resume continues a one-set run: give one --sets")
    name = next(iter(results))
    path = Path(args.out) / f"replay_{name}.json"
    if not path.exists():
        raise SystemExit(f"--resume: no {path} to continue (run without --resume first)")
    old = json.loads(path.read_text())
    # A run older than an option ran with its default.
    for key, default in (("max_rounds", 40), ("young_model", "transfer"), ("lexical", False)):
        if old["meta"].get(key, default) != getattr(args, key):
            raise SystemExit(f"--resume: {path} ran with {key}={old['meta'].get(key, default)!r}")
    # The same data: a --data file (its digest) and the history its cold start borrowed.
    was, now = old["meta"].get("data", {}).get(name), quality.DATA_FILES.get(name)
    if (was or now) and (
        was is None
        or now is None
        or (was["sha256"], was["cold_from"]) != (now["sha256"], now["cold_from"])
    ):
        said = (
            "no recorded data file"
            if was is None
            else f"{was['file']} ({was['sha256'][:12]}, cold start from {was['cold_from']})"
        )
        raise SystemExit(
            f"--resume: {path} ran on {said}, not this --data {name} and --cold-from; "
            "start it again without --resume (or in another --out)"
        )
    for method in results[name]:
        results[name][method] = old["results"].get(name, {}).get(method, [])
    before = old["meta"]["library"]["commit"]
    args.library = {
        **args.library,
        "commit": f"{args.library['commit']}, resuming a run whose finished runs came from "
        f"{before}",
        "resumed_from": old["meta"]["library"],
    }


def write(args, results: dict, t0: float, *, complete: bool) -> list[dict]:
    """results/replay.{json,md,png} (replay_<set>.json for a one-set run); rewritten after
    every run so a stopped replay leaves what it finished (``complete`` says which)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done = {n: {m: t for m, t in ms.items() if t} for n, ms in results.items()}
    done = {n: ms for n, ms in done.items() if ms}
    meta = {
        "trials": args.trials,
        "max_rounds": args.max_rounds,
        "round": ROUND,
        "seeds": N_SEEDS,
        "target": TARGET,
        "seconds": round(time.time() - t0),  # the trials' rounds, not data_seconds
        "data_seconds": getattr(args, "data_seconds", None),
        "complete": complete,
        "load_average_end": os.getloadavg(),
        "library": args.library,
        "sets": list(results),
        "young_model": args.young_model,
        "lexical": args.lexical,
        "methods": args.methods.split(","),
        "command": shlex.join(["python", "benchmarks/replay.py", *sys.argv[1:]]),
        "data": {n: quality.DATA_FILES[n] for n in results if n in quality.DATA_FILES},
        "plot": _shown(out / "replay.png"),
        "load_average_samples": LOADS,
        "warnings": getattr(args, "warnings", []),
    }
    if len(results) == 1:
        (out / f"replay_{next(iter(results))}.json").write_text(
            json.dumps({"meta": meta, "results": done}, indent=1)
        )
    return report(out, meta, done)


def report(out: Path, meta: dict, done: dict) -> list[dict]:
    """Summary, tables and plot over the trials every method of a set finished (a stopped
    replay leaves some methods a trial ahead; comparing them would not be paired). The json
    keeps every finished run."""
    paired = {}
    for name, by_method in done.items():
        k = min(len(t) for t in by_method.values())
        if k:
            paired[name] = {m: t[:k] for m, t in by_method.items()}
    summary = summarise(paired)
    (out / "replay.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "results": done}, indent=1)
    )
    (out / "replay.md").write_text(markdown(meta, summary, paired))
    if paired:  # --trials 0 (only build the index caches) has nothing to plot
        plot(paired, out / "replay.png")
    return summary


def combine(args) -> None:
    out = Path(args.out)
    # replay_<set>.json only (replay_young.json is another benchmark's).
    parts = [
        json.loads(p.read_text())
        for p in sorted(out.glob("replay_*.json"))
        if p.stem.removeprefix("replay_") in quality.POLICY
    ]
    if not parts:  # (an IndexError before; a --data set's files need its --data again)
        found = sorted(p.name for p in out.glob("replay_*.json"))
        raise SystemExit(
            f"--combine: no replay_<set>.json of the sets {sorted(quality.POLICY)} in {out} "
            f"(found {found or 'none'}); a --data set's runs are combined with the same "
            "--data NAME=FILE given again"
        )
    done = {n: ms for part in parts for n, ms in part["results"].items()}
    meta = {
        **parts[0]["meta"],
        "seconds": [p["meta"]["seconds"] for p in parts],
        "data_seconds": [p["meta"].get("data_seconds") for p in parts],
        "complete": all(p["meta"]["complete"] for p in parts),
        "sets": list(done),
        "load_average_end": [p["meta"]["load_average_end"] for p in parts],
        "data": {n: d for p in parts for n, d in p["meta"].get("data", {}).items()},
        "plot": _shown(out / "replay.png"),
        "warnings": [w for p in parts for w in p["meta"].get("warnings", [])],
    }
    commands = [p["meta"]["command"] for p in parts if "command" in p["meta"]]
    if commands:
        meta["command"] = " ; ".join([*commands, "... --combine"])
    for s in report(out, meta, done):
        print(s)


if __name__ == "__main__":
    main()
