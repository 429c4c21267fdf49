"""The shipped sentence-transformers weights compiled by OpenVINO for the CPU, in bf16 where the
CPU computes bf16 natively (AVX512-BF16 or AMX), f32 elsewhere.

The transformer is the library's own fp32 ONNX export (``text_onnx.export_fp32``), converted
once to OpenVINO IR with f32 weights and cached next to the int8 export, under
``$RISKRANK_CACHE/onnx/<weights digest>-<recipe>/``. The weights stay f32 on disk; the
precision is chosen when compiling, and the one the device actually runs is read back from the
compiled model (``precision``): a CPU without bf16 silently runs f32, and the index manifest
must say which. Pooling and normalisation stay in numpy, as in the int8 path.

``int8_weights_ir_path`` (``backend="openvino-int8w"``) stores the MatMul weights as int8 per
output channel (NNCF's ``compress_weights``, asymmetric; no calibration data, so the vectors
depend on nothing but the weights); activations still run in bf16. On the 2-core EPYC
(AVX512-BF16, no AMX) its gain over bf16 was small and unsteady: +5% items per CPU-second on
one thread, none on two in the same run (benchmarks/results/encoder_openvino.md), at cosine to
f32 min 0.998 (bf16 alone: 0.9999).

``backend="openvino-int8"`` quantises weights AND activations to int8 (NNCF post-training
quantisation, ``quantized_ir_path``), so the MatMuls run on the CPU's VNNI int8 kernels; the
operations left unquantised run in f32 (``INT8_FLOAT_PRECISION``) on every CPU. They ran in
bf16 where the CPU has it until 2026-12-05: on an Intel Xeon with AMX (AVX512-BF16, AMX-INT8)
bf16 around the int8 MatMuls put 100 Insults comments at cosine min 0.804 (mean 0.981) to
PyTorch fp32, f32 at min 0.989 (mean 0.998), for 16% more CPU time (4.3 s against 3.7 s for
300 texts; 200 mails: min 0.995 either way); bf16 alone (``openvino``) kept min 0.9999 there,
and the AVX512-BF16 EPYC without AMX where int8 was first measured had kept it too.
Activation ranges are fixed once, from calibration
texts (``CalibrationTexts``): static per-tensor scales, so unlike ONNX Runtime's dynamic int8 a
text's vector does not depend on its batchmates. The texts decide the vectors, so their digest
keys the cached IR and the index manifest records it. The FFN down-projections of the first two
layers stay unquantised: of MiniLM's 36 MatMuls they moved the vectors most (on 128 swept
SpamAssassin mails, cosine to f32 min 0.981 with all int8, 0.995 without those two, at 1.45x
and 1.41x bf16's items per CPU-second; benchmarks/results/int8_scope.md).

Needs the ``[fast]`` extra (``openvino``, ``nncf`` for int8 weights).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from riskrank.index.manifest import package_version
from riskrank.index.schema import is_blank
from riskrank.index.signals.text_onnx import (
    SentenceTokenizer,
    cached_export,
    check_mean_pooled,
    export_fp32,
    export_path,
    mean_pool,
)

# Bump when the conversion changes: the cache key (and, for int8 weights, the manifest) carry it.
RECIPE = "openvino-ir-f32-v1"
INT8_WEIGHTS_RECIPE = "nncf-int8-asym-weights-v1"
INT8_RECIPE = "nncf-int8-static-mixed-v1"
# The float operations around full int8's MatMuls: f32 on every CPU (module docstring).
INT8_FLOAT_PRECISION = "f32"
# NNCF's recommended calibration size: more texts than this are not read.
CALIBRATION_SIZE = 300
# Kept unquantised (f32 weights, f32 compute: INT8_FLOAT_PRECISION): the FFN down-projections
# of layers 0 and 1.
INT8_KEEP_FLOAT = (r".*/layer\.0/output/dense/MatMul", r".*/layer\.1/output/dense/MatMul")


@dataclass(frozen=True)
class CalibrationTexts:
    """Unlabelled texts that fix the int8 activation ranges, and what to call them.

    Use texts like the inventory (same languages and lengths) but not the items a benchmark
    evaluates on, and keep them fixed: another set gives other vectors, and the manifest
    refuses to mix them. ``digest`` covers the texts in order.

    >>> CalibrationTexts("mine", ("a first text", "a second one")).identity()["size"]
    2
    """

    name: str
    texts: tuple[str, ...]

    def __post_init__(self) -> None:
        texts = tuple(t for t in self.texts if not is_blank(t))[:CALIBRATION_SIZE]
        if not texts:
            raise ValueError(f"calibration {self.name!r}: no non-blank texts")
        object.__setattr__(self, "texts", texts)

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for text in self.texts:
            data = text.encode("utf-8")
            h.update(len(data).to_bytes(8, "little") + data)
        return h.hexdigest()[:16]

    def identity(self) -> dict:
        return {"name": self.name, "digest": self.digest, "size": len(self.texts)}

    @classmethod
    def of(cls, value: CalibrationTexts | Sequence[str] | str | Path) -> CalibrationTexts:
        """From texts, or a Parquet file with a ``text`` column (named after the file)."""
        if isinstance(value, CalibrationTexts):
            return value
        if isinstance(value, (str, Path)):
            return cls._from_parquet(Path(value))
        texts = list(value)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("calibration: expected strings, a Parquet path or CalibrationTexts")
        return cls("texts", tuple(texts))

    @classmethod
    def _from_parquet(cls, path: Path) -> CalibrationTexts:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not path.is_file():
            raise FileNotFoundError(f"calibration: {path} is not a file")
        try:
            schema = pq.read_schema(path)
            if "text" not in schema.names:
                raise ValueError(f"calibration: {path} has no 'text' column (has {schema.names})")
            texts = pq.read_table(path, columns=["text"]).column("text").to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(
                f"calibration: {path} is not a readable Parquet file ({exc})"
            ) from None
        return cls(path.name, tuple(t for t in texts if isinstance(t, str)))


def import_openvino():
    try:
        import openvino
    except ImportError as e:
        raise ImportError(
            "backend='openvino' / 'openvino-int8w' needs OpenVINO: pip install 'riskrank[fast]'"
        ) from e
    return openvino


def openvino_ir_path(model_dir: str | Path) -> Path:
    """The cached OpenVINO IR (``model.xml`` + ``model.bin``) of ``model_dir``'s transformer."""
    model_dir = Path(model_dir)
    check_mean_pooled(model_dir)
    ov = import_openvino()

    def make(tmp: Path) -> None:
        export_fp32(model_dir, tmp / "fp32.onnx")
        # f32 weights in the IR (OpenVINO's default would store them as f16): the compiled
        # precision is the only rounding, and an f32 compile still matches PyTorch.
        ir = ov.convert_model(tmp / "fp32.onnx")
        ov.save_model(ir, tmp / "model.xml", compress_to_fp16=False)
        (tmp / "fp32.onnx").unlink()

    return cached_export(model_dir, RECIPE, "model.xml", make)


