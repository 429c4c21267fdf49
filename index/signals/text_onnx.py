"""An int8 ONNX Runtime copy of a mean-pooled sentence-transformers model, made locally.

The export is made once from the shipped weights (no model hub): PyTorch's ONNX exporter writes
the transformer (eager attention: the pattern ONNX Runtime's BERT optimizer recognises),
that optimizer fuses attention, embedding and layer norms, and ONNX Runtime's own
``quantize_dynamic`` turns the MatMul and Attention weights into int8 per output channel
(per-tensor scales moved MiniLM's embeddings to a mean cosine of 0.94 with fp32, per-channel
to 0.993; the fusion took int8 from 1.7x to 2.2x PyTorch fp32 items per CPU-second on one
thread, 64 SpamAssassin mails). The result is cached under
``$RISKRANK_CACHE/onnx/<weights digest>-<recipe>/`` so a changed checkpoint or recipe never
reuses a stale export. Pooling and normalisation stay in numpy, as sentence-transformers does
them, so only the transformer is quantised.

Needs the ``[fast]`` extra (``onnx``, ``onnxruntime``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from riskrank.index.run_log import get_logger

log = get_logger(__name__)

# Bump when the export or quantisation changes: the cache key and the manifest carry it.
RECIPE = "int8-dynamic-fused-perchannel-v2"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def onnx_cache_root() -> Path:
    """``$RISKRANK_CACHE/onnx`` (default ``~/.cache/riskrank/onnx``)."""
    root = os.environ.get("RISKRANK_CACHE") or Path.home() / ".cache" / "riskrank"
    return Path(root).expanduser() / "onnx"


def weights_digest(model_dir: str | Path) -> str:
    """sha256 (16 hex) over the model's weight and config files: the export's cache key."""
    model_dir = Path(model_dir)
    names = sorted(
        p.name
        for p in model_dir.iterdir()
        if p.suffix in (".safetensors", ".bin") or p.name in ("config.json", "tokenizer.json")
    )
    if not any(n.endswith((".safetensors", ".bin")) for n in names):
        raise FileNotFoundError(f"{model_dir}: no model weights (*.safetensors or *.bin) found")
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode())
        with open(model_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def check_mean_pooled(model_dir: str | Path) -> None:
    """Refuse models whose sentence-transformers pipeline is not Transformer -> mean Pooling
    (-> Normalize): the ONNX path re-implements exactly that pooling and nothing else."""
    model_dir = Path(model_dir)
    check_exportable(model_dir)
    modules = json.loads((model_dir / "modules.json").read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"}:
        raise ValueError(
            f"backend='onnx-int8': {model_dir} has modules {kinds}; only Transformer -> Pooling"
            " (-> Normalize) models are supported, use backend='torch'"
        )
    pooling = json.loads((model_dir / modules[1]["path"] / "config.json").read_text())
    if pooling_modes(pooling) != ("mean",):
        raise ValueError(
            f"backend='onnx-int8': {model_dir} does not use plain mean pooling ({pooling}); "
            "use backend='torch'"
        )


# The architectures the export is made for: it feeds ``token_type_ids``, which BERT's tokenizer
# gives and DistilBERT's, MPNet's, RoBERTa's and XLM-R's do not (an outsider's DistilBERT failed
# with a KeyError deep in the export).
EXPORTABLE = ("bert",)


def check_exportable(model_dir: str | Path) -> None:
    """Refuse, naming the way out, a model the ONNX export does not handle."""
    config = Path(model_dir) / "config.json"
    kind = json.loads(config.read_text()).get("model_type") if config.exists() else None
    if kind not in EXPORTABLE:
        raise ValueError(
            f"{model_dir}: model type {kind!r}; the ONNX/OpenVINO backends export "
            f"{', '.join(EXPORTABLE)} models only, use backend='torch' (--text-backend torch)"
        )


def pooling_modes(config: dict) -> tuple[str, ...]:
    """A Pooling module's modes from its config in either format sentence-transformers writes:
    ``pooling_mode`` (6.x: a name or a list of names) or the older ``pooling_mode_*`` flags,
    where no flag set means mean pooling, as sentence-transformers reads it. Written here:
    sentence-transformers' own converter (``_convert_legacy_pooling_kwargs``) is private."""
    mode = config.get("pooling_mode")
    if mode is not None:
        return (mode,) if isinstance(mode, str) else tuple(mode)
    flags = [k for k, v in config.items() if k.startswith("pooling_mode_") and v]
    named = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
    return tuple(named.get(k, k.removeprefix("pooling_mode_")) for k in flags) or ("mean",)


