/* plugd-host-app: a host application on libplugd-host. It starts plugd,
 * installs the example plugins, prints plugd's events as they come, offers
 * the host service "notify" (counter calls it), calls a few plugin methods,
 * prints the status table and stops plugd gracefully.
 *
 *   plugd-host-app PLUGD EXAMPLES_DIR STATE_DIR */
#include <limits.h>
#include <plugd/host.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const plugins[] = {"hello", "counter", "python-worker", "node-worker",
                                      "go-worker"};
#define N_PLUGINS (sizeof(plugins) / sizeof(plugins[0]))

/* ------------------------------------------------------------ answers */

typedef void (*inspect_fn)(const msgpack_object *result, void *ctx);

struct answer {
    bool is_done;
    bool is_ok;
    char text[512];
    inspect_fn inspect; /* looks at the result while it is valid */
    void *ctx;
};

static void on_answer(struct plugd_host *h, const struct plugd_error *err,
                      const msgpack_object *result, void *ud)
{
    (void)h;
    struct answer *a = ud;
    a->is_done = true;
    a->is_ok = err == NULL;
    if (err != NULL) {
        snprintf(a->text, sizeof(a->text), "error %s: %s", plugd_errc_name(err->code),
                 err->message);
        return;
    }
    msgpack_object_print_buffer(a->text, sizeof(a->text), *result);
    if (a->inspect != NULL)
        a->inspect(result, a->ctx);
}

/* Sends what was packed and waits for the answer. */
static struct answer *wait_answer(struct plugd_host *h, struct answer *a)
{
    struct plugd_error err;
    if (plugd_host_end(h, &err) < 0) {
        fprintf(stderr, "plugd-host-app: %s\n", err.message);
        exit(1);
    }
    if (!plugd_host_run_until(h, &a->is_done, 30.0)) {
        fprintf(stderr, "plugd-host-app: plugd did not answer\n");
        exit(1);
    }
    return a;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* A command whose arguments are {key: value} (key NULL: none). */
static struct answer *command(struct plugd_host *h, const char *cmd, const char *key,
                              const char *value, inspect_fn inspect, void *ctx)
{
    static struct answer a;
    a = (struct answer){.inspect = inspect, .ctx = ctx};
    msgpack_packer *pk = plugd_host_begin(h, cmd, on_answer, &a);
    msgpack_pack_map(pk, key != NULL);
    if (key != NULL) {
        pack_str(pk, key);
        pack_str(pk, value);
    }
    return wait_answer(h, &a);
}

/* ------------------------------------------------------------ events, services */

static const char *str_field(const msgpack_object *map, const char *key, char *out, size_t size)
{
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0) {
            if (kv->val.type == MSGPACK_OBJECT_STR)
                snprintf(out, size, "%.*s", (int)kv->val.via.str.size, kv->val.via.str.ptr);
            else
                msgpack_object_print_buffer(out, size, kv->val);
            return out;
        }
    }
    snprintf(out, size, "-");
    return out;
}

static void on_event(struct plugd_host *h, const msgpack_object *event, void *ud)
{
    (void)h;
    (void)ud;
    char seq[24], name[96], plugin[64];
    printf("  event %-4s %-28s %s\n", str_field(event, "seq", seq, sizeof(seq)),
           str_field(event, "name", name, sizeof(name)),
           str_field(event, "plugin", plugin, sizeof(plugin)));
}

/* host.notify [value]: a plugin tells the host something; answers "noted". */
static void serve_notify(struct plugd_host_request *req, const char *plugin,
                         const msgpack_object *params, void *ud)
{
    (void)ud;
    char said[128] = "nothing";
    if (params->via.array.size > 0)
        msgpack_object_print_buffer(said, sizeof(said), params->via.array.ptr[0]);
    printf("  host service notify: %s says %s\n", plugin, said);
    char answer[160];
    snprintf(answer, sizeof(answer), "noted %s", said);
    pack_str(plugd_host_begin_reply(req), answer);
    plugd_host_request_end(req);
}

/* ------------------------------------------------------------ plugins */

static void check_ready(const msgpack_object *list, void *ctx)
{
    bool *is_ready = ctx;
    char status[32], state[32];
    const msgpack_object *p = list->via.array.size ? &list->via.array.ptr[0] : list;
    *is_ready = strcmp(str_field(p, "status", status, sizeof(status)), "ready") == 0 &&
                strcmp(str_field(p, "state", state, sizeof(state)), "running") == 0;
}

