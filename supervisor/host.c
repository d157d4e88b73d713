/* The host channel: msgpack-rpc with the application that started plugd
 * (`plugd --host-fd N`). Its commands are a table; the control socket will
 * share it. When the host goes away, plugd stops gracefully. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonpack.h"
#include "plugd.h"

struct host_command {
    const char *name;
    int (*run)(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg);
};

static int reply_error(struct ipc_conn *c, uint32_t msgid, enum plugd_errc code, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));
static int reply_error(struct ipc_conn *c, uint32_t msgid, enum plugd_errc code, const char *fmt,
                       ...)
{
    struct plugd_error e = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    ipc_conn_reply_error(c, msgid, &e, NULL);
    return -1;
}

/* A host call waiting for the worker's answer. The host connection may be
 * gone by then; the answer is dropped in that case. */
struct host_call {
    struct plugd *d;
    uint32_t msgid;
};

static void on_call_answered(const struct plugd_error *err, const msgpack_object *result, void *ud)
{
    struct host_call *hc = ud;
    struct ipc_conn *c = hc->d->host;
    if (c != NULL) {
        if (err != NULL)
            ipc_conn_reply_error(c, hc->msgid, err, NULL);
        else
            ipc_conn_reply(c, hc->msgid, result, NULL);
    }
    free(hc);
}

/* call {plugin, method, params?, timeout_ms?} → the worker's result. */
static int cmd_call(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    const msgpack_object *plugin = ipc_arg(msg, "plugin");
    const msgpack_object *method = ipc_arg(msg, "method");
    const msgpack_object *params = ipc_arg(msg, "params");
    const msgpack_object *timeout = ipc_arg(msg, "timeout_ms");
    if (plugin == NULL || plugin->type != MSGPACK_OBJECT_STR)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "call: \"plugin\" must be a string");
    if (method == NULL || method->type != MSGPACK_OBJECT_STR || method->via.str.size == 0 ||
        method->via.str.size > 255)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "call: \"method\" must be a string of 1 to 255 bytes");
    if (params != NULL && params->type != MSGPACK_OBJECT_ARRAY)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "call: \"params\" must be an array");
    if (timeout != NULL && (timeout->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
                            timeout->via.u64 == 0 || timeout->via.u64 > 86400000))
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "call: \"timeout_ms\" must be an integer from 1 to 86400000");
    struct plugin *p = plugd_find(d, plugin->via.str.ptr, plugin->via.str.size);
    if (p == NULL)
        return reply_error(c, msg->msgid, PLUGD_E_PLUGIN_NOT_FOUND, "no plugin named \"%.*s\"",
                           (int)plugin->via.str.size, plugin->via.str.ptr);
    struct worker *w = p->w;
    if (w == NULL || p->row.status != LC_READY)
        return reply_error(c, msg->msgid, PLUGD_E_WORKER_UNAVAILABLE, "call: %s is %s", p->row.name,
                           lc_status_name(p->row.status));
    struct host_call *hc = malloc(sizeof(*hc));
    if (hc == NULL)
        return reply_error(c, msg->msgid, PLUGD_E_NO_MEMORY, "no memory for a call");
    *hc = (struct host_call){.d = d, .msgid = msg->msgid};
    char name[256];
    snprintf(name, sizeof(name), "%.*s", (int)method->via.str.size, method->via.str.ptr);
    worker_call(w, name, params, timeout ? (double)timeout->via.u64 / 1000.0 : 0, on_call_answered,
                hc);
    return 0;
}

static void pack_bool(msgpack_packer *pk, bool b)
{
    b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
}

static void pack_str_or_nil(msgpack_packer *pk, const char *s)
{
    if (s != NULL)
        ipc_pack_str(pk, s);
    else
        msgpack_pack_nil(pk);
}

