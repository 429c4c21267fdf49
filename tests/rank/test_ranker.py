import json

import numpy as np
import pyarrow as pa
import pytest

from riskrank.index.tables import SchemaError
from riskrank.rank.evaluation.metrics import (
    average_precision,
    ndcg_at,
    precision_at,
    ranking_report,
)
from riskrank.rank.ranker import RiskRanker, _groups


def _synthetic_candidates(n=600, seed=0, with_history=True):
    # Not seed 0 of RiskRanker(random_state=0): the same stream would hold out exactly the
    # positives (random() < 0.2 inside random() < 0.3) and leave nothing to calibrate on.
    rng = np.random.default_rng(100 + seed)
    y = rng.random(n) < 0.3
    best = np.clip(0.35 + 0.3 * y + 0.12 * rng.normal(size=n), -1, 1)
    cols = {
        "item_id": [f"i{i}" for i in range(n)],
        "policy": ["scam"] * n,
        "text_best_sim": best,
        "text_top3_mean": best - 0.05,
        "text_density": rng.integers(0, 5, n).astype(float),
        "verdict": pa.array((2 * y).astype(np.int8)),
        "sweep_id": [f"sw{i % 2}" for i in range(n)],
    }
    if with_history:
        cols["hist_text_knn_score"] = np.clip(y * 0.7 + 0.3 * rng.random(n), 0, 1)
    return pa.table(cols), y


def test_metrics_known_values():
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, -np.inf])
    assert average_precision(y, s) == pytest.approx((1 + 2 / 3) / 2)
    assert precision_at(y, s, 2) == 0.5
    assert ndcg_at(np.array([2, 0]), np.array([1.0, 0.0]), 2) == 1.0
    assert set(ranking_report(y, s)) == {"AP", "P@10", "P@50", "P@100", "R@5%", "NDCG@100"}


def test_groups_split_under_limit():
    keys = [("sw", "p")] * 25 + [("sw", "q")] * 3
    order, sizes = _groups(keys, 10, np.random.default_rng(0))
    assert sizes.max() <= 10 and sizes.sum() == 28
    assert sorted(order.tolist()) == list(range(28))


def test_fit_predict_calibrate_explain_roundtrip(tmp_path):
    train, _ = _synthetic_candidates(seed=0)
    test, y = _synthetic_candidates(seed=1)
    ranker = RiskRanker(n_estimators=60).fit(train)
    s = ranker.predict(test)
    assert average_precision(y, s) > 0.9
    p = ranker.predict_proba(test)
    assert ((p >= 0) & (p <= 1)).all()
    assert p[y].mean() > 0.6 > p[~y].mean()  # calibrated towards the base rates
    reasons = ranker.reasons(test)
    assert any("reviewed" in r or "seed" in r for r in reasons)
    ranker.save(tmp_path / "m")
    assert not list(tmp_path.glob("**/*.pkl"))
    again = RiskRanker.load(tmp_path / "m")
    np.testing.assert_allclose(again.predict_proba(test), p)
    assert again.features_ == ranker.features_


def test_cold_variant_used_without_history_and_errors_are_clear():
    train, _ = _synthetic_candidates(seed=0)
    ranker = RiskRanker(n_estimators=30).fit(train)
    assert "cold" in ranker.models_
    cold, y = _synthetic_candidates(seed=2, with_history=False)
    assert set(ranker.score(cold).variant) == {"cold"}
    assert average_precision(y, ranker.predict(cold)) > 0.7
    with pytest.raises(SchemaError, match="missing feature columns"):
        ranker.predict(cold.drop(["text_best_sim"]))
    no_pos = train.set_column(
        train.column_names.index("verdict"), "verdict", pa.array(np.zeros(train.num_rows, np.int8))
    )
    with pytest.raises(SchemaError, match="both violating"):
        RiskRanker().fit(no_pos)
    with pytest.raises(RuntimeError, match="not fitted"):
        RiskRanker().predict(train)


