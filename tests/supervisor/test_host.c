/* The host channel end to end through libplugd-host: a real plugd spawned by
 * the library, real workers, commands, events, host services forwarded both
 * ways with their errors, and a host that dies taking plugd with it. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <plugd/host.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plugd_harness.h"

static struct harness h; /* the temp folder and plugin folders only */
static struct plugd_host *host;
static struct ev_loop *loop;

static void setup(void)
{
    harness_init(&h);
    loop = ev_loop_new(EVFLAG_AUTO);
}

static void teardown(void)
{
    if (host != NULL) {
        pid_t pid = plugd_host_pid(host);
        cr_assert_eq(plugd_host_stop(host, 20.0), 0, "plugd exits 0");
        host = NULL;
        cr_assert(harness_pid_gone(pid));
        cr_assert_eq(harness_count_children(getpid()), 0, "no child left behind");
    }
    ev_loop_destroy(loop);
    harness_fini(&h);
}

TestSuite(host, .init = setup, .fini = teardown, .timeout = 120);

static void spawn(void)
{
    char plugd[PATH_MAX], plugins[PATH_MAX], state[PATH_MAX], log[PATH_MAX];
    snprintf(plugd, sizeof(plugd), "%s/supervisor/plugd", getenv("PLUGD_BUILD_ROOT"));
    snprintf(plugins, sizeof(plugins), "%s/plugins", h.dir);
    snprintf(state, sizeof(state), "%s/state", h.dir);
    snprintf(log, sizeof(log), "%s/plugd.log", h.dir);
    struct plugd_host_options o = {
        .plugd = plugd, .state_dir = state, .plugins_dir = plugins, .log_file = log};
    struct plugd_error err;
    host = plugd_host_spawn(loop, &o, &err);
    cr_assert_not_null(host, "%s", err.message);
}

/* ------------------------------------------------------------ answers */

struct answer {
    bool is_done;
    enum plugd_errc code;
    char message[PLUGD_ERROR_MESSAGE_MAX];
    char text[1024]; /* the result, printed */
    msgpack_object_type type;
};

static void on_answer(struct plugd_host *ph, const struct plugd_error *err,
                      const msgpack_object *result, void *ud)
{
    (void)ph;
    struct answer *a = ud;
    a->is_done = true;
    a->code = err ? err->code : PLUGD_OK;
    if (err != NULL) {
        snprintf(a->message, sizeof(a->message), "%s", err->message);
        return;
    }
    a->type = result->type;
    if (result->type == MSGPACK_OBJECT_STR)
        snprintf(a->text, sizeof(a->text), "%.*s", (int)result->via.str.size, result->via.str.ptr);
    else
        msgpack_object_print_buffer(a->text, sizeof(a->text), *result);
}

static struct answer *finish(struct answer *a)
{
    struct plugd_error err;
    cr_assert_eq(plugd_host_end(host, &err), 0, "%s", err.message);
    cr_assert(plugd_host_run_until(host, &a->is_done, 30.0), "no answer from plugd");
    return a;
}

/* crashy's call_host [method, args...]: the plugin calls a host service and
 * answers the service's code ("ok" or an error code). */
static struct answer *plugin_calls_host(const char *plugin, const char *method, const char *arg)
{
    static struct answer a;
    a = (struct answer){0};
    /* the call into the plugin outlives the plugin's call to the host */
    msgpack_packer *pk = plugd_host_begin(host, "call", on_answer, &a);
    msgpack_pack_map(pk, 4);
    msgpack_pack_str_with_body(pk, "plugin", 6);
    msgpack_pack_str_with_body(pk, plugin, strlen(plugin));
    msgpack_pack_str_with_body(pk, "method", 6);
    msgpack_pack_str_with_body(pk, "call_host", 9);
    msgpack_pack_str_with_body(pk, "timeout_ms", 10);
    msgpack_pack_int(pk, 10000);
    msgpack_pack_str_with_body(pk, "params", 6);
    msgpack_pack_array(pk, 2);
    msgpack_pack_str_with_body(pk, method, strlen(method));
    msgpack_pack_str_with_body(pk, arg, strlen(arg));
    finish(&a);
    cr_assert_eq(a.code, PLUGD_OK, "call_host itself failed: %s", a.message);
    return &a;
}

