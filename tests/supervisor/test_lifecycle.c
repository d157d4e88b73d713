/* The plugin lifecycle: the transition table, every operation through a
 * real plugd (host channel commands, the plugins folder), its events and
 * their order, upgrades with the capability diff, plugin state, and the
 * registry surviving kill -9. */
#include <criterion/criterion.h>
#include <limits.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonpack.h"
#include "lifecycle.h"
#include "plugd_harness.h"

HARNESS_TEST_SUITE(lifecycle, 120);

/* ------------------------------------------------------------ the table */

Test(lifecycle, table_is_exactly_the_architecture)
{
    static const char *const allowed[] = {
        "installed>ready",       "installed>error",       "installed>uninstalled",
        "ready>ready",           "ready>disabled",        "ready>error",
        "ready>upgrade_pending", "ready>uninstalled",     "disabled>ready",
        "disabled>uninstalled",  "error>ready",           "error>uninstalled",
        "upgrade_pending>ready", "upgrade_pending>error", "upgrade_pending>uninstalled",
        "uninstalled>installed",
    };
    int n_allowed = 0;
    for (int from = 0; from < LC_STATUS_COUNT; from++) {
        for (int to = 0; to < LC_STATUS_COUNT; to++) {
            char pair[64];
            snprintf(pair, sizeof(pair), "%s>%s", lc_status_name(from), lc_status_name(to));
            bool expected = false;
            for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
                expected = expected || strcmp(allowed[i], pair) == 0;
            cr_expect_eq(lc_is_allowed(from, to), expected, "%s", pair);
            struct plugd_error err;
            int rc = lc_check("op", from, to, &err);
            cr_expect_eq(rc == 0, expected, "%s", pair);
            if (rc < 0) {
                cr_expect_eq(err.code, PLUGD_E_INVALID_TRANSITION);
                cr_expect(strstr(err.message, lc_status_name(from)) &&
                              strstr(err.message, lc_status_name(to)),
                          "the refusal names both states: %s", err.message);
            }
            n_allowed += expected;
        }
    }
    cr_assert_eq(n_allowed, 16);
}

/* ------------------------------------------------------------ helpers */

static void expect_status(const char *plugin, const char *status)
{
    cr_assert(harness_wait_status(&h, plugin, status, 15.0), "%s never became %s", plugin, status);
}

static json_t *status_field(const char *plugin, const char *field)
{
    json_t *st = harness_status(&h, plugin);
    cr_assert_not_null(st);
    json_t *v = json_incref(json_object_get(st, field));
    json_decref(st);
    return v;
}

static void expect_version(const char *plugin, const char *version)
{
    json_t *v = status_field(plugin, "version");
    cr_assert_str_eq(json_string_value(v), version);
    json_decref(v);
}

static int audit_rows(const char *plugin)
{
    json_t *arg = json_pack("{s:s, s:i}", "plugin", plugin, "limit", 10000), *rows = NULL;
    cr_assert_eq(harness_command(&h, "audit", arg, &rows, NULL, 0), PLUGD_OK);
    json_decref(arg);
    int n = (int)json_array_size(rows);
    json_decref(rows);
    return n;
}

/* Starts plugd with an empty plugins folder, subscribed to every event. */
static void start_empty(void)
{
    harness_start(&h);
    harness_subscribe(&h, "*", -1);
}

static void install_ready(const char *example, const char *name, const char *overrides)
{
    char *path = harness_make_package(&h, example, name, name, overrides);
    harness_expect_op(&h, "install", path, PLUGD_OK);
    free(path);
    expect_status(name, "ready");
    cr_assert(harness_wait_state(&h, name, "running", -1, 10.0));
}

/* ------------------------------------------------------------ operations */

Test(lifecycle, install_loads_to_ready_with_events_in_order)
{
    start_empty();
    size_t from = json_array_size(h.events);
    install_ready("hello", "hello", NULL);
    cr_assert_geq(harness_wait_event(&h, "plugin.loaded", "hello", from, 5.0), 0);
    char names[1024];
    harness_event_names(&h, "hello", from, names, sizeof(names));
    cr_assert_str_eq(names, "plugin.status_changed plugin.worker_started plugin.status_changed "
                            "plugin.loaded");
    json_t *first = json_array_get(h.events, from);
    json_t *payload = json_object_get(first, "payload");
    cr_assert(json_is_null(json_object_get(payload, "previous_status")));
    cr_assert_str_eq(json_string_value(json_object_get(payload, "new_status")), "installed");
    /* sequence numbers increase by one */
    for (size_t i = 1; i < json_array_size(h.events); i++)
        cr_assert_eq(json_integer_value(json_object_get(json_array_get(h.events, i), "seq")),
                     json_integer_value(json_object_get(json_array_get(h.events, i - 1), "seq")) +
                         1);
    cr_assert_eq(harness_call(&h, "hello", "echo", "[7]", 0, NULL), PLUGD_OK);
    cr_assert_eq(audit_rows("hello"), 2, "install and load, one audit row each");
}

