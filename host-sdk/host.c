/* libplugd-host: plugd as a child process, the host channel on a socketpair
 * (include/plugd/host.h is the contract). */
#include "plugd/host.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plugd/ipc.h"

#define HOST_FD         3
#define COMMAND_TIMEOUT 300.0 /* s; plugd answers every command itself before this */
#define SETUP_TIMEOUT   10.0  /* s; serve and subscribe wait this long for plugd */
#define EXIT_POLL       0.01  /* s between checks for plugd's exit */
#define MAX_PLUGD_ARGS  32

struct service {
    char *method;
    plugd_host_service_fn fn;
    void *ud;
};

struct plugd_host {
    struct ev_loop *loop;
    struct ipc_conn *conn;
    pid_t pid;
    int exit_status; /* -1 until plugd was reaped */
    bool is_reaped;
    struct service *services;
    size_t n_services;
    plugd_host_event_fn on_event;
    void *event_ud;
    struct pending *begun; /* the command between begin and end */
};

struct pending {
    struct plugd_host *h;
    plugd_host_answer_fn reply;
    void *ud;
};

struct plugd_host_request {
    struct plugd_host *h;
    uint32_t msgid;
};

/* ------------------------------------------------------------ from plugd */

static void on_reply(struct ipc_conn *c, const struct plugd_error *err,
                     const msgpack_object *result, void *ud)
{
    (void)c;
    struct pending *p = ud;
    if (p->reply != NULL)
        p->reply(p->h, err, result, p->ud);
    free(p);
}

static void on_notify(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    (void)c;
    struct plugd_host *h = ud;
    const msgpack_object *event = ipc_param(msg, 0);
    if (ipc_str_equals(msg->method, msg->method_len, "plugd.event") && event != NULL &&
        h->on_event != NULL)
        h->on_event(h, event, h->event_ud);
}

static const struct service *find_service(const struct plugd_host *h, const char *name, size_t len)
{
    for (size_t i = 0; i < h->n_services; i++)
        if (ipc_str_equals(name, len, h->services[i].method))
            return &h->services[i];
    return NULL;
}

/* A plugin's host service call: NAME [plugin, [params...]]. */
static void on_request(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    struct plugd_host *h = ud;
    const struct service *s = find_service(h, msg->method, msg->method_len);
    const msgpack_object *plugin = ipc_param(msg, 0), *params = ipc_param(msg, 1);
    struct plugd_error e;
    if (s == NULL) {
        plugd_error_set(&e, PLUGD_E_METHOD_NOT_FOUND, "the host serves no \"%.*s\"",
                        (int)msg->method_len, msg->method);
        ipc_conn_reply_error(c, msg->msgid, &e, NULL);
        return;
    }
    if (plugin == NULL || plugin->type != MSGPACK_OBJECT_STR || params == NULL ||
        params->type != MSGPACK_OBJECT_ARRAY) {
        plugd_error_set(&e, PLUGD_E_INVALID_REQUEST, "a host service takes [plugin, [params]]");
        ipc_conn_reply_error(c, msg->msgid, &e, NULL);
        return;
    }
    struct plugd_host_request *req = malloc(sizeof(*req));
    if (req == NULL) {
        plugd_error_set(&e, PLUGD_E_NO_MEMORY, "the host has no memory for the request");
        ipc_conn_reply_error(c, msg->msgid, &e, NULL);
        return;
    }
    *req = (struct plugd_host_request){.h = h, .msgid = msg->msgid};
    char name[256];
    snprintf(name, sizeof(name), "%.*s", (int)plugin->via.str.size, plugin->via.str.ptr);
    s->fn(req, name, params, s->ud);
}

static void on_close(struct ipc_conn *c, const struct plugd_error *why, void *ud)
{
    (void)c;
    (void)why;
    (void)ud; /* plugd_host_is_open says so; the loop helpers notice */
}

/* ------------------------------------------------------------ spawn */

