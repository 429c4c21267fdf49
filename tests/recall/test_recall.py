import json

import numpy as np
import pyarrow as pa
import pytest

from riskrank.index import build_index
from riskrank.index.tables import SchemaError
from riskrank.recall.candidates import candidate_schema
from riskrank.recall.history import ReviewedExemplars, validate_history
from riskrank.recall.recaller import recall
from riskrank.recall.seeds import SeedSet


@pytest.fixture(scope="module")
def inv_index(tmp_path_factory, inventory_items, text_signal):
    return build_index(
        inventory_items, tmp_path_factory.mktemp("inv"), signals=[text_signal], show_progress=False
    )


def test_seed_validation_errors_name_the_seed():
    with pytest.raises(SchemaError, match="empty"):
        SeedSet.from_table(
            pa.table(
                {
                    "seed_id": pa.array([], pa.string()),
                    "policy": pa.array([], pa.string()),
                    "text": pa.array([], pa.string()),
                }
            )
        )
    with pytest.raises(SchemaError, match="duplicate seed_id 's1'"):
        SeedSet.from_table({"seed_id": ["s1", "s1"], "policy": ["a", "a"], "text": ["x", "y"]})
    with pytest.raises(SchemaError, match="seed 's2': no content"):
        SeedSet.from_table({"seed_id": ["s1", "s2"], "policy": ["a", "a"], "text": ["x", " "]})
    with pytest.raises(SchemaError, match="severity 9"):
        SeedSet.from_table({"seed_id": ["s1"], "policy": ["a"], "text": ["x"], "severity": [9]})
    s = SeedSet.from_table({"seed_id": ["s1"], "policy": ["a"], "text": ["x"], "severity": [4]})
    assert s.table["action"].to_pylist() == ["remove_and_report"]


def test_recall_evidence_is_exact_and_ranks_scams_first(inv_index, seeds, inventory_items):
    cands = recall(inv_index, seeds, k=20, show_progress=False)
    for field in candidate_schema(["text"], history=False):
        assert cands.schema.field(field.name).type == field.type, field.name
    df = cands.to_pandas()
    assert set(df.policy) == {"scam"}
    assert not df.item_id.duplicated().any()
    # Evidence is recomputed exactly against every seed, not just the one that found the item.
    si = inv_index.signals["text"]
    seed_vecs = si.signal.embed_queries(SeedSet.from_table(seeds).table).vectors
    pos = {i: p for p, i in enumerate(si.ids)}
    row = df.iloc[0]
    sims = seed_vecs @ np.asarray(si.vectors[pos[row.item_id]])
    assert row.text_best_sim == pytest.approx(sims.max(), abs=1e-5)
    assert row.text_best_seed_id == ["s1", "s2", "s3"][int(sims.argmax())]
    assert row.text_top3_mean == pytest.approx(np.sort(sims)[-3:].mean(), abs=1e-5)
    # Scams resemble the seeds: the top of the candidate list is scam.
    labels = dict(zip(inventory_items["item_id"].to_pylist(), inventory_items["label"].to_pylist()))
    top = df.sort_values("text_best_sim", ascending=False).item_id[:15]
    assert np.mean([labels[i] for i in top]) > 0.9
    # Metadata passes through; burst campaigns have dense neighbourhoods.
    assert "advertiser" in df.columns
    assert df.sort_values("text_best_sim").text_density.iloc[-5:].mean() > 0


def test_description_seed_recalls_zero_shot(inv_index, inventory_items):
    seeds = SeedSet.from_texts(
        {"loans": ["loan offers promising guaranteed approval"]}, kind="description"
    )
    df = recall(inv_index, seeds, k=10, show_progress=False).to_pandas()
    top = df.sort_values("text_best_sim", ascending=False).text.iloc[:5]
    assert sum("loan" in t.lower() for t in top) >= 4


def test_seeds_from_one_string_are_refused_not_split_into_letters():
    """``from_texts({"loans": "guaranteed-approval"})`` made 19 one-letter seeds without a
    word (an outsider's report); an empty mapping named missing columns."""
    with pytest.raises(TypeError, match=r"policy 'loans': expected a list of texts.*write \["):
        SeedSet.from_texts({"loans": "guaranteed-approval"})
    with pytest.raises(SchemaError, match="no seed texts given"):
        SeedSet.from_texts({"loans": []})
    made = SeedSet.from_texts({"loans": (t for t in ["a loan offer", "cheap credit"])})
    assert made.table["seed_id"].to_pylist() == ["loans-0", "loans-1"]


