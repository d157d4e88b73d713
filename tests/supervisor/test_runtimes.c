/* Workers in any language: stock runtimes (Debian's Node.js with the stock
 * @msgpack/msgpack, Python 3 with python3-msgpack, a Go binary built with
 * Debian's golang-go) answer calls under the default sandbox, with every
 * layer active, with plugd as root (workers as nobody) and with plugd itself
 * unprivileged (a user namespace per worker). docs/sandbox.md lists what
 * the allow-list gives these runtimes. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "plugd_harness.h"
#include "probe_checks.h"

HARNESS_TEST_SUITE(runtimes, 120);

/* The layers a root plugd applies to every worker by default. */
static const char *const every_layer[] = {
    "pid_namespace", "cgroup", "namespaces",   "mount_namespace", "rlimits", "fds",
    "no_new_privs",  "user",   "capabilities", "landlock",        "seccomp"};

/* The worker of `plugin` is running, confined, and never hit the
 * allow-list; it echoes a string and adds two integers. */
static void expect_serves_confined(const char *plugin, bool as_root)
{
    cr_assert(harness_wait_state(&h, plugin, "running", -1, 30.0), "%s did not start: %s", plugin,
              json_dumps(harness_status(&h, plugin), JSON_COMPACT));
    json_t *result = NULL;
    cr_assert_eq(harness_call(&h, plugin, "echo", "[\"any language\"]", 10000, &result), PLUGD_OK,
                 "%s does not echo", plugin);
    cr_assert_str_eq(json_string_value(result), "any language");
    json_decref(result);
    cr_assert_eq(harness_call(&h, plugin, "add", "[20, 22]", 10000, &result), PLUGD_OK);
    cr_assert_eq(json_integer_value(result), 42, "%s adds", plugin);
    json_decref(result);

    json_t *st = harness_status(&h, plugin);
    json_t *sandbox = json_object_get(st, "sandbox");
    char *text = json_dumps(sandbox, JSON_COMPACT);
    for (size_t i = 0; i < sizeof(every_layer) / sizeof(every_layer[0]); i++) {
        if (!as_root && strcmp(every_layer[i], "cgroup") == 0)
            continue; /* needs root */
        cr_expect(has_layer(sandbox, every_layer[i]), "%s: %s not active: %s", plugin,
                  every_layer[i], text);
    }
    cr_expect_eq(json_integer_value(json_object_get(sandbox, "violations")), 0, "%s: %s", plugin,
                 text);
    cr_expect_eq(json_integer_value(json_object_get(st, "restarts")), 0, "%s restarted", plugin);
    free(text);
    json_decref(st);
}

/* A disable stops the worker through plugd.shutdown: it exits 0 by itself.
 * (A runtime's own pipes and eventfds are no leak of plugd's, which the
 * suite's teardown looks for in running workers.) */
static void expect_stops_gracefully(const char *plugin)
{
    cr_assert_eq(harness_op(&h, "disable", plugin, NULL, 0), PLUGD_OK);
    cr_assert(harness_wait_state(&h, plugin, "stopped", -1, 30.0), "%s did not stop", plugin);
    json_t *st = harness_status(&h, plugin);
    cr_expect_str_eq(json_string_value(json_object_get(st, "last_exit")), "exited with status 0",
                     "%s", plugin);
    json_decref(st);
}

/* Workers get a fixed environment without $HOME (docs/sandbox.md): the
 * runtimes must start without it too (Python then asks libc, hence nscd,
 * for the user's home). */
static void start_without_home(void)
{
    unsetenv("HOME");
    harness_start(&h);
}

static void expect_runtime_serves(const char *plugin)
{
    harness_add_plugin(&h, plugin, plugin, NULL);
    start_without_home();
    expect_serves_confined(plugin, true);
    expect_stops_gracefully(plugin);
}

Test(runtimes, node_answers_calls_under_the_default_sandbox)
{
    expect_runtime_serves("node-worker");
}

Test(runtimes, python_answers_calls_under_the_default_sandbox)
{
    expect_runtime_serves("python-worker");
}

Test(runtimes, go_answers_calls_under_the_default_sandbox)
{
    expect_runtime_serves("go-worker");
}

/* plugd unprivileged: each worker in a user namespace of its own. */
Test(runtimes, every_runtime_answers_calls_when_plugd_is_not_root)
{
    harness_add_plugin(&h, "node-worker", "node-worker", NULL);
    harness_add_plugin(&h, "python-worker", "python-worker", NULL);
    harness_add_plugin(&h, "go-worker", "go-worker", NULL);
    if (!harness_run_as_nobody(&h))
        cr_skip("needs root and a build tree that the user nobody can read");
    start_without_home();
    expect_serves_confined("node-worker", false);
    expect_serves_confined("python-worker", false);
    expect_serves_confined("go-worker", false);
    expect_stops_gracefully("node-worker");
    expect_stops_gracefully("python-worker");
    expect_stops_gracefully("go-worker");
}