/* The child: the channel at HOST_FD, then plugd. Never returns. */
static void exec_plugd(const struct plugd_host_options *o, int channel, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* plugd stops gracefully if we die */
    if (getppid() != parent)
        _exit(126);
    if (channel == HOST_FD)
        fcntl(channel, F_SETFD, 0);
    else if (dup2(channel, HOST_FD) < 0)
        _exit(126);
    const char *argv[MAX_PLUGD_ARGS + 12];
    size_t n = 0;
    argv[n++] = o->plugd ? o->plugd : "plugd";
    argv[n++] = "--host-fd";
    argv[n++] = "3";
    argv[n++] = "--state-dir";
    argv[n++] = o->state_dir;
    if (o->plugins_dir != NULL) {
        argv[n++] = "--plugins-dir";
        argv[n++] = o->plugins_dir;
    }
    if (o->log_file != NULL) {
        argv[n++] = "--log-file";
        argv[n++] = o->log_file;
    }
    for (size_t i = 0; o->extra_args != NULL && o->extra_args[i] != NULL && i < MAX_PLUGD_ARGS; i++)
        argv[n++] = o->extra_args[i];
    argv[n] = NULL;
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "libplugd-host: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

struct plugd_host *plugd_host_spawn(struct ev_loop *loop, const struct plugd_host_options *o,
                                    struct plugd_error *err)
{
    if (o == NULL || o->state_dir == NULL) {
        plugd_error_set(err, PLUGD_E_INVALID_ARGUMENT, "plugd_host_spawn: state_dir is required");
        return NULL;
    }
    struct plugd_host *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "plugd_host_spawn: no memory");
        return NULL;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        plugd_error_set(err, PLUGD_E_IO, "plugd_host_spawn: %s", strerror(errno));
        free(h);
        return NULL;
    }
    *h = (struct plugd_host){.loop = loop, .exit_status = -1};
    pid_t parent = getpid();
    h->pid = fork();
    if (h->pid == 0)
        exec_plugd(o, sv[1], parent);
    close(sv[1]);
    if (h->pid < 0) {
        plugd_error_set(err, PLUGD_E_IO, "plugd_host_spawn: fork: %s", strerror(errno));
        close(sv[0]);
        free(h);
        return NULL;
    }
    struct ipc_handlers handlers = {
        .on_request = on_request, .on_notify = on_notify, .on_close = on_close};
    if ((h->conn = ipc_conn_new(loop, sv[0], sv[0], NULL, &handlers, h, err)) == NULL) {
        kill(h->pid, SIGKILL);
        waitpid(h->pid, NULL, 0);
        free(h);
        return NULL;
    }
    return h;
}

pid_t plugd_host_pid(const struct plugd_host *h)
{
    return h->pid;
}

bool plugd_host_is_open(const struct plugd_host *h)
{
    return h->conn != NULL && ipc_conn_is_open(h->conn);
}

/* ------------------------------------------------------------ commands */

msgpack_packer *plugd_host_begin(struct plugd_host *h, const char *cmd, plugd_host_answer_fn reply,
                                 void *ud)
{
    struct pending *p = malloc(sizeof(*p));
    if (p != NULL)
        *p = (struct pending){.h = h, .reply = reply, .ud = ud};
    h->begun = p;
    /* without memory the call still packs, and end drops it unsent */
    msgpack_packer *pk = ipc_conn_begin_call(h->conn, cmd, COMMAND_TIMEOUT, on_reply, p);
    msgpack_pack_array(pk, 1);
    return pk;
}

msgpack_packer *plugd_host_begin_call(struct plugd_host *h, const char *plugin, const char *method,
                                      uint32_t n_params, plugd_host_answer_fn reply, void *ud)
{
    msgpack_packer *pk = plugd_host_begin(h, "call", reply, ud);
    msgpack_pack_map(pk, 3);
    ipc_pack_str(pk, "plugin");
    ipc_pack_str(pk, plugin);
    ipc_pack_str(pk, "method");
    ipc_pack_str(pk, method);
    ipc_pack_str(pk, "params");
    msgpack_pack_array(pk, n_params);
    return pk;
}

int plugd_host_end(struct plugd_host *h, struct plugd_error *err)
{
    struct pending *p = h->begun;
    h->begun = NULL;
    if (p == NULL) {
        ipc_conn_cancel(h->conn); /* sent, plugd would run a command its caller was told failed */
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for a command");
    }
    if (ipc_conn_end(h->conn, err) < 0) {
        free(p);
        return -1;
    }
    return 0;
}

/* A command sent and waited for (setup: serve, subscribe). */
struct sync_answer {
    bool is_done;
    struct plugd_error err;
};

static void on_sync_answer(struct plugd_host *h, const struct plugd_error *err,
                           const msgpack_object *result, void *ud)
{
    (void)h;
    (void)result;
    struct sync_answer *a = ud;
    a->is_done = true;
    if (err != NULL)
        a->err = *err;
}

static int wait_answer(struct plugd_host *h, struct sync_answer *a, struct plugd_error *err)
{
    if (plugd_host_end(h, err) < 0)
        return -1;
    if (!plugd_host_run_until(h, &a->is_done, SETUP_TIMEOUT))
        return plugd_error_set(err, PLUGD_E_TIMEOUT, "plugd did not answer");
    if (a->err.code != PLUGD_OK) {
        *err = a->err;
        return -1;
    }
    return 0;
}

