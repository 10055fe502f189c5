// Package pocketsphinx is SYN4PSE's thin cgo layer over PocketSphinx 5prealpha, the version
// Debian 12 ships (libpocketsphinx-dev, libsphinxbase-dev; found through pkg-config).
//
// A Decoder is one ps_decoder_t. Decoding goes stream, then utterances: StartStream at the start
// of each audio stream, then StartUtt, ProcessRaw as samples arrive, EndUtt at a pause or the end,
// and Hypothesis and Segments for what was heard. Segment frames count from the stream's start.
//
// Invariants:
//   - Ownership: a Decoder owns its ps_decoder_t, its configuration and a copy of its initial
//     live-CMN state (one C allocation, freed by Close). Close is idempotent.
//   - Determinism: StartStream restores the decoder's initial cepstral-mean and noise estimates,
//     so a decoder that heard other audio before decodes a stream as a fresh one would.
//   - A Decoder is not safe for concurrent use; different Decoders may run on different
//     goroutines at once (PocketSphinx keeps no decoding state outside its decoder).
//   - The library's log is process-wide: the first NewDecoder routes it to slog at debug level
//     (component=pocketsphinx), and the last error it logs while a decoder is made becomes
//     that NewDecoder's error.
package pocketsphinx