static void wait_running(const char *plugin)
{
    for (int i = 0; i < 500; i++) {
        static struct answer a;
        a = (struct answer){0};
        msgpack_packer *pk = plugd_host_begin(host, "status", on_answer, &a);
        msgpack_pack_map(pk, 1);
        msgpack_pack_str_with_body(pk, "plugin", 6);
        msgpack_pack_str_with_body(pk, plugin, strlen(plugin));
        finish(&a);
        if (a.code == PLUGD_OK && strstr(a.text, "\"status\"=>\"ready\"") &&
            strstr(a.text, "\"state\"=>\"running\""))
            return;
        bool never = false;
        plugd_host_run_until(host, &never, 0.02);
    }
    cr_assert_fail("%s never ran", plugin);
}

/* ------------------------------------------------------------ host services */

struct service_log {
    int calls;
    char plugin[64];
    char arg[256];
};

/* greet [who]: answers "hello, <who> from <plugin>". */
static void serve_greet(struct plugd_host_request *req, const char *plugin,
                        const msgpack_object *params, void *ud)
{
    struct service_log *log = ud;
    log->calls++;
    snprintf(log->plugin, sizeof(log->plugin), "%s", plugin);
    const msgpack_object *who = params->via.array.size ? &params->via.array.ptr[0] : NULL;
    snprintf(log->arg, sizeof(log->arg), "%.*s",
             who && who->type == MSGPACK_OBJECT_STR ? (int)who->via.str.size : 0,
             who && who->type == MSGPACK_OBJECT_STR ? who->via.str.ptr : "");
    char text[512];
    snprintf(text, sizeof(text), "hello, %s from %s", log->arg, plugin);
    msgpack_packer *pk = plugd_host_begin_reply(req);
    msgpack_pack_str_with_body(pk, text, strlen(text));
    plugd_host_request_end(req);
}

static void serve_refuse(struct plugd_host_request *req, const char *plugin,
                         const msgpack_object *params, void *ud)
{
    (void)plugin;
    (void)params;
    (void)ud;
    plugd_host_fail(req, PLUGD_E_PERMISSION_DENIED, "the host says no");
}

static struct plugd_host_request *held; /* a request the host never answers */

static void serve_never(struct plugd_host_request *req, const char *plugin,
                        const msgpack_object *params, void *ud)
{
    (void)plugin;
    (void)params;
    (void)ud;
    held = req;
}

static void serve(const char *method, plugd_host_service_fn fn, void *ud)
{
    struct plugd_error err;
    cr_assert_eq(plugd_host_serve(host, method, fn, ud, &err), 0, "%s", err.message);
}

Test(host, a_plugin_with_host_call_reaches_the_hosts_services)
{
    harness_add_plugin(
        &h, "crashy", "caller",
        "{\"capabilities\": [\"host.call\"], \"limits\": {\"call_timeout_ms\": 500}}");
    spawn();
    wait_running("caller");
    struct service_log log = {0};
    serve("greet", serve_greet, &log);
    serve("refuse", serve_refuse, NULL);
    serve("never", serve_never, NULL);

    /* crashy's call_host answers the code of what the host said */
    struct answer *a = plugin_calls_host("caller", "host.greet", "ada");
    cr_assert_eq(a->code, PLUGD_OK, "%s", a->message);
    cr_assert_str_eq(a->text, "ok");
    cr_assert_eq(log.calls, 1);
    cr_assert_str_eq(log.plugin, "caller", "the host is told which plugin calls");
    cr_assert_str_eq(log.arg, "ada", "the plugin's params arrive as they were sent");

    a = plugin_calls_host("caller", "host.refuse", "x");
    cr_assert_str_eq(a->text, "permission_denied", "the host's own error code reaches the plugin");

    a = plugin_calls_host("caller", "host.unknown", "x");
    cr_assert_str_eq(a->text, "method_not_found", "a method the host does not serve");

    a = plugin_calls_host("caller", "host.never", "x");
    cr_assert_str_eq(a->text, "timeout", "the plugin's call deadline holds for the host too: %s",
                     a->text);
    cr_assert_not_null(held);
    plugd_host_fail(held, PLUGD_E_WORKER_ERROR, "too late"); /* dropped by plugd, counted */
    held = NULL;
    a = plugin_calls_host("caller", "host.greet", "again");
    cr_assert_str_eq(a->text, "ok", "a late answer harms nothing");
    cr_assert_eq(log.calls, 2);
}

