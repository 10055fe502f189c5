// Package flite is SYN4PSE's thin cgo layer over flite 2.2 (Debian's flite1-dev) and its
// compiled-in US English voices.
//
// Invariants:
//   - Voices are flite globals: each is registered once per process, on first use, and never
//     freed (their data is static in the voice libraries; a voice struct is a few kilobytes).
//   - Thread safety: flite reference-counts the values in a voice's features without atomics,
//     and every synthesis reads them, so syntheses on one voice run one at a time (a mutex per
//     voice). Per-request settings (duration_stretch, the audio stream) go on the utterance,
//     never on the shared voice. Different voices share only data that no synthesis writes (the
//     lexicon, phone sets, regex tables), so they run in parallel.
//   - Ownership: Synthesize allocates the utterance and its stream state in C and frees them
//     before it returns; samples handed to Go are copies.
//   - The clustergen voices (slt, awb, rms) draw unvoiced excitation from C's rand(), so their
//     samples differ slightly from call to call (same length, waveform correlation above 0.96);
//     the diphone voices (kal, kal16) are deterministic.
//   - flite exits the process on an internal error (cst_error without a jump buffer); none is
//     known for plain text input.
package flite
