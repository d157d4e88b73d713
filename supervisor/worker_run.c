/* The actions of worker_table.c: what each cell of the table does to a
 * worker (spawn via spawn.c, the handshake, health checks, the stop
 * sequence, the reap and the restart policy of restart.c). Each returns
 * the phase to enter, the cell's `next` or one of its alternatives; none
 * changes the phase itself. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jsonpack.h"
#include "services.h"
#include "worker.h"
#include "worker_events.h"

/* Keeps the first reason plugd found this run at fault (counted once). */
static void record_fault(struct worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void record_fault(struct worker *w, const char *fmt, ...)
{
    if (w->fault[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->fault, sizeof(w->fault), fmt, ap);
    va_end(ap);
    w->faults++;
    log_plugd("warn", w->m->name, "worker fault: %s", w->fault);
}

static void kill_now(struct worker *w)
{
    if (w->pid > 0)
        kill(w->pid, SIGKILL);
}

static void arm_deadline(struct worker *w, double after)
{
    ev_timer_stop(w->loop, &w->deadline_t);
    ev_timer_set(&w->deadline_t, after, 0.);
    ev_timer_start(w->loop, &w->deadline_t);
}

/* The next plugd.health, one interval after the last answer: one check is
 * in flight at most. */
static void arm_health(struct worker *w)
{
    ev_timer_stop(w->loop, &w->health_t);
    ev_timer_set(&w->health_t, w->m->limits.health_interval, 0.);
    ev_timer_start(w->loop, &w->health_t);
}

/* ------------------------------------------------------------ restart */

/* After a crash, or a start that failed for a passing reason (`why`): the
 * restart policy (restart.c) gives the backoff, or the crash loop, which
 * gives up with last_error saying so. BACKOFF with the deadline armed, or
 * FAILED. */
static enum wk_phase decide_restart(struct worker *w, const struct plugd_error *why,
                                    ev_tstamp ran_since)
{
    const struct restart_limits limits = {.window = w->m->limits.crash_loop_window,
                                          .max_restarts = w->m->limits.crash_loop_restarts};
    struct restart_decision d =
        restart_decide(&w->restart, &limits, ev_now(w->loop), ran_since, drand48());
    if (d.is_crash_loop) {
        plugd_error_set(&w->last_error, why->code,
                        "crash loop: %d restarts within %.0f s; last: %s", limits.max_restarts,
                        limits.window, why->message);
        log_plugd("error", w->m->name, "%s", w->last_error.message);
        return WK_PH_FAILED;
    }
    w->last_error = *why;
    w->restarts++;
    arm_deadline(w, d.delay);
    return WK_PH_BACKOFF;
}

/* A start that failed (`err`, `error` the errno): retried with the backoff
 * when waiting can change it, else failed for good with last_error. */
static enum wk_phase start_failed(struct worker *w, const struct plugd_error *err, int error)
{
    if (!restart_is_transient(error)) {
        w->last_error = *err;
        return WK_PH_FAILED;
    }
    enum wk_phase to = decide_restart(w, err, 0);
    if (to == WK_PH_BACKOFF)
        log_plugd("warn", w->m->name, "cannot start: %s (restarted with backoff)", err->message);
    return to;
}

/* ------------------------------------------------------------ spawn */

/* A new run: spawn.c forks and execs it; its fds, watchers and channel are
 * tied to `w` here. -1 with err and errno when there is no process; 0 with
 * w->conn NULL (and the fault recorded) when the channel cannot be
 * attached. */
static int spawn_run(struct worker *w, struct plugd_error *err)
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
    ev_child_set(&w->child_w, pid, 0);
    ev_child_start(w->loop, &w->child_w);
    w->spawn = (struct spawn_result){0};
    ev_io_set(&w->exec_w, fds.report, EV_READ);
    ev_io_start(w->loop, &w->exec_w);
    log_stream_start(w->loop, &w->out, fds.out, "stdout", &w->src, &w->tail, &w->budget);
    log_stream_start(w->loop, &w->err, fds.err, "stderr", &w->src, &w->tail, &w->budget);
    w->conn = ipc_conn_new(w->loop, fds.channel, fds.channel, NULL, &wk_channel_handlers, w, err);
    if (w->conn == NULL) {
        record_fault(w, "cannot attach the channel: %s", err->message);
        kill_now(w);
    }
    return 0;
}

static enum wk_phase act_spawn(struct worker *w, enum wk_phase next)
{
    struct plugd_error err;
    if (spawn_run(w, &err) < 0)
        return start_failed(w, &err, errno);
    if (w->conn == NULL)
        return WK_PH_FAULTED; /* the exit path cleans up */
    ev_now_update(w->loop);   /* one loop iteration may start hundreds */
    arm_deadline(w, w->m->limits.handshake_timeout);
    return next;
}

/* An operator's start: a failure and the restart history are forgotten. */
static enum wk_phase act_start(struct worker *w, enum wk_phase next)
{
    restart_reset(&w->restart);
    plugd_error_clear(&w->last_error);
    return act_spawn(w, next);
}

/* ------------------------------------------------------------ handshake */

static int send_initialize(struct worker *w, struct plugd_error *err)
{
    msgpack_packer *pk = ipc_conn_begin_call(w->conn, "plugd.initialize", w->m->limits.init_timeout,
                                             wk_on_initialize_answer, w);
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
    return ipc_conn_end(w->conn, err);
}

/* The hello (worker_events.c checked its protocol): answered with the
 * protocol agreed, then plugd.initialize. */
static enum wk_phase act_initialize(struct worker *w, const struct wk_input *in, enum wk_phase next)
{
    const msgpack_object *protocol = ipc_arg(in->msg, "protocol");
    msgpack_packer *pk = ipc_conn_begin_reply(w->conn, *in->msgid);
    msgpack_pack_map(pk, 2);
    ipc_pack_str(pk, "protocol");
    msgpack_pack_int64(pk, protocol->via.i64);
    ipc_pack_str(pk, "plugd");
    ipc_pack_str(pk, PLUGD_VERSION);
    struct plugd_error err;
    if (ipc_conn_end(w->conn, &err) < 0 || send_initialize(w, &err) < 0) {
        record_fault(w, "cannot send plugd.initialize: %s", err.message);
        kill_now(w);
        return WK_PH_FAULTED;
    }
    return next;
}

static void refuse_hello(struct worker *w, const struct wk_input *in)
{
    struct plugd_error e;
    plugd_error_set(&e, PLUGD_E_INVALID_REQUEST, "%s", in->why);
    ipc_conn_reply_error(w->conn, *in->msgid, &e, NULL);
    ipc_conn_flush(w->conn, NULL);
    record_fault(w, "handshake refused: %s", in->why);
    kill_now(w);
}

static void refuse_first_message(struct worker *w, const struct wk_input *in)
{
    const struct ipc_message *msg = in->msg;
    if (in->msgid != NULL)
        record_fault(w, "handshake: first message was \"%.*s\", not plugd.hello",
                     (int)msg->method_len, msg->method);
    else
        record_fault(w, "handshake: first message was a \"%.*s\" notification",
                     (int)msg->method_len, msg->method);
    kill_now(w);
}

/* A hello that came after the handshake ended: say why it is refused. */
static void answer_late_hello(struct worker *w, const struct wk_input *in)
{
    struct plugd_error e;
    if (w->state == WK_STOPPING)
        plugd_error_set(&e, PLUGD_E_WORKER_UNAVAILABLE,
                        "plugd.hello: plugd is stopping this worker; it must exit");
    else
        plugd_error_set(&e, PLUGD_E_INVALID_REQUEST, "plugd.hello: the handshake is already done");
    ipc_conn_reply_error(w->conn, *in->msgid, &e, NULL);
}

/* plugd.initialize answered: the hooks the worker has, then health checks. */
static void run(struct worker *w, const msgpack_object *result)
{
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
    arm_health(w);
}

/* ------------------------------------------------------------ health */

static enum wk_phase act_check_health(struct worker *w, enum wk_phase next)
{
    msgpack_packer *pk = ipc_conn_begin_call(w->conn, "plugd.health", w->m->limits.health_timeout,
                                             wk_on_health_answer, w);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 0);
    struct plugd_error err;
    if (ipc_conn_end(w->conn, &err) == 0)
        return next;
    record_fault(w, "cannot send plugd.health: %s", err.message);
    kill_now(w);
    return WK_PH_FAULTED;
}