Test(lifecycle, disable_stops_the_worker_and_enable_brings_it_back)
{
    start_empty();
    install_ready("hello", "hello", NULL);
    pid_t pid = harness_worker_pid(&h, "hello");
    size_t from = json_array_size(h.events);
    harness_expect_op(&h, "disable", "hello", PLUGD_OK);
    expect_status("hello", "disabled");
    cr_assert(harness_wait_state(&h, "hello", "stopped", -1, 10.0));
    cr_assert(harness_pid_dead(pid));
    cr_assert_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_E_WORKER_UNAVAILABLE);
    cr_assert_geq(harness_wait_event(&h, "plugin.worker_stopped", "hello", from, 5.0), 0);
    char names[1024];
    harness_event_names(&h, "hello", from, names, sizeof(names));
    cr_assert_str_eq(names, "plugin.status_changed plugin.disabled plugin.worker_stopped");

    from = json_array_size(h.events);
    harness_expect_op(&h, "enable", "hello", PLUGD_OK);
    expect_status("hello", "ready");
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0));
    cr_assert_geq(harness_wait_event(&h, "plugin.worker_started", "hello", from, 5.0), 0);
    harness_event_names(&h, "hello", from, names, sizeof(names));
    cr_assert_str_eq(names, "plugin.status_changed plugin.enabled plugin.worker_started");
    cr_assert_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_OK);
}

/* Every operation the table refuses from `status` answers
 * invalid_transition and changes neither the status nor the audit. */
static void expect_refused(const char *plugin, const char *status, const char *const *ops,
                           const char *upgrade_path)
{
    int rows = audit_rows(plugin);
    for (size_t i = 0; ops[i] != NULL; i++) {
        const char *target = strcmp(ops[i], "install") == 0 || strcmp(ops[i], "upgrade") == 0
                                 ? upgrade_path
                                 : plugin;
        harness_expect_op(&h, ops[i], target, PLUGD_E_INVALID_TRANSITION);
        char now[32];
        harness_lifecycle(&h, plugin, now, sizeof(now));
        cr_assert_str_eq(now, status, "%s from %s changed the status to %s", ops[i], status, now);
    }
    cr_assert_eq(audit_rows(plugin), rows, "a refused operation wrote an audit row");
}

Test(lifecycle, refused_transitions_from_every_status_change_nothing)
{
    start_empty();
    install_ready("hello", "hello", NULL);
    /* the installed version rebuilt (another digest): installing the very
     * same package again is a no-op success (issue 14), another one is not */
    char *same = harness_make_package(&h, "hello", "hello-same", "hello",
                                      "{\"description\": \"a rebuild\"}");
    char *newer =
        harness_make_package(&h, "hello", "hello-2", "hello",
                             "{\"version\": \"2.0.0\", \"capabilities\": [\"plugin.state.read\"]}");

    expect_refused("hello", "ready", (const char *const[]){"approve", "reject", "install", NULL},
                   same);

    harness_expect_op(&h, "disable", "hello", PLUGD_OK);
    expect_refused(
        "hello", "disabled",
        (const char *const[]){"disable", "approve", "reject", "install", "upgrade", NULL}, newer);

    harness_expect_op(&h, "enable", "hello", PLUGD_OK);
    expect_status("hello", "ready");
    harness_expect_op(&h, "upgrade", newer, PLUGD_OK);
    expect_status("hello", "upgrade_pending");
    expect_refused("hello", "upgrade_pending",
                   (const char *const[]){"disable", "enable", "install", "upgrade", NULL}, same);

    harness_expect_op(&h, "reject", "hello", PLUGD_OK);
    expect_status("hello", "ready");
    harness_expect_op(&h, "uninstall", "hello", PLUGD_OK);
    expect_status("hello", "uninstalled");
    expect_refused("hello", "uninstalled",
                   (const char *const[]){"enable", "disable", "approve", "reject", "uninstall",
                                         "upgrade", NULL},
                   newer);
    harness_expect_op(&h, "enable", "nosuch", PLUGD_E_PLUGIN_NOT_FOUND);
    free(same);
    free(newer);
}

/* The newest audit row of `plugin` says `actor` did `action`, `from` → `to`. */
static void expect_last_audit(const char *plugin, const char *actor, const char *action,
                              const char *from, const char *to)
{
    json_t *arg = json_pack("{s:s, s:i}", "plugin", plugin, "limit", 1), *rows = NULL;
    cr_assert_eq(harness_command(&h, "audit", arg, &rows, NULL, 0), PLUGD_OK);
    json_decref(arg);
    json_t *row = json_array_get(rows, 0);
    cr_assert_str_eq(json_string_value(json_object_get(row, "action")), action);
    cr_assert_str_eq(json_string_value(json_object_get(row, "from")), from);
    cr_assert_str_eq(json_string_value(json_object_get(row, "to")), to);
    cr_assert_str_eq(json_string_value(json_object_get(row, "actor")), actor);
    json_decref(rows);
}

