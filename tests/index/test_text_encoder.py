"""TextEncoder backends: the int8 ONNX export against PyTorch fp32, and their manifests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_items
from hypothesis import given, settings
from hypothesis import strategies as hst

from riskrank.index import IndexMismatchError, InventoryIndex, build_index
from riskrank.index.signals import TextEmbeddingSignal, TextEncoder
from riskrank.index.signals import text as text_mod
from riskrank.index.signals.text_onnx import check_mean_pooled

TEXTS = [
    "Congratulations! You won an iPhone, pay a small shipping fee to claim it today",
    "Our team meeting is moved to Friday at 3 pm in the small conference room",
    "Cheap Rolex replica watches, 90% off, order now",
    "Recipe: roast the pumpkin with garlic and olive oil for 45 minutes " * 20,  # truncated
]


def test_a_text_that_is_not_a_string_is_named(torch_signal):
    for bad in (None, 3, float("nan")):
        with pytest.raises(TypeError, match=r"texts\[1\]: expected a string, got"):
            torch_signal.encoder.encode(["fine", bad])


def test_unknown_backend_and_gpu_int8_are_refused():
    with pytest.raises(ValueError, match="backend: expected one of"):
        TextEncoder(backend="tensorrt").encode(["x"])
    with pytest.raises(ValueError, match="runs on the CPU"):
        TextEncoder(backend="onnx-int8", device="cuda").encode(["x"])


def write_pipeline(root, pooling: dict) -> None:
    """A Transformer -> Pooling modules.json and the Pooling config (no weights)."""
    (root / "1_Pooling").mkdir()
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (root / "config.json").write_text(json.dumps({"model_type": "bert"}))


@pytest.mark.parametrize(
    "pooling",
    [
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False},
        {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
        {"embedding_dimension": 384, "pooling_mode": "cls", "include_prompt": True},  # 6.x
        {"embedding_dimension": 384, "pooling_mode": ["mean", "max"]},
    ],
)
def test_onnx_refuses_models_it_cannot_pool(tmp_path, pooling):
    write_pipeline(tmp_path, pooling)
    with pytest.raises(ValueError, match="mean pooling"):
        check_mean_pooled(tmp_path)


@pytest.mark.parametrize(
    "pooling",
    [
        {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True},  # before 6.x
        {"embedding_dimension": 384, "pooling_mode": "mean", "include_prompt": True},  # 6.x
        {"embedding_dimension": 384, "pooling_mode": ["mean"]},
    ],
)
def test_onnx_takes_mean_pooling_in_either_config_format(tmp_path, pooling):
    write_pipeline(tmp_path, pooling)
    check_mean_pooled(tmp_path)


def test_a_model_saved_by_this_sentence_transformers_is_taken(torch_signal, tmp_path):
    """A user's own (e.g. fine-tuned) model saved with today's sentence-transformers writes
    the 6.x Pooling config; it was refused as 'not mean pooling'."""
    torch_signal.encoder._load().save(str(tmp_path / "saved"))
    check_mean_pooled(tmp_path / "saved")


@pytest.fixture(scope="module")
def int8_encoder(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return TextEncoder(backend="onnx-int8", num_threads=2)


def test_int8_vectors_stay_close_to_fp32(int8_encoder, torch_signal, monkeypatch):
    fp32 = torch_signal.encoder.encode(TEXTS)
    int8 = int8_encoder.encode(TEXTS)
    assert int8.shape == fp32.shape and int8.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    cos = (int8 * fp32).sum(axis=1)
    assert cos.min() > 0.97, cos  # measured 0.98-0.99 on SpamAssassin mails
    # Same neighbours: each text is still closest to its own fp32 vector.
    assert ((int8 @ fp32.T).argmax(axis=1) == np.arange(len(TEXTS))).all()
    # Bucketing by length must not reorder the output.
    np.testing.assert_allclose(int8_encoder.encode(TEXTS[::-1])[::-1], int8, atol=1e-5)


def test_manifest_records_backend_and_refuses_a_mix(tmp_path, inventory_items, int8_encoder):
    fast = TextEmbeddingSignal(int8_encoder)
    spec = fast.describe()
    assert spec["backend"] == "onnx-int8" and spec["quantization"].startswith("int8")
    path = tmp_path / "idx"
    build_index(inventory_items.slice(0, 8), path, signals=[fast], show_progress=False)
    entry = json.loads((path / "manifest.json").read_text())["signals"]["text"]
    assert entry["backend"] == "onnx-int8"
    # Rebuilt from the manifest alone, the query side is int8 too.
    assert InventoryIndex.load(path).signals["text"].signal.encoder.backend == "onnx-int8"
    with pytest.raises(IndexMismatchError, match="backend"):
        InventoryIndex.load(path, signals={"text": TextEmbeddingSignal(backend="torch")})


def test_old_manifests_count_as_torch(torch_signal):
    recorded = {k: v for k, v in torch_signal.describe().items() if k != "backend"}
    recorded.pop("quantization")
    assert torch_signal.compatible_with(recorded) is None
    int8 = TextEmbeddingSignal(backend="onnx-int8")
    int8.describe = lambda: {**recorded, "backend": "onnx-int8"}  # no export needed here
    assert "backend" in int8.compatible_with(recorded)


def test_a_gpu_built_fp16_index_is_refused_to_cpu_queries(torch_signal):
    # PyTorch on CUDA runs the model in fp16; the manifest says so (no GPU needed to ask).
    assert TextEncoder(device="cuda:0").identity()["precision"] == "f16"
    # A CPU encoder records no precision: its content keys are what they were before.
    assert "precision" not in torch_signal.describe()
    recorded = {**torch_signal.describe(), "precision": "f16"}
    assert torch_signal.compatible_with(recorded).startswith("precision: index has 'f16'")


def test_backend_and_token_cap_are_cli_options():
    signal = TextEmbeddingSignal.from_cli({"text_backend": "onnx-int8", "text_max_seq_length": 192})
    assert (signal.encoder.backend, signal.encoder.max_seq_length) == ("onnx-int8", 192)
    default = TextEmbeddingSignal.from_cli({})
    auto = text_mod.resolve_backend(text_mod.DEFAULT_TEXT_MODEL)[0]
    assert (default.encoder.backend, default.encoder.max_seq_length) == (auto, 256)
    pinned = TextEmbeddingSignal.from_cli({"text_backend": "torch"})
    assert pinned.encoder.backend == "torch"


@pytest.fixture
def unpinned(monkeypatch):
    """No RISKRANK_TEXT_BACKEND and no CUDA: what ``backend="auto"`` does on a plain CPU."""
    monkeypatch.delenv(text_mod.BACKEND_ENV, raising=False)
    monkeypatch.setattr(text_mod, "_cuda_present", lambda: False)
    return monkeypatch


def test_auto_runs_openvino_on_a_cpu_with_the_fast_extra(unpinned):
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    enc = TextEncoder()
    assert (enc.backend, enc.backend_reason) == ("openvino", "a CPU with OpenVINO installed")
    spec = enc.describe()
    # The manifest holds what ran, never "auto": a saved index re-opens with the same backend.
    assert spec["backend"] == "openvino" and spec["precision"] in ("bf16", "f32")
    assert TextEmbeddingSignal.from_manifest(spec).encoder.backend == "openvino"


def test_auto_keeps_pytorch_where_openvino_cannot_run(unpinned, tmp_path):
    import importlib.util

    assert TextEncoder(device="cuda:0").backend == "torch"  # fp16 on the GPU
    unpinned.setattr(text_mod, "_cuda_present", lambda: True)
    assert TextEncoder().backend_reason == "a CUDA GPU (PyTorch fp16)"
    unpinned.setattr(text_mod, "_cuda_present", lambda: False)
    # A model OpenVINO cannot export: a hub name, or a model pooled otherwise than by the mean.
    assert TextEncoder("someone/elses-model").backend == "torch"
    write_pipeline(tmp_path, {"pooling_mode_mean_tokens": True})
    assert text_mod.resolve_backend(str(tmp_path))[0] == "openvino"
    # The export feeds token_type_ids, which DistilBERT's (MPNet's, RoBERTa's) tokenizer lacks.
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "distilbert"}))
    enc = TextEncoder(str(tmp_path))
    assert enc.backend == "torch" and "'distilbert'" in enc.backend_reason
    with pytest.raises(ValueError, match="use backend='torch'"):
        TextEncoder(str(tmp_path), backend="openvino").encode(["x"])
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    write_pipeline_cls = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(write_pipeline_cls))
    enc = TextEncoder(str(tmp_path))
    assert enc.backend == "torch" and "cannot export or pool" in enc.backend_reason
    # A cache the first run cannot write its export to (a read-only home).
    unpinned.setattr(text_mod.os, "access", lambda *a: False)
    enc = TextEncoder()
    assert enc.backend == "torch" and "not writable" in enc.backend_reason
    unpinned.undo()
    unpinned.delenv(text_mod.BACKEND_ENV, raising=False)
    unpinned.setattr(text_mod, "_cuda_present", lambda: False)
    # Without the [fast] extra.
    real = importlib.util.find_spec
    unpinned.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name)
    )
    enc = TextEncoder()
    assert enc.backend == "torch" and "riskrank[fast]" in enc.backend_reason


def test_an_openvino_encoder_in_use_pickles():
    """Ray ships an index's encoders to its workers: a compiled OpenVINO model does not pickle,
    so a copy compiles its own (a Ray sweep with the OpenVINO backend failed to serialise)."""
    import pickle

    pytest.importorskip("openvino")
    enc = TextEncoder(backend="openvino", num_threads=2)
    before = enc.encode(TEXTS)
    copy = pickle.loads(pickle.dumps(enc))
    assert copy.backend == "openvino" and copy.describe() == enc.describe()
    np.testing.assert_array_equal(copy.encode(TEXTS), before)


@pytest.mark.parametrize("backend", ["openvino", "onnx-int8", "torch"])
def test_one_encoder_serves_threads_at_once(backend):
    """An analyst's threads sweeping with one model object share its encoder: OpenVINO's one
    infer request raised "Infer Request is busy" in 15 of 30 calls from two threads (an
    outsider's run). Every call now gives what one thread alone gives."""
    from concurrent.futures import ThreadPoolExecutor

    if backend != "torch":
        pytest.importorskip("openvino" if backend == "openvino" else "onnxruntime")
    enc = TextEncoder(backend=backend, num_threads=1)
    texts = [f"{t} {i}" for i in range(8) for t in TEXTS]
    with ThreadPoolExecutor(3) as pool:  # the first calls race to load the model too
        got = list(pool.map(lambda _: enc.encode(texts), range(12)))
    alone = enc.encode(texts)
    for vectors in got:
        np.testing.assert_array_equal(vectors, alone)


def test_threads_follow_omp_num_threads(monkeypatch):
    """Ray sets OMP_NUM_THREADS to a worker's CPUs; OpenVINO took every CPU of the node."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    every = text_mod.default_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert text_mod.default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "999")
    assert text_mod.default_threads() == every
    monkeypatch.setenv("OMP_NUM_THREADS", "x")
    assert text_mod.default_threads() == every


def test_a_pinned_openvino_int8_gets_the_cli_s_calibration(monkeypatch):
    import argparse

    import riskrank.rank.app.encoder_calibration as cal
    from riskrank.rank.app.cli import _signals

    monkeypatch.setattr(cal, "history_calibration_texts", lambda: ["a text", "another text"])
    monkeypatch.setenv(text_mod.BACKEND_ENV, "openvino-int8")
    args = argparse.Namespace(signals="text", text_backend=None, text_calibration=None)
    (signal,) = _signals(args)
    assert signal.encoder.backend == "openvino-int8"
    assert signal.encoder.calibration == ["a text", "another text"]


def test_the_environment_pins_what_auto_means(unpinned):
    unpinned.setenv(text_mod.BACKEND_ENV, "torch")
    assert TextEncoder().backend == "torch"
    assert not TextEncoder().chosen_by_auto  # pinned: the user's choice, kept and refused
    unpinned.setenv(text_mod.BACKEND_ENV, "auto")  # written out, the default is the default
    assert TextEncoder().backend == text_mod.resolve_backend(text_mod.DEFAULT_TEXT_MODEL)[0]
    assert TextEncoder(backend="onnx-int8").backend == "onnx-int8"  # a backend named stays
    unpinned.setenv(text_mod.BACKEND_ENV, "tensorrt")
    with pytest.raises(ValueError, match="RISKRANK_TEXT_BACKEND: expected one of"):
        TextEncoder()


def test_int8_vectors_do_not_depend_on_batchmates(int8_encoder):
    # 40 texts of distinct lengths, reordered longest first inside encode().
    texts = [f"offer number {i}: " + "cheap pills " * (i % 13) for i in range(40)]
    together = int8_encoder.encode(texts)
    alone = np.vstack([int8_encoder.encode([t]) for t in texts[:8]])
    # One text per batch by default: bitwise the same vector whatever else is encoded.
    np.testing.assert_array_equal(together[:8], alone)
    assert ((together @ together.T).argmax(axis=1) == np.arange(40)).all()
    # Shared batches of 16: dynamic int8 scales activations per batch tensor, so a text's
    # vector moves a little with its batchmates (measured 0.984-0.994), rows stay in place.
    batched = TextEncoder(backend="onnx-int8", num_threads=2, batch_size=16).encode(texts)
    assert ((batched[:8] * alone).sum(axis=1) > 0.97).all()
    assert ((batched @ together.T).argmax(axis=1) == np.arange(40)).all()


def test_a_shorter_token_cap_is_refused_to_a_256_token_query(tmp_path, inventory_items):
    pytest.importorskip("onnxruntime")
    short = TextEmbeddingSignal(backend="onnx-int8", max_seq_length=192, num_threads=2)
    path = tmp_path / "idx192"
    build_index(inventory_items.slice(0, 8), path, signals=[short], show_progress=False)
    entry = json.loads((path / "manifest.json").read_text())["signals"]["text"]
    assert (entry["backend"], entry["max_seq_length"]) == ("onnx-int8", 192)
    # The manifest alone rebuilds the same query encoder: int8, 192 tokens.
    enc = InventoryIndex.load(path).signals["text"].signal.encoder
    assert (enc.backend, enc.max_seq_length) == ("onnx-int8", 192)
    int8_256 = TextEmbeddingSignal(backend="onnx-int8", num_threads=2)
    with pytest.raises(IndexMismatchError, match="max_seq_length"):
        InventoryIndex.load(path, signals={"text": int8_256})
    with pytest.raises(IndexMismatchError, match="backend"):
        InventoryIndex.load(path, signals={"text": TextEmbeddingSignal()})


def test_a_texts_vector_does_not_depend_on_its_batchmates(torch_signal):
    """Each text is padded to its own length (index/signals/text.py ``encode_padded``), so a
    standing index that embeds only new texts holds the vectors a full rebuild would."""
    enc = torch_signal.encoder
    texts = [
        "win",
        "Guaranteed loan approval, no credit check, apply today!",
        "thanks for the lovely photos from the trip",
        "you are an idiot and everyone knows it " * 6,
        "Meeting moved to 3pm; agenda attached. " * 20,
        "",
        "cheap pills",
    ]
    together = enc.encode(texts)
    alone = np.concatenate([enc.encode([t]) for t in texts])
    np.testing.assert_array_equal(together, alone)  # bitwise, not approximately
    rng = np.random.default_rng(0)
    for _ in range(3):
        order = rng.permutation(len(texts))[: rng.integers(2, len(texts))]
        np.testing.assert_array_equal(enc.encode([texts[i] for i in order]), together[order])
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_chunks_and_the_cuda_batch_layout_keep_a_texts_vector(torch_signal):
    """Texts are tokenised once per chunk, and on CUDA every text is padded one
    ``PAD_MULTIPLE`` further (the attention kernel then does not change with the batchmates).
    Run here on the CPU: chunking leaves every vector bitwise as it was, and the CUDA padding
    is batch-independent too and within float error of the plain one."""

    st = torch_signal.encoder._load()
    texts = [
        "win",
        "Guaranteed loan approval, no credit check, apply today!",
        "you are an idiot and everyone knows it " * 6,
        "",
        "cheap pills",
        "cheap pills!",
        "Meeting moved to 3pm; agenda attached. " * 20,
    ]
    plain = text_mod.encode_padded(st, texts, 4, False)
    np.testing.assert_array_equal(text_mod.encode_padded(st, texts, 4, False, chunk=2), plain)
    cuda = text_mod.encode_padded(st, texts, 4, False, extra_padding=True)
    alone = np.concatenate(
        [text_mod.encode_padded(st, [t], 4, False, extra_padding=True) for t in texts]
    )
    np.testing.assert_array_equal(cuda, alone)
    np.testing.assert_allclose(cuda, plain, atol=1e-5)
    assert cuda.shape == plain.shape == (len(texts), 384)


def test_the_fast_tokenizer_gives_preprocess_features_on_real_texts(torch_signal):
    """Every SpamAssassin mail and insult, cut before tokenising or not, gets exactly the
    token ids, types and mask that sentence-transformers' ``preprocess`` gives; so do texts
    whose cut falls short of ``max_seq_length`` (tokenised again whole)."""
    from riskrank.index.signals.text_tokens import FastTokenizer, same_features
    from riskrank.rank.app import datasets

    st = torch_signal.encoder._load()
    fast = FastTokenizer.for_model(st)
    assert fast is not None and fast.cut  # MiniLM: a BERT pre-tokenizer, cut at whitespace
    uncut = FastTokenizer.for_model(st, cut=False)
    short = ["hi " + "x" * 3000, "a " * 1100 + "b" * 900, "word " * 500, " " * 3000 + "end"]
    for name in ("spamassassin", "insults"):
        texts = datasets.load(name).column("text").to_pylist() + short
        want = st.preprocess(texts)
        assert same_features(fast(texts), want), name
        assert same_features(uncut(texts), want), name
    assert max(len(t) for t in texts) > fast.max_chars  # some texts were cut


# Pieces of awkward text: combining marks, CJK, emoji with modifiers, zero-width and exotic
# blanks, controls, a BOM, bidi overrides, ligatures, long words.
PIECES = (
    "a", "Z", "é", "e\u0301", "ß", "İ", "中", "テ", "한", "🎉", "👍🏽", "\u200b", "\u00a0",
    "\u3000", "\u2028", "\x85", " ", "  ", "\n", "\t", "\r\n", "\x00", "\x07", "\ufeff",
    "-", ".", "!", "'", "$", "http://x.y/z?q=1", "word", "WORD", "lo" * 60, "\u0300", "ﬁ", "Ⅻ",
    "①", "\U0001d400", "ǅ", "ﾊﾟ", "\u0e01\u0e34", "ا", "\u202e", "\u00ad",
)  # fmt: skip


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    hst.lists(
        hst.lists(hst.sampled_from(PIECES), max_size=1500).map("".join), min_size=1, max_size=16
    )
)
def test_the_fast_tokenizer_is_exact_on_awkward_text(torch_signal, texts):
    """Generated texts up to ~6,000 characters (so many are cut before tokenising) get the
    same features from the Rust tokenizer, cut or not, as from ``preprocess``."""
    from riskrank.index.signals.text_tokens import FastTokenizer, same_features

    st = torch_signal.encoder._load()
    want = st.preprocess(texts)
    assert same_features(FastTokenizer.for_model(st)(texts), want)
    assert same_features(FastTokenizer.for_model(st, cut=False)(texts), want)


def test_the_fast_tokenizer_stands_aside_where_it_is_not_exact(torch_signal, monkeypatch):
    """A model whose ``preprocess`` gives other features than the Rust tokenizer (here: a
    lower-casing module, and ids shifted by one) is tokenised by ``preprocess``; the vectors
    of either tokenizer, in any chunks, are bitwise the same."""
    from riskrank.index.signals.text_tokens import FastTokenizer

    st = torch_signal.encoder._load()
    real = st.preprocess

    def shifted(texts, **kw):
        out = real(texts, **kw)
        return {**out, "input_ids": out["input_ids"] + 1}

    monkeypatch.setattr(st, "preprocess", shifted)
    assert FastTokenizer.for_model(st) is None
    monkeypatch.setattr(st, "preprocess", real)
    monkeypatch.setattr(st[0], "do_lower_case", True, raising=False)
    assert FastTokenizer.for_model(st) is None
    monkeypatch.undo()
    assert isinstance(text_mod.text_tokenizer(st), FastTokenizer)
    # A model whose maximum changes after its first use gets a tokenizer for the new maximum.
    monkeypatch.setattr(st, "max_seq_length", 16)
    assert text_mod.text_tokenizer(st)(["word " * 40])["input_ids"].shape == (1, 16)
    monkeypatch.undo()
    assert text_mod.text_tokenizer(st).max_length == st.max_seq_length
    texts = TEXTS + ["", "win a free iPhone " * 200, "🎉 prize"]
    slow = text_mod.encode_padded(st, texts, 2, False, fast_tokenizer=False)
    fast = text_mod.encode_padded(st, texts, 2, False, chunk=3)
    np.testing.assert_array_equal(fast, slow)


def test_openvino_without_openvino_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(ImportError, match=r"riskrank\[fast\]"):
        TextEncoder(backend="openvino").encode(["x"])
    with pytest.raises(ValueError, match="runs on the CPU"):
        TextEncoder(backend="openvino", device="cuda").encode(["x"])


def test_int8_weights_without_nncf_names_the_extra(monkeypatch, tmp_path):
    pytest.importorskip("openvino")
    import sys

    from riskrank.index.signals.text import resolve_text_model
    from riskrank.index.signals.text_onnx import onnx_cache_root
    from riskrank.index.signals.text_openvino import int8_weights_ir_path, openvino_ir_path

    model_dir = resolve_text_model("all-MiniLM-L6-v2")[0]
    f32 = openvino_ir_path(model_dir).parent  # the shared f32 IR, made once
    # A fresh cache that holds the f32 IR but no int8 one: only NNCF could make that.
    monkeypatch.setenv("RISKRANK_CACHE", str(tmp_path))
    onnx_cache_root().mkdir(parents=True)
    (onnx_cache_root() / f32.name).symlink_to(f32)
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ImportError, match=r"NNCF.*riskrank\[fast\]"):
        int8_weights_ir_path(model_dir)


# Calibration texts for the full int8 backend: generated, and none of them among the texts
# the tests compare vectors on (as the library's default keeps to the history sides).
# Measured 0.925 with these 60 short generated calibration texts (the repeated and truncated
# test texts below lie outside their ranges); 0.9925 on 256 real mails with the 300-text
# history corpus (benchmarks/results/encoder_openvino_int8.md). A broken quantisation is far off.
MIN_INT8 = 0.9
CALIBRATION = make_items(20, 40, prefix="cal", seed=11).column("text").to_pylist()


@pytest.fixture(scope="module", params=["openvino", "openvino-int8w", "openvino-int8"])
def openvino_encoder(request):
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")  # the IR is converted from the library's fp32 ONNX export
    if request.param != "openvino":
        pytest.importorskip("nncf")
    if request.param == "openvino-int8":
        return TextEncoder(backend=request.param, num_threads=2, calibration=CALIBRATION)
    return TextEncoder(backend=request.param, num_threads=2)


def test_openvino_vectors_match_fp32_and_do_not_depend_on_batchmates(
    openvino_encoder, torch_signal
):
    enc = openvino_encoder
    texts = [f"offer number {i}: " + "cheap pills " * (i % 13) for i in range(40)] + TEXTS
    together = enc.encode(texts)
    assert together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    cos = (together * torch_signal.encoder.encode(texts)).sum(axis=1)
    # Measured min on these texts: bf16 0.99997, int8 weights 0.9974, full int8 see MIN_INT8.
    floor = {"openvino": 0.9995, "openvino-int8w": 0.995, "openvino-int8": MIN_INT8}
    assert cos.min() > floor[enc.backend], cos
    # Padded to its own length like the torch path: bitwise the same vector whatever else
    # shares its batch, alone, in another order or in batches of another size. For full int8
    # too: its activation scales were fixed at calibration, not taken from the batch.
    alone = np.vstack([enc.encode([t]) for t in texts[::9]])
    np.testing.assert_array_equal(together[::9], alone)
    np.testing.assert_array_equal(enc.encode(texts[::-1])[::-1], together)
    batch64 = TextEncoder(
        backend=enc.backend, num_threads=2, batch_size=64, calibration=enc.calibration
    ).encode(texts)
    np.testing.assert_array_equal(batch64, together)


def test_openvino_manifest_records_precision_and_refuses_a_mix(
    tmp_path, inventory_items, openvino_encoder
):
    signal = TextEmbeddingSignal(openvino_encoder)
    path = tmp_path / "idx"
    build_index(inventory_items.slice(0, 8), path, signals=[signal], show_progress=False)
    entry = json.loads((path / "manifest.json").read_text())["signals"]["text"]
    backend = openvino_encoder.backend
    # The precision read back from the compiled model: bf16 needs the CPU's support.
    assert entry["backend"] == backend and entry["precision"] in ("bf16", "f32")
    assert entry["max_seq_length"] == 256 and entry["library"].startswith("openvino==")
    assert (
        entry["quantization"]
        == {
            "openvino": "none",
            "openvino-int8w": "nncf-int8-asym-weights-v1",
            "openvino-int8": "nncf-int8-static-mixed-v1",
        }[backend]
    )
    # Loaded from the manifest alone: for full int8 the recorded calibration digest finds the
    # cached quantised model, and the vectors are those of the encoder that built the index.
    loaded = InventoryIndex.load(path).signals["text"].signal
    assert loaded.encoder.backend == backend
    np.testing.assert_array_equal(loaded.encoder.encode(TEXTS), openvino_encoder.encode(TEXTS))
    with pytest.raises(IndexMismatchError, match="backend"):
        InventoryIndex.load(path, signals={"text": TextEmbeddingSignal(backend="torch")})
    # The same backend compiled at the other precision (another CPU) is refused too.
    other = "f32" if entry["precision"] == "bf16" else "bf16"
    assert "precision" in signal.compatible_with({**entry, "precision": other})
    assert signal.compatible_with(entry) is None


def test_cli_builds_an_openvino_index(tmp_path, inventory_items):
    pytest.importorskip("openvino")
    import pyarrow.parquet as pq

    from riskrank.rank.app.cli import main

    pq.write_table(inventory_items.slice(0, 6), tmp_path / "inv.parquet")
    out = tmp_path / "idx"
    args = ["index", "build", str(tmp_path / "inv.parquet"), "--out", str(out)]
    assert main([*args, "--text-backend", "openvino"]) == 0
    entry = json.loads((out / "manifest.json").read_text())["signals"]["text"]
    assert entry["backend"] == "openvino"


def test_int8_manifest_records_calibration_and_refuses_another(tmp_path, inventory_items):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    enc = TextEncoder(backend="openvino-int8", num_threads=2, calibration=CALIBRATION)
    signal = TextEmbeddingSignal(enc)
    path = tmp_path / "idx"
    build_index(inventory_items.slice(0, 8), path, signals=[signal], show_progress=False)
    entry = json.loads((path / "manifest.json").read_text())["signals"]["text"]
    assert entry["calibration"] == {
        "name": "texts",
        "digest": enc.calibration.digest,
        "size": len(CALIBRATION),
    }
    # The operations around the int8 MatMuls run f32 on every CPU: bf16 there moved short
    # comments to cosine 0.80 on an AMX Xeon (text_openvino.INT8_FLOAT_PRECISION).
    assert entry["nncf"] == "3.4.0" and entry["precision"] == "f32"
    # An index made while they ran bf16 holds other vectors: refused, naming the precision.
    assert "precision" in signal.compatible_with({**entry, "precision": "bf16"})
    # Other calibration texts make other vectors: refused, naming the calibration.
    other = TextEncoder(backend="openvino-int8", num_threads=2, calibration=CALIBRATION[:-1])
    with pytest.raises(IndexMismatchError, match="calibration"):
        InventoryIndex.load(path, signals={"text": TextEmbeddingSignal(other)})
    # The same texts under another name are the same encoder.
    renamed = {**entry, "calibration": {**entry["calibration"], "name": "mine"}}
    assert signal.compatible_with(renamed) is None
    # Nor do a full-int8 index and a bf16 query encoder mix.
    with pytest.raises(IndexMismatchError, match="backend"):
        InventoryIndex.load(path, signals={"text": TextEmbeddingSignal(backend="openvino")})


def test_int8_needs_calibration_and_says_what_is_missing(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    with pytest.raises(ValueError, match="needs calibration texts"):
        TextEncoder(backend="openvino-int8").encode(["x"])
    with pytest.raises(ValueError, match="only backend='openvino-int8'"):
        TextEncoder(backend="openvino", calibration=["a text"]).encode(["x"])
    with pytest.raises(ValueError, match="no non-blank texts"):
        TextEncoder(backend="openvino-int8", calibration=["", "  "]).encode(["x"])
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"body": ["a"]}), tmp_path / "cal.parquet")
    with pytest.raises(ValueError, match=r"cal.parquet has no 'text' column"):
        TextEncoder(backend="openvino-int8", calibration=tmp_path / "cal.parquet").encode(["x"])
    (tmp_path / "cal.csv").write_text("text\na comment\n")  # a CSV named as the calibration
    with pytest.raises(ValueError, match=r"cal.csv is not a readable Parquet file"):
        TextEncoder(backend="openvino-int8", calibration=tmp_path / "cal.csv").encode(["x"])
    # A manifest's calibration identity finds a cached model but cannot make a missing one.
    monkeypatch.setenv("RISKRANK_CACHE", str(tmp_path / "empty"))
    recorded = {"name": "history-v1", "digest": "0123456789abcdef", "size": 300}
    with pytest.raises(FileNotFoundError, match="same calibration texts"):
        TextEncoder(backend="openvino-int8", calibration=recorded).encode(["x"])


def test_calibration_digest_covers_the_texts_in_order():
    from riskrank.index.signals.text_openvino import CalibrationTexts

    a = CalibrationTexts.of(["one text", "another", " "])
    assert a.texts == ("one text", "another") and a.identity()["size"] == 2
    assert a.digest == CalibrationTexts("x", ("one text", "another")).digest
    assert a.digest != CalibrationTexts.of(["another", "one text"]).digest
    # Length-prefixed: moving a character across a boundary changes the digest.
    assert a.digest != CalibrationTexts.of(["one tex", "tanother"]).digest


def test_cli_builds_a_full_int8_index(tmp_path, inventory_items):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from riskrank.rank.app.cli import main

    pq.write_table(inventory_items.slice(0, 6), tmp_path / "inv.parquet")
    pq.write_table(pa.table({"text": CALIBRATION}), tmp_path / "cal.parquet")
    out = tmp_path / "idx"
    args = ["index", "build", str(tmp_path / "inv.parquet"), "--out", str(out)]
    cal = ["--text-calibration", str(tmp_path / "cal.parquet")]
    assert main([*args, "--text-backend", "openvino-int8", *cal]) == 0
    entry = json.loads((out / "manifest.json").read_text())["signals"]["text"]
    assert entry["backend"] == "openvino-int8" and entry["calibration"]["name"] == "cal.parquet"
    assert entry["calibration"]["size"] == len(CALIBRATION)


def test_the_onnx_tokenizer_copy_is_exact_cached_and_needs_no_transformers(tmp_path, monkeypatch):
    """The ONNX/OpenVINO backends' ``SentenceTokenizer`` gives transformers' wrapper's ids on
    every SpamAssassin mail and insult (padded and unpadded), saves its checked copy, and a
    later process tokenises from that copy without importing transformers or torch."""
    import subprocess
    import sys

    from riskrank.index.signals.text import resolve_text_model
    from riskrank.index.signals.text_onnx import SentenceTokenizer, tokenizer_cache_path
    from riskrank.rank.app import datasets

    monkeypatch.setenv("RISKRANK_CACHE", str(tmp_path))
    path, _ = resolve_text_model("all-MiniLM-L6-v2")
    wrapper = SentenceTokenizer(path, max_seq_length=256, fast=False)
    fast = SentenceTokenizer(path, max_seq_length=256)
    assert fast.is_fast and not wrapper.is_fast
    assert tokenizer_cache_path(path, 256).is_file()
    texts = [
        t for name in ("spamassassin", "insults") for t in datasets.load(name)["text"].to_pylist()
    ]
    assert fast.unpadded(texts) == wrapper.unpadded(texts)
    for start in range(0, len(texts), 997):  # padded batches, as the ONNX backend feeds them
        got, want = fast(texts[start : start + 997]), wrapper(texts[start : start + 997])
        assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in got)
    assert fast.pad_id == wrapper.pad_id
    probe = (
        "import sys\n"
        "from riskrank.index.signals.text_onnx import SentenceTokenizer\n"
        f"tok = SentenceTokenizer({str(path)!r}, max_seq_length=256)\n"
        "ids, _ = tok.unpadded(['win a free iPhone'])\n"
        "print(tok.is_fast, 'transformers' in sys.modules, 'torch' in sys.modules, ids[0][:3])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True,
        env={**__import__("os").environ, "RISKRANK_CACHE": str(tmp_path)},
    )  # fmt: skip
    assert out.stdout.split()[:3] == ["True", "False", "False"], out.stdout + out.stderr
    # A damaged copy is checked and written again, not trusted or fatal.
    tokenizer_cache_path(path, 256).write_text('{"tokenizer": "not json')
    again = SentenceTokenizer(path, max_seq_length=256)
    assert again.is_fast and again.unpadded(texts[:50]) == wrapper.unpadded(texts[:50])
    assert json.loads(tokenizer_cache_path(path, 256).read_text())["pad_id"] == wrapper.pad_id


def test_an_onnx_tokenizer_copy_that_disagrees_is_not_used(tmp_path, monkeypatch):
    from tokenizers import Tokenizer

    from riskrank.index.signals.text import resolve_text_model
    from riskrank.index.signals.text_onnx import SentenceTokenizer, tokenizer_cache_path

    monkeypatch.setenv("RISKRANK_CACHE", str(tmp_path))
    path, _ = resolve_text_model("all-MiniLM-L6-v2")
    real = Tokenizer.from_str

    def drifted(text):  # the copy gains a token the wrapper does not have
        tok = real(text)
        tok.add_tokens(["longwordwithoutspaces"])  # a PROBES word the vocabulary splits
        return tok

    monkeypatch.setattr(Tokenizer, "from_str", staticmethod(drifted))
    tok = SentenceTokenizer(path, max_seq_length=256)
    assert not tok.is_fast and not tokenizer_cache_path(path, 256).exists()
    monkeypatch.undo()
    assert tok.unpadded(["win a free iPhone"])[0] == [[101, 2663, 1037, 2489, 18059, 102]]


def test_a_long_text_is_tokenised_only_as_far_as_the_model_reads(text_signal, monkeypatch):
    """Outsider CD: thirty 1 MB texts peaked at 2.7 GB (each tokenised whole to keep 256
    tokens). A text past ENCODE_CHARS is cut at a whitespace where the part kept fills the
    model's window: the same tokens, the same vector."""
    import numpy as np

    import riskrank.index.signals.text as text_module

    monkeypatch.setattr(text_module, "ENCODE_CHARS", 2_000)  # (the rule, on small texts)
    encoder = text_signal.encoder
    words = "claim your free prize today guaranteed loan approval no credit check".split()
    long = " ".join(words[i % len(words)] for i in range(3_000))  # ~20,000 characters
    spaced = " " * 2_500 + "claim your free prize today"  # its first tokens lie past the cut
    # Python's whitespace that the tokenizer deletes, where the cut would land (reviewer CE)
    at = long.rindex(" ", 0, 2_001)  # (the cut may land on position 2,000 itself)
    joined = long[:at] + "\x1c" + long[at + 1 :]
    cut = encoder.read_in_part([long, spaced, "short", joined])
    assert len(cut[0]) <= 2_000 and long.startswith(cut[0]) and cut[1:3] == [spaced, "short"]
    assert len(cut[3]) < at and joined.startswith(cut[3])
    with monkeypatch.context() as m:
        m.setattr(text_module, "ENCODE_CHARS", 10**9)  # read whole, as before
        whole = encoder.encode([long, spaced, joined])
    np.testing.assert_array_equal(encoder.encode([long, spaced, joined]), whole)