@pytest.mark.parametrize(
    "param, value",
    [
        ("max_group_size", 20_000),
        ("max_group_size", 1),
        ("learning_rate", 0.0),
        ("n_jobs", 0),
        ("calibration_fraction", 1.0),
        ("objective", "binary"),
    ],
)
def test_invalid_parameters_are_refused_naming_them(param, value):
    from riskrank.rank.ranker import RiskRanker

    ranker = RiskRanker(**{param: value})  # __init__ only stores, as in scikit-learn
    with pytest.raises(ValueError, match=param):
        ranker.fit(pa.table({"item_id": ["a"], "policy": ["p"], "verdict": [2]}))


def test_n_jobs_reaches_lightgbm():
    from riskrank.rank.ranker import RiskRanker

    assert RiskRanker(n_jobs=1)._params(100, [])["n_jobs"] == 1


def test_score_is_predict_proba_reasons_and_variant_in_one_and_slices_agree():
    train, _ = _synthetic_candidates(seed=0)
    ranker = RiskRanker(n_estimators=30).fit(train)
    warm, _ = _synthetic_candidates(seed=3)
    cold, _ = _synthetic_candidates(seed=4, with_history=False)
    # Two policies, one with history evidence, one without: both boosters are used.
    cold = cold.set_column(
        cold.column_names.index("policy"), "policy", pa.array(["other"] * cold.num_rows)
    )
    both = pa.concat_tables([warm, cold], promote_options="default")
    scored = ranker.score(both)
    assert len(scored) == both.num_rows
    assert set(scored.variant) == {"full", "cold"}
    np.testing.assert_allclose(scored.scores, ranker.predict(both))
    np.testing.assert_allclose(scored.proba, ranker.predict_proba(both))
    assert scored.reasons == ranker.reasons(both)
    # Slices told the whole table's variants score as the whole table does.
    variant = ranker.variants(both)
    parts = [
        ranker.score(both.slice(s, 37), variant=variant[s : s + 37], calibrate=False)
        for s in range(0, both.num_rows, 37)
    ]
    joined = ranker.calibrate_scored(type(scored).concat(parts), both.column("policy").to_pylist())
    np.testing.assert_array_equal(joined.scores, scored.scores)
    np.testing.assert_array_equal(joined.proba, scored.proba)
    assert list(joined.calibration) == list(scored.calibration)
    assert list(joined.variant) == list(scored.variant) and joined.reasons == scored.reasons
    with pytest.raises(ValueError, match="variant: expected"):
        ranker.score(both.slice(0, 5), variant=variant[:4])
    assert len(ranker.score(both.slice(0, 0))) == 0


def _two_policies(n_old=600, n_new=120, young_from=None):
    """An established policy and a young one, both with history evidence and a z-scored
    similarity (policy-relative) next to the raw one; the young one's reviews came from two
    sweeps (its queues), or from ``young_from`` ("history": the labelled history's)."""
    parts = []
    for policy, n, seed in (("scam", n_old, 0), ("young", n_new, 5)):
        t, _ = _synthetic_candidates(n=n, seed=seed)
        best = t["text_best_sim"].to_numpy()
        t = t.set_column(t.column_names.index("policy"), "policy", pa.array([policy] * n))
        t = t.set_column(
            t.column_names.index("item_id"), "item_id", pa.array([f"{policy}{i}" for i in range(n)])
        )
        t = t.append_column("text_best_sim_z", pa.array((best - best.mean()) / best.std()))
        if policy == "young" and young_from is not None:
            at = t.column_names.index("sweep_id")
            t = t.set_column(at, "sweep_id", pa.array([young_from] * n))
        parts.append(t)
    return pa.concat_tables(parts)