def export_fp32(model_dir: Path, out: Path) -> None:
    """Write ``model_dir``'s transformer (fp32, eager attention) to the ONNX file ``out``."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its "Loading weights" bar: the notice above says it
    try:
        model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    tok = AutoTokenizer.from_pretrained(model_dir)
    example = tok(
        ["riskrank export", "a second, longer example text"], padding=True, return_tensors="pt"
    )

    class Hidden(torch.nn.Module):  # positional inputs and one output for the exporter
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    axes = {k: {0: "batch", 1: "tokens"} for k in (*_INPUTS, "last_hidden_state")}
    # The TorchScript exporter: the dynamo one needs onnxscript and more time, for the same graph.
    torch.onnx.export(
        Hidden(model),
        tuple(example[k] for k in _INPUTS),
        str(out),
        input_names=list(_INPUTS),
        output_names=["last_hidden_state"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )


def fuse(model_dir: Path, src: Path, out: Path) -> None:
    """ONNX Runtime's BERT optimizer: attention, embedding, layer norms and GELU fused."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((model_dir / "config.json").read_text())
    model_type = config.get("model_type", "bert")
    optimized = optimize_model(
        str(src),
        model_type="bert" if model_type in ("bert", "mpnet", "roberta") else model_type,
        num_heads=int(config.get("num_attention_heads", 0)),
        hidden_size=int(config.get("hidden_size", 0)),
        opt_level=1,
    )
    optimized.save_model_to_file(str(out))


def export_path(model_dir: Path, recipe: str, filename: str) -> Path:
    """Where ``cached_export`` keeps (or will make) ``filename`` for these weights and recipe."""
    return onnx_cache_root() / f"{weights_digest(model_dir)}-{recipe}" / filename


