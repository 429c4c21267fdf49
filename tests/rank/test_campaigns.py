import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from riskrank.rank.campaigns import (
    add_campaign_columns,
    anchor_order,
    campaign_view,
    link_campaigns,
    radius_graph,
)
from riskrank.rank.exploration import (
    ExploreRule,
    allocate_per_policy,
    allocate_slots,
    explore_count,
)
from riskrank.rank.pipeline import sweep
from riskrank.rank.sweep_cache import LinkCache


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_campaigns_are_the_union_of_every_signals_radius_graph():
    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=(3, 16)))
    # items 0-2 are paraphrases of base[0]; 3-4 of base[1]; 5 alone; 6 has no text vector.
    text = _unit(
        np.vstack([base[0] + 0.01 * rng.normal(size=(3, 16)), base[1], base[1] * 1.01, base[2]])
    )
    # PDQ links item 5 to item 4 (same image, Hamming 3) and item 6 to nothing.
    hashes = rng.integers(0, 256, size=(3, 32), dtype=np.uint8)
    near = hashes[0].copy()
    near[0] ^= 0b111
    vectors = {
        "text": (np.arange(6), text),
        "pdq": (np.array([4, 5, 6]), np.vstack([hashes[0], near, hashes[2]])),
    }
    metrics = {"text": "cosine", "pdq": "hamming"}
    labels = link_campaigns(vectors, metrics, 7, {"text": 0.95, "pdq": 31})
    groups = sorted(sorted(np.flatnonzero(labels == lab).tolist()) for lab in set(labels))
    assert groups == [[0, 1, 2], [3, 4, 5], [6]]
    # Text alone: 5 is no longer linked; a signal without a threshold is not used.
    labels = link_campaigns(vectors, metrics, 7, {"text": 0.95})
    groups = sorted(sorted(np.flatnonzero(labels == lab).tolist()) for lab in set(labels))
    assert groups == [[0, 1, 2], [3, 4], [5], [6]]
    # Threshold is inclusive: identical vectors (cosine 1.0) link at threshold 1.0.
    same = _unit(np.vstack([base[0], base[0]]))
    assert len(set(link_campaigns({"text": (np.arange(2), same)}, metrics, 2, {"text": 1.0}))) == 1


def _queue(ids, p, labels, policy="scam"):
    q = pa.table(
        {
            "rank": np.arange(1, len(ids) + 1),
            "item_id": ids,
            "policy": [policy] * len(ids),
            "risk_probability": p,
        }
    )
    return add_campaign_columns(q, np.asarray(labels))


def _partition(labels) -> set:
    groups: dict = {}
    for i, lab in enumerate(labels):
        groups.setdefault(int(lab), []).append(i)
    return {tuple(g) for g in groups.values()}


@pytest.mark.parametrize("seed", range(6))
def test_links_kept_from_the_last_queue_give_the_campaigns_a_full_search_gives(tmp_path, seed):
    # Day after day, queues share most contents (some ids repeat one content), lose some and
    # gain some; linking with the last queue's links (LinkCache) equals a search of all pairs.
    rng = np.random.default_rng(seed)
    base = _unit(rng.normal(size=(30, 16)))
    pool = _unit(base[rng.integers(30, size=400)] + 0.1 * rng.normal(size=(400, 16)))
    pool[380:] = pool[:20]  # the same content under other ids
    keys = [f"k{i}" for i in range(380)] + [f"k{i}" for i in range(20)]
    rules = {"t": 0.9}
    path = tmp_path / "links.parquet"
    taken = rng.permutation(400)[:250]
    sims = (pool @ pool.T)[np.triu_indices(400, 1)]
    assert ((sims > 0.85) & (sims < 0.95)).sum() > 100  # links around the threshold
    for day in range(4):
        if day:  # 30 leave, 40 arrive (some of them seen on earlier days)
            rest = np.setdiff1d(np.arange(400), taken)
            taken = np.concatenate([rng.permutation(taken)[30:], rng.choice(rest, 40, False)])
        vecs = {"text": (np.arange(len(taken)), pool[taken])}
        full = link_campaigns(vecs, {"text": "cosine"}, len(taken), {"text": 0.9})
        cache = LinkCache(path, rules)
        kept = link_campaigns(
            vecs,
            {"text": "cosine"},
            len(taken),
            {"text": 0.9},
            keys={"text": [keys[i] for i in taken]},
            links=cache,
        )
        cache.save()
        assert _partition(kept) == _partition(full)
        assert len(_partition(full)) < len(taken) - 20  # campaigns of several items
        if day:
            assert cache.known("text")  # the last queue's links were read and used
    # Other rules (thresholds): the stored links are not used.
    assert not LinkCache(path, {"t": 0.8}).known("text")


def test_a_cosine_link_does_not_depend_on_what_else_is_searched():
    rng = np.random.default_rng(1)
    x = _unit(rng.normal(size=(64, 8)))
    x[1] = _unit(x[0:1] + 0.3 * rng.normal(size=(1, 8)))[0]
    t = float(x[0] @ x[1])  # a pair exactly at the threshold (in float64)
    alone = radius_graph(x[:2], "cosine", t).tocsr()
    among = radius_graph(x, "cosine", t).tocsr()
    assert alone[0, 1] == among[0, 1]