Test(host, without_the_capability_a_plugin_is_denied_and_the_host_never_called)
{
    harness_add_plugin(&h, "crashy", "plain", NULL);
    spawn();
    wait_running("plain");
    struct service_log log = {0};
    serve("greet", serve_greet, &log);
    struct answer *a = plugin_calls_host("plain", "host.greet", "x");
    cr_assert_str_eq(a->text, "capability_denied");
    cr_assert_eq(log.calls, 0);
}

Test(host, serve_refuses_a_bad_name_and_keeps_the_good_ones)
{
    harness_add_plugin(&h, "crashy", "caller", "{\"capabilities\": [\"host.call\"]}");
    spawn();
    wait_running("caller");
    struct service_log log = {0};
    serve("greet", serve_greet, &log);
    struct plugd_error err;
    cr_assert_eq(plugd_host_serve(host, "bad name!", serve_refuse, NULL, &err), -1);
    cr_assert_eq(err.code, PLUGD_E_INVALID_ARGUMENT);
    cr_assert_not_null(strstr(err.message, "methods[1]"), "%s", err.message);
    cr_assert_eq(plugd_host_serve(host, "greet", serve_greet, &log, &err), -1, "served twice");
    cr_assert_str_eq(plugin_calls_host("caller", "host.greet", "x")->text, "ok");
}

Test(host, the_counter_example_announces_to_the_host)
{
    harness_add_plugin(&h, "counter", "counter", NULL);
    spawn();
    wait_running("counter");
    struct service_log log = {0};
    serve("notify", serve_greet, &log);
    static struct answer a;
    a = (struct answer){0};
    msgpack_pack_int(plugd_host_begin_call(host, "counter", "increment", 1, on_answer, &a), 5);
    cr_assert_eq(finish(&a)->code, PLUGD_OK);
    a = (struct answer){0};
    plugd_host_begin_call(host, "counter", "announce", 0, on_answer, &a);
    cr_assert_eq(finish(&a)->code, PLUGD_OK, "%s", a.message);
    cr_assert_eq(log.calls, 1);
    cr_assert_str_eq(a.text, "hello,  from counter", "the host's answer is the call's result");
}

/* ------------------------------------------------------------ commands, events */

struct event_log {
    int n;
    char names[2048];
};

static void on_event(struct plugd_host *ph, const msgpack_object *event, void *ud)
{
    (void)ph;
    struct event_log *log = ud;
    for (uint32_t i = 0; i < event->via.map.size; i++) {
        const msgpack_object_kv *kv = &event->via.map.ptr[i];
        if (kv->key.via.str.size == 4 && memcmp(kv->key.via.str.ptr, "name", 4) == 0) {
            size_t used = strlen(log->names);
            snprintf(log->names + used, sizeof(log->names) - used, "%.*s ",
                     (int)kv->val.via.str.size, kv->val.via.str.ptr);
        }
    }
    log->n++;
}

