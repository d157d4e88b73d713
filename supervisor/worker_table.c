#include "worker_table.h"

#include <stdio.h>
#include <string.h>

#include "logs.h"
#include "worker.h"

/* The columns of each phase. `state` is what the owner and `status` see;
 * a worker killed for a fault or a failure is on its way down: stopping. */
const struct wk_phase_info wk_phases[WK_PHASE_COUNT] = {
    [WK_PH_STOPPED] = {"stopped", WK_STOPPED, false, false},
    [WK_PH_AWAITING_HELLO] = {"awaiting_hello", WK_STARTING, false, true},
    [WK_PH_INITIALIZING] = {"initializing", WK_STARTING, false, true},
    [WK_PH_RUNNING] = {"running", WK_RUNNING, false, true},
    [WK_PH_DRAINING] = {"draining", WK_STOPPING, false, true},
    [WK_PH_TERMINATING] = {"terminating", WK_STOPPING, false, true},
    [WK_PH_KILLING] = {"killing", WK_STOPPING, false, true},
    [WK_PH_FAULTED] = {"faulted", WK_STOPPING, false, true},
    [WK_PH_FAILING] = {"failing", WK_STOPPING, true, true},
    [WK_PH_BACKOFF] = {"backoff", WK_BACKOFF, false, false},
    [WK_PH_FAILED] = {"failed", WK_STOPPED, true, false},
};

const char *const wk_event_names[WK_EVENT_COUNT] = {
    [WK_EV_START] = "start",
    [WK_EV_STOP] = "stop",
    [WK_EV_REPORT] = "report",
    [WK_EV_REPORT_REFUSED] = "report_refused",
    [WK_EV_EXEC_OK] = "exec_ok",
    [WK_EV_EXEC_PASSING] = "exec_passing",
    [WK_EV_EXEC_FAILED] = "exec_failed",
    [WK_EV_HELLO] = "hello",
    [WK_EV_HELLO_REFUSED] = "hello_refused",
    [WK_EV_MESSAGE] = "message",
    [WK_EV_INITIALIZED] = "initialized",
    [WK_EV_INIT_PASSING] = "init_passing",
    [WK_EV_INIT_REFUSED] = "init_refused",
    [WK_EV_HEALTH_DUE] = "health_due",
    [WK_EV_HEALTH_OK] = "health_ok",
    [WK_EV_HEALTH_DEGRADED] = "health_degraded",
    [WK_EV_HEALTH_FAILED] = "health_failed",
    [WK_EV_CHANNEL_CLOSED] = "channel_closed",
    [WK_EV_CHANNEL_BROKEN] = "channel_broken",
    [WK_EV_VIOLATION] = "violation",
    [WK_EV_CONFIG_RESTART] = "config_restart",
    [WK_EV_CHILD_EXITED] = "child_exited",
    [WK_EV_DEADLINE] = "deadline",
};

const char *const wk_action_names[WK_ACTION_COUNT] = {
    [WK_ACT_UNSET] = "UNSET",
    [WK_ACT_IGNORE] = "ignore",
    [WK_ACT_IMPOSSIBLE] = "impossible",
    [WK_ACT_START] = "start",
    [WK_ACT_SPAWN] = "spawn",
    [WK_ACT_REARM_HANDSHAKE] = "rearm_handshake",
    [WK_ACT_FAIL] = "fail",
    [WK_ACT_FAULT] = "fault",
    [WK_ACT_KILL_CLOSED] = "kill_closed",
    [WK_ACT_EXPIRE_HANDSHAKE] = "expire_handshake",
    [WK_ACT_INITIALIZE] = "initialize",
    [WK_ACT_REFUSE_HELLO] = "refuse_hello",
    [WK_ACT_REFUSE_FIRST] = "refuse_first",
    [WK_ACT_ANSWER_LATE_HELLO] = "answer_late_hello",
    [WK_ACT_SERVE] = "serve",
    [WK_ACT_RUN] = "run",
    [WK_ACT_CHECK_HEALTH] = "check_health",
    [WK_ACT_NOTE_HEALTHY] = "note_healthy",
    [WK_ACT_NOTE_DEGRADED] = "note_degraded",
    [WK_ACT_SHUTDOWN] = "shutdown",
    [WK_ACT_TERMINATE] = "terminate",
    [WK_ACT_KILL] = "kill",
    [WK_ACT_CANCEL_RESTART] = "cancel_restart",
    [WK_ACT_REAP_AND_RESTART] = "reap_and_restart",
    [WK_ACT_REAP_STOPPED] = "reap_stopped",
    [WK_ACT_REAP_FAILED] = "reap_failed",
};

