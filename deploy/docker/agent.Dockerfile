# syntax=docker/dockerfile:1.7
# The LiveKit agent (agent-1): `avaluma agent start`, STT -> LLM -> TTS with an Avaluma avatar.
# Provider plugins are pip distributions (plugins/*); pick the set with PLUGINS. Build from the repository root:
#   docker build -f deploy/docker/agent.Dockerfile -t avaluma-agent .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ARG PLUGINS="assemblyai openai cartesia silero turn-detector noise piper"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -U pip
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto proto
COPY core core
COPY renderer renderer
COPY agent agent
COPY plugins plugins
RUN /opt/venv/bin/pip install ".[agent,otel]" ./plugins/livekit-plugin $(for p in $PLUGINS; do printf ' ./plugins/%s' "$p"; done)

FROM python:${PYTHON_VERSION}-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --create-home --home-dir /app avaluma
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER avaluma
# Models some plugins fetch on first use (turn detector, VAD) are fetched at build time when the network allows.
RUN avaluma agent download-files || echo "model download skipped: the agent fetches them at start-up"
# The worker's health endpoint (LiveKit Agents): 200 once registered with the LiveKit server.
EXPOSE 8081
ENTRYPOINT ["avaluma", "agent"]
CMD ["start"]
