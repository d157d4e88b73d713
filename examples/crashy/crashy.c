/* crashy: misbehaves on request, so plugd's supervision can be tested and
 * shown. Every method answers before misbehaving unless said otherwise. */
#include <plugd/worker.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static enum plugd_health_status health_status = PLUGD_HEALTH_OK;

static int64_t int_arg(const msgpack_object *params, const char *key, int64_t fallback)
{
    int64_t v = fallback;
    plugd_get_int(plugd_map_get(plugd_param(params, 0), key), &v);
    return v;
}

static void echo(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    plugd_request_reply(req, plugd_param(params, 0));
}

/* exit [{code}]: exits at once (no atexit handlers), never answers. */
static void do_exit(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)req;
    (void)ud;
    _exit((int)int_arg(params, "code", 1));
}

/* segfault: dies of SIGSEGV, never answers. */
static void segfault(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)req;
    (void)params;
    (void)ud;
    signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would turn it into an exit */
    /* a real fault (a raised signal is ignored by pid 1 of a namespace), on
     * a page that forbids it: no undefined behaviour for UBSan to stop */
    volatile int *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    *page = 1;
}

/* hang: blocks the whole process; nothing is answered any more. */
static void hang(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)req;
    (void)params;
    (void)ud;
    for (;;)
        pause();
}

/* stall: this call is never answered; the worker stays responsive. */
static void stall(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)req;
    (void)params;
    (void)ud;
}

/* stop_health: every later plugd.health reports an error. */
static void stop_health(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)params;
    (void)ud;
    health_status = PLUGD_HEALTH_ERROR;
    plugd_request_reply(req, NULL);
}

/* set_health ["ok"|"degraded"|"error"]: what later plugd.health calls report. */
static void set_health(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    static const char *const names[] = {"ok", "degraded", "error"};
    const msgpack_object *s = plugd_param(params, 0);
    for (int i = 0; i < 3; i++) {
        if (s != NULL && s->type == MSGPACK_OBJECT_STR && s->via.str.size == strlen(names[i]) &&
            memcmp(s->via.str.ptr, names[i], s->via.str.size) == 0) {
            health_status = (enum plugd_health_status)i;
            plugd_request_reply(req, NULL);
            return;
        }
    }
    plugd_request_fail(req, PLUGD_E_INVALID_REQUEST, "set_health takes ok, degraded or error");
}

static enum plugd_health_status health(struct plugd_worker *w, char *why, size_t size, void *ud)
{
    (void)w;
    (void)ud;
    if (health_status != PLUGD_HEALTH_OK)
        snprintf(why, size, "told to report %s",
                 health_status == PLUGD_HEALTH_ERROR ? "an error" : "degraded health");
    return health_status;
}

/* garbage: writes bytes that are not msgpack-rpc onto the channel. */
static void garbage(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)params;
    (void)ud;
    static const char junk[] = "\xc1\xc1 this is not msgpack \xc1";
    ssize_t ignored = write(plugd_worker_fd(plugd_request_worker(req)), junk, sizeof(junk));
    (void)ignored;
}

/* oversize: starts a message that declares a 1 GiB bin on the channel. */
static void oversize(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)params;
    (void)ud;
    static const char header[] = "\x94\x01\x01\xc0\xc6\x40\x00\x00\x00";
    ssize_t ignored = write(plugd_worker_fd(plugd_request_worker(req)), header, sizeof(header) - 1);
    (void)ignored;
}

/* flood_log [{lines}]: writes that many lines to stdout and stderr, then answers. */
static void flood_log(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    int64_t lines = int_arg(params, "lines", 10000);
    for (int64_t i = 0; i < lines; i++)
        fprintf(i % 2 ? stderr : stdout, "flood line %lld\n", (long long)i);
    fflush(stdout);
    plugd_request_reply(req, NULL);
}

static msgpack_object str_object(const char *s, size_t len)
{
    return (msgpack_object){.type = MSGPACK_OBJECT_STR,
                            .via.str = {.size = (uint32_t)len, .ptr = s}};
}

/* emit_many {n, size}: emits n events plugin.<name>.flood {i, pad} with a
 * pad of `size` bytes (needs events.emit); answers n. */
static void emit_many(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    int64_t n = int_arg(params, "n", 100), size = int_arg(params, "size", 16);
    char *pad = malloc(size > 0 ? (size_t)size : 1);
    if (pad == NULL) {
        plugd_request_fail(req, PLUGD_E_NO_MEMORY, "no memory for a pad of %lld bytes",
                           (long long)size);
        return;
    }
    memset(pad, 'x', size > 0 ? (size_t)size : 1);
    msgpack_object_kv kv[2] = {{str_object("i", 1), {.type = MSGPACK_OBJECT_POSITIVE_INTEGER}},
                               {str_object("pad", 3), str_object(pad, (size_t)size)}};
    msgpack_object payload = {.type = MSGPACK_OBJECT_MAP, .via.map = {.size = 2, .ptr = kv}};
    for (int64_t i = 0; i < n; i++) {
        kv[0].val.via.u64 = (uint64_t)i;
        plugd_worker_emit(plugd_request_worker(req), "flood", &payload, NULL, NULL, NULL);
    }
    free(pad);
    msgpack_pack_int64(plugd_request_begin_reply(req), n);
    plugd_request_end(req);
}

/* ignore_term: SIGTERM is ignored from now on. */
static void ignore_term(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)params;
    (void)ud;
    signal(SIGTERM, SIG_IGN);
    plugd_request_reply(req, NULL);
}

struct delayed {
    ev_timer timer;
    struct plugd_request *req;
};

