// C helpers for the Go layer: PocketSphinx's variadic and global parts, which cgo cannot call
// or should not touch directly. Every function here is called from decoder.go only.
#ifndef SYN4PSE_POCKETSPHINX_SHIM_H
#define SYN4PSE_POCKETSPHINX_SHIM_H

#include <stddef.h>
#include <pocketsphinx.h>

// syn_ps is one decoder and the live CMN state it had when it was made, restored at the start
// of every stream so that a decoder's history never changes what it hears next.
typedef struct syn_ps {
	ps_decoder_t *ps;
	mfcc_t *cmn_mean;
	mfcc_t *cmn_sum;
	int32 cmn_nframe;
	int cmn_type;
} syn_ps;

// syn_ps_log_init routes PocketSphinx's log (a process-wide callback) to Go. Call it once.
void syn_ps_log_init(void);

// syn_ps_new makes a decoder from argc/argv (name, value pairs for ps_args()). On failure it
// returns NULL and leaves the library's last error message in err.
syn_ps *syn_ps_new(int argc, char **argv, char *err, size_t errlen);

// syn_ps_free frees the decoder and the saved state.
void syn_ps_free(syn_ps *d);

// syn_ps_start_stream resets stream time, noise statistics and live CMN to their initial values.
int syn_ps_start_stream(syn_ps *d);

// syn_ps_posterior converts a log-domain probability of the decoder to 0..1.
double syn_ps_posterior(syn_ps *d, int32 logprob);

// syn_ps_config_int and syn_ps_config_float read a setting of the decoder by its type in
// ps_args() (-frate is an integer, -samprate a float); 0 when it is not set.
long syn_ps_config_int(syn_ps *d, const char *name);
double syn_ps_config_float(syn_ps *d, const char *name);

#endif