Test(lifecycle, allowed_transitions_that_end_a_plugin)
{
    start_empty();
    /* installed → error: a worker that speaks another protocol can never load */
    char *old = harness_make_package(&h, "oldproto", "oldproto", "oldproto", NULL);
    harness_expect_op(&h, "install", old, PLUGD_OK);
    free(old);
    expect_status("oldproto", "error");
    expect_last_audit("oldproto", "plugd", "fail", "installed", "error");
    json_t *error = status_field("oldproto", "error");
    cr_assert(strstr(json_string_value(error), "protocol"), "%s", json_string_value(error));
    json_decref(error);
    /* error → uninstalled */
    harness_expect_op(&h, "uninstall", "oldproto", PLUGD_OK);
    expect_last_audit("oldproto", "host", "uninstall", "error", "uninstalled");

    /* installed → uninstalled: a worker that has not said hello yet */
    char *silent = harness_make_package(&h, "silent", "silent", "silent",
                                        "{\"limits\": {\"handshake_timeout_ms\": 20000}}");
    harness_expect_op(&h, "install", silent, PLUGD_OK);
    free(silent);
    expect_status("silent", "installed");
    harness_expect_op(&h, "uninstall", "silent", PLUGD_OK);
    expect_last_audit("silent", "host", "uninstall", "installed", "uninstalled");
    cr_assert(harness_wait_state(&h, "silent", "stopped", -1, 10.0));

    /* disabled → uninstalled */
    install_ready("hello", "hello", NULL);
    harness_expect_op(&h, "disable", "hello", PLUGD_OK);
    harness_expect_op(&h, "uninstall", "hello", PLUGD_OK);
    expect_last_audit("hello", "host", "uninstall", "disabled", "uninstalled");

    /* upgrade_pending → uninstalled */
    install_ready("hello", "other", NULL);
    char *wider =
        harness_make_package(&h, "hello", "other-2", "other",
                             "{\"version\": \"2.0.0\", \"capabilities\": [\"events.emit\"]}");
    harness_expect_op(&h, "upgrade", wider, PLUGD_OK);
    free(wider);
    expect_status("other", "upgrade_pending");
    harness_expect_op(&h, "uninstall", "other", PLUGD_OK);
    expect_last_audit("other", "host", "uninstall", "upgrade_pending", "uninstalled");
    json_t *pending = status_field("other", "pending_version");
    cr_assert(json_is_null(pending), "an uninstall discards the pending upgrade");
    json_decref(pending);
}

Test(lifecycle, crash_loop_goes_to_error_and_enable_makes_it_ready_again)
{
    start_empty();
    install_ready("crashy", "crashy",
                  "{\"limits\": {\"crash_loop_restarts\": 2, \"crash_loop_window_ms\": 60000}}");
    size_t from = json_array_size(h.events);
    for (int i = 0; i < 10 && !harness_wait_status(&h, "crashy", "error", 0.05); i++) {
        harness_wait_state(&h, "crashy", "running", -1, 5.0);
        harness_call(&h, "crashy", "exit", "[{\"code\": 3}]", 0, NULL);
    }
    expect_status("crashy", "error");
    int at = harness_wait_event(&h, "plugin.error", "crashy", from, 5.0);
    cr_assert_geq(at, 0);
    const char *why = json_string_value(
        json_object_get(json_object_get(json_array_get(h.events, (size_t)at), "payload"), "error"));
    cr_assert(why && strstr(why, "crash loop"), "reason: %s", why);
    cr_assert_geq(harness_wait_event(&h, "plugin.worker_crashed", "crashy", from, 1.0), 0);
    json_t *error = status_field("crashy", "error");
    cr_assert(strstr(json_string_value(error), "crash loop"));
    json_decref(error);

    harness_expect_op(&h, "enable", "crashy", PLUGD_OK);
    expect_status("crashy", "ready");
    cr_assert(harness_wait_state(&h, "crashy", "running", -1, 10.0));
    cr_assert_eq(harness_call(&h, "crashy", "echo", "[1]", 0, NULL), PLUGD_OK);
}

Test(lifecycle, crashes_restarts_and_health_changes_are_events)
{
    start_empty();
    install_ready("crashy", "crashy", "{\"limits\": {\"health_interval_ms\": 50}}");
    size_t from = json_array_size(h.events);
    harness_call(&h, "crashy", "exit", "[{\"code\": 3}]", 0, NULL);
    cr_assert_geq(harness_wait_event(&h, "plugin.worker_restarted", "crashy", from, 10.0), 0);
    char names[1024];
    harness_event_names(&h, "crashy", from, names, sizeof(names));
    cr_assert_str_eq(names, "plugin.worker_crashed plugin.worker_started plugin.worker_restarted");
    int at = harness_wait_event(&h, "plugin.worker_crashed", "crashy", from, 1.0);
    json_t *payload = json_object_get(json_array_get(h.events, (size_t)at), "payload");
    cr_assert_str_eq(json_string_value(json_object_get(payload, "exit")), "exited with status 3");
    expect_status("crashy", "ready");

    from = json_array_size(h.events);
    cr_assert_eq(harness_call(&h, "crashy", "set_health", "[\"degraded\"]", 0, NULL), PLUGD_OK);
    at = harness_wait_event(&h, "plugin.health_degraded", "crashy", from, 5.0);
    cr_assert_geq(at, 0);
    payload = json_object_get(json_array_get(h.events, (size_t)at), "payload");
    cr_assert_str_eq(json_string_value(json_object_get(payload, "reason")),
                     "told to report degraded health");
    cr_assert_eq(harness_call(&h, "crashy", "set_health", "[\"ok\"]", 0, NULL), PLUGD_OK);
    cr_assert_geq(harness_wait_event(&h, "plugin.health_recovered", "crashy", (size_t)at, 5.0), 0);
    harness_event_names(&h, "crashy", from, names, sizeof(names));
    cr_assert_str_eq(names, "plugin.health_degraded plugin.health_recovered",
                     "one event per change, not per health call");
}

/* ------------------------------------------------------------ upgrades */

/* counter 1.0.0 ready, then upgraded to 1.1.0 with no capability added
 * (events.emit is one it has; two are dropped): the old worker's pid;
 * `from` the events before the upgrade. */
