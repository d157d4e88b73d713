#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jsonpack.h"
#include "services.h"
#include "spawn.h"

static const char *const state_names[] = {
    [WK_STOPPED] = "stopped",   [WK_STARTING] = "starting", [WK_RUNNING] = "running",
    [WK_STOPPING] = "stopping", [WK_BACKOFF] = "backoff",
};

const char *worker_state_name(enum wk_state s)
{
    return state_names[s];
}

static void set_state(struct worker *w, enum wk_state to)
{
    enum wk_state from = w->state;
    if (from == to)
        return;
    w->state = to;
    log_plugd("info", w->m->name, "worker %s -> %s", state_names[from], state_names[to]);
    if (w->on_state != NULL)
        w->on_state(w, from, w->ud);
}

/* Marks why plugd is ending this worker and kills it; the exit is then
 * handled like any other (restart or stop). */
static void fault(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fault(struct worker *w, const char *fmt, ...)
{
    if (w->fault[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->fault, sizeof(w->fault), fmt, ap);
        va_end(ap);
        w->faults++;
        log_plugd("warn", w->m->name, "worker fault: %s", w->fault);
    }
    if (w->pid > 0)
        kill(w->pid, SIGKILL);
}

/* A start that can never work (wrong protocol, exec failure, refused
 * initialize): no restart, the reason is kept. */
static void fail_permanently(struct worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail_permanently(struct worker *w, const char *fmt, ...)
{
    char msg[PLUGD_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    w->is_failed = true;
    w->want_running = false;
    fault(w, "%s", msg);
}

/* ------------------------------------------------------------ channel */

static void start_health_checks(struct worker *w)
{
    ev_timer_set(&w->health_t, w->m->limits.health_interval, w->m->limits.health_interval);
    ev_timer_start(w->loop, &w->health_t);
}

static void on_initialized(struct ipc_conn *c, const struct plugd_error *err,
                           const msgpack_object *result, void *ud)
{
    (void)c;
    struct worker *w = ud;
    if (w->state != WK_STARTING)
        return;
    if (err != NULL) {
        /* plugd's own deadline or a lost channel may pass; what the
         * worker answered, whatever code it gives, will be answered again */
        if (!err->is_from_peer &&
            (err->code == PLUGD_E_TIMEOUT || err->code == PLUGD_E_CONNECTION_CLOSED))
            fault(w, "plugd.initialize failed: %s", err->message);
        else
            fail_permanently(w, "plugd.initialize refused: %s", err->message);
        return;
    }
    const msgpack_object *hooks = ipc_map_get(result, "hooks");
    for (uint32_t i = 0; hooks && hooks->type == MSGPACK_OBJECT_ARRAY && i < hooks->via.array.size;
         i++) {
        const msgpack_object *h = &hooks->via.array.ptr[i];
        if (h->type != MSGPACK_OBJECT_STR)
            continue;
        if (ipc_str_equals(h->via.str.ptr, h->via.str.size, "plugd.config_changed"))
            w->has_config_hook = true;
        if (ipc_str_equals(h->via.str.ptr, h->via.str.size, "plugd.validate_config"))
            w->has_validate_hook = true;
    }
    w->running_since = ev_now(w->loop);
    w->is_healthy = true;
    start_health_checks(w);
    set_state(w, WK_RUNNING);
}

static void send_initialize(struct worker *w)
{
    msgpack_packer *pk = ipc_conn_begin_call(w->conn, "plugd.initialize", w->m->limits.init_timeout,
                                             on_initialized, w);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 5);
    ipc_pack_str(pk, "plugin");
    ipc_pack_str(pk, w->m->name);
    ipc_pack_str(pk, "version");
    ipc_pack_str(pk, w->m->version);
    ipc_pack_str(pk, "config");
    jsonpack_pack(pk, w->m->config);
    ipc_pack_str(pk, "capabilities");
    msgpack_pack_array(pk, w->m->n_capabilities);
    for (size_t i = 0; i < w->m->n_capabilities; i++)
        ipc_pack_str(pk, w->m->capabilities[i]);
    ipc_pack_str(pk, "host_api");
    services_pack_granted(pk, w->m);
    struct plugd_error err;
    if (ipc_conn_end(w->conn, &err) < 0)
        fault(w, "cannot send plugd.initialize: %s", err.message);
}

static bool is_supported_protocol(int64_t v)
{
    return v == PLUGD_PROTOCOL_CURRENT || (v == PLUGD_PROTOCOL_CURRENT - 1 && v >= 1);
}

/* The first message of a worker must be plugd.hello with a protocol plugd speaks. */
static void handle_hello(struct worker *w, const struct ipc_message *msg)
{
    const msgpack_object *protocol = ipc_arg(msg, "protocol");
    struct plugd_error e;
    if (protocol == NULL || (protocol->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
                             protocol->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)) {
        plugd_error_set(&e, PLUGD_E_INVALID_REQUEST,
                        "plugd.hello needs {\"protocol\": int}; plugd speaks protocol %d",
                        PLUGD_PROTOCOL_CURRENT);
    } else if (!is_supported_protocol(protocol->via.i64)) {
        plugd_error_set(
            &e, PLUGD_E_INVALID_REQUEST, "worker speaks protocol %lld; plugd speaks %d (and %d)",
            (long long)protocol->via.i64, PLUGD_PROTOCOL_CURRENT, PLUGD_PROTOCOL_CURRENT - 1);
    } else {
        ev_timer_stop(w->loop, &w->handshake_t);
        msgpack_packer *pk = ipc_conn_begin_reply(w->conn, msg->msgid);
        msgpack_pack_map(pk, 2);
        ipc_pack_str(pk, "protocol");
        msgpack_pack_int64(pk, protocol->via.i64);
        ipc_pack_str(pk, "plugd");
        ipc_pack_str(pk, PLUGD_VERSION);
        ipc_conn_end(w->conn, NULL);
        send_initialize(w);
        return;
    }
    ipc_conn_reply_error(w->conn, msg->msgid, &e, NULL);
    ipc_conn_flush(w->conn, NULL);
    fail_permanently(w, "handshake refused: %s", e.message);
}

static void on_worker_request(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    struct worker *w = ud;
    bool is_hello = ipc_str_equals(msg->method, msg->method_len, "plugd.hello");
    if (w->state == WK_STARTING && ev_is_active(&w->handshake_t)) {
        if (is_hello)
            handle_hello(w, msg);
        else
            fail_permanently(w, "handshake: first message was \"%.*s\", not plugd.hello",
                             (int)msg->method_len, msg->method);
        return;
    }
    if (is_hello) {
        /* a hello that came after the handshake ended: say why it is refused */
        struct plugd_error e;
        if (w->state == WK_STOPPING)
            plugd_error_set(&e, PLUGD_E_WORKER_UNAVAILABLE,
                            "plugd.hello: plugd is stopping this worker; it must exit");
        else
            plugd_error_set(&e, PLUGD_E_INVALID_REQUEST,
                            "plugd.hello: the handshake is already done");
        ipc_conn_reply_error(c, msg->msgid, &e, NULL);
        return;
    }
    services_handle(w, msg, &msg->msgid);
}

static void on_worker_notify(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    (void)c;
    struct worker *w = ud;
    if (w->state == WK_STARTING && ev_is_active(&w->handshake_t)) {
        fail_permanently(w, "handshake: first message was a \"%.*s\" notification",
                         (int)msg->method_len, msg->method);
        return;
    }
    services_handle(w, msg, NULL);
}

/* The channel takes output again: queued events go first. */
static void on_worker_drain(struct ipc_conn *c, void *ud)
{
    (void)c;
    struct worker *w = ud;
    stream_drain(&w->stream);
}

static void on_worker_close(struct ipc_conn *c, const struct plugd_error *why, void *ud)
{
    (void)c;
    struct worker *w = ud;
    if (why != NULL && why->code != PLUGD_E_CONNECTION_CLOSED) {
        fault(w, "channel closed: %s: %s", plugd_errc_name(why->code), why->message);
    } else if (w->state == WK_STARTING || w->state == WK_RUNNING) {
        /* A worker that exits closes cleanly too, and its exit status (or
         * the kernel's kill) is the better reason: the SIGKILL changes
         * nothing for one that is exiting, and ends one that is not. */
        w->has_closed_channel = true;
        if (w->pid > 0)
            kill(w->pid, SIGKILL);
    }
}

/* ------------------------------------------------------------ health */

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

static void on_health(struct ipc_conn *c, const struct plugd_error *err,
                      const msgpack_object *result, void *ud)
{
    (void)c;
    struct worker *w = ud;
    w->is_health_pending = false;
    if (w->state != WK_RUNNING)
        return;
    describe_health(w, err, result);
    if (err != NULL) {
        fault(w, "health check failed: %s", err->message);
        return;
    }
    const msgpack_object *status = ipc_map_get(result, "status");
    const msgpack_object *error = ipc_map_get(result, "error");
    if (status != NULL && status->type == MSGPACK_OBJECT_STR &&
        ipc_str_equals(status->via.str.ptr, status->via.str.size, "ok")) {
        if (!w->is_healthy) {
            log_plugd("info", w->m->name, "health recovered");
            w->is_healthy = true;
            if (w->on_health != NULL)
                w->on_health(w, NULL, w->ud);
        }
        return;
    }
    char why[160] = "no reason given";
    if (error != NULL && error->type == MSGPACK_OBJECT_STR)
        snprintf(why, sizeof(why), "%.*s", (int)error->via.str.size, error->via.str.ptr);
    if (status != NULL && status->type == MSGPACK_OBJECT_STR &&
        ipc_str_equals(status->via.str.ptr, status->via.str.size, "degraded")) {
        if (w->is_healthy) {
            log_plugd("warn", w->m->name, "health degraded: %s", why);
            w->is_healthy = false;
            if (w->on_health != NULL)
                w->on_health(w, why, w->ud);
        }
        return;
    }
    fault(w, "health check reported an error: %s", why);
}

static void on_health_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = t->data;
    if (w->state != WK_RUNNING || w->is_health_pending)
        return;
    msgpack_packer *pk =
        ipc_conn_begin_call(w->conn, "plugd.health", w->m->limits.health_timeout, on_health, w);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 0);
    struct plugd_error err;
    if (ipc_conn_end(w->conn, &err) < 0)
        fault(w, "cannot send plugd.health: %s", err.message);
    else
        w->is_health_pending = true;
}

