"""The shipped sentence-transformers weights compiled by OpenVINO for the CPU, in bf16 where the
CPU computes bf16 natively (AVX512-BF16 or AMX), f32 elsewhere.

The transformer is the library's own fp32 ONNX export (``text_onnx.export_fp32``), converted
once to OpenVINO IR with f32 weights and cached next to the int8 export, under
``$RISKRANK_CACHE/onnx/<weights digest>-<recipe>/``. The weights stay f32 on disk; the
precision is chosen when compiling, and the one the device actually runs is read back from the
compiled model (``precision``): a CPU without bf16 silently runs f32, and the index manifest
must say which. Pooling and normalisation stay in numpy, as in the int8 path.

``int8_weights=True`` (``backend="openvino-int8w"``) stores the MatMul weights as int8 per
output channel (NNCF's ``compress_weights``, asymmetric; no calibration data, so the vectors
depend on nothing but the weights); activations still run in bf16. On the 2-core EPYC
(AVX512-BF16, no AMX) its gain over bf16 was small and unsteady: +5% items per CPU-second on
one thread, none on two in the same run (benchmarks/results/encoder_openvino.md), at cosine to
f32 min 0.998 (bf16 alone: 0.9999).

Needs the ``[fast]`` extra (``openvino``, ``nncf`` for int8 weights).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from riskrank.index.signals.text_onnx import (
    SentenceTokenizer,
    cached_export,
    check_mean_pooled,
    export_fp32,
    mean_pool,
)

# Bump when the conversion changes: the cache key (and, for int8 weights, the manifest) carry it.
RECIPE = "openvino-ir-f32-v1"
INT8_WEIGHTS_RECIPE = "nncf-int8-asym-weights-v1"


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
        try:
            import nncf
        except ImportError as e:
            raise ImportError(
                "backend='openvino-int8w' needs NNCF to compress the weights: "
                "pip install 'riskrank[fast]'"
            ) from e
        nncf.set_log_level(logging.WARNING)  # its bit-width table is not the caller's concern
        model = nncf.compress_weights(
            ov.Core().read_model(f32), mode=nncf.CompressWeightsMode.INT8_ASYM
        )
        ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)

    return cached_export(model_dir, f"{RECIPE}-{INT8_WEIGHTS_RECIPE}", "model.xml", make)


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
        int8_weights: bool = False,
    ) -> None:
        ov = import_openvino()
        core = ov.Core()
        ir = int8_weights_ir_path(model_dir) if int8_weights else openvino_ir_path(model_dir)
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
                "INFERENCE_PRECISION_HINT": "bf16",
            },
        )
        # What the device actually runs (a CPU without bf16 falls back to f32), not the hint.
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.request = self.compiled.create_infer_request()
        self.tokenize = SentenceTokenizer(model_dir, max_seq_length=max_seq_length)

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
            hidden = self.request.infer(feeds)[0]
            return mean_pool(hidden, feeds["attention_mask"])

        lengths = np.array([len(x) for x in ids])
        return encode_in_padded_batches(lengths, embed, batch_size, show_progress)