static pid_t upgrade_counter(size_t *from)
{
    start_empty();
    install_ready("counter", "counter", NULL);
    pid_t old = harness_worker_pid(&h, "counter");
    char *v2 =
        harness_make_package(&h, "counter", "counter-2", "counter",
                             "{\"version\": \"1.1.0\", \"capabilities\": [\"events.emit\"]}");
    *from = json_array_size(h.events);
    harness_expect_op(&h, "upgrade", v2, PLUGD_OK);
    free(v2);
    return old;
}

Test(lifecycle, upgrade_without_added_capabilities_runs_the_new_version)
{
    size_t from;
    pid_t old = upgrade_counter(&from);
    expect_status("counter", "ready");
    expect_version("counter", "1.1.0");
    cr_assert_geq(harness_wait_event(&h, "plugin.worker_started", "counter", from, 10.0), 0);
    cr_assert(harness_pid_dead(old), "the old worker was drained and stopped");
    int at = harness_wait_event(&h, "plugin.upgraded", "counter", from, 1.0);
    cr_assert_geq(at, 0);
    json_t *diff = status_field("counter", "diff");
    cr_assert_eq(json_array_size(json_object_get(diff, "added")), 0);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(diff, "removed"), 0)),
                     "events.subscribe");
    json_decref(diff);
    cr_assert_eq(harness_call(&h, "counter", "increment", "[]", 0, NULL), PLUGD_OK);
}

static void start_pending_upgrade(void)
{
    start_empty();
    install_ready("hello", "hello", NULL);
    char *v2 =
        harness_make_package(&h, "hello", "hello-2", "hello",
                             "{\"version\": \"1.1.0\", \"capabilities\": [\"plugin.state.read\"]}");
    size_t from = json_array_size(h.events);
    harness_expect_op(&h, "upgrade", v2, PLUGD_OK);
    free(v2);
    expect_status("hello", "upgrade_pending");
    int at = harness_wait_event(&h, "plugin.upgrade_pending", "hello", from, 5.0);
    cr_assert_geq(at, 0);
    json_t *payload = json_object_get(json_array_get(h.events, (size_t)at), "payload");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(payload, "added"), 0)),
                     "plugin.state.read");
    cr_assert(harness_wait_state(&h, "hello", "stopped", -1, 10.0));
    cr_assert_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_E_WORKER_UNAVAILABLE);
    expect_version("hello", "1.0.0");
    json_t *pending = status_field("hello", "pending_version");
    cr_assert_str_eq(json_string_value(pending), "1.1.0");
    json_decref(pending);
}

Test(lifecycle, upgrade_with_an_added_capability_waits_for_approval)
{
    start_pending_upgrade();
    size_t from = json_array_size(h.events);
    harness_expect_op(&h, "approve", "hello", PLUGD_OK);
    int at = harness_wait_event(&h, "plugin.upgraded", "hello", from, 5.0);
    cr_assert_geq(at, 0);
    json_t *payload = json_object_get(json_array_get(h.events, (size_t)at), "payload");
    cr_assert_str_eq(json_string_value(json_object_get(payload, "from_version")), "1.0.0");
    cr_assert_str_eq(json_string_value(json_object_get(payload, "to_version")), "1.1.0");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(payload, "added"), 0)),
                     "plugin.state.read", "the upgraded event names what was approved");
    expect_status("hello", "ready");
    expect_version("hello", "1.1.0");
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0));
    cr_assert_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_OK);
}

Test(lifecycle, rejected_upgrade_returns_to_the_old_version)
{
    start_pending_upgrade();
    harness_expect_op(&h, "reject", "hello", PLUGD_OK);
    expect_status("hello", "ready");
    expect_version("hello", "1.0.0");
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0));
    cr_assert_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_OK);
    json_t *pending = status_field("hello", "pending_version");
    cr_assert(json_is_null(pending));
    json_decref(pending);
}

Test(lifecycle, downgrade_and_invalid_packages_are_refused)
{
    start_empty();
    install_ready("hello", "hello", "{\"version\": \"1.2.0\"}");
    char *older =
        harness_make_package(&h, "hello", "hello-old", "hello", "{\"version\": \"1.1.9\"}");
    char *bad = harness_make_package(&h, "hello", "hello-bad", "hello", "{\"version\": \"1.x\"}");
    char message[PLUGD_ERROR_MESSAGE_MAX];
    cr_assert_eq(harness_op(&h, "upgrade", older, message, sizeof(message)),
                 PLUGD_E_INVALID_REQUEST);
    cr_assert(strstr(message, "not newer"), "%s", message);
    cr_assert_eq(harness_op(&h, "upgrade", bad, message, sizeof(message)),
                 PLUGD_E_INVALID_MANIFEST);
    cr_assert(strstr(message, "\"version\": \"1.x\" is not a semantic version"), "%s", message);
    expect_version("hello", "1.2.0");
    free(older);
    free(bad);
}

/* ------------------------------------------------------------ state */

static void expect_host_answer(const char *plugin, const char *params, const char *code)
{
    json_t *result = NULL;
    cr_assert_eq(harness_call(&h, plugin, "call_host", params, 0, &result), PLUGD_OK);
    cr_assert_str_eq(json_string_value(result), code, "%s: got %s", params,
                     json_string_value(result));
    json_decref(result);
}