/* Installs EXAMPLES/NAME unless plugd has it from an earlier run, and waits
 * until its worker runs. */
static void install(struct plugd_host *h, const char *examples, const char *name)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", examples, name);
    if (realpath(path, dir) == NULL) {
        fprintf(stderr, "plugd-host-app: %s: not found\n", path);
        exit(1);
    }
    if (command(h, "status", "plugin", name, NULL, NULL)->is_ok)
        printf("install %-34s -> installed already (state kept in the state folder)\n", name);
    else
        printf("install %-34s -> %s\n", name, command(h, "install", "path", dir, NULL, NULL)->text);
    bool is_ready = false;
    for (int tries = 0; tries < 200 && !is_ready; tries++) {
        command(h, "status", "plugin", name, check_ready, &is_ready);
        if (!is_ready) {
            bool never = false;
            plugd_host_run_until(h, &never, 0.05);
        }
    }
}

static void print_table(const msgpack_object *list, void *ctx)
{
    (void)ctx;
    printf("\n%-16s %-9s %-10s %-10s %-8s %-9s %s\n", "PLUGIN", "VERSION", "STATUS", "WORKER",
           "PID", "RESTARTS", "CALLS");
    for (uint32_t i = 0; list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
        const msgpack_object *p = &list->via.array.ptr[i];
        char f[7][64];
        printf("%-16s %-9s %-10s %-10s %-8s %-9s %s\n", str_field(p, "plugin", f[0], 64),
               str_field(p, "version", f[1], 64), str_field(p, "status", f[2], 64),
               str_field(p, "state", f[3], 64), str_field(p, "pid", f[4], 64),
               str_field(p, "restarts", f[5], 64), str_field(p, "calls", f[6], 64));
    }
}

/* plugin.method(params as the caller packs them) → prints the answer. */
static void call(struct plugd_host *h, const char *label, const char *plugin, const char *method,
                 const char *str_arg, int n_ints, const int64_t *ints)
{
    static struct answer a;
    a = (struct answer){0};
    msgpack_packer *pk =
        plugd_host_begin_call(h, plugin, method, str_arg ? 1 : (uint32_t)n_ints, on_answer, &a);
    if (str_arg != NULL)
        pack_str(pk, str_arg);
    for (int i = 0; str_arg == NULL && i < n_ints; i++)
        msgpack_pack_int64(pk, ints[i]);
    printf("%-42s -> %s\n", label, wait_answer(h, &a)->text);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: plugd-host-app PLUGD EXAMPLES_DIR STATE_DIR\n");
        return 2;
    }
    char log[PATH_MAX];
    snprintf(log, sizeof(log), "%s/plugd.log", argv[3]);
    struct plugd_host_options o = {.plugd = argv[1], .state_dir = argv[3], .log_file = log};
    struct plugd_error err;
    struct plugd_host *h = plugd_host_spawn(EV_DEFAULT, &o, &err);
    if (h != NULL)
        printf("plugd %d started (state %s, log %s)\n", (int)plugd_host_pid(h), argv[3], log);
    if (h == NULL || plugd_host_subscribe(h, "plugin.*", on_event, NULL, &err) < 0 ||
        plugd_host_serve(h, "notify", serve_notify, NULL, &err) < 0) {
        fprintf(stderr, "plugd-host-app: %s\n", err.message);
        return 1;
    }
    for (size_t i = 0; i < N_PLUGINS; i++)
        install(h, argv[2], plugins[i]);

    putchar('\n');
    call(h, "hello.echo(\"hello from the host\")", "hello", "echo", "hello from the host", 0, NULL);
    call(h, "hello.add(2, 40)", "hello", "add", NULL, 2, (int64_t[]){2, 40});
    call(h, "counter.increment(3)", "counter", "increment", NULL, 1, (int64_t[]){3});
    call(h, "counter.announce()  (calls host.notify)", "counter", "announce", NULL, 0, NULL);
    call(h, "python-worker.echo(\"hi\")", "python-worker", "echo", "hi", 0, NULL);
    call(h, "node-worker.add(2, 40)", "node-worker", "add", NULL, 2, (int64_t[]){2, 40});
    call(h, "go-worker.echo(\"hi\")", "go-worker", "echo", "hi", 0, NULL);
    call(h, "hello.nosuch()", "hello", "nosuch", NULL, 0, NULL);
    command(h, "status", NULL, NULL, print_table, NULL);

    int status = plugd_host_stop(h, 30.0);
    printf("\nplugd stopped gracefully (exit status %d)\n", status);
    return status == 0 ? 0 : 1;
}
