/* The control socket: a unix stream socket speaking JSON lines (one request
 * per line, `id` echoed), the shared command table behind it, callers
 * authorized by SO_PEERCRED. docs/control.md is the contract. */
#ifndef PLUGD_CONTROL_H
#define PLUGD_CONTROL_H

#include <stdbool.h>
#include <sys/types.h>

#include "plugd.h"

#define CONTROL_LINE_MAX   (1024 * 1024)      /* longest request line */
#define CONTROL_HIGH_WATER (1024 * 1024)      /* queued output that makes events wait */
#define CONTROL_OUT_LIMIT  (64 * 1024 * 1024) /* queued output that closes the client */
#define CONTROL_MAX_ALLOW  32

struct control_options {
    const char *path; /* socket path */
    uid_t allow_uids[CONTROL_MAX_ALLOW];
    size_t n_allow_uids;
    gid_t allow_gids[CONTROL_MAX_ALLOW];
    size_t n_allow_gids;
};

struct control;

/* Listens on o->path (a stale socket file is replaced, a live one is an
 * error), mode 0660. NULL with err. */
struct control *control_open(struct plugd *d, const struct control_options *o,
                             struct plugd_error *err);
/* Closes every client and the socket, and removes the socket file. */
void control_close(struct control *ctl);

#endif
