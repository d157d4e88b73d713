/* One plugin's worker process: its public face (worker.c: create, start,
 * stop, routed calls, config changes). What it does is the action table of
 * worker_table.c; the actions are worker_run.c's, the libev callbacks that
 * feed it worker_events.c's. docs/protocol.md is the contract with the
 * worker; docs/supervision.md the policy. */
#ifndef PLUGD_WORKER_H
#define PLUGD_WORKER_H

#include <ev.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "confine.h"
#include "events.h"
#include "logs.h"
#include "manifest.h"
#include "plugd/error.h"
#include "plugd/ipc.h"
#include "restart.h"
#include "spawn.h"
#include "stream.h"
#include "worker_table.h"

#define PLUGD_VERSION      "0.1.0"
#define WK_LATENCY_SAMPLES 256 /* routed calls kept for the latency percentiles */
#define WK_DEFERRED_MAX    4   /* events kept while an action runs */

struct worker;
struct services;

/* Tells the owner that a worker changed state (stopped, running, ...),
 * once the change is complete; it may start or stop the worker again, but
 * not free it. */
typedef void (*wk_state_fn)(struct worker *w, enum wk_state from, void *ud);

/* Tells the owner that the worker's health changed: `why` is the worker's
 * reason when it is degraded, NULL when it recovered. */
typedef void (*wk_health_fn)(struct worker *w, const char *why, void *ud);

/* Completes an operation: err NULL on success. */
typedef void (*wk_done_fn)(const struct plugd_error *err, void *ud);

/* Completes a routed call: exactly once, err NULL on success. */
typedef void (*wk_reply_fn)(const struct plugd_error *err, const msgpack_object *result, void *ud);

/* An event that came while an action ran, with its reason. */
struct wk_deferred {
    enum wk_event ev;
    bool has_why;
    char why[PLUGD_ERROR_MESSAGE_MAX + 64];
};

struct worker {
    struct manifest *m;
    struct ev_loop *loop;
    enum wk_phase phase; /* where it is in worker_table.c; changed by wk_dispatch only */
    enum wk_state state; /* the owner's view: wk_phases[phase].state */
    bool is_failed;      /* wk_phases[phase].is_failed: given up (crash loop, a start
                            that can never work); the next worker_start clears it */
    bool is_dispatching; /* an action runs: events meanwhile wait in `deferred` */
    struct wk_deferred deferred[WK_DEFERRED_MAX]; /* in order */
    unsigned n_deferred;
    bool is_healthy; /* last health answer was "ok" */
    pid_t pid;       /* > 0 exactly while the phase has a process */
    struct ipc_conn *conn;
    ev_child child_w;
    ev_io exec_w;           /* the sandbox report, then EOF (exec succeeded) or an errno */
    ev_timer deadline_t;    /* the phase's deadline: handshake, drain, term, backoff */
    ev_timer health_t;      /* running: the next plugd.health */
    bool has_config_hook;   /* the worker applies config changes itself */
    bool has_validate_hook; /* the worker validates configs */
    char fault[PLUGD_ERROR_MESSAGE_MAX]; /* why plugd killed it, if it did */

    struct log_source src;
    struct log_tail tail;
    struct log_budget budget;
    struct log_stream out, err;

    ev_tstamp spawned_at, running_since;
    struct restart_history restart; /* supervisor/restart.c reads and counts it */

    uint64_t restarts, calls, call_errors, faults;
    uint64_t late_replies;                   /* answers that came after their call's deadline */
    uint64_t dropped_notifications;          /* notifications plugd could not serve */
    struct log_budget notice_pace;           /* paces the log lines about them */
    struct plugd_error last_error;           /* code PLUGD_OK while none */
    double call_latency[WK_LATENCY_SAMPLES]; /* s, the newest routed calls (a ring) */
    uint64_t n_latency;                      /* calls recorded, ever */
    char last_health[160];                   /* the last health answer, "" before one */
    char last_exit[160];                     /* "exited with 3", "killed by SIGSEGV" */

    wk_state_fn on_state;
    wk_health_fn on_health; /* optional */
    void *ud;

    struct services *services;     /* what host services stand on; NULL: none */
    struct stream stream;          /* this run's events (events.subscribe), stream.c */
    struct wk_confinement confine; /* the sandbox of this run */
    struct spawn_result spawn;     /* what this run's child reported */
    bool is_violation;             /* this run ended for a refused system call */
    bool has_closed_channel;       /* this run closed its channel before it exited */
};

/* A worker for manifest `m` (taken over), stopped. */
struct worker *worker_new(struct ev_loop *loop, struct manifest *m, wk_state_fn on_state, void *ud);
/* Frees a stopped worker (kills it first if it still runs). */
void worker_free(struct worker *w);

/* Starts the worker (clears a failed state). 0, or -1 with err. */
int worker_start(struct worker *w, struct plugd_error *err);

/* Begins the graceful stop: plugd.shutdown, drain, SIGTERM, SIGKILL (a
 * worker not speaking the protocol yet gets SIGTERM at once); a restart to
 * come is cancelled. The state reaches WK_STOPPED through on_state. */
void worker_stop(struct worker *w);

/* Routes a call to the running worker; `timeout` <= 0 takes the manifest's
 * call timeout. `reply` runs exactly once (possibly before this returns). */
void worker_call(struct worker *w, const char *method, const msgpack_object *params, double timeout,
                 wk_reply_fn reply, void *ud);

/* Changes the plugin's config (`config`, the operator's JSON object,
 * borrowed; the worker gets it over the manifest's defaults): the worker
 * validates it when it has plugd.validate_config, applies it hot with
 * plugd.config_changed, and is otherwise stopped gracefully, for its owner
 * to start again with it. A stopped worker gets it at its next start.
 * `done` runs once. */
void worker_set_config(struct worker *w, json_t *config, wk_done_fn done, void *ud);

/* Replaces the manifest of a stopped worker (takes ownership of `m`; the
 * old one is freed): the next start runs that version. */
void worker_set_manifest(struct worker *w, struct manifest *m);

const char *worker_state_name(enum wk_state s);

#endif
