/* The libev callbacks and channel handlers of a worker: each names what
 * happened as an event of worker_table.h (with what came with it) and
 * dispatches it; what it means in the worker's phase is the table's. */
#include "worker_events.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "services.h"
#include "worker.h"

static void dispatch_why(struct worker *w, enum wk_event ev, const char *why)
{
    wk_dispatch(w, ev, &(struct wk_input){.why = why});
}

/* ------------------------------------------------------------ child */

/* Each refused layer is logged; with --sandbox strict the first one is a
 * failure for good. */
static void dispatch_report(struct worker *w)
{
    const struct sb_report *r = &w->confine.report;
    bool is_strict = w->confine.system != NULL && w->confine.system->mode == SB_MODE_STRICT;
    char why[PLUGD_ERROR_MESSAGE_MAX] = "";
    for (int l = 0; l < SB_LAYER_COUNT; l++) {
        if (!(r->refused & (1u << l)))
            continue;
        log_plugd("warn", w->m->name, "sandbox layer %s refused: %s", sb_layer_name(l),
                  r->reason[l]);
        if (is_strict && why[0] == '\0')
            snprintf(why, sizeof(why), "strict sandbox: layer %s refused (%s)", sb_layer_name(l),
                     r->reason[l]);
    }
    if (why[0] != '\0')
        dispatch_why(w, WK_EV_REPORT_REFUSED, why);
    else
        wk_dispatch(w, WK_EV_REPORT, NULL);
}

void wk_read_report(struct worker *w)
{
    if (w->exec_w.fd < 0)
        return;
    int what = spawn_read(w->exec_w.fd, &w->confine, w->loop, w->m->name, &w->spawn);
    if (what & SPAWN_GOT_REPORT)
        dispatch_report(w);
    if (!(what & SPAWN_ENDED) || w->exec_w.fd < 0)
        return;
    ev_io_stop(w->loop, &w->exec_w);
    close(w->exec_w.fd);
    w->exec_w.fd = -1;
    int e = w->spawn.error;
    char why[PLUGD_ERROR_MESSAGE_MAX + 64];
    if (e == 0) {
        wk_dispatch(w, WK_EV_EXEC_OK, NULL);
    } else if (restart_is_transient(e)) {
        snprintf(why, sizeof(why), "%s: %s (restarted with backoff)", w->spawn.step, strerror(e));
        dispatch_why(w, WK_EV_EXEC_PASSING, why);
    } else {
        snprintf(why, sizeof(why), "%s: %s", w->spawn.step, strerror(e));
        dispatch_why(w, WK_EV_EXEC_FAILED, why);
    }
}

/* What the child reports: the sandbox report, then EOF (the exec worked)
 * or the step that failed. */
static void on_exec_result(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    wk_read_report(io->data);
}

/* A report not read yet came before the exit: it is told first. */
static void on_child_exit(struct ev_loop *loop, ev_child *c, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = c->data;
    wk_read_report(w);
    wk_dispatch(w, WK_EV_CHILD_EXITED, &(struct wk_input){.status = c->rstatus});
}

/* ------------------------------------------------------------ timers */

static void on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = t->data;
    if (w->phase == WK_PH_AWAITING_HELLO && !w->spawn.has_report && w->exec_w.fd >= 0) {
        /* plugd was too busy to read the report (libev runs expired timers
         * before the reads of the same wake-up): a report read now counts
         * the deadline from now, a failure read now is told instead */
        wk_read_report(w);
        if (w->phase != WK_PH_AWAITING_HELLO || ev_is_active(&w->deadline_t))
            return;
    }
    wk_dispatch(w, WK_EV_DEADLINE, NULL);
}

static void on_health_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    wk_dispatch(t->data, WK_EV_HEALTH_DUE, NULL);
}

/* ------------------------------------------------------------ channel */

static bool is_supported_protocol(int64_t v)
{
    return v == PLUGD_PROTOCOL_CURRENT || (v == PLUGD_PROTOCOL_CURRENT - 1 && v >= 1);
}

/* 0 when `msg` (a plugd.hello) names a protocol plugd speaks, else -1
 * with `why` naming both sides' versions. */
