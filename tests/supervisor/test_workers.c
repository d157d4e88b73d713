/* Real plugd, real workers (examples/ and tests/fixtures/), real sockets:
 * the supervision behaviour of docs/supervision.md. */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "event_table.h"
#include "plugd_harness.h"

/* Short deadlines so failures are detected quickly. */
#define FAST_LIMITS                                                                                \
    "{\"limits\": {\"health_interval_ms\": 100, \"health_timeout_ms\": 300,"                       \
    " \"shutdown_drain_ms\": 500, \"shutdown_term_ms\": 500}}"

HARNESS_TEST_SUITE(workers, 60);

/* Starts plugd with the one example plugin `example` (manifest `overrides`
 * merged in, may be NULL) and waits until its worker runs. */
static void start_running(const char *example, const char *overrides)
{
    harness_add_plugin(&h, example, example, overrides);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, example, "running", -1, 10.0), "%s did not start", example);
}

static const char *str_field(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key)) ?: "";
}

Test(workers, hello_answers_calls_and_inherits_only_its_channel)
{
    start_running("hello", NULL);

    json_t *result = NULL;
    cr_assert_eq(harness_call(&h, "hello", "echo", "[\"hi\"]", 0, &result), PLUGD_OK);
    cr_assert_str_eq(json_string_value(result), "hi");
    json_decref(result);
    cr_assert_eq(harness_call(&h, "hello", "add", "[2, 40]", 0, &result), PLUGD_OK);
    cr_assert_eq(json_integer_value(result), 42);
    json_decref(result);

    pid_t pid = harness_worker_pid(&h, "hello");
    cr_assert_gt(pid, 0);
    cr_assert_eq(harness_extra_fds(pid, 3), 0, "the worker inherited fds beyond 0-3");
}

Test(workers, unknown_plugin_and_bad_arguments_are_refused)
{
    start_running("hello", NULL);
    cr_assert_eq(harness_call(&h, "nosuch", "echo", "[1]", 0, NULL), PLUGD_E_PLUGIN_NOT_FOUND);
    cr_assert_eq(harness_call(&h, "hello", "plugd.shutdown", "[{}]", 0, NULL),
                 PLUGD_E_INVALID_REQUEST);
    cr_assert_eq(harness_call(&h, "hello", "nosuch", "[]", 0, NULL), PLUGD_E_METHOD_NOT_FOUND);
    json_t *arg = json_pack("{s:s, s:s, s:i}", "plugin", "hello", "method", "echo", "params", 3);
    cr_assert_eq(harness_command(&h, "call", arg, NULL, NULL, 0), PLUGD_E_INVALID_ARGUMENT);
    json_decref(arg);
    cr_assert_eq(harness_command(&h, "frobnicate", NULL, NULL, NULL, 0), PLUGD_E_UNKNOWN_COMMAND);
    /* Still serving. */
    cr_assert_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_OK);
}

Test(workers, silent_worker_fails_the_handshake_with_its_deadline)
{
    harness_add_plugin(&h, "silent", "silent", "{\"limits\": {\"crash_loop_restarts\": 2}}");
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "silent", "stopped", 1, 15.0));
    json_t *st = harness_status(&h, "silent");
    cr_assert(json_is_true(json_object_get(st, "failed")));
    cr_assert_not_null(strstr(str_field(st, "last_error"), "no plugd.hello within 0.3 s"),
                       "last_error: %s", str_field(st, "last_error"));
    json_decref(st);
}

Test(workers, wrong_protocol_is_refused_naming_both_versions)
{
    harness_add_plugin(&h, "oldproto", "oldproto", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "oldproto", "stopped", -1, 10.0));
    json_t *st = harness_status(&h, "oldproto");
    cr_assert(json_is_true(json_object_get(st, "failed")));
    cr_assert_not_null(
        strstr(str_field(st, "last_error"), "worker speaks protocol 99; plugd speaks 1"),
        "last_error: %s", str_field(st, "last_error"));
    cr_assert_eq(json_integer_value(json_object_get(st, "restarts")), 0,
                 "a worker that can never work must not be restarted");
    json_decref(st);
}

