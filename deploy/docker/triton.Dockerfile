# syntax=docker/dockerfile:1.7
# NVIDIA Triton (NGC image) serving Avaluma's lip-sync model through the python backend. model.py imports the
# avaluma package (the same numerical code as the in-process backend) and runs onnxruntime-gpu.
# The model repository is mounted at /models by compose.yaml; this image also bakes a copy in for Kubernetes.
#   docker build -f deploy/docker/triton.Dockerfile -t avaluma-triton .
# 25.01 is the first NGC Triton on Ubuntu 24.04 (Python 3.12; Avaluma needs >= 3.11).
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:25.01-py3
FROM ${TRITON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_BREAK_SYSTEM_PACKAGES=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto proto
COPY core core
COPY renderer renderer
COPY agent agent
# No extras: model.py needs only the numerical core; onnxruntime-gpu replaces the CPU build.
RUN pip install . && pip uninstall -y onnxruntime && pip install onnxruntime-gpu && rm -rf /src
COPY deploy/triton/model_repository /models
WORKDIR /
EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=poll", "--repository-poll-secs=5", \
     "--trace-config=mode=opentelemetry", "--trace-config=rate=100", "--trace-config=level=TIMESTAMPS", \
     "--trace-config=opentelemetry,url=http://otel-collector:4318/v1/traces"]