def test_campaign_columns_and_campaign_view():
    q = _queue(["a", "b", "c", "d", "e"], [0.9, 0.8, 0.7, 0.6, 0.5], [0, 1, 0, 2, 0])
    assert q["campaign_id"].to_pylist() == ["c-a", "c-b", "c-a", "c-d", "c-a"]
    assert q["campaign_size"].to_pylist() == [3, 1, 3, 1, 3]
    assert q["campaign_rank"].to_pylist() == [1, 1, 2, 1, 3]
    view = campaign_view(q)
    assert view["item_id"].to_pylist() == ["a", "b", "d"]
    assert view["campaign_members"].to_pylist() == [["a", "c", "e"], ["b"], ["d"]]
    assert "campaign_members_text_sha256" not in view.column_names  # (a queue without text)
    digests = q.append_column("text_sha256", pa.array(["da", "db", "dc", None, "de"]))
    earlier = digests.append_column("previous_verdict", pa.array([None, 0, 3, None, 2], pa.int8()))
    assert campaign_view(earlier)["campaign_members_previous_verdict"].to_pylist() == [
        [None, 3, 2],
        [0],
        [None],
    ]
    assert campaign_view(digests)["campaign_members_text_sha256"].to_pylist() == [
        ["da", "dc", "de"],
        ["db"],
        [None],
    ]


def test_a_campaign_keeps_its_id_when_a_riskier_member_joins():
    """The id named the representative, the riskiest member: a new near-copy ranked above
    the others renamed the campaign a reviewer had seen the day before, though its members
    were the same. Now the member with the lowest id names it, digit runs compared as
    numbers ("ad-9" before "ad-10")."""
    day0 = _queue(["ad-10", "ad-9", "x-1", "ad-11"], [0.9, 0.8, 0.7, 0.6], [0, 0, 1, 0])
    day1 = _queue(
        ["ad-12", "x-1", "ad-11", "ad-9", "ad-10"], [0.95, 0.9, 0.8, 0.7, 0.6], [0, 1, 0, 0, 0]
    )
    assert set(day0["campaign_id"].to_pylist()) == {"c-ad-9", "c-x-1"}
    assert dict(zip(day1["item_id"].to_pylist(), day1["campaign_id"].to_pylist())) == {
        "ad-12": "c-ad-9", "x-1": "c-x-1", "ad-11": "c-ad-9", "ad-9": "c-ad-9", "ad-10": "c-ad-9"
    }  # fmt: skip
    assert day1["campaign_rank"].to_pylist() == [1, 1, 2, 3, 4]  # the riskiest still shown
    order = sorted(["a-07", "a-7", "a-6", "a-10"], key=anchor_order)
    assert order == ["a-6", "a-07", "a-7", "a-10"]


def test_a_campaign_holds_the_items_of_one_policy(tmp_path):
    """Near-copies queued under two policies are two campaigns: one campaign verdict is one
    policy's, and a spam campaign gave its verdict to items queued under insult (members
    already reviewed for spam were listed again: an outsider's report)."""
    from hashing_signal import HashingTextSignal

    from riskrank.index.build import build_index
    from riskrank.rank.campaigns import find_campaigns

    text = "cheap pills online, no prescription needed, order now"
    ids = ["a", "b", "c", "d", "e"]
    items = pa.table({"item_id": ids, "text": [text, text + "!", text, "a quiet lake", text]})
    index = build_index(items, tmp_path / "idx", signals=[HashingTextSignal()],
                        show_progress=False)  # fmt: skip
    queue = pa.table({"item_id": ids, "policy": ["spam", "insult", "spam", "spam", "insult"],
                      "rank": list(range(1, 6))})  # fmt: skip
    got = find_campaigns(queue, index)
    assert got["campaign_id"].to_pylist() == ["c-a", "c-b", "c-a", "c-d", "c-b"]
    assert got["campaign_size"].to_pylist() == [2, 2, 2, 1, 2]


def test_exploration_share_spread_over_campaigns_and_evenly_placed():
    n = 40
    p = np.linspace(0.99, 0.01, n)
    labels = list(range(n))
    labels[30:36] = [30] * 6  # one campaign of 6 below the cut
    q = _queue([f"i{k}" for k in range(n)], p, labels)
    out = allocate_slots(q, 20, 0.2)
    assert out.num_rows == 20
    assert out["rank"].to_pylist() == list(range(1, 21))
    slots = out["slot"].to_pylist()
    assert slots.count("explore") == 4 and slots.count("exploit") == 16
    explore = out.filter(pa.compute.equal(out["slot"], "explore"))
    # Each explored unit comes from a different campaign, all from below the exploit cut.
    assert len(set(explore["campaign_id"].to_pylist())) == 4
    assert min(explore["risk_probability"].to_pylist()) < p[15]
    assert all(r.startswith("explore: ") for r in explore["slot_reason"].to_pylist())
    reasons = " ".join(explore["slot_reason"].to_pylist())
    assert "unsure" in reasons and "campaign of 6" in reasons
    # Not all at the end: a reviewer who stops half way has seen some exploration.
    assert "explore" in slots[:10]
    # 0 turns exploration off: the plain riskiest-first cut.
    off = allocate_slots(q, 20, 0.0)
    assert off["item_id"].to_pylist() == [f"i{k}" for k in range(20)]
    assert set(off["slot"].to_pylist()) == {"exploit"}
    with pytest.raises(ValueError, match="explore"):
        allocate_slots(q, 20, 1.5)