Test(workers, crash_is_restarted_at_once_then_with_backoff)
{
    start_running("crashy", FAST_LIMITS);
    pid_t first = harness_worker_pid(&h, "crashy");
    int plugd_fds = harness_count_fds(h.plugd_pid);

    cr_assert_eq(harness_call(&h, "crashy", "exit", "[{\"code\": 3}]", 0, NULL),
                 PLUGD_E_WORKER_UNAVAILABLE);
    cr_assert(harness_wait_state(&h, "crashy", "running", 1, 10.0));
    pid_t second = harness_worker_pid(&h, "crashy");
    cr_assert_neq(first, second);
    json_t *st = harness_status(&h, "crashy");
    cr_assert_not_null(strstr(str_field(st, "last_exit"), "exited with status 3"));
    json_decref(st);

    cr_assert_eq(harness_call(&h, "crashy", "segfault", "[]", 0, NULL), PLUGD_E_WORKER_UNAVAILABLE);
    cr_assert(harness_wait_state(&h, "crashy", "running", 2, 10.0));
    st = harness_status(&h, "crashy");
    cr_assert_not_null(strstr(str_field(st, "last_exit"), "killed by signal 11"), "%s",
                       str_field(st, "last_exit"));
    json_decref(st);
    cr_assert_geq(harness_log_count(&h, "worker crashed"), 2);
    cr_assert_eq(harness_call(&h, "crashy", "echo", "[7]", 0, NULL), PLUGD_OK);
    cr_assert_eq(harness_count_fds(h.plugd_pid), plugd_fds, "plugd leaks fds across restarts");
}

Test(workers, crash_loop_stops_restarting_with_the_reason)
{
    harness_add_plugin(
        &h, "crashy", "crashy",
        "{\"limits\": {\"crash_loop_restarts\": 2, \"crash_loop_window_ms\": 60000}}");
    harness_start(&h);
    for (int i = 0; i < 3; i++) {
        cr_assert(harness_wait_state(&h, "crashy", "running", i, 10.0), "run %d", i);
        harness_call(&h, "crashy", "exit", "[{\"code\": 1}]", 0, NULL);
    }
    cr_assert(harness_wait_state(&h, "crashy", "stopped", -1, 10.0));
    json_t *st = harness_status(&h, "crashy");
    cr_assert(json_is_true(json_object_get(st, "failed")));
    cr_assert_not_null(strstr(str_field(st, "last_error"), "crash loop: 2 restarts within 60 s"),
                       "%s", str_field(st, "last_error"));
    json_decref(st);
    cr_assert_eq(harness_call(&h, "crashy", "echo", "[1]", 0, NULL), PLUGD_E_WORKER_UNAVAILABLE);
}

Test(workers, failing_health_check_restarts_the_worker)
{
    start_running("crashy", FAST_LIMITS);
    cr_assert_eq(harness_call(&h, "crashy", "stop_health", "[]", 0, NULL), PLUGD_OK);
    cr_assert(harness_wait_state(&h, "crashy", "running", 1, 10.0));
    cr_assert_geq(harness_log_count(&h, "health check reported an error"), 1);
}

Test(workers, hung_worker_times_out_the_call_and_is_restarted)
{
    start_running("crashy", FAST_LIMITS);
    cr_assert_eq(harness_call(&h, "crashy", "hang", "[]", 200, NULL), PLUGD_E_TIMEOUT);
    cr_assert(harness_wait_state(&h, "crashy", "running", 1, 10.0));
    cr_assert_eq(harness_call(&h, "crashy", "echo", "[1]", 0, NULL), PLUGD_OK);
}

Test(workers, garbage_on_the_channel_is_a_fault_that_harms_nobody_else)
{
    harness_add_plugin(&h, "crashy", "crashy", FAST_LIMITS);
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "crashy", "running", -1, 10.0));
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0));
    pid_t hello = harness_worker_pid(&h, "hello");

    harness_call(&h, "crashy", "garbage", "[]", 1000, NULL);
    cr_assert(harness_wait_state(&h, "crashy", "running", 1, 10.0));
    json_t *st = harness_status(&h, "crashy");
    cr_assert_geq(json_integer_value(json_object_get(st, "faults")), 1);
    json_decref(st);
    cr_assert_geq(harness_log_count(&h, "malformed_message"), 1);
    cr_assert_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_OK);
    cr_assert_eq(harness_worker_pid(&h, "hello"), hello, "hello must not have been restarted");
}

Test(workers, graceful_stop_answers_drained_calls_and_fails_the_rest)
{
    start_running("crashy", FAST_LIMITS);
    struct pending *drained = harness_call_async(&h, "crashy", "delay", "[{\"ms\": 200}]", 5000);
    struct pending *stalled = harness_call_async(&h, "crashy", "stall", "[]", 5000);
    harness_sleep(&h, 0.05);
    cr_assert_eq(harness_command(&h, "shutdown", NULL, NULL, NULL, 0), PLUGD_OK);
    cr_assert_eq(harness_call(&h, "crashy", "echo", "[1]", 0, NULL), PLUGD_E_WORKER_UNAVAILABLE,
                 "a stopping worker must refuse new calls");
    cr_assert_eq(harness_wait(&h, drained, NULL), PLUGD_OK, "the drained call was not answered");
    cr_assert_eq(harness_wait(&h, stalled, NULL), PLUGD_E_WORKER_UNAVAILABLE);
}

