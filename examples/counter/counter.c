/* counter: keeps a count, emits plugin.counter.changed on every change,
 * counts the events it watches (config "watch", a name pattern, and "from",
 * a plugin name), and announces its value to the host application. */
#include <plugd/worker.h>
#include <stdio.h>
#include <string.h>

struct counter {
    int64_t value;
    int64_t events_seen;
};

static void reply_int(struct plugd_request *req, int64_t v)
{
    msgpack_pack_int64(plugd_request_begin_reply(req), v);
    plugd_request_end(req);
}

/* increment [by?] → the new value; emits {value}. */
static void increment(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    struct counter *c = ud;
    int64_t by = 1;
    const msgpack_object *arg = plugd_param(params, 0);
    if (arg != NULL && !plugd_get_int(arg, &by)) {
        plugd_request_fail(req, PLUGD_E_INVALID_REQUEST, "increment takes an optional integer");
        return;
    }
    c->value += by;
    msgpack_object_kv value = {
        .key = {.type = MSGPACK_OBJECT_STR, .via.str = {.size = 5, .ptr = "value"}},
        .val = {.type = c->value < 0 ? MSGPACK_OBJECT_NEGATIVE_INTEGER
                                     : MSGPACK_OBJECT_POSITIVE_INTEGER,
                .via.i64 = c->value}};
    msgpack_object payload = {.type = MSGPACK_OBJECT_MAP, .via.map = {.size = 1, .ptr = &value}};
    plugd_worker_emit(plugd_request_worker(req), "changed", &payload, NULL, NULL, NULL);
    reply_int(req, c->value);
}

static void get(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)params;
    reply_int(req, ((struct counter *)ud)->value);
}

static void events_seen(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)params;
    reply_int(req, ((struct counter *)ud)->events_seen);
}

static void on_host_answer(struct plugd_worker *w, const struct plugd_error *err,
                           const msgpack_object *result, void *ud)
{
    (void)w;
    struct plugd_request *req = ud;
    if (err != NULL)
        plugd_request_fail(req, err->code, "%s", err->message); /* names host.notify */
    else
        plugd_request_reply(req, result);
}

/* announce → what the host application answers to host.notify [value]
 * (needs the capability host.call and a host that serves "notify"). */
static void announce(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)params;
    struct counter *c = ud;
    msgpack_object value = {.type = c->value < 0 ? MSGPACK_OBJECT_NEGATIVE_INTEGER
                                                 : MSGPACK_OBJECT_POSITIVE_INTEGER,
                            .via.i64 = c->value};
    msgpack_object args = {.type = MSGPACK_OBJECT_ARRAY, .via.array = {.size = 1, .ptr = &value}};
    struct plugd_error err;
    if (plugd_worker_call_host(plugd_request_worker(req), "host.notify", &args, 0, on_host_answer,
                               req, &err) < 0)
        plugd_request_fail(req, err.code, "%s", err.message);
}

static void on_event(struct plugd_worker *w, const char *name, size_t len,
                     const msgpack_object *payload, void *ud)
{
    (void)payload;
    struct counter *c = ud;
    c->events_seen++;
    plugd_worker_log(w, PLUGD_LOG_DEBUG, NULL, "event %.*s", (int)len, name);
}

static int on_initialize(struct plugd_worker *w, const msgpack_object *config,
                         struct plugd_error *err, void *ud)
{
    (void)err;
    struct counter *c = ud;
    plugd_get_int(plugd_map_get(config, "start"), &c->value);
    /* config "watch": the events to count (default: every counter's changes) */
    const msgpack_object *watch = plugd_map_get(config, "watch");
    char pattern[256] = "plugin.*.changed";
    if (watch != NULL && watch->type == MSGPACK_OBJECT_STR && watch->via.str.size < sizeof(pattern))
        snprintf(pattern, sizeof(pattern), "%.*s", (int)watch->via.str.size, watch->via.str.ptr);
    /* config "from": count only that plugin's events (a filter kept in plugd) */
    msgpack_object_kv from = {
        .key = {.type = MSGPACK_OBJECT_STR, .via.str = {.size = 6, .ptr = "plugin"}},
        .val = *(plugd_map_get(config, "from") ?: &(msgpack_object){.type = MSGPACK_OBJECT_NIL})};
    msgpack_object filter = {.type = MSGPACK_OBJECT_MAP, .via.map = {.size = 1, .ptr = &from}};
    bool has_filter = from.val.type == MSGPACK_OBJECT_STR;
    if (plugd_worker_has_capability(w, "events.subscribe"))
        plugd_worker_subscribe_filtered(w, pattern, has_filter ? &filter : NULL, 0, NULL, NULL,
                                        NULL);
    return 0;
}

int main(void)
{
    static struct counter c;
    struct plugd_worker *w = plugd_worker_new(NULL);
    plugd_worker_on_initialize(w, on_initialize, &c);
    plugd_worker_on_event(w, on_event, &c);
    plugd_worker_method(w, "increment", increment, &c);
    plugd_worker_method(w, "get", get, &c);
    plugd_worker_method(w, "events_seen", events_seen, &c);
    plugd_worker_method(w, "announce", announce, &c);
    int status = plugd_worker_run(w);
    plugd_worker_free(w);
    return status;
}
