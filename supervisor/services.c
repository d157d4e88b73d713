#include "services.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capabilities.h"
#include "jsonpack.h"

#define NOTICE_BURST 5.0 /* log lines about dropped notifications at once ... */
#define NOTICE_RATE  0.1 /* ... then one per 10 s */

/* Token bucket, like the log flood guard's: true when one more line may
 * be logged now. */
static bool notice_take(struct log_budget *b)
{
    ev_tstamp now = ev_time();
    b->tokens = b->refilled == 0 ? NOTICE_BURST : b->tokens + (now - b->refilled) * NOTICE_RATE;
    if (b->tokens > NOTICE_BURST)
        b->tokens = NOTICE_BURST;
    b->refilled = now;
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

void services_note_dropped(struct log_budget *pace, uint64_t *count, const char *plugin,
                           const char *from, const struct plugd_error *why)
{
    ++*count;
    if (!notice_take(pace)) {
        pace->dropped++;
        return;
    }
    log_plugd("warn", plugin,
              "dropped a notification from %s: %s: %s (%llu dropped so far, %llu more not logged)",
              from, plugd_errc_name(why->code), why->message, (unsigned long long)*count,
              (unsigned long long)pace->dropped);
    pace->dropped = 0;
}

/* Answers `msgid` with `e`; a notification (msgid NULL) has no one to
 * answer, so it is counted and logged instead of vanishing. */
static void answer_error(struct worker *w, const uint32_t *msgid, const struct plugd_error *e)
{
    if (msgid != NULL)
        ipc_conn_reply_error(w->conn, *msgid, e, NULL);
    else
        services_note_dropped(&w->notice_pace, &w->dropped_notifications, w->m->name, "the worker",
                              e);
}

/* answer_error with a printf-formatted message. */
static void refuse(struct worker *w, const uint32_t *msgid, enum plugd_errc code, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));
static void refuse(struct worker *w, const uint32_t *msgid, enum plugd_errc code, const char *fmt,
                   ...)
{
    struct plugd_error e;
    va_list ap;
    va_start(ap, fmt);
    plugd_error_vset(&e, code, fmt, ap);
    va_end(ap);
    answer_error(w, msgid, &e);
}

/* log {level, message, fields?}: a record in plugd's log. */
static void serve_log(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid)
{
    const msgpack_object *level = ipc_arg(msg, "level");
    const msgpack_object *message = ipc_arg(msg, "message");
    const msgpack_object *fields = ipc_arg(msg, "fields");
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    const char *lvl = NULL;
    for (size_t i = 0; level && level->type == MSGPACK_OBJECT_STR && i < 4; i++)
        if (ipc_str_equals(level->via.str.ptr, level->via.str.size, levels[i]))
            lvl = levels[i];
    if (lvl == NULL || message == NULL || message->type != MSGPACK_OBJECT_STR) {
        refuse(w, msgid, PLUGD_E_INVALID_REQUEST,
               "log takes {level: debug|info|warn|error, message: str, fields?: map}");
        return;
    }
    log_worker_line(
        &w->src, &w->budget, &w->tail, "sdk", lvl, message->via.str.ptr, message->via.str.size,
        fields && fields->type == MSGPACK_OBJECT_MAP ? jsonpack_from_msgpack(fields) : NULL);
    if (msgid != NULL)
        ipc_conn_reply(w->conn, *msgid, NULL, NULL);
}

/* The shared backing (bus, registry) of a worker's services, or a refusal. */
static const struct services *backing(struct worker *w, const struct ipc_message *msg,
                                      const uint32_t *msgid)
{
    if (w->services == NULL)
        refuse(w, msgid, PLUGD_E_WORKER_UNAVAILABLE, "%.*s: this plugd runs without a registry",
               (int)msg->method_len, msg->method);
    return w->services;
}

/* A string argument of 1..max bytes copied into `out` (max + 1 bytes);
 * `fallback` when absent (NULL: required). */
static bool str_arg(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid,
                    const char *field, size_t max, const char *fallback, char *out)
{
    const msgpack_object *v = ipc_arg(msg, field);
    if (v == NULL && fallback != NULL) {
        snprintf(out, max + 1, "%s", fallback);
        return true;
    }
    if (v == NULL || v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0 ||
        v->via.str.size > max || memchr(v->via.str.ptr, 0, v->via.str.size) != NULL) {
        refuse(w, msgid, PLUGD_E_INVALID_REQUEST, "%.*s: \"%s\" must be a string of 1 to %zu bytes",
               (int)msg->method_len, msg->method, field, max);
        return false;
    }
    memcpy(out, v->via.str.ptr, v->via.str.size);
    out[v->via.str.size] = 0;
    return true;
}