def test_explore_picks_weigh_what_they_teach_by_the_chance_of_a_violation():
    # 20 units, budget 10, 3 explore slots: the exploit cut takes units 0-6.
    p = [0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.85, 0.75, 0.72, 0.56, 0.48]
    p += [0.30, 0.25, 0.20, 0.15, 0.10, 0.08, 0.05]
    close = [0.9] * 7 + [0.95, 0.3, 0.6, 0.6, 0.85, 0.85, 0.5, 0.5, 0.5, 0.5, 0.05, 0.9, 0.9]
    labels = list(range(20))
    labels[10] = 9  # campaign X: units 9-10, p about 0.7
    labels[14:17] = [13] * 3  # campaign Y: units 13-16, larger but p 0.15-0.3
    q = _queue([f"u{k}" for k in range(20)], p, labels)
    q = q.append_column("hist_text_neg_max_sim", pa.array(close, pa.float32()))
    out = allocate_slots(q, 10, 0.3)
    explore = out.filter(pa.compute.equal(out["slot"], "explore"))
    why = dict(zip(explore["item_id"].to_pylist(), explore["slot_reason"].to_pylist()))
    # Unsure on the violating side (0.56, not 0.48 which is nearer 0.5); far AND likely
    # (0.85 x 0.7, not the farthest unit at p 0.10); campaign by p x size (X: 0.75 x 2 beats
    # Y: 0.30 x 4).
    assert set(why) == {"u11", "u8", "u9"}
    assert why["u11"] == "explore: ranker unsure, leaning violation (p=0.56)"
    assert why["u8"] == (
        "explore: far from every item reviewed for this policy (closest reviewed item 0.30), "
        "by p x distance (p=0.85)"
    )
    assert why["u9"] == (
        "explore: campaign of 2 recalled items never reviewed for its policy (closest reviewed "
        "item 0.60), "
        "by p x size (p=0.75)"
    )
    # A campaign with a near-copy of a reviewed item is not "never reviewed": X is skipped
    # and the campaign slot goes to Y, whose members are all far from every reviewed item.
    covered = q.set_column(
        q.column_names.index("hist_text_neg_max_sim"),
        "hist_text_neg_max_sim",
        pa.array(close[:9] + [0.8] + close[10:], pa.float32()),
    )
    cover = np.array(close[:9] + [0.8, 0.8] + close[11:])
    out = allocate_slots(covered, 10, 0.3, cover)
    reasons = out.filter(pa.compute.equal(out["slot"], "explore"))["slot_reason"].to_pylist()
    assert any(
        r.startswith("explore: campaign of 4 recalled items never reviewed for its policy")
        for r in reasons
    )


def test_a_near_copy_of_a_reviewed_item_is_not_explored_as_uncovered():
    """``uncovered`` took any unit, and told a reviewer "far from every item reviewed for this
    policy (closest reviewed item 0.99)" (a reviewer's report): a unit a reviewed item is a
    near-copy of qualifies no more; with nothing else to explore, its slots go to exploit."""
    n = 40
    q = _queue([f"i{k}" for k in range(n)], np.linspace(0.99, 0.01, n), list(range(n)))
    near = q.append_column("hist_text_pos_max_sim", pa.array([0.99] * n, pa.float32()))
    only_far = ExploreRule(reasons=("uncovered",))
    out = allocate_slots(near, 20, 0.2, rule=only_far)
    assert set(out["slot"].to_pylist()) == {"exploit"} and out.num_rows == 20
    # One unit below the near-copy cut: it is the one explored, and the reason is true.
    close = [0.99] * n
    close[30] = 0.4
    some = q.append_column("hist_text_pos_max_sim", pa.array(close, pa.float32()))
    out = allocate_slots(some, 20, 0.2, rule=only_far)
    explore = out.filter(pa.compute.equal(out["slot"], "explore"))
    assert explore["item_id"].to_pylist() == ["i30"]
    assert "(closest reviewed item 0.40)" in explore["slot_reason"][0].as_py()