Test(workers, worker_ignoring_sigterm_is_killed_after_the_deadline)
{
    start_running("crashy", FAST_LIMITS);
    pid_t pid = harness_worker_pid(&h, "crashy");
    cr_assert_eq(harness_call(&h, "crashy", "ignore_term", "[]", 0, NULL), PLUGD_OK);
    harness_call(&h, "crashy", "hang", "[]", 100, NULL);
    harness_stop_and_check(&h);
    cr_assert(harness_pid_gone(pid));
    cr_assert_geq(harness_log_count(&h, "did not exit within 0.5 s of SIGTERM: SIGKILL"), 1);
}

Test(workers, flooding_worker_does_not_stall_plugd)
{
    harness_add_plugin(&h, "crashy", "crashy", NULL);
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "crashy", "running", -1, 10.0));
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0));
    cr_assert_eq(harness_call(&h, "crashy", "flood_log", "[{\"lines\": 100000}]", 10000, NULL),
                 PLUGD_OK);
    cr_assert_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_OK);
    harness_sleep(&h, 0.5);
    cr_assert_geq(harness_log_count(&h, "log lines dropped"), 1);
}

Test(workers, python_worker_answers_calls)
{
    harness_add_plugin(&h, "python-worker", "py", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "py", "running", -1, 15.0));
    json_t *result = NULL;
    cr_assert_eq(harness_call(&h, "py", "echo", "[\"from python\"]", 0, &result), PLUGD_OK);
    cr_assert_str_eq(json_string_value(result), "from python");
    json_decref(result);
    cr_assert_eq(harness_call(&h, "py", "add", "[20, 22]", 0, &result), PLUGD_OK);
    cr_assert_eq(json_integer_value(result), 42);
    json_decref(result);
}

Test(workers, host_channel_closing_stops_plugd_and_its_workers)
{
    start_running("hello", NULL);
    pid_t worker = harness_worker_pid(&h, "hello");
    ipc_conn_free(h.host);
    h.host = NULL;
    h.host_closed = true;
    harness_stop_and_check(&h);
    cr_assert(harness_pid_gone(worker));
}

static void expect_host_answer(const char *plugin, const char *params, const char *code)
{
    json_t *result = NULL;
    cr_assert_eq(harness_call(&h, plugin, "call_host", params, 0, &result), PLUGD_OK);
    cr_assert_str_eq(json_string_value(result), code, "%s: got %s", params,
                     json_string_value(result));
    json_decref(result);
}

Test(workers, host_services_are_gated_by_capabilities)
{
    harness_add_plugin(&h, "crashy", "plain", NULL);
    harness_add_plugin(&h, "crashy", "emitter", "{\"capabilities\": [\"events.emit\"]}");
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "plain", "running", -1, 10.0));
    cr_assert(harness_wait_state(&h, "emitter", "running", -1, 10.0));
    expect_host_answer("plain", "[\"events.emit\", {\"name\": \"plugin.plain.x\"}]",
                       "capability_denied");
    expect_host_answer("plain", "[\"state.set\", {}]", "capability_denied");
    expect_host_answer("plain", "[\"no.such.service\"]", "method_not_found");
    expect_host_answer("plain", "[\"log\", {\"level\": \"warn\", \"message\": \"hi there\"}]",
                       "ok");
    expect_host_answer("plain", "[\"log\", {\"level\": \"loud\", \"message\": \"x\"}]",
                       "invalid_request");
    /* With the capability the gate opens, for the plugin's own namespace only. */
    expect_host_answer("emitter", "[\"events.emit\", {\"name\": \"plugin.emitter.x\"}]", "ok");
    expect_host_answer("emitter", "[\"events.emit\", {\"name\": \"plugin.plain.x\"}]",
                       "capability_denied");
    expect_host_answer("emitter", "[\"events.emit\", {\"name\": \"plugin.status_changed\"}]",
                       "capability_denied");
    cr_assert_eq(harness_log_count(&h, "\"message\":\"hi there\""), 1);
}

/* plugd's events have two name parts and a plugin's own at least three
 * (docs/events.md): plugins named like the middle part of an event name
 * cannot emit it. */
Test(workers, no_plugin_can_emit_plugds_events_whatever_its_name)
{
    const char *names[] = {"worker", "health", "status"};
    for (size_t i = 0; i < 3; i++)
        harness_add_plugin(&h, "crashy", names[i], "{\"capabilities\": [\"events.emit\"]}");
    harness_start(&h);
    for (size_t i = 0; i < 3; i++) {
        cr_assert(harness_wait_state(&h, names[i], "running", -1, 10.0));
        for (size_t t = 0; t < EVT_COUNT; t++) {
            char params[320];
            snprintf(params, sizeof(params), "[\"events.emit\", {\"name\": \"%s\"}]",
                     evt_table[t].name);
            expect_host_answer(names[i], params, "capability_denied");
        }
    }
}

