# SYN4PSE node image, CPU by default.
#
#   docker build -t syn4pse .
#   docker run -p 8080:8080 -p 50051:50051 -v $PWD/models:/models -v $PWD/syn4pse.toml:/etc/syn4pse/syn4pse.toml syn4pse
#
# CPU_FLAGS sets the instruction set ggml is compiled for. The image must run on other machines
# than the one that built it, so the default targets x86-64-v3 (AVX2, FMA: Intel Haswell and AMD
# Zen or newer) instead of -march=native; use "-O3 -march=x86-64-v4" for AVX-512 hosts.
# GPU images (CUDA, Vulkan) come with the accelerator backends.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
ARG CPU_FLAGS="-O3 -march=x86-64-v3"
WORKDIR /src
COPY scripts/install-deps.sh scripts/
COPY go.mod go.sum ./
COPY tools/go.mod tools/go.sum tools/
RUN bash scripts/install-deps.sh
COPY . .
RUN OLLAMA_DIR=$(go list -m -f '{{.Dir}}' github.com/ollama/ollama) && \
    CGO_ENABLED=1 CGO_CFLAGS="$CPU_FLAGS" CGO_CXXFLAGS="$CPU_FLAGS" \
    CGO_CPPFLAGS="-I$OLLAMA_DIR/llama/llama.cpp/include -I$OLLAMA_DIR/ml/backend/ggml/ggml/include" \
    go build -trimpath -ldflags='-s -w' -o /out/syn4pse ./cmd/syn4pse

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libstdc++6 ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/syn4pse --create-home syn4pse
COPY --from=build /out/syn4pse /usr/local/bin/syn4pse
USER syn4pse
ENV SYN4PSE_CONFIG=/etc/syn4pse/syn4pse.toml \
    SYN4PSE_DATA_DIR=/var/lib/syn4pse \
    SYN4PSE_SERVER_HOST=0.0.0.0
EXPOSE 8080 50051
ENTRYPOINT ["syn4pse"]
CMD ["serve"]
