// Package llamacpp is SYN4PSE's own thin cgo layer over llama.h, ggml-backend.h and mtmd.h
// (multimodal projectors: images and audio into a model's embeddings).
//
// The compiled llama.cpp and ggml come from the Go module github.com/ollama/ollama (its llama
// package and sub-packages hold the vendored sources and their cgo build); this package only
// includes the headers and calls the C API, so it owns what that binding lacks: freeing contexts,
// contexts with or without embeddings (and reading per-token output vectors, for encoders such as
// WavTokenizer's decoder), an abort callback for cancellation, llama.cpp's sampler chain,
// chat templates, system info and log routing. The header paths reach the compiler through
// CGO_CPPFLAGS, set once in scripts/go.sh.
//
// Ownership: every C object has exactly one Go owner with a Close method; Close is idempotent.
// A Model must outlive the Contexts and Samplers made from it. None of the types are safe for
// concurrent use unless a method says so.
package llamacpp
