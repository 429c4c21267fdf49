"""Active mining: a share of each review budget goes to items that teach the ranker most.

The rest of the budget (``exploit``) is the riskiest units, as before. The exploration share
(``explore``, default 0.1; 0 turns it off) is drawn from the units below the exploit cut, taking
turns between three reasons and between policies, and never twice from one campaign (nor from a
campaign the exploit slots already show):

``uncertain``   the ranker is unsure but leans to a violation: calibrated probability in
                [0.5, 0.9], nearest 0.5 first.
``uncovered``   far from every item reviewed for the policy (``hist_*_pos/neg_max_sim``), a region
                reviewers have never looked at (no reviewed item a near-copy of it, each signal
                at its strong match level: ``near_reviewed``), weighted by the chance of a
                violation: highest p x (1 - similarity of the closest reviewed item) first.
``campaign``    a campaign no member of which is a near-copy of a reviewed item: one decision
                labels many items; highest p x campaign size first.

Why weighted by p: an explore slot displaces the marginal exploit unit, itself often a
violation (58% of them on the replay's Insults rounds, 97% on SpamAssassin's). Picks chosen
for what they teach alone (p nearest 0.5 on either side, the farthest item, the largest
campaign) were violations 29% / 54% of the time and cost 4.4% more reviews to reach 80% recall
than exploiting alone, on both sets; weighted, 39% / 85%, and 0.9% more. Neither pays back
(``benchmarks/explore_variants.py``; ``benchmarks/results/replay_explore_variants.md``).
There, a young policy's calibrated p sat far below its violation rate under the cut (mean 0.17
where 58% were violations), so ``uncertain`` seldom had a unit to pick and its turns went to
the other two reasons. That exploiting alone is hard to beat when the goal is recall per review
is the known result for review loops: continuous active learning with relevance feedback (review
the top, retrain, repeat) needed less review effort than uncertainty sampling at every recall
level on eight review tasks (Cormack & Grossman, SIGIR 2014).

In campaign mode an explore slot that opens a never-reviewed campaign labels all its members
with one decision, and it is close to even: on the replay (2026-12-07, both arms at 99230ff),
campaign mode with the default 10% needed 406.6 decisions to 80% recall on SpamAssassin
against 406.0 without (fewer in 3 of 5 trials), on Insults 804.6 against 796.0 (in none)
(``benchmarks/results/replay.md``, arm (e') vs (e); earlier runs of (e') ranged from 397.0 to
405.2 on SpamAssassin).

Queue columns added: ``slot`` (``exploit`` / ``explore``) and ``slot_reason`` (in words). The
explore units are spread evenly through the review order after the riskiest unit, so a
reviewer who stops early has still seen a share of them. ``ExploreRule`` is the seam for
another choice (which reasons, how each scores units, how many slots explore), passed to
``arrange_queue`` / ``allocate_slots``.

>>> queue = arrange_queue(queue, index, budget=100, explore=0.1)   # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from riskrank.index.signals.base import Signal
from riskrank.index.signals.pdq import PDQ_BITS, PDQ_MATCH_THRESHOLD, PdqSignal
from riskrank.index.signals.text import TextEmbeddingSignal
from riskrank.index.store import InventoryIndex
from riskrank.rank.campaigns import (
    CAMPAIGN_THRESHOLDS,
    LINK_RULE,
    campaign_ids,
    campaign_view,
    find_campaigns,
)
from riskrank.rank.input_checks import check_budget, check_explore
from riskrank.rank.queue import near_copy_levels
from riskrank.rank.sweep_cache import LinkCache

EXPLORE_SHARE = 0.1
REASONS = ("uncertain", "uncovered", "campaign")


def reviewed_closeness(queue: pa.Table) -> np.ndarray:
    """Per row, the similarity of the closest reviewed item under any cosine signal (-1 where
    the policy has no reviewed item): low = a region no reviewer has looked at."""
    cols = [
        c
        for c in queue.column_names
        if c.startswith("hist_") and c.endswith(("_pos_max_sim", "_neg_max_sim"))
    ]
    out = np.full(queue.num_rows, -1.0)
    for c in cols:
        v = np.asarray(queue[c].to_numpy(zero_copy_only=False), np.float64)
        out = np.fmax(out, np.nan_to_num(v, nan=-1.0))
    return out


# ``uncertain`` stays on the violating side of the boundary: below 0.5 a verdict teaches as
# much but is mostly a miss, which the exploit slot it displaces would not have been.
UNSURE_BAND = (0.5, 0.9)


def explore_scores(units: pa.Table, closeness: np.ndarray, cover: np.ndarray) -> dict:
    """Per reason, a score (higher = explore first) and whether a unit qualifies at all.

    ``units``: the ranked units (rows or campaign representatives); ``closeness``: each unit's
    ``reviewed_closeness``; ``cover``: how close its campaign's closest member is to a reviewed
    item. Returns ``{reason: (score, qualifies)}``, two arrays of ``units.num_rows``.
    """
    p = np.asarray(units["risk_probability"].to_numpy(zero_copy_only=False), np.float64)
    size = np.asarray(units["campaign_size"].to_numpy(), np.float64)
    scored = np.isfinite(p)
    # A unit of a policy without reviews has closeness -1: as far as can be.
    far = 1.0 - np.clip(closeness, 0.0, 1.0)
    # (A unit, or a campaign, a reviewed item is a near-copy of never qualifies for
    # "uncovered" or "campaign": ``allocate_slots`` sees to it, per signal, for every rule.)
    return {
        "uncertain": (0.5 - p, scored & (p >= UNSURE_BAND[0]) & (p <= UNSURE_BAND[1])),
        "uncovered": (p * far, scored),
        "campaign": (p * size, scored & (size > 1)),
    }


# Near-copy levels where the caller names no signals (a table handed to ``allocate_slots``):
# the built-in signals' strong match levels (``Signal.match_thresholds``: text 0.70, its
# campaign link too; PDQ 31 bits of 256), and the base class's for any other.
DEFAULT_NEAR_COPY = {
    TextEmbeddingSignal.name: TextEmbeddingSignal.match_thresholds[1],
    PdqSignal.name: 1.0 - PDQ_MATCH_THRESHOLD / PDQ_BITS,
}
OTHER_NEAR_COPY = Signal.match_thresholds[1]


def near_reviewed(units: pa.Table, levels: Mapping[str, float] | None = None) -> np.ndarray:
    """Per unit, whether a reviewed item of its policy is a near-copy of it: some signal's
    ``hist_<signal>_pos/neg_max_sim`` at or above that signal's level (``levels``:
    ``rank.queue.near_copy_levels``, each on its signal's own scale: PDQ's 31 bits is 0.879;
    None: ``DEFAULT_NEAR_COPY`` for every signal the columns name)."""
    out = np.zeros(units.num_rows, bool)
    for col in units.column_names:
        for kind in ("_pos_max_sim", "_neg_max_sim"):
            if not (col.startswith("hist_") and col.endswith(kind)):
                continue
            name = col[len("hist_") : -len(kind)]
            level = (levels if levels is not None else DEFAULT_NEAR_COPY).get(name)
            if level is None and levels is None:
                level = OTHER_NEAR_COPY
            if level is not None:
                v = np.asarray(units[col].to_numpy(zero_copy_only=False), np.float64)
                out |= np.nan_to_num(v, nan=-np.inf) >= level
    return out


def _pick_explore(
    units: pa.Table, pool: np.ndarray, n: int, scores: dict, reasons: tuple[str, ...]
) -> list[tuple]:
    """``n`` (unit row, reason) picks from ``pool``, turn by turn over reasons x policies."""
    policies = np.asarray(units["policy"].to_pylist(), dtype=object)
    campaigns = np.asarray(units["campaign_id"].to_pylist(), dtype=object)
    queues = {}
    for reason in reasons:
        score, ok = scores[reason]
        for pol in sorted(set(policies[pool])):
            rows = pool[ok[pool] & (policies[pool] == pol)]
            # Stable sort: ties keep risk order.
            queues[(reason, pol)] = deque(rows[np.argsort(-score[rows], kind="stable")])
    taken_campaigns = set(campaigns[np.setdiff1d(np.arange(units.num_rows), pool)])
    picks: list[tuple] = []
    turns = list(queues)
    while len(picks) < n and any(queues.values()):
        for key in turns:
            q = queues[key]
            while q and campaigns[q[0]] in taken_campaigns:
                q.popleft()
            if q and len(picks) < n:
                row = q.popleft()
                taken_campaigns.add(campaigns[row])
                picks.append((row, key[0]))
    return picks


def _reason_text(reason: str, p: float, close: float, size: int) -> str:
    # "by p x ..." rather than "likely violation": a young policy's p can be far below its
    # violation rate (see the module docstring), and the text must not overstate it.
    # The distance is to this policy's reviews: an item reviewed (even confirmed) under
    # another policy is no nearer for it (an outsider read "far from every reviewed item"
    # on a campaign its reviewers had judged as spam, explored under insult).
    near = f"closest reviewed item {close:.2f}" if close > -1 else "no reviewed item"
    if reason == "uncertain":
        return f"explore: ranker unsure, leaning violation (p={p:.2f})"
    if reason == "uncovered":
        return (
            f"explore: far from every item reviewed for this policy ({near}), by p x "
            f"distance (p={p:.2f})"
        )
    # Recalled members, not the queue's: cut to a budget in item mode, one is listed.
    return (
        f"explore: campaign of {size} recalled items never reviewed for its policy ({near}), "
        f"by p x size (p={p:.2f})"
    )


def explore_count(units: pa.Table, budget: int, explore: float) -> int:
    """Explore slots in a cut of ``budget`` of ``units``: ``explore`` of it, rounded, and at
    most all but one (none when the cut takes every unit: there is nothing below it)."""
    if budget >= units.num_rows:
        return 0
    # The riskiest unit always leads: at most budget - 1 slots explore (a budget of 1 at 0.5
    # rounded to one explore pick and no exploit slot, an outsider's repro).
    # Half up on the share as written: 50 x 0.29 is 14.499999999999998 in binary (14 slots, a
    # reviewer's report), so the product is rounded to 9 places first.
    return min(int(np.floor(round(budget * explore, 9) + 0.5)), max(budget - 1, 0))


@dataclass(frozen=True)
class ExploreRule:
    """How the explore share of a budget is spent: the seam for trying other choices
    (benchmarks/explore_variants.py compares some on the replay).

    ``reasons``: which of ``REASONS`` take turns, in order. ``scores(units, closeness, cover)``:
    per reason, a score and who qualifies (as ``explore_scores``). ``count(units, budget,
    explore)``: how many of the budget's slots explore (as ``explore_count``).

    >>> arrange_queue(queue, index, budget=100, rule=ExploreRule(reasons=("uncovered",)))
    ... # doctest: +SKIP
    """

    reasons: tuple[str, ...] = REASONS
    scores: Callable[[pa.Table, np.ndarray, np.ndarray], dict] = explore_scores
    count: Callable[[pa.Table, int, float], int] = explore_count

    def __post_init__(self) -> None:
        unknown = [r for r in self.reasons if r not in REASONS]
        if unknown or not self.reasons:
            raise ValueError(f"reasons: expected some of {REASONS}, got {self.reasons!r}")


DEFAULT_RULE = ExploreRule()


def allocate_slots(
    units: pa.Table,
    budget: int | None,
    explore: float,
    cover: np.ndarray | None = None,
    rule: ExploreRule = DEFAULT_RULE,
    copies: np.ndarray | None = None,
) -> pa.Table:
    """Cut ``units`` (rank order) to ``budget``: exploit the riskiest, explore ``explore`` of it.

    ``cover``: per unit, how close its campaign's closest member is to a reviewed item (default:
    the unit's own closeness). ``rule``: how the explore slots are chosen. ``copies``: per
    unit (rows) whether a reviewed item is a near-copy of it (column 0) and of some member of
    its campaign (column 1), as ``arrange_queue`` finds them per signal; such a unit is no
    region nobody looked at and such a campaign is not "never reviewed" ("far from every item
    reviewed (closest reviewed item 0.99)" was explored: a reviewer's report). Default: by
    ``DEFAULT_NEAR_COPY``, the campaign's from ``cover``.
    """
    check_explore(explore)
    if budget is not None and budget < 0:
        raise ValueError(f"budget={budget!r} is invalid; expected an integer >= 0")
    n = units.num_rows
    budget = n if budget is None else min(budget, n)
    closeness = reviewed_closeness(units)
    cover = closeness if cover is None else cover
    n_explore = int(rule.count(units, budget, explore))
    if not 0 <= n_explore <= budget:
        raise ValueError(f"rule.count gave {n_explore} explore slots for a budget of {budget}")
    scores = dict(rule.scores(units, closeness, cover))
    if copies is None:  # (a campaign's members are not in ``units``: its ``cover`` says)
        own = near_reviewed(units)
        text_level = DEFAULT_NEAR_COPY[TextEmbeddingSignal.name]
        copies = np.column_stack([own, own | (np.asarray(cover) >= text_level)])
    copies = np.asarray(copies, bool)
    if copies.shape != (n, 2):
        raise ValueError(f"copies: expected {n} rows of 2 flags, got shape {copies.shape}")
    for reason, column in (("uncovered", 0), ("campaign", 1)):
        if reason in scores:
            score, ok = scores[reason]
            scores[reason] = (score, np.asarray(ok, bool) & ~copies[:, column])
    while True:
        exploit = np.arange(budget - n_explore)
        pool = np.arange(budget - n_explore, n)
        picks = _pick_explore(units, pool, n_explore, scores, rule.reasons)
        if len(picks) == n_explore:
            break
        # Slots no unit qualified for (every one below the cut is of a campaign the exploit
        # slots show) go back to exploit: the queue came out short of its budget (an
        # outsider's repro: a budget of 10 queued 9). Fewer slots each time: it ends.
        n_explore = len(picks)
    p = np.asarray(units["risk_probability"].to_numpy(zero_copy_only=False), np.float64)
    size = units["campaign_size"].to_pylist()
    return _laid_out(
        units,
        [(row, f"risk: p={p[row]:.2f}") for row in exploit],
        [(row, _reason_text(why, p[row], closeness[row], size[row])) for row, why in picks],
    )


def _laid_out(units: pa.Table, exploit: list, picks: list) -> pa.Table:
    """``units`` in review order: the exploit ``(row, reason)`` in their order, the explore
    ones spread evenly through it; ``rank``, ``slot`` and ``slot_reason`` set."""
    total = len(exploit) + len(picks)
    # Spread over the places after the first: the riskiest unit always leads (with more than
    # half the budget exploring, the first pick took rank 1: a reviewer's report). With one
    # pick per step or more apart the places stay distinct; the default share (0.1 of 100)
    # lands on the places it did before.
    after = total - 1
    at = {1 + int((j + 0.5) * after / len(picks)) for j in range(len(picks))} if picks else set()
    ex, pk = iter(exploit), iter(picks)
    laid = [(*next(pk), "explore") if pos in at else (*next(ex), "exploit") for pos in range(total)]
    out = units.take(pa.array([row for row, _, _ in laid], pa.int64()))
    out = out.set_column(
        out.column_names.index("rank"), "rank", pa.array(np.arange(1, total + 1), pa.int64())
    )
    out = out.append_column("slot", pa.array([slot for _, _, slot in laid], pa.string()))
    return out.append_column("slot_reason", pa.array([why for _, why, _ in laid], pa.string()))


def allocate_per_policy(
    units: pa.Table,
    budget: int,
    explore: float,
    cover: np.ndarray | None = None,
    rule: ExploreRule = DEFAULT_RULE,
    copies: np.ndarray | None = None,
) -> pa.Table:
    """``allocate_slots`` with ``budget`` units for each policy (campaign mode: the policy of a
    campaign's representative), then one queue: the exploit units in rank order, the explore
    units spread evenly through it, each policy's in its own order.

    One budget over every policy gave its slots to whichever policy's probabilities ran
    highest: a new policy's transferred probabilities (4x its true share on an outsider's
    mixed inventory) took 57 of 60 slots from an established one, and an honest young one got
    8 of 150.
    """
    if check_budget(budget, "budget_per_policy") is None:
        raise ValueError("budget_per_policy: expected a positive number of rows, got None")
    closeness = reviewed_closeness(units)
    cover = closeness if cover is None else np.asarray(cover)
    policies = np.asarray(units["policy"].to_pylist(), dtype=object)
    tagged = units.append_column(_UNIT, pa.array(np.arange(units.num_rows), pa.int64()))
    exploit, picks = [], []
    for policy in sorted(set(policies.tolist())):
        rows = np.flatnonzero(policies == policy)  # in rank order
        part = allocate_slots(
            tagged.take(pa.array(rows)), int(budget), explore, cover[rows], rule,
            None if copies is None else copies[rows],
        )  # fmt: skip
        slots = part["slot"].to_pylist()
        for j, (row, slot, why) in enumerate(
            zip(part[_UNIT].to_pylist(), slots, part["slot_reason"].to_pylist())
        ):
            if slot == "exploit":
                exploit.append((row, why))
            else:  # placed by where it stood in its policy's queue
                picks.append(((j + 0.5) / len(slots), row, why))
    exploit.sort()  # rank order across the policies
    return _laid_out(units, exploit, [(row, why) for _, row, why in sorted(picks)])


_UNIT = "__rr_unit"  # a unit's row in the queue before it was split by policy


def reviewed_pairs(exemplars: Mapping) -> set[tuple[str, str]]:
    """(item_id, policy) of every reviewed item a model's exemplars hold."""
    out = set()
    for ex in exemplars.values():
        out |= set(zip(ex.table["item_id"].to_pylist(), ex.table["policy"].to_pylist()))
    return out


def _campaigns_as_queued(queue: pa.Table) -> pa.Table:
    """``campaign_id`` / ``campaign_size`` / ``campaign_rank`` over the rows ``queue`` holds
    (review order; a campaign's queued members are its riskiest, first its representative),
    each column in its place."""
    cids = queue["campaign_id"].to_pylist()
    ids = queue["item_id"].to_pylist()
    size: Counter = Counter()
    rank = []
    for cid in cids:
        size[cid] += 1
        rank.append(size[cid])
    cols = {
        "campaign_id": pa.array(campaign_ids(cids, ids), pa.string()),
        "campaign_size": pa.array([size[c] for c in cids], pa.int64()),
        "campaign_rank": pa.array(rank, pa.int64()),
    }
    for name, col in cols.items():
        queue = queue.set_column(queue.column_names.index(name), name, col)
    return queue


def arrange_queue(
    queue: pa.Table,
    index: InventoryIndex,
    *,
    budget: int | None,
    campaigns: bool = False,
    explore: float = EXPLORE_SHARE,
    thresholds: Mapping[str, float] | None = None,
    reviewed: set[tuple[str, str]] | None = None,
    rule: ExploreRule = DEFAULT_RULE,
    links_cache: str | Path | None = None,
    budget_per_policy: int | None = None,
) -> pa.Table:
    """The reviewers' queue from a ranked one: campaign columns, the budget (in campaigns when
    ``campaigns``), exploit and explore slots.

    ``budget_per_policy``: instead of one ``budget``, up to this many rows (campaigns) for
    each policy, each with its own explore share (``allocate_per_policy``).

    ``reviewed``: (item_id, policy) pairs that already have a verdict (the model's history);
    they leave the queue, so a second sweep of the same inventory shows only new decisions.
    ``rule``: how the explore slots are chosen (``ExploreRule``). ``links_cache``: a file of
    the last sweep's campaign links (a standing index's ``cache/links.parquet``), reused for
    contents seen then and rewritten with this queue's (rank/sweep_cache.py).
    """
    if reviewed:
        # Rows whose content changed since review (``reviewed`` column, rank/reviewed.py)
        # stay: they come back to a reviewer by design.
        pairs = zip(queue["item_id"].to_pylist(), queue["policy"].to_pylist())
        changed = (
            queue["reviewed"].to_pylist()
            if "reviewed" in queue.column_names
            else [None] * queue.num_rows
        )
        keep = [pair not in reviewed or c == "changed" for pair, c in zip(pairs, changed)]
        queue = queue.filter(pa.array(keep, pa.bool_()))
    # An empty queue goes the same way (0 campaigns, 0 slots): its columns must not depend on
    # how many rows it has, or readers of a quiet day's queue break.
    links = None
    if links_cache is not None:
        rules = {
            "thresholds": dict(CAMPAIGN_THRESHOLDS if thresholds is None else thresholds),
            "metrics": {name: si.signal.metric for name, si in index.signals.items()},
            "links": LINK_RULE,
        }
        links = LinkCache(links_cache, rules)
    queue = find_campaigns(queue, index, thresholds, links=links)
    closeness = reviewed_closeness(queue)
    cover_of: dict[str, float] = {}
    for cid, c in zip(queue["campaign_id"].to_pylist(), closeness):
        cover_of[cid] = max(cover_of.get(cid, -1.0), float(c))
    units = campaign_view(queue) if campaigns else queue
    cover = np.array([cover_of[c] for c in units["campaign_id"].to_pylist()])
    # Near-copies of reviewed items, each signal at its own level (PDQ read at the text's
    # 0.70 was 77 bits apart, where its near-copies are 31: a reviewer's report).
    levels = near_copy_levels(si.signal for si in index.signals.values())
    near = near_reviewed(queue, levels)
    copied: dict[str, bool] = {}
    for cid, one in zip(queue["campaign_id"].to_pylist(), near):
        copied[cid] = copied.get(cid, False) or bool(one)
    cids = units["campaign_id"].to_pylist()
    own = near_reviewed(units, levels) if campaigns else near  # (item mode: units = queue)
    copies = np.column_stack([own, np.array([copied[c] for c in cids], bool)]).reshape(-1, 2)
    if budget_per_policy is None:
        out = allocate_slots(units, budget, explore, cover, rule, copies)
    elif budget is not None:
        raise ValueError("give budget or budget_per_policy, not both")
    else:
        out = allocate_per_policy(units, budget_per_policy, explore, cover, rule, copies)
    if campaigns or out.num_rows == units.num_rows:
        return out
    # Item mode, cut to a budget: a campaign is what the queue shows of it (a row said
    # "campaign of 6" beside the one member listed, and an explore pick's representative
    # was below the cut; a campaign verdict reaches the listed rows only).
    return _campaigns_as_queued(out)
