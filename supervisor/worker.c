/* A worker's public face: create and free it, ask it to start or stop
 * (events of worker_table.c), route calls to it and change its config.
 * What it does then is the table's. */
#include "worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "jsonpack.h"
#include "services.h"
#include "worker_events.h"

static const char *const state_names[] = {
    [WK_STOPPED] = "stopped",   [WK_STARTING] = "starting", [WK_RUNNING] = "running",
    [WK_STOPPING] = "stopping", [WK_BACKOFF] = "backoff",
};

const char *worker_state_name(enum wk_state s)
{
    return state_names[s];
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

/* ------------------------------------------------------------ lifetime */

struct worker *worker_new(struct ev_loop *loop, struct manifest *m, wk_state_fn on_state, void *ud)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->m = m;
    w->loop = loop;
    w->phase = WK_PH_STOPPED;
    w->state = wk_phases[WK_PH_STOPPED].state;
    w->on_state = on_state;
    w->ud = ud;
    w->src = (struct log_source){.plugin = m->name, .version = m->version};
    wk_events_init(w);
    w->out.io.fd = w->err.io.fd = -1;
    return w;
}

/* A worker already wanted (starting, running, backoff) or on its way down
 * ignores the start: one that stops reaches stopped, and its owner, told
 * so, starts it again if it still wants it (docs/supervision.md). */
int worker_start(struct worker *w, struct plugd_error *err)
{
    wk_dispatch(w, WK_EV_START, NULL);
    if (w->phase == WK_PH_FAILED) {
        *err = w->last_error;
        return -1;
    }
    return 0;
}

void worker_stop(struct worker *w)
{
    wk_dispatch(w, WK_EV_STOP, NULL);
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
    worker_release_run(w);
    ev_timer_stop(w->loop, &w->deadline_t);
    ev_timer_stop(w->loop, &w->health_t);
    restart_free(&w->restart);
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
    if (w->phase == WK_PH_RUNNING)
        log_plugd("info", w->m->name, "config changed: restarting (no plugd.config_changed hook)");
    /* a stop while running; its owner starts it again, with the new config */
    wk_dispatch(w, WK_EV_CONFIG_RESTART, NULL);
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
