# syntax=docker/dockerfile:1.7
# Avatar Server on a CUDA base, for GPU machines: the same `avaluma serve` with the CUDA runtime, cuDNN and
# onnxruntime-gpu, so GPU lip-sync backends (plugins, or Triton's client next to a local Triton) find CUDA.
# With the bundled backends the GPU work runs in Triton (deploy/docker/triton.Dockerfile); frames are composited on
# the CPU either way. Build from the repository root:
#   docker build -f deploy/docker/server-gpu.Dockerfile -t avaluma-server:gpu .
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
# Ubuntu 24.04 ships Python 3.12 (Avaluma needs >= 3.11).
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv && /opt/venv/bin/pip install -U pip
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto proto
COPY core core
COPY renderer renderer
COPY agent agent
RUN /opt/venv/bin/pip install ".[server,triton,otel]" \
    && /opt/venv/bin/pip uninstall -y onnxruntime \
    && /opt/venv/bin/pip install onnxruntime-gpu

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    AVALUMA_SERVER__HOST=0.0.0.0 AVALUMA_SERVER__PORT=8080 AVALUMA_HTTP__PORT=8081 AVALUMA_AVATARS_DIR=/app/avatars
RUN useradd --system --uid 10001 --home-dir /app avaluma
COPY --from=build /opt/venv /opt/venv
COPY --chown=avaluma assets/avatars /app/avatars
COPY deploy/docker/grpc_health.py /usr/local/bin/grpc_health.py
WORKDIR /app
USER avaluma
EXPOSE 8080 8081 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/grpc_health.py", "127.0.0.1:8080"]
ENTRYPOINT ["avaluma", "serve"]