def test_a_young_policys_labelled_history_is_read_as_a_sample():
    """An analyst's insult history of 700 random reviews turned young (and its items at
    P >= 0.5 went from 167 to 344, precision 0.84 to 0.72) when 71 spam verdicts made spam's
    771: reviews that came from no queue were not chosen by score. It is still ranked by the
    transfer booster (the count says so), but calibrated on its own held-out reviews, with its
    base rate re-estimated, and may act."""
    train = _two_policies(young_from="history")
    ranker = RiskRanker(n_estimators=30).fit(train)
    young = np.asarray(train["policy"].to_pylist()) == "young"
    assert set(ranker.variants(train)[young]) == {"transfer"}
    assert "young" not in ranker.young_calibration_
    scored = ranker.score(train)
    assert set(scored.calibration[young]) == {"policy_history"}
    queued = RiskRanker(n_estimators=30).fit(_two_policies())
    assert "young" in queued.young_calibration_


def test_a_young_policy_is_ranked_by_the_transfer_booster_until_it_has_enough_reviews(tmp_path):
    train = _two_policies()
    ranker = RiskRanker(n_estimators=30).fit(train)
    assert ranker.policy_reviews_ == {"scam": 600, "young": 120}
    # Relative seed evidence and history evidence only: no raw similarity.
    assert ranker.transfer_features_ == ["hist_text_knn_score", "text_best_sim_z"]
    variant = ranker.variants(train)
    young = np.asarray(train["policy"].to_pylist()) == "young"
    assert set(variant[young]) == {"transfer"} and set(variant[~young]) == {"full"}
    scored = ranker.score(train)
    # The pooled calibrator moved to its held-out reviews (fit_offset), with no EM.
    assert set(scored.calibration[young]) == {"policy_reviews"}
    assert set(scored.calibration[~young]) == {"policy_history"}
    assert np.isfinite(scored.proba).all()
    ranker.save(tmp_path / "m")
    again = RiskRanker.load(tmp_path / "m")
    assert list(again.variants(train)) == list(variant)
    np.testing.assert_allclose(again.predict_proba(train), ranker.predict_proba(train))
    # Enough reviews of its own (or min_policy_reviews=0): the full booster.
    assert set(RiskRanker(n_estimators=30, min_policy_reviews=100).fit(train).variants(train)) == {
        "full"
    }
    assert "transfer" not in RiskRanker(n_estimators=30, min_policy_reviews=0).fit(train).models_


