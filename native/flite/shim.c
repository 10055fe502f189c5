#include <string.h>

#include <flite.h>
#include <cst_audio.h>

#include "shim.h"
#include "_cgo_export.h"

// Debian's voice libraries declare their registration functions in no header.
cst_voice *register_cmu_us_kal(const char *voxdir);
cst_voice *register_cmu_us_kal16(const char *voxdir);
cst_voice *register_cmu_us_awb(const char *voxdir);
cst_voice *register_cmu_us_rms(const char *voxdir);
cst_voice *register_cmu_us_slt(const char *voxdir);

cst_voice *syn_flite_register(const char *name) {
	static int initialised;
	if (!initialised) {
		flite_init();
		initialised = 1;
	}
	if (strcmp(name, "kal") == 0) return register_cmu_us_kal(NULL);
	if (strcmp(name, "kal16") == 0) return register_cmu_us_kal16(NULL);
	if (strcmp(name, "awb") == 0) return register_cmu_us_awb(NULL);
	if (strcmp(name, "rms") == 0) return register_cmu_us_rms(NULL);
	if (strcmp(name, "slt") == 0) return register_cmu_us_slt(NULL);
	return NULL;
}

int syn_flite_sample_rate(cst_voice *voice) {
	return flite_get_param_int(voice->features, "sample_rate", 16000);
}

// stream is one synthesis' state, on syn_flite_synth's stack.
typedef struct stream {
	uintptr_t handle;
	int streamed; // samples handed to Go so far
	int stopped;
} stream;

static int deliver(stream *s, const cst_wave *w, int start, int size) {
	if (s->stopped) {
		return CST_AUDIO_STREAM_STOP;
	}
	if (size > 0 && !synFliteAudio(s->handle, (short *)&w->samples[start], size)) {
		s->stopped = 1;
		return CST_AUDIO_STREAM_STOP;
	}
	s->streamed = start + size;
	return CST_AUDIO_STREAM_CONT;
}

static int on_audio(const cst_wave *w, int start, int size, int last,
		cst_audio_streaming_info *asi) {
	(void)last;
	return deliver((stream *)asi->userdata, w, start, size);
}

int syn_flite_synth(cst_voice *voice, const char *text, float duration_stretch, int chunk,
		uintptr_t handle) {
	stream s = {handle, 0, 0};
	cst_utterance *u = new_utterance();
	cst_audio_streaming_info *asi = new_audio_streaming_info();
	cst_wave *w;

	asi->asc = on_audio;
	asi->userdata = &s;
	if (chunk > 0) {
		asi->min_buffsize = chunk;
	}
	// The utterance owns asi from here: deleting the utterance deletes the feature's value,
	// which deletes asi.
	feat_set(u->features, "streaming_info", audio_streaming_info_val(asi));
	if (duration_stretch > 0 && duration_stretch != 1) {
		// Relative to the voice's own stretch (kal16 sets one), which this shadows.
		feat_set_float(u->features, "duration_stretch",
				duration_stretch * flite_get_param_float(voice->features, "duration_stretch", 1));
	}
	utt_set_input_text(u, text);
	// flite_do_synth deletes the utterance itself when it fails.
	u = flite_do_synth(u, voice, utt_synth);
	if (u == NULL) {
		return -1;
	}
	// Every wave synthesiser of these voices streams; any audio it did not stream goes now.
	w = utt_wave(u);
	if (!s.stopped && w != NULL && w->num_samples > s.streamed) {
		deliver(&s, w, s.streamed, w->num_samples - s.streamed);
	}
	delete_utterance(u);
	return s.stopped ? 1 : 0;
}