static void reply_map_end(struct worker *w)
{
    ipc_conn_end(w->conn, NULL);
}

/* events.emit {name, payload?} → {seq}: only in the plugin's own namespace
 * plugin.<name>.<event>. */
static void serve_emit(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid)
{
    const struct services *sv = backing(w, msg, msgid);
    char name[EV_BUS_MAX_NAME + 1], prefix[96];
    if (sv == NULL || !str_arg(w, msg, msgid, "name", EV_BUS_MAX_NAME, NULL, name))
        return;
    int n = snprintf(prefix, sizeof(prefix), "plugin.%s.", w->m->name);
    if (strncmp(name, prefix, (size_t)n) != 0 || name[n] == 0 || !ev_bus_is_valid_name(name)) {
        refuse(w, msgid, PLUGD_E_CAPABILITY_DENIED,
               "events.emit: \"%s\" is outside this plugin's namespace %s<event> (event names "
               "are [a-z0-9_.-])",
               name, prefix);
        return;
    }
    const msgpack_object *payload = ipc_arg(msg, "payload");
    if (payload != NULL && payload->type != MSGPACK_OBJECT_MAP &&
        payload->type != MSGPACK_OBJECT_NIL) {
        refuse(w, msgid, PLUGD_E_INVALID_REQUEST, "events.emit: \"payload\" must be a map");
        return;
    }
    json_t *body =
        payload && payload->type == MSGPACK_OBJECT_MAP ? jsonpack_from_msgpack(payload) : NULL;
    uint64_t seq = ev_bus_publish(sv->bus, name, w->m->name, body);
    if (msgid == NULL)
        return;
    msgpack_packer *pk = ipc_conn_begin_reply(w->conn, *msgid);
    msgpack_pack_map(pk, 1);
    ipc_pack_str(pk, "seq");
    msgpack_pack_uint64(pk, seq);
    reply_map_end(w);
}

/* events.subscribe {pattern, filter?, since?} → {seq, gap}: events whose
 * name matches the pattern (and the filter) arrive as plugd.event. */
static void serve_subscribe(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid)
{
    const struct services *sv = backing(w, msg, msgid);
    char pattern[EV_BUS_MAX_NAME + 1];
    if (sv == NULL || !str_arg(w, msg, msgid, "pattern", EV_BUS_MAX_NAME, NULL, pattern))
        return;
    const msgpack_object *filter = ipc_arg(msg, "filter");
    const msgpack_object *since = ipc_arg(msg, "since");
    if ((filter != NULL && filter->type != MSGPACK_OBJECT_MAP) ||
        (since != NULL && since->type != MSGPACK_OBJECT_POSITIVE_INTEGER)) {
        refuse(w, msgid, PLUGD_E_INVALID_REQUEST,
               "events.subscribe: \"filter\" must be a map and \"since\" a sequence number");
        return;
    }
    if (w->stream.ops == NULL) { /* its first subscription */
        char who[STREAM_WHO_MAX];
        snprintf(who, sizeof(who), "the worker of %s", w->m->name);
        stream_init(&w->stream, sv->bus, &stream_ipc_sink, &w->conn, who, w->m->name);
    }
    json_t *jfilter = filter ? jsonpack_from_msgpack(filter) : NULL;
    int64_t from =
        since == NULL ? -1 : (int64_t)(since->via.u64 < INT64_MAX ? since->via.u64 : INT64_MAX);
    struct stream_start start;
    struct plugd_error err;
    int rc = stream_subscribe(&w->stream, pattern, jfilter, from, &start, &err);
    json_decref(jfilter);
    if (rc < 0) {
        answer_error(w, msgid, &err);
        return;
    }
    if (msgid != NULL) { /* the answer goes before the replayed events */
        msgpack_packer *pk = ipc_conn_begin_reply(w->conn, *msgid);
        msgpack_pack_map(pk, 2);
        ipc_pack_str(pk, "seq");
        msgpack_pack_uint64(pk, start.seq);
        ipc_pack_str(pk, "gap");
        start.has_gap ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        reply_map_end(w);
    }
    stream_replay(&w->stream, from);
}

/* The namespace and key every state.* call names. */
static bool state_key(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid,
                      char *ns, char *key)
{
    return str_arg(w, msg, msgid, "namespace", STATE_NAMESPACE_MAX, "default", ns) &&
           (key == NULL || str_arg(w, msg, msgid, "key", STATE_KEY_MAX, NULL, key));
}