Test(lifecycle, state_service_is_gated_and_limited)
{
    start_empty();
    install_ready("crashy", "reader", "{\"capabilities\": [\"plugin.state.read\"]}");
    install_ready("crashy", "writer",
                  "{\"capabilities\": [\"plugin.state.read\", \"plugin.state.write\"]}");
    expect_host_answer("reader", "[\"state.set\", {\"key\": \"k\", \"value\": 1}]",
                       "capability_denied");
    expect_host_answer("reader", "[\"state.get\", {\"key\": \"k\"}]", "ok");
    expect_host_answer("writer", "[\"state.set\", {\"key\": \"k\", \"value\": [1, 2]}]", "ok");
    expect_host_answer("writer", "[\"state.set\", {\"key\": \"\", \"value\": 1}]",
                       "invalid_request");
    char big[200000];
    int n = snprintf(big, sizeof(big), "[\"state.set\", {\"key\": \"big\", \"value\": \"");
    memset(big + n, 'x', 70000);
    snprintf(big + n + 70000, sizeof(big) - (size_t)n - 70000, "\"}]");
    expect_host_answer("writer", big, "value_too_large");
    expect_host_answer("writer", "[\"state.delete\", {\"key\": \"k\"}]", "ok");
}

/* Counts rows of `plugin` in the state table of the registry. */
static int state_rows(const char *plugin)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/state/plugd.db", h.dir);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM state WHERE plugin = ?", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, plugin, -1, SQLITE_STATIC);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

Test(lifecycle, uninstall_keeps_data_reinstall_recovers_it_and_purge_deletes_it)
{
    start_empty();
    const char *caps = "{\"capabilities\": [\"plugin.state.read\", \"plugin.state.write\"]}";
    install_ready("crashy", "keeper", caps);
    expect_host_answer("keeper", "[\"state.set\", {\"key\": \"a\", \"value\": 42}]", "ok");
    expect_host_answer("keeper",
                       "[\"state.set\", {\"namespace\": \"n\", \"key\": \"b\", "
                       "\"value\": \"x\"}]",
                       "ok");
    cr_assert_eq(state_rows("keeper"), 2);
    pid_t pid = harness_worker_pid(&h, "keeper");
    size_t from = json_array_size(h.events);
    harness_expect_op(&h, "uninstall", "keeper", PLUGD_OK);
    expect_status("keeper", "uninstalled");
    cr_assert(harness_wait_state(&h, "keeper", "stopped", -1, 10.0));
    cr_assert(harness_pid_dead(pid));
    int at = harness_wait_event(&h, "plugin.unloaded", "keeper", from, 5.0);
    cr_assert_geq(at, 0);
    cr_assert(json_is_false(json_object_get(
        json_object_get(json_array_get(h.events, (size_t)at), "payload"), "remove_data")));
    cr_assert_eq(state_rows("keeper"), 2, "uninstall keeps the data");

    char *again = harness_make_package(&h, "crashy", "keeper-again", "keeper", caps);
    harness_expect_op(&h, "install", again, PLUGD_OK);
    free(again);
    expect_status("keeper", "ready");
    cr_assert(harness_wait_state(&h, "keeper", "running", -1, 10.0));
    cr_assert_eq(state_rows("keeper"), 2, "reinstall recovers the data");
    expect_host_answer("keeper", "[\"state.delete\", {\"key\": \"a\"}]", "ok");
    cr_assert_eq(state_rows("keeper"), 1, "the reinstalled plugin owns its old data");

    json_t *arg = json_pack("{s:s, s:b}", "plugin", "keeper", "remove_data", 1);
    cr_assert_eq(harness_command(&h, "uninstall", arg, NULL, NULL, 0), PLUGD_OK);
    json_decref(arg);
    cr_assert_eq(state_rows("keeper"), 0, "purge deletes the data at once");
}

Test(lifecycle, data_of_uninstalled_plugins_is_deleted_after_the_retention)
{
    h.extra_args[0] = "--data-retention-days";
    h.extra_args[1] = "0";
    start_empty();
    const char *caps = "{\"capabilities\": [\"plugin.state.write\"]}";
    install_ready("crashy", "gone", caps);
    install_ready("crashy", "kept", caps);
    expect_host_answer("gone", "[\"state.set\", {\"key\": \"a\", \"value\": 1}]", "ok");
    expect_host_answer("kept", "[\"state.set\", {\"key\": \"a\", \"value\": 1}]", "ok");
    harness_expect_op(&h, "uninstall", "gone", PLUGD_OK);
    cr_assert_eq(state_rows("gone"), 1, "the data stays until the next retention sweep");
    cr_assert_eq(harness_stop(&h, 20.0), 0);
    harness_start(&h); /* a sweep runs at every start */
    expect_status("kept", "ready");
    cr_assert_eq(state_rows("gone"), 0, "past its retention the data is deleted");
    cr_assert_eq(state_rows("kept"), 1, "an installed plugin's data is never swept");
}

static int64_t crashy_config_value(const char *plugin)
{
    json_t *v = NULL;
    cr_assert_eq(harness_call(&h, plugin, "config_value", "[]", 0, &v), PLUGD_OK);
    int64_t n = json_integer_value(v);
    json_decref(v);
    return n;
}