def test_a_near_copy_is_read_at_each_signals_own_level():
    """PDQ's similarity read at the text's 0.70 is 77 bits apart, where its near-copies are 31
    (0.879): a picture 0.80 from a reviewed one is no near-copy of it (a reviewer's report)."""
    from riskrank.rank.exploration import near_reviewed

    units = pa.table({
        "hist_pdq_pos_max_sim": pa.array([0.80, 0.90, None, 0.10], pa.float32()),
        "hist_text_neg_max_sim": pa.array([0.10, 0.10, 0.71, None], pa.float32()),
    })  # fmt: skip
    levels = {"pdq": 1 - 31 / 256, "text": 0.70}
    assert near_reviewed(units, levels).tolist() == [False, True, True, False]
    # Without levels (a table handed to allocate_slots): each built-in signal's own level.
    assert near_reviewed(units).tolist() == [False, True, True, False]
    # allocate_slots takes them as given (arrange_queue finds them per signal): a unit marked
    # as copied is not "uncovered", whatever its closeness.
    n = 40
    q = _queue([f"i{k}" for k in range(n)], np.linspace(0.99, 0.01, n), list(range(n)))
    q = q.append_column("hist_pdq_pos_max_sim", pa.array([0.8] * n, pa.float32()))
    only_far = ExploreRule(reasons=("uncovered",))
    free = np.zeros((n, 2), bool)
    assert (
        allocate_slots(q, 20, 0.2, rule=only_far, copies=free)["slot"].to_pylist().count("explore")
        == 4
    )
    taken = np.ones((n, 2), bool)
    out = allocate_slots(q, 20, 0.2, rule=only_far, copies=taken)
    assert set(out["slot"].to_pylist()) == {"exploit"}
    # A PDQ near-copy (0.99) is no region nobody looked at, with or without copies given.
    close = q.set_column(
        q.column_names.index("hist_pdq_pos_max_sim"), "hist_pdq_pos_max_sim",
        pa.array([0.99] * n, pa.float32()),
    )  # fmt: skip
    assert set(allocate_slots(close, 20, 0.2, rule=only_far)["slot"].to_pylist()) == {"exploit"}
    with pytest.raises(ValueError, match="copies: expected 40 rows of 2 flags"):
        allocate_slots(q, 20, 0.2, copies=[True] * n)


def test_an_explore_rule_chooses_the_reasons_and_the_number_of_slots():
    n = 40
    p = np.linspace(0.99, 0.01, n)
    q = _queue([f"i{k}" for k in range(n)], p, list(range(n)))
    q = q.append_column("hist_text_neg_max_sim", pa.array(np.linspace(0.9, 0.1, n), pa.float32()))
    only_far = allocate_slots(q, 20, 0.2, rule=ExploreRule(reasons=("uncovered",)))
    reasons = only_far.filter(pa.compute.equal(only_far["slot"], "explore"))["slot_reason"]
    assert len(reasons) == 4 and all("far from every" in r for r in reasons.to_pylist())

    def two_slots(units, budget, explore):
        return 2

    out = allocate_slots(q, 20, 0.2, rule=ExploreRule(count=two_slots))
    assert out["slot"].to_pylist().count("explore") == 2 and out.num_rows == 20
    with pytest.raises(ValueError, match="explore slots for a budget of 20"):
        allocate_slots(q, 20, 0.2, rule=ExploreRule(count=lambda u, b, e: 21))
    with pytest.raises(ValueError, match="reasons"):
        ExploreRule(reasons=("curious",))


def test_sweep_campaign_mode_budget_counts_campaigns(
    tmp_path, inventory_items, seeds, trained_model
):
    inv = inventory_items.drop(["label"])
    full = sweep(inv, seeds, trained_model, k=200, show_progress=False, explore=0).queue
    for c in ("campaign_id", "campaign_size", "campaign_rank", "slot", "slot_reason"):
        assert c in full.column_names
    sizes = full["campaign_size"].to_pylist()
    assert max(sizes) > 1  # the fixture's templates are re-posted with small changes
    camp = sweep(
        inv,
        seeds,
        trained_model,
        k=200,
        show_progress=False,
        explore=0,
        campaigns=True,
        budget=5,
        out_dir=tmp_path / "camp",
    ).queue
    assert camp.num_rows == 5
    assert camp["campaign_rank"].to_pylist() == [1] * 5
    members = camp["campaign_members"].to_pylist()
    assert sum(map(len, members)) > 5 and len({m for ms in members for m in ms}) == sum(
        map(len, members)
    )
    # The first campaigns are the campaigns of the plain queue's riskiest items, in order.
    reps = full.filter(pa.compute.equal(full["campaign_rank"], 1))["item_id"].to_pylist()[:5]
    assert camp["item_id"].to_pylist() == reps
    by_id = dict(zip(full["item_id"].to_pylist(), full["campaign_id"].to_pylist()))
    for cid, ms in zip(camp["campaign_id"].to_pylist(), members):
        assert {by_id[m] for m in ms} == {cid}
    explored = sweep(
        inv, seeds, trained_model, k=200, show_progress=False, budget=20, explore=0.25
    ).queue
    # At most a quarter; the fixture's items are templated copies of its reviewed ones, so
    # few qualify as far from them, and slots none qualifies for go back to exploit.
    explore = explored.filter(pa.compute.equal(explored["slot"], "explore"))
    assert 1 <= explore.num_rows <= 5 and explored.num_rows == 20
    for why in explore["slot_reason"].to_pylist():
        near = re.search(r"closest reviewed item (\d\.\d\d)", why)
        assert not why.startswith("explore: far from") or float(near.group(1)) < 0.70, why


