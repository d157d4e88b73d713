/* A plugin's status and its worker converge, whatever order operations
 * come in and whatever the worker does: a ready plugin has exactly one
 * running worker, every other status none; a worker that closes its
 * channel is restarted at once; the effective config is the same function
 * of (defaults, operator config) at start, after a hot change and after a
 * restart. Real plugd, real workers (hello, crashy). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "plugd_harness.h"

HARNESS_TEST_SUITE(convergence, 300);

static void expect_op(const char *cmd, const char *name, enum plugd_errc code)
{
    char message[PLUGD_ERROR_MESSAGE_MAX] = "";
    enum plugd_errc got = harness_op(&h, cmd, name, message, sizeof(message));
    cr_assert_eq(got, code, "%s %s: got %s (%s), expected %s", cmd, name, plugd_errc_name(got),
                 message, plugd_errc_name(code));
}

static void start_with(const char *example, const char *name, const char *overrides)
{
    harness_add_plugin(&h, example, name, overrides);
    harness_start(&h);
    cr_assert(harness_wait_status(&h, name, "ready", 15.0));
    cr_assert(harness_wait_state(&h, name, "running", -1, 10.0));
}

static enum plugd_errc set_config(const char *plugin, const char *config_json)
{
    json_t *arg =
        json_pack("{s:s, s:o}", "plugin", plugin, "config", json_loads(config_json, 0, NULL));
    char message[PLUGD_ERROR_MESSAGE_MAX] = "";
    enum plugd_errc rc = harness_command(&h, "config", arg, NULL, message, sizeof(message));
    json_decref(arg);
    return rc;
}

/* The worker stays stopped for a while and a call is refused. */
static void expect_no_worker(const char *plugin)
{
    cr_assert(harness_wait_state(&h, plugin, "stopped", -1, 15.0), "%s kept a worker", plugin);
    harness_sleep(&h, 1.0); /* room for a wrongly requested start to happen */
    json_t *st = harness_status(&h, plugin);
    cr_assert_str_eq(json_string_value(json_object_get(st, "state")), "stopped",
                     "%s got a worker after its stop", plugin);
    json_decref(st);
    cr_assert_eq(harness_call(&h, plugin, "echo", "[\"hi\"]", 0, NULL), PLUGD_E_WORKER_UNAVAILABLE);
}

/* ------------------------------------------------------------ a stop wins */

Test(convergence, disable_right_after_a_restarting_config_change_leaves_no_worker)
{
    start_with("crashy", "c1", NULL); /* no config hooks: a change restarts it */
    cr_assert_eq(set_config("c1", "{\"a\": 1}"), PLUGD_OK);
    expect_op("disable", "c1", PLUGD_OK);
    expect_no_worker("c1");
    char status[32];
    harness_lifecycle(&h, "c1", status, sizeof(status));
    cr_assert_str_eq(status, "disabled");
}

Test(convergence, uninstall_right_after_a_restarting_config_change_leaves_no_worker)
{
    start_with("crashy", "c1", NULL);
    cr_assert_eq(set_config("c1", "{\"a\": 1}"), PLUGD_OK);
    expect_op("uninstall", "c1", PLUGD_OK);
    expect_no_worker("c1");
}

Test(convergence, a_restarting_config_change_alone_brings_the_worker_back)
{
    start_with("crashy", "c1", NULL);
    pid_t before = harness_worker_pid(&h, "c1");
    cr_assert_eq(set_config("c1", "{\"value\": 4}"), PLUGD_OK);
    for (int i = 0; i < 100 && harness_worker_pid(&h, "c1") == before; i++)
        harness_sleep(&h, 0.05);
    cr_assert(harness_wait_state(&h, "c1", "running", -1, 10.0));
    cr_assert_neq(harness_worker_pid(&h, "c1"), before, "restarted with the new config");
    json_t *v = NULL;
    cr_assert_eq(harness_call(&h, "c1", "config_value", "[]", 0, &v), PLUGD_OK);
    cr_assert_eq(json_integer_value(v), 4);
    json_decref(v);
}

/* ------------------------------------------------------------ a start wins */

Test(convergence, enable_right_after_disable_starts_the_worker)
{
    start_with("hello", "hello", NULL);
    for (int round = 0; round < 8; round++) {
        expect_op("disable", "hello", PLUGD_OK);
        expect_op("enable", "hello", PLUGD_OK); /* while the worker is stopping */
        cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0),
                  "round %d: ready with no worker", round);
        cr_assert_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_OK, "round %d",
                     round);
    }
}

/* ------------------------------------------------------------ random */

#define N_RANDOM 4

static const char *const random_names[N_RANDOM] = {"h0", "h1", "h2", "c0"};

/* Whether the plugin's status and worker agree: ready ⇔ one running
 * worker (its pid alive), anything else ⇔ none. *ready says which. */
static bool is_converged(const char *plugin, bool *ready)
{
    json_t *st = harness_status(&h, plugin);
    if (st == NULL)
        return false;
    const char *status = json_string_value(json_object_get(st, "status"));
    const char *state = json_string_value(json_object_get(st, "state"));
    pid_t pid = (pid_t)json_integer_value(json_object_get(st, "pid"));
    *ready = status && strcmp(status, "ready") == 0;
    bool ok = state && (*ready ? strcmp(state, "running") == 0 && pid > 0 && kill(pid, 0) == 0
                               : strcmp(state, "stopped") == 0);
    json_decref(st);
    return ok;
}