Test(lifecycle, a_config_change_is_applied_hot_and_kept_across_restarts)
{
    harness_add_plugin(&h, "crashy", "crashy", "{\"config\": {\"config_hooks\": true}}");
    start_empty();
    expect_status("crashy", "ready");
    cr_assert(harness_wait_state(&h, "crashy", "running", -1, 10.0));
    pid_t pid = harness_worker_pid(&h, "crashy");
    json_t *arg = json_pack("{s:s, s:{s:b, s:i}}", "plugin", "crashy", "config", "config_hooks", 1,
                            "value", 9);
    cr_assert_eq(harness_command(&h, "config", arg, NULL, NULL, 0), PLUGD_OK);
    json_decref(arg);
    cr_assert_eq(crashy_config_value("crashy"), 9);
    cr_assert_eq(harness_worker_pid(&h, "crashy"), pid, "applied hot, without a restart");
    expect_last_audit("crashy", "host", "config", "ready", "ready");

    cr_assert_eq(harness_stop(&h, 20.0), 0);
    harness_start(&h);
    expect_status("crashy", "ready");
    cr_assert(harness_wait_state(&h, "crashy", "running", -1, 10.0));
    cr_assert_eq(crashy_config_value("crashy"), 9, "the stored config survives a restart");
}

/* ------------------------------------------------------------ events */

/* counter's events_seen once it reaches `n` (or after 5 s), and a moment
 * later, so that one too many would show. */
static int64_t events_seen(const char *plugin, int64_t n)
{
    json_t *seen = NULL;
    for (int i = 0; i < 250; i++) {
        json_decref(seen);
        seen = NULL;
        cr_assert_eq(harness_call(&h, plugin, "events_seen", "[]", 0, &seen), PLUGD_OK);
        if (json_integer_value(seen) >= n)
            break;
        harness_sleep(&h, 0.02);
    }
    json_decref(seen);
    harness_sleep(&h, 0.1);
    cr_assert_eq(harness_call(&h, plugin, "events_seen", "[]", 0, &seen), PLUGD_OK);
    int64_t got = json_integer_value(seen);
    json_decref(seen);
    return got;
}

Test(lifecycle, plugins_react_to_events_with_patterns_and_filters)
{
    harness_add_plugin(&h, "counter", "a", NULL);
    harness_add_plugin(&h, "counter", "b", "{\"config\": {\"watch\": \"plugin.a.changed\"}}");
    harness_add_plugin(&h, "counter", "c", "{\"config\": {\"from\": \"a\"}}");
    harness_start(&h);
    const char *const names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        expect_status(names[i], "ready");
        cr_assert(harness_wait_state(&h, names[i], "running", -1, 10.0));
    }
    harness_sleep(&h, 0.2); /* the subscriptions are sent right after initialize */
    for (int i = 0; i < 3; i++)
        cr_assert_eq(harness_call(&h, "a", "increment", "[]", 0, NULL), PLUGD_OK);
    cr_assert_eq(harness_call(&h, "b", "increment", "[]", 0, NULL), PLUGD_OK);
    cr_assert_eq(events_seen("b", 3), 3, "b's pattern takes a's three changes, not its own");
    cr_assert_eq(events_seen("c", 3), 3, "c's filter (in plugd) keeps a's changes only");
    cr_assert_eq(events_seen("a", 4), 4, "a watches every counter's changes: its 3 and b's");
}

Test(lifecycle, slow_subscriber_is_dropped_while_others_keep_receiving)
{
    harness_add_plugin(&h, "crashy", "flood", "{\"capabilities\": [\"events.emit\"]}");
    harness_add_plugin(&h, "crashy", "slow",
                       "{\"capabilities\": [\"events.subscribe\"], \"limits\": "
                       "{\"health_interval_ms\": 600000}}");
    harness_add_plugin(&h, "counter", "fast", "{\"config\": {\"watch\": \"plugin.flood.*\"}}");
    harness_start(&h);
    expect_status("flood", "ready");
    expect_status("slow", "ready");
    expect_status("fast", "ready");
    cr_assert(harness_wait_state(&h, "fast", "running", -1, 10.0));
    expect_host_answer("slow", "[\"events.subscribe\", {\"pattern\": \"plugin.flood.*\"}]", "ok");
    /* slow stops reading its channel (its loop blocks in the hang call) */
    struct pending *hang = harness_call_async(&h, "slow", "hang", "[]", 60000);
    harness_sleep(&h, 0.1);
    json_t *n = NULL;
    cr_assert_eq(
        harness_call(&h, "flood", "emit_many", "[{\"n\": 3000, \"size\": 2000}]", 30000, &n),
        PLUGD_OK);
    cr_assert_eq(json_integer_value(n), 3000);
    json_decref(n);
    json_t *seen = NULL;
    for (int i = 0; i < 500; i++) {
        json_decref(seen);
        seen = NULL;
        harness_call(&h, "fast", "events_seen", "[]", 0, &seen);
        if (json_integer_value(seen) >= 3000)
            break;
        harness_sleep(&h, 0.02);
    }
    cr_assert_eq(json_integer_value(seen), 3000, "the fast subscriber got every event");
    json_decref(seen);
    cr_assert_eq(harness_log_count(&h, "event subscription dropped: its queue overflowed"), 1);
    cr_assert_eq(harness_call(&h, "flood", "echo", "[1]", 0, NULL), PLUGD_OK);
    harness_kill9(&h); /* the hung worker would hold the graceful stop for its drain */
    free(hang);
}

/* ------------------------------------------------------------ hot lifecycle */