@pytest.mark.parametrize("campaigns", [False, True])
def test_an_empty_queue_has_the_campaign_and_slot_columns_of_a_full_one(
    campaigns, history_items, inventory_items, seeds, hashing_model
):
    kw = dict(k=200, show_progress=False, budget=10, campaigns=campaigns, explore=0.2)
    full = sweep(inventory_items.drop(["label"]), seeds, hashing_model, **kw).queue
    # The model's own history again: every item already reviewed, nothing left to queue.
    empty = sweep(history_items.drop(["label"]), seeds, hashing_model, **kw).queue
    assert full.num_rows > 0 and empty.num_rows == 0
    arranged = [c for c in full.column_names if c.startswith(("campaign_", "slot"))]
    expected = {"campaign_id", "campaign_size", "campaign_rank", "slot", "slot_reason"}
    members = {
        "campaign_members",
        "campaign_members_text_sha256",
        "campaign_members_previous_verdict",
    }
    assert set(arranged) == expected | (members if campaigns else set())
    for c in arranged:
        assert empty.schema.field(c).type == full.schema.field(c).type, c
    # ... and the reasons columns (rank/reasons.py), in the same order as a full queue's.
    assert empty.column_names == full.column_names


def _all_pairs_partition(x: np.ndarray, t: float) -> set:
    # The reference: every pair decided in float64, components of the whole graph.
    sims = np.asarray(x, np.float64) @ np.asarray(x, np.float64).T
    from scipy.sparse.csgraph import connected_components

    return _partition(connected_components(sims >= t - 1e-5, directed=False)[1])


@pytest.mark.parametrize("seed", range(3))
def test_campaigns_found_in_small_blocks_equal_one_search_of_all_pairs(monkeypatch, seed):
    # Dense campaigns (every member links to every other) searched a few queries at a time,
    # their links folded into components as they come: the same campaigns as all pairs at once.
    import riskrank.rank.campaigns as campaigns

    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(12, 16)))
    x = _unit(centres[rng.integers(12, size=300)] + 0.08 * rng.normal(size=(300, 16)))
    sims = (x @ x.T)[np.triu_indices(300, 1)]
    assert (sims >= 0.9).sum() > 2000  # many links per item: the case that grew as n²
    expected = _all_pairs_partition(x, 0.9)
    monkeypatch.setattr(campaigns, "PAIRS_PER_SEARCH", 50)  # ~2 queries a block; compress often
    labels = link_campaigns({"text": (np.arange(300), x)}, {"text": "cosine"}, 300, {"text": 0.9})
    assert _partition(labels) == expected
    assert 1 < len(expected) < 100


def test_a_queue_too_dense_in_links_stores_none_and_the_next_sweep_searches_all(
    tmp_path, monkeypatch
):
    import riskrank.rank.campaigns as campaigns

    rng = np.random.default_rng(7)
    centres = _unit(rng.normal(size=(5, 16)))
    x = _unit(centres[rng.integers(5, size=120)] + 0.05 * rng.normal(size=(120, 16)))
    keys = {"text": [f"k{i}" for i in range(120)]}
    vecs, metric, rules = {"text": (np.arange(120), x)}, {"text": "cosine"}, {"t": 0.9}
    expected = _all_pairs_partition(x, 0.9)
    path = tmp_path / "links.parquet"
    monkeypatch.setattr(campaigns, "STORED_LINKS_PER_CONTENT", 2)
    cache = LinkCache(path, rules)
    labels = link_campaigns(vecs, metric, 120, {"text": 0.9}, keys=keys, links=cache)
    cache.save()
    assert _partition(labels) == expected
    assert not LinkCache(path, rules).known("text")  # nothing kept: more than 2 links each
    monkeypatch.setattr(campaigns, "STORED_LINKS_PER_CONTENT", 1000)
    cache = LinkCache(path, rules)
    labels = link_campaigns(vecs, metric, 120, {"text": 0.9}, keys=keys, links=cache)
    cache.save()
    assert _partition(labels) == expected
    again = LinkCache(path, rules)
    assert len(again.known("text")) == 120
    labels = link_campaigns(vecs, metric, 120, {"text": 0.9}, keys=keys, links=again)
    assert _partition(labels) == expected


def test_pdq_campaigns_found_in_small_blocks_equal_one_search_of_all_pairs(monkeypatch):
    import riskrank.rank.campaigns as campaigns

    rng = np.random.default_rng(11)
    originals = rng.integers(0, 256, size=(8, 32), dtype=np.uint8)
    hashes = originals[rng.integers(8, size=200)].copy()
    flips = rng.integers(0, 256, size=hashes.shape, dtype=np.uint8)
    hashes ^= flips & (rng.random(hashes.shape) < 0.05).astype(np.uint8) * 0xFF  # ~10 bits off
    bits = np.unpackbits(hashes, axis=1).astype(np.int64)
    hamming = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
    from scipy.sparse.csgraph import connected_components

    expected = _partition(connected_components(hamming <= 31, directed=False)[1])
    assert 1 < len(expected) < 200
    monkeypatch.setattr(campaigns, "PAIRS_PER_SEARCH", 30)
    labels = link_campaigns({"pdq": (np.arange(200), hashes)}, {"pdq": "hamming"}, 200, {"pdq": 31})
    assert _partition(labels) == expected


