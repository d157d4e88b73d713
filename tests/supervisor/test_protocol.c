/* The wire protocol with peers that are not on plugd's SDK: error objects
 * of every shape, codes only plugd may give, integers past int64, a hello
 * that comes too late, notifications plugd cannot serve. Workers in
 * tests/fixtures (foreign, latehello) speak python3-msgpack. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugd_harness.h"

HARNESS_TEST_SUITE(protocol, 120);

static void start_foreign(void)
{
    harness_add_plugin(&h, "foreign", "foreign", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "foreign", "running", -1, 30), "foreign never ran");
}

/* call foreign METHOD PARAMS over the host channel: its error code, the
 * message into `message`. */
static enum plugd_errc call_foreign(const char *method, const char *params_json, char *message,
                                    size_t size)
{
    json_t *arg = json_pack("{s:s, s:s, s:o}", "plugin", "foreign", "method", method, "params",
                            json_loads(params_json, 0, NULL));
    enum plugd_errc code = harness_command(&h, "call", arg, NULL, message, size);
    json_decref(arg);
    return code;
}

Test(protocol, error_objects_that_are_not_a_str_or_map_keep_their_content)
{
    start_foreign();
    char message[PLUGD_ERROR_MESSAGE_MAX];
    cr_assert_eq(call_foreign("array_error", "[]", message, sizeof(message)), PLUGD_E_WORKER_ERROR);
    cr_assert_str_eq(message, "[0, \"Vim:E492: Not an editor command: foo\"]");
    cr_assert_eq(call_foreign("int_error", "[]", message, sizeof(message)), PLUGD_E_WORKER_ERROR);
    cr_assert_str_eq(message, "42");
}

Test(protocol, a_worker_cannot_forge_plugds_own_codes)
{
    start_foreign();
    char message[PLUGD_ERROR_MESSAGE_MAX];
    cr_assert_eq(call_foreign("forged", "[\"timeout\"]", message, sizeof(message)),
                 PLUGD_E_WORKER_ERROR, "a worker's \"timeout\" passed for plugd's deadline");
    cr_assert_str_eq(message, "the worker answered timeout: forged by the worker");
    cr_assert_eq(call_foreign("forged", "[\"connection_closed\"]", message, sizeof(message)),
                 PLUGD_E_WORKER_ERROR, "a running worker passed for one that stopped: %s", message);
    cr_assert_eq(call_foreign("forged", "[\"worker_unavailable\"]", message, sizeof(message)),
                 PLUGD_E_WORKER_ERROR);
    /* the codes a worker may give (docs/protocol.md) stay */
    cr_assert_eq(call_foreign("forged", "[\"invalid_request\"]", message, sizeof(message)),
                 PLUGD_E_INVALID_REQUEST);
    cr_assert_str_eq(message, "forged by the worker");
    cr_assert_eq(call_foreign("forged", "[\"method_not_found\"]", message, sizeof(message)),
                 PLUGD_E_METHOD_NOT_FOUND);
}

Test(protocol, a_forged_timeout_answering_initialize_is_a_refusal_not_a_restart)
{
    harness_add_plugin(&h, "foreign", "foreign",
                       "{\"config\": {\"refuse_initialize_with\": \"timeout\"}}");
    harness_start(&h);
    cr_assert(harness_wait_status(&h, "foreign", "error", 20.0));
    json_t *st = harness_status(&h, "foreign");
    cr_assert_eq(json_integer_value(json_object_get(st, "restarts")), 0,
                 "a worker that refused initialize was restarted");
    const char *why = json_string_value(json_object_get(st, "last_error"));
    cr_assert(why && strstr(why, "plugd.initialize refused"), "last_error: %s", why);
    json_decref(st);
}

Test(protocol, integers_past_int64_stay_exact_on_the_control_socket)
{
    start_foreign();
    char out[4096], err[4096];
    cr_assert_eq(harness_plugctl(&h, (const char *[]){"call", "foreign", "big", NULL}, out,
                                 sizeof(out), err, sizeof(err)),
                 0, "%s", err);
    cr_assert_str_eq(out, "\"18446744073709551615\"\n");
}