/* A cell: the action and the phase it leads to; OR adds the phases the
 * action may choose instead. */
#define TO(a, n)                                                                                   \
    {                                                                                              \
        WK_ACT_##a, WK_PH_##n, 0                                                                   \
    }
#define OR(a, n, m)                                                                                \
    {                                                                                              \
        WK_ACT_##a, WK_PH_##n, m                                                                   \
    }
#define PH(p) (1u << WK_PH_##p)
/* a spawn that fails waits out the backoff, gives up, or cannot attach the channel */
#define SPAWNED (PH(BACKOFF) | PH(FAILED) | PH(FAULTED))
/* the restart policy: the backoff, or a crash loop */
#define RESTARTED PH(FAILED)
/* a stop whose plugd.shutdown cannot be sent goes on to SIGTERM at once */
#define DRAINED PH(TERMINATING)
/* a send that fails is a fault */
#define SENT PH(FAULTED)

/* A phase with no process: the process events cannot happen in it (its
 * watchers, channel and timers are gone). */
#define NO_PROCESS(P)                                                                              \
    [WK_EV_REPORT] = TO(IMPOSSIBLE, P), [WK_EV_REPORT_REFUSED] = TO(IMPOSSIBLE, P),                \
    [WK_EV_EXEC_OK] = TO(IMPOSSIBLE, P), [WK_EV_EXEC_PASSING] = TO(IMPOSSIBLE, P),                 \
    [WK_EV_EXEC_FAILED] = TO(IMPOSSIBLE, P), [WK_EV_HELLO] = TO(IMPOSSIBLE, P),                    \
    [WK_EV_HELLO_REFUSED] = TO(IMPOSSIBLE, P), [WK_EV_MESSAGE] = TO(IMPOSSIBLE, P),                \
    [WK_EV_INITIALIZED] = TO(IMPOSSIBLE, P), [WK_EV_INIT_PASSING] = TO(IMPOSSIBLE, P),             \
    [WK_EV_INIT_REFUSED] = TO(IMPOSSIBLE, P), [WK_EV_HEALTH_DUE] = TO(IMPOSSIBLE, P),              \
    [WK_EV_HEALTH_OK] = TO(IMPOSSIBLE, P), [WK_EV_HEALTH_DEGRADED] = TO(IMPOSSIBLE, P),            \
    [WK_EV_HEALTH_FAILED] = TO(IMPOSSIBLE, P), [WK_EV_CHANNEL_CLOSED] = TO(IMPOSSIBLE, P),         \
    [WK_EV_CHANNEL_BROKEN] = TO(IMPOSSIBLE, P), [WK_EV_VIOLATION] = TO(IMPOSSIBLE, P),             \
    [WK_EV_CHILD_EXITED] = TO(IMPOSSIBLE, P)

/* A phase on the way down, SIGKILL sent or about to be: what the worker
 * says no longer matters; a failure its child reports still makes it
 * failed. */
#define GOING(P)                                                                                   \
    [WK_EV_START] = TO(IGNORE, P), [WK_EV_REPORT] = TO(IGNORE, P),                                 \
    [WK_EV_REPORT_REFUSED] = TO(FAIL, FAILING), [WK_EV_EXEC_OK] = TO(IGNORE, P),                   \
    [WK_EV_EXEC_FAILED] = TO(FAIL, FAILING), [WK_EV_INITIALIZED] = TO(IGNORE, P),                  \
    [WK_EV_INIT_PASSING] = TO(IGNORE, P), [WK_EV_INIT_REFUSED] = TO(IGNORE, P),                    \
    [WK_EV_HEALTH_DUE] = TO(IMPOSSIBLE, P), [WK_EV_HEALTH_OK] = TO(IGNORE, P),                     \
    [WK_EV_HEALTH_DEGRADED] = TO(IGNORE, P), [WK_EV_HEALTH_FAILED] = TO(IGNORE, P),                \
    [WK_EV_CHANNEL_CLOSED] = TO(IGNORE, P), [WK_EV_CONFIG_RESTART] = TO(IGNORE, P)

