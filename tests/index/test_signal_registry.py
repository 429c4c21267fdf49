"""The signal contract: one registry, comparisons, index kinds, CLI options."""

from __future__ import annotations

import numpy as np
import pytest

from riskrank.index.signals import (
    CandidateMatch,
    IndexKind,
    PdqSignal,
    registered_signals,
    signal_class,
    signal_from_manifest,
)
from riskrank.index.tables import SchemaError
from riskrank.index.vectors.hamming import BinaryHashIndex
from riskrank.recall.recaller import checked_signal_evidence


def _flip(packed: np.ndarray, bits: int) -> np.ndarray:
    unpacked = np.unpackbits(packed)
    unpacked[:bits] ^= 1
    return np.packbits(unpacked)


def test_built_ins_are_in_the_one_registry_by_type_and_by_name():
    registry = registered_signals()
    assert list(registry)[:5] == [
        "text_embedding",
        "clip_image",
        "clip_text",
        "pdq",
        "nsfw_open_nsfw",
    ]
    assert signal_class("pdq") is PdqSignal and signal_class("image") is registry["clip_image"]
    with pytest.raises(ValueError, match="unknown signal 'nope'; registered: text, image"):
        signal_class("nope")
    with pytest.raises(SchemaError, match="'md5'.*not registered"):
        signal_from_manifest({"type": "md5"})


def test_pdq_compares_in_bits_against_its_thresholds():
    sig = PdqSignal()
    h = np.random.default_rng(0).integers(0, 256, 32, dtype=np.uint8)
    same, near, far, other = (sig.compare(h, _flip(h, b)) for b in (0, 20, 40, 120))
    assert (same.distance, same.match, same.strong_match) == (0, True, True)
    assert (near.distance, near.match, near.strong_match) == (20, True, True)  # <= 31 bits
    assert (far.distance, far.match, far.strong_match) == (40, True, False)  # <= 62 bits
    assert (other.distance, other.match) == (120, False)
    assert sig.metric == "hamming" and sig.index_kind is IndexKind.BINARY_HASHES
    assert isinstance(sig.build_index(np.stack([h, _flip(h, 3)]), key="IVF4,Flat"), BinaryHashIndex)


def test_cli_values_configure_a_signal_and_absent_ones_keep_defaults():
    sig = PdqSignal.from_cli({"pdq_match_threshold": 20, "image_base_dir": "imgs/"})
    assert (sig.match_threshold, sig.base_dir) == (20, "imgs/")
    assert PdqSignal.from_cli({}).match_threshold == 31


def test_evidence_a_signal_does_not_declare_is_refused_naming_the_signal():
    class Careless(PdqSignal):
        def candidate_evidence(self, match):
            return {"best_distance": np.zeros(len(match.items)), "surprise": np.zeros(2)}

    h = np.zeros((2, 32), np.uint8)
    match = CandidateMatch(h[:1], h, np.ones((1, 2), np.float32), {"pdq_quality": np.ones(2)})
    assert set(checked_signal_evidence(PdqSignal(), match)) == {"best_distance", "quality"}
    with pytest.raises(ValueError, match="signal 'pdq' \\(Careless\\).*surprise"):
        checked_signal_evidence(Careless(), match)


def test_a_signal_whose_extra_is_missing_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, capsys, inventory_items
):
    # `--signals text,nsfw` without the nsfw extra ended in a ModuleNotFoundError traceback
    # from describe() and left an empty index folder (an outsider's report).
    import pyarrow.parquet as pq

    from riskrank.index.signals import nsfw
    from riskrank.rank.app.cli import main

    monkeypatch.setattr(nsfw, "find_spec", lambda name: None)  # as where it is not installed
    pq.write_table(inventory_items.slice(0, 4), tmp_path / "inv.parquet")
    out = tmp_path / "idx"
    args = ["index", "build", str(tmp_path / "inv.parquet"), "--out", str(out)]
    assert main([*args, "--signals", "text,nsfw"]) == 2
    err = capsys.readouterr().err
    assert "riskrank: error: the nsfw signal needs the 'nsfw' extra" in err
    assert "pip install 'riskrank[nsfw]'" in err and "Traceback" not in err
    assert not out.exists()
    # The library says the same where it first needs the model, and before a build or a
    # standing index's first update makes its folder.
    with pytest.raises(ImportError, match=r"riskrank\[nsfw\]"):
        nsfw.NsfwSignal().describe()
    from riskrank.index.build import build_index
    from riskrank.index.signals import TextEmbeddingSignal
    from riskrank.index.standing import StandingIndex

    signals = [TextEmbeddingSignal(), nsfw.NsfwSignal()]
    with pytest.raises(ImportError, match=r"riskrank\[nsfw\]"):
        build_index(inventory_items.slice(0, 4), out, signals=signals, show_progress=False)
    with pytest.raises(ImportError, match=r"riskrank\[nsfw\]"):
        StandingIndex(tmp_path / "standing").update(
            inventory_items.slice(0, 4), signals, show_progress=False
        )
    assert not out.exists() and not (tmp_path / "standing").exists()


def test_an_embedding_pool_that_died_of_an_unregistered_plug_in_says_so_in_one_line():
    """The Ray engine's pool failure, as the driver raises it: a plug-in the workers lack is a
    SchemaError (one CLI line, exit 2) naming the type; any other failure stays a RuntimeError
    (tests/rank/test_ray_engine.py runs the real case on a cluster)."""
    from riskrank.index.ray_engine.embed import _embedding_failed
    from riskrank.index.tables import SchemaError

    specs = [{"type": "text_embedding"}, {"type": "my_plugin"}]
    died = (
        "ActorDiedError: The actor died because of an error raised in its creation task ... "
        "SchemaError: manifest names signal type 'my_plugin', which is not registered; known: "
        "[...] (register the plug-in before loading)"
    )
    err = _embedding_failed(died, [{"type": "text_embedding"}, {"type": "ours"}])
    # The type the workers named, not ours beyond the built-ins.
    assert isinstance(err, SchemaError) and "signal type(s) ['my_plugin']" in str(err)
    assert "worker_process_setup_hook" in str(err)
    quoted = died.replace("'my_plugin'", '"it\'s"')  # a repr in double quotes
    assert 'signal type(s) ["it\'s"]' in str(_embedding_failed(quoted, []))
    other = _embedding_failed("OutOfMemoryError: ...", specs)
    assert type(other) is RuntimeError and str(other) == "embedding failed: OutOfMemoryError: ..."
