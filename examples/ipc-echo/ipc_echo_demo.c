/* ipc-echo-demo: two processes speaking msgpack-rpc over a socketpair.
 *
 * The parent forks a child; each wraps its end of the socketpair in an
 * ipc_conn on its own libev loop. The child serves "echo" (returns its first
 * argument), "add" (the sum of two integers) and "slow" (never answers), and
 * notifies the parent with "tick" for every request it receives. The parent
 * calls each method, prints what came back and how long it took, checks the
 * outcome, then closes the connection, which makes the child exit.
 *
 * Exits 0 when every call had the expected outcome. */
#include <ev.h>
#include <msgpack.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "plugd/ipc.h"

/* ------------------------------------------------------------------ child */

static int send_result(struct ipc_conn *c, uint32_t msgid, const msgpack_object *result)
{
    struct plugd_error err;
    if (ipc_conn_reply(c, msgid, result, &err) < 0) {
        fprintf(stderr, "ipc-echo-demo (child): reply: %s\n", err.message);
        return -1;
    }
    return 0;
}

static int send_error(struct ipc_conn *c, uint32_t msgid, enum plugd_errc code, const char *what)
{
    struct plugd_error e, err;
    plugd_error_set(&e, code, "%s", what);
    if (ipc_conn_reply_error(c, msgid, &e, &err) < 0) {
        fprintf(stderr, "ipc-echo-demo (child): reply: %s\n", err.message);
        return -1;
    }
    return 0;
}

/* echo(x) -> x */
static int serve_echo(struct ipc_conn *c, const struct ipc_message *msg)
{
    const msgpack_object *x = ipc_param(msg, 0);
    if (x == NULL)
        return send_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST, "echo takes one argument");
    return send_result(c, msg->msgid, x);
}

static bool as_int64(const msgpack_object *o, int64_t *v)
{
    if (o != NULL && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return true;
    }
    if (o != NULL && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *v = (int64_t)o->via.u64;
        return true;
    }
    return false;
}

/* add(a, b) -> a + b, for 64-bit signed integers */
static int serve_add(struct ipc_conn *c, const struct ipc_message *msg)
{
    int64_t a, b, sum;
    if (msg->params->via.array.size != 2 || !as_int64(ipc_param(msg, 0), &a) ||
        !as_int64(ipc_param(msg, 1), &b))
        return send_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST, "add takes two integers");
    if (__builtin_add_overflow(a, b, &sum))
        return send_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST, "the sum overflows 64 bits");
    msgpack_object result = {.type = sum < 0 ? MSGPACK_OBJECT_NEGATIVE_INTEGER
                                             : MSGPACK_OBJECT_POSITIVE_INTEGER};
    if (sum < 0)
        result.via.i64 = sum;
    else
        result.via.u64 = (uint64_t)sum;
    return send_result(c, msg->msgid, &result);
}

/* slow() never answers: the caller's deadline decides. */
static int serve_slow(struct ipc_conn *c, const struct ipc_message *msg)
{
    (void)c;
    (void)msg;
    return 0;
}

static const struct method {
    const char *name;
    int (*serve)(struct ipc_conn *c, const struct ipc_message *msg);
} methods[] = {
    {"echo", serve_echo},
    {"add", serve_add},
    {"slow", serve_slow},
};

struct child {
    struct ev_loop *loop;
    unsigned received; /* requests so far */
    bool is_clean;     /* the connection ended because the parent closed it */
};

static void child_on_request(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    struct child *ch = ud;
    struct plugd_error err;

    /* Tell the parent how many requests arrived so far: tick(n). */
    msgpack_object n = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = ++ch->received};
    msgpack_object params = {.type = MSGPACK_OBJECT_ARRAY, .via.array = {.size = 1, .ptr = &n}};
    if (ipc_conn_notify(c, "tick", &params, &err) < 0)
        fprintf(stderr, "ipc-echo-demo (child): notify tick: %s\n", err.message);

    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (ipc_str_equals(msg->method, msg->method_len, methods[i].name)) {
            methods[i].serve(c, msg);
            return;
        }
    char what[128];
    snprintf(what, sizeof(what), "no method \"%.*s\"", (int)msg->method_len, msg->method);
    send_error(c, msg->msgid, PLUGD_E_METHOD_NOT_FOUND, what);
}

static void child_on_close(struct ipc_conn *c, const struct plugd_error *why, void *ud)
{
    struct child *ch = ud;
    (void)c;
    /* The parent closing its end is the normal way to stop. */
    ch->is_clean = why == NULL || why->code == PLUGD_E_CONNECTION_CLOSED;
    if (!ch->is_clean)
        fprintf(stderr, "ipc-echo-demo (child): connection closed: %s: %s\n",
                plugd_errc_name(why->code), why->message);
    ev_break(ch->loop, EVBREAK_ALL);
}