/* Tells the owner when the health changed: `why` NULL for a recovery. */
static void note_health(struct worker *w, const char *why)
{
    bool is_healthy = why == NULL;
    if (w->is_healthy != is_healthy) {
        if (is_healthy)
            log_plugd("info", w->m->name, "health recovered");
        else
            log_plugd("warn", w->m->name, "health degraded: %s", why);
        w->is_healthy = is_healthy;
        if (w->on_health != NULL)
            w->on_health(w, why, w->ud);
    }
    arm_health(w);
}

/* ------------------------------------------------------------ stop */

/* Paperclip's stop: plugd.shutdown, then the drain deadline. One whose
 * channel takes nothing more goes on to SIGTERM at once. */
static enum wk_phase act_shutdown(struct worker *w, enum wk_phase next)
{
    msgpack_packer *pk = ipc_conn_begin_call(w->conn, "plugd.shutdown", w->m->limits.drain_timeout,
                                             wk_on_shutdown_answer, w);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 1);
    ipc_pack_str(pk, "deadline_ms");
    msgpack_pack_int64(pk, (int64_t)(w->m->limits.drain_timeout * 1000));
    struct plugd_error err;
    if (ipc_conn_end(w->conn, &err) < 0) {
        log_plugd("warn", w->m->name, "cannot send plugd.shutdown (%s): SIGTERM", err.message);
        confine_terminate(&w->confine, w->pid);
        arm_deadline(w, w->m->limits.term_timeout);
        return WK_PH_TERMINATING;
    }
    arm_deadline(w, w->m->limits.drain_timeout);
    return next;
}