/* One plugin's lifecycle status (registry) and worker state (memory). */
static void pack_plugin_status(msgpack_packer *pk, const struct plugin *p)
{
    const struct worker *w = p->w;
    msgpack_pack_map(pk, 17);
    ipc_pack_str(pk, "plugin");
    ipc_pack_str(pk, p->row.name);
    ipc_pack_str(pk, "status");
    ipc_pack_str(pk, lc_status_name(p->row.status));
    ipc_pack_str(pk, "version");
    ipc_pack_str(pk, p->row.version);
    ipc_pack_str(pk, "digest");
    ipc_pack_str(pk, p->row.digest);
    ipc_pack_str(pk, "pending_version");
    pack_str_or_nil(pk, p->row.pending_version);
    ipc_pack_str(pk, "diff");
    json_t *diff = p->row.diff ? json_loads(p->row.diff, 0, NULL) : NULL;
    if (diff != NULL)
        pack_json(pk, diff);
    else
        msgpack_pack_nil(pk);
    json_decref(diff);
    ipc_pack_str(pk, "error");
    pack_str_or_nil(pk, p->row.last_error);
    ipc_pack_str(pk, "state");
    ipc_pack_str(pk, worker_state_name(w ? w->state : WK_STOPPED));
    ipc_pack_str(pk, "pid");
    msgpack_pack_int64(pk, w ? w->pid : 0);
    ipc_pack_str(pk, "failed");
    pack_bool(pk, w && w->is_failed);
    ipc_pack_str(pk, "restarts");
    msgpack_pack_uint64(pk, w ? w->restarts : 0);
    ipc_pack_str(pk, "calls");
    msgpack_pack_uint64(pk, w ? w->calls : 0);
    ipc_pack_str(pk, "call_errors");
    msgpack_pack_uint64(pk, w ? w->call_errors : 0);
    ipc_pack_str(pk, "faults");
    msgpack_pack_uint64(pk, w ? w->faults : 0);
    ipc_pack_str(pk, "late_replies");
    msgpack_pack_uint64(
        pk, w ? w->late_replies + (w->conn ? ipc_conn_stats(w->conn)->late_replies : 0) : 0);
    ipc_pack_str(pk, "last_error");
    ipc_pack_str(pk, w ? w->last_error.message : "");
    ipc_pack_str(pk, "last_exit");
    ipc_pack_str(pk, w ? w->last_exit : "");
}

/* status {plugin?} → [plugin status, ...] */
static int cmd_status(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    const msgpack_object *plugin = ipc_arg(msg, "plugin");
    struct plugin *only = NULL;
    if (plugin != NULL) {
        if (plugin->type != MSGPACK_OBJECT_STR)
            return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                               "status: \"plugin\" must be a string");
        only = plugd_find(d, plugin->via.str.ptr, plugin->via.str.size);
        if (only == NULL)
            return reply_error(c, msg->msgid, PLUGD_E_PLUGIN_NOT_FOUND, "no plugin named \"%.*s\"",
                               (int)plugin->via.str.size, plugin->via.str.ptr);
    }
    msgpack_packer *pk = ipc_conn_begin_reply(c, msg->msgid);
    msgpack_pack_array(pk, only ? 1 : d->n_plugins);
    for (size_t i = 0; i < d->n_plugins; i++)
        if (only == NULL || only == d->plugins[i])
            pack_plugin_status(pk, d->plugins[i]);
    ipc_conn_end(c, NULL);
    return 0;
}

/* A required string argument `field` of 1..size-1 bytes, copied to `out`. */
static int string_arg(struct ipc_conn *c, const struct ipc_message *msg, const char *field,
                      char *out, size_t size)
{
    const msgpack_object *v = ipc_arg(msg, field);
    if (v == NULL || v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0 ||
        v->via.str.size >= size || memchr(v->via.str.ptr, 0, v->via.str.size) != NULL)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "%.*s: \"%s\" must be a string of 1 to %zu bytes", (int)msg->method_len,
                           msg->method, field, size - 1);
    memcpy(out, v->via.str.ptr, v->via.str.size);
    out[v->via.str.size] = 0;
    return 0;
}

static int reply_done(struct ipc_conn *c, const struct ipc_message *msg, int rc,
                      const struct plugd_error *err)
{
    if (rc < 0)
        ipc_conn_reply_error(c, msg->msgid, err, NULL);
    else
        ipc_conn_reply(c, msg->msgid, NULL, NULL);
    return rc;
}

/* install {path} / upgrade {path}: a package folder. */
static int cmd_install(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    char path[PATH_MAX];
    struct plugd_error err;
    if (string_arg(c, msg, "path", path, sizeof(path)) < 0)
        return -1;
    bool is_upgrade = ipc_str_equals(msg->method, msg->method_len, "upgrade");
    int rc =
        is_upgrade ? plugd_upgrade(d, path, "host", &err) : plugd_install(d, path, "host", &err);
    return reply_done(c, msg, rc, &err);
}

