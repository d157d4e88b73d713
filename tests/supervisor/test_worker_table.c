/* The worker table (supervisor/worker_table.c) in-process: docs/supervision.md
 * renders it exactly; its properties (a process only ends by its reap and
 * only starts by a spawn, a stop never leads to a restart, a start is never
 * lost); walks through it with synthetic events; and wk_dispatch on a real
 * struct worker for the cells that need no process (a pid that no process
 * has stands in where an action signals one). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker.h"
#include "worker_events.h"

#define PH(p) (1u << (p))

/* ------------------------------------------------------------ the doc */

static const char *const state_names[] = {"stopped", "starting", "running", "stopping", "backoff"};

/* One cell as the doc writes it: "·" ignored, "✗" impossible, else the
 * action, "→ next" when the phase changes, "(or a, b)" its alternatives. */
static void render_cell(char *out, size_t size, enum wk_phase p, const struct wk_transition *t)
{
    if (t->action == WK_ACT_IGNORE) {
        snprintf(out, size, "·");
        return;
    }
    if (t->action == WK_ACT_IMPOSSIBLE) {
        snprintf(out, size, "✗");
        return;
    }
    int n = snprintf(out, size, "%s", wk_action_names[t->action]);
    if (t->next != p)
        n += snprintf(out + n, size - (size_t)n, " → %s", wk_phase_name(t->next));
    const char *sep = " (or ";
    for (int q = 0; q < WK_PHASE_COUNT; q++) {
        if (t->alt & PH(q)) {
            n += snprintf(out + n, size - (size_t)n, "%s%s", sep, wk_phase_name(q));
            sep = ", ";
        }
    }
    if (t->alt != 0)
        snprintf(out + n, size - (size_t)n, ")");
}

/* The two tables of docs/supervision.md: the phases, then the grid. */
static char *render_doc(void)
{
    size_t size = 1 << 16, n = 0;
    char *s = malloc(size);
    cr_assert_not_null(s);
    n += (size_t)snprintf(s + n, size - n,
                          "| phase | state | process | failed |\n| --- | --- | --- | --- |\n");
    for (int p = 0; p < WK_PHASE_COUNT; p++)
        n += (size_t)snprintf(s + n, size - n, "| `%s` | %s | %s | %s |\n", wk_phase_name(p),
                              state_names[wk_phases[p].state],
                              wk_phases[p].has_process ? "yes" : "no",
                              wk_phases[p].is_failed ? "yes" : "no");
    n += (size_t)snprintf(s + n, size - n, "\n| event |");
    for (int p = 0; p < WK_PHASE_COUNT; p++)
        n += (size_t)snprintf(s + n, size - n, " %s |", wk_phase_name(p));
    n += (size_t)snprintf(s + n, size - n, "\n| --- |");
    for (int p = 0; p < WK_PHASE_COUNT; p++)
        n += (size_t)snprintf(s + n, size - n, " --- |");
    n += (size_t)snprintf(s + n, size - n, "\n");
    for (int e = 0; e < WK_EVENT_COUNT; e++) {
        n += (size_t)snprintf(s + n, size - n, "| `%s` |", wk_event_names[e]);
        for (int p = 0; p < WK_PHASE_COUNT; p++) {
            char cell[200];
            render_cell(cell, sizeof(cell), p, &wk_table[p][e]);
            n += (size_t)snprintf(s + n, size - n, " %s |", cell);
        }
        n += (size_t)snprintf(s + n, size - n, "\n");
    }
    cr_assert_lt(n, size);
    return s;
}

static char *read_doc(void)
{
    const char *root = getenv("PLUGD_SOURCE_ROOT");
    cr_assert_not_null(root, "PLUGD_SOURCE_ROOT is not set");
    char path[4096];
    snprintf(path, sizeof(path), "%s/docs/supervision.md", root);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    static char buf[1 << 17];
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    return buf;
}

Test(worker_table, docs_supervision_md_renders_the_table_exactly)
{
    const char *begin_mark =
        "<!-- worker-table: begin (tests/supervisor/test_worker_table.c) -->\n";
    const char *end_mark = "<!-- worker-table: end -->";
    char *doc = read_doc();
    char *begin = strstr(doc, begin_mark);
    cr_assert_not_null(begin, "docs/supervision.md has no worker-table begin mark");
    begin += strlen(begin_mark);
    char *end = strstr(begin, end_mark);
    cr_assert_not_null(end, "docs/supervision.md has no worker-table end mark");
    *end = '\0';
    char *want = render_doc();
    if (strcmp(begin, want) != 0)
        fprintf(stderr, "docs/supervision.md between the marks should read:\n%s", want);
    cr_expect_str_eq(begin, want, "docs/supervision.md's worker table drifted from the code");
    free(want);
}

