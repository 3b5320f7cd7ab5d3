"""int8 copies of the detector and the embedder: ONNX Runtime static quantization, calibrated on `*-train` data.

Format, measured on the development machine (AMD EPYC, AVX2 without VNNI; e3 embedder, 6 crops, 2 threads;
cosine of each int8 vector to its fp32 vector over 32 viton-train images):

| variant | ms / 6 crops | mean cosine |
|---|---|---|
| fp32 | 225 | 1 |
| QDQ, int8 activations | 257 | 0.92 |
| QOperator, uint8 activations | 130 | 0.73 |
| QOperator, uint8 activations, reduce_range | 100 | 0.95 |

Without VNNI, ONNX Runtime multiplies uint8 × int8 with VPMADDUBSW, whose 16-bit sums saturate; 7-bit weights
(`reduce_range`) avoid that. QDQ graphs were not fused into faster kernels here. So: QOperator, per-channel
int8 weights (7-bit), uint8 activations, MinMax calibration.

Calibration data: frames of the `*-train` datasets' clips (seeded sample) for the detector; for the
embedder the crops the service would embed from those frames (the fp32 detector's proposals, the whole frame,
the centred boxes) plus the products' shop images, which index builds embed.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from models.detector import Detector, DetectorConfig, letterbox
from models.embedder import crop, preprocess
from models.proposals import ProposalConfig, propose
from models.sessions.ort import open_session
from training.pairs import read_pairs

BATCH = 8
METHOD = "onnxruntime static QOperator, per-channel int8 weights (reduce_range), uint8 activations, MinMax"


class QuantizationError(RuntimeError):
    """A model could not be quantized (the message names it and the quantizer's error)."""


@dataclass(frozen=True, slots=True)
class CalibrationSet:
    """Which `*-train` datasets, how many of their clip frames and shop images, and the sampling seed."""

    datasets: tuple[Path, ...]
    frames: int = 48
    seed: int = 0

    def describe(self) -> str:
        names = ", ".join(d.name for d in self.datasets)
        return f"{self.frames} clip frames and {self.frames} shop images of {names} (seed {self.seed}); {METHOD}"


@dataclass(frozen=True, slots=True)
class CalibrationImages:
    frames: list[np.ndarray]
    shops: list[np.ndarray]


def _rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read calibration image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def sample_images(calibration: CalibrationSet) -> CalibrationImages:
    """A seeded sample of clip frames and shop images of the datasets (read_pairs refuses non-train sets)."""
    pairs = read_pairs(list(calibration.datasets))
    if not pairs:
        raise ValueError(f"no labelled clips in {[str(d) for d in calibration.datasets]} to calibrate on")
    rng = random.Random(calibration.seed)
    photos = sorted({p.photo.path for p in pairs})
    shops = sorted({p.shop.path for p in pairs})
    return CalibrationImages(
        frames=[_rgb(p) for p in rng.sample(photos, min(calibration.frames, len(photos)))],
        shops=[_rgb(p) for p in rng.sample(shops, min(calibration.frames, len(shops)))],
    )


class Feeds(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no types
    """The calibration batches, each once, as ONNX Runtime's calibrator reads them."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter([{input_name: b} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _batches(tensors: np.ndarray) -> list[np.ndarray]:
    return [tensors[i : i + BATCH] for i in range(0, len(tensors), BATCH)]


def detector_batches(images: CalibrationImages) -> list[np.ndarray]:
    return _batches(np.concatenate([letterbox(frame)[0] for frame in images.frames]))


def embedder_batches(
    images: CalibrationImages, detector: Detector, proposals: ProposalConfig, size: int
) -> list[np.ndarray]:
    """The crops the service embeds from the frames, and the shop images, preprocessed as the embedder takes them."""
    crops = list(images.shops)
    for frame, found in zip(images.frames, detector.detect_many(images.frames), strict=True):
        crops.extend(crop(frame, p.box) for p in propose(found, frame.shape[1], frame.shape[0], proposals))
    return _batches(preprocess(crops, size))


def quantize(source: Path, target: Path, input_name: str, batches: Sequence[np.ndarray]) -> None:
    """Write the int8 model of `source` to `target` atomically (a failure leaves `target` as it was).

    Raises QuantizationError with the quantizer's own error.
    """
    try:
        _quantize(source, target, input_name, batches)
    except Exception as exc:  # the quantizer raises bare Exception, onnx errors, ValueError, ...
        raise QuantizationError(f"cannot quantize {source.name}: {exc}") from exc


def _quantize(source: Path, target: Path, input_name: str, batches: Sequence[np.ndarray]) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantize-") as work:
        prepared, quantized = Path(work) / "prepared.onnx", Path(work) / "int8.onnx"
        # ONNX's own shape inference: ONNX Runtime's symbolic one gives up on the detector's dynamic batch.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            Feeds(input_name, batches),
            quant_format=QuantFormat.QOperator,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        with quantized.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(quantized, target)


def quantize_pair(
    detector_fp32: Path,
    embedder_fp32: Path,
    detector_int8: Path,
    embedder_int8: Path,
    calibration: CalibrationSet,
    detector_config: DetectorConfig,
    proposals: ProposalConfig,
) -> None:
    """Both int8 models, calibrated on the same frames (the embedder on what the fp32 detector proposes)."""
    images = sample_images(calibration)
    session = open_session(detector_fp32, intra_op_threads=0, preferred=("CPUExecutionProvider",))
    quantize(detector_fp32, detector_int8, session.input_name, detector_batches(images))
    embedder = open_session(embedder_fp32, intra_op_threads=0, preferred=("CPUExecutionProvider",))
    size = int(embedder.inputs[0].shape[2] or 224)
    batches = embedder_batches(images, Detector(session, detector_config), proposals, size)
    quantize(embedder_fp32, embedder_int8, embedder.input_name, batches)