/* ------------------------------------------------------------ spawn */

/* The sandbox report came (spawn.c took its notification fd): the
 * handshake deadline counts from now; each refused layer is logged, and
 * with --sandbox strict the first one stops the worker for good. */
static void on_report(struct worker *w)
{
    /* the child waited for plugd until now (plugd busy starting hundreds) */
    if (ev_is_active(&w->handshake_t)) {
        ev_timer_stop(w->loop, &w->handshake_t);
        ev_timer_set(&w->handshake_t, w->m->limits.handshake_timeout, 0.);
        ev_timer_start(w->loop, &w->handshake_t);
    }
    const struct sb_report *r = &w->confine.report;
    bool is_strict = w->confine.system != NULL && w->confine.system->mode == SB_MODE_STRICT;
    for (int l = 0; l < SB_LAYER_COUNT; l++) {
        if (!(r->refused & (1u << l)))
            continue;
        log_plugd("warn", w->m->name, "sandbox layer %s refused: %s", sb_layer_name(l),
                  r->reason[l]);
        if (is_strict && !w->is_failed)
            fail_permanently(w, "strict sandbox: layer %s refused (%s)", sb_layer_name(l),
                             r->reason[l]);
    }
}

/* What the child reports: the sandbox report, then EOF (the exec worked)
 * or the step that failed, which ends this run like a crash when waiting
 * can change its errno and for good otherwise. */