static int check_hello(const struct ipc_message *msg, char *why, size_t size)
{
    const msgpack_object *protocol = ipc_arg(msg, "protocol");
    if (protocol == NULL || (protocol->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
                             protocol->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)) {
        snprintf(why, size, "plugd.hello needs {\"protocol\": int}; plugd speaks protocol %d",
                 PLUGD_PROTOCOL_CURRENT);
        return -1;
    }
    if (!is_supported_protocol(protocol->via.i64)) {
        snprintf(why, size, "worker speaks protocol %lld; plugd speaks %d (and %d)",
                 (long long)protocol->via.i64, PLUGD_PROTOCOL_CURRENT, PLUGD_PROTOCOL_CURRENT - 1);
        return -1;
    }
    return 0;
}

static void on_worker_request(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    (void)c;
    struct worker *w = ud;
    struct wk_input in = {.msg = msg, .msgid = &msg->msgid};
    if (!ipc_str_equals(msg->method, msg->method_len, "plugd.hello")) {
        wk_dispatch(w, WK_EV_MESSAGE, &in);
        return;
    }
    char why[PLUGD_ERROR_MESSAGE_MAX + 64];
    if (check_hello(msg, why, sizeof(why)) == 0) {
        wk_dispatch(w, WK_EV_HELLO, &in);
        return;
    }
    in.why = why;
    wk_dispatch(w, WK_EV_HELLO_REFUSED, &in);
}

static void on_worker_notify(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    (void)c;
    wk_dispatch(ud, WK_EV_MESSAGE, &(struct wk_input){.msg = msg});
}

/* The channel takes output again: queued events go first. */
static void on_worker_drain(struct ipc_conn *c, void *ud)
{
    (void)c;
    struct worker *w = ud;
    stream_drain(&w->stream);
}

/* A close plugd made itself (the run released) is no event. */
static void on_worker_close(struct ipc_conn *c, const struct plugd_error *why, void *ud)
{
    struct worker *w = ud;
    if (w->conn != c)
        return;
    if (why == NULL || why->code == PLUGD_E_CONNECTION_CLOSED) {
        wk_dispatch(w, WK_EV_CHANNEL_CLOSED, NULL);
        return;
    }
    char reason[PLUGD_ERROR_MESSAGE_MAX + 64];
    snprintf(reason, sizeof(reason), "channel closed: %s: %s", plugd_errc_name(why->code),
             why->message);
    dispatch_why(w, WK_EV_CHANNEL_BROKEN, reason);
}

const struct ipc_handlers wk_channel_handlers = {
    .on_request = on_worker_request,
    .on_notify = on_worker_notify,
    .on_close = on_worker_close,
    .on_drain = on_worker_drain,
};

/* ------------------------------------------------------------ answers */

void wk_on_initialize_answer(struct ipc_conn *c, const struct plugd_error *err,
                             const msgpack_object *result, void *ud)
{
    struct worker *w = ud;
    if (w->conn != c)
        return;
    if (err == NULL) {
        wk_dispatch(w, WK_EV_INITIALIZED, &(struct wk_input){.result = result});
        return;
    }
    /* plugd's own deadline or a lost channel may pass; what the worker
     * answered, whatever code it gives, will be answered again */
    char why[PLUGD_ERROR_MESSAGE_MAX + 64];
    bool is_passing = !err->is_from_peer &&
                      (err->code == PLUGD_E_TIMEOUT || err->code == PLUGD_E_CONNECTION_CLOSED);
    snprintf(why, sizeof(why), "plugd.initialize %s: %s", is_passing ? "failed" : "refused",
             err->message);
    dispatch_why(w, is_passing ? WK_EV_INIT_PASSING : WK_EV_INIT_REFUSED, why);
}

/* Keeps the last health answer for stats and doctor: "ok", "degraded:
 * why", "error: why", or the call's failure. */
static void describe_health(struct worker *w, const struct plugd_error *err,
                            const msgpack_object *result)
{
    if (err != NULL) {
        snprintf(w->last_health, sizeof(w->last_health), "%s: %.120s", plugd_errc_name(err->code),
                 err->message);
        return;
    }
    const msgpack_object *status = ipc_map_get(result, "status");
    const msgpack_object *error = ipc_map_get(result, "error");
    int n = snprintf(w->last_health, sizeof(w->last_health), "%.*s",
                     status && status->type == MSGPACK_OBJECT_STR ? (int)status->via.str.size : 1,
                     status && status->type == MSGPACK_OBJECT_STR ? status->via.str.ptr : "?");
    if (error != NULL && error->type == MSGPACK_OBJECT_STR && n > 0 &&
        (size_t)n < sizeof(w->last_health))
        snprintf(w->last_health + n, sizeof(w->last_health) - (size_t)n, ": %.*s",
                 (int)error->via.str.size, error->via.str.ptr);
}