/* docs/supervision.md renders this table; the unit test compares them. */
const struct wk_transition wk_table[WK_PHASE_COUNT][WK_EVENT_COUNT] =
    {
        [WK_PH_STOPPED] =
            {
                NO_PROCESS(STOPPED),
                [WK_EV_START] = OR(START, AWAITING_HELLO, SPAWNED),
                [WK_EV_STOP] = TO(IGNORE, STOPPED),
                [WK_EV_CONFIG_RESTART] = TO(IGNORE, STOPPED),
                [WK_EV_DEADLINE] = TO(IMPOSSIBLE, STOPPED),
            },
        [WK_PH_AWAITING_HELLO] =
            {
                [WK_EV_START] = TO(IGNORE, AWAITING_HELLO),
                [WK_EV_STOP] = TO(TERMINATE, TERMINATING),
                [WK_EV_REPORT] = TO(REARM_HANDSHAKE, AWAITING_HELLO),
                [WK_EV_REPORT_REFUSED] = TO(FAIL, FAILING),
                [WK_EV_EXEC_OK] = TO(IGNORE, AWAITING_HELLO),
                [WK_EV_EXEC_PASSING] = TO(FAULT, FAULTED),
                [WK_EV_EXEC_FAILED] = TO(FAIL, FAILING),
                [WK_EV_HELLO] = OR(INITIALIZE, INITIALIZING, SENT),
                [WK_EV_HELLO_REFUSED] = TO(REFUSE_HELLO, FAILING),
                [WK_EV_MESSAGE] = TO(REFUSE_FIRST, FAILING),
                [WK_EV_INITIALIZED] = TO(IMPOSSIBLE, AWAITING_HELLO),
                [WK_EV_INIT_PASSING] = TO(IMPOSSIBLE, AWAITING_HELLO),
                [WK_EV_INIT_REFUSED] = TO(IMPOSSIBLE, AWAITING_HELLO),
                [WK_EV_HEALTH_DUE] = TO(IMPOSSIBLE, AWAITING_HELLO),
                [WK_EV_HEALTH_OK] = TO(IMPOSSIBLE, AWAITING_HELLO),
                [WK_EV_HEALTH_DEGRADED] = TO(IMPOSSIBLE, AWAITING_HELLO),
                [WK_EV_HEALTH_FAILED] = TO(IMPOSSIBLE, AWAITING_HELLO),
                [WK_EV_CHANNEL_CLOSED] = TO(KILL_CLOSED, FAULTED),
                [WK_EV_CHANNEL_BROKEN] = TO(FAULT, FAULTED),
                [WK_EV_VIOLATION] = TO(FAULT, FAULTED),
                [WK_EV_CONFIG_RESTART] = TO(IGNORE, AWAITING_HELLO),
                [WK_EV_CHILD_EXITED] = OR(REAP_AND_RESTART, BACKOFF, RESTARTED),
                [WK_EV_DEADLINE] = TO(EXPIRE_HANDSHAKE, FAULTED),
            },
        [WK_PH_INITIALIZING] =
            {
                [WK_EV_START] = TO(IGNORE, INITIALIZING),
                [WK_EV_STOP] = TO(TERMINATE, TERMINATING),
                [WK_EV_REPORT] = TO(IGNORE, INITIALIZING),
                [WK_EV_REPORT_REFUSED] = TO(FAIL, FAILING),
                [WK_EV_EXEC_OK] = TO(IGNORE, INITIALIZING),
                [WK_EV_EXEC_PASSING] = TO(FAULT, FAULTED),
                [WK_EV_EXEC_FAILED] = TO(FAIL, FAILING),
                [WK_EV_HELLO] = TO(ANSWER_LATE_HELLO, INITIALIZING),
                [WK_EV_HELLO_REFUSED] = TO(ANSWER_LATE_HELLO, INITIALIZING),
                [WK_EV_MESSAGE] = TO(SERVE, INITIALIZING),
                [WK_EV_INITIALIZED] = TO(RUN, RUNNING),
                [WK_EV_INIT_PASSING] = TO(FAULT, FAULTED),
                [WK_EV_INIT_REFUSED] = TO(FAIL, FAILING),
                [WK_EV_HEALTH_DUE] = TO(IMPOSSIBLE, INITIALIZING),
                [WK_EV_HEALTH_OK] = TO(IMPOSSIBLE, INITIALIZING),
                [WK_EV_HEALTH_DEGRADED] = TO(IMPOSSIBLE, INITIALIZING),
                [WK_EV_HEALTH_FAILED] = TO(IMPOSSIBLE, INITIALIZING),
                [WK_EV_CHANNEL_CLOSED] = TO(KILL_CLOSED, FAULTED),
                [WK_EV_CHANNEL_BROKEN] = TO(FAULT, FAULTED),
                [WK_EV_VIOLATION] = TO(FAULT, FAULTED),
                [WK_EV_CONFIG_RESTART] = TO(IGNORE, INITIALIZING),
                [WK_EV_CHILD_EXITED] = OR(REAP_AND_RESTART, BACKOFF, RESTARTED),
                [WK_EV_DEADLINE] = TO(IMPOSSIBLE, INITIALIZING),
            },
        [WK_PH_RUNNING] =
            {
                [WK_EV_START] = TO(IGNORE, RUNNING),
                [WK_EV_STOP] = OR(SHUTDOWN, DRAINING, DRAINED),
                [WK_EV_REPORT] = TO(IGNORE, RUNNING),
                [WK_EV_REPORT_REFUSED] = TO(FAIL, FAILING),
                [WK_EV_EXEC_OK] = TO(IGNORE, RUNNING),
                [WK_EV_EXEC_PASSING] = TO(FAULT, FAULTED),
                [WK_EV_EXEC_FAILED] = TO(FAIL, FAILING),
                [WK_EV_HELLO] = TO(ANSWER_LATE_HELLO, RUNNING),
                [WK_EV_HELLO_REFUSED] = TO(ANSWER_LATE_HELLO, RUNNING),
                [WK_EV_MESSAGE] = TO(SERVE, RUNNING),
                [WK_EV_INITIALIZED] = TO(IMPOSSIBLE, RUNNING),
                [WK_EV_INIT_PASSING] = TO(IMPOSSIBLE, RUNNING),
                [WK_EV_INIT_REFUSED] = TO(IMPOSSIBLE, RUNNING),
                [WK_EV_HEALTH_DUE] = OR(CHECK_HEALTH, RUNNING, SENT),
                [WK_EV_HEALTH_OK] = TO(NOTE_HEALTHY, RUNNING),
                [WK_EV_HEALTH_DEGRADED] = TO(NOTE_DEGRADED, RUNNING),
                [WK_EV_HEALTH_FAILED] = TO(FAULT, FAULTED),
                [WK_EV_CHANNEL_CLOSED] = TO(KILL_CLOSED, FAULTED),
                [WK_EV_CHANNEL_BROKEN] = TO(FAULT, FAULTED),
                [WK_EV_VIOLATION] = TO(FAULT, FAULTED),
                [WK_EV_CONFIG_RESTART] = OR(SHUTDOWN, DRAINING, DRAINED),
                [WK_EV_CHILD_EXITED] = OR(REAP_AND_RESTART, BACKOFF, RESTARTED),
                [WK_EV_DEADLINE] = TO(IMPOSSIBLE, RUNNING),
            },
        [WK_PH_DRAINING] =
            {
                GOING(DRAINING),
                [WK_EV_STOP] = TO(IGNORE, DRAINING),
                [WK_EV_EXEC_PASSING] = TO(FAULT, KILLING),
                [WK_EV_HELLO] = TO(ANSWER_LATE_HELLO, DRAINING),
                [WK_EV_HELLO_REFUSED] = TO(ANSWER_LATE_HELLO, DRAINING),
                [WK_EV_MESSAGE] = TO(SERVE, DRAINING),
                [WK_EV_CHANNEL_BROKEN] = TO(FAULT, KILLING),
                [WK_EV_VIOLATION] = TO(FAULT, KILLING),
                [WK_EV_CHILD_EXITED] = TO(REAP_STOPPED, STOPPED),
                [WK_EV_DEADLINE] = TO(TERMINATE, TERMINATING),
            },
        [WK_PH_TERMINATING] =
            {
                GOING(TERMINATING),
                [WK_EV_STOP] = TO(IGNORE, TERMINATING),
                [WK_EV_EXEC_PASSING] = TO(FAULT, KILLING),
                [WK_EV_HELLO] = TO(ANSWER_LATE_HELLO, TERMINATING),
                [WK_EV_HELLO_REFUSED] = TO(ANSWER_LATE_HELLO, TERMINATING),
                [WK_EV_MESSAGE] = TO(SERVE, TERMINATING),
                [WK_EV_CHANNEL_BROKEN] = TO(FAULT, KILLING),
                [WK_EV_VIOLATION] = TO(FAULT, KILLING),
                [WK_EV_CHILD_EXITED] = TO(REAP_STOPPED, STOPPED),
                [WK_EV_DEADLINE] = TO(KILL, KILLING),
            },
        [WK_PH_KILLING] =
            {
                GOING(KILLING),
                [WK_EV_STOP] = TO(IGNORE, KILLING),
                [WK_EV_EXEC_PASSING] = TO(FAULT, KILLING),
                [WK_EV_HELLO] = TO(ANSWER_LATE_HELLO, KILLING),
                [WK_EV_HELLO_REFUSED] = TO(ANSWER_LATE_HELLO, KILLING),
                [WK_EV_MESSAGE] = TO(SERVE, KILLING),
                [WK_EV_CHANNEL_BROKEN] = TO(FAULT, KILLING),
                [WK_EV_VIOLATION] = TO(FAULT, KILLING),
                [WK_EV_CHILD_EXITED] = TO(REAP_STOPPED, STOPPED),
                [WK_EV_DEADLINE] = TO(IMPOSSIBLE, KILLING),
            },
        [WK_PH_FAULTED] =
            {
                GOING(FAULTED),
                [WK_EV_STOP] = TO(CANCEL_RESTART, KILLING),
                [WK_EV_EXEC_PASSING] = TO(IGNORE, FAULTED),
                [WK_EV_HELLO] = TO(IGNORE, FAULTED),
                [WK_EV_HELLO_REFUSED] = TO(IGNORE, FAULTED),
                [WK_EV_MESSAGE] = TO(IGNORE, FAULTED),
                [WK_EV_CHANNEL_BROKEN] = TO(IGNORE, FAULTED),
                [WK_EV_VIOLATION] = TO(IGNORE, FAULTED),
                [WK_EV_CHILD_EXITED] = OR(REAP_AND_RESTART, BACKOFF, RESTARTED),
                [WK_EV_DEADLINE] = TO(IMPOSSIBLE, FAULTED),
            },
        [WK_PH_FAILING] =
            {
                GOING(FAILING),
                [WK_EV_STOP] = TO(IGNORE, FAILING),
                [WK_EV_EXEC_PASSING] = TO(IGNORE, FAILING),
                [WK_EV_HELLO] = TO(IGNORE, FAILING),
                [WK_EV_HELLO_REFUSED] = TO(IGNORE, FAILING),
                [WK_EV_MESSAGE] = TO(IGNORE, FAILING),
                [WK_EV_CHANNEL_BROKEN] = TO(IGNORE, FAILING),
                [WK_EV_VIOLATION] = TO(IGNORE, FAILING),
                [WK_EV_CHILD_EXITED] = TO(REAP_FAILED, FAILED),
                [WK_EV_DEADLINE] = TO(IMPOSSIBLE, FAILING),
            },
        [WK_PH_BACKOFF] =
            {
                NO_PROCESS(BACKOFF),
                [WK_EV_START] = TO(IGNORE, BACKOFF),
                [WK_EV_STOP] = TO(CANCEL_RESTART, STOPPED),
                [WK_EV_CONFIG_RESTART] = TO(IGNORE, BACKOFF),
                [WK_EV_DEADLINE] = OR(SPAWN, AWAITING_HELLO, SPAWNED),
            },
        [WK_PH_FAILED] =
            {
                NO_PROCESS(FAILED),
                [WK_EV_START] = OR(START, AWAITING_HELLO, SPAWNED),
                [WK_EV_STOP] = TO(IGNORE, FAILED),
                [WK_EV_CONFIG_RESTART] = TO(IGNORE, FAILED),
                [WK_EV_DEADLINE] = TO(IMPOSSIBLE, FAILED),
            },
};