static void on_exec_result(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct worker *w = io->data;
    int what = spawn_read(io->fd, &w->confine, loop, w->m->name, &w->spawn);
    if (what & SPAWN_GOT_REPORT)
        on_report(w);
    if (!(what & SPAWN_ENDED))
        return;
    ev_io_stop(loop, io);
    close(io->fd);
    io->fd = -1;
    int e = w->spawn.error;
    if (e != 0 && restart_is_transient(e))
        fault(w, "%s: %s (restarted with backoff)", w->spawn.step, strerror(e));
    else if (e != 0)
        fail_permanently(w, "%s: %s", w->spawn.step, strerror(e));
}

static void on_child_exit(struct ev_loop *loop, ev_child *c, int revents);
static void on_handshake_timeout(struct ev_loop *loop, ev_timer *t, int revents);

/* A new run: spawn.c forks and execs it; its fds, timers and channel are
 * tied to `w` here. -1 with err and errno when there is no process. */
static int spawn(struct worker *w, struct plugd_error *err)
{
    struct spawn_fds fds;
    pid_t pid = spawn_worker(&w->confine, w->loop, w->m, &fds, err);
    if (pid < 0)
        return -1;
    w->pid = pid;
    w->src.pid = pid;
    w->fault[0] = '\0';
    w->is_violation = false;
    w->tail = (struct log_tail){0}; /* a crash reason shows this run's output only */
    w->spawned_at = ev_now(w->loop);
    w->has_config_hook = w->has_validate_hook = false;
    w->is_health_pending = false;
    ev_child_set(&w->child_w, pid, 0);
    ev_child_start(w->loop, &w->child_w);
    w->spawn = (struct spawn_result){0};
    ev_io_set(&w->exec_w, fds.report, EV_READ);
    ev_io_start(w->loop, &w->exec_w);
    log_stream_start(w->loop, &w->out, fds.out, "stdout", &w->src, &w->tail, &w->budget);
    log_stream_start(w->loop, &w->err, fds.err, "stderr", &w->src, &w->tail, &w->budget);

    struct ipc_handlers h = {
        .on_request = on_worker_request,
        .on_notify = on_worker_notify,
        .on_close = on_worker_close,
        .on_drain = on_worker_drain,
    };
    w->conn = ipc_conn_new(w->loop, fds.channel, fds.channel, NULL, &h, w, err);
    if (w->conn == NULL) {
        fault(w, "cannot attach the channel: %s", err->message);
        return 0; /* the exit path cleans up */
    }
    ev_now_update(w->loop); /* one loop iteration may start hundreds */
    ev_timer_set(&w->handshake_t, w->m->limits.handshake_timeout, 0.);
    ev_timer_start(w->loop, &w->handshake_t);
    set_state(w, WK_STARTING);
    return 0;
}