/* Serves requests on `fd` until the parent closes its end. */
static int child_main(int fd)
{
    struct child ch = {.loop = ev_loop_new(EVFLAG_AUTO)};
    if (ch.loop == NULL) {
        fprintf(stderr, "ipc-echo-demo (child): cannot create an event loop\n");
        close(fd);
        return 1;
    }
    struct ipc_handlers h = {.on_request = child_on_request, .on_close = child_on_close};
    struct plugd_error err;
    struct ipc_conn *c = ipc_conn_new(ch.loop, fd, fd, NULL, &h, &ch, &err);
    if (c == NULL) {
        fprintf(stderr, "ipc-echo-demo (child): %s\n", err.message);
        ev_loop_destroy(ch.loop);
        return 1;
    }
    ev_run(ch.loop, 0); /* until child_on_close breaks it */
    ipc_conn_free(c);
    ev_loop_destroy(ch.loop);
    return ch.is_clean ? 0 : 1;
}

/* ----------------------------------------------------------------- parent */

struct demo {
    struct ev_loop *loop;
    struct ipc_conn *conn;
    unsigned calls;
    unsigned ticks;     /* "tick" notifications received */
    uint64_t last_tick; /* the n of the last tick(n) */
};

/* The outcome of one call, filled by on_reply. */
struct outcome {
    bool is_done;
    struct timespec start, end;
    char text[256]; /* the result as msgpack-c prints it, or "error <code>" */
    char detail[PLUGD_ERROR_MESSAGE_MAX];
};

static void on_reply(struct ipc_conn *c, const struct plugd_error *err,
                     const msgpack_object *result, void *ud)
{
    (void)c;
    struct outcome *o = ud;
    clock_gettime(CLOCK_MONOTONIC, &o->end);
    if (err != NULL) {
        snprintf(o->text, sizeof(o->text), "error %s", plugd_errc_name(err->code));
        snprintf(o->detail, sizeof(o->detail), "%s", err->message);
    } else {
        msgpack_object_print_buffer(o->text, sizeof(o->text), *result);
    }
    o->is_done = true;
}

static void parent_on_notify(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    struct demo *d = ud;
    (void)c;
    const msgpack_object *n = ipc_param(msg, 0);
    if (ipc_str_equals(msg->method, msg->method_len, "tick") && n != NULL &&
        n->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        d->ticks++;
        d->last_tick = n->via.u64;
    }
}

static void parent_on_close(struct ipc_conn *c, const struct plugd_error *why, void *ud)
{
    (void)c;
    (void)ud;
    if (why != NULL)
        fprintf(stderr, "ipc-echo-demo: connection closed: %s: %s\n", plugd_errc_name(why->code),
                why->message);
}

static void print_duration(const struct timespec *a, const struct timespec *b)
{
    long long us = (b->tv_sec - a->tv_sec) * 1000000LL + (b->tv_nsec - a->tv_nsec) / 1000;
    if (us < 10000)
        printf("%lld us", us);
    else
        printf("%.1f ms", us / 1000.0);
}

/* Writes `method(arg, ...)` into buf, the args as msgpack-c prints them. */
static void format_call(char *buf, size_t size, const char *method, const msgpack_object *args,
                        uint32_t nargs)
{
    size_t len = (size_t)snprintf(buf, size, "%s(", method);
    for (uint32_t i = 0; i < nargs && len + 3 < size; i++) {
        if (i > 0)
            len += (size_t)snprintf(buf + len, size - len, ", ");
        len += (size_t)msgpack_object_print_buffer(buf + len, size - len, args[i]);
    }
    if (len + 1 < size)
        snprintf(buf + len, size - len, ")");
}

/* Calls method(args...) with a deadline of `timeout` seconds and runs the
 * loop until the call completes (every call does: result, error, timeout or
 * connection_closed). Prints one line; returns 0 if the outcome reads `want`. */
