/* Generations through a real plugd and real workers: what install,
 * upgrade, approve, reject and a config change leave in `history`, its
 * known-good marks, and the history kept across a plugd restart. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugd_harness.h"

HARNESS_TEST_SUITE(generations, 120);

static void expect_ready_and_running(const char *plugin)
{
    cr_assert(harness_wait_status(&h, plugin, "ready", 15.0), "%s never became ready", plugin);
    cr_assert(harness_wait_state(&h, plugin, "running", -1, 10.0));
}

static void install_ready(const char *example, const char *name, const char *overrides)
{
    char *path = harness_make_package(&h, example, name, name, overrides);
    harness_expect_op(&h, "install", path, PLUGD_OK);
    free(path);
    expect_ready_and_running(name);
}

static json_t *history(const char *plugin)
{
    json_t *arg = json_pack("{s:s}", "plugin", plugin), *rows = NULL;
    char message[PLUGD_ERROR_MESSAGE_MAX] = "";
    cr_assert_eq(harness_command(&h, "history", arg, &rows, message, sizeof(message)), PLUGD_OK,
                 "%s", message);
    json_decref(arg);
    cr_assert(json_is_array(rows));
    return rows;
}

/* Row `at` (0: the newest) of the plugin's history is generation `number`
 * of `version` with `outcome` and `known_good`. */
static json_t *expect_row(json_t *rows, size_t at, int number, const char *version,
                          const char *outcome, bool known_good)
{
    json_t *row = json_array_get(rows, at);
    cr_assert_not_null(row, "no row %zu in %zu", at, json_array_size(rows));
    cr_expect_eq(json_integer_value(json_object_get(row, "generation")), number);
    cr_expect_str_eq(json_string_value(json_object_get(row, "version")), version);
    cr_expect_str_eq(json_string_value(json_object_get(row, "outcome")), outcome, "generation %d",
                     number);
    cr_expect_eq(json_is_true(json_object_get(row, "known_good")), known_good,
                 "generation %d known_good", number);
    return row;
}

static const char *first(json_t *row, const char *key)
{
    return json_string_value(json_array_get(json_object_get(row, key), 0));
}

Test(generations, install_is_generation_1_active_and_known_good)
{
    harness_start(&h);
    install_ready("hello", "hello", NULL);
    json_t *rows = history("hello");
    cr_assert_eq(json_array_size(rows), 1);
    json_t *g1 = expect_row(rows, 0, 1, "1.0.0", "active", true);
    cr_expect_str_eq(json_string_value(json_object_get(g1, "actor")), "host");
    cr_expect(json_is_number(json_object_get(g1, "started_at")));
    cr_expect(json_is_null(json_object_get(g1, "ended_at")));
    cr_expect(json_is_false(json_object_get(g1, "config_changed")));
    cr_expect_eq(json_integer_value(json_object_get(g1, "protocol")), 1);
    cr_expect_eq(strlen(json_string_value(json_object_get(g1, "digest"))), 64);
    json_decref(rows);

    char out[4096], err[1024];
    const char *args[] = {"history", "hello", NULL};
    cr_assert_eq(harness_plugctl(&h, args, out, sizeof(out), err, sizeof(err)), 0, "%s", err);
    cr_expect(strstr(out, "GEN") && strstr(out, "OUTCOME") && strstr(out, "active"), "%s", out);

    json_t *arg = json_pack("{s:s}", "plugin", "nope");
    cr_expect_eq(harness_command(&h, "history", arg, NULL, NULL, 0), PLUGD_E_PLUGIN_NOT_FOUND);
    json_decref(arg);
}