/* ------------------------------------------------------------ properties */

static unsigned targets(const struct wk_transition *t)
{
    return PH(t->next) | t->alt;
}

Test(worker_table, every_cell_is_written_and_every_name_given)
{
    for (int p = 0; p < WK_PHASE_COUNT; p++) {
        cr_assert_not_null(wk_phases[p].name);
        for (int e = 0; e < WK_EVENT_COUNT; e++)
            cr_expect_neq(wk_table[p][e].action, WK_ACT_UNSET, "[%s][%s] is not written",
                          wk_phase_name(p), wk_event_names[e]);
    }
    for (int e = 0; e < WK_EVENT_COUNT; e++)
        cr_assert_not_null(wk_event_names[e]);
    for (int a = 0; a < WK_ACTION_COUNT; a++)
        cr_assert_not_null(wk_action_names[a]);
}

Test(worker_table, an_ignored_or_impossible_event_leaves_the_phase_as_it_is)
{
    for (int p = 0; p < WK_PHASE_COUNT; p++)
        for (int e = 0; e < WK_EVENT_COUNT; e++) {
            const struct wk_transition *t = &wk_table[p][e];
            if (t->action == WK_ACT_IGNORE || t->action == WK_ACT_IMPOSSIBLE)
                cr_expect(t->next == (enum wk_phase)p && t->alt == 0, "[%s][%s]", wk_phase_name(p),
                          wk_event_names[e]);
        }
}

Test(worker_table, only_the_reap_ends_a_process_and_only_a_spawn_makes_one)
{
    for (int p = 0; p < WK_PHASE_COUNT; p++)
        for (int e = 0; e < WK_EVENT_COUNT; e++) {
            const struct wk_transition *t = &wk_table[p][e];
            for (int q = 0; q < WK_PHASE_COUNT; q++) {
                if (!(targets(t) & PH(q)))
                    continue;
                bool had = wk_phases[p].has_process, has = wk_phases[q].has_process;
                if (had && !has)
                    cr_expect_eq(e, WK_EV_CHILD_EXITED, "[%s][%s] leaves a live process behind",
                                 wk_phase_name(p), wk_event_names[e]);
                if (!had && has)
                    cr_expect(t->action == WK_ACT_START || t->action == WK_ACT_SPAWN,
                              "[%s][%s] claims a process nobody spawned", wk_phase_name(p),
                              wk_event_names[e]);
            }
        }
}

Test(worker_table, every_phase_handles_the_exit_and_the_stop)
{
    for (int p = 0; p < WK_PHASE_COUNT; p++) {
        const struct wk_transition *exit = &wk_table[p][WK_EV_CHILD_EXITED];
        if (wk_phases[p].has_process) {
            cr_expect(exit->action == WK_ACT_REAP_AND_RESTART ||
                          exit->action == WK_ACT_REAP_STOPPED || exit->action == WK_ACT_REAP_FAILED,
                      "%s does not reap its process", wk_phase_name(p));
        } else {
            cr_expect_eq(exit->action, WK_ACT_IMPOSSIBLE, "%s has no process to exit",
                         wk_phase_name(p));
        }
        cr_expect_neq(wk_table[p][WK_EV_STOP].action, WK_ACT_IMPOSSIBLE, "%s", wk_phase_name(p));
    }
}

/* The phases a worker can reach from those in `from`, by any event but a
 * start (what an owner that asked for a stop sends no more). */
static unsigned reachable_without_start(unsigned from)
{
    unsigned seen = from, grew;
    do {
        grew = 0;
        for (int p = 0; p < WK_PHASE_COUNT; p++) {
            if (!(seen & PH(p)))
                continue;
            for (int e = 0; e < WK_EVENT_COUNT; e++) {
                const struct wk_transition *t = &wk_table[p][e];
                if (e == WK_EV_START || t->action == WK_ACT_IMPOSSIBLE)
                    continue;
                unsigned more = targets(t) & ~seen;
                seen |= more;
                grew |= more;
            }
        }
    } while (grew != 0);
    return seen;
}

