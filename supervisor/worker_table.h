/* A worker's behaviour as data, s6-supervise style: its phases, the named
 * events that happen to it, and wk_table[phase][event], the action each
 * event takes in each phase and the phase it leads to. libev callbacks
 * (worker_events.c) only turn what happened into an event and call
 * wk_dispatch; the actions are worker_run.c's. docs/supervision.md renders
 * the table, and tests/supervisor/test_worker_table.c checks the doc
 * against it. */
#ifndef PLUGD_WORKER_TABLE_H
#define PLUGD_WORKER_TABLE_H

#include <msgpack.h>
#include <stdbool.h>

struct worker;
struct ipc_message;

/* Worker states as the owner sees them: a coarse projection of the phase
 * (wk_phases[].state). */
enum wk_state { WK_STOPPED, WK_STARTING, WK_RUNNING, WK_STOPPING, WK_BACKOFF };

/* Where a worker is. Every phase knows whether a process exists: only the
 * reap of CHILD_EXITED ends one, only a spawn makes one. */
enum wk_phase {
    WK_PH_STOPPED,        /* no process, none wanted */
    WK_PH_AWAITING_HELLO, /* spawned; the handshake deadline runs */
    WK_PH_INITIALIZING,   /* hello accepted, plugd.initialize sent */
    WK_PH_RUNNING,        /* serves calls; health checks run */
    WK_PH_DRAINING,       /* plugd.shutdown sent; the drain deadline runs */
    WK_PH_TERMINATING,    /* SIGTERM sent; the term deadline runs */
    WK_PH_KILLING,        /* stopping, SIGKILL sent: only its exit is awaited */
    WK_PH_FAULTED,        /* killed for a fault: its exit is followed by a restart */
    WK_PH_FAILING,        /* killed, can never work: its exit leaves it failed */
    WK_PH_BACKOFF,        /* no process; the backoff deadline runs, then a spawn */
    WK_PH_FAILED,         /* no process: given up (crash loop, a start that can never work) */
    WK_PHASE_COUNT
};

/* What can happen to a worker. */
enum wk_event {
    WK_EV_START,           /* the owner asks for it to run (worker_start) */
    WK_EV_STOP,            /* the owner asks for it to stop (worker_stop) */
    WK_EV_REPORT,          /* the child's sandbox report came */
    WK_EV_REPORT_REFUSED,  /* ... and a layer was refused under --sandbox strict */
    WK_EV_EXEC_OK,         /* the report socket ended without an error: the program runs */
    WK_EV_EXEC_PASSING,    /* a child step failed with an errno that waiting can change */
    WK_EV_EXEC_FAILED,     /* a child step failed for good (ENOENT, EACCES, ...) */
    WK_EV_HELLO,           /* plugd.hello with a protocol plugd speaks */
    WK_EV_HELLO_REFUSED,   /* a plugd.hello with a protocol plugd does not speak */
    WK_EV_MESSAGE,         /* any other request or notification from the worker */
    WK_EV_INITIALIZED,     /* plugd.initialize answered */
    WK_EV_INIT_PASSING,    /* plugd.initialize lost: its deadline or the channel */
    WK_EV_INIT_REFUSED,    /* the worker answered plugd.initialize with an error */
    WK_EV_HEALTH_DUE,      /* the health interval passed */
    WK_EV_HEALTH_OK,       /* plugd.health said "ok" */
    WK_EV_HEALTH_DEGRADED, /* plugd.health said "degraded" */
    WK_EV_HEALTH_FAILED,   /* plugd.health said "error", failed or timed out */
    WK_EV_CHANNEL_CLOSED,  /* the worker closed its channel (EOF) */
    WK_EV_CHANNEL_BROKEN,  /* the channel failed: malformed, oversize, unwritable */
    WK_EV_VIOLATION,       /* a system call outside the allow-list (on_violation kill) */
    WK_EV_CONFIG_RESTART,  /* a config change needs a restart (no plugd.config_changed) */
    WK_EV_CHILD_EXITED,    /* the process was reaped */
    WK_EV_DEADLINE,        /* the phase's deadline passed: handshake, drain, term, backoff */
    WK_EVENT_COUNT
};

/* What an event does. IGNORE and IMPOSSIBLE are explicit entries: an event
 * that means nothing in a phase, and one that cannot happen there (logged
 * as a defect if it does). */