/* state.get {namespace?, key} → {found, value} */
static void serve_state_get(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid)
{
    const struct services *sv = backing(w, msg, msgid);
    char ns[STATE_NAMESPACE_MAX + 1], key[STATE_KEY_MAX + 1];
    if (sv == NULL || !state_key(w, msg, msgid, ns, key) || msgid == NULL)
        return;
    void *value = NULL;
    size_t len = 0;
    struct plugd_error err;
    int found = reg_state_get(sv->reg, w->m->name, ns, key, &value, &len, &err);
    if (found < 0) {
        answer_error(w, msgid, &err);
        return;
    }
    msgpack_packer *pk = ipc_conn_begin_reply(w->conn, *msgid);
    msgpack_pack_map(pk, 2);
    ipc_pack_str(pk, "found");
    found ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    ipc_pack_str(pk, "value");
    if (found)
        pk->callback(pk->data, value, len); /* stored as the worker packed it */
    else
        msgpack_pack_nil(pk);
    reply_map_end(w);
    free(value);
}

/* state.set {namespace?, key, value} → nil; the packed value is at most
 * STATE_VALUE_MAX bytes. */
static void serve_state_set(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid)
{
    const struct services *sv = backing(w, msg, msgid);
    char ns[STATE_NAMESPACE_MAX + 1], key[STATE_KEY_MAX + 1];
    if (sv == NULL || !state_key(w, msg, msgid, ns, key))
        return;
    const msgpack_object *value = ipc_arg(msg, "value");
    if (value == NULL) {
        refuse(w, msgid, PLUGD_E_INVALID_REQUEST, "state.set: \"value\" is missing");
        return;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *value);
    struct plugd_error err;
    if (sb.size > STATE_VALUE_MAX)
        plugd_error_set(&err, PLUGD_E_VALUE_TOO_LARGE,
                        "state.set: the value of \"%s\" is %zu bytes packed; the limit is %d", key,
                        sb.size, STATE_VALUE_MAX);
    else if (reg_state_set(sv->reg, w->m->name, ns, key, sb.data, sb.size, &err) == 0)
        err.code = PLUGD_OK;
    msgpack_sbuffer_destroy(&sb);
    if (err.code != PLUGD_OK)
        answer_error(w, msgid, &err);
    else if (msgid != NULL)
        ipc_conn_reply(w->conn, *msgid, NULL, NULL);
}

/* state.delete {namespace?, key} → {deleted} */
static void serve_state_delete(struct worker *w, const struct ipc_message *msg,
                               const uint32_t *msgid)
{
    const struct services *sv = backing(w, msg, msgid);
    char ns[STATE_NAMESPACE_MAX + 1], key[STATE_KEY_MAX + 1];
    if (sv == NULL || !state_key(w, msg, msgid, ns, key))
        return;
    struct plugd_error err;
    int deleted = reg_state_delete(sv->reg, w->m->name, ns, key, &err);
    if (deleted < 0) {
        answer_error(w, msgid, &err);
        return;
    }
    if (msgid == NULL)
        return;
    msgpack_packer *pk = ipc_conn_begin_reply(w->conn, *msgid);
    msgpack_pack_map(pk, 1);
    ipc_pack_str(pk, "deleted");
    deleted ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    reply_map_end(w);
}

struct key_list {
    json_t *keys;
};

static void add_key(const char *key, void *ud)
{
    json_array_append_new(((struct key_list *)ud)->keys, json_string(key));
}

/* state.list {namespace?, after?, limit?} → {keys, more} in key order. */
static void serve_state_list(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid)
{
    const struct services *sv = backing(w, msg, msgid);
    char ns[STATE_NAMESPACE_MAX + 1], after[STATE_KEY_MAX + 1];
    if (sv == NULL || !state_key(w, msg, msgid, ns, NULL) ||
        !str_arg(w, msg, msgid, "after", STATE_KEY_MAX, "", after) || msgid == NULL)
        return;
    const msgpack_object *limit = ipc_arg(msg, "limit");
    int max = STATE_LIST_MAX;
    if (limit != NULL) {
        if (limit->type != MSGPACK_OBJECT_POSITIVE_INTEGER || limit->via.u64 > STATE_LIST_MAX) {
            refuse(w, msgid, PLUGD_E_INVALID_REQUEST,
                   "state.list: \"limit\" must be an integer from 1 to %d", STATE_LIST_MAX);
            return;
        }
        max = (int)limit->via.u64;
    }
    struct key_list kl = {.keys = json_array()};
    struct plugd_error err;
    int n = reg_state_list(sv->reg, w->m->name, ns, after, max + 1, add_key, &kl, &err);
    if (n < 0) {
        json_decref(kl.keys);
        answer_error(w, msgid, &err);
        return;
    }
    bool has_more = n > max;
    if (has_more)
        json_array_remove(kl.keys, (size_t)max);
    msgpack_packer *pk = ipc_conn_begin_reply(w->conn, *msgid);
    msgpack_pack_map(pk, 2);
    ipc_pack_str(pk, "keys");
    jsonpack_pack(pk, kl.keys);
    ipc_pack_str(pk, "more");
    has_more ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    reply_map_end(w);
    json_decref(kl.keys);
}