/* The defect of the hardening issue: a stop that a pending restart
 * outlived. After a stop, no event but a start leads to a spawn, a
 * backoff, or a phase whose exit restarts. */
Test(worker_table, a_stop_in_any_phase_cancels_every_restart)
{
    const unsigned restarting = PH(WK_PH_AWAITING_HELLO) | PH(WK_PH_INITIALIZING) |
                                PH(WK_PH_RUNNING) | PH(WK_PH_FAULTED) | PH(WK_PH_BACKOFF);
    for (int p = 0; p < WK_PHASE_COUNT; p++) {
        unsigned after = reachable_without_start(targets(&wk_table[p][WK_EV_STOP]));
        cr_expect_eq(after & restarting, 0, "a stop in %s can still lead to a restart",
                     wk_phase_name(p));
        cr_expect(after & (PH(WK_PH_STOPPED) | PH(WK_PH_FAILED)), "a stop in %s never ends",
                  wk_phase_name(p));
    }
}

/* The other defect: an enable during a stop that nobody acted on. A start
 * spawns where no process is wanted; a worker on its way up ignores it;
 * one on its way down reaches a phase its owner sees as stopped (which
 * makes the owner apply its wish), or restarts by itself. */
Test(worker_table, a_start_is_never_lost)
{
    for (int p = 0; p < WK_PHASE_COUNT; p++) {
        const struct wk_transition *t = &wk_table[p][WK_EV_START];
        enum wk_state s = wk_phases[p].state;
        if (s == WK_STOPPED) {
            cr_expect_eq(t->action, WK_ACT_START, "a start in %s does not spawn", wk_phase_name(p));
            continue;
        }
        cr_expect_eq(t->action, WK_ACT_IGNORE, "%s", wk_phase_name(p));
        if (s != WK_STOPPING)
            continue;
        unsigned ends = targets(&wk_table[p][WK_EV_CHILD_EXITED]);
        for (int q = 0; q < WK_PHASE_COUNT; q++)
            if (ends & PH(q))
                cr_expect(wk_phases[q].state == WK_STOPPED ||
                              (p == WK_PH_FAULTED && q == WK_PH_BACKOFF),
                          "%s exits to %s, which its owner does not see as stopped",
                          wk_phase_name(p), wk_phase_name(q));
    }
}

Test(worker_table, only_phases_that_arm_a_deadline_expect_one)
{
    const unsigned timed =
        PH(WK_PH_AWAITING_HELLO) | PH(WK_PH_DRAINING) | PH(WK_PH_TERMINATING) | PH(WK_PH_BACKOFF);
    for (int p = 0; p < WK_PHASE_COUNT; p++)
        cr_expect_eq(wk_table[p][WK_EV_DEADLINE].action != WK_ACT_IMPOSSIBLE, (timed & PH(p)) != 0,
                     "%s", wk_phase_name(p));
}

Test(worker_table, only_a_running_worker_is_told_running_and_health_checks_only_run_there)
{
    for (int p = 0; p < WK_PHASE_COUNT; p++) {
        cr_expect_eq(wk_phases[p].state == WK_RUNNING, p == WK_PH_RUNNING);
        cr_expect_eq(wk_table[p][WK_EV_HEALTH_DUE].action != WK_ACT_IMPOSSIBLE, p == WK_PH_RUNNING,
                     "%s", wk_phase_name(p));
    }
}

/* ------------------------------------------------------------ walks */

/* Where `events` lead from `p`, each step the cell's `next`; a step
 * written as -1 - q takes alternative q instead. */
static enum wk_phase walk(enum wk_phase p, const int *events, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct wk_transition *t;
        if (events[i] < 0) {
            t = &wk_table[p][events[++i]];
            enum wk_phase alt = (enum wk_phase)(-1 - events[i - 1]);
            cr_assert(t->alt & PH(alt), "%s is no alternative of [%s][%s]", wk_phase_name(alt),
                      wk_phase_name(p), wk_event_names[events[i]]);
            p = alt;
            continue;
        }
        t = &wk_table[p][events[i]];
        cr_assert_neq(t->action, WK_ACT_IMPOSSIBLE, "[%s][%s] is impossible", wk_phase_name(p),
                      wk_event_names[events[i]]);
        p = t->next;
    }
    return p;
}