Test(generations, upgrade_is_generation_2_and_supersedes_1_both_known_good)
{
    harness_start(&h);
    install_ready("counter", "counter", NULL);
    char *v2 =
        harness_make_package(&h, "counter", "counter-2", "counter",
                             "{\"version\": \"1.1.0\", \"capabilities\": [\"events.emit\"]}");
    harness_expect_op(&h, "upgrade", v2, PLUGD_OK);
    free(v2);
    expect_ready_and_running("counter");
    json_t *rows = history("counter");
    cr_assert_eq(json_array_size(rows), 2);
    json_t *g2 = expect_row(rows, 0, 2, "1.1.0", "active", true);
    json_t *g1 = expect_row(rows, 1, 1, "1.0.0", "superseded", true);
    cr_expect_eq(json_array_size(json_object_get(g2, "capabilities_added")), 0);
    cr_expect_str_eq(first(g2, "capabilities_removed"), "events.subscribe");
    cr_expect(json_is_number(json_object_get(g1, "ended_at")));
    cr_expect(json_is_false(json_object_get(g2, "config_changed")));
    cr_expect_str_neq(json_string_value(json_object_get(g1, "digest")),
                      json_string_value(json_object_get(g2, "digest")));
    json_decref(rows);

    /* kept across a plugd restart, and the restored worker adds nothing */
    cr_assert_eq(harness_stop(&h, 20.0), 0);
    harness_start(&h);
    expect_ready_and_running("counter");
    rows = history("counter");
    cr_assert_eq(json_array_size(rows), 2);
    expect_row(rows, 0, 2, "1.1.0", "active", true);
    expect_row(rows, 1, 1, "1.0.0", "superseded", true);
    json_decref(rows);
}

static void start_pending_upgrade(void)
{
    harness_start(&h);
    install_ready("hello", "hello", NULL);
    char *v2 =
        harness_make_package(&h, "hello", "hello-2", "hello",
                             "{\"version\": \"1.1.0\", \"capabilities\": [\"plugin.state.read\"]}");
    harness_expect_op(&h, "upgrade", v2, PLUGD_OK);
    free(v2);
    cr_assert(harness_wait_status(&h, "hello", "upgrade_pending", 15.0));
    json_t *rows = history("hello");
    cr_assert_eq(json_array_size(rows), 2);
    json_t *g2 = expect_row(rows, 0, 2, "1.1.0", "candidate", false);
    cr_expect_str_eq(first(g2, "capabilities_added"), "plugin.state.read");
    cr_expect(json_is_null(json_object_get(g2, "started_at")));
    expect_row(rows, 1, 1, "1.0.0", "active", true);
    json_decref(rows);
}

Test(generations, a_rejected_candidate_is_rejected_and_1_stays_active)
{
    start_pending_upgrade();
    harness_expect_op(&h, "reject", "hello", PLUGD_OK);
    expect_ready_and_running("hello");
    json_t *rows = history("hello");
    cr_assert_eq(json_array_size(rows), 2);
    json_t *g2 = expect_row(rows, 0, 2, "1.1.0", "rejected", false);
    cr_expect(json_is_number(json_object_get(g2, "ended_at")));
    json_t *g1 = expect_row(rows, 1, 1, "1.0.0", "active", true);
    cr_expect(json_is_null(json_object_get(g1, "ended_at")));
    json_decref(rows);
}

Test(generations, an_approved_candidate_becomes_active_and_known_good)
{
    start_pending_upgrade();
    harness_expect_op(&h, "approve", "hello", PLUGD_OK);
    expect_ready_and_running("hello");
    json_t *rows = history("hello");
    cr_assert_eq(json_array_size(rows), 2);
    json_t *g2 = expect_row(rows, 0, 2, "1.1.0", "active", true);
    cr_expect(json_is_number(json_object_get(g2, "started_at")));
    expect_row(rows, 1, 1, "1.0.0", "superseded", true);
    json_decref(rows);
}