int plugd_host_subscribe(struct plugd_host *h, const char *pattern, plugd_host_event_fn on_event,
                         void *ud, struct plugd_error *err)
{
    h->on_event = on_event;
    h->event_ud = ud;
    struct sync_answer a = {0};
    msgpack_packer *pk = plugd_host_begin(h, "subscribe", on_sync_answer, &a);
    msgpack_pack_map(pk, 1);
    ipc_pack_str(pk, "pattern");
    ipc_pack_str(pk, pattern);
    return wait_answer(h, &a, err);
}

/* Tells plugd the whole list of services. */
static int send_services(struct plugd_host *h, struct plugd_error *err)
{
    struct sync_answer a = {0};
    msgpack_packer *pk = plugd_host_begin(h, "serve", on_sync_answer, &a);
    msgpack_pack_map(pk, 1);
    ipc_pack_str(pk, "methods");
    msgpack_pack_array(pk, (uint32_t)h->n_services);
    for (size_t i = 0; i < h->n_services; i++)
        ipc_pack_str(pk, h->services[i].method);
    return wait_answer(h, &a, err);
}

int plugd_host_serve(struct plugd_host *h, const char *method, plugd_host_service_fn fn, void *ud,
                     struct plugd_error *err)
{
    if (find_service(h, method, strlen(method)) != NULL)
        return plugd_error_set(err, PLUGD_E_INVALID_ARGUMENT, "\"%s\" is served already", method);
    struct service *grown = realloc(h->services, (h->n_services + 1) * sizeof(*grown));
    char *name = strdup(method);
    if (grown == NULL || name == NULL) {
        free(name);
        if (grown != NULL)
            h->services = grown;
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for a service");
    }
    h->services = grown;
    h->services[h->n_services++] = (struct service){.method = name, .fn = fn, .ud = ud};
    if (send_services(h, err) == 0)
        return 0;
    free(h->services[--h->n_services].method); /* plugd refused it: forget it */
    return -1;
}

/* ------------------------------------------------------------ answers */

int plugd_host_reply(struct plugd_host_request *req, const msgpack_object *result)
{
    int rc = ipc_conn_reply(req->h->conn, req->msgid, result, NULL);
    free(req);
    return rc;
}

msgpack_packer *plugd_host_begin_reply(struct plugd_host_request *req)
{
    return ipc_conn_begin_reply(req->h->conn, req->msgid);
}

int plugd_host_request_end(struct plugd_host_request *req)
{
    int rc = ipc_conn_end(req->h->conn, NULL);
    free(req);
    return rc;
}

int plugd_host_fail(struct plugd_host_request *req, enum plugd_errc code, const char *fmt, ...)
{
    struct plugd_error e;
    va_list ap;
    va_start(ap, fmt);
    plugd_error_vset(&e, code, fmt, ap);
    va_end(ap);
    int rc = ipc_conn_reply_error(req->h->conn, req->msgid, &e, NULL);
    free(req);
    return rc;
}

/* ------------------------------------------------------------ the loop, the end */

static void on_wake(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
}

static bool reap(struct plugd_host *h)
{
    int status;
    if (!h->is_reaped && waitpid(h->pid, &status, WNOHANG) == h->pid) {
        h->is_reaped = true;
        h->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    return h->is_reaped;
}

bool plugd_host_run_until(struct plugd_host *h, const bool *flag, double seconds)
{
    ev_timer wake; /* the loop never blocks longer than EXIT_POLL */
    ev_timer_init(&wake, on_wake, EXIT_POLL, EXIT_POLL);
    ev_timer_start(h->loop, &wake);
    ev_tstamp until = ev_time() + seconds;
    while (!*flag && plugd_host_is_open(h) && ev_time() < until)
        ev_run(h->loop, EVRUN_ONCE);
    ev_timer_stop(h->loop, &wake);
    return *flag;
}

static void free_host(struct plugd_host *h)
{
    ipc_conn_free(h->conn); /* requests still out: connection_closed */
    for (size_t i = 0; i < h->n_services; i++)
        free(h->services[i].method);
    free(h->services);
    free(h);
}

int plugd_host_stop(struct plugd_host *h, double seconds)
{
    if (plugd_host_is_open(h)) {
        msgpack_packer *pk = plugd_host_begin(h, "shutdown", NULL, NULL);
        msgpack_pack_map(pk, 0);
        plugd_host_end(h, NULL);
        ipc_conn_flush(h->conn, NULL);
    }
    ev_timer wake;
    ev_timer_init(&wake, on_wake, EXIT_POLL, EXIT_POLL);
    ev_timer_start(h->loop, &wake);
    ev_tstamp until = ev_time() + seconds;
    while (!reap(h) && ev_time() < until)
        ev_run(h->loop, EVRUN_ONCE);
    ev_timer_stop(h->loop, &wake);
    if (!h->is_reaped) {
        kill(h->pid, SIGKILL);
        waitpid(h->pid, NULL, 0);
    }
    int status = h->exit_status;
    free_host(h);
    return status;
}