static void on_delay_done(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct delayed *d = (struct delayed *)t;
    plugd_request_reply(d->req, NULL);
    free(d);
}

/* delay [{ms}]: answers nil after ms milliseconds, without blocking. */
static void delay(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    struct delayed *d = malloc(sizeof(*d));
    if (d == NULL) {
        plugd_request_fail(req, PLUGD_E_NO_MEMORY, "no memory for the delay");
        return;
    }
    d->req = req;
    ev_timer_init(&d->timer, on_delay_done, (double)int_arg(params, "ms", 100) / 1000.0, 0.);
    ev_timer_start(plugd_worker_loop(plugd_request_worker(req)), &d->timer);
}

static void on_host_answer(struct plugd_worker *w, const struct plugd_error *err,
                           const msgpack_object *result, void *ud)
{
    (void)w;
    (void)result;
    const char *code = err ? plugd_errc_name(err->code) : "ok";
    msgpack_pack_str_with_body(plugd_request_begin_reply(ud), code, strlen(code));
    plugd_request_end(ud);
}

/* call_host [method, params...]: calls a plugd host service; answers its
 * error code, or "ok". */
static void call_host(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    const msgpack_object *method = plugd_param(params, 0);
    char name[64];
    if (method == NULL || method->type != MSGPACK_OBJECT_STR || method->via.str.size >= 64) {
        plugd_request_fail(req, PLUGD_E_INVALID_REQUEST, "call_host takes a method name");
        return;
    }
    snprintf(name, sizeof(name), "%.*s", (int)method->via.str.size, method->via.str.ptr);
    msgpack_object rest = *params;
    rest.via.array.ptr++;
    rest.via.array.size--;
    struct plugd_error err;
    if (plugd_worker_call_host(plugd_request_worker(req), name, &rest, 5.0, on_host_answer, req,
                               &err) < 0)
        plugd_request_fail(req, err.code, "%s", err.message);
}

/* close_channel: shuts its channel down and keeps running, never answers. */
static void close_channel(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)params;
    (void)ud;
    shutdown(plugd_worker_fd(plugd_request_worker(req)), SHUT_RDWR);
    for (;;)
        pause();
}

static int64_t config_value;
static msgpack_sbuffer config_seen; /* the last config taken, packed */

static void keep_config(const msgpack_object *config)
{
    msgpack_sbuffer_clear(&config_seen);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &config_seen, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *config);
}

/* Refuses a config with "bad": true. */
static int validate_config(struct plugd_worker *w, const msgpack_object *config,
                           struct plugd_error *err, void *ud)
{
    (void)w;
    (void)ud;
    const msgpack_object *bad = plugd_map_get(config, "bad");
    if (bad != NULL && bad->type == MSGPACK_OBJECT_BOOLEAN && bad->via.boolean)
        return plugd_error_set(err, PLUGD_E_INVALID_REQUEST, "\"bad\" must not be true");
    return 0;
}

static int config_changed(struct plugd_worker *w, const msgpack_object *config,
                          struct plugd_error *err, void *ud)
{
    (void)w;
    (void)err;
    (void)ud;
    plugd_get_int(plugd_map_get(config, "value"), &config_value);
    keep_config(config);
    return 0;
}

/* With config {"config_hooks": true}, crashy validates and applies config
 * changes itself; otherwise plugd restarts it for each change. */
static int initialize(struct plugd_worker *w, const msgpack_object *config, struct plugd_error *err,
                      void *ud)
{
    (void)err;
    (void)ud;
    const msgpack_object *hooks = plugd_map_get(config, "config_hooks");
    if (hooks != NULL && hooks->type == MSGPACK_OBJECT_BOOLEAN && hooks->via.boolean) {
        plugd_worker_on_validate_config(w, validate_config, NULL);
        plugd_worker_on_config_changed(w, config_changed, NULL);
    }
    plugd_get_int(plugd_map_get(config, "value"), &config_value);
    keep_config(config);
    return 0;
}

/* config: the whole config it took last, at initialize or applied hot. */
static void get_config(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)params;
    (void)ud;
    msgpack_zone zone;
    msgpack_object config;
    msgpack_zone_init(&zone, 256);
    msgpack_unpack(config_seen.data, config_seen.size, NULL, &zone, &config);
    plugd_request_reply(req, &config);
    msgpack_zone_destroy(&zone);
}

/* config_value: the "value" of the last config applied hot. */
static void get_config_value(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)params;
    (void)ud;
    msgpack_pack_int64(plugd_request_begin_reply(req), config_value);
    plugd_request_end(req);
}

int main(void)
{
    static const struct {
        const char *name;
        plugd_method_fn fn;
    } methods[] = {
        {"echo", echo},
        {"exit", do_exit},
        {"segfault", segfault},
        {"hang", hang},
        {"stall", stall},
        {"stop_health", stop_health},
        {"garbage", garbage},
        {"flood_log", flood_log},
        {"ignore_term", ignore_term},
        {"delay", delay},
        {"call_host", call_host},
        {"config_value", get_config_value},
        {"oversize", oversize},
        {"emit_many", emit_many},
        {"set_health", set_health},
        {"close_channel", close_channel},
        {"config", get_config},
    };
    msgpack_sbuffer_init(&config_seen);
    struct plugd_worker *w = plugd_worker_new(NULL);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        plugd_worker_method(w, methods[i].name, methods[i].fn, NULL);
    plugd_worker_on_health(w, health, NULL);
    plugd_worker_on_initialize(w, initialize, NULL);
    int status = plugd_worker_run(w);
    plugd_worker_free(w);
    msgpack_sbuffer_destroy(&config_seen);
    return status;
}