#define WALK(from, ...)                                                                            \
    walk(from, (const int[]){__VA_ARGS__}, sizeof((const int[]){__VA_ARGS__}) / sizeof(int))
#define ALT(q) (-1 - (q))

Test(worker_table, a_life_from_start_to_a_graceful_stop)
{
    cr_expect_eq(WALK(WK_PH_STOPPED, WK_EV_START, WK_EV_REPORT, WK_EV_EXEC_OK, WK_EV_HELLO,
                      WK_EV_INITIALIZED, WK_EV_HEALTH_DUE, WK_EV_HEALTH_OK, WK_EV_MESSAGE,
                      WK_EV_STOP, WK_EV_CHANNEL_CLOSED),
                 WK_PH_DRAINING);
    cr_expect_eq(WALK(WK_PH_DRAINING, WK_EV_CHILD_EXITED), WK_PH_STOPPED);
    cr_expect_eq(
        WALK(WK_PH_RUNNING, WK_EV_STOP, WK_EV_DEADLINE, WK_EV_DEADLINE, WK_EV_CHILD_EXITED),
        WK_PH_STOPPED);
}

Test(worker_table, a_crash_restarts_through_the_backoff_until_a_crash_loop)
{
    cr_expect_eq(WALK(WK_PH_RUNNING, WK_EV_CHILD_EXITED, WK_EV_DEADLINE), WK_PH_AWAITING_HELLO);
    cr_expect_eq(WALK(WK_PH_RUNNING, ALT(WK_PH_FAILED), WK_EV_CHILD_EXITED), WK_PH_FAILED);
    cr_expect_eq(WALK(WK_PH_RUNNING, WK_EV_HEALTH_FAILED, WK_EV_CHILD_EXITED), WK_PH_BACKOFF);
    cr_expect_eq(WALK(WK_PH_RUNNING, WK_EV_CHANNEL_BROKEN, WK_EV_CHILD_EXITED), WK_PH_BACKOFF);
    cr_expect_eq(WALK(WK_PH_RUNNING, WK_EV_CHANNEL_CLOSED, WK_EV_CHILD_EXITED), WK_PH_BACKOFF);
    cr_expect_eq(WALK(WK_PH_AWAITING_HELLO, WK_EV_DEADLINE, WK_EV_CHILD_EXITED), WK_PH_BACKOFF);
}

Test(worker_table, a_start_that_can_never_work_fails_without_a_restart)
{
    cr_expect_eq(WALK(WK_PH_AWAITING_HELLO, WK_EV_HELLO_REFUSED, WK_EV_CHILD_EXITED), WK_PH_FAILED);
    cr_expect_eq(WALK(WK_PH_AWAITING_HELLO, WK_EV_MESSAGE, WK_EV_CHILD_EXITED), WK_PH_FAILED);
    cr_expect_eq(WALK(WK_PH_AWAITING_HELLO, WK_EV_EXEC_FAILED, WK_EV_CHILD_EXITED), WK_PH_FAILED);
    cr_expect_eq(WALK(WK_PH_INITIALIZING, WK_EV_INIT_REFUSED, WK_EV_CHILD_EXITED), WK_PH_FAILED);
    cr_expect_eq(WALK(WK_PH_INITIALIZING, WK_EV_INIT_PASSING, WK_EV_CHILD_EXITED), WK_PH_BACKOFF);
    /* an operator's start clears it */
    cr_expect_eq(WALK(WK_PH_FAILED, WK_EV_START), WK_PH_AWAITING_HELLO);
}

Test(worker_table, a_stop_during_a_restart_or_a_fault_wins)
{
    cr_expect_eq(WALK(WK_PH_BACKOFF, WK_EV_STOP), WK_PH_STOPPED);
    cr_expect_eq(WALK(WK_PH_RUNNING, WK_EV_HEALTH_FAILED, WK_EV_STOP, WK_EV_CHILD_EXITED),
                 WK_PH_STOPPED);
    cr_expect_eq(
        WALK(WK_PH_AWAITING_HELLO, WK_EV_STOP, WK_EV_HELLO, WK_EV_DEADLINE, WK_EV_CHILD_EXITED),
        WK_PH_STOPPED);
}