/* enable / approve / reject {plugin} */
static int cmd_plugin_op(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    static const struct {
        const char *name;
        int (*run)(struct plugd *d, const char *name, const char *actor, struct plugd_error *err);
    } ops[] = {{"enable", plugd_enable}, {"approve", plugd_approve}, {"reject", plugd_reject}};
    char name[256];
    struct plugd_error err;
    if (string_arg(c, msg, "plugin", name, sizeof(name)) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (ipc_str_equals(msg->method, msg->method_len, ops[i].name))
            return reply_done(c, msg, ops[i].run(d, name, "host", &err), &err);
    return -1;
}

/* disable {plugin, reason?} */
static int cmd_disable(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    char name[256], reason[256] = "";
    struct plugd_error err;
    if (string_arg(c, msg, "plugin", name, sizeof(name)) < 0 ||
        (ipc_arg(msg, "reason") != NULL &&
         string_arg(c, msg, "reason", reason, sizeof(reason)) < 0))
        return -1;
    return reply_done(c, msg, plugd_disable(d, name, reason[0] ? reason : NULL, "host", &err),
                      &err);
}

/* uninstall {plugin, remove_data?} */
static int cmd_uninstall(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    char name[256];
    struct plugd_error err;
    const msgpack_object *remove = ipc_arg(msg, "remove_data");
    if (string_arg(c, msg, "plugin", name, sizeof(name)) < 0)
        return -1;
    if (remove != NULL && remove->type != MSGPACK_OBJECT_BOOLEAN)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "uninstall: \"remove_data\" must be true or false");
    return reply_done(c, msg, plugd_uninstall(d, name, remove && remove->via.boolean, "host", &err),
                      &err);
}

/* audit {plugin, limit?} → the newest audit rows, newest first. */
static int cmd_audit(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    char name[256];
    struct plugd_error err;
    const msgpack_object *limit = ipc_arg(msg, "limit");
    if (string_arg(c, msg, "plugin", name, sizeof(name)) < 0)
        return -1;
    if (limit != NULL && (limit->type != MSGPACK_OBJECT_POSITIVE_INTEGER || limit->via.u64 > 10000))
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "audit: \"limit\" must be an integer from 0 to 10000");
    char *text = reg_audit_json(d->reg, name, limit ? (int)limit->via.u64 : 100, &err);
    json_t *rows = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (rows == NULL)
        return reply_done(c, msg, -1, &err);
    msgpack_packer *pk = ipc_conn_begin_reply(c, msg->msgid);
    pack_json(pk, rows);
    ipc_conn_end(c, NULL);
    json_decref(rows);
    return 0;
}

static int deliver_to_host(const struct ev_bus_event *e, void *ud)
{
    return services_send_event(((struct plugd *)ud)->host, e);
}

static void on_host_sub_dropped(struct ev_bus_sub *s, const char *why, void *ud)
{
    (void)s;
    struct plugd *d = ud;
    log_plugd("warn", NULL, "host event subscription dropped: %s", why);
    services_send_drop_notice(d->host, why, ev_bus_last_seq(d->bus));
    d->host_sub = NULL;
}

/* subscribe {pattern?, filter?, since?} → {seq, gap}: events arrive as
 * plugd.event notifications. */
static int cmd_subscribe(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    char pattern[EV_BUS_MAX_NAME + 1] = "*";
    const msgpack_object *filter = ipc_arg(msg, "filter");
    const msgpack_object *since = ipc_arg(msg, "since");
    if (ipc_arg(msg, "pattern") != NULL &&
        string_arg(c, msg, "pattern", pattern, sizeof(pattern)) < 0)
        return -1;
    if ((filter != NULL && filter->type != MSGPACK_OBJECT_MAP) ||
        (since != NULL && since->type != MSGPACK_OBJECT_POSITIVE_INTEGER))
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "subscribe: \"filter\" must be a map and \"since\" a sequence number");
    if (d->host_sub == NULL &&
        (d->host_sub = ev_bus_subscribe(d->bus, deliver_to_host, on_host_sub_dropped, d)) == NULL)
        return reply_error(c, msg->msgid, PLUGD_E_NO_MEMORY, "subscribe: no memory");
    json_t *jfilter = filter ? json_from_msgpack(filter) : NULL;
    struct plugd_error err;
    int rc = ev_bus_sub_add(d->host_sub, pattern, jfilter, &err);
    json_decref(jfilter);
    if (rc < 0)
        return reply_done(c, msg, rc, &err);
    uint64_t seq = ev_bus_last_seq(d->bus);
    /* the answer goes out before the replayed events */
    msgpack_packer *pk = ipc_conn_begin_reply(c, msg->msgid);
    bool has_gap = since != NULL && since->via.u64 + EV_BUS_HISTORY < seq;
    msgpack_pack_map(pk, 2);
    ipc_pack_str(pk, "seq");
    msgpack_pack_uint64(pk, seq);
    ipc_pack_str(pk, "gap");
    pack_bool(pk, has_gap);
    ipc_conn_end(c, NULL);
    if (since != NULL)
        ev_bus_sub_replay(d->host_sub, since->via.u64);
    return 0;
}

