/* Checks on sandboxed workers shared by the sandbox tests: the layers in a
 * status, and calls to the probe plugin (examples/probe), which answers
 * {ok, error: "ENOENT"...} for each way out it tries. */
#ifndef PLUGD_PROBE_CHECKS_H
#define PLUGD_PROBE_CHECKS_H

#include <jansson.h>
#include <stdbool.h>

#include "plugd_harness.h"

#if defined(__SANITIZE_ADDRESS__)
#define IS_SANITIZER_BUILD 1
#else
#define IS_SANITIZER_BUILD 0
#endif

/* Whether a status's "sandbox" object lists `layer` as active. */
bool has_layer(json_t *sandbox, const char *layer);
/* Whether this machine has the v1 memory hierarchy (as CI's does). */
bool is_v1_machine(void);

/* Calls the probe; its answer (the caller frees), NULL when the call failed
 * (the worker was killed). */
json_t *probe(struct harness *h, const char *plugin, const char *method, const char *params);
/* The probe answers that `method` failed with errno `error` ("EACCES"). */
void expect_refused(struct harness *h, const char *plugin, const char *method, const char *params,
                    const char *error);
void expect_allowed(struct harness *h, const char *plugin, const char *method, const char *params);
/* The call kills the probe; plugd names `syscall` in an event and in
 * status, and restarts it. */
void expect_violation(struct harness *h, const char *plugin, const char *method, const char *params,
                      const char *syscall);

#endif