/* ------------------------------------------------------------ the host's services */

struct host_call {
    struct host_call *next;
    struct services *sv;
    struct worker *w; /* NULL once the worker's channel is gone */
    uint32_t msgid;
};

static bool is_host_method_name(const char *s, size_t n)
{
    if (n == 0 || n > HOST_METHOD_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    return true;
}

int services_set_host_methods(struct services *sv, const json_t *names, struct plugd_error *err)
{
    if (!json_is_array(names) || json_array_size(names) > HOST_METHODS_MAX)
        return plugd_error_set(err, PLUGD_E_INVALID_ARGUMENT,
                               "serve: \"methods\" must be an array of at most %d names",
                               HOST_METHODS_MAX);
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        if (!is_host_method_name(json_string_value(v) ?: "", json_string_length(v)))
            return plugd_error_set(err, PLUGD_E_INVALID_ARGUMENT,
                                   "serve: \"methods[%zu]\" must be 1 to %d characters of A-Z "
                                   "a-z 0-9 _ . -",
                                   i, HOST_METHOD_MAX);
    }
    char **list = calloc(json_array_size(names) + 1, sizeof(*list));
    if (list == NULL)
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "serve: no memory");
    json_array_foreach(names, i, v)
    {
        if ((list[i] = strdup(json_string_value(v))) == NULL) {
            for (size_t j = 0; j < i; j++)
                free(list[j]);
            free(list);
            return plugd_error_set(err, PLUGD_E_NO_MEMORY, "serve: no memory");
        }
    }
    for (size_t j = 0; j < sv->n_host_methods; j++)
        free(sv->host_methods[j]);
    free(sv->host_methods);
    sv->host_methods = list;
    sv->n_host_methods = json_array_size(names);
    return 0;
}

static bool is_host_method(const struct services *sv, const char *name, size_t len)
{
    for (size_t i = 0; i < sv->n_host_methods; i++)
        if (ipc_str_equals(name, len, sv->host_methods[i]))
            return true;
    return false;
}

static void forget_host_call(struct host_call *hc)
{
    for (struct host_call **p = &hc->sv->host_calls; *p != NULL; p = &(*p)->next) {
        if (*p == hc) {
            *p = hc->next;
            break;
        }
    }
    free(hc);
}

static void on_host_answer(struct ipc_conn *c, const struct plugd_error *err,
                           const msgpack_object *result, void *ud)
{
    (void)c;
    struct host_call *hc = ud;
    struct worker *w = hc->w;
    if (w != NULL && err == NULL) {
        ipc_conn_reply(w->conn, hc->msgid, result, NULL);
    } else if (w != NULL && err->code == PLUGD_E_CONNECTION_CLOSED) {
        struct plugd_error gone;
        plugd_error_set(&gone, PLUGD_E_WORKER_UNAVAILABLE,
                        "the host application went away before it answered");
        ipc_conn_reply_error(w->conn, hc->msgid, &gone, NULL);
    } else if (w != NULL) {
        ipc_conn_reply_error(w->conn, hc->msgid, err, NULL); /* the host's own error, as is */
    }
    forget_host_call(hc);
}

/* host.NAME [params...]: forwarded to the host application as NAME
 * [plugin, [params...]] with the worker's call deadline; its answer, or
 * error, goes back to the worker as it is. */