static void terminate(struct worker *w)
{
    if (w->phase == WK_PH_DRAINING)
        log_plugd("warn", w->m->name, "did not exit within %.1f s of plugd.shutdown: SIGTERM",
                  w->m->limits.drain_timeout);
    confine_terminate(&w->confine, w->pid);
    arm_deadline(w, w->m->limits.term_timeout);
}

/* ------------------------------------------------------------ exit */

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

/* Why the kernel ended it, when plugd did not: the cgroup's OOM killer,
 * the CPU time limit, or seccomp itself (a kernel without user
 * notifications). */
static void explain_kernel_kill(struct worker *w, int status)
{
    if (w->fault[0] != '\0' || !WIFSIGNALED(status))
        return;
    int cpu_seconds = w->m->limits.cpu_seconds;
    bool is_killed_by_plugd = w->phase == WK_PH_KILLING;
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

/* The reaped run's end: `why` the reason (fault and exit), `tail` its
 * last output; everything of the run is released. */
static void reap(struct worker *w, int status, struct plugd_error *why, char *tail, size_t size)
{
    describe_exit(w, status);
    explain_kernel_kill(w, status);
    worker_release_run(w);
    log_tail_join(&w->tail, tail, size);
    enum plugd_errc code = w->is_violation ? PLUGD_E_SANDBOX_VIOLATION : PLUGD_E_WORKER_UNAVAILABLE;
    if (w->fault[0])
        plugd_error_set(why, code, "%s (worker %s)", w->fault, w->last_exit);
    else
        plugd_error_set(why, code, "worker %s", w->last_exit);
}

static enum wk_phase act_reap(struct worker *w, enum wk_action a, int status, enum wk_phase next)
{
    struct plugd_error why;
    char tail[600];
    reap(w, status, &why, tail, sizeof(tail));
    const char *sep = tail[0] ? "; last output: " : "";
    if (a == WK_ACT_REAP_STOPPED) {
        log_plugd("info", w->m->name, "worker stopped: %s%s%s", why.message, sep, tail);
        return next;
    }
    if (a == WK_ACT_REAP_FAILED) {
        w->last_error = why;
        log_plugd("error", w->m->name, "worker stopped: %s%s%s", why.message, sep, tail);
        return next;
    }
    log_plugd("warn", w->m->name, "worker crashed: %s%s%s", why.message, sep, tail);
    ev_tstamp ran_since = w->running_since;
    w->running_since = 0;
    return decide_restart(w, &why, ran_since);
}

/* ------------------------------------------------------------ dispatch */

enum wk_phase wk_act(struct worker *w, enum wk_action a, const struct wk_input *in,
                     enum wk_phase next)
{
    switch (a) {
    case WK_ACT_START:
        return act_start(w, next);
    case WK_ACT_SPAWN:
        return act_spawn(w, next);
    case WK_ACT_REARM_HANDSHAKE:
        arm_deadline(w, w->m->limits.handshake_timeout);
        return next;
    case WK_ACT_FAIL:
    case WK_ACT_FAULT:
        record_fault(w, "%s", in->why ? in->why : "no reason given");
        kill_now(w);
        return next;
    case WK_ACT_KILL_CLOSED:
        /* One that exits closes cleanly too, and its exit status (or the
         * kernel's kill) is the better reason: the SIGKILL changes nothing
         * for one that is exiting, and ends one that is not. */
        w->has_closed_channel = true;
        kill_now(w);
        return next;
    case WK_ACT_EXPIRE_HANDSHAKE:
        record_fault(w, "no plugd.hello within %.1f s (plugd speaks protocol %d)",
                     w->m->limits.handshake_timeout, PLUGD_PROTOCOL_CURRENT);
        kill_now(w);
        return next;
    case WK_ACT_INITIALIZE:
        return act_initialize(w, in, next);
    case WK_ACT_REFUSE_HELLO:
        refuse_hello(w, in);
        return next;
    case WK_ACT_REFUSE_FIRST:
        refuse_first_message(w, in);
        return next;
    case WK_ACT_ANSWER_LATE_HELLO:
        if (in->msgid != NULL)
            answer_late_hello(w, in);
        return next;
    case WK_ACT_SERVE:
        services_handle(w, in->msg, in->msgid);
        return next;
    case WK_ACT_RUN:
        run(w, in->result);
        return next;
    case WK_ACT_CHECK_HEALTH:
        return act_check_health(w, next);
    case WK_ACT_NOTE_HEALTHY:
        note_health(w, NULL);
        return next;
    case WK_ACT_NOTE_DEGRADED:
        note_health(w, in->why ? in->why : "no reason given");
        return next;
    case WK_ACT_SHUTDOWN:
        return act_shutdown(w, next);
    case WK_ACT_TERMINATE:
        terminate(w);
        return next;
    case WK_ACT_KILL:
        log_plugd("warn", w->m->name, "did not exit within %.1f s of SIGTERM: SIGKILL",
                  w->m->limits.term_timeout);
        kill_now(w);
        return next;
    case WK_ACT_CANCEL_RESTART:
        log_plugd("info", w->m->name, "stop requested: no restart");
        return next; /* wk_dispatch stopped the backoff deadline */
    case WK_ACT_REAP_AND_RESTART:
    case WK_ACT_REAP_STOPPED:
    case WK_ACT_REAP_FAILED:
        return act_reap(w, a, in->status, next);
    case WK_ACT_UNSET:
    case WK_ACT_IGNORE:
    case WK_ACT_IMPOSSIBLE:
    case WK_ACTION_COUNT:
        break;
    }
    return w->phase;
}

void worker_release_run(struct worker *w)
{
    w->pid = 0; /* reaped: a fault found below must not signal a pid reused since */
    ev_child_stop(w->loop, &w->child_w);
    if (w->exec_w.fd >= 0) {
        ev_io_stop(w->loop, &w->exec_w);
        close(w->exec_w.fd);
        w->exec_w.fd = -1;
    }
    log_stream_stop(w->loop, &w->out);
    log_stream_stop(w->loop, &w->err);
    stream_close(&w->stream);
    services_release_worker(w);
    confine_release(&w->confine, w->loop);
    if (w->conn != NULL) {
        struct ipc_conn *c = w->conn;
        w->late_replies += ipc_conn_stats(c)->late_replies;
        w->conn = NULL; /* first: what the close reports is no event of this worker */
        ipc_conn_free(c);
    }
    w->has_closed_channel = false;
}