static void random_operation(char *const *packages, unsigned *seed, char *done, size_t size)
{
    int i = (int)(rand_r(seed) % N_RANDOM);
    const char *name = random_names[i];
    static const char *const ops[] = {"enable", "disable",   "config",
                                      "call",   "uninstall", "install"};
    const char *op = ops[rand_r(seed) % 6];
    char message[PLUGD_ERROR_MESSAGE_MAX];
    if (strcmp(op, "config") == 0)
        set_config(name, rand_r(seed) % 2 ? "{\"value\": 1}" : "{\"value\": 2}");
    else if (strcmp(op, "call") == 0)
        harness_call(&h, name, "echo", "[1]", 2000, NULL);
    else if (strcmp(op, "install") == 0)
        harness_op(&h, op, packages[i], message, sizeof(message));
    else
        harness_op(&h, op, name, message, sizeof(message)); /* refusals are fine */
    size_t used = strlen(done);
    snprintf(done + used, size - used, "%s %s; ", op, name);
}

Test(convergence, random_operations_leave_exactly_one_worker_per_ready_plugin)
{
    for (int i = 0; i < N_RANDOM; i++)
        harness_add_plugin(&h, i < 3 ? "hello" : "crashy", random_names[i], NULL);
    char *packages[N_RANDOM];
    for (int i = 0; i < N_RANDOM; i++)
        packages[i] = harness_make_package(&h, i < 3 ? "hello" : "crashy", random_names[i],
                                           random_names[i], NULL);
    harness_start(&h);
    for (int i = 0; i < N_RANDOM; i++)
        cr_assert(harness_wait_state(&h, random_names[i], "running", -1, 15.0));

    unsigned seed = (unsigned)time(NULL);
    for (int round = 0; round < 6; round++) {
        char done[8192] = "";
        for (int op = 0; op < 25; op++)
            random_operation(packages, &seed, done, sizeof(done));
        int ready = 0;
        for (int i = 0; i < N_RANDOM; i++) {
            bool is_ready = false, ok = false;
            for (int tries = 0; tries < 300 && !(ok = is_converged(random_names[i], &is_ready));
                 tries++)
                harness_sleep(&h, 0.05);
            cr_assert(ok, "%s: status and worker disagree after: %s", random_names[i], done);
            cr_assert_eq(harness_call(&h, random_names[i], "echo", "[1]", 5000, NULL),
                         is_ready ? PLUGD_OK : PLUGD_E_WORKER_UNAVAILABLE,
                         "%s: only a ready plugin answers calls, after: %s", random_names[i], done);
            ready += is_ready;
        }
        cr_assert_eq(harness_count_children(h.plugd_pid), ready,
                     "one worker process per ready plugin, none for others, after: %s", done);
    }
    for (int i = 0; i < N_RANDOM; i++)
        free(packages[i]);
}

/* ------------------------------------------------------------ channel */

Test(convergence, a_worker_that_closes_its_channel_is_restarted_at_once)
{
    start_with("crashy", "crashy", NULL); /* health checks every 10 s */
    pid_t pid = harness_worker_pid(&h, "crashy");
    struct pending *call = harness_call_async(&h, "crashy", "close_channel", "[]", 60000);
    cr_assert_eq(harness_wait(&h, call, NULL), PLUGD_E_WORKER_UNAVAILABLE);
    cr_assert(harness_wait_state(&h, "crashy", "running", 1, 3.0),
              "not restarted within 3 s of closing its channel");
    cr_assert(harness_pid_dead(pid), "the old worker still runs");
    cr_assert_gt(harness_log_count(&h, "closed its channel and kept running"), 0);
}

/* ------------------------------------------------------------ config */

/* The config crashy took last, as JSON text with sorted keys. */
static char *worker_config(const char *plugin)
{
    json_t *v = NULL;
    cr_assert_eq(harness_call(&h, plugin, "config", "[]", 0, &v), PLUGD_OK);
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
    return text;
}

static char *effective_config(const char *plugin)
{
    json_t *arg = json_pack("{s:s}", "plugin", plugin), *r = NULL;
    cr_assert_eq(harness_command(&h, "config", arg, &r, NULL, 0), PLUGD_OK);
    json_decref(arg);
    char *text = json_dumps(json_object_get(r, "effective"), JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(r);
    return text;
}

static void expect_config(const char *plugin, const char *expected)
{
    char *seen = worker_config(plugin), *effective = effective_config(plugin);
    cr_assert_str_eq(seen, expected, "the worker's config");
    cr_assert_str_eq(effective, expected, "the effective config plugd reports");
    free(seen);
    free(effective);
}

Test(convergence, a_hot_config_change_keeps_the_manifest_defaults)
{
    start_with("crashy", "crashy",
               "{\"config\": {\"config_hooks\": true, \"greeting\": \"hi\", \"value\": 1}}");
    const char *defaults = "{\"config_hooks\":true,\"greeting\":\"hi\",\"value\":1}";
    const char *changed = "{\"config_hooks\":true,\"greeting\":\"hi\",\"value\":3}";
    expect_config("crashy", defaults);
    pid_t pid = harness_worker_pid(&h, "crashy");
    cr_assert_eq(set_config("crashy", "{\"value\": 3}"), PLUGD_OK);
    cr_assert_eq(harness_worker_pid(&h, "crashy"), pid, "applied hot");
    expect_config("crashy", changed);

    cr_assert_eq(harness_stop(&h, 20.0), 0);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "crashy", "running", -1, 10.0));
    expect_config("crashy", changed);
}
