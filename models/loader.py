"""Open the verified model files as ready-to-use Detector and Embedder objects (and the embedder's cohort)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from models.artifacts import (
    COHORT_ROLE,
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
from models.cohort import Cohort, CohortError, read_cohort
from models.detector import Detector, DetectorConfig
from models.embedder import Embedder
from models.sessions import Session
from models.sessions.backend import BackendChoice, BackendUnavailable, choose_backend
from models.sessions.ort import open_session
from models.sessions.trt import ENGINE_DIR_NAME, TensorRTError, TrtSession, open_trt_session
from models.text import TextEncoder
from watchbuy.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    record: ModelRecord
    session: Session


@dataclass(frozen=True, slots=True)
class Models:
    detector: Detector
    embedder: Embedder
    loaded: tuple[LoadedModel, ...]
    text: TextEncoder | None = None  # titles and ASR text (not an ONNX file: the weights ship with the package)
    cohort: Cohort | None = None  # the embedder's query cohort, when its weights have one

    def sha256(self, role: str) -> str:
        return next(m.record.sha256 for m in self.loaded if m.record.role == role)


def _open_engine(model_dir: Path, path: Path, record: ModelRecord, choice: BackendChoice) -> TrtSession | None:
    """The native TensorRT session when that backend was chosen; None (logged) when its engine fails."""
    if choice.backend != "tensorrt":
        return None
    try:
        return open_trt_session(path, record.sha256, record.role, model_dir / ENGINE_DIR_NAME, reason=choice.reason)
    except TensorRTError as exc:
        log.warning("%s: TensorRT engine unusable (%s); falling back to onnxruntime", record.role, exc)
        return None


def open_verified(
    model_dir: Path,
    spec: ModelSpec,
    records: dict[str, ModelRecord],
    threads: int,
    providers: Sequence[str] | None,
    choice: BackendChoice | None = None,
) -> LoadedModel:
    if spec.role not in records:
        raise ModelArtifactError(f"the model manifest has no {spec.role}; run `{FIX_COMMAND}`")
    record = records[spec.role]
    path = verify_file(model_dir, record)
    choice = choice or choose_backend("onnxruntime", preferred=providers)
    try:
        session = _open_engine(model_dir, path, record, choice) or open_session(
            path, intra_op_threads=threads, preferred=providers,
            reason=choice.reason if choice.backend == "onnxruntime" else f"TensorRT engine failed; {choice.reason}",
        )
    except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        raise ModelArtifactError(f"{spec.role} model {path} cannot be loaded ({exc}); run `{FIX_COMMAND}`") from exc
    check_signature(spec, session)
    log.info("%s on %s (%s): %s", spec.role, session.provider, session.backend, session.reason)
    return LoadedModel(record=record, session=session)


def load_models(
    model_dir: Path,
    detector_config: DetectorConfig,
    intra_op_threads: int = 0,
    providers: Sequence[str] | None = None,
    backend: str = "auto",
) -> Models:
    """Verify (manifest, size, sha256, signature) and open both models on the chosen backend.

    Raises ModelArtifactError (also when `backend` names one that cannot run here).
    """
    records = read_manifest(model_dir)
    try:
        choice = choose_backend(backend, preferred=providers)
    except (BackendUnavailable, ValueError) as exc:
        raise ModelArtifactError(str(exc)) from exc
    det = open_verified(model_dir, DETECTOR, records, intra_op_threads, providers, choice)
    emb = open_verified(model_dir, EMBEDDER, records, intra_op_threads, providers, choice)
    embedder = Embedder(emb.session)
    return Models(
        detector=Detector(det.session, detector_config),
        embedder=embedder,
        loaded=(det, emb),
        text=TextEncoder(),
        cohort=open_cohort(model_dir, records, emb.record, embedder.dim),
    )


def open_cohort(model_dir: Path, records: dict[str, ModelRecord], embedder: ModelRecord, dim: int) -> Cohort | None:
    """The verified cohort of this embedder file; None when the manifest lists none."""
    record = records.get(COHORT_ROLE)
    if record is None:
        return None
    if record.embedder_sha256 != embedder.sha256:
        raise ModelArtifactError(f"the cohort in {model_dir} belongs to another embedder file; run `{FIX_COMMAND}`")
    path = verify_file(model_dir, record)
    try:
        cohort = read_cohort(path, record.sha256, record.name)
    except CohortError as exc:
        raise ModelArtifactError(f"{exc}; run `{FIX_COMMAND}`") from exc
    if cohort.dim != dim:
        raise ModelArtifactError(f"cohort {path} is {cohort.dim}-d, the embedder {dim}-d; run `{FIX_COMMAND}`")
    return cohort


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
        backend=settings.inference_backend,
    )