static void serve_host_call(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid)
{
    struct services *sv = w->services;
    const char *name = msg->method + strlen(HOST_SERVICE_PREFIX);
    size_t len = msg->method_len - strlen(HOST_SERVICE_PREFIX);
    if (sv == NULL || sv->host == NULL || !ipc_conn_is_open(sv->host)) {
        refuse(w, msgid, PLUGD_E_WORKER_UNAVAILABLE,
               "%.*s: no host application is attached to this plugd", (int)msg->method_len,
               msg->method);
        return;
    }
    if (!is_host_method(sv, name, len)) {
        refuse(w, msgid, PLUGD_E_METHOD_NOT_FOUND, "the host application serves no \"%.*s\"",
               (int)len, name);
        return;
    }
    char method[HOST_METHOD_MAX + 1];
    snprintf(method, sizeof(method), "%.*s", (int)len, name);
    struct host_call *hc = NULL;
    msgpack_packer *pk;
    if (msgid == NULL) {
        pk = ipc_conn_begin_notify(sv->host, method);
    } else {
        if ((hc = calloc(1, sizeof(*hc))) == NULL) {
            refuse(w, msgid, PLUGD_E_NO_MEMORY, "%s: no memory", method);
            return;
        }
        *hc = (struct host_call){.next = sv->host_calls, .sv = sv, .w = w, .msgid = *msgid};
        sv->host_calls = hc;
        pk = ipc_conn_begin_call(sv->host, method, w->m->limits.call_timeout, on_host_answer, hc);
    }
    msgpack_pack_array(pk, 2);
    ipc_pack_str(pk, w->m->name);
    msgpack_pack_object(pk, *msg->params);
    struct plugd_error err;
    if (ipc_conn_end(sv->host, &err) < 0 && hc != NULL) {
        refuse(w, msgid, err.code, "%s: %s", method, err.message);
        forget_host_call(hc);
    }
}

void services_release_worker(struct worker *w)
{
    if (w->services == NULL)
        return;
    for (struct host_call *hc = w->services->host_calls; hc != NULL; hc = hc->next)
        if (hc->w == w)
            hc->w = NULL;
}

void services_fini(struct services *sv)
{
    for (size_t i = 0; i < sv->n_host_methods; i++)
        free(sv->host_methods[i]);
    free(sv->host_methods);
    sv->host_methods = NULL;
    sv->n_host_methods = 0;
    while (sv->host_calls != NULL) {
        struct host_call *hc = sv->host_calls;
        sv->host_calls = hc->next;
        free(hc);
    }
}

/* Which capabilities grant a service is the capability table's to say
 * (capabilities.c, cap_grants); a service no capability lists is open to
 * every worker (today: log). */
static const struct service {
    const char *method;
    void (*serve)(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid);
} services[] = {
    {"log", serve_log},
    {"events.emit", serve_emit},
    {"events.subscribe", serve_subscribe},
    {"state.get", serve_state_get},
    {"state.list", serve_state_list},
    {"state.set", serve_state_set},
    {"state.delete", serve_state_delete},
};

#define N_SERVICES (sizeof(services) / sizeof(services[0]))

static bool is_granted(const struct service *s, const struct manifest *m)
{
    return cap_grants(m, s->method);
}

/* The host application's services are granted together, by the
 * capabilities that list "host.*"; with none, by no capability at all. */
static bool has_host_services(const struct manifest *m)
{
    return cap_granting(HOST_SERVICE_PREFIX "*") != NULL && cap_grants(m, HOST_SERVICE_PREFIX "*");
}

void services_pack_granted(msgpack_packer *pk, const struct manifest *m)
{
    bool has_host = has_host_services(m);
    size_t n = has_host;
    for (size_t i = 0; i < N_SERVICES; i++)
        n += is_granted(&services[i], m);
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < N_SERVICES; i++)
        if (is_granted(&services[i], m))
            msgpack_pack_str_with_body(pk, services[i].method, strlen(services[i].method));
    if (has_host)
        ipc_pack_str(pk, HOST_SERVICE_PREFIX "*");
}

void services_handle(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid)
{
    size_t prefix = strlen(HOST_SERVICE_PREFIX);
    if (msg->method_len > prefix && memcmp(msg->method, HOST_SERVICE_PREFIX, prefix) == 0) {
        if (!has_host_services(w->m))
            refuse(w, msgid, PLUGD_E_CAPABILITY_DENIED, "%.*s needs the capability %s",
                   (int)msg->method_len, msg->method, cap_granting(HOST_SERVICE_PREFIX "*")->name);
        else
            serve_host_call(w, msg, msgid);
        return;
    }
    for (size_t i = 0; i < N_SERVICES; i++) {
        const struct service *s = &services[i];
        if (!ipc_str_equals(msg->method, msg->method_len, s->method))
            continue;
        if (!is_granted(s, w->m))
            refuse(w, msgid, PLUGD_E_CAPABILITY_DENIED, "%s needs the capability %s", s->method,
                   cap_granting(s->method)->name);
        else
            s->serve(w, msg, msgid);
        return;
    }
    refuse(w, msgid, PLUGD_E_METHOD_NOT_FOUND, "plugd has no host service \"%.*s\"",
           (int)msg->method_len, msg->method);
}