static void on_handshake_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = t->data;
    if (!w->spawn.has_report && w->exec_w.fd >= 0) {
        /* plugd was too busy to read the report (libev runs expired timers
         * before the reads of the same wake-up): the deadline starts now */
        on_exec_result(loop, &w->exec_w, 0);
        if (w->spawn.has_report && w->state == WK_STARTING && w->fault[0] == '\0') {
            ev_timer_set(t, w->m->limits.handshake_timeout, 0.);
            ev_timer_start(loop, t);
            return;
        }
    }
    fault(w, "no plugd.hello within %.1f s (plugd speaks protocol %d)",
          w->m->limits.handshake_timeout, PLUGD_PROTOCOL_CURRENT);
}

/* ------------------------------------------------------------ exit, restart */

static void describe_exit(struct worker *w, int status)
{
    if (WIFEXITED(status))
        snprintf(w->last_exit, sizeof(w->last_exit), "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(w->last_exit, sizeof(w->last_exit), "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(w->last_exit, sizeof(w->last_exit), "ended with wait status %d", status);
}

/* Everything of one run of the process goes: channel (its pending calls get
 * connection_closed), log pipes (read to the end), timers. */
static void release_run(struct worker *w)
{
    w->pid = 0; /* reaped: a fault found below must not signal a pid reused since */
    ev_child_stop(w->loop, &w->child_w);
    ev_timer_stop(w->loop, &w->handshake_t);
    ev_timer_stop(w->loop, &w->health_t);
    ev_timer_stop(w->loop, &w->stop_t);
    if (w->exec_w.fd >= 0) {
        on_exec_result(w->loop, &w->exec_w, 0); /* collects an exec errno not read yet */
    }
    log_stream_stop(w->loop, &w->out);
    log_stream_stop(w->loop, &w->err);
    stream_close(&w->stream);
    services_release_worker(w);
    confine_release(&w->confine, w->loop);
    if (w->conn != NULL) {
        struct ipc_conn *c = w->conn;
        w->late_replies += ipc_conn_stats(c)->late_replies;
        w->conn = NULL;
        ipc_conn_free(c);
    }
    w->has_closed_channel = false;
}

/* Why the kernel ended it, when plugd did not: the cgroup's OOM killer,
 * the CPU time limit, or seccomp itself (a kernel without user
 * notifications). */
static void explain_kernel_kill(struct worker *w, int status)
{
    if (w->fault[0] != '\0' || !WIFSIGNALED(status))
        return;
    int cpu_seconds = w->m->limits.cpu_seconds;
    bool is_killed_by_plugd = w->state == WK_STOPPING && w->stop_phase == 2;
    if (WTERMSIG(status) == SIGKILL && confine_oom_killed(&w->confine))
        snprintf(w->fault, sizeof(w->fault),
                 "out of memory: the kernel killed it at its memory limit of %d MiB",
                 w->m->limits.memory_mb);
    else if (cpu_seconds > 0 &&
             (WTERMSIG(status) == SIGXCPU || (WTERMSIG(status) == SIGKILL && !is_killed_by_plugd &&
                                              confine_out_of_cpu_time(&w->confine, cpu_seconds))))
        snprintf(w->fault, sizeof(w->fault),
                 "out of CPU time: the kernel killed it at its limit of %d s of CPU time",
                 cpu_seconds);
    else if (WTERMSIG(status) == SIGSYS && w->confine.report.active & (1u << SB_SECCOMP)) {
        w->is_violation = true;
        snprintf(w->fault, sizeof(w->fault),
                 "sandbox_violation: a system call outside the allow-list (the kernel names none)");
    } else if (WTERMSIG(status) == SIGKILL && w->has_closed_channel) {
        w->faults++;
        snprintf(w->fault, sizeof(w->fault),
                 "it closed its channel and kept running: plugd killed it");
    }
}

/* After a crash, or a start that failed for a passing reason (`why`): the
 * restart policy (restart.c) gives the backoff, or the crash loop, which
 * gives up with last_error saying so. True when a restart is scheduled. */
static bool restart_later(struct worker *w, const struct plugd_error *why, ev_tstamp ran_since)
{
    const struct restart_limits limits = {.window = w->m->limits.crash_loop_window,
                                          .max_restarts = w->m->limits.crash_loop_restarts};
    struct restart_decision d =
        restart_decide(&w->restart, &limits, ev_now(w->loop), ran_since, drand48());
    if (d.is_crash_loop) {
        w->is_failed = true;
        w->want_running = false;
        plugd_error_set(&w->last_error, why->code,
                        "crash loop: %d restarts within %.0f s; last: %s", limits.max_restarts,
                        limits.window, why->message);
        log_plugd("error", w->m->name, "%s", w->last_error.message);
        return false;
    }
    w->last_error = *why;
    w->restarts++;
    ev_timer_set(&w->backoff_t, d.delay, 0.);
    ev_timer_start(w->loop, &w->backoff_t);
    set_state(w, WK_BACKOFF);
    return true;
}

static void on_child_exit(struct ev_loop *loop, ev_child *c, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = c->data;
    describe_exit(w, c->rstatus);
    explain_kernel_kill(w, c->rstatus);
    enum wk_state was = w->state;
    release_run(w);

    char tail[600];
    log_tail_join(&w->tail, tail, sizeof(tail));
    struct plugd_error why;
    enum plugd_errc code = w->is_violation ? PLUGD_E_SANDBOX_VIOLATION : PLUGD_E_WORKER_UNAVAILABLE;
    if (w->fault[0])
        plugd_error_set(&why, code, "%s (worker %s)", w->fault, w->last_exit);
    else
        plugd_error_set(&why, code, "worker %s", w->last_exit);
    const char *reason = why.message;

    if (was == WK_STOPPING || !w->want_running) {
        if (w->is_failed)
            plugd_error_set(&w->last_error, code, "%s", reason);
        log_plugd(w->is_failed ? "error" : "info", w->m->name, "worker stopped: %s%s%s", reason,
                  tail[0] ? "; last output: " : "", tail);
        set_state(w, WK_STOPPED);
        return;
    }

    log_plugd("warn", w->m->name, "worker crashed: %s%s%s", reason,
              tail[0] ? "; last output: " : "", tail);
    ev_tstamp ran_since = w->running_since;
    w->running_since = 0;
    if (!restart_later(w, &why, ran_since))
        set_state(w, WK_STOPPED);
}

/* A start that failed (`err`, `error` the errno): retried with the backoff
 * when waiting can change it, else failed for good. 0 when retried, -1
 * with last_error. */
static int start_failed(struct worker *w, const struct plugd_error *err, int error)
{
    if (!restart_is_transient(error)) {
        w->is_failed = true;
        w->want_running = false;
        w->last_error = *err;
    } else if (restart_later(w, err, 0)) {
        log_plugd("warn", w->m->name, "cannot start: %s (restarted with backoff)", err->message);
        return 0;
    }
    set_state(w, WK_STOPPED);
    return -1;
}

static void on_backoff_done(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = t->data;
    struct plugd_error err;
    if (spawn(w, &err) < 0)
        start_failed(w, &err, errno);
}

/* ------------------------------------------------------------ stop */

static void on_shutdown_answered(struct ipc_conn *c, const struct plugd_error *err,
                                 const msgpack_object *result, void *ud)
{
    (void)c;
    (void)result;
    struct worker *w = ud;
    if (err != NULL && err->code != PLUGD_E_CONNECTION_CLOSED)
        log_plugd("warn", w->m->name, "plugd.shutdown: %s", err->message);
}

static void on_stop_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = t->data;
    if (w->pid <= 0)
        return;
    if (w->stop_phase == 0) {
        log_plugd("warn", w->m->name, "did not exit within %.1f s of plugd.shutdown: SIGTERM",
                  w->m->limits.drain_timeout);
        confine_terminate(&w->confine, w->pid);
        w->stop_phase = 1;
        ev_timer_set(t, w->m->limits.term_timeout, 0.);
        ev_timer_start(loop, t);
    } else if (w->stop_phase == 1) {
        log_plugd("warn", w->m->name, "did not exit within %.1f s of SIGTERM: SIGKILL",
                  w->m->limits.term_timeout);
        kill(w->pid, SIGKILL);
        w->stop_phase = 2;
    }
}

