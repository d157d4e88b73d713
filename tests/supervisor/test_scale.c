/* Many plugins at once: every plugin of a full plugins folder starts
 * sandboxed at once, and all come back when plugd starts again on the same
 * state, after a kill -9 and after a graceful stop. Speed is bench_scale's. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugd_harness.h"

/* Well above the 257 that the kernel let through when each child passed
 * its seccomp notification fd with SCM_RIGHTS (ETOOMANYREFS). */
#define N_PLUGINS 320

HARNESS_TEST_SUITE(scale, 600);

static void add_copies(int n)
{
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "hello%03d", i);
        /* what is tested is that every one starts, not how fast: under ASan
         * on 2 cores a worker may need more than the 5 s handshake default */
        harness_add_plugin(&h, "hello", name,
                           "{\"limits\": {\"health_interval_ms\": 30000, "
                           "\"handshake_timeout_ms\": 300000, \"init_timeout_ms\": 300000}}");
    }
}

static void expect_all_running(const char *when)
{
    int running = harness_wait_count_state(&h, "running", N_PLUGINS, 240.0);
    cr_assert_eq(running, N_PLUGINS,
                 "%s: %d of %d workers running; plugd.log has %d \"cannot start\"", when, running,
                 N_PLUGINS, harness_log_count(&h, "cannot start"));
    json_t *st = harness_status(&h, "hello123");
    json_t *active = json_object_get(json_object_get(st, "sandbox"), "active");
    char *text = json_dumps(active, JSON_COMPACT);
    cr_expect(text != NULL && strstr(text, "seccomp") != NULL, "sandboxed: %s", text);
    free(text);
    json_decref(st);
    json_t *result = NULL;
    cr_expect_eq(harness_call(&h, "hello299", "echo", "[\"hi\"]", 5000, &result), PLUGD_OK);
    json_decref(result);
}

Test(scale, every_plugin_of_a_full_folder_starts_at_once_and_again_after_a_restart)
{
    add_copies(N_PLUGINS);
    harness_start(&h);
    expect_all_running("from the plugins folder");

    harness_kill9(&h);
    harness_start(&h);
    expect_all_running("after kill -9");

    cr_assert_eq(harness_stop(&h, 120.0), 0);
    harness_start(&h);
    expect_all_running("after a graceful stop");
}

/* plugd without root: each worker in a user namespace of its own, whose
 * notification fd plugd still takes (plugd owns that namespace). */
Test(scale, every_plugin_starts_at_once_under_an_unprivileged_plugd)
{
    add_copies(N_PLUGINS);
    if (!harness_run_as_nobody(&h))
        cr_skip("needs root and a build tree that the user nobody can read");
    harness_start(&h);
    expect_all_running("plugd as nobody");
    cr_expect_eq(harness_log_count(&h, "pidfd_getfd"), 0, "plugd took every notification fd");
}