def test_history_validation_and_leave_one_out(history, text_signal):
    dup_id = history["item_id"][0].as_py()
    bad = pa.concat_tables(
        [
            history.slice(0, 3),
            pa.table(
                {
                    "item_id": [dup_id, "x"],
                    "text": ["dup", "y"],
                    "policy": ["scam", "scam"],
                    "verdict": pa.array([history["verdict"][0].as_py(), 7], pa.int8()),
                }
            ),
        ]
    )
    clean, q = validate_history(bad)  # the same verdict again: a duplicate, not a conflict
    assert clean.num_rows == 3 and q.num_rows == 2
    assert any("verdict 7" in r for r in q["reason"].to_pylist())

    ex = ReviewedExemplars.build(history, text_signal)
    vecs = ex.vectors[:5]
    ids = np.asarray(history["item_id"].to_pylist()[:5], dtype=object)
    with_self = ex.evidence("scam", ids, vecs, exclude_self=False)
    loo = ex.evidence("scam", ids, vecs, exclude_self=True)
    verdicts = np.array(history["verdict"].to_pylist())
    sims = vecs @ ex.vectors.T
    for i in range(5):
        same = (verdicts > 0) == (verdicts[i] > 0)
        key = "hist_text_pos_max_sim" if verdicts[i] else "hist_text_neg_max_sim"
        assert with_self[key][i] == pytest.approx(1.0, abs=1e-4)  # finds itself
        others = same.copy()
        others[i] = False  # left out: the best is another reviewed item
        assert loo[key][i] == pytest.approx(sims[i, others].max(), abs=1e-5)
    assert np.isnan(
        ex.evidence("other", ids, vecs, exclude_self=False)["hist_text_knn_score"]
    ).all()


def test_the_closest_review_of_each_kind_is_found_beyond_the_k_nearest(tmp_path):
    """An item whose k nearest reviews are all violations still has a closest benign review:
    its similarity, never a placeholder a cosine cannot take (it was -1, and reviewers read
    'similarity to the closest item reviewers found benign = -1' as a top reason). A policy
    with no review of a kind has none: NaN."""
    rng = np.random.default_rng(0)
    item = np.zeros(8, np.float32)
    item[0] = 1.0
    near = item + 0.1 * rng.standard_normal((20, 8)).astype(np.float32)  # violating, close
    far = np.zeros((1, 8), np.float32)
    far[0, :2] = (0.4, 0.9)  # the one benign review, further than all 20
    vecs = np.concatenate([near, far])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    table = pa.table(
        {
            "item_id": [f"r{i}" for i in range(21)],
            "policy": ["scam"] * 21,
            "verdict": pa.array([2] * 20 + [0], pa.int8()),
        }
    )
    ex = ReviewedExemplars("text", vecs, table, k=15)
    ev = ex.evidence("scam", np.array(["new"], dtype=object), item[None], exclude_self=False)
    assert ev["hist_text_neg_max_sim"][0] == pytest.approx(vecs[20] @ item, abs=1e-5)
    assert ev["hist_text_pos_max_sim"][0] == pytest.approx((vecs[:20] @ item).max(), abs=1e-5)
    only_violating = ReviewedExemplars("text", vecs[:20], table.slice(0, 20), k=15)
    ev = only_violating.evidence("scam", np.array(["new"], dtype=object), item[None],
                                 exclude_self=False)  # fmt: skip
    assert np.isnan(ev["hist_text_neg_max_sim"][0])
    # Exemplars saved before keep the evidence their ranker was trained on until retrained.
    ex.save(tmp_path / "ex")
    meta = json.loads((tmp_path / "ex" / "exemplars.json").read_text())
    assert ReviewedExemplars.load(tmp_path / "ex").closest_of_each_kind
    del meta["closest_of_each_kind"]
    (tmp_path / "ex" / "exemplars.json").write_text(json.dumps(meta))
    old = ReviewedExemplars.load(tmp_path / "ex")
    ev = old.evidence("scam", np.array(["new"], dtype=object), item[None], exclude_self=False)
    assert ev["hist_text_neg_max_sim"][0] == -1


def test_exemplars_roundtrip_without_pickle(tmp_path, history, text_signal):
    ex = ReviewedExemplars.build(history.slice(0, 20), text_signal)
    ex.save(tmp_path / "ex")
    assert not list(tmp_path.glob("**/*.pkl"))
    again = ReviewedExemplars.load(tmp_path / "ex")
    np.testing.assert_allclose(again.vectors, ex.vectors)
    assert again.table.equals(ex.table)


