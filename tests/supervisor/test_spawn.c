/* supervisor/spawn.c with a real plugd: a child step that fails is named
 * in what plugd reports, so a failed chdir does not read as a bad
 * entrypoint (issue 13, item 3). */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "plugd_harness.h"

HARNESS_TEST_SUITE(spawn, 60);

/* Starts crashy, then takes `what` away from its installed package (""
 * the package folder itself, else a file in it) and makes it crash: the
 * restart's child fails. Returns its status then (the caller frees it). */
static json_t *restart_without(const char *what, char *package, size_t size)
{
    harness_add_plugin(&h, "crashy", "crashy", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "crashy", "running", -1, 15.0));
    json_t *arg = json_pack("{s:s}", "plugin", "crashy"), *doctor = NULL;
    cr_assert_eq(harness_command(&h, "doctor", arg, &doctor, NULL, 0), PLUGD_OK);
    json_decref(arg);
    snprintf(package, size, "%s", json_string_value(json_object_get(doctor, "package")) ?: "");
    json_decref(doctor);
    cr_assert_neq(package[0], '\0', "doctor names the installed package folder");
    char from[PATH_MAX], to[PATH_MAX + 8];
    snprintf(from, sizeof(from), "%s%s%s", package, what[0] ? "/" : "", what);
    snprintf(to, sizeof(to), "%s.gone", from);
    cr_assert_eq(rename(from, to), 0, "cannot move %s away", from);
    harness_call(&h, "crashy", "exit", "[{\"code\": 1}]", 0, NULL);
    cr_assert(harness_wait_state(&h, "crashy", "stopped", 1, 15.0));
    json_t *st = harness_status(&h, "crashy");
    cr_assert(json_is_true(json_object_get(st, "failed")), "a start that can never work");
    return st;
}

/* last_error of `st` names the failed step `want` and not `other`. */
static void expect_named_step(json_t *st, const char *want, const char *other)
{
    const char *last = json_string_value(json_object_get(st, "last_error")) ?: "";
    cr_expect(strstr(last, want) != NULL, "last_error: %s (want %s)", last, want);
    cr_expect(strstr(last, other) == NULL, "read as another step (%s): %s", other, last);
}

Test(spawn, a_package_folder_that_is_gone_fails_the_start_naming_the_chdir)
{
    char package[PATH_MAX], want[PATH_MAX + 64];
    json_t *st = restart_without("", package, sizeof(package));
    snprintf(want, sizeof(want), "cannot chdir to %s: No such file or directory", package);
    expect_named_step(st, want, "cannot start"); /* not read as a bad entrypoint */
    cr_expect_eq(json_integer_value(json_object_get(st, "restarts")), 1, "no retry of ENOENT");
    json_decref(st);
    cr_expect_geq(harness_log_count(&h, "cannot chdir to"), 1);
}

Test(spawn, an_entrypoint_that_is_gone_fails_the_start_naming_the_exec)
{
    char package[PATH_MAX], want[PATH_MAX + 64];
    json_t *st = restart_without("crashy", package, sizeof(package));
    snprintf(want, sizeof(want), "cannot start %s/crashy: No such file or directory", package);
    expect_named_step(st, want, "chdir");
    json_decref(st);
}