def int8_weights_ir_path(model_dir: str | Path) -> Path:
    """The cached IR with int8 MatMul weights, made (once) from the f32 IR by NNCF."""
    model_dir = Path(model_dir)
    f32 = openvino_ir_path(model_dir)
    ov = import_openvino()

    def make(tmp: Path) -> None:
        nncf = import_nncf("openvino-int8w")
        model = nncf.compress_weights(
            ov.Core().read_model(f32), mode=nncf.CompressWeightsMode.INT8_ASYM
        )
        ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)

    return cached_export(model_dir, f"{RECIPE}-{INT8_WEIGHTS_RECIPE}", "model.xml", make)


def import_nncf(backend: str):
    try:
        import nncf
    except ImportError as e:
        raise ImportError(
            f"backend={backend!r} needs NNCF to quantise: pip install 'riskrank[fast]'"
        ) from e
    nncf.set_log_level(logging.WARNING)  # its progress bars and tables are not the caller's
    return nncf


def quantized_recipe(calibration_digest: str, max_seq_length: int) -> str:
    """The cache key of a fully int8 IR: what decides its vectors besides the weights (the
    calibration texts, their truncation, NNCF's and OpenVINO's versions)."""
    versions = f"nncf{package_version('nncf', 'none')}-ov{package_version('openvino', 'none')}"
    return f"{RECIPE}-{INT8_RECIPE}-cal{calibration_digest}-len{max_seq_length}-{versions}"


def quantized_ir_path(
    model_dir: str | Path,
    calibration: CalibrationTexts | dict,
    *,
    max_seq_length: int,
) -> Path:
    """The cached IR with int8 weights and activations, made once from the f32 IR by NNCF.

    ``calibration`` is the texts, or the identity a manifest recorded (``CalibrationTexts.
    identity()``): that finds an IR made earlier, but cannot make a missing one.
    """
    model_dir = Path(model_dir)
    digest = calibration.digest if isinstance(calibration, CalibrationTexts) else None
    digest = digest or calibration.get("digest")
    recipe = quantized_recipe(str(digest), max_seq_length)
    if not isinstance(calibration, CalibrationTexts):
        found = export_path(model_dir, recipe, "model.xml")
        if not found.exists():
            raise FileNotFoundError(
                f"backend='openvino-int8': no int8 model calibrated on {calibration} in "
                f"{found.parent.parent}; pass the same calibration texts (calibration=...) "
                "to make it again"
            )
        return found
    f32 = openvino_ir_path(model_dir)
    ov = import_openvino()

    def make(tmp: Path) -> None:
        model = quantize(ov.Core().read_model(f32), model_dir, calibration, max_seq_length)
        ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)

    return cached_export(model_dir, recipe, "model.xml", make)


