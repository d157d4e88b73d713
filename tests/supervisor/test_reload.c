/* Developer reload through a real plugd and real workers: a rebuild of
 * the running version (a new digest) runs as a new generation, the same
 * package again is a no-op success, another version is refused naming
 * upgrade, and a rebuild that adds a capability waits for approval like an
 * upgrade does. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugd_harness.h"

HARNESS_TEST_SUITE(reload, 120);

static char *installed_path;

static void install_hello(void)
{
    harness_start(&h);
    harness_subscribe(&h, "*", -1);
    installed_path = harness_make_package(&h, "hello", "hello", "hello", NULL);
    harness_expect_op(&h, "install", installed_path, PLUGD_OK);
    cr_assert(harness_wait_status(&h, "hello", "ready", 15.0));
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0));
}

static enum plugd_errc reload(const char *path, char *message, size_t size)
{
    json_t *arg = json_pack("{s:s, s:s}", "plugin", "hello", "path", path);
    enum plugd_errc code = harness_command(&h, "reload", arg, NULL, message, size);
    json_decref(arg);
    return code;
}

static size_t generations(void)
{
    json_t *arg = json_pack("{s:s}", "plugin", "hello"), *rows = NULL;
    cr_assert_eq(harness_command(&h, "history", arg, &rows, NULL, 0), PLUGD_OK);
    json_decref(arg);
    size_t n = json_array_size(rows);
    json_decref(rows);
    return n;
}

static char *status_string(const char *key)
{
    json_t *st = harness_status(&h, "hello");
    const char *v = json_string_value(json_object_get(st, key));
    char *copy = v ? strdup(v) : NULL;
    json_decref(st);
    return copy;
}

Test(reload, a_rebuild_of_the_same_version_runs_as_a_new_generation)
{
    install_hello();
    pid_t before = harness_worker_pid(&h, "hello");
    char *old_digest = status_string("digest");
    char *rebuilt = harness_make_package(&h, "hello", "hello-rebuilt", "hello",
                                         "{\"description\": \"rebuilt\"}");
    char message[PLUGD_ERROR_MESSAGE_MAX] = "";
    size_t from = json_array_size(h.events);
    cr_assert_eq(reload(rebuilt, message, sizeof(message)), PLUGD_OK, "%s", message);
    cr_assert_geq(harness_wait_event(&h, "plugin.upgraded", "hello", from, 5.0), 0);
    cr_assert(harness_wait_status(&h, "hello", "ready", 10.0));
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0));
    pid_t after = harness_worker_pid(&h, "hello");
    cr_expect(after > 0 && after != before, "a new worker: %d, was %d", (int)after, (int)before);
    char *new_digest = status_string("digest");
    cr_expect(new_digest && strcmp(new_digest, old_digest) != 0, "the rebuilt package runs");
    cr_expect_eq(generations(), 2, "history shows the reload as generation 2");
    cr_expect_eq(harness_call(&h, "hello", "echo", "[\"hi\"]", 0, NULL), PLUGD_OK);

    const char *args[] = {"reload", "hello", rebuilt, NULL};
    char out[1024], err[1024];
    cr_expect_eq(harness_plugctl(&h, args, out, sizeof(out), err, sizeof(err)), 0,
                 "plugctl reload: %s", err);
    free(rebuilt);
    free(old_digest);
    free(new_digest);
    free(installed_path);
}

Test(reload, the_same_package_again_is_a_success_with_nothing_done)
{
    install_hello();
    pid_t before = harness_worker_pid(&h, "hello");
    size_t from = json_array_size(h.events);
    char message[PLUGD_ERROR_MESSAGE_MAX] = "";
    harness_expect_op(&h, "install", installed_path, PLUGD_OK);
    cr_assert_eq(reload(installed_path, message, sizeof(message)), PLUGD_OK, "%s", message);
    harness_expect_op(&h, "upgrade", installed_path, PLUGD_OK);
    harness_sleep(&h, 0.3);
    cr_expect_eq(generations(), 1, "no new generation");
    cr_expect_eq(harness_worker_pid(&h, "hello"), before, "the same worker runs");
    char names[1024];
    harness_event_names(&h, "hello", from, names, sizeof(names));
    cr_expect_str_empty(names, "no event: %s", names);
    free(installed_path);
}

Test(reload, another_version_is_refused_naming_upgrade)
{
    install_hello();
    char *newer = harness_make_package(&h, "hello", "hello-2", "hello", "{\"version\": \"1.1.0\"}");
    char message[PLUGD_ERROR_MESSAGE_MAX] = "";
    cr_assert_eq(reload(newer, message, sizeof(message)), PLUGD_E_INVALID_REQUEST);
    cr_expect(strstr(message, "upgrade") && strstr(message, "1.1.0") && strstr(message, "1.0.0"),
              "%s", message);
    char *rebuilt = harness_make_package(&h, "hello", "hello-rebuilt", "hello",
                                         "{\"description\": \"rebuilt\"}");
    cr_assert_eq(harness_op(&h, "upgrade", rebuilt, message, sizeof(message)),
                 PLUGD_E_INVALID_REQUEST, "upgrade takes a newer version only");
    cr_expect(strstr(message, "reload"), "%s", message);
    cr_expect_eq(generations(), 1);
    char *version = status_string("version");
    cr_expect_str_eq(version, "1.0.0");
    free(version);
    free(newer);
    free(rebuilt);
    free(installed_path);
}

Test(reload, a_rebuild_adding_a_capability_waits_for_approval)
{
    install_hello();
    char *rebuilt = harness_make_package(&h, "hello", "hello-rebuilt", "hello",
                                         "{\"capabilities\": [\"plugin.state.read\"]}");
    char message[PLUGD_ERROR_MESSAGE_MAX] = "";
    cr_assert_eq(reload(rebuilt, message, sizeof(message)), PLUGD_OK, "%s", message);
    cr_assert(harness_wait_status(&h, "hello", "upgrade_pending", 5.0));
    harness_expect_op(&h, "approve", "hello", PLUGD_OK);
    cr_assert(harness_wait_status(&h, "hello", "ready", 10.0));
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0));
    cr_expect_eq(generations(), 2);
    cr_expect_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_OK);
    free(rebuilt);
    free(installed_path);
}