static int call(struct demo *d, const char *method, const msgpack_object *args, uint32_t nargs,
                double timeout, const char *want)
{
    msgpack_object params = {.type = MSGPACK_OBJECT_ARRAY,
                             .via.array = {.size = nargs, .ptr = (msgpack_object *)args}};
    char label[256];
    format_call(label, sizeof(label), method, args, nargs);

    struct outcome o = {0};
    struct plugd_error err;
    d->calls++;
    clock_gettime(CLOCK_MONOTONIC, &o.start);
    if (ipc_conn_call(d->conn, method, &params, timeout, on_reply, &o, &err) < 0) {
        printf("%s -> not sent: %s\n", label, err.message);
        return -1;
    }
    while (!o.is_done)
        ev_run(d->loop, EVRUN_ONCE);

    printf("%-28s -> %s", label, o.text);
    if (o.detail[0] != '\0')
        printf(" (%s)", o.detail);
    printf(" in ");
    print_duration(&o.start, &o.end);
    printf("\n");
    bool is_expected = strcmp(o.text, want) == 0;
    if (!is_expected)
        printf("    FAILED: expected %s\n", want);
    return is_expected ? 0 : -1;
}

static msgpack_object str(const char *s)
{
    return (msgpack_object){.type = MSGPACK_OBJECT_STR,
                            .via.str = {.size = (uint32_t)strlen(s), .ptr = s}};
}

static msgpack_object integer(int64_t v)
{
    if (v < 0)
        return (msgpack_object){.type = MSGPACK_OBJECT_NEGATIVE_INTEGER, .via.i64 = v};
    return (msgpack_object){.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = (uint64_t)v};
}

/* The parent's script: every call and the outcome it must have. */
static int run_calls(struct demo *d)
{
    int failed = 0;
    msgpack_object list_items[] = {integer(1), str("two"), {.type = MSGPACK_OBJECT_NIL}};
    msgpack_object list = {.type = MSGPACK_OBJECT_ARRAY,
                           .via.array = {.size = 3, .ptr = list_items}};

    failed |= call(d, "echo", (msgpack_object[]){str("hello")}, 1, 1.0, "\"hello\"");
    failed |= call(d, "echo", (msgpack_object[]){integer(-42)}, 1, 1.0, "-42");
    failed |= call(d, "echo", &list, 1, 1.0, "[1, \"two\", nil]");
    failed |= call(d, "add", (msgpack_object[]){integer(2), integer(40)}, 2, 1.0, "42");
    failed |= call(d, "add", (msgpack_object[]){integer(-7), integer(5)}, 2, 1.0, "-2");
    failed |= call(d, "add", (msgpack_object[]){integer(INT64_MAX), integer(1)}, 2, 1.0,
                   "error invalid_request");
    failed |= call(d, "nosuch", NULL, 0, 1.0, "error method_not_found");
    failed |= call(d, "slow", NULL, 0, 0.05, "error timeout");

    printf("notifications: %u x tick, the last tick(%llu)\n", d->ticks,
           (unsigned long long)d->last_tick);
    if (d->ticks != d->calls || d->last_tick != d->calls) {
        printf("    expected %u ticks, one per call\n", d->calls);
        failed = -1;
    }
    return failed ? -1 : 0;
}

/* Talks to the child over `fd`, then closes the connection. */
static int parent_main(int fd)
{
    struct demo d = {.loop = ev_loop_new(EVFLAG_AUTO)};
    if (d.loop == NULL) {
        fprintf(stderr, "ipc-echo-demo: cannot create an event loop\n");
        close(fd);
        return -1;
    }
    struct ipc_handlers h = {.on_notify = parent_on_notify, .on_close = parent_on_close};
    struct plugd_error err;
    d.conn = ipc_conn_new(d.loop, fd, fd, NULL, &h, &d, &err);
    if (d.conn == NULL) {
        fprintf(stderr, "ipc-echo-demo: %s\n", err.message);
        ev_loop_destroy(d.loop);
        return -1;
    }
    int r = run_calls(&d);
    ipc_conn_free(d.conn); /* closes our end: the child sees EOF and exits */
    ev_loop_destroy(d.loop);
    return r;
}

int main(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("ipc-echo-demo: socketpair");
        return 1;
    }
    pid_t parent = getpid();
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("ipc-echo-demo: fork");
        return 1;
    }
    if (pid == 0) {
        close(sv[0]);
        /* Die with the parent, even if it dies before this line ran. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(1);
        _exit(child_main(sv[1]));
    }
    close(sv[1]);
    printf("parent %d, child %d, one socketpair\n", (int)parent, (int)pid);

    int r = parent_main(sv[0]);

    int status;
    if (waitpid(pid, &status, 0) < 0) {
        perror("ipc-echo-demo: waitpid");
        return 1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "ipc-echo-demo: the child failed (wait status %#x)\n", status);
        r = -1;
    } else {
        printf("child exited with status 0\n");
    }
    printf("%s\n", r == 0 ? "ok" : "FAILED");
    return r == 0 ? 0 : 1;
}