void worker_stop(struct worker *w)
{
    w->want_running = false;
    switch (w->state) {
    case WK_STOPPED:
    case WK_STOPPING:
        return;
    case WK_BACKOFF:
        ev_timer_stop(w->loop, &w->backoff_t);
        set_state(w, WK_STOPPED);
        return;
    case WK_STARTING:
        /* Not speaking the protocol yet: straight to SIGTERM. */
        ev_timer_stop(w->loop, &w->handshake_t);
        confine_terminate(&w->confine, w->pid);
        w->stop_phase = 1;
        ev_timer_set(&w->stop_t, w->m->limits.term_timeout, 0.);
        break;
    case WK_RUNNING: {
        ev_timer_stop(w->loop, &w->health_t);
        msgpack_packer *pk = ipc_conn_begin_call(
            w->conn, "plugd.shutdown", w->m->limits.drain_timeout, on_shutdown_answered, w);
        msgpack_pack_array(pk, 1);
        msgpack_pack_map(pk, 1);
        ipc_pack_str(pk, "deadline_ms");
        msgpack_pack_int64(pk, (int64_t)(w->m->limits.drain_timeout * 1000));
        ipc_conn_end(w->conn, NULL);
        w->stop_phase = 0;
        ev_timer_set(&w->stop_t, w->m->limits.drain_timeout, 0.);
        break;
    }
    }
    ev_timer_start(w->loop, &w->stop_t);
    set_state(w, WK_STOPPING);
}