Test(host, commands_and_events_through_the_library)
{
    harness_add_plugin(&h, "hello", "hello", NULL);
    spawn();
    wait_running("hello");
    static struct event_log events; /* events arrive until plugd stops, after the test body */
    struct plugd_error err;
    cr_assert_eq(plugd_host_subscribe(host, "plugin.*", on_event, &events, &err), 0, "%s",
                 err.message);

    static struct answer a;
    a = (struct answer){0};
    msgpack_packer *pk = plugd_host_begin_call(host, "hello", "echo", 1, on_answer, &a);
    msgpack_pack_str_with_body(pk, "round trip", 10);
    cr_assert_str_eq(finish(&a)->text, "round trip");

    a = (struct answer){0};
    pk = plugd_host_begin(host, "disable", on_answer, &a);
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "plugin", 6);
    msgpack_pack_str_with_body(pk, "hello", 5);
    cr_assert_eq(finish(&a)->code, PLUGD_OK);
    a = (struct answer){0};
    pk = plugd_host_begin(host, "disable", on_answer, &a);
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "plugin", 6);
    msgpack_pack_str_with_body(pk, "hello", 5);
    cr_assert_eq(finish(&a)->code, PLUGD_E_INVALID_TRANSITION);
    a = (struct answer){0};
    pk = plugd_host_begin(host, "frobnicate", on_answer, &a);
    msgpack_pack_map(pk, 0);
    cr_assert_eq(finish(&a)->code, PLUGD_E_UNKNOWN_COMMAND);

    bool never = false;
    for (int i = 0; i < 100 && strstr(events.names, "plugin.disabled") == NULL; i++)
        plugd_host_run_until(host, &never, 0.02);
    cr_assert_not_null(strstr(events.names, "plugin.status_changed plugin.disabled"), "%s",
                       events.names);
}

/* ------------------------------------------------------------ the host dies */

Test(host, a_killed_host_takes_plugd_and_its_workers_with_it)
{
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_add_plugin(&h, "crashy", "crashy", NULL);
    int report[2];
    cr_assert_eq(pipe(report), 0);
    pid_t app = fork();
    cr_assert_geq(app, 0);
    if (app == 0) { /* the host application: spawn plugd, tell the pids, wait */
        close(report[0]);
        loop = ev_loop_new(EVFLAG_AUTO);
        spawn();
        wait_running("hello");
        wait_running("crashy");
        pid_t pids[3] = {plugd_host_pid(host), 0, 0};
        for (int i = 0; i < 2; i++) {
            static struct answer a;
            a = (struct answer){0};
            msgpack_packer *pk = plugd_host_begin(host, "status", on_answer, &a);
            msgpack_pack_map(pk, 1);
            msgpack_pack_str_with_body(pk, "plugin", 6);
            msgpack_pack_str_with_body(pk, i ? "crashy" : "hello", i ? 6 : 5);
            finish(&a);
            char *pid = strstr(a.text, "\"pid\"=>");
            pids[i + 1] = pid ? (pid_t)atoi(pid + 7) : 0;
        }
        if (write(report[1], pids, sizeof(pids)) != sizeof(pids))
            _exit(1);
        pause();
        _exit(0);
    }
    close(report[1]);
    pid_t pids[3];
    cr_assert_eq(read(report[0], pids, sizeof(pids)), (ssize_t)sizeof(pids), "the host started");
    close(report[0]);
    for (int i = 0; i < 3; i++)
        cr_assert_gt(pids[i], 0);
    kill(app, SIGKILL);
    waitpid(app, NULL, 0);
    for (int i = 0; i < 3; i++) {
        for (int tries = 0; tries < 1000 && !harness_pid_gone(pids[i]); tries++)
            usleep(10000);
        cr_assert(harness_pid_gone(pids[i]), "%s %d outlived the host", i ? "worker" : "plugd",
                  pids[i]);
    }
    cr_assert_geq(harness_log_count(&h, "host channel closed"), 1, "plugd stopped on purpose");
}
