# syntax=docker/dockerfile:1
# watchbuy image: the API by default, the indexer with `python -m watchbuy build-index ...` as the command.
#
#   docker build -t watchbuy:cpu .                                  # slim CPU image (python:3.11-slim)
#   docker build --build-arg RUNTIME=gpu -t watchbuy:gpu .          # NVIDIA TensorRT base + CUDA/TensorRT runtimes
#   docker build --build-arg RUNTIME=gpu --build-arg TENSORRT_IMAGE=nvcr.io/nvidia/tensorrt:<tag>-py3 ...
#
# RUNTIME picks the base stage (`base-cpu` or `base-gpu`) and the install extra (`.[cpu]` or `.[gpu]`,
# mutually exclusive). The TensorRT images ship another Python than the project's 3.11, so the GPU base
# adds a relocatable CPython 3.11 (python-build-standalone, installed by uv); the CUDA, cuDNN and TensorRT
# libraries come from the base image. Run GPU containers with `--gpus all` (compose: deploy/compose.gpu.yml).
#
# Nothing model- or data-shaped is baked in: `make models` on the host (the export needs torch, which this
# image never installs) fills var/models, mounted read-only at /models; indexes live on /indexes (the
# indexer writes there, replicas read), catalogues on /catalogues. The process runs as uid 10001.
ARG RUNTIME=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG TENSORRT_IMAGE=nvcr.io/nvidia/tensorrt:24.12-py3
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.5.11

FROM ${UV_IMAGE} AS uv

# --- bases: each provides `python3.11` on PATH -------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base-cpu

FROM ${TENSORRT_IMAGE} AS base-gpu
ENV UV_PYTHON_INSTALL_DIR=/opt/python
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    uv python install 3.11 \
    && ln -s "$(dirname "$(dirname "$(uv python find 3.11)")")" /opt/python/3.11
ENV PATH=/opt/python/3.11/bin:$PATH
RUN python3.11 -c "import sys, venv; assert sys.version_info[:2] == (3, 11)"

# --- builder: a venv with the dependencies of the package and its runtime extra ---------------------
# The project's own code is not installed into the venv but copied to /app (PYTHONPATH), files beside the
# modules (service/static/, the demo page) included.
FROM base-${RUNTIME} AS builder
ARG RUNTIME
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY watchbuy watchbuy
COPY models models
COPY indexer indexer
COPY service service
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --upgrade pip && pip install ".[${RUNTIME}]" && pip uninstall --yes watchbuy \
    && python -m compileall -q /opt/venv /src/watchbuy /src/models /src/indexer /src/service

# --- runtime: the venv on the same base, non-root ----------------------------------------------------
FROM base-${RUNTIME} AS runtime
ARG RUNTIME
LABEL org.opencontainers.image.title="watchbuy" \
      org.opencontainers.image.description="watchbuy API and indexer (${RUNTIME})"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WATCHBUY_MODEL_DIR=/models \
    WATCHBUY_INDEX_ROOT=/indexes \
    WATCHBUY_CATALOGUE_ROOT=/catalogues \
    WATCHBUY_HOST=0.0.0.0 \
    WATCHBUY_PORT=8000 \
    WATCHBUY_DRAIN_SECONDS=5
RUN groupadd --system --gid 10001 watchbuy \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin watchbuy \
    && mkdir -p /models /indexes /catalogues /app \
    && chown watchbuy:watchbuy /indexes
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /src/watchbuy /app/watchbuy
COPY --from=builder /src/models /app/models
COPY --from=builder /src/indexer /app/indexer
COPY --from=builder /src/service /app/service
VOLUME ["/models", "/indexes"]
USER 10001:10001
WORKDIR /app
EXPOSE 8000
# Liveness only (the process serves); orchestrators use /readyz for traffic (it fails while draining).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# SIGTERM: /readyz fails for WATCHBUY_DRAIN_SECONDS, then uvicorn closes the listener and gives in-flight
# requests up to 20 s (keep the orchestrator's stop grace period above the sum).
CMD ["uvicorn", "--factory", "service.app:create_app", "--host", "0.0.0.0", "--port", "8000", \
     "--timeout-graceful-shutdown", "20"]