/* ------------------------------------------------------------ calls */

struct routed_call {
    struct worker *w;
    wk_reply_fn reply;
    void *ud;
    ev_tstamp started;
};

static void record_latency(struct worker *w, ev_tstamp started)
{
    w->call_latency[w->n_latency++ % WK_LATENCY_SAMPLES] = ev_time() - started;
}

/* The codes a worker may answer a routed call with (docs/protocol.md,
 * "Call errors"); the others are plugd's to give. */
static bool is_worker_code(enum plugd_errc code)
{
    return code == PLUGD_E_WORKER_ERROR || code == PLUGD_E_INVALID_REQUEST ||
           code == PLUGD_E_METHOD_NOT_FOUND || code == PLUGD_E_CAPABILITY_DENIED;
}

/* Maps what the channel says to the stable call errors of docs/protocol.md.
 * A worker's answer keeps its code only when a worker may give it: one
 * that says "timeout" has not made plugd's deadline pass. */
static void on_routed_reply(struct ipc_conn *c, const struct plugd_error *err,
                            const msgpack_object *result, void *ud)
{
    (void)c;
    struct routed_call *rc = ud;
    record_latency(rc->w, rc->started);
    if (err == NULL) {
        rc->reply(NULL, result, rc->ud);
        free(rc);
        return;
    }
    struct plugd_error mapped = *err;
    rc->w->call_errors++;
    if (err->is_from_peer) {
        if (err->code == PLUGD_E_REMOTE) /* the text holds whatever the worker sent */
            mapped.code = PLUGD_E_WORKER_ERROR;
        else if (!is_worker_code(err->code))
            plugd_error_set(&mapped, PLUGD_E_WORKER_ERROR, "the worker answered %s: %s",
                            plugd_errc_name(err->code), err->message);
        rc->reply(&mapped, NULL, rc->ud);
        free(rc);
        return;
    }
    switch (err->code) {
    case PLUGD_E_CONNECTION_CLOSED:
    case PLUGD_E_IO:
        plugd_error_set(&mapped, PLUGD_E_WORKER_UNAVAILABLE, "worker %s stopped before answering",
                        rc->w->m->name);
        break;
    case PLUGD_E_TIMEOUT:
        break;
    default:
        mapped.code = PLUGD_E_WORKER_ERROR;
        break;
    }
    rc->reply(&mapped, NULL, rc->ud);
    free(rc);
}

