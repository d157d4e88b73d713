#include "probe_checks.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool has_layer(json_t *sandbox, const char *layer)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(sandbox, "active"), i, v)
    {
        if (strcmp(json_string_value(v), layer) == 0)
            return true;
    }
    return false;
}

bool is_v1_machine(void)
{
    return access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK) == 0;
}

/* Calls the probe; its answer map (the caller frees), NULL when the call
 * failed (the worker was killed). */
json_t *probe(struct harness *h, const char *plugin, const char *method, const char *params)
{
    json_t *result = NULL;
    enum plugd_errc rc = harness_call(h, plugin, method, params, 10000, &result);
    return rc == PLUGD_OK ? result : NULL;
}

/* The probe answers that `method` failed with errno `error`. */
void expect_refused(struct harness *h, const char *plugin, const char *method, const char *params,
                    const char *error)
{
    json_t *r = probe(h, plugin, method, params);
    cr_assert_not_null(r, "%s %s: the probe died", method, params);
    cr_expect(json_is_false(json_object_get(r, "ok")), "%s %s was allowed", method, params);
    const char *got = json_string_value(json_object_get(r, "error"));
    cr_expect(got != NULL && strcmp(got, error) == 0, "%s %s: %s, not %s", method, params, got,
              error);
    json_decref(r);
}

void expect_allowed(struct harness *h, const char *plugin, const char *method, const char *params)
{
    json_t *r = probe(h, plugin, method, params);
    cr_assert_not_null(r, "%s %s: the probe died", method, params);
    char *text = json_dumps(r, JSON_COMPACT);
    cr_expect(json_is_true(json_object_get(r, "ok")), "%s %s: %s", method, params, text);
    free(text);
    json_decref(r);
}

/* The call kills the probe; plugd names `syscall` in an event and in
 * status, and restarts it. */
void expect_violation(struct harness *h, const char *plugin, const char *method, const char *params,
                      const char *syscall)
{
    cr_assert(harness_wait_state(h, plugin, "running", -1, 15.0));
    size_t from = h->events ? json_array_size(h->events) : 0;
    json_t *r = probe(h, plugin, method, params);
    cr_assert_null(r, "%s %s was answered", method, params);
    int i = harness_wait_event(h, "plugin.sandbox_violation", plugin, from, 10.0);
    cr_assert_geq(i, 0, "no sandbox_violation event for %s", method);
    json_t *payload = json_object_get(json_array_get(h->events, (size_t)i), "payload");
    cr_expect_str_eq(json_string_value(json_object_get(payload, "syscall")), syscall);
    cr_expect_str_eq(json_string_value(json_object_get(payload, "action")), "kill");
    cr_assert(harness_wait_state(h, plugin, "running", -1, 15.0));
    json_t *st = harness_status(h, plugin);
    char expected[128];
    snprintf(expected, sizeof(expected), "sandbox_violation: system call %s ", syscall);
    const char *last = json_string_value(json_object_get(st, "last_error"));
    cr_expect(last != NULL && strstr(last, expected) != NULL, "last_error: %s", last);
    json_t *sandbox = json_object_get(st, "sandbox");
    cr_expect_str_eq(json_string_value(json_object_get(sandbox, "last_violation")), syscall);
    json_decref(st);
}
