/* The control socket: a unix stream socket speaking JSON lines (one request
 * per line, `id` echoed), the shared command table behind it, callers
 * authorized by SO_PEERCRED. docs/control.md is the contract. */
#ifndef PLUGD_CONTROL_H
#define PLUGD_CONTROL_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "plugd.h"

#define CONTROL_LINE_MAX (1024 * 1024) /* longest request line, its newline not counted */
#define CONTROL_HIGH_WATER                                                                         \
    (1024 * 1024) /* queued output that makes events wait and stops reading */
#define CONTROL_LOW_WATER      (256 * 1024)        /* ... and below which reading resumes */
#define CONTROL_OUT_LIMIT      (64 * 1024 * 1024)  /* queued output that closes the client */
#define CONTROL_MEMORY_MAX     (128 * 1024 * 1024) /* buffers of all clients together */
#define CONTROL_LINES_PER_TURN 16 /* lines of one client handled before the loop runs again */
#define CONTROL_READ_CHUNK     65536
#define CONTROL_MAX_PENDING    64  /* requests answered later (call, config) before reading stops */
#define CONTROL_MAX_CLIENTS    128 /* connections at once; more are refused with an error line */
#define CONTROL_BACKLOG        SOMAXCONN
#define CONTROL_ACCEPT_PAUSE   0.1 /* s without accepting when out of fds and no reserve */
#define CONTROL_EXIT_FLUSH     1.0 /* s at exit to send what clients are owed */
#define CONTROL_MAX_ALLOW      32

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
/* Sends every client what it is owed (answers, the last events and log
 * records, for up to CONTROL_EXIT_FLUSH s), closes every client and the
 * socket, and removes the socket file. */
void control_close(struct control *ctl);

#endif