Test(worker_table, an_enable_while_stopping_waits_for_stopped_then_starts)
{
    cr_expect_eq(WALK(WK_PH_RUNNING, WK_EV_STOP, WK_EV_START, WK_EV_CHILD_EXITED, WK_EV_START),
                 WK_PH_AWAITING_HELLO);
    cr_expect_eq(
        WALK(WK_PH_RUNNING, WK_EV_CONFIG_RESTART, WK_EV_START, WK_EV_CHILD_EXITED, WK_EV_START),
        WK_PH_AWAITING_HELLO);
}

/* Each phase with the events that matter most, against what
 * docs/supervision.md promises (written out here, not read from the
 * table). */
Test(worker_table, every_phase_answers_start_stop_exit_and_deadline_as_promised)
{
    const int X = -1; /* impossible */
    static const int want[WK_PHASE_COUNT][4] = {
        /*                       start           stop            exited          deadline */
        [WK_PH_STOPPED] = {WK_PH_AWAITING_HELLO, WK_PH_STOPPED, -1, -1},
        [WK_PH_AWAITING_HELLO] = {WK_PH_AWAITING_HELLO, WK_PH_TERMINATING, WK_PH_BACKOFF,
                                  WK_PH_FAULTED},
        [WK_PH_INITIALIZING] = {WK_PH_INITIALIZING, WK_PH_TERMINATING, WK_PH_BACKOFF, -1},
        [WK_PH_RUNNING] = {WK_PH_RUNNING, WK_PH_DRAINING, WK_PH_BACKOFF, -1},
        [WK_PH_DRAINING] = {WK_PH_DRAINING, WK_PH_DRAINING, WK_PH_STOPPED, WK_PH_TERMINATING},
        [WK_PH_TERMINATING] = {WK_PH_TERMINATING, WK_PH_TERMINATING, WK_PH_STOPPED, WK_PH_KILLING},
        [WK_PH_KILLING] = {WK_PH_KILLING, WK_PH_KILLING, WK_PH_STOPPED, -1},
        [WK_PH_FAULTED] = {WK_PH_FAULTED, WK_PH_KILLING, WK_PH_BACKOFF, -1},
        [WK_PH_FAILING] = {WK_PH_FAILING, WK_PH_FAILING, WK_PH_FAILED, -1},
        [WK_PH_BACKOFF] = {WK_PH_BACKOFF, WK_PH_STOPPED, -1, WK_PH_AWAITING_HELLO},
        [WK_PH_FAILED] = {WK_PH_AWAITING_HELLO, WK_PH_FAILED, -1, -1},
    };
    const enum wk_event events[4] = {WK_EV_START, WK_EV_STOP, WK_EV_CHILD_EXITED, WK_EV_DEADLINE};
    for (int p = 0; p < WK_PHASE_COUNT; p++)
        for (int i = 0; i < 4; i++) {
            const struct wk_transition *t = &wk_table[p][events[i]];
            if (want[p][i] == X)
                cr_expect_eq(t->action, WK_ACT_IMPOSSIBLE, "[%s][%s]", wk_phase_name(p),
                             wk_event_names[events[i]]);
            else
                cr_expect_eq(t->next, (enum wk_phase)want[p][i], "[%s][%s] leads to %s",
                             wk_phase_name(p), wk_event_names[events[i]], wk_phase_name(t->next));
        }
}

/* ------------------------------------------------------------ dispatch */

#define NO_SUCH_PID 0x7ffffff0 /* above any pid_max: kill() finds nobody */

static int n_state_calls;
static enum wk_state last_from;

static void count_state(struct worker *w, enum wk_state from, void *ud)
{
    (void)w;
    (void)ud;
    n_state_calls++;
    last_from = from;
}

static struct worker *new_worker(struct ev_loop *loop)
{
    struct manifest *m = calloc(1, sizeof(*m));
    cr_assert_not_null(m);
    m->name = strdup("t");
    m->version = strdup("1.0.0");
    cr_assert(m->name && m->version);
    worker_limits_default(&m->limits);
    struct worker *w = worker_new(loop, m, count_state, NULL);
    cr_assert_not_null(w);
    n_state_calls = 0;
    return w;
}

static void put(struct worker *w, enum wk_phase p)
{
    w->phase = p;
    w->state = wk_phases[p].state;
    w->is_failed = wk_phases[p].is_failed;
    w->pid = wk_phases[p].has_process ? NO_SUCH_PID : 0;
}