def _on_circle(angles, dim=8):
    x = np.zeros((len(angles), dim), np.float32)
    x[:, 0], x[:, 1] = np.cos(angles), np.sin(angles)
    return x


def test_a_link_to_a_cover_group_member_far_from_its_leader_is_found(monkeypatch):
    # Link: angle <= acos(0.9) = 0.451 rad. Rows in order: leader L (0), y (0.203, in L's
    # group), leader M (0.812), x (0.631, in M's group). x-y (0.428) is the only link between
    # the two groups; x is 0.631 from L and y 0.609 from M: no leader is within reach of the
    # other group's members. It is found by checking x against the members of L's group.
    import riskrank.rank.campaigns as campaigns
    from riskrank.rank.campaigns import _Space, radius_components

    monkeypatch.setattr(campaigns, "COVER_MAX_LEADERS", 1.0)  # always cover
    x = _on_circle([0.0, 0.203, 0.812, 0.631])
    leader, group, _ = _Space(x, "cosine", 0.9).cover_groups()
    assert leader.tolist() == [0, 2] and group.tolist() == [0, 0, 1, 1]
    assert _partition(radius_components(x, "cosine", 0.9)) == {(0, 1, 2, 3)}
    assert _partition(radius_components(x[:, ::-1].copy(), "cosine", 0.9)) == {(0, 1, 2, 3)}
    apart = _on_circle([0.0, 0.203, 0.900, 0.700])  # x-y now 0.497 apart: no link
    assert _partition(radius_components(apart, "cosine", 0.9)) == {(0, 1), (2, 3)}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spread", [0.02, 0.08, 0.2])
def test_components_from_a_cover_equal_those_of_every_link(monkeypatch, seed, spread):
    import riskrank.rank.campaigns as campaigns

    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(10, 16)))
    x = _unit(centres[rng.integers(10, size=400)] + spread * rng.normal(size=(400, 16)))
    monkeypatch.setattr(campaigns, "COVER_BLOCK", 37)  # many blocks, leaders from each
    monkeypatch.setattr(campaigns, "COVER_MAX_LEADERS", 1.0)  # always cover
    if seed % 2:  # small search blocks; rows to check dropped as soon as links join them
        monkeypatch.setattr(campaigns, "PAIRS_PER_SEARCH", 60)
    for t in (0.8, 0.9, 0.97):
        expected = _all_pairs_partition(x, t)
        assert _partition(campaigns.radius_components(x, "cosine", t)) == expected


@pytest.mark.parametrize("seed", range(3))
def test_pdq_components_from_a_cover_equal_those_of_every_link(monkeypatch, seed):
    from scipy.sparse.csgraph import connected_components

    import riskrank.rank.campaigns as campaigns

    rng = np.random.default_rng(seed)
    originals = rng.integers(0, 256, size=(6, 32), dtype=np.uint8)
    hashes = originals[rng.integers(6, size=250)].copy()
    noise = (rng.random((250, 256)) < rng.uniform(0.02, 0.12, size=(250, 1))).astype(np.uint8)
    hashes ^= np.packbits(noise, axis=1)
    bits = np.unpackbits(hashes, axis=1).astype(np.int64)
    hamming = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
    monkeypatch.setattr(campaigns, "COVER_BLOCK", 29)
    monkeypatch.setattr(campaigns, "COVER_MAX_LEADERS", 1.0)
    monkeypatch.setattr(campaigns, "PAIRS_PER_SEARCH", 40)
    for t in (15, 31, 45):
        expected = _partition(connected_components(hamming <= t, directed=False)[1])
        assert _partition(campaigns.radius_components(hashes, "hamming", t)) == expected


def test_near_copies_are_covered_by_few_leaders_and_other_vectors_are_searched_pairwise():
    from riskrank.rank.campaigns import _Space, radius_components

    rng = np.random.default_rng(3)
    centres = _unit(rng.normal(size=(5, 32)))
    x = _unit(centres[rng.integers(5, size=2000)] + 0.01 * rng.normal(size=(2000, 32)))
    leader, group, radius = _Space(x, "cosine", 0.7).cover_groups()
    assert len(leader) == 5  # 2,000 rows, 5 leaders: the search is 2,000 x 5, not 2,000²
    assert _partition(radius_components(x, "cosine", 0.7)) == _all_pairs_partition(x, 0.7)
    from scipy.sparse.csgraph import connected_components

    scaled = x[:300] * 2.0  # not unit vectors: no distance to cover with; every pair searched
    graph = radius_graph(scaled, "cosine", 0.7)
    expected = _partition(connected_components(graph, directed=False)[1])
    assert _partition(radius_components(scaled, "cosine", 0.7)) == expected


