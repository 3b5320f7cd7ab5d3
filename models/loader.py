"""Open the verified model files as ready-to-use Detector and Embedder objects (and the embedder's cohort)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.artifacts import (
    COHORT_ROLE,
    DETECTOR,
    EMBEDDER,
    FIX_COMMAND,
    INT8,
    ModelArtifactError,
    ModelRecord,
    ModelSpec,
    check_signature,
    manifest_key,
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
        """The loaded file's sha256."""
        return self.record(role).sha256

    def identity(self, role: str) -> str:
        """The function the loaded file computes (its fp32 file's sha256): what indexes and cohorts pin."""
        return self.record(role).identity

    def record(self, role: str) -> ModelRecord:
        return next(m.record for m in self.loaded if m.record.role == role)


def _open_engine(model_dir: Path, path: Path, record: ModelRecord, choice: BackendChoice) -> TrtSession | None:
    """The native TensorRT session when that backend was chosen; None (logged) when its engine fails."""
    if choice.backend != "tensorrt":
        return None
    try:
        return open_trt_session(path, record.sha256, record.role, model_dir / ENGINE_DIR_NAME, reason=choice.reason)
    except TensorRTError as exc:
        log.warning("%s: TensorRT engine unusable (%s); falling back to onnxruntime", record.role, exc)
        return None


def runs_int8(choice: BackendChoice) -> bool:
    """int8 copies are for ONNX Runtime's CPU provider; TensorRT and CUDA run the fp32 file (FP16 engines)."""
    return choice.backend == "onnxruntime" and choice.providers[0] == "CPUExecutionProvider"


def choose_record(
    records: dict[str, ModelRecord], role: str, int8: Collection[str], choice: BackendChoice
) -> ModelRecord:
    """The role's int8 copy when it is asked for and the CPU runs it, else its fp32 file.

    A missing int8 copy (`make models` without WATCHBUY_QUANTIZATION_DATA) falls back to fp32, with a warning.
    """
    if role in int8 and runs_int8(choice):
        key = manifest_key(role, INT8)
        if key in records:
            return records[key]
        log.warning("%s: no int8 copy in the manifest, running fp32 (`%s` with WATCHBUY_QUANTIZATION_DATA makes one)",
                    role, FIX_COMMAND)
    if role not in records:
        raise ModelArtifactError(f"the model manifest has no {role}; run `{FIX_COMMAND}`")
    return records[role]


def open_verified(
    model_dir: Path,
    spec: ModelSpec,
    record: ModelRecord,
    threads: int,
    providers: Sequence[str] | None,
    choice: BackendChoice,
) -> LoadedModel:
    path = verify_file(model_dir, record)
    try:
        session = _open_engine(model_dir, path, record, choice) or open_session(
            path, intra_op_threads=threads, preferred=providers,
            reason=choice.reason if choice.backend == "onnxruntime" else f"TensorRT engine failed; {choice.reason}",
        )
    except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        raise ModelArtifactError(f"{spec.role} model {path} cannot be loaded ({exc}); run `{FIX_COMMAND}`") from exc
    check_signature(spec, session)
    log.info("%s (%s) on %s (%s): %s", spec.role, record.precision, session.provider, session.backend, session.reason)
    return LoadedModel(record=record, session=session)


def load_models(
    model_dir: Path,
    detector_config: DetectorConfig,
    intra_op_threads: int = 0,
    providers: Sequence[str] | None = None,
    backend: str = "auto",
    int8: Collection[str] = frozenset(),
) -> Models:
    """Verify (manifest, size, sha256, signature) and open both models on the chosen backend.

    The roles in `int8` run from their int8 copy when the CPU runs them. Raises ModelArtifactError (also when
    `backend` names one that cannot run here).
    """
    records = read_manifest(model_dir)
    try:
        choice = choose_backend(backend, preferred=providers)
    except (BackendUnavailable, ValueError) as exc:
        raise ModelArtifactError(str(exc)) from exc
    det, emb = (
        open_verified(model_dir, spec, choose_record(records, spec.role, int8, choice), intra_op_threads, providers,
                      choice)
        for spec in (DETECTOR, EMBEDDER)
    )
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
    if record.embedder_sha256 != embedder.identity:
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
        DetectorConfig.from_settings(settings),
        intra_op_threads=settings.intra_op_threads,
        providers=settings.execution_providers,
        backend=settings.inference_backend,
        int8=frozenset(settings.int8_models),
    )