const char *wk_phase_name(enum wk_phase p)
{
    return wk_phases[p].name;
}

static bool is_allowed(const struct wk_transition *t, enum wk_phase to)
{
    return to == t->next || (t->alt & (1u << to)) != 0;
}

/* Enters `to`: the timers of the phase left go, the projection follows. */
static void enter(struct worker *w, enum wk_phase to)
{
    if (!wk_phases[to].has_process != (w->pid <= 0))
        log_plugd("error", w->m->name, "worker table: phase %s %s a process", wk_phases[to].name,
                  w->pid > 0 ? "with" : "without");
    if (to != WK_PH_RUNNING)
        ev_timer_stop(w->loop, &w->health_t);
    if (to == w->phase)
        return;
    log_plugd("info", w->m->name, "worker %s -> %s", wk_phases[w->phase].name, wk_phases[to].name);
    w->phase = to;
    w->state = wk_phases[to].state;
    w->is_failed = wk_phases[to].is_failed;
}

/* An event that happens while an action runs (a flush that finds the
 * channel closed, a callback of the action that stops the worker) waits
 * for the action to end, with its reason copied: one dispatch at a time,
 * and nothing lost. Only the reason can come with such an event (the
 * messages and answers of the channel come from its reads, never from
 * inside an action). */
static void defer(struct worker *w, enum wk_event ev, const struct wk_input *in)
{
    if (w->n_deferred == WK_DEFERRED_MAX ||
        (in != NULL && (in->msg != NULL || in->result != NULL))) {
        log_plugd("error", w->m->name, "worker table: %s during an action (dropped)",
                  wk_event_names[ev]);
        return;
    }
    struct wk_deferred *d = &w->deferred[w->n_deferred++];
    d->ev = ev;
    d->has_why = in != NULL && in->why != NULL;
    snprintf(d->why, sizeof(d->why), "%s", d->has_why ? in->why : "");
}