void worker_call(struct worker *w, const char *method, const msgpack_object *params, double timeout,
                 wk_reply_fn reply, void *ud)
{
    struct plugd_error err;
    if (w->state != WK_RUNNING) {
        plugd_error_set(&err, PLUGD_E_WORKER_UNAVAILABLE, "worker %s is %s", w->m->name,
                        state_names[w->state]);
        reply(&err, NULL, ud);
        return;
    }
    if (strncmp(method, "plugd.", 6) == 0) {
        plugd_error_set(&err, PLUGD_E_INVALID_REQUEST, "methods named plugd.* are plugd's own");
        reply(&err, NULL, ud);
        return;
    }
    struct routed_call *rc = malloc(sizeof(*rc));
    if (rc == NULL) {
        plugd_error_set(&err, PLUGD_E_NO_MEMORY, "no memory for a call");
        reply(&err, NULL, ud);
        return;
    }
    *rc = (struct routed_call){.w = w, .reply = reply, .ud = ud, .started = ev_time()};
    w->calls++;
    if (ipc_conn_call(w->conn, method, params, timeout > 0 ? timeout : w->m->limits.call_timeout,
                      on_routed_reply, rc, &err) < 0) {
        free(rc);
        w->call_errors++;
        /* buffer_full (the worker stopped reading), message_too_large, ...:
         * callers only see the stable call errors of docs/protocol.md. */
        struct plugd_error mapped;
        plugd_error_set(&mapped,
                        err.code == PLUGD_E_MESSAGE_TOO_LARGE ? PLUGD_E_INVALID_REQUEST
                                                              : PLUGD_E_WORKER_UNAVAILABLE,
                        "%s", err.message);
        reply(&mapped, NULL, ud);
    }
}

/* ------------------------------------------------------------ sandbox */

/* A system call outside the allow-list: named in an event, then the worker
 * is killed, or the call fails with EPERM (manifest sandbox.on_violation). */
static void on_violation(struct wk_confinement *c, const struct sb_syscall *call)
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
        fault(w, "sandbox_violation: system call %s is not allowed", call->name);
        return;
    }
    sb_notify_deny(c->notify_w.fd, call->id, EPERM);
    if (c->violations <= 10 || c->violations % 1000 == 0)
        log_plugd("warn", w->m->name,
                  "sandbox_violation: system call %s refused with EPERM (%llu refused so far)",
                  call->name, (unsigned long long)c->violations);
}

/* ------------------------------------------------------------ lifetime */

struct worker *worker_new(struct ev_loop *loop, struct manifest *m, wk_state_fn on_state, void *ud)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->m = m;
    w->loop = loop;
    w->on_state = on_state;
    w->ud = ud;
    w->src = (struct log_source){.plugin = m->name, .version = m->version};
    ev_child_init(&w->child_w, on_child_exit, 0, 0);
    ev_io_init(&w->exec_w, on_exec_result, -1, EV_READ);
    ev_init(&w->handshake_t, on_handshake_timeout);
    ev_init(&w->health_t, on_health_timer);
    ev_init(&w->stop_t, on_stop_timer);
    ev_init(&w->backoff_t, on_backoff_done);
    w->child_w.data = w->exec_w.data = w->handshake_t.data = w->health_t.data = w;
    w->stop_t.data = w->backoff_t.data = w;
    w->out.io.fd = w->err.io.fd = -1;
    confine_init(&w->confine, on_violation, w);
    return w;
}