/* shutdown → nil; then every worker stops gracefully and plugd exits. */
static int cmd_shutdown(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    ipc_conn_reply(c, msg->msgid, NULL, NULL);
    plugd_stop_all(d);
    return 0;
}

static void on_config_done(const struct plugd_error *err, void *ud)
{
    struct host_call *hc = ud;
    if (hc->d->host != NULL) {
        if (err != NULL)
            ipc_conn_reply_error(hc->d->host, hc->msgid, err, NULL);
        else
            ipc_conn_reply(hc->d->host, hc->msgid, NULL, NULL);
    }
    free(hc);
}

/* config {plugin, config: map} → nil once applied (hot or by a restart). */
static int cmd_config(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    const msgpack_object *plugin = ipc_arg(msg, "plugin");
    const msgpack_object *config = ipc_arg(msg, "config");
    if (plugin == NULL || plugin->type != MSGPACK_OBJECT_STR)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "config: \"plugin\" must be a string");
    if (config == NULL || config->type != MSGPACK_OBJECT_MAP)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "config: \"config\" must be a map");
    char name[256];
    if (string_arg(c, msg, "plugin", name, sizeof(name)) < 0)
        return -1;
    struct host_call *hc = malloc(sizeof(*hc));
    json_t *value = json_from_msgpack(config);
    if (hc == NULL || value == NULL) {
        free(hc);
        json_decref(value);
        return reply_error(c, msg->msgid, PLUGD_E_NO_MEMORY, "no memory for a config change");
    }
    *hc = (struct host_call){.d = d, .msgid = msg->msgid};
    plugd_set_config(d, name, value, "host", on_config_done, hc);
    json_decref(value);
    return 0;
}

static const struct host_command host_commands[] = {
    {"call", cmd_call},         {"status", cmd_status},       {"config", cmd_config},
    {"shutdown", cmd_shutdown}, {"list", cmd_status},         {"install", cmd_install},
    {"upgrade", cmd_install},   {"enable", cmd_plugin_op},    {"approve", cmd_plugin_op},
    {"reject", cmd_plugin_op},  {"disable", cmd_disable},     {"uninstall", cmd_uninstall},
    {"audit", cmd_audit},       {"subscribe", cmd_subscribe},
};

static void on_host_request(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    struct plugd *d = ud;
    for (size_t i = 0; i < sizeof(host_commands) / sizeof(host_commands[0]); i++) {
        if (ipc_str_equals(msg->method, msg->method_len, host_commands[i].name)) {
            host_commands[i].run(d, c, msg);
            return;
        }
    }
    reply_error(c, msg->msgid, PLUGD_E_METHOD_NOT_FOUND, "unknown command \"%.*s\"",
                (int)msg->method_len, msg->method);
}

static void on_host_close(struct ipc_conn *c, const struct plugd_error *why, void *ud)
{
    struct plugd *d = ud;
    log_plugd("info", NULL, "host channel closed (%s): stopping",
              why ? why->message : "closed locally");
    d->host = NULL;
    ev_bus_unsubscribe(d->host_sub);
    d->host_sub = NULL;
    ipc_conn_free(c);
    plugd_stop_all(d);
}

static void on_host_drain(struct ipc_conn *c, void *ud)
{
    (void)c;
    struct plugd *d = ud;
    if (d->host_sub != NULL)
        ev_bus_sub_drain(d->host_sub);
}

int host_channel_open(struct plugd *d, int fd, struct plugd_error *err)
{
    struct ipc_handlers h = {
        .on_request = on_host_request, .on_close = on_host_close, .on_drain = on_host_drain};
    d->host = ipc_conn_new(d->loop, fd, fd, NULL, &h, d, err);
    return d->host ? 0 : -1;
}
