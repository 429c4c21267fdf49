"""The README's column tables are the code's: generated from the schemas and the registry."""

from __future__ import annotations

from pathlib import Path

from riskrank.index.signals import (
    CandidateMatch,
    EvidenceColumn,
    register_signal,
    unregister_signal,
)
from riskrank.index.signals.text import TextEmbeddingSignal
from riskrank.rank.app.doc_tables import render, tables

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_tables_match_the_code():
    text = README.read_text()
    assert render(text) == text, (
        "README column tables drifted from the code: "
        "run python -m riskrank.rank.app.doc_tables --write README.md"
    )


def test_every_evidence_column_recall_can_emit_is_documented():
    evidence = tables()["evidence"]
    for suffix in ("pseudo_probe", "best_distance", "quality", "best_seed_id"):
        assert f"`<signal>_{suffix}`" in evidence
    assert "`hist_<signal>_probe_score`" in evidence


def test_a_registered_signal_changes_the_generated_tables():
    class Spread(TextEmbeddingSignal):
        type_name = "test_spread"
        name = "spread"
        evidence_columns = (
            EvidenceColumn("seed_spread", "spread of its similarity over the seeds"),
        )

        def candidate_evidence(self, match: CandidateMatch) -> dict:
            return {"seed_spread": match.similarity.std(0)}

    before = README.read_text()
    register_signal(Spread)
    try:
        assert (
            "`<signal>_seed_spread` | float32 | spread | either | spread of its similarity"
            in (tables()["evidence"])
        )
        assert render(before) != before  # the check above would now fail the README
    finally:
        unregister_signal(Spread.type_name)