int worker_start(struct worker *w, struct plugd_error *err)
{
    if (w->state != WK_STOPPED)
        return 0;
    w->want_running = true;
    w->is_failed = false;
    restart_reset(&w->restart);
    plugd_error_clear(&w->last_error);
    if (spawn(w, err) < 0 && start_failed(w, err, errno) < 0) {
        *err = w->last_error;
        return -1;
    }
    return 0;
}

void worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    w->on_state = NULL;
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        waitpid(w->pid, NULL, 0);
    }
    release_run(w);
    ev_timer_stop(w->loop, &w->backoff_t);
    manifest_free(w->m);
    free(w);
}

void worker_set_manifest(struct worker *w, struct manifest *m)
{
    manifest_free(w->m);
    w->m = m;
    w->src = (struct log_source){.plugin = m->name, .version = m->version};
}

/* ------------------------------------------------------------ config */

struct config_change {
    struct worker *w;
    json_t *config;
    wk_done_fn done;
    void *ud;
};

static void config_change_end(struct config_change *cc, const struct plugd_error *err)
{
    cc->done(err, cc->ud);
    json_decref(cc->config);
    free(cc);
}

static void replace_config(struct worker *w, json_t *config)
{
    json_decref(w->m->config);
    w->m->config = json_incref(config);
}

/* Sends `method` [{config}] for `cc`; `answered` gets the answer. */
static void send_config(struct config_change *cc, const char *method, ipc_reply_fn answered)
{
    msgpack_packer *pk =
        ipc_conn_begin_call(cc->w->conn, method, cc->w->m->limits.call_timeout, answered, cc);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 1);
    ipc_pack_str(pk, "config");
    jsonpack_pack(pk, cc->config);
    struct plugd_error err;
    if (ipc_conn_end(cc->w->conn, &err) < 0)
        config_change_end(cc, &err);
}

static void refuse_config(struct config_change *cc, const struct plugd_error *err)
{
    struct plugd_error e;
    bool is_deadline = err->code == PLUGD_E_TIMEOUT && !err->is_from_peer;
    plugd_error_set(&e, is_deadline ? PLUGD_E_TIMEOUT : PLUGD_E_INVALID_REQUEST,
                    "the worker refused the config: %s", err->message);
    config_change_end(cc, &e);
}

static void on_config_applied(struct ipc_conn *c, const struct plugd_error *err,
                              const msgpack_object *result, void *ud)
{
    (void)c;
    (void)result;
    struct config_change *cc = ud;
    if (err != NULL) {
        refuse_config(cc, err);
        return;
    }
    replace_config(cc->w, cc->config);
    log_plugd("info", cc->w->m->name, "config applied without a restart");
    config_change_end(cc, NULL);
}

/* Applies a validated config: hot when the worker has the hook, else by a
 * graceful restart. */
static void apply_config(struct config_change *cc)
{
    struct worker *w = cc->w;
    if (w->state == WK_RUNNING && w->has_config_hook) {
        send_config(cc, "plugd.config_changed", on_config_applied);
        return;
    }
    replace_config(w, cc->config);
    if (w->state == WK_RUNNING) {
        log_plugd("info", w->m->name, "config changed: restarting (no plugd.config_changed hook)");
        worker_stop(w); /* its owner starts it again, with the new config */
    }
    config_change_end(cc, NULL);
}

static void on_config_validated(struct ipc_conn *c, const struct plugd_error *err,
                                const msgpack_object *result, void *ud)
{
    (void)c;
    (void)result;
    struct config_change *cc = ud;
    if (err != NULL)
        refuse_config(cc, err);
    else
        apply_config(cc);
}

void worker_set_config(struct worker *w, json_t *config, wk_done_fn done, void *ud)
{
    struct config_change *cc = malloc(sizeof(*cc));
    if (cc == NULL) {
        struct plugd_error err;
        plugd_error_set(&err, PLUGD_E_NO_MEMORY, "no memory for a config change");
        done(&err, ud);
        return;
    }
    *cc = (struct config_change){
        .w = w, .config = manifest_config_with(w->m, config), .done = done, .ud = ud};
    if (cc->config == NULL) {
        struct plugd_error err;
        plugd_error_set(&err, PLUGD_E_NO_MEMORY, "no memory for a config change");
        free(cc);
        done(&err, ud);
        return;
    }
    if (w->state == WK_RUNNING && w->has_validate_hook)
        send_config(cc, "plugd.validate_config", on_config_validated);
    else
        apply_config(cc);
}
