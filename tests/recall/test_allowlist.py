"""Benign seeds (kind="benign"): validated, never recall, add per-signal evidence columns."""

import numpy as np
import pyarrow as pa
import pytest

from riskrank.index import build_index
from riskrank.index.tables import SchemaError
from riskrank.recall.candidates import evidence_feature_columns, monotone_direction
from riskrank.recall.recaller import recall
from riskrank.recall.seeds import SeedSet

VIOLATING = "Instant loan approval guaranteed, no credit check needed"
BENIGN = "Instant loan approval from your bank: a credit check is needed, fair rates"


@pytest.fixture(scope="module")
def loan_index(tmp_path_factory, hashing_signal):
    items = pa.table(
        {
            "item_id": ["scam1", "scam2", "real1", "real2", "recipe"],
            "text": [
                "Guaranteed loan approval in 10 minutes, no credit check, bad credit ok",
                "Guaranteed loan approval in 3 minutes, no credit check, apply now",
                "Instant loan approval from City Bank: a credit check is needed, fair rates",
                "Instant loan approval from Metro Bank: a credit check is needed, fair rates",
                "Recipe: roast the chicken with garlic and olive oil for 45 minutes",
            ],
        }
    )
    return build_index(
        items, tmp_path_factory.mktemp("loans"), signals=[hashing_signal], show_progress=False
    )


def _seeds(*rows):
    return SeedSet.from_table(
        pa.table(
            {
                "seed_id": [r[0] for r in rows],
                "policy": [r[1] for r in rows],
                "text": [r[2] for r in rows],
                "kind": [r[3] for r in rows],
            }
        )
    )


def test_kind_is_validated_and_defaults_to_violating():
    with pytest.raises(SchemaError, match=r"seed 'b': kind 'allow'.*'benign'"):
        _seeds(("v", "loans", VIOLATING, "example"), ("b", "loans", BENIGN, "allow"))
    with pytest.raises(SchemaError, match="policy 'news' has only benign seeds"):
        _seeds(("v", "loans", VIOLATING, "example"), ("b", "news", BENIGN, "benign"))
    s = _seeds(("v", "loans", VIOLATING, None), ("w", "loans", VIOLATING + "!", "violating"))
    assert s.table["kind"].to_pylist() == ["example", "violating"]
    assert not s.benign.any()
    default = SeedSet.from_table({"seed_id": ["v"], "policy": ["a"], "text": ["x"]})
    assert default.benign.tolist() == [False]


def test_benign_seeds_add_evidence_and_never_match(loan_index):
    plain = recall(loan_index, _seeds(("v", "loans", VIOLATING, "example")), show_progress=False)
    assert (
        plain["text_benign_sim"].null_count
        + np.isnan(plain["text_benign_sim"].to_numpy(zero_copy_only=False)).sum()
        == plain.num_rows
    )
    seeds = _seeds(("v", "loans", VIOLATING, "example"), ("b", "loans", BENIGN, "benign"))
    cands = recall(loan_index, seeds, show_progress=False).to_pandas().set_index("item_id")
    # The benign seed is evidence, never a match or a best seed.
    assert all("b" not in m for m in cands.matched_seed_ids)
    assert set(cands.text_best_seed_id) == {"v"}
    # Real offers sit closer to the benign seed than to the violating one; scams the other way.
    assert (cands.loc[["real1", "real2"], "text_benign_margin"] < 0).all()
    assert (cands.loc[["scam1", "scam2"], "text_benign_margin"] > 0).all()
    assert cands.loc["real1", "text_benign_sim"] > cands.loc["scam1", "text_benign_sim"]
    margin = cands.text_best_sim - cands.text_benign_sim
    assert np.allclose(margin, cands.text_benign_margin, atol=1e-6)
    # The seed evidence itself is the same with or without the allowlist.
    plain = plain.to_pandas().set_index("item_id").loc[cands.index]
    assert np.allclose(plain.text_best_sim, cands.text_best_sim)


def test_benign_columns_are_ranker_features_with_a_direction():
    table = pa.table({"text_benign_sim": [0.1], "text_benign_margin": [0.2], "kind": ["x"]})
    assert evidence_feature_columns(table) == ["text_benign_sim", "text_benign_margin"]
    assert monotone_direction("text_benign_sim") == -1
    assert monotone_direction("text_benign_margin") == 1


def test_seed_text_and_kind_are_read_as_the_inventory_and_verdicts_are():
    """Binary seed text (UTF-8 bytes) failed deep in the encoder with a traceback, and a kind
    written 'Violating' or ' benign ' was refused (an outsider's fuzz)."""
    table = pa.table(
        {
            "seed_id": ["v", "b"],
            "policy": ["loans", "loans"],
            "text": pa.array([b"Instant loan, no credit check", b"Your bank's loan"], pa.binary()),
            "kind": ["Violating", " benign "],
        }
    )
    seeds = SeedSet.from_table(table)
    assert seeds.table.schema.field("text").type == pa.string()
    assert seeds.table["text"].to_pylist()[0] == "Instant loan, no credit check"
    assert seeds.table["kind"].to_pylist() == ["violating", "benign"]
    bad = table.set_column(2, "text", pa.array([b"\xff\xfe", b"ok"], pa.binary()))
    with pytest.raises(SchemaError, match=r"seed 'v': text is not valid UTF-8"):
        SeedSet.from_table(bad)
