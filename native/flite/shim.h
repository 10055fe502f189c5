// C helpers for the Go layer: voice registration and one synthesis with streamed audio.
// Every function here is called from flite.go only.
#ifndef SYN4PSE_FLITE_SHIM_H
#define SYN4PSE_FLITE_SHIM_H

#include <stdint.h>
#include <flite.h>

// syn_flite_register registers the named compiled-in voice ("kal", "kal16", "awb", "rms",
// "slt") and returns it, or NULL for another name. Not thread-safe: flite's registration
// functions test and set globals. The voice lives as long as the process.
cst_voice *syn_flite_register(const char *name);

// syn_flite_synth speaks text with voice, calling the Go function behind handle with the audio
// as it is made, in pieces of at least chunk samples (the last may be shorter). duration_stretch
// (when > 0 and not 1) multiplies the voice's own; it and the stream go on the utterance's own
// features, so the voice is only read.
// It returns 0 when done, 1 when the Go side stopped it, -1 when flite failed.
int syn_flite_synth(cst_voice *voice, const char *text, float duration_stretch, int chunk,
		uintptr_t handle);

// syn_flite_sample_rate is the voice's output rate in Hz.
int syn_flite_sample_rate(cst_voice *voice);

#endif