def cached_export(
    model_dir: Path, recipe: str, filename: str, make: Callable[[Path], None]
) -> Path:
    """``$RISKRANK_CACHE/onnx/<weights digest>-<recipe>/<filename>``, made once by
    ``make(scratch_dir)`` (which writes ``filename`` there) if missing. The finished folder
    appears atomically, so a half-written export is never picked up by another process."""
    final = export_path(model_dir, recipe, filename)
    if final.exists():
        return final
    tmp = final.parent.with_name(final.parent.name + f".{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a read-only home: say what to do, not a traceback
        raise PermissionError(
            f"the ONNX/OpenVINO export of {model_dir} is not cached and cannot be written under "
            f"{onnx_cache_root()} ({exc.strerror}): set RISKRANK_CACHE to a writable folder "
            "(or copy that cache from a machine that made it)"
        ) from None
    log.warning(
        "exporting the text model %s once for this machine (~10-20 s; cached under %s)",
        model_dir, final.parent,
    )  # fmt: skip
    try:
        with warnings.catch_warnings():
            # The tracer's notes on BERT's shape checks (torch.jit.TracerWarning: "... will
            # produce incorrect results" for other shapes): the axes are exported as dynamic and
            # every export is checked against PyTorch by the tests; a user need not read them.
            warnings.simplefilter("ignore")
            make(tmp)
        final.parent.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(final.parent)
    except OSError:  # another process may have finished the same export first
        if not final.exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def int8_model_path(model_dir: str | Path) -> Path:
    """The cached int8 ONNX export of ``model_dir``, made (once) if missing."""
    model_dir = Path(model_dir)
    check_mean_pooled(model_dir)

    def make(tmp: Path) -> None:
        try:
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic
        except ImportError as e:
            raise ImportError(
                "backend='onnx-int8' needs onnxruntime and onnx: pip install 'riskrank[fast]'"
            ) from e
        export_fp32(model_dir, tmp / "fp32.onnx")
        fuse(model_dir, tmp / "fp32.onnx", tmp / "fused.onnx")
        # Weights of MatMul and fused Attention only: the embedding tables stay fp32 (int8
        # there cost most of the per-tensor run's accuracy and saves no compute).
        quantize_dynamic(
            tmp / "fused.onnx",
            tmp / "model.onnx",
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Attention"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        for name in ("fp32.onnx", "fused.onnx"):
            (tmp / name).unlink()

    return cached_export(model_dir, RECIPE, "model.onnx", make)


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Mean over real tokens, then unit length: sentence-transformers' Pooling + Normalize."""
    mask = attention_mask[..., None].astype(np.float32)
    pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
    "added_tokens.json", "sentencepiece.bpe.model", "spiece.model", "merges.txt", "vocab.json",
)  # fmt: skip


def tokenizer_cache_path(model_dir: str | Path, max_seq_length: int) -> Path:
    """``$RISKRANK_CACHE/onnx/tokenizer-<digest>/max<N>.json``: the digest covers the model's
    tokenizer files and the transformers release whose wrapper the copy was checked against
    (read from the package's metadata, not by importing it)."""
    from importlib.metadata import PackageNotFoundError, version

    model_dir = Path(model_dir)
    try:
        release = version("transformers")
    except PackageNotFoundError:
        release = "none"
    h = hashlib.sha256(f"transformers=={release}".encode())
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            h.update(name.encode())
            h.update((model_dir / name).read_bytes())
    return onnx_cache_root() / f"tokenizer-{h.hexdigest()[:16]}" / f"max{max_seq_length}.json"


class SentenceTokenizer:
    """The model's own tokenizer: int64 ``input_ids``, ``attention_mask``, ``token_type_ids``,
    truncated to ``max_seq_length`` and padded to the longest text of the batch.

    The ids are what transformers' tokenizer wrapper gives (``tokenizer(texts, truncation=True,
    max_length=...)``), but after the first time they come from the wrapper's own Rust tokenizer
    through the ``tokenizers`` library alone: importing transformers (and with it torch) made
    a new process's first vector take 3.2-4.8 s on the 2-core CPU, against 0.3-0.7 s now.
    The copy (the wrapper's backend tokenizer as transformers set it up, with its truncation) is
    cached at ``tokenizer_cache_path`` only after it gave the wrapper's ids on ``PROBES``
    (``index.signals.text_tokens``); where it does not, the wrapper is used. ``fast=False``:
    always the wrapper.
    """

    def __init__(self, model_dir: str | Path, *, max_seq_length: int, fast: bool = True) -> None:
        self.max_seq_length = max_seq_length
        self.tokenizer = None  # transformers' wrapper, only where the copy is not used
        self._fast = None
        self._pad_id = 0
        self._types = True  # does the wrapper give token_type_ids (else zeros, as it is fed)
        cached = tokenizer_cache_path(model_dir, max_seq_length)
        if fast and cached.is_file():
            from tokenizers import Tokenizer

            try:
                saved = json.loads(cached.read_text())
                self._fast = Tokenizer.from_str(saved["tokenizer"])
                self._pad_id, self._types = int(saved["pad_id"]), bool(saved["token_type_ids"])
                return
            except Exception:  # an unreadable copy is checked and written again below
                self._fast = None
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self._pad_id = self.tokenizer.pad_token_id or 0
        if fast:
            self._fast = self._checked_copy(cached)
            if self._fast is not None:
                self.tokenizer = None

    def _checked_copy(self, cached: Path):
        """The wrapper's Rust tokenizer with its truncation, if it gives the wrapper's ids on
        ``PROBES`` (then saved to ``cached``), else None."""
        from tokenizers import Tokenizer

        from riskrank.index.manifest import write_text_atomic
        from riskrank.index.signals.text_tokens import PROBES

        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None or getattr(self.tokenizer, "truncation_side", "right") != "right":
            return None
        copy = Tokenizer.from_str(backend.to_str())
        copy.no_padding()
        copy.enable_truncation(self.max_seq_length)
        want = self.tokenizer(list(PROBES), truncation=True, max_length=self.max_seq_length)
        got = copy.encode_batch(list(PROBES))
        self._types = "token_type_ids" in want
        want_types = want["token_type_ids"] if self._types else [None] * len(PROBES)
        for g, ids, types in zip(got, want["input_ids"], want_types, strict=True):
            if g.ids != ids or (types is not None and g.type_ids != types):
                return None
        record = {"tokenizer": copy.to_str(), "pad_id": self._pad_id, "token_type_ids": self._types}
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(json.dumps(record), cached)
        return copy

    @property
    def is_fast(self) -> bool:
        """True where the ids come from the checked copy, without transformers."""
        return self._fast is not None

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self._fast is None:
            enc = self.tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_seq_length,
                return_tensors="np",
            )
            feeds = {k: enc[k].astype(np.int64) for k in _INPUTS if k in enc}
            feeds.setdefault("token_type_ids", np.zeros_like(feeds["input_ids"]))
            return feeds
        encodings = self._fast.encode_batch(list(texts))
        width = max((len(e.ids) for e in encodings), default=0)
        feeds = {
            "input_ids": np.full((len(encodings), width), self._pad_id, np.int64),
            "attention_mask": np.zeros((len(encodings), width), np.int64),
            "token_type_ids": np.zeros((len(encodings), width), np.int64),
        }
        for row, e in enumerate(encodings):
            n = len(e.ids)
            feeds["input_ids"][row, :n] = e.ids
            feeds["attention_mask"][row, :n] = 1
            if self._types:
                feeds["token_type_ids"][row, :n] = e.type_ids
        return feeds

    def unpadded(self, texts: list[str]) -> tuple[list[list[int]], list[list[int]] | None]:
        """Per text, its ``input_ids`` and ``token_type_ids`` (None if the model has none),
        truncated the same way but not padded: the caller pads them into its own batches."""
        if self._fast is None:
            enc = self.tokenizer(texts, truncation=True, max_length=self.max_seq_length)
            return enc["input_ids"], enc.get("token_type_ids")
        encodings = self._fast.encode_batch(list(texts))
        types = [e.type_ids for e in encodings] if self._types else None
        return [e.ids for e in encodings], types

    @property
    def pad_id(self) -> int:
        return self._pad_id


class OnnxSentenceModel:
    """Tokenise, run the int8 transformer, mean-pool over real tokens, normalise.

    ``model_path`` runs another export of the same transformer instead of the cached int8 one
    (``benchmarks/encoder.py`` times fp32 and statically quantised copies this way).
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        max_seq_length: int,
        num_threads: int,
        model_path: str | Path | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(model_path) if model_path else int8_model_path(model_dir)
        self.tokenize = SentenceTokenizer(model_dir, max_seq_length=max_seq_length)
        self.max_seq_length = max_seq_length
        options = ort.SessionOptions()
        # Deliberate thread counts: the machine is shared, and inter-op threads only help
        # graphs with parallel branches, which a transformer has none of.
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        # No busy-waiting between operators: on a shared machine spinning threads take CPU
        # from other jobs (and make items/s depend on how idle the neighbours are).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self.needs = {i.name for i in self.session.get_inputs()}

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        feeds = self.tokenize(texts)
        hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self.needs})[0]
        return mean_pool(hidden, feeds["attention_mask"])