def quantize(
    model,
    model_dir: Path,
    calibration: CalibrationTexts,
    max_seq_length: int,
    keep_float: Sequence[str] = INT8_KEEP_FLOAT,
):
    """NNCF's post-training int8 of the f32 OpenVINO ``model``, activation ranges from
    ``calibration``; MatMuls matching a ``keep_float`` pattern stay float
    (benchmarks/int8_scope.py compares choices of it)."""
    nncf = import_nncf("openvino-int8")
    keep = keep_float_scope(nncf, model, model_dir, keep_float)
    tokenize = SentenceTokenizer(model_dir, max_seq_length=max_seq_length)

    def one_text(text: str) -> dict[str, np.ndarray]:
        # One text per sample, unpadded: padding tokens would widen the ranges.
        ids, types = tokenize.unpadded([text])
        width = len(ids[0])
        return {
            "input_ids": np.array(ids, np.int64),
            "attention_mask": np.ones((1, width), np.int64),
            "token_type_ids": np.array(types, np.int64)
            if types is not None
            else np.zeros((1, width), np.int64),
        }

    return nncf.quantize(
        model,
        nncf.Dataset(list(calibration.texts), one_text),
        model_type=nncf.ModelType.TRANSFORMER,  # SmoothQuant, attention kept float
        # Symmetric weights, asymmetric activations: GELU outputs are mostly one-signed.
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(calibration.texts),
        ignored_scope=keep,
    )


def keep_float_scope(nncf, model, model_dir: Path, patterns: Sequence[str]):
    """``patterns`` as NNCF's ignored scope (None if empty), refused with a clear error for a
    model whose operations are named otherwise (NNCF's own check fails deep in its stack)."""
    import re

    if not patterns:
        return None
    names = [op.get_friendly_name() for op in model.get_ops()]
    for pattern in patterns:
        if not any(re.fullmatch(pattern, n) for n in names):
            raise ValueError(
                f"backend='openvino-int8': {model_dir} has no operation matching {pattern!r} "
                "(a BERT-style layer naming is expected); use backend='openvino'"
            )
    return nncf.IgnoredScope(patterns=list(patterns))


class OpenVinoSentenceModel:
    """Tokenise, run the transformer compiled by OpenVINO, mean-pool, normalise.

    ``encode`` pads every text to its own length rounded up (``text.padded_batches``), as the
    PyTorch path does, so a text's vector does not depend on its batchmates.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        max_seq_length: int,
        num_threads: int,
        ir: str | Path | None = None,
        precision: str = "bf16",
    ) -> None:
        ov = import_openvino()
        core = ov.Core()
        ir = ir or openvino_ir_path(model_dir)  # another IR of the same model: an int8 one
        self.compiled = core.compile_model(
            core.read_model(ir),
            "CPU",
            {
                # Deliberate threads, one stream, no pinning: the machine is shared, and a
                # pinned thread waits for its core while another one is free.
                "INFERENCE_NUM_THREADS": num_threads,
                "NUM_STREAMS": 1,
                "PERFORMANCE_HINT": "LATENCY",
                "ENABLE_CPU_PINNING": False,
                # Of the float operations; int8 ones run int8 either way.
                "INFERENCE_PRECISION_HINT": precision,
            },
        )
        # What the device actually runs (a CPU without bf16 falls back to f32), not the hint.
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        # One infer request per thread: a request runs one inference at a time, and an
        # analyst's threads sweeping with one model object got "Infer Request is busy" (an
        # outsider: 15 of 30 calls from two threads). The compiled model is shared.
        self._requests = threading.local()
        self.tokenize = SentenceTokenizer(model_dir, max_seq_length=max_seq_length)

    def _request(self):
        """This thread's infer request (made on its first use)."""
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        return request

    def encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        from riskrank.index.signals.text import encode_in_padded_batches

        # Tokenised once, unpadded: the lengths decide the batches, the ids fill them.
        ids, types = self.tokenize.unpadded(texts)
        pad_id = self.tokenize.pad_id

        def embed(rows: np.ndarray, width: int) -> np.ndarray:
            feeds = {
                "input_ids": np.full((len(rows), width), pad_id, np.int64),
                "attention_mask": np.zeros((len(rows), width), np.int64),
                "token_type_ids": np.zeros((len(rows), width), np.int64),
            }
            for j, i in enumerate(rows):
                n = len(ids[i])
                feeds["input_ids"][j, :n] = ids[i]
                feeds["attention_mask"][j, :n] = 1
                if types is not None:
                    feeds["token_type_ids"][j, :n] = types[i]
            hidden = self._request().infer(feeds)[0]
            return mean_pool(hidden, feeds["attention_mask"])

        lengths = np.array([len(x) for x in ids])
        return encode_in_padded_batches(lengths, embed, batch_size, show_progress)
