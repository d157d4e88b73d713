/* One routine that starts a worker process: its fds, the fork, in the
 * child every setup step, the sandbox (confine.c, sandbox/), the report to
 * plugd and the exec; in plugd, reading what the child reported. A child
 * step that fails is named in what plugd reads ("cannot chdir to /srv/x"
 * and its errno), so no failure reads as another. docs/supervision.md,
 * "start". */
#ifndef PLUGD_SPAWN_H
#define PLUGD_SPAWN_H

#include <ev.h>
#include <stdbool.h>
#include <sys/types.h>

#include "confine.h"
#include "manifest.h"
#include "plugd/error.h"

#define SPAWN_CHANNEL_FD 3                      /* the worker's PLUGD_FD */
#define SPAWN_REPORT_FD  (SPAWN_CHANNEL_FD + 1) /* the report socket, in the child until exec */
#define SPAWN_STEP_MAX   200

/* plugd's ends of a started worker's fds, O_CLOEXEC, the caller's. */
struct spawn_fds {
    int channel;  /* the channel's socket */
    int out, err; /* the read ends of its stdout and stderr */
    int report;   /* the report socket (non-blocking): spawn_read */
};

/* What the child said on the report socket so far. Zeroed at each spawn. */
struct spawn_result {
    bool has_report;           /* the confinement's report holds the child's */
    int error;                 /* the errno of the step that failed, 0: none */
    char step[SPAWN_STEP_MAX]; /* that step: "cannot chdir to /srv/x", "cannot start /srv/x/run" */
};

/* Forks the worker of `m` under `c` (prepared here). In the child: death
 * signal, own session, fd 0 /dev/null, 1 and 2 the log pipes, the channel
 * at fd 3, the environment, the package folder as cwd, the sandbox, the
 * report, the exec. Its pid with `fds` set; -1 with `err` and errno kept
 * (the caller tells a passing failure from one for good). */
pid_t spawn_worker(struct wk_confinement *c, struct ev_loop *loop, const struct manifest *m,
                   struct spawn_fds *fds, struct plugd_error *err);

#define SPAWN_GOT_REPORT 1 /* the sandbox report came (its notification fd taken) */
#define SPAWN_ENDED      2 /* the socket is done: close it; r->error says if a step failed */

/* Reads what the child sent on `fd` (plugd's report socket) into `r` and
 * c->report, taking the seccomp notification fd; `name` names the plugin
 * in plugd's log. A mask of SPAWN_*: 0 while the child has more to say. */
int spawn_read(int fd, struct wk_confinement *c, struct ev_loop *loop, const char *name,
               struct spawn_result *r);

#endif