Test(workers, answer_after_the_deadline_is_dropped_and_counted)
{
    start_running("crashy", NULL);
    cr_assert_eq(harness_call(&h, "crashy", "delay", "[{\"ms\": 300}]", 100, NULL),
                 PLUGD_E_TIMEOUT);
    harness_sleep(&h, 0.4);
    json_t *st = harness_status(&h, "crashy");
    cr_assert_eq(json_integer_value(json_object_get(st, "late_replies")), 1);
    cr_assert_eq(json_integer_value(json_object_get(st, "restarts")), 0,
                 "a slow answer is not a fault");
    json_decref(st);
    cr_assert_eq(harness_call(&h, "crashy", "echo", "[1]", 0, NULL), PLUGD_OK);
}

static enum plugd_errc set_config(const char *plugin, const char *config_json)
{
    json_error_t jerr;
    json_t *arg =
        json_pack("{s:s, s:o}", "plugin", plugin, "config", json_loads(config_json, 0, &jerr));
    enum plugd_errc code = harness_command(&h, "config", arg, NULL, NULL, 0);
    json_decref(arg);
    return code;
}

static int64_t config_value(const char *plugin)
{
    json_t *result = NULL;
    cr_assert_eq(harness_call(&h, plugin, "config_value", "[]", 0, &result), PLUGD_OK);
    int64_t v = json_integer_value(result);
    json_decref(result);
    return v;
}

Test(workers, config_change_without_the_hook_restarts_the_worker_with_it)
{
    start_running("crashy", NULL);
    pid_t before = harness_worker_pid(&h, "crashy");
    cr_assert_eq(set_config("crashy", "{\"value\": 7}"), PLUGD_OK);
    for (int i = 0; i < 500 && harness_worker_pid(&h, "crashy") == before; i++)
        harness_sleep(&h, 0.01);
    cr_assert(harness_wait_state(&h, "crashy", "running", -1, 10.0));
    cr_assert_neq(harness_worker_pid(&h, "crashy"), before, "the worker was not restarted");
    cr_assert_eq(config_value("crashy"), 7, "the new worker did not get the new config");
}

Test(workers, config_change_with_hooks_is_validated_and_applied_hot)
{
    start_running("crashy", "{\"config\": {\"config_hooks\": true}}");
    pid_t before = harness_worker_pid(&h, "crashy");
    cr_assert_eq(set_config("crashy", "{\"config_hooks\": true, \"value\": 5}"), PLUGD_OK);
    cr_assert_eq(config_value("crashy"), 5);
    cr_assert_eq(set_config("crashy", "{\"config_hooks\": true, \"value\": 6, \"bad\": true}"),
                 PLUGD_E_INVALID_REQUEST);
    cr_assert_eq(config_value("crashy"), 5, "a refused config must change nothing");
    cr_assert_eq(harness_worker_pid(&h, "crashy"), before, "a hot change must not restart");
    cr_assert_eq(set_config("nosuch", "{}"), PLUGD_E_PLUGIN_NOT_FOUND);
    json_t *arg = json_pack("{s:s, s:i}", "plugin", "crashy", "config", 3);
    cr_assert_eq(harness_command(&h, "config", arg, NULL, NULL, 0), PLUGD_E_INVALID_ARGUMENT);
    json_decref(arg);
}

Test(workers, workers_die_with_a_killed_plugd)
{
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_add_plugin(&h, "python-worker", "py", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0));
    cr_assert(harness_wait_state(&h, "py", "running", -1, 15.0));
    pid_t workers[] = {harness_worker_pid(&h, "hello"), harness_worker_pid(&h, "py")};
    kill(h.plugd_pid, SIGKILL);
    waitpid(h.plugd_pid, NULL, 0);
    h.plugd_pid = 0;
    for (int i = 0; i < 2; i++) {
        for (int tries = 0; tries < 500 && !harness_pid_dead(workers[i]); tries++)
            usleep(10000);
        cr_assert(harness_pid_dead(workers[i]), "worker %d outlived plugd", workers[i]);
    }
}

Test(workers, oversize_message_from_a_worker_is_a_fault)
{
    start_running("crashy", FAST_LIMITS);
    cr_assert_eq(harness_call(&h, "crashy", "oversize", "[]", 2000, NULL),
                 PLUGD_E_WORKER_UNAVAILABLE);
    cr_assert(harness_wait_state(&h, "crashy", "running", 1, 10.0));
    cr_assert_geq(harness_log_count(&h, "message_too_large"), 1);
    json_t *st = harness_status(&h, "crashy");
    cr_assert_geq(json_integer_value(json_object_get(st, "faults")), 1);
    json_decref(st);
}