enum wk_action {
    WK_ACT_UNSET, /* zero: a cell nobody wrote (the unit test finds none) */
    WK_ACT_IGNORE,
    WK_ACT_IMPOSSIBLE,
    WK_ACT_START,             /* forget the failure and the restart history, spawn */
    WK_ACT_SPAWN,             /* fork and exec (spawn.c), arm the handshake deadline */
    WK_ACT_REARM_HANDSHAKE,   /* the handshake deadline counts from the report */
    WK_ACT_FAIL,              /* keep the reason, SIGKILL: it can never work */
    WK_ACT_FAULT,             /* keep the reason, count a fault, SIGKILL */
    WK_ACT_KILL_CLOSED,       /* SIGKILL one that closed its channel (a crash, not a fault yet) */
    WK_ACT_EXPIRE_HANDSHAKE,  /* a fault: no hello within the deadline */
    WK_ACT_INITIALIZE,        /* answer the hello, send plugd.initialize */
    WK_ACT_REFUSE_HELLO,      /* answer the hello with the versions plugd speaks; fail */
    WK_ACT_REFUSE_FIRST,      /* fail: the first message was not plugd.hello */
    WK_ACT_ANSWER_LATE_HELLO, /* refuse a hello after the handshake */
    WK_ACT_SERVE,             /* host services (services.c) */
    WK_ACT_RUN,               /* note the hooks, arm the health checks */
    WK_ACT_CHECK_HEALTH,      /* send plugd.health */
    WK_ACT_NOTE_HEALTHY,      /* tell a recovery, arm the next check */
    WK_ACT_NOTE_DEGRADED,     /* tell a degradation, arm the next check */
    WK_ACT_SHUTDOWN,          /* send plugd.shutdown, arm the drain deadline */
    WK_ACT_TERMINATE,         /* SIGTERM, arm the term deadline */
    WK_ACT_KILL,              /* SIGKILL: the term deadline passed */
    WK_ACT_CANCEL_RESTART,    /* a stop wins over a restart to come */
    WK_ACT_REAP_AND_RESTART,  /* a run ended unasked: restart policy (restart.c) */
    WK_ACT_REAP_STOPPED,      /* a stop ended */
    WK_ACT_REAP_FAILED,       /* a failing run ended */
    WK_ACTION_COUNT
};

/* A phase's columns: its name, the owner's view of it, and whether a
 * process exists in it. */
struct wk_phase_info {
    const char *name;
    enum wk_state state;
    bool is_failed;   /* worker.is_failed while in it */
    bool has_process; /* a child exists (maybe exiting) */
};

/* One cell: the action, the phase it leads to, and the other phases the
 * action may choose instead (a mask of 1u << phase: a spawn that fails, a
 * crash loop). */
struct wk_transition {
    enum wk_action action;
    enum wk_phase next;
    unsigned alt;
};

extern const struct wk_phase_info wk_phases[WK_PHASE_COUNT];
extern const char *const wk_event_names[WK_EVENT_COUNT];
extern const char *const wk_action_names[WK_ACTION_COUNT];
extern const struct wk_transition wk_table[WK_PHASE_COUNT][WK_EVENT_COUNT];

/* What came with an event; every field may be empty. */
struct wk_input {
    const struct ipc_message *msg; /* WK_EV_HELLO*, WK_EV_MESSAGE: the message */
    const uint32_t *msgid;         /* ... its msgid when it is a request */
    const msgpack_object *result;  /* WK_EV_INITIALIZED: the answer */
    const char *why;               /* faults and failures: the reason */
    int status;                    /* WK_EV_CHILD_EXITED: the wait status */
};

/* Runs wk_table[w->phase][ev] on `w`: the action, then the phase it chose
 * (one the cell allows). A phase change stops the deadline first (the
 * action arms the new one) and the health timer outside running; the
 * owner's on_state runs when the projection changed, then the events that
 * came while the action ran. */
void wk_dispatch(struct worker *w, enum wk_event ev, const struct wk_input *in);

/* The action `a` on `w` (worker_run.c): the phase to enter, `next` or one
 * of the cell's alternatives. */
enum wk_phase wk_act(struct worker *w, enum wk_action a, const struct wk_input *in,
                     enum wk_phase next);

/* Everything of one run of the process goes (worker_run.c): channel (its
 * pending calls get connection_closed, which are no events then), report
 * socket, log pipes (read to the end), subscription, sandbox, child
 * watcher. The timers are wk_dispatch's. */
void worker_release_run(struct worker *w);

/* The phase's name ("awaiting_hello"). */
const char *wk_phase_name(enum wk_phase p);

#endif
