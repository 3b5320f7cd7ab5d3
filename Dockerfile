# syntax=docker/dockerfile:1
# watchbuy API image. CPU by default:
#   docker build -t watchbuy:cpu .
# GPU variant: install the `gpu` extra on an NVIDIA base that ships CUDA/cuDNN/TensorRT and Python 3.11, e.g.
#   docker build --build-arg RUNTIME=gpu --build-arg BASE_IMAGE=nvcr.io/nvidia/tensorrt:<tag>-py3 -t watchbuy:gpu .
# (the base must provide `python` 3.11 with venv support; run the container with `--gpus all`).
#
# Models are not baked in: `make models` on the host (export needs torch, which this image never installs)
# fills var/models, mounted read-only at /models; indexes live on the /indexes volume (see docker-compose.yml).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ARG RUNTIME=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --upgrade pip && pip install ".[${RUNTIME}]"

FROM ${BASE_IMAGE} AS runtime
ARG RUNTIME=cpu
LABEL org.opencontainers.image.title="watchbuy" org.opencontainers.image.description="watchbuy API (${RUNTIME})"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WATCHBUY_MODEL_DIR=/models \
    WATCHBUY_INDEX_ROOT=/indexes \
    WATCHBUY_HOST=0.0.0.0 \
    WATCHBUY_PORT=8000
RUN useradd --system --uid 10001 --user-group --no-create-home watchbuy \
    && mkdir -p /models /indexes /catalogues \
    && chown watchbuy:watchbuy /indexes
COPY --from=builder /opt/venv /opt/venv
VOLUME ["/models", "/indexes"]
USER watchbuy
WORKDIR /tmp
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["uvicorn", "--factory", "service.app:create_app", "--host", "0.0.0.0", "--port", "8000"]