def test_a_young_policys_probabilities_do_not_follow_the_rows_swept_with_them(tmp_path):
    # Its reviews came from its own queues, chosen by score: EM's re-estimated base rate
    # (which assumes they were a sample) put a new policy's share of violations at 0.8 for a
    # true 0.065 after its first reviews. A row's probability is now its score's, whichever
    # rows come with it.
    train = _two_policies()
    ranker = RiskRanker(n_estimators=30).fit(train)
    young = np.asarray(train["policy"].to_pylist()) == "young"
    rows = train.filter(pa.array(young))
    whole = ranker.score(rows)
    low = np.argsort(whole.scores)[: rows.num_rows // 2]  # only its least risky half
    part = ranker.score(rows.take(pa.array(low)))
    np.testing.assert_allclose(part.proba, whole.proba[low])
    assert part.base_rates["young"] < whole.base_rates["young"]  # the mean, on these rows
    cal = ranker.young_calibration_["young"]
    assert cal.n == int(
        ranker.calibration_["transfer"]["young"].n  # the same held-out reviews
    )
    np.testing.assert_allclose(whole.proba, cal.predict(whole.scores))
    # Saved and loaded; a model saved before it calibrates the young policy as before.
    ranker.save(tmp_path / "m")
    np.testing.assert_allclose(RiskRanker.load(tmp_path / "m").score(rows).proba, whole.proba)
    meta_path = tmp_path / "m" / "ranker.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("young_calibration")
    meta_path.write_text(json.dumps(meta))
    old = RiskRanker.load(tmp_path / "m").score(rows)
    assert set(old.calibration) == {"policy_history"}


def test_a_young_policy_never_acts_automatically():
    # Its reviews are the tops of its queues: with only confirmed violations imported, a cut
    # at 0.936 suggested removing 693 items, none of them violating (an outsider's check).
    # (~100 held-out reviews, all violating: their precision bound passes 0.95.)
    train = _two_policies(n_old=1200, n_new=500)
    young = np.asarray(train["policy"].to_pylist()) == "young"
    verdict = np.where(young, 2, train["verdict"].to_numpy()).astype(np.int8)
    train = train.set_column(train.column_names.index("verdict"), "verdict", pa.array(verdict))
    ranker = RiskRanker(n_estimators=30).fit(train)
    t = ranker.thresholds_["young"]
    assert t.threshold is None and t.n_violating == t.n_heldout > 0
    # Reviews of one class cannot say where its level is: the pooled calibrator, unmoved
    # (it had moved every item of such a policy to P 0.93 where none violated).
    assert ranker.young_calibration_["young"] == ranker.calibration_["transfer"]["*"]
    scored = ranker.score(train)
    assert set(scored.calibration[young]) == {"policy_reviews"}
    assert np.isnan(scored.action_threshold[young]).all()
    assert np.isfinite(scored.proba[young]).all()


def test_a_young_policys_level_moves_when_its_reviews_hold_both_verdicts_but_its_held_out_do_not():
    # A young policy's held-out reviews are a fifth of a few hundred, from the tops of its
    # queues: often all violating where its reviews as a whole are not. Its level then stayed
    # at the other policies' (SpamAssassin in the replay: 0.31-0.53x the true share,
    # young_calibration.md); it moves now. No benign review at all (a team importing only its
    # confirmed takedowns): unmoved, as before.
    base = _two_policies(n_old=1200, n_new=500)
    young = np.asarray(base["policy"].to_pylist()) == "young"
    ranker = RiskRanker(n_estimators=30)
    held = np.random.default_rng(ranker.random_state).random(base.num_rows) < (
        ranker.calibration_fraction
    )
    trained_young = np.flatnonzero(young & ~held)

    def fitted(n_benign):
        verdict = np.where(young, 2, base["verdict"].to_numpy()).astype(np.int8)
        verdict[trained_young[:n_benign]] = 0  # benign, none of them held out
        t = base.set_column(base.column_names.index("verdict"), "verdict", pa.array(verdict))
        return RiskRanker(n_estimators=30).fit(t), t

    ranker, table = fitted(1)
    assert ranker.n_calibration_ == int(held.sum())  # the held-out rows computed above
    pooled = ranker.calibration_["transfer"]["*"]
    moved = ranker.young_calibration_["young"]
    assert moved.intercept > pooled.intercept  # held-out all violating: up, by the prior's leave
    scored = ranker.score(table)
    assert set(scored.calibration[young]) == {"policy_reviews"}
    assert np.isnan(scored.action_threshold[young]).all()  # still never acts on its own
    none, _ = fitted(0)
    assert none.young_calibration_["young"] == none.calibration_["transfer"]["*"]


def test_a_young_policy_without_a_pooled_calibrator_is_an_order_only():
    # Too few held-out rows for any calibrator (fewer than 20): nothing to move.
    train = _two_policies(n_old=60, n_new=30)
    ranker = RiskRanker(n_estimators=10, min_child_samples=2).fit(train)
    assert "transfer" in ranker.models_ and ranker.calibration_["transfer"]["*"] is None
    assert ranker.young_calibration_ == {}
    young = np.asarray(train["policy"].to_pylist()) == "young"
    assert set(ranker.score(train).calibration[young]) == {"none"}


def test_a_policy_alone_keeps_the_full_booster_however_few_its_reviews():
    train, _ = _synthetic_candidates(n=300, seed=0)
    ranker = RiskRanker(n_estimators=30).fit(train)
    assert "transfer" not in ranker.models_
    assert set(ranker.variants(train)) == {"full"}


def test_a_model_saved_without_a_transfer_booster_loads_and_scores_as_before(tmp_path):
    import json

    train = _two_policies()
    ranker = RiskRanker(n_estimators=30, min_policy_reviews=0).fit(train)
    ranker.save(tmp_path / "m")
    meta_path = tmp_path / "m" / "ranker.json"
    meta = json.loads(meta_path.read_text())
    for key in ("transfer_features", "policy_reviews"):
        meta.pop(key)
    meta["params"].pop("min_policy_reviews")  # as written before the parameter existed
    meta_path.write_text(json.dumps(meta))
    again = RiskRanker.load(tmp_path / "m")
    assert set(again.variants(train)) == {"full"}
    np.testing.assert_allclose(again.predict_proba(train), ranker.predict_proba(train))


def _two_signal_candidates(
    n: int, seed: int, policy: str = "scam", history: bool = True
) -> tuple[pa.Table, np.ndarray]:
    """Violations match their seeds strongly under text AND picture at once, as a history of
    scam ads with their scam pictures does; benign rows under neither."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    cols = {"item_id": [f"{policy}{seed}-{i}" for i in range(n)], "policy": [policy] * n}
    for s in ("text", "pdq"):
        z = np.where(y, 4.0, 0.0) + rng.normal(size=n)
        cols[f"{s}_best_sim"] = np.clip(0.4 + 0.1 * z, -1, 1)
        cols[f"{s}_best_sim_z"] = z
        cols[f"{s}_best_rank"] = np.argsort(np.argsort(-z)).astype(float) + 1
        cols[f"{s}_n_seeds_hi"] = (z > 2.5).astype(float)
    cols["verdict"] = pa.array((2 * y).astype(np.int8))
    if history:
        cols["hist_text_knn_score"] = np.clip(y * 0.7 + 0.3 * rng.random(n), 0, 1)
    return pa.table(cols), y


def test_the_cold_booster_learns_that_one_signal_s_strong_match_suffices():
    """A history whose violations matched under text and picture together taught the cold
    booster to add the two up: an exact copy of a new policy's seed picture under a benign
    text ranked 352nd of 500 (an outsider's week). It trains on rows showing each signal's
    strong match alone as well (``_one_signal_copies``)."""
    from riskrank.rank.ranker import _one_signal_copies

    train, _ = _two_signal_candidates(600, 0)
    ranker = RiskRanker(n_estimators=60, n_jobs=1).fit(train)
    test, y = _two_signal_candidates(300, 1, "new", history=False)  # the cold booster
    benign = np.flatnonzero(~y)
    # Picture: a seed's exact copy; text: as benign as the benign rows' median.
    copy = {c: test[c][int(benign[0])].as_py() for c in test.column_names}
    copy.update(item_id="copy", pdq_best_sim=1.0, pdq_best_sim_z=8.0, pdq_best_rank=1.0)
    copy.update(pdq_n_seeds_hi=1.0, verdict=0)
    copy.update(text_best_sim_z=0.0, text_best_rank=float(len(benign)))
    with_copy = pa.concat_tables([test, pa.Table.from_pylist([copy], schema=test.schema)])
    scored = ranker.score(with_copy)
    assert set(scored.variant) == {"cold"}
    # Above every benign row: the picture alone is what a seed bank would act on.
    assert scored.scores[-1] > scored.scores[:-1][benign].max()
    # A text-only history adds no rows (its models train as they did).
    text_only = train.drop([c for c in train.column_names if c.startswith("pdq_")])
    assert "cold" in ranker.models_
    feats = ["text_best_rank", "text_best_sim_z"]
    X = np.column_stack([text_only[f].to_numpy() for f in feats])
    y_train = text_only["verdict"].to_numpy().astype(int)
    keys = [("history", "scam")] * text_only.num_rows
    extra = _one_signal_copies(text_only, feats, X, y_train, keys, np.arange(len(X)), 0)
    assert extra[0].shape == (0, 2) and len(extra[1]) == 0 and extra[2] == []