def test_lossy_index_is_rescored_to_exact_neighbours(tmp_path, inventory_items, seeds, text_signal):
    from riskrank.recall.recaller import _SignalState

    exact = build_index(
        inventory_items, tmp_path / "flat", signals=[text_signal], show_progress=False
    )
    lossy = build_index(
        inventory_items, tmp_path / "sq", signals=[text_signal], key="IVF2,SQ4", show_progress=False
    )
    assert lossy.signals["text"].entry["index_key"] == "IVF2,SQ4"
    q = text_signal.embed_queries(SeedSet.from_table(seeds).table).vectors
    vecs = np.asarray(exact.signals["text"].vectors)
    a = _SignalState(exact.signals["text"]).neighbours(q, 5)
    b = _SignalState(lossy.signals["text"]).neighbours(q, 5)
    # Same neighbours up to ties (templated texts repeat): compare exact similarities.
    sims_a = np.take_along_axis(q @ vecs.T, a, 1)
    sims_b = np.take_along_axis(q @ vecs.T, b, 1)
    np.testing.assert_allclose(sims_a, sims_b, atol=1e-6)


def test_history_evidence_of_a_hash_signal_is_hamming_similarity():
    """PDQ's reviewed items are compared by Hamming distance (1 - hamming / bits), not as the
    packed bytes' inner product."""
    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.index.vectors.hamming import hamming_distances

    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, size=(6, 32), dtype=np.uint8)
    history = pa.table(
        {
            "item_id": [f"h{i}" for i in range(6)],
            "policy": ["scam"] * 6,
            "verdict": pa.array([3, 3, 3, 0, 0, 0], pa.int8()),
        }
    )
    ex = ReviewedExemplars.build(history, PdqSignal(), vectors=hashes)
    items = hashes[[0, 4]].copy()
    items[0, 0] ^= 0b111  # 3 bits from h0
    out = ex.evidence("scam", np.array(["x", "y"], object), items, exclude_self=False)
    assert out["hist_pdq_nearest_id"].tolist() == ["h0", "h4"]
    want = 1 - hamming_distances(items, hashes).min(axis=1) / 256
    np.testing.assert_allclose(out["hist_pdq_nearest_sim"], want, atol=1e-6)
    assert out["hist_pdq_nearest_sim"][0] == pytest.approx(1 - 3 / 256)


def _ivf_and_flat(tmp_path, items, signal):
    """The same items in an ``IVF8,Flat`` index (nprobe 1) and in an exact one."""
    ivf = build_index(
        items, tmp_path / "ivf", signals=[signal], key="IVF8,Flat", show_progress=False
    )
    return ivf, build_index(items, tmp_path / "flat", signals=[signal], show_progress=False)


def test_k_none_recalls_every_item_of_an_ivf_index_too(
    tmp_path, inventory_items, seeds, text_signal
):
    # k=None promises every indexed item as a candidate; an IVF index searched for all of them
    # visits only nprobe of its lists (IVF8: 1 of 8 here), which recalled a fraction before.
    ivf, flat = _ivf_and_flat(tmp_path, inventory_items, text_signal)
    n_policies = len(set(seeds["policy"].to_pylist()))
    for index in (ivf, flat):
        cands = recall(index, seeds, k=None, show_progress=False)
        assert cands.num_rows == inventory_items.num_rows * n_policies
    a = recall(ivf, seeds, k=None, show_progress=False).sort_by("item_id")
    b = recall(flat, seeds, k=None, show_progress=False).sort_by("item_id")
    np.testing.assert_allclose(
        a["text_best_sim"].to_numpy(), b["text_best_sim"].to_numpy(), atol=1e-6
    )


def test_seeds_find_their_true_nearest_items_in_an_ivf_index(
    tmp_path, inventory_items, seeds, text_signal
):
    # A seed's deep list through IVF's nprobe lists held 67-71% of its true 5,000 nearest at
    # 300,000 items (an outsider's run), and a standing index and a rebuild, trained apart,
    # disagreed on a quarter of their queues. Seeds are scored against every stored vector.
    ivf, flat = _ivf_and_flat(tmp_path, inventory_items, text_signal)
    k = 40  # a fifth of the items: one list of 8 (nprobe 1) held fewer than that before
    a = recall(ivf, seeds, k=k, show_progress=False).sort_by(
        [("policy", "ascending"), ("item_id", "ascending")]
    )
    b = recall(flat, seeds, k=k, show_progress=False).sort_by(
        [("policy", "ascending"), ("item_id", "ascending")]
    )
    assert a["item_id"].to_pylist() == b["item_id"].to_pylist()
    for col in ("text_best_sim", "text_best_rank", "text_top3_mean"):
        np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), atol=1e-6)