@pytest.mark.parametrize("rows", [300, 1000])
def test_the_probe_is_the_start_of_the_cover_and_gives_up_without_near_copies(monkeypatch, rows):
    import riskrank.rank.campaigns as campaigns
    from riskrank.rank.campaigns import _Space

    monkeypatch.setattr(campaigns, "COVER_BLOCK", 64)
    rng = np.random.default_rng(5)
    centres = _unit(rng.normal(size=(5, 32)))
    near = _unit(centres[rng.integers(5, size=rows)] + 0.01 * rng.normal(size=(rows, 32)))
    scattered = _unit(rng.normal(size=(rows, 32)))  # every row leads its own group
    for probe in (200, 500, 5000):  # inside a block, past the rows
        space = _Space(near, "cosine", 0.7)
        whole, probed = space.cover_groups(), space.cover_groups(probe=probe)
        assert all(np.array_equal(a, b) for a, b in zip(whole, probed, strict=True))
        assert _Space(scattered, "cosine", 0.7).cover_groups(probe=probe) is None


def test_a_campaign_mode_report_says_how_many_items_its_campaigns_hold(
    tmp_path, inventory_items, seeds, hashing_model
):
    """Campaign mode's "queued" counts campaigns; the items they hold and the budget's split
    into slots were only in the queue itself (an outsider's report)."""
    from riskrank.rank.app.info import format_info, info

    kw = dict(k=200, show_progress=False, budget=10, explore=0.2, out_dir=tmp_path / "run",
              reports=True)  # fmt: skip
    res = sweep(inventory_items.drop(["label"]), seeds, hashing_model, campaigns=True, **kw)
    members = sum(len(m) for m in res.queue["campaign_members"].to_pylist())
    assert members > res.queue.num_rows  # the fixture has campaigns of several items
    assert res.report["queued_items"] == members
    slots = res.queue["slot"].to_pylist()
    assert res.report["slots"] == {s: slots.count(s) for s in sorted(set(slots))}
    md = (tmp_path / "run" / "report.md").read_text()
    assert f"| items in the queued campaigns | {members:,} |" in md
    assert f"queued campaigns {res.queue.num_rows:,}, items in them {members:,}" in format_info(
        info(tmp_path / "run")
    )
    items = sweep(inventory_items.drop(["label"]), seeds, hashing_model, **kw)
    assert "queued_items" not in items.report and sum(items.report["slots"].values()) == len(
        items.queue
    )
    assert f"| queued | {len(items.queue)} |" in (tmp_path / "run" / "report.md").read_text()


def _ranked(n: int, labels) -> pa.Table:
    q = pa.table(
        {
            "rank": np.arange(1, n + 1),
            "item_id": [f"i{k:02d}" for k in range(n)],
            "policy": ["scam"] * n,
            "risk_probability": np.linspace(0.99, 0.5, n),
        }
    )
    return add_campaign_columns(q, np.asarray(labels, np.int64))


def test_explore_slots_no_unit_qualifies_for_go_back_to_exploit():
    """Every unit below the cut was of a campaign the exploit slots show, so no explore pick
    qualified, and its slots were lost: a budget of 10 queued 9 (an outsider's repro; a
    default sweep with budget 50 queued 45)."""
    one = allocate_slots(_ranked(20, [0] * 20), 10, 0.1)
    assert one.num_rows == 10 and set(one["slot"].to_pylist()) == {"exploit"}
    assert one["item_id"].to_pylist() == [f"i{k:02d}" for k in range(10)]
    two = allocate_slots(_ranked(20, [0] * 15 + [1] * 5), 10, 0.3)
    assert two.num_rows == 10 and two["slot"].to_pylist().count("explore") == 1
    assert two["rank"].to_pylist() == list(range(1, 11))


def test_the_riskiest_unit_always_leads():
    # Rounding half up gave a budget of 1 at explore 0.5 one explore pick and no exploit slot.
    for budget, explore, exploring in ((1, 0.5, 0), (2, 0.75, 1), (10, 0.95, 9), (5, 0.1, 1)):
        out = allocate_slots(_ranked(30, np.arange(30)), budget, explore)
        assert out["slot"].to_pylist().count("explore") == exploring
        slot = dict(zip(out["item_id"].to_pylist(), out["slot"].to_pylist()))
        assert slot["i00"] == "exploit"
    # ... at rank 1: with more than half the budget exploring, the first pick took rank 1
    # (a reviewer's report; the test above looked at its slot, not its place).
    for budget, explore in ((10, 0.6), (10, 0.95), (3, 0.5), (5, 0.5), (100, 0.1), (7, 0.9)):
        out = allocate_slots(_ranked(300, np.arange(300)), budget, explore)
        assert out["item_id"][0].as_py() == "i00" and out["slot"][0].as_py() == "exploit"
        assert out["rank"].to_pylist() == list(range(1, budget + 1))
    # The default share lands where it did: every tenth place from the fifth.
    out = allocate_slots(_ranked(300, np.arange(300)), 100, 0.1)
    assert [
        r for r, s in zip(out["rank"].to_pylist(), out["slot"].to_pylist()) if s == "explore"
    ] == [6, 16, 26, 36, 46, 56, 66, 76, 86, 96]


