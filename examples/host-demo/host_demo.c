/* plugd-demo: a tiny host application. It starts plugd on a plugins folder
 * with a host channel, waits for the workers, calls a few plugin methods,
 * prints plugd's status and stops it gracefully.
 *
 *   plugd-demo PLUGD PLUGINS_DIR STATE_DIR */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plugd/ipc.h"

static struct ev_loop *loop;
static struct ipc_conn *plugd;

typedef void (*inspect_fn)(const msgpack_object *result, void *ctx);

struct answer {
    bool done;
    char text[512];
    inspect_fn inspect; /* looks at the result while it is valid */
    void *ctx;
};

static void on_answer(struct ipc_conn *c, const struct plugd_error *err,
                      const msgpack_object *result, void *ud)
{
    (void)c;
    struct answer *a = ud;
    a->done = true;
    if (err != NULL) {
        snprintf(a->text, sizeof(a->text), "error %s: %s", plugd_errc_name(err->code),
                 err->message);
        return;
    }
    msgpack_object_print_buffer(a->text, sizeof(a->text), *result);
    if (a->inspect != NULL)
        a->inspect(result, a->ctx);
}

/* Sends host command `cmd` with the argument `pack_arg` packs, waits for the
 * answer, and returns its text. */
static const char *command(const char *cmd, void (*pack_arg)(msgpack_packer *, const void *),
                           const void *arg, inspect_fn inspect, void *ctx)
{
    static struct answer a;
    a = (struct answer){.inspect = inspect, .ctx = ctx};
    msgpack_packer *pk = ipc_conn_begin_call(plugd, cmd, 10.0, on_answer, &a);
    msgpack_pack_array(pk, 1);
    pack_arg(pk, arg);
    struct plugd_error err;
    if (ipc_conn_end(plugd, &err) < 0) {
        fprintf(stderr, "plugd-demo: %s\n", err.message);
        exit(1);
    }
    while (!a.done && ipc_conn_is_open(plugd))
        ev_run(loop, EVRUN_ONCE);
    return a.text;
}

struct call {
    const char *plugin, *method, *label;
    int argc;
    const char *str_arg;
    int64_t int_args[2];
};

static void pack_call(msgpack_packer *pk, const void *arg)
{
    const struct call *c = arg;
    msgpack_pack_map(pk, 3);
    ipc_pack_str(pk, "plugin");
    ipc_pack_str(pk, c->plugin);
    ipc_pack_str(pk, "method");
    ipc_pack_str(pk, c->method);
    ipc_pack_str(pk, "params");
    msgpack_pack_array(pk, c->argc);
    if (c->str_arg != NULL)
        ipc_pack_str(pk, c->str_arg);
    else
        for (int i = 0; i < c->argc; i++)
            msgpack_pack_int64(pk, c->int_args[i]);
}

static void pack_empty(msgpack_packer *pk, const void *arg)
{
    (void)arg;
    msgpack_pack_map(pk, 0);
}

static bool is_state(const msgpack_object *w, const char *state)
{
    const msgpack_object *s = ipc_map_get(w, "state");
    return s != NULL && ipc_str_equals(s->via.str.ptr, s->via.str.size, state);
}

static void check_settled(const msgpack_object *list, void *ctx)
{
    bool *is_settled = ctx;
    *is_settled = list->type == MSGPACK_OBJECT_ARRAY;
    for (uint32_t i = 0; *is_settled && i < list->via.array.size; i++)
        *is_settled = !is_state(&list->via.array.ptr[i], "starting") &&
                      !is_state(&list->via.array.ptr[i], "backoff");
}

/* Waits until no worker is starting or backing off (at most 10 s). */
static void wait_for_workers(void)
{
    bool is_settled = false;
    for (int tries = 0; tries < 200 && !is_settled; tries++) {
        command("status", pack_empty, NULL, check_settled, &is_settled);
        if (!is_settled)
            usleep(50000);
    }
}

static void print_table(const msgpack_object *list, void *ctx)
{
    (void)ctx;
    printf("\n%-16s %-9s %-10s %-10s %-8s %-9s %s\n", "PLUGIN", "VERSION", "STATUS", "WORKER",
           "PID", "RESTARTS", "CALLS");
    for (uint32_t i = 0; list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
        const msgpack_object *w = &list->via.array.ptr[i];
        const msgpack_object *name = ipc_map_get(w, "plugin"), *state = ipc_map_get(w, "state");
        const msgpack_object *version = ipc_map_get(w, "version");
        const msgpack_object *status = ipc_map_get(w, "status");
        printf("%-16.*s %-9.*s %-10.*s %-10.*s %-8lld %-9llu %llu\n", (int)name->via.str.size,
               name->via.str.ptr, (int)version->via.str.size, version->via.str.ptr,
               (int)status->via.str.size, status->via.str.ptr, (int)state->via.str.size,
               state->via.str.ptr, (long long)ipc_map_get(w, "pid")->via.i64,
               (unsigned long long)ipc_map_get(w, "restarts")->via.u64,
               (unsigned long long)ipc_map_get(w, "calls")->via.u64);
    }
}

static pid_t spawn_plugd(const char *exe, const char *plugins, const char *state, int *fd)
{
    int sv[2];
    char log[4096];
    snprintf(log, sizeof(log), "%s/plugd.log", state);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(sv[1], 3);
        execl(exe, exe, "--plugins-dir", plugins, "--state-dir", state, "--log-file", log,
              "--host-fd", "3", (char *)NULL);
        perror("plugd-demo: exec plugd");
        _exit(127);
    }
    close(sv[1]);
    *fd = sv[0];
    return pid;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: plugd-demo PLUGD PLUGINS_DIR STATE_DIR\n");
        return 2;
    }
    int fd;
    pid_t pid = spawn_plugd(argv[1], argv[2], argv[3], &fd);
    if (pid < 0)
        return 1;
    loop = ev_default_loop(0);
    plugd = ipc_conn_new(loop, fd, fd, NULL, NULL, NULL, NULL);
    printf("plugd %d started on %s (log: %s/plugd.log)\n", pid, argv[2], argv[3]);
    wait_for_workers();

    static const struct call calls[] = {
        {"hello", "echo", "hello.echo(\"hello from plugd\")", 1, "hello from plugd", {0}},
        {"hello", "add", "hello.add(2, 40)", 2, NULL, {2, 40}},
        {"counter", "increment", "counter.increment()", 0, NULL, {0}},
        {"counter", "increment", "counter.increment(10)", 1, NULL, {10}},
        {"python-worker", "echo", "python-worker.echo(\"hi\")", 1, "hi", {0}},
        {"hello", "nosuch", "hello.nosuch()", 0, NULL, {0}},
    };
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
        printf("%-36s -> %s\n", calls[i].label, command("call", pack_call, &calls[i], NULL, NULL));
    command("status", pack_empty, NULL, print_table, NULL);

    command("shutdown", pack_empty, NULL, NULL, NULL);
    int status;
    waitpid(pid, &status, 0);
    printf("\nplugd stopped gracefully (exit status %d)\n", WEXITSTATUS(status));
    ipc_conn_free(plugd);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