def test_exact_copies_get_the_same_evidence_whatever_the_row_order(
    tmp_path, inventory_items, seeds, text_signal
):
    """Copies of one ad under other ids tie in every seed's neighbour list: they share a
    rank there, so neither their evidence nor a queue depends on the export's row order."""
    inv = inventory_items.drop(["label"])
    ad = inv.slice(0, 1).to_pylist()[0]
    copies = pa.Table.from_pylist([{**ad, "item_id": f"copy{i}"} for i in range(4)], inv.schema)
    one = pa.concat_tables([inv.slice(0, 10), copies, inv.slice(10)])
    other = pa.concat_tables([copies.slice(2), inv.slice(10), copies.slice(0, 2), inv.slice(0, 10)])
    cols = ["text_best_rank", "text_best_sim", "text_density", "text_neighbour_sim"]
    got = []
    for name, table in (("one", one), ("other", other)):
        index = build_index(table, tmp_path / name, signals=[text_signal], show_progress=False)
        cands = recall(index, seeds, k=40, show_progress=False).to_pandas().set_index("item_id")
        got.append(cands.sort_index()[cols])
    same = [ad["item_id"], *(f"copy{i}" for i in range(4))]
    for frame in got:
        assert (frame.loc[same].nunique() == 1).all(), frame.loc[same]
    assert got[0].loc[same].iloc[0].to_dict() == got[1].loc[same].iloc[0].to_dict()


def test_copies_the_list_cut_off_share_the_place_of_those_it_kept(tmp_path, hashing_signal):
    """More exact copies of a seed than ``k``: the list kept the first k in row order, and a
    copy outside it (added by ``include``, as training adds a policy's own reviews) ranked
    k + 1 at similarity 1.0 where its twins ranked 1 (a reviewer's finding)."""
    ad = "Replica Rolex watches, designer handbags at 90% off, order today"
    others = [f"Team lunch on day {i}, bring ideas about the roadmap" for i in range(20)]
    items = pa.table(
        {"item_id": [f"c{i}" for i in range(6)] + [f"o{i}" for i in range(20)],
         "text": [ad] * 6 + others}
    )  # fmt: skip
    index = build_index(items, tmp_path / "idx", signals=[hashing_signal], show_progress=False)
    seeds = SeedSet.from_table({"seed_id": ["s"], "policy": ["fake"], "text": [ad]})
    cands = recall(index, seeds, k=3, include={"fake": ["c4", "c5", "o0"]}, show_progress=False)
    rank = dict(zip(cands["item_id"].to_pylist(), cands["text_best_rank"].to_pylist()))
    # c0-c2 in the list, c4 and c5 added: all first; o0 added too, past the list: k + 1.
    assert rank == {**dict.fromkeys(["c0", "c1", "c2", "c4", "c5"], 1), "o0": 4}, rank


def test_the_same_inventory_in_another_row_order_gives_the_same_evidence(
    tmp_path, monkeypatch, inventory_items, seeds, hashing_signal
):
    """Outsider CD: the background the z-scores are read against was drawn by row position,
    so a shuffled 2,796-row inventory moved text_best_sim_z by up to 0.75 SD and 4 of the top
    200 rows. Drawn by id now (here a 16-item background of 90 items)."""
    import riskrank.recall.recaller as recaller

    monkeypatch.setattr(recaller, "BACKGROUND_SAMPLE", 16)
    inv = inventory_items.drop(["label"])
    shuffled = inv.take(np.random.default_rng(7).permutation(inv.num_rows))

    def evidence(table, name):
        index = build_index(table, tmp_path / name, signals=[hashing_signal], show_progress=False)
        got = recall(index, seeds, k=None, show_progress=False)
        return got.sort_by([("policy", "ascending"), ("item_id", "ascending")])

    one, other = evidence(inv, "a"), evidence(shuffled, "b")
    assert one.num_rows > 16
    for name in one.column_names:
        if pa.types.is_floating(one[name].type):  # (NaN where a seed kind is absent)
            np.testing.assert_array_equal(one[name].to_numpy(), other[name].to_numpy(), name)
        else:
            assert one[name].to_pylist() == other[name].to_pylist(), name
