/* A test's client of plugd's control socket: JSON lines over a real unix
 * socket, with the answer/stream distinction of docs/control.md. */
#ifndef PLUGD_TEST_CONTROL_CLIENT_H
#define PLUGD_TEST_CONTROL_CLIENT_H

#include <jansson.h>
#include <stddef.h>

#include "plugd_harness.h"

struct ctl_client {
    int fd;
    char *buf; /* bytes read and not yet returned as lines */
    size_t len, cap;
};

/* Connects to the control socket of `h`'s plugd (asserts it can). */
void ctl_client_open(struct ctl_client *c, const struct harness *h);
void ctl_client_close(struct ctl_client *c);

/* Sends one line (a newline is added). */
void ctl_client_send(struct ctl_client *c, const char *line);

/* The next JSON line (a new reference), or NULL after `seconds` or at EOF. */
json_t *ctl_client_read(struct ctl_client *c, double seconds);

/* The next answer ({"ok": ...}); the event and log lines before it are
 * skipped (asserts one comes within 15 s). */
json_t *ctl_client_answer(struct ctl_client *c);

/* Sends `line` and returns its answer ({"ok": ...}), skipping the event and
 * log lines before it. */
json_t *ctl_client_request(struct ctl_client *c, const char *line);

/* Sends `line`, asserts it succeeds, returns its result (a new reference). */
json_t *ctl_client_expect_ok(struct ctl_client *c, const char *line);

#endif