Test(lifecycle, plugins_folder_installs_and_upgrades_while_running)
{
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_start(&h);
    expect_status("hello", "ready");
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0));
    pid_t hello = harness_worker_pid(&h, "hello");

    harness_add_plugin(&h, "counter", "counter", NULL);
    expect_status("counter", "ready");
    cr_assert_eq(harness_call(&h, "counter", "increment", "[]", 0, NULL), PLUGD_OK);
    cr_assert_eq(harness_worker_pid(&h, "hello"), hello, "installing counter disturbed hello");

    /* a new version of counter is dropped into its folder */
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/plugins/counter/plugin.json", h.dir);
    json_t *m = json_load_file(path, 0, NULL);
    json_object_set_new(m, "version", json_string("1.0.1"));
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    cr_assert_eq(json_dump_file(m, tmp, 0), 0);
    json_decref(m);
    cr_assert_eq(rename(tmp, path), 0);
    for (int i = 0; i < 300; i++) {
        json_t *v = status_field("counter", "version");
        bool is_done = strcmp(json_string_value(v), "1.0.1") == 0;
        json_decref(v);
        if (is_done)
            break;
        cr_assert_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_OK);
        harness_sleep(&h, 0.02);
    }
    expect_version("counter", "1.0.1");
    expect_status("counter", "ready");
    cr_assert_eq(harness_worker_pid(&h, "hello"), hello, "upgrading counter disturbed hello");
}

/* ------------------------------------------------------------ kill -9 */

/* The registry after a kill -9: intact, its foreign keys hold, and each
 * plugin's status is the one its last audit row recorded. */
static void expect_consistent_registry(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/state/plugd.db", h.dir);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    static const char *const checks[] = {
        "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check != 'ok'",
        "SELECT count(*) FROM pragma_foreign_key_check",
        "SELECT count(*) FROM plugins p WHERE p.status != (SELECT to_status FROM audit a"
        " WHERE a.plugin = p.name ORDER BY id DESC LIMIT 1)",
        "SELECT count(*) FROM plugins WHERE (status = 'upgrade_pending') !="
        " (pending_version IS NOT NULL)",
        /* generations: one active at most, the row's package; a pending one the candidate */
        "SELECT count(*) FROM (SELECT plugin FROM generations WHERE outcome = 'active'"
        " GROUP BY plugin HAVING count(*) > 1)",
        "SELECT count(*) FROM plugins p WHERE p.status IN ('ready', 'upgrade_pending') AND NOT"
        " EXISTS (SELECT 1 FROM generations g WHERE g.plugin = p.name AND g.outcome = 'active'"
        " AND g.digest = p.digest)",
        "SELECT count(*) FROM plugins p WHERE p.status = 'upgrade_pending' AND NOT EXISTS"
        " (SELECT 1 FROM generations g WHERE g.plugin = p.name AND g.outcome = 'candidate'"
        " AND g.digest = p.pending_digest)",
    };
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        sqlite3_stmt *st;
        cr_assert_eq(sqlite3_prepare_v2(db, checks[i], -1, &st, NULL), SQLITE_OK, "%s: %s",
                     checks[i], sqlite3_errmsg(db));
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
        cr_assert_eq(sqlite3_column_int(st, 0), 0, "%s", checks[i]);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

/* The command that puts a transition under way in round `round`: an
 * upgrade to a new version (every other one adding a capability), or the
 * answer to a pending one. */
static void send_transition(int round, const char *status)
{
    json_t *arg;
    const char *cmd;
    if (strcmp(status, "upgrade_pending") == 0) {
        cmd = round % 3 ? "approve" : "reject";
        arg = json_pack("{s:s}", "plugin", "hello");
    } else {
        char folder[32], overrides[160];
        snprintf(folder, sizeof(folder), "v%d", round);
        snprintf(overrides, sizeof(overrides), "{\"version\": \"1.%d.0\", \"capabilities\": [%s]}",
                 round + 1, round % 2 ? "\"plugin.state.read\"" : "");
        char *path = harness_make_package(&h, "hello", folder, "hello", overrides);
        cmd = "upgrade";
        arg = json_pack("{s:s}", "path", path);
        free(path);
    }
    msgpack_packer *pk = ipc_conn_begin_call(h.host, cmd, 5.0, NULL, NULL);
    msgpack_pack_array(pk, 1);
    jsonpack_pack(pk, arg);
    ipc_conn_end(h.host, NULL);
    ipc_conn_flush(h.host, NULL);
    json_decref(arg);
}

Test(lifecycle, kill9_during_upgrades_leaves_a_consistent_registry)
{
    harness_add_plugin(&h, "hello", "hello", NULL);
    srand48(getpid());
    for (int round = 0; round < 50; round++) {
        harness_start(&h);
        char status[32] = "";
        for (int i = 0; i < 500; i++) {
            harness_lifecycle(&h, "hello", status, sizeof(status));
            if (strcmp(status, "ready") == 0 || strcmp(status, "upgrade_pending") == 0)
                break;
            harness_sleep(&h, 0.01);
        }
        cr_assert(strcmp(status, "ready") == 0 || strcmp(status, "upgrade_pending") == 0,
                  "round %d: plugd came back with hello %s", round, status);
        if (strcmp(status, "ready") == 0)
            cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0),
                      "round %d: a ready plugin got no worker back", round);
        send_transition(round, status);
        usleep((useconds_t)(drand48() * 20000));
        harness_kill9(&h);
        expect_consistent_registry();
    }
}

/* ------------------------------------------------------------ instances */

/* The plugin's one instance in status (asserted to be the only one). */
static json_t *only_instance(const char *plugin, json_t **status)
{
    *status = harness_status(&h, plugin);
    cr_assert_not_null(*status);
    json_t *list = json_object_get(*status, "instances");
    cr_assert(json_is_array(list), "status has no instances array");
    cr_assert_eq(json_array_size(list), 1, "%s has %zu instances, not 1", plugin,
                 json_array_size(list));
    return json_array_get(list, 0);
}

