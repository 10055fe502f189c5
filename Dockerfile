# SYN4PSE node images. One Dockerfile, one target per accelerator:
#
#   docker build -t syn4pse:latest .                                   CPU, any x86-64 or arm64 CPU
#   docker build --target cuda -t syn4pse:cuda .                       NVIDIA (CUDA 11.8 runtime bundled)
#   docker build --target vulkan -t syn4pse:vulkan .                   AMD / Intel / NVIDIA through Vulkan
#   docker build --platform linux/arm64 --target jetson -t syn4pse:jetson .   Jetson (L4T, CUDA from JetPack)
#
#   docker run -p 8080:8080 -p 50051:50051 -e SYN4PSE_API_KEYS=sk-your-key \
#       -v ./syn4pse.toml:/app/syn4pse.toml -v ./models:/app/models -v syn4pse-data:/app/data syn4pse:latest
#
# The image reads /app/syn4pse.toml (relative model paths resolve against /app, so "models/x.gguf"
# is the /app/models volume) and every SYN4PSE_* variable; node data (identity, pulled models,
# peers) lives in the /app/data volume. It listens on 0.0.0.0 inside the container, so the node
# starts only with API keys (-e SYN4PSE_API_KEYS=KEY1,KEY2, or server.api_keys in the file;
# clients send "Authorization: Bearer KEY") or with the explicit opt-out for a trusted LAN
# (-e SYN4PSE_SERVER_ALLOW_UNAUTHENTICATED=true); without either it exits naming both. The
# HEALTHCHECK (`syn4pse health`) reads the same variables, so it keeps working with keys set.
#
# Every build step is a script of the repository, and the image runs the release archive that
# `task dist` makes. No Docker engine runs where CI does, so CI runs those same scripts on the host
# and starts the unpacked archive as this image starts it (scripts/check-dist.sh).
ARG GO_VERSION=1.26.8
# Jetson builds on NVIDIA's JetPack image (Ubuntu 22.04 with CUDA for L4T, arm64).
ARG JETPACK_IMAGE=nvcr.io/nvidia/l4t-jetpack:r36.4.0
FROM golang:${GO_VERSION}-bookworm AS go

# ---- build: the portable binary, every CPU variant, the release archive unpacked in /out ----
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY scripts/ scripts/
COPY go.mod go.sum ./
COPY tools/go.mod tools/go.sum tools/
RUN bash scripts/install-deps.sh
COPY . .
RUN bash scripts/build-native.sh cpu bin/lib \
    && bash scripts/go.sh build -o bin/syn4pse ./cmd/syn4pse \
    && bash scripts/dist.sh \
    && mkdir -p /out && tar -C /out -xzf dist/syn4pse-*.tar.gz

FROM build AS build-cuda
# Compute capabilities compiled (one architecture takes tens of minutes on 2 cores).
ARG CUDA_ARCHITECTURES="75;80;86;89;90"
RUN bash scripts/install-cuda.sh \
    && CUDA_ARCHITECTURES="$CUDA_ARCHITECTURES" bash scripts/build-native.sh cuda bin/lib \
    && TAGS=cuda bash scripts/dist.sh \
    && rm -rf /out && mkdir -p /out && tar -C /out -xzf dist/syn4pse-*.tar.gz

FROM build AS build-vulkan
RUN bash scripts/build-native.sh vulkan bin/lib \
    && TAGS=vulkan bash scripts/dist.sh \
    && rm -rf /out && mkdir -p /out && tar -C /out -xzf dist/syn4pse-*.tar.gz

FROM ${JETPACK_IMAGE} AS build-jetson
# Orin (87) and Xavier (72).
ARG CUDA_ARCHITECTURES="72;87"
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:/usr/local/cuda/bin:$PATH
WORKDIR /src
COPY . .
RUN bash scripts/install-deps.sh \
    && bash scripts/build-native.sh cpu bin/lib \
    && CUDA_ARCHITECTURES="$CUDA_ARCHITECTURES" bash scripts/build-native.sh cuda bin/lib \
    && bash scripts/go.sh build -tags cuda -o bin/syn4pse ./cmd/syn4pse \
    && TAGS=cuda bash scripts/dist.sh \
    && rm -rf /out && mkdir -p /out && tar -C /out -xzf dist/syn4pse-*.tar.gz

# ---- runtime images ----
# The speech engines: PocketSphinx and flite are linked (their shared libraries and the English
# model come from Debian), espeak-ng, lame and opusenc run as programs.
FROM debian:bookworm-slim AS runtime
ARG EXTRA_PACKAGES=""
RUN apt-get update \
    && apt-get install -y --no-install-recommends libstdc++6 ca-certificates $EXTRA_PACKAGES \
        libpocketsphinx3 libsphinxbase3 pocketsphinx-en-us libflite1 espeak-ng lame opus-tools \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin syn4pse \
    && mkdir -p /app/models /app/data && chown syn4pse:syn4pse /app/models /app/data
WORKDIR /app
ENV SYN4PSE_SERVER_HOST=0.0.0.0 \
    SYN4PSE_DATA_DIR=/app/data
EXPOSE 8080 50051
VOLUME ["/app/models", "/app/data"]
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["/app/syn4pse", "health"]
USER syn4pse
ENTRYPOINT ["/app/syn4pse"]
CMD ["serve"]

FROM runtime AS cuda
# The NVIDIA container toolkit mounts the driver; cudart and cublas come in /app/lib.
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=build-cuda --chown=root:root /out/syn4pse/ /app/

FROM runtime AS vulkan
USER root
RUN apt-get update && apt-get install -y --no-install-recommends libvulkan1 mesa-vulkan-drivers \
    && rm -rf /var/lib/apt/lists/*
USER syn4pse
COPY --from=build-vulkan --chown=root:root /out/syn4pse/ /app/

FROM runtime AS jetson
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=build-jetson --chown=root:root /out/syn4pse/ /app/

# The default target, last: the CPU image (ghcr.io/ekisa-team/syn4pse:latest).
FROM runtime AS cpu
COPY --from=build --chown=root:root /out/syn4pse/ /app/
