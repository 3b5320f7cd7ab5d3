"""Model files: where they come from, the manifest that pins them, and the checks made at load.

`make models` (`watchbuy models`) fills `WATCHBUY_MODEL_DIR`:
- the detector is taken from `WATCHBUY_MODEL_MIRROR` when it holds the file, else downloaded from
  the official YOLOX release, and rewritten to a dynamic batch (training/detector_graph.py); its
  manifest entry pins the rewritten file and keeps the original's sha256 (`origin_sha256`);
- the embedder is exported from the ImageNet EfficientNet-Lite0 pip package or the project's weights;
- both get an int8 copy (`<file>.int8.onnx`, manifest key `<role>-int8`, training/quantize.py) when
  calibration data is configured; its `origin_sha256` is the fp32 file it approximates, which is also its
  `identity`: an index built with either precision serves the other.
`manifest.json` records each file's size and sha256; `verify_model` checks them and the input/output
signature, and every failure names the command that fixes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from models.sessions import Session

FIX_COMMAND = "make models"
MANIFEST = "manifest.json"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What a model file must look like: None in a shape is a dynamic dimension."""

    role: str
    filename: str
    input_name: str
    input_shape: tuple[int | None, ...]
    output_name: str
    output_shape: tuple[int | None, ...]


DETECTOR = ModelSpec(
    "detector", "yolox_nano_416x416_dynamic.onnx", "images", (None, 3, 416, 416), "output", (None, 3549, 85)
)
#: The third-party file as published (fixed batch of 1), the source of DETECTOR.filename.
DETECTOR_SOURCE_FILENAME = "yolox_nano_416x416.onnx"
EMBEDDER = ModelSpec("embedder", "embedder.onnx", "images", (None, 3, 224, 224), "embeddings", (None, None))
SPECS = {spec.role: spec for spec in (DETECTOR, EMBEDDER)}
FP32, INT8 = "fp32", "int8"
#: Not an ONNX model: the embedder's query cohort (models/cohort.py), when its weights have one.
COHORT_ROLE = "cohort"

DETECTOR_URL = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx"
DETECTOR_MIRROR_SHA256 = "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14"


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """One manifest entry."""

    role: str
    name: str
    file: str
    sha256: str
    bytes: int
    source: str
    created_at: str
    origin_sha256: str | None = None  # the file this one was converted from (the detector)
    embedder_sha256: str | None = None  # the embedder identity this one belongs to (the cohort)
    precision: str = FP32  # "int8": a quantized copy of the fp32 file `origin_sha256`
    calibration: str | None = None  # int8: the data and method it was calibrated with

    @property
    def identity(self) -> str:
        """The function this file computes: the fp32 file's sha256 (an int8 copy names its origin)."""
        if self.precision == INT8 and self.origin_sha256:
            return self.origin_sha256
        return self.sha256


class ModelArtifactError(RuntimeError):
    """A model file is missing, corrupt or of the wrong shape; the message says how to fix it."""


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_manifest(model_dir: Path) -> dict[str, ModelRecord]:
    path = model_dir / MANIFEST
    if not path.is_file():
        raise ModelArtifactError(f"no model manifest at {path}; run `{FIX_COMMAND}`")
    try:
        raw = json.loads(path.read_text())
        return {role: ModelRecord(**entry) for role, entry in raw["models"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelArtifactError(f"unreadable model manifest {path} ({exc}); run `{FIX_COMMAND}`") from exc


def write_manifest(model_dir: Path, records: dict[str, ModelRecord]) -> None:
    """Atomically replace the manifest."""
    body = json.dumps({"models": {role: asdict(r) for role, r in sorted(records.items())}}, indent=2)
    fd, tmp = tempfile.mkstemp(dir=model_dir, prefix=".manifest-")
    with os.fdopen(fd, "w") as handle:
        handle.write(body + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, model_dir / MANIFEST)


def manifest_key(role: str, precision: str = FP32) -> str:
    return role if precision == FP32 else f"{role}-{precision}"


def model_filename(spec: ModelSpec, precision: str = FP32) -> str:
    return spec.filename if precision == FP32 else spec.filename.removesuffix(".onnx") + f".{precision}.onnx"


def record_for(
    spec: ModelSpec,
    model_dir: Path,
    name: str,
    source: str,
    origin_sha256: str | None = None,
    precision: str = FP32,
    calibration: str | None = None,
) -> ModelRecord:
    filename = model_filename(spec, precision)
    path = model_dir / filename
    return ModelRecord(
        role=spec.role,
        name=name,
        file=filename,
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        source=source,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        origin_sha256=origin_sha256,
        precision=precision,
        calibration=calibration,
    )


def verify_file(model_dir: Path, record: ModelRecord) -> Path:
    """Size and sha256 of one model file against its manifest entry."""
    path = model_dir / record.file
    if not path.is_file():
        raise ModelArtifactError(f"{record.role} model file {path} is missing; run `{FIX_COMMAND}`")
    size = path.stat().st_size
    if size != record.bytes:
        raise ModelArtifactError(
            f"{record.role} model file {path} has {size} bytes, manifest says {record.bytes}; run `{FIX_COMMAND}`"
        )
    digest = sha256_file(path)
    if digest != record.sha256:
        raise ModelArtifactError(f"{record.role} model file {path} fails its sha256 check; run `{FIX_COMMAND}`")
    return path


def check_signature(spec: ModelSpec, session: Session) -> None:
    """Compare a session's first input and output with the spec."""

    def same(shape: tuple[int | None, ...], want: tuple[int | None, ...]) -> bool:
        if len(shape) != len(want):
            return False
        return all(w is None or s == w for s, w in zip(shape, want, strict=True))

    got_in, got_out, path = session.inputs[0], session.outputs[0], session.path
    if got_in.name != spec.input_name or not same(got_in.shape, spec.input_shape):
        raise ModelArtifactError(
            f"{spec.role} model {path} takes {got_in.name}{got_in.shape}, expected "
            f"{spec.input_name}{list(spec.input_shape)}; run `{FIX_COMMAND}`"
        )
    if got_out.name != spec.output_name or not same(got_out.shape, spec.output_shape):
        raise ModelArtifactError(
            f"{spec.role} model {path} returns {got_out.name}{got_out.shape}, expected "
            f"{spec.output_name}{list(spec.output_shape)}; run `{FIX_COMMAND}`"
        )


def copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, dst)
