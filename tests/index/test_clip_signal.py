"""CLIP signals with a tiny random-weight model: shapes, text-to-image queries, manifests, store.

Random weights: these tests check plumbing (shapes, norms, masks, manifests, persistence),
never embedding quality.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

import riskrank.index
from riskrank.index import IndexMismatchError, InventoryIndex, TextEmbeddingSignal, build_index
from riskrank.index.signals.clip import (
    TINY_CLIP_MODEL,
    ClipEncoder,
    ClipImageSignal,
    ClipTextSignal,
    tiny_clip_encoder,
)
from riskrank.index.signals.pdq import PdqSignal


def picture(seed: int, size: int = 96) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y, w, h = (int(v) for v in rng.integers(0, size, 4))
        draw.rectangle((x, y, x + w, y + h), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    return tiny_clip_encoder(batch_size=4)


def test_encoder_outputs_unit_float32_and_warns_about_random_weights():
    enc = tiny_clip_encoder(batch_size=3)
    images = [Image.open(io.BytesIO(picture(s))).convert("RGB") for s in range(5)]
    # Our own handler: pytest's log capture is off (see pyproject.toml).
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    log = logging.getLogger("riskrank.index.signals.clip")
    log.addHandler(handler)
    try:
        img = enc.encode_images(images)
    finally:
        log.removeHandler(handler)
    assert any("RANDOM weights" in m for m in seen)
    txt = enc.encode_texts(["fake designer handbag", "cheap pills", "hello"])
    for out, n in ((img, 5), (txt, 3)):
        assert out.shape == (n, 32) and out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(img[0], img[1])  # different pictures, different vectors
    assert enc.encode_texts([]).shape == (0, 32)


def test_reduced_precision_path_runs_and_agrees(encoder):
    # bf16 is the GPU option; on a CPU it is slow but must give the same unit vectors, roughly.
    low = tiny_clip_encoder(precision="bf16")
    texts = ["fake designer handbag", "cheap pills"]
    cos = np.sum(low.encode_texts(texts) * encoder.encode_texts(texts), axis=1)
    assert low.encode_texts(texts).dtype == np.float32 and np.all(cos > 0.98)
    with pytest.raises(ValueError, match="precision"):
        ClipEncoder(TINY_CLIP_MODEL, pretrained=None, precision="fp8")


def test_text_seed_is_embedded_through_the_text_tower(encoder):
    sig = ClipImageSignal(encoder)
    seeds = pa.table(
        {
            "item_id": ["img", "txt", "both", "nothing", "bad-img-with-text"],
            "text": [None, "fake designer handbag", "ignored", None, "replica watch"],
            "image_bytes": pa.array([picture(1), None, picture(2), None, b"broken"], pa.binary()),
        }
    )
    batch = sig.embed_queries(seeds)
    assert batch.vectors.shape == (5, 32)
    assert batch.ok.tolist() == [True, True, True, False, True]
    assert batch.reasons[3] == "no image; no text"
    np.testing.assert_allclose(
        batch.vectors[[1, 4]],
        encoder.encode_texts(["fake designer handbag", "replica watch"]),
        atol=1e-6,
    )
    image_only = sig.embed_items(seeds.select(["item_id", "image_bytes"]).slice(2, 1))
    np.testing.assert_allclose(batch.vectors[2], image_only.vectors[0], atol=1e-6)
    # Items are never embedded from text by the image signal.
    assert sig.embed_items(seeds).ok.tolist() == [True, False, True, False, False]


def test_a_vector_does_not_depend_on_how_many_share_its_batch():
    """Every forward pass has ``batch_size`` rows (a short batch is made up with copies):
    a CPU's kernels gave a picture other last bits in a batch of 1-3 or 33 than in one of
    32, so a standing index's few new pictures differed from a rebuild's."""
    enc = tiny_clip_encoder(batch_size=8)
    images = [Image.open(io.BytesIO(picture(s))).convert("RGB") for s in range(19)]
    texts = [f"offer number {i}" for i in range(19)]
    every, every_text = enc.encode_images(images), enc.encode_texts(texts)
    for n in (1, 2, 3, 9, 17):
        assert np.array_equal(enc.encode_images(images[:n]), every[:n]), n
        assert np.array_equal(enc.encode_texts(texts[-n:]), every_text[-n:]), n


def test_images_prepared_in_the_decode_threads_give_the_plain_vectors(encoder):
    # 150 rows = three chunks of 64 (batch 4 x 4, at least 64): preparing images in the decode
    # threads must change nothing, including which rows are bad and why, and must not mix up
    # rows across chunks.
    n = 150
    datas = [picture(i) for i in range(n)]
    datas[5], datas[70], datas[149] = b"broken", None, b"\xff\xd8 truncated"
    table = pa.table({"item_id": [f"i{i}" for i in range(n)], "image_bytes": pa.array(datas)})
    sig = ClipImageSignal(encoder, decode_workers=2)
    got = sig.embed_items(table)
    good = [i for i, d in enumerate(datas) if d is not None and len(d) > 20]
    # What the signal did before images were prepared in the threads: per chunk of 64 rows,
    # encode_images on its decoded pictures.
    want = np.concatenate(
        [
            encoder.encode_images(
                [Image.open(io.BytesIO(datas[i])).convert("RGB") for i in good if lo <= i < lo + 64]
            )
            for lo in range(0, n, 64)
        ]
    )
    assert got.ok.tolist() == [i in set(good) for i in range(n)]
    assert np.array_equal(got.vectors[good], want)
    assert not got.vectors[[5, 70, 149]].any()
    assert got.reasons[70] == "no image"
    assert "not a recognised image format" in got.reasons[5]
    assert got.reasons[149] and all(got.reasons[i] is None for i in good)


def test_a_transform_that_fails_quarantines_its_row():
    from riskrank.index.signals.images import decode_images

    def transform(image):
        if image.size[0] == 32:
            raise RuntimeError("too small for this model")
        return image.size

    table = pa.table({"image_bytes": pa.array([picture(1, 32), picture(2, 40), None])})
    out, why = decode_images(table, workers=2, transform=transform)
    assert out == [None, (40, 40), None]
    assert why[0] == "cannot prepare image for the model: RuntimeError: too small for this model"
    assert why[1:] == [None, None]


def test_clip_text_signal_embeds_captions_and_image_seeds(encoder):
    sig = ClipTextSignal(encoder)
    items = pa.table({"item_id": ["a", "b"], "text": ["red shoes", " "]})
    batch = sig.embed_items(items)
    assert batch.ok.tolist() == [True, False] and batch.reasons[1] == "no text"
    seeds = pa.table({"item_id": ["s"], "image_bytes": pa.array([picture(3)], pa.binary())})
    assert sig.embed_queries(seeds).ok.tolist() == [True]


def test_describe_and_rebuild_give_the_same_random_model(encoder):
    entry = ClipImageSignal(encoder).describe()
    assert entry["type"] == "clip_image" and entry["model"] == TINY_CLIP_MODEL
    assert entry["pretrained"] is None and entry["model_version"] == "random-init:seed=0"
    assert entry["dim"] == 32
    rebuilt = ClipImageSignal.from_manifest(entry)
    assert rebuilt.compatible_with(entry) is None
    probe = ["counterfeit sneakers"]
    np.testing.assert_allclose(
        rebuilt.encoder.encode_texts(probe), encoder.encode_texts(probe), atol=1e-6
    )


def test_checkpoint_path_is_pinned_by_sha256(encoder, tmp_path):
    import torch

    encoder.encode_texts(["load"])
    ckpt = tmp_path / "tiny.pt"
    torch.save(encoder._net.state_dict(), ckpt)
    from_file = ClipEncoder(TINY_CLIP_MODEL, pretrained=ckpt)
    info = from_file.describe()
    assert info["pretrained"] == str(ckpt) and len(info["pretrained_sha256"]) == 16
    assert info["model_version"] == f"sha256:{info['pretrained_sha256']}"
    np.testing.assert_allclose(
        from_file.encode_texts(["x"]), encoder.encode_texts(["x"]), atol=1e-6
    )
    moved = tmp_path / "moved.pt"
    ckpt.rename(moved)
    assert (
        ClipImageSignal(ClipEncoder(TINY_CLIP_MODEL, pretrained=moved)).compatible_with(
            ClipImageSignal(from_file).describe()
        )
        is None
    )  # same bytes at a new path still match
    with pytest.raises(ValueError, match="neither a checkpoint file nor an open_clip tag"):
        ClipEncoder(TINY_CLIP_MODEL, pretrained="no-such-tag").encode_texts(["x"])


def inventory() -> pa.Table:
    return pa.table(
        {
            "item_id": ["text+img", "text-only", "img-only", "bad-img-only", "text+bad-img"],
            "text": ["designer bag sale", "free pills", None, None, "replica watch"],
            "image_bytes": pa.array(
                [picture(10), None, picture(11), b"\x89PNG\r\n\x1a\n truncated", b"not an image"],
                pa.binary(),
            ),
            "seller": ["s1", "s2", "s3", "s4", "s5"],
        }
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory, encoder):
    path = tmp_path_factory.mktemp("idx")
    signals = [TextEmbeddingSignal(), ClipImageSignal(encoder), PdqSignal()]
    build_index(inventory(), path, signals=signals, show_progress=False)
    return path


def test_store_round_trip_with_text_clip_and_pdq(built, encoder):
    idx = InventoryIndex.load(built)  # rebuilds every signal from the manifest
    assert set(idx.signals) == {"text", "image", "pdq"}
    assert idx.items.column("item_id").to_pylist() == [
        "text+img",
        "text-only",
        "img-only",
        "text+bad-img",
    ]
    quarantine = idx.quarantine.to_pylist()
    assert [q["item_id"] for q in quarantine] == ["bad-img-only"]
    assert "image: image is truncated or corrupt" in quarantine[0]["reason"]
    assert "pdq: image is truncated or corrupt" in quarantine[0]["reason"]
    assert idx.signals["image"].ids.tolist() == ["text+img", "img-only"]
    assert idx.signals["pdq"].ids.tolist() == ["text+img", "img-only"]
    assert idx.signals["text"].ids.tolist() == ["text+img", "text-only", "text+bad-img"]
    assert idx.manifest["signals"]["pdq"]["metric"] == "hamming"
    assert idx.manifest["signals"]["image"]["model_version"] == "random-init:seed=0"

    seeds = inventory().slice(2, 1)  # the image-only item as its own seed
    image_sig = idx.signals["image"]
    q = image_sig.signal.embed_queries(seeds)
    hit = image_sig.index.search(q.vectors, k=2)
    assert image_sig.ids[hit.positions[0, 0]] == "img-only"
    assert hit.scores[0, 0] == pytest.approx(1.0, abs=1e-4)
    pdq = idx.signals["pdq"]
    hit = pdq.index.search(pdq.signal.embed_queries(seeds).vectors, k=2)
    assert pdq.ids[hit.positions[0, 0]] == "img-only" and hit.distances[0, 0] == 0

    text_seed = pa.table({"item_id": ["s"], "text": ["fake designer handbag"]})
    q = image_sig.signal.embed_queries(text_seed)
    hit = image_sig.index.search(q.vectors, k=5)
    assert q.ok.tolist() == [True] and hit.positions.shape == (1, 2)
    assert np.all(hit.scores[0, :-1] >= hit.scores[0, 1:])


@pytest.mark.parametrize(
    "other",
    [
        lambda: ClipEncoder("ViT-B-32", pretrained="laion2b_s34b_b79k"),  # different model
        lambda: ClipEncoder(TINY_CLIP_MODEL, pretrained="laion2b_s34b_b79k"),  # different tag
        lambda: ClipEncoder(TINY_CLIP_MODEL, pretrained=None, init_seed=1),  # other weights
    ],
    ids=["model", "pretrained-tag", "random-seed"],
)
def test_mismatched_clip_encoder_is_refused_on_load(built, other):
    # describe() reads the architecture config only: no weights are downloaded here.
    with pytest.raises(IndexMismatchError, match="signal 'image'"):
        InventoryIndex.load(built, signals={"image": ClipImageSignal(other())})


def test_image_signals_are_registered():
    from riskrank.index.signals import registered_signals

    registry = registered_signals()
    assert registry["clip_image"] is riskrank.index.ClipImageSignal
    assert registry["clip_text"] is riskrank.index.ClipTextSignal
    assert registry["pdq"] is riskrank.index.PdqSignal


def test_an_unreachable_model_hub_is_one_clear_error(monkeypatch):
    # Offline, the default tag's download ended in three chained tracebacks from the hub
    # client (an outsider's report): one error now, naming the local-checkpoint way round.
    import open_clip

    from riskrank.index.signals.clip import ClipEncoder

    def offline(*args, **kwargs):
        raise RuntimeError("Failed to download weights for tag 'laion2b_s34b_b79k': no network")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", offline)
    with pytest.raises(FileNotFoundError, match=r"could not be downloaded .*--clip-pretrained"):
        ClipEncoder()._load()


def test_a_moved_checkpoint_is_found_where_the_environment_says(encoder, tmp_path, monkeypatch):
    # A model trained with a local checkpoint could be swept only with the file back at its
    # old absolute path, and the error named an argument sweeps do not take (an outsider's
    # report). A directory in RISKRANK_CLIP_CHECKPOINTS is searched by the file's name.
    import torch

    from riskrank.index.signals.clip import CHECKPOINTS_ENV

    encoder.encode_texts(["load"])
    ckpt = tmp_path / "tiny_moving.pt"
    torch.save(encoder._net.state_dict(), ckpt)
    entry = ClipImageSignal(ClipEncoder(TINY_CLIP_MODEL, pretrained=ckpt)).describe()
    (tmp_path / "elsewhere").mkdir()
    ckpt.rename(tmp_path / "elsewhere" / ckpt.name)
    monkeypatch.delenv(CHECKPOINTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=CHECKPOINTS_ENV):
        ClipEncoder.from_manifest(entry)
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path / "elsewhere"))
    found = ClipEncoder.from_manifest(entry)
    assert found.pretrained == str(tmp_path / "elsewhere" / ckpt.name)  # (read from there)
    assert ClipImageSignal(found).compatible_with(entry) is None
    # The same weights elsewhere give every picture the key it had: a standing index embeds
    # nothing again for the move (it re-embedded all of them: an outsider's report).
    from riskrank.index.standing import signal_content_keys

    items = pa.table({"image_bytes": pa.array([picture(1), picture(2)], pa.binary())})
    before = signal_content_keys(items, ClipImageSignal(encoder), spec=dict(entry))  # as made
    assert signal_content_keys(items, ClipImageSignal(found)) == before
    # Another file of that name is not taken for it.
    (tmp_path / "elsewhere" / ckpt.name).write_bytes(b"other weights")
    with pytest.raises(FileNotFoundError, match=CHECKPOINTS_ENV):
        ClipEncoder.from_manifest(entry)


def test_the_tiny_config_is_never_written_in_place(tmp_path, monkeypatch):
    """Ray's workers on one machine register it at once: one read the file another had just
    truncated (open_clip's rescan: JSONDecodeError). It is renamed over, never rewritten."""
    import json
    import os
    import tempfile
    from pathlib import Path

    import open_clip

    from riskrank.index.signals import clip

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    name = "riskrank-test-tiny-clip-atomic"
    monkeypatch.setattr(open_clip, "list_models", lambda: [])  # as a fresh worker sees it
    path = tmp_path / f"riskrank-open-clip-configs-{os.getuid()}" / f"{name}.json"
    path.parent.mkdir()
    path.write_text("")  # what a reader saw mid-write
    written = []
    real = Path.write_text

    def spy(self, *args, **kwargs):
        written.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", spy)
    assert clip.register_tiny_clip_config(name) == name
    assert path not in written and json.loads(path.read_text())["embed_dim"] == 32
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left
    written.clear()
    clip.register_tiny_clip_config(name)  # the same text: not written again
    assert written == []