/* Waits up to 2 s for `plugin` to list one instance: an old one is freed
 * from the loop once it has stopped. */
static void wait_one_instance(const char *plugin)
{
    for (int i = 0; i < 100; i++) {
        json_t *st = harness_status(&h, plugin);
        size_t n = json_array_size(json_object_get(st, "instances"));
        json_decref(st);
        if (n == 1)
            return;
        harness_sleep(&h, 0.02);
    }
}

static json_int_t int_field(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "\"%s\" is not an integer", key);
    return json_integer_value(v);
}

Test(lifecycle, status_shows_one_instance_with_its_version_pid_and_call_counts)
{
    start_empty();
    install_ready("hello", "hello", NULL);
    json_t *st;
    json_t *one = only_instance("hello", &st);
    cr_assert_str_eq(json_string_value(json_object_get(one, "version")),
                     json_string_value(json_object_get(st, "version")));
    cr_assert_str_eq(json_string_value(json_object_get(one, "digest")),
                     json_string_value(json_object_get(st, "digest")));
    cr_assert(json_is_true(json_object_get(one, "serving")));
    cr_assert_str_eq(json_string_value(json_object_get(one, "state")), "running");
    cr_assert_eq(int_field(one, "pid"), harness_worker_pid(&h, "hello"));
    cr_assert_gt(json_number_value(json_object_get(one, "started_at")), 0);
    json_int_t calls = int_field(one, "calls"), errors = int_field(one, "call_errors");
    json_decref(st);

    for (int i = 0; i < 3; i++)
        cr_assert_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_OK);
    cr_assert_neq(harness_call(&h, "hello", "no_such_method", "[]", 0, NULL), PLUGD_OK);
    one = only_instance("hello", &st);
    cr_assert_eq(int_field(one, "calls"), calls + 4, "every routed call is counted");
    cr_assert_eq(int_field(one, "call_errors"), errors + 1, "the failed one as an error");
    cr_assert_eq(int_field(one, "calls"), int_field(st, "calls"),
                 "the top-level figures are the serving instance's");
    json_decref(st);
}

Test(lifecycle, stats_reports_each_instance_with_its_own_figures)
{
    start_empty();
    install_ready("hello", "hello", NULL);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_OK);
    json_t *arg = json_pack("{s:s}", "plugin", "hello"), *list = NULL;
    cr_assert_eq(harness_command(&h, "stats", arg, &list, NULL, 0), PLUGD_OK);
    json_decref(arg);
    json_t *stats = json_array_get(list, 0);
    json_t *instances = json_object_get(stats, "instances");
    cr_assert(json_is_array(instances), "stats has no instances array");
    cr_assert_eq(json_array_size(instances), 1);
    json_t *one = json_array_get(instances, 0);
    cr_expect_str_eq(json_string_value(json_object_get(one, "version")), "1.0.0");
    cr_expect(json_is_true(json_object_get(one, "serving")));
    cr_expect_eq(int_field(one, "pid"), harness_worker_pid(&h, "hello"));
    cr_expect_geq(int_field(one, "calls"), 3, "the instance's calls are counted");
    cr_expect_eq(int_field(one, "calls"), int_field(stats, "calls"),
                 "the top-level figures are the serving instance's");
    cr_expect_gt(json_number_value(json_object_get(one, "latency_p99_ms")), 0);
    json_decref(list);
}

Test(lifecycle, an_upgrade_leaves_one_instance_of_the_new_version)
{
    size_t from;
    pid_t old = upgrade_counter(&from);
    cr_assert_geq(harness_wait_event(&h, "plugin.worker_started", "counter", from, 10.0), 0);
    cr_assert(harness_wait_state(&h, "counter", "running", -1, 10.0));
    cr_assert(harness_pid_dead(old));
    cr_assert_eq(harness_call(&h, "counter", "increment", "[]", 0, NULL), PLUGD_OK);
    json_t *st;
    json_t *one = NULL;
    wait_one_instance("counter");
    one = only_instance("counter", &st);
    cr_assert_str_eq(json_string_value(json_object_get(one, "version")), "1.1.0");
    cr_assert_eq(int_field(one, "pid"), harness_worker_pid(&h, "counter"));
    cr_assert_neq(int_field(one, "pid"), old);
    cr_assert(json_is_true(json_object_get(one, "serving")));
    cr_assert_eq(int_field(one, "calls"), 1, "a new instance counts its own calls");
    json_decref(st);
}

Test(lifecycle, an_approved_upgrade_leaves_one_instance_of_the_new_version)
{
    start_pending_upgrade();
    json_t *st;
    json_t *one = only_instance("hello", &st);
    cr_assert_str_eq(json_string_value(json_object_get(one, "version")), "1.0.0",
                     "while the upgrade waits, the old version's instance is the one");
    json_decref(st);
    harness_expect_op(&h, "approve", "hello", PLUGD_OK);
    expect_status("hello", "ready");
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0));
    wait_one_instance("hello");
    one = only_instance("hello", &st);
    cr_assert_str_eq(json_string_value(json_object_get(one, "version")), "1.1.0");
    cr_assert_eq(int_field(one, "pid"), harness_worker_pid(&h, "hello"));
    json_decref(st);
}
