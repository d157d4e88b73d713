/* The restart policy of docs/supervision.md as pure functions: what they
 * read is their arguments (the clock and the jitter's random draw
 * included), what they change is the history they are given. worker_run.c
 * owns the timers and the process; the unit tests drive every branch here
 * without either. */
#ifndef PLUGD_RESTART_H
#define PLUGD_RESTART_H

#include <stdbool.h>

#define RESTART_BACKOFF_BASE 0.1  /* s, before the second restart; doubles after */
#define RESTART_BACKOFF_MAX  30.0 /* s */
#define RESTART_JITTER       0.2  /* +-20 % */

/* One worker's restarts: the times of those within the crash-loop window
 * (as many as the limit, however large: the array grows to it), and how
 * far the backoff has gone. Zeroed: nothing counted; restart_free frees
 * it. */
struct restart_history {
    double *times;
    unsigned n_times;
    unsigned cap;  /* of times */
    unsigned step; /* 0: the next restart is immediate */
};

/* The manifest's crash-loop limits. */
struct restart_limits {
    double window;    /* s */
    int max_restarts; /* this many restarts within `window`: the next crash gives up */
};

/* What follows a crash, or a start that failed for a passing reason. */
struct restart_decision {
    bool is_crash_loop; /* give up: no restart, nothing counted */
    double delay;       /* s until the restart, when there is one */
};

/* An operator's start: no restart counted, the backoff from the start. */
void restart_reset(struct restart_history *h);

/* Frees the history's times; it is then zeroed (nothing counted). */
void restart_free(struct restart_history *h);

/* The delay before restart `step` (0 the first): 0, then 0.1 s doubling up
 * to 30 s, times 1 +- 20 % as `draw` (uniform in [0, 1]) goes from 0 to 1. */
double restart_backoff(unsigned step, double draw);

/* Forgets the restarts older than the window and counts one at `now`:
 * true; false, counting nothing, when the window already holds
 * max_restarts (a crash loop). Out of memory to grow the history, the
 * oldest time gives way: the loop is then found later, never sooner. */
bool restart_count(struct restart_history *h, const struct restart_limits *l, double now);

/* A run ended at `now` (or a start failed then): `running_since` is when it
 * began running (0: it never did); one that ran for a whole window starts
 * the backoff over. Counts the restart and returns its delay, or the crash
 * loop. `draw` is the jitter's random number in [0, 1]. */
struct restart_decision restart_decide(struct restart_history *h, const struct restart_limits *l,
                                       double now, double running_since, double draw);

/* An errno of a failed start that waiting can change (a full process
 * table, fds or memory short, a signal, an entrypoint open for writing):
 * the start is retried like a crash. Any other (ENOENT, EACCES, ENOEXEC,
 * ...) fails it for good. */
bool restart_is_transient(int error);

#endif