static void run_deferred(struct worker *w)
{
    while (w->n_deferred > 0 && !w->is_dispatching) {
        struct wk_deferred d = w->deferred[0];
        w->n_deferred--;
        memmove(w->deferred, w->deferred + 1, w->n_deferred * sizeof(w->deferred[0]));
        wk_dispatch(w, d.ev, &(struct wk_input){.why = d.has_why ? d.why : NULL});
    }
}

void wk_dispatch(struct worker *w, enum wk_event ev, const struct wk_input *in)
{
    static const struct wk_input none;
    if (w->is_dispatching) {
        defer(w, ev, in);
        return;
    }
    const struct wk_transition *t = &wk_table[w->phase][ev];
    if (t->action == WK_ACT_IGNORE)
        return;
    if (t->action == WK_ACT_IMPOSSIBLE || t->action == WK_ACT_UNSET) {
        log_plugd("error", w->m->name, "worker table: %s cannot happen while %s (ignored)",
                  wk_event_names[ev], wk_phases[w->phase].name);
        return;
    }
    enum wk_phase from = w->phase;
    enum wk_state was = w->state;
    if (t->next != from || t->alt != 0)
        ev_timer_stop(w->loop, &w->deadline_t); /* the action arms the next phase's */
    w->is_dispatching = true;
    enum wk_phase to = wk_act(w, t->action, in ? in : &none, t->next);
    w->is_dispatching = false;
    if (!is_allowed(t, to)) {
        log_plugd("error", w->m->name, "worker table: %s in %s chose %s (the table says %s)",
                  wk_action_names[t->action], wk_phases[from].name, wk_phases[to].name,
                  wk_phases[t->next].name);
    }
    enter(w, to);
    if (w->state != was && w->on_state != NULL)
        w->on_state(w, was, w->ud); /* the owner may start or stop it again */
    run_deferred(w);
}