static bool is_status(const msgpack_object *status, const char *s)
{
    return status != NULL && status->type == MSGPACK_OBJECT_STR &&
           ipc_str_equals(status->via.str.ptr, status->via.str.size, s);
}

void wk_on_health_answer(struct ipc_conn *c, const struct plugd_error *err,
                         const msgpack_object *result, void *ud)
{
    struct worker *w = ud;
    if (w->conn != c)
        return;
    describe_health(w, err, result);
    char why[PLUGD_ERROR_MESSAGE_MAX + 64];
    if (err != NULL) {
        snprintf(why, sizeof(why), "health check failed: %s", err->message);
        dispatch_why(w, WK_EV_HEALTH_FAILED, why);
        return;
    }
    const msgpack_object *status = ipc_map_get(result, "status");
    const msgpack_object *error = ipc_map_get(result, "error");
    if (is_status(status, "ok")) {
        wk_dispatch(w, WK_EV_HEALTH_OK, NULL);
        return;
    }
    char reason[160] = "no reason given";
    if (error != NULL && error->type == MSGPACK_OBJECT_STR)
        snprintf(reason, sizeof(reason), "%.*s", (int)error->via.str.size, error->via.str.ptr);
    if (is_status(status, "degraded")) {
        dispatch_why(w, WK_EV_HEALTH_DEGRADED, reason);
        return;
    }
    snprintf(why, sizeof(why), "health check reported an error: %s", reason);
    dispatch_why(w, WK_EV_HEALTH_FAILED, why);
}

void wk_on_shutdown_answer(struct ipc_conn *c, const struct plugd_error *err,
                           const msgpack_object *result, void *ud)
{
    (void)c;
    (void)result;
    struct worker *w = ud;
    if (err != NULL && err->code != PLUGD_E_CONNECTION_CLOSED)
        log_plugd("warn", w->m->name, "plugd.shutdown: %s", err->message);
}

/* ------------------------------------------------------------ sandbox */

/* A system call outside the allow-list: named in an event, then the worker
 * is killed, or the call fails with EPERM (manifest sandbox.on_violation). */
void wk_on_violation(struct wk_confinement *c, const struct sb_syscall *call)
{
    struct worker *w = c->owner;
    bool is_eperm = w->m->is_violation_eperm;
    if (w->services != NULL)
        ev_bus_emit(w->services->bus, EVT_SANDBOX_VIOLATION, w->m->name,
                    json_pack("{s:s, s:i, s:s}", "syscall", call->name, "pid",
                              (json_int_t)call->pid, "action", is_eperm ? "eperm" : "kill"));
    if (!is_eperm) {
        if (call->pid != w->pid)
            kill(call->pid, SIGKILL); /* a process it started; the cgroup takes the rest */
        w->is_violation = true;
        char why[PLUGD_ERROR_MESSAGE_MAX + 64];
        snprintf(why, sizeof(why), "sandbox_violation: system call %s is not allowed", call->name);
        dispatch_why(w, WK_EV_VIOLATION, why);
        return;
    }
    sb_notify_deny(c->notify_w.fd, call->id, EPERM);
    if (c->violations <= 10 || c->violations % 1000 == 0)
        log_plugd("warn", w->m->name,
                  "sandbox_violation: system call %s refused with EPERM (%llu refused so far)",
                  call->name, (unsigned long long)c->violations);
}

/* ------------------------------------------------------------ setup */

void wk_events_init(struct worker *w)
{
    ev_child_init(&w->child_w, on_child_exit, 0, 0);
    ev_io_init(&w->exec_w, on_exec_result, -1, EV_READ);
    ev_init(&w->deadline_t, on_deadline);
    ev_init(&w->health_t, on_health_timer);
    w->child_w.data = w->exec_w.data = w->deadline_t.data = w->health_t.data = w;
    confine_init(&w->confine, wk_on_violation, w);
}
