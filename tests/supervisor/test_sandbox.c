/* The worker sandbox, layer by layer, on real workers: what the kernel shows
 * of a running worker (/proc) must match what plugd reports in status. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugd_harness.h"

#if defined(__SANITIZE_ADDRESS__)
#define IS_SANITIZER_BUILD 1
#else
#define IS_SANITIZER_BUILD 0
#endif

static struct harness h;

static void setup(void)
{
    harness_init(&h);
}

static void teardown(void)
{
    harness_stop_and_check(&h);
    harness_fini(&h);
}

TestSuite(sandbox, .init = setup, .fini = teardown, .timeout = 120);

/* The line of /proc/PID/FILE that starts with `key`, into out. */
static bool proc_line(pid_t pid, const char *file, const char *key, char *out, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    char line[256];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, key, strlen(key)) == 0)
            found = snprintf(out, size, "%s", line + strlen(key)) >= 0;
    fclose(f);
    return found;
}

/* The soft limit in /proc/PID/limits of `name` ("Max open files"). */
static long long soft_limit(pid_t pid, const char *name)
{
    char rest[256];
    cr_assert(proc_line(pid, "limits", name, rest, sizeof(rest)), "%s", name);
    return strncmp(rest + strspn(rest, " "), "unlimited", 9) == 0 ? -1 : atoll(rest);
}

static unsigned long long status_hex(pid_t pid, const char *key)
{
    char rest[256];
    cr_assert(proc_line(pid, "status", key, rest, sizeof(rest)), "%s", key);
    return strtoull(rest, NULL, 16);
}

static bool has_layer(json_t *sandbox, const char *layer)
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

static void expect_confined(const char *plugin, int memory_mb, int nofile, int nproc)
{
    cr_assert(harness_wait_state(&h, plugin, "running", -1, 15.0), "%s never ran", plugin);
    json_t *st = harness_status(&h, plugin);
    pid_t pid = (pid_t)json_integer_value(json_object_get(st, "pid"));
    json_t *sandbox = json_object_get(st, "sandbox");
    char *text = json_dumps(sandbox, JSON_COMPACT);

    cr_assert(has_layer(sandbox, "rlimits"), "%s", text);
    cr_expect_eq(soft_limit(pid, "Max open files"), nofile);
    cr_expect_eq(soft_limit(pid, "Max processes"), nproc);
    cr_expect_eq(soft_limit(pid, "Max core file size"), 0, "no core dumps");
    cr_expect_eq(soft_limit(pid, "Max file size"), 1LL << 30);
    if (!IS_SANITIZER_BUILD)
        cr_expect_eq(soft_limit(pid, "Max address space"), (long long)memory_mb << 20);

    cr_assert(has_layer(sandbox, "no_new_privs"), "%s", text);
    cr_expect_eq(status_hex(pid, "NoNewPrivs:"), 1);

    cr_assert(has_layer(sandbox, "fds"), "%s", text);
    cr_expect_eq(harness_extra_fds(pid, 3), 0, "nothing inherited beyond the channel");

    if (geteuid() == 0) { /* only root holds capabilities to drop */
        cr_assert(has_layer(sandbox, "capabilities"), "%s", text);
        cr_expect_eq(status_hex(pid, "CapEff:"), 0);
        cr_expect_eq(status_hex(pid, "CapPrm:"), 0);
        cr_expect_eq(status_hex(pid, "CapBnd:"), 0, "the bounding set is empty");
    }
    free(text);
    json_decref(st);
}

Test(sandbox, a_worker_runs_confined_by_its_manifest_limits_and_status_says_so)
{
    harness_add_plugin(&h, "hello", "hello",
                       "{\"limits\": {\"memory_mb\": 128, \"nofile\": 100, \"nproc\": 32}}");
    harness_start(&h);
    expect_confined("hello", 128, 100, 32);
    cr_assert_eq(harness_call(&h, "hello", "echo", "[\"still works\"]", 0, NULL), PLUGD_OK);
}

Test(sandbox, defaults_confine_every_worker_also_one_in_python)
{
    harness_add_plugin(&h, "crashy", "crashy", NULL);
    harness_add_plugin(&h, "python-worker", "python-worker", NULL);
    harness_start(&h);
    expect_confined("crashy", 256, 256, 64);
    expect_confined("python-worker", 256, 256, 64);
    cr_assert_eq(harness_call(&h, "python-worker", "echo", "[1]", 0, NULL), PLUGD_OK);
}

Test(sandbox, doctor_lists_the_layers)
{
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 15.0));
    json_t *arg = json_pack("{s:s}", "plugin", "hello"), *doctor = NULL;
    cr_assert_eq(harness_command(&h, "doctor", arg, &doctor, NULL, 0), PLUGD_OK);
    cr_assert(has_layer(json_object_get(doctor, "sandbox"), "no_new_privs"));
    json_decref(arg);
    json_decref(doctor);
}
