"""Open the verified model files as ready-to-use Detector and Embedder objects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from models.artifacts import (
    DETECTOR,
    EMBEDDER,
    FIX_COMMAND,
    ModelArtifactError,
    ModelRecord,
    ModelSpec,
    check_signature,
    read_manifest,
    verify_file,
)
from models.detector import Detector, DetectorConfig
from models.embedder import Embedder
from models.runtime import Session, open_session
from watchbuy.settings import Settings


@dataclass(frozen=True, slots=True)
class LoadedModel:
    record: ModelRecord
    session: Session


@dataclass(frozen=True, slots=True)
class Models:
    detector: Detector
    embedder: Embedder
    loaded: tuple[LoadedModel, ...]

    def sha256(self, role: str) -> str:
        return next(m.record.sha256 for m in self.loaded if m.record.role == role)


def open_verified(
    model_dir: Path, spec: ModelSpec, records: dict[str, ModelRecord], threads: int, providers: Sequence[str] | None
) -> LoadedModel:
    if spec.role not in records:
        raise ModelArtifactError(f"the model manifest has no {spec.role}; run `{FIX_COMMAND}`")
    record = records[spec.role]
    path = verify_file(model_dir, record)
    try:
        session = open_session(path, intra_op_threads=threads, preferred=providers)
    except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        raise ModelArtifactError(f"{spec.role} model {path} cannot be loaded ({exc}); run `{FIX_COMMAND}`") from exc
    check_signature(spec, session.inner.get_inputs(), session.inner.get_outputs(), path)
    return LoadedModel(record=record, session=session)


def load_models(
    model_dir: Path,
    detector_config: DetectorConfig,
    intra_op_threads: int = 0,
    providers: Sequence[str] | None = None,
) -> Models:
    """Verify (manifest, size, sha256, signature) and open both models; raises ModelArtifactError."""
    records = read_manifest(model_dir)
    det = open_verified(model_dir, DETECTOR, records, intra_op_threads, providers)
    emb = open_verified(model_dir, EMBEDDER, records, intra_op_threads, providers)
    return Models(
        detector=Detector(det.session, detector_config),
        embedder=Embedder(emb.session),
        loaded=(det, emb),
    )


def load_configured_models(settings: Settings) -> Models:
    """`load_models` with everything taken from the settings (what the service and indexer use)."""
    return load_models(
        settings.model_dir,
        DetectorConfig(
            classes=tuple(settings.detector_classes),
            score_threshold=settings.detector_score_threshold,
            nms_iou=settings.detector_nms_iou,
            max_detections=settings.max_detections,
        ),
        intra_op_threads=settings.intra_op_threads,
        providers=settings.execution_providers,
    )
