"""Internal results → response models (the one place that shapes the JSON answer)."""

from __future__ import annotations

from indexer.store import StreamIndex
from models.loader import LoadedModel, Models
from service.aggregate import AbstainThreshold
from service.schemas import (
    BoxMatchOut,
    BoxOut,
    CohortInfo,
    CropsOut,
    FrameOut,
    IdentifyResponse,
    ModelInfo,
    ModelsResponse,
    ProductOut,
    SmoothingOut,
    StreamInfo,
    TimingsOut,
)
from service.values import Identification


def _r(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def identify_response(result: Identification) -> IdentifyResponse:
    frames = [
        FrameOut(
            frame_index=frame.frame_index,
            width=frame.width,
            height=frame.height,
            boxes=[
                BoxOut(
                    box=[_r(v, 1) for v in evidence.proposal.box],
                    label=evidence.proposal.label,
                    detector_score=_r(evidence.proposal.score),
                    matches=[
                        BoxMatchOut(
                            product_id=m.product_id,
                            image_id=m.image_id,
                            image_box=[_r(v, 1) for v in m.image_box],
                            similarity=_r(m.similarity),
                        )
                        for m in evidence.matches
                    ],
                )
                for evidence in frame.boxes
            ],
        )
        for frame in result.frames
    ]
    return IdentifyResponse(
        stream_id=result.stream_id,
        index_version=result.index_version,
        abstain=result.abstain,
        products=[
            ProductOut(product_id=p.product_id, score=_r(p.score), title=p.title, evidence_frames=list(p.frames))
            for p in result.products
        ],
        frames=frames,
        timings_ms=TimingsOut(**{k: _r(v, 2) for k, v in result.timings_ms.items()}),
        crops=CropsOut(embedded=result.crops.embedded, reused=result.crops.reused),
        smoothing=SmoothingOut(
            applied=result.smoothing.applied, window=result.smoothing.window, reason=result.smoothing.reason
        ),
    )


def stream_info(index: StreamIndex, threshold: AbstainThreshold) -> StreamInfo:
    return StreamInfo(
        stream_id=index.stream_id,
        index_version=index.version,
        products=index.n_products,
        vectors=index.n_vectors,
        built_at=index.built_at,
        abstain_threshold=threshold.value,
        abstain_threshold_source=threshold.source,
    )


def models_response(models: Models) -> ModelsResponse:
    cohort = models.cohort
    return ModelsResponse(
        models=[model_info(m) for m in models.loaded],
        cohort=None if cohort is None else CohortInfo(
            name=cohort.name,
            sha256=cohort.sha256,
            vectors=len(cohort.vectors),
            dim=cohort.dim,
            embedder_sha256=models.identity("embedder"),  # the loader refuses a cohort pinned to another
        ),
    )


def model_info(model: LoadedModel) -> ModelInfo:
    return ModelInfo(
        role=model.record.role,
        name=model.record.name,
        sha256=model.record.sha256,
        precision=model.record.precision,
        identity=model.record.identity,
        provider=model.session.provider,
        providers=list(model.session.providers),
        backend=model.session.backend,
        backend_reason=model.session.reason,
    )