Test(protocol, a_hello_while_plugd_stops_the_worker_is_told_so)
{
    harness_add_plugin(&h, "latehello", "late", NULL);
    harness_start(&h);
    /* its SIGTERM handler is in place: plugd will SIGTERM it, not SIGKILL */
    cr_assert(harness_wait_log(&h, "latehello: waiting for SIGTERM", 1, 30));
    json_t *st = harness_status(&h, "late");
    cr_assert_str_eq(json_string_value(json_object_get(st, "state")), "starting");
    json_decref(st);
    char message[PLUGD_ERROR_MESSAGE_MAX];
    cr_assert_eq(harness_op(&h, "uninstall", "late", message, sizeof(message)), PLUGD_OK, "%s",
                 message);
    cr_assert(harness_wait_log(&h, "latehello: plugd answered", 1, 30), "no answer to the hello");
    /* (the line is in plugd's log twice once the worker's exit quotes its last output) */
    cr_assert_geq(harness_log_count(&h, "latehello: plugd answered worker_unavailable: "
                                        "plugd.hello: plugd is stopping this worker"),
                  1, "the worker was not told that plugd is stopping it");
    cr_assert(harness_wait_state(&h, "late", "stopped", -1, 30));
}

static json_int_t dropped_notifications(const char *cmd)
{
    json_t *arg = json_pack("{s:s}", "plugin", "foreign");
    json_t *list = NULL;
    cr_assert_eq(harness_command(&h, cmd, arg, &list, NULL, 0), PLUGD_OK);
    json_decref(arg);
    json_int_t n =
        json_integer_value(json_object_get(json_array_get(list, 0), "dropped_notifications"));
    json_decref(list);
    return n;
}

Test(protocol, notifications_plugd_cannot_serve_are_counted_and_logged)
{
    start_foreign();
    /* unknown, then one its capabilities do not grant */
    cr_assert_eq(harness_call(&h, "foreign", "notify", "[\"no.such.service\"]", 0, NULL), PLUGD_OK);
    cr_assert_eq(dropped_notifications("status"), 1);
    cr_assert_eq(harness_log_count(&h, "dropped a notification from the worker: method_not_found: "
                                       "plugd has no host service \\\"no.such.service\\\""),
                 1);
    cr_assert_eq(harness_call(&h, "foreign", "notify", "[\"events.emit\"]", 0, NULL), PLUGD_OK);
    cr_assert_eq(dropped_notifications("stats"), 2);
    cr_assert_eq(harness_log_count(&h, "capability_denied: events.emit needs the capability"), 1);
    /* a flood: every one counted, the first ones logged, not all */
    for (int i = 0; i < 40; i++)
        cr_assert_eq(harness_call(&h, "foreign", "notify", "[\"spam\"]", 0, NULL), PLUGD_OK);
    cr_assert_eq(dropped_notifications("status"), 42);
    int logged = harness_log_count(&h, "dropped a notification from the worker");
    cr_assert(logged >= 5 && logged < 42, "%d of 42 logged", logged);
    cr_assert_eq(harness_log_count(&h, "more not logged)"), logged);

    /* the host's notifications too: plugd serves none */
    cr_assert_eq(ipc_conn_notify(h.host, "frobnicate", NULL, NULL), 0);
    cr_assert(harness_wait_log(&h, "dropped a notification from the host", 1, 10));
}

/* docs/protocol.md's table of error codes is ipc/include/plugd/error.h's
 * list: every code once, no other. */
Test(protocol, docs_protocol_md_lists_exactly_the_error_codes)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/docs/protocol.md", getenv("PLUGD_SOURCE_ROOT"));
    FILE *f = fopen(path, "re");
    cr_assert_not_null(f, "cannot open %s", path);
    bool is_listed[PLUGD_ERRC_COUNT] = {false};
    bool is_in_table = false;
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "## ", 3) == 0)
            is_in_table = strcmp(line, "## Error codes\n") == 0;
        if (!is_in_table || strncmp(line, "| `", 3) != 0)
            continue;
        const char *name = line + 3, *end = strchr(name, '`');
        enum plugd_errc code;
        cr_assert(end && plugd_errc_from_name(name, (size_t)(end - name), &code) == 0,
                  "docs/protocol.md lists %.*s, which error.h lacks", (int)(end - name), name);
        cr_expect(!is_listed[code], "docs/protocol.md lists %s twice", plugd_errc_name(code));
        is_listed[code] = true;
    }
    fclose(f);
    for (int c = PLUGD_OK + 1; c < PLUGD_ERRC_COUNT; c++)
        cr_expect(is_listed[c], "docs/protocol.md does not list %s",
                  plugd_errc_name((enum plugd_errc)c));
}
