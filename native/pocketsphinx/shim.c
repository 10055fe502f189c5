#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sphinxbase/err.h>
#include <sphinxbase/feat.h>
#include <sphinxbase/cmn.h>
#include <sphinxbase/cmd_ln.h>
#include <sphinxbase/logmath.h>
#include <sphinxbase/ckd_alloc.h>

#include "shim.h"
#include "_cgo_export.h"

// The error buffer of the syn_ps_new running on this thread, if any: ps_init reports why it
// failed only through the log, so the last error it logs becomes the Go error.
static __thread char *init_err;
static __thread size_t init_errlen;

static void log_cb(void *user_data, err_lvl_t lvl, const char *fmt, ...) {
	char msg[1024];
	va_list ap;
	(void)user_data;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (lvl >= ERR_ERROR && init_err != NULL && init_errlen > 0) {
		snprintf(init_err, init_errlen, "%s", msg);
	}
	synPocketsphinxLog((int)lvl, msg);
}

void syn_ps_log_init(void) {
	err_set_callback(log_cb, NULL);
	// Some output (the configuration table) bypasses the callback and goes to this file.
	err_set_logfp(NULL);
}

syn_ps *syn_ps_new(int argc, char **argv, char *err, size_t errlen) {
	cmd_ln_t *config;
	ps_decoder_t *ps;
	syn_ps *d;
	cmn_t *cmn;
	feat_t *feat;

	init_err = err;
	init_errlen = errlen;
	config = cmd_ln_parse_r(NULL, ps_args(), argc, argv, TRUE);
	ps = config != NULL ? ps_init(config) : NULL;
	// The decoder holds its own reference to config.
	if (config != NULL) {
		cmd_ln_free_r(config);
	}
	init_err = NULL;
	init_errlen = 0;
	if (ps == NULL) {
		return NULL;
	}
	d = calloc(1, sizeof *d);
	if (d == NULL) {
		ps_free(ps);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->ps = ps;
	feat = ps_get_feat(ps);
	cmn = feat != NULL ? feat->cmn_struct : NULL;
	if (cmn != NULL) {
		d->cmn_mean = calloc(cmn->veclen, sizeof(mfcc_t));
		d->cmn_sum = calloc(cmn->veclen, sizeof(mfcc_t));
		if (d->cmn_mean == NULL || d->cmn_sum == NULL) {
			syn_ps_free(d);
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		memcpy(d->cmn_mean, cmn->cmn_mean, cmn->veclen * sizeof(mfcc_t));
		memcpy(d->cmn_sum, cmn->sum, cmn->veclen * sizeof(mfcc_t));
		d->cmn_nframe = cmn->nframe;
		d->cmn_type = feat->cmn;
	}
	return d;
}

void syn_ps_free(syn_ps *d) {
	if (d == NULL) {
		return;
	}
	if (d->ps != NULL) {
		ps_free(d->ps);
	}
	free(d->cmn_mean);
	free(d->cmn_sum);
	free(d);
}

int syn_ps_start_stream(syn_ps *d) {
	feat_t *feat = ps_get_feat(d->ps);
	cmn_t *cmn = feat != NULL ? feat->cmn_struct : NULL;
	if (cmn != NULL && d->cmn_mean != NULL) {
		memcpy(cmn->cmn_mean, d->cmn_mean, cmn->veclen * sizeof(mfcc_t));
		memcpy(cmn->sum, d->cmn_sum, cmn->veclen * sizeof(mfcc_t));
		cmn->nframe = d->cmn_nframe;
		feat->cmn = d->cmn_type;
	}
	return ps_start_stream(d->ps);
}

double syn_ps_posterior(syn_ps *d, int32 logprob) {
	return logmath_exp(ps_get_logmath(d->ps), logprob);
}

long syn_ps_config_int(syn_ps *d, const char *name) {
	return cmd_ln_int_r(ps_get_config(d->ps), name);
}

double syn_ps_config_float(syn_ps *d, const char *name) {
	return cmd_ln_float_r(ps_get_config(d->ps), name);
}