Test(worker_table, dispatching_an_ignored_or_impossible_event_changes_nothing)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct worker *w = new_worker(loop);
    for (int p = 0; p < WK_PHASE_COUNT; p++)
        for (int e = 0; e < WK_EVENT_COUNT; e++) {
            enum wk_action a = wk_table[p][e].action;
            if (a != WK_ACT_IGNORE && a != WK_ACT_IMPOSSIBLE)
                continue;
            put(w, p);
            wk_dispatch(w, e, NULL);
            cr_expect_eq(w->phase, (enum wk_phase)p, "[%s][%s]", wk_phase_name(p),
                         wk_event_names[e]);
        }
    cr_expect_eq(n_state_calls, 0);
    w->pid = 0;
    worker_free(w);
    ev_loop_destroy(loop);
}

Test(worker_table, a_stop_in_backoff_cancels_the_restart_deadline)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct worker *w = new_worker(loop);
    put(w, WK_PH_BACKOFF);
    ev_timer_set(&w->deadline_t, 60., 0.);
    ev_timer_start(loop, &w->deadline_t);
    worker_stop(w);
    cr_expect_eq(w->phase, WK_PH_STOPPED);
    cr_expect_not(ev_is_active(&w->deadline_t), "the restart is still armed");
    cr_expect_eq(n_state_calls, 1);
    cr_expect_eq(last_from, WK_BACKOFF);
    cr_expect_eq(w->state, WK_STOPPED);
    worker_free(w);
    ev_loop_destroy(loop);
}

Test(worker_table, a_stop_while_awaiting_hello_terminates_then_kills_and_never_restarts)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct worker *w = new_worker(loop);
    put(w, WK_PH_AWAITING_HELLO);
    worker_stop(w);
    cr_expect_eq(w->phase, WK_PH_TERMINATING);
    cr_expect_eq(w->state, WK_STOPPING);
    cr_expect(ev_is_active(&w->deadline_t), "no term deadline");
    cr_expect_float_eq(ev_timer_remaining(loop, &w->deadline_t), w->m->limits.term_timeout, 0.5);
    wk_dispatch(w, WK_EV_DEADLINE, NULL);
    cr_expect_eq(w->phase, WK_PH_KILLING);
    cr_expect_not(ev_is_active(&w->deadline_t));
    cr_expect_eq(n_state_calls, 1); /* starting -> stopping, once */
    w->pid = 0;
    worker_free(w);
    ev_loop_destroy(loop);
}

Test(worker_table, a_fault_then_a_stop_forgets_the_restart)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct worker *w = new_worker(loop);
    put(w, WK_PH_AWAITING_HELLO);
    ev_timer_set(&w->deadline_t, 5., 0.);
    ev_timer_start(loop, &w->deadline_t);
    wk_dispatch(w, WK_EV_DEADLINE, NULL);
    cr_expect_eq(w->phase, WK_PH_FAULTED);
    cr_expect_eq(w->faults, 1);
    cr_expect(strstr(w->fault, "no plugd.hello within") != NULL, "fault: %s", w->fault);
    worker_stop(w);
    cr_expect_eq(w->phase, WK_PH_KILLING);
    cr_expect_eq(w->state, WK_STOPPING);
    w->pid = 0;
    worker_free(w);
    ev_loop_destroy(loop);
}

static void stop_when_degraded(struct worker *w, const char *why, void *ud)
{
    (void)why;
    (void)ud;
    worker_stop(w); /* an owner that stops a degraded worker, from inside the action */
}

Test(worker_table, a_stop_asked_while_an_action_runs_is_kept_until_it_ends)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct worker *w = new_worker(loop);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct plugd_error err;
    w->conn = ipc_conn_new(loop, sv[0], sv[0], NULL, &wk_channel_handlers, w, &err);
    cr_assert_not_null(w->conn, "%s", err.message);
    put(w, WK_PH_RUNNING);
    w->is_healthy = true;
    w->on_health = stop_when_degraded;
    wk_dispatch(w, WK_EV_HEALTH_DEGRADED, &(struct wk_input){.why = "slow disk"});
    cr_expect_not(w->is_healthy);
    cr_expect_eq(w->phase, WK_PH_DRAINING, "the stop was lost: %s", wk_phase_name(w->phase));
    cr_expect(ev_is_active(&w->deadline_t), "no drain deadline");
    cr_expect_eq(n_state_calls, 1);
    cr_expect_eq(last_from, WK_RUNNING);
    w->pid = 0;
    worker_free(w);
    close(sv[1]);
    ev_loop_destroy(loop);
}
