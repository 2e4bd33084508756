# syntax=docker/dockerfile:1.7
# Avatar Server, slim CPU image: `avaluma serve` (gRPC :8080, HTTP API :8081, Prometheus metrics :9464 when enabled).
# Renders on the CPU (>= 100 frames/s per core for a 512x512 avatar) with the in-process lip-sync model, or uses
# Triton for inference (AVALUMA_LIPSYNC__NAME=triton). Build from the repository root:
#   docker build -f deploy/docker/server.Dockerfile -t avaluma-server .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -U pip
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto proto
COPY core core
COPY renderer renderer
COPY agent agent
# server: LiveKit sessions + HTTP API; triton: the Triton lip-sync client; otel: traces and metrics (off until
# OTEL_* variables ask for them).
RUN /opt/venv/bin/pip install ".[server,triton,otel]"

FROM python:${PYTHON_VERSION}-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
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