Test(generations, a_config_change_is_a_new_generation_with_config_changed)
{
    harness_add_plugin(&h, "crashy", "crashy", "{\"config\": {\"config_hooks\": true}}");
    harness_start(&h);
    expect_ready_and_running("crashy");
    json_t *arg = json_pack("{s:s, s:{s:b, s:i}}", "plugin", "crashy", "config", "config_hooks", 1,
                            "value", 9);
    cr_assert_eq(harness_command(&h, "config", arg, NULL, NULL, 0), PLUGD_OK);
    json_decref(arg);
    json_t *rows = history("crashy");
    cr_assert_eq(json_array_size(rows), 2);
    json_t *g2 = expect_row(rows, 0, 2, "1.0.0", "active", true);
    json_t *g1 = expect_row(rows, 1, 1, "1.0.0", "superseded", true);
    cr_expect(json_is_true(json_object_get(g2, "config_changed")));
    cr_expect(json_is_false(json_object_get(g1, "config_changed")));
    cr_expect_str_eq(json_string_value(json_object_get(g2, "digest")),
                     json_string_value(json_object_get(g1, "digest")), "the same package");
    cr_expect_str_eq(json_string_value(json_object_get(g2, "actor")), "host");
    json_decref(rows);
}

Test(generations, a_generation_whose_worker_never_starts_is_failed)
{
    harness_start(&h);
    char *silent = harness_make_package(
        &h, "silent", "silent", "silent",
        "{\"limits\": {\"handshake_timeout_ms\": 100, \"crash_loop_restarts\": 1,"
        " \"crash_loop_window_ms\": 60000}}");
    harness_expect_op(&h, "install", silent, PLUGD_OK);
    free(silent);
    cr_assert(harness_wait_status(&h, "silent", "error", 20.0), "silent never gave up");
    json_t *rows = history("silent");
    cr_assert_eq(json_array_size(rows), 1);
    json_t *g1 = expect_row(rows, 0, 1, "1.0.0", "failed", false);
    cr_expect(json_is_number(json_object_get(g1, "ended_at")));
    json_decref(rows);
}

Test(generations, a_known_good_generation_that_crash_loops_stays_the_active_one)
{
    harness_start(&h);
    install_ready("crashy", "crashy",
                  "{\"limits\": {\"crash_loop_restarts\": 2, \"crash_loop_window_ms\": 60000}}");
    for (int i = 0; i < 10 && !harness_wait_status(&h, "crashy", "error", 0.05); i++) {
        harness_wait_state(&h, "crashy", "running", -1, 5.0);
        harness_call(&h, "crashy", "exit", "[{\"code\": 3}]", 0, NULL);
    }
    cr_assert(harness_wait_status(&h, "crashy", "error", 15.0));
    json_t *rows = history("crashy");
    cr_assert_eq(json_array_size(rows), 1);
    expect_row(rows, 0, 1, "1.0.0", "active", true);
    json_decref(rows);
}

Test(generations, uninstall_ends_the_generation_and_a_reinstall_supersedes_it)
{
    harness_start(&h);
    install_ready("hello", "hello", NULL);
    harness_expect_op(&h, "uninstall", "hello", PLUGD_OK);
    json_t *rows = history("hello");
    json_t *g1 = expect_row(rows, 0, 1, "1.0.0", "active", true);
    double ended = json_number_value(json_object_get(g1, "ended_at"));
    cr_expect_gt(ended, 0.0, "the uninstall ended it");
    json_decref(rows);

    char *again = harness_make_package(&h, "hello", "hello-again", "hello", NULL);
    harness_expect_op(&h, "install", again, PLUGD_OK);
    free(again);
    expect_ready_and_running("hello");
    rows = history("hello");
    cr_assert_eq(json_array_size(rows), 2);
    expect_row(rows, 0, 2, "1.0.0", "active", true);
    g1 = expect_row(rows, 1, 1, "1.0.0", "superseded", true);
    cr_expect_eq(json_number_value(json_object_get(g1, "ended_at")), ended,
                 "it ended at the uninstall, not at the reinstall");
    json_decref(rows);
}