def test_the_explore_count_rounds_the_share_as_written():
    # 50 x 0.29 = 14.499999999999998 in binary floats: 14 slots, not 15 (a reviewer's report).
    units = _ranked(300, np.arange(300))
    for budget, explore, slots in ((50, 0.29, 15), (90, 0.35, 32), (45, 0.7, 32), (10, 0.25, 3)):
        assert explore_count(units, budget, explore) == slots


def test_a_cut_queue_describes_the_campaigns_it_shows(inventory_items, seeds, hashing_model):
    """Item mode with a budget: a row said "campaign of 6" beside the one member listed, and
    an explore pick's representative was below the cut (an outsider's repro); a campaign
    verdict reaches the listed rows only. The columns now count the rows the queue holds."""
    from collections import Counter

    inv = inventory_items.drop(["label"])
    kw = dict(k=None, show_progress=False)
    full = sweep(inv, seeds, hashing_model, explore=0, **kw).queue
    assert max(full["campaign_size"].to_pylist()) > 3
    for explore in (0.0, 0.3):
        q = sweep(inv, seeds, hashing_model, budget=10, explore=explore, **kw).queue
        assert q.num_rows == 10
        listed = Counter(q["campaign_id"].to_pylist())
        ids = q["item_id"].to_pylist()
        for row in q.to_pylist():
            assert row["campaign_size"] == listed[row["campaign_id"]]
            cids = q["campaign_id"].to_pylist()
            members = [i for i, c in zip(ids, cids) if c == row["campaign_id"]]
            assert row["campaign_id"] == f"c-{min(members, key=anchor_order)}"  # a listed one
        ranks = {}
        for cid, r in zip(q["campaign_id"].to_pylist(), q["campaign_rank"].to_pylist()):
            ranks.setdefault(cid, []).append(r)
        assert all(r == list(range(1, len(r) + 1)) for r in ranks.values())


def test_a_budget_per_policy_gives_each_policy_its_slots():
    """One budget went to whichever policy's probabilities ran highest: a new policy's
    transferred ones (4x its true share) took 57 of 60 slots from an established policy on an
    outsider's mixed inventory. Per policy, each gets its own rows and explore share."""
    hot = _ranked(20, np.arange(20))  # scam: P 0.99 .. 0.5
    cold = pa.table(
        {
            "rank": np.arange(21, 41),
            "item_id": [f"j{k:02d}" for k in range(20)],
            "policy": ["spam"] * 20,
            "risk_probability": np.linspace(0.45, 0.05, 20),
        }
    )
    q = pa.concat_tables([hot, add_campaign_columns(cold, np.arange(20, 40))])
    assert allocate_slots(q, 8, 0.0)["policy"].to_pylist() == ["scam"] * 8  # one budget
    out = allocate_per_policy(q, 4, 0.0)
    assert out["rank"].to_pylist() == list(range(1, 9))
    # Each policy's riskiest, in rank order across the policies.
    assert out["item_id"].to_pylist() == ["i00", "i01", "i02", "i03", "j00", "j01", "j02", "j03"]
    explored = allocate_per_policy(q, 10, 0.2)
    per = Counter(zip(explored["policy"].to_pylist(), explored["slot"].to_pylist()))
    assert per == {("scam", "exploit"): 8, ("scam", "explore"): 2,
                   ("spam", "exploit"): 8, ("spam", "explore"): 2}  # fmt: skip
    slots = explored["slot"].to_pylist()
    assert "explore" in slots[:10]  # spread through the queue, not all at its end
    # One policy: the same queue as one budget.
    alone = allocate_per_policy(hot, 10, 0.3)
    assert alone.to_pylist() == allocate_slots(hot, 10, 0.3).to_pylist()
    with pytest.raises(ValueError, match="budget_per_policy"):
        allocate_per_policy(q, 0, 0.1)


def test_a_sweep_with_a_budget_per_policy(tmp_path, inventory_items, seeds, hashing_model):
    diet = pa.table(
        {
            "seed_id": ["d1", "d2"],
            "policy": ["diet"] * 2,
            "text": ["Miracle diet pill: lose 30 pounds in a week",
                     "Lose weight fast without exercise, buy the miracle pill"],
        }
    )  # fmt: skip
    both = pa.concat_tables([seeds.select(["seed_id", "policy", "text"]), diet])
    inv = inventory_items.drop(["label"])
    res = sweep(inv, both, hashing_model, budget_per_policy=3, show_progress=False)
    assert Counter(res.queue["policy"].to_pylist()) == {"scam": 3, "diet": 3}
    assert res.queue["rank"].to_pylist() == list(range(1, 7))
    with pytest.raises(ValueError, match="not both"):
        sweep(inv, both, hashing_model, budget=5, budget_per_policy=3, show_progress=False)
    with pytest.raises(ValueError, match="budget_per_policy=0"):
        sweep(inv, both, hashing_model, budget_per_policy=0, show_progress=False)
