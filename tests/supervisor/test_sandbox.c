/* The worker sandbox, layer by layer, on real workers: what the kernel shows
 * of a running worker (/proc, its cgroup) must match what plugd reports in
 * status; refused layers, the workers' user, and what goes with a worker.
 * The probe's ways out are in test_probe.c. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plugd_harness.h"
#include "probe_checks.h"

HARNESS_TEST_SUITE(sandbox, 120);

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

/* The folder of `pid`'s cgroup under v1 controller `controller`, or "". */
static void cgroup_of(pid_t pid, const char *controller, char *out, size_t size)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    out[0] = '\0';
    while (fgets(line, sizeof(line), f) != NULL) {
        char *ctl = strchr(line, ':'), *where = ctl ? strchr(ctl + 1, ':') : NULL;
        if (where == NULL || strncmp(ctl + 1, controller, strlen(controller)) != 0 ||
            ctl[1 + strlen(controller)] != ':')
            continue;
        where[strcspn(where, "\n")] = '\0';
        snprintf(out, size, "/sys/fs/cgroup/%s%s", controller, where + 1);
    }
    fclose(f);
}

static long long read_number(const char *dir, const char *file)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    long long v = -1;
    cr_assert_eq(fscanf(f, "%lld", &v), 1, "%s", path);
    fclose(f);
    return v;
}

static bool same_namespace(pid_t a, pid_t b, const char *ns)
{
    char pa[64], pb[64];
    struct stat sa, sb;
    snprintf(pa, sizeof(pa), "/proc/%d/ns/%s", (int)a, ns);
    snprintf(pb, sizeof(pb), "/proc/%d/ns/%s", (int)b, ns);
    cr_assert_eq(stat(pa, &sa), 0, "%s", pa);
    cr_assert_eq(stat(pb, &sb), 0, "%s", pb);
    return sa.st_ino == sb.st_ino;
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
    cr_expect_eq(soft_limit(pid, "Max core file size"), 0, "no core dumps");
    cr_expect_eq(soft_limit(pid, "Max file size"), 1LL << 30);

    cr_assert(has_layer(sandbox, "no_new_privs"), "%s", text);
    cr_expect_eq(status_hex(pid, "NoNewPrivs:"), 1);
    cr_assert(has_layer(sandbox, "fds"), "%s", text);
    cr_expect_eq(harness_extra_fds(pid, 3), 0, "nothing inherited beyond the channel");
    cr_assert(has_layer(sandbox, "landlock"), "%s", text);
    cr_assert(has_layer(sandbox, "seccomp"), "%s", text);
    cr_expect_eq(status_hex(pid, "Seccomp:"), 2, "a seccomp filter");

    if (geteuid() == 0) { /* only root holds capabilities to drop, namespaces, cgroups */
        cr_assert(has_layer(sandbox, "capabilities"), "%s", text);
        cr_expect_eq(status_hex(pid, "CapEff:"), 0);
        cr_expect_eq(status_hex(pid, "CapPrm:"), 0);
        cr_expect_eq(status_hex(pid, "CapBnd:"), 0, "the bounding set is empty");
        cr_assert(has_layer(sandbox, "pid_namespace"), "%s", text);
        char nspid[64];
        cr_assert(proc_line(pid, "status", "NSpid:", nspid, sizeof(nspid)));
        cr_expect(strstr(nspid, "\t1\n") != NULL, "pid 1 of its namespace: NSpid %s", nspid);
        cr_assert(has_layer(sandbox, "user"), "%s", text);
        char uid[64], groups[64];
        cr_assert(proc_line(pid, "status", "Uid:", uid, sizeof(uid)));
        cr_expect_str_eq(uid, "\t65534\t65534\t65534\t65534\n", "nobody, every uid");
        cr_assert(proc_line(pid, "status", "Groups:", groups, sizeof(groups)));
        cr_expect(strspn(groups, " \t\n") == strlen(groups), "no groups: %s", groups);
        cr_assert(has_layer(sandbox, "namespaces"), "%s", text);
        cr_expect(!same_namespace(pid, getpid(), "net"), "an offline network namespace");
        cr_expect(!same_namespace(pid, getpid(), "ipc"));
        cr_expect(!same_namespace(pid, getpid(), "uts"));
        cr_assert(has_layer(sandbox, "mount_namespace"), "%s", text);
        cr_expect(!same_namespace(pid, getpid(), "mnt"), "a mount namespace of its own");
        if (is_v1_machine()) {
            cr_assert(has_layer(sandbox, "cgroup"), "%s", text);
            char dir[PATH_MAX];
            cgroup_of(pid, "memory", dir, sizeof(dir));
            cr_expect_eq(read_number(dir, "memory.limit_in_bytes"), (long long)memory_mb << 20);
            cgroup_of(pid, "pids", dir, sizeof(dir));
            cr_expect_eq(read_number(dir, "pids.max"), nproc);
            cr_expect(strstr(dir, plugin) != NULL, "%s: a cgroup of its own", dir);
        }
    }
    free(text);
    json_decref(st);
}

Test(sandbox, a_worker_runs_confined_by_its_manifest_limits_and_status_says_so)
{
    harness_add_plugin(&h, "hello", "hello",
                       "{\"limits\": {\"memory_mb\": 128, \"nofile\": 100, \"nproc\": 32, "
                       "\"cpu_seconds\": 3600}}");
    harness_start(&h);
    expect_confined("hello", 128, 100, 32);
    cr_expect_eq(soft_limit(harness_worker_pid(&h, "hello"), "Max cpu time"), 3600);
    cr_assert_eq(harness_call(&h, "hello", "echo", "[\"still works\"]", 0, NULL), PLUGD_OK);
}

Test(sandbox, defaults_confine_every_worker_also_one_in_python)
{
    harness_add_plugin(&h, "crashy", "crashy", NULL);
    harness_add_plugin(&h, "python-worker", "python-worker", NULL);
    harness_start(&h);
    expect_confined("crashy", 256, 256, 64);
    expect_confined("python-worker", 256, 256, 64);
    cr_expect_eq(soft_limit(harness_worker_pid(&h, "crashy"), "Max cpu time"), -1,
                 "CPU time is not limited by default");
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
    cr_assert(has_layer(json_object_get(doctor, "sandbox"), "seccomp"));
    json_decref(arg);
    json_decref(doctor);
}

Test(sandbox, the_cgroup_and_the_private_tmp_go_with_the_worker)
{
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 15.0));
    pid_t pid = harness_worker_pid(&h, "hello");
    char cgroup[PATH_MAX], tmp[PATH_MAX];
    cgroup_of(pid, "memory", cgroup, sizeof(cgroup));
    snprintf(tmp, sizeof(tmp), "%s/state/tmp/hello", h.dir);
    cr_assert_eq(access(tmp, F_OK), 0, "%s", tmp);
    cr_assert_eq(harness_op(&h, "disable", "hello", NULL, 0), PLUGD_OK);
    cr_assert(harness_wait_state(&h, "hello", "stopped", -1, 15.0));
    cr_expect_neq(access(tmp, F_OK), 0, "%s is removed", tmp);
    if (cgroup[0] != '\0' && strstr(cgroup, "plugd-") != NULL)
        cr_expect_neq(access(cgroup, F_OK), 0, "%s is removed", cgroup);
}

/* ------------------------------------------------------------ refused layers */

/* plugd as an unprivileged user: the namespaces come from a user namespace
 * of each worker's own; the cgroup needs root and is refused, named, logged;
 * strict then refuses the worker. */
Test(sandbox, an_unprivileged_plugd_confines_through_a_user_namespace_and_reports_the_cgroup)
{
    harness_add_plugin(&h, "probe", "probe", "{\"limits\": {\"crash_loop_restarts\": 100}}");
    if (!harness_run_as_nobody(&h)) /* no privileges: no cgroup, no shared namespaces */
        cr_skip("needs root and a build tree that the user nobody can read");
    uid_t nobody = h.run_as;
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "probe", "running", -1, 15.0));
    json_t *st = harness_status(&h, "probe");
    pid_t pid = (pid_t)json_integer_value(json_object_get(st, "pid"));
    json_t *sandbox = json_object_get(st, "sandbox"),
           *refused = json_object_get(sandbox, "refused");
    char *text = json_dumps(sandbox, JSON_COMPACT);
    const char *cgroup = json_string_value(json_object_get(refused, "cgroup"));
    cr_expect(cgroup != NULL && strstr(cgroup, "Permission denied") != NULL, "%s", text);
    cr_expect_eq(json_object_size(refused), 1, "only the cgroup: %s", text);
    const char *active[] = {"pid_namespace", "namespaces",   "mount_namespace", "user",
                            "capabilities",  "no_new_privs", "landlock",        "seccomp"};
    for (size_t i = 0; i < sizeof(active) / sizeof(active[0]); i++)
        cr_expect(has_layer(sandbox, active[i]), "%s: %s", active[i], text);
    free(text);
    json_decref(st);
    const char *own[] = {"user", "pid", "mnt", "net", "ipc", "uts"};
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        cr_expect(!same_namespace(pid, h.plugd_pid, own[i]), "a %s namespace of its own", own[i]);
    char uid[64], expected[64];
    cr_assert(proc_line(pid, "status", "Uid:", uid, sizeof(uid)));
    snprintf(expected, sizeof(expected), "\t%u\t%u\t%u\t%u\n", (unsigned)nobody, (unsigned)nobody,
             (unsigned)nobody, (unsigned)nobody);
    cr_expect_str_eq(uid, expected, "plugd's uid outside, mapped to itself");
    cr_expect_eq(status_hex(pid, "CapBnd:"), 0, "the bounding set is empty");
    cr_expect_geq(harness_log_count(&h, "sandbox layer cgroup refused"), 1);
    /* the view, landlock and seccomp hold */
    expect_refused(&h, "probe", "read", "[\"/etc/shadow\"]", "ENOENT");
    expect_refused(&h, "probe", "read", "[\"/usr/bin/sh\"]", "EACCES");
    cr_assert_null(probe(&h, "probe", "tcp_socket", "[]"));
    cr_assert_eq(harness_stop(&h, 15.0), 0);

    h.extra_args[0] = "--sandbox";
    h.extra_args[1] = "strict";
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "probe", "stopped", -1, 15.0));
    harness_sleep(&h, 0.3);
    st = harness_status(&h, "probe");
    const char *last = json_string_value(json_object_get(st, "last_error"));
    cr_expect(last != NULL && strstr(last, "strict sandbox: layer cgroup refused") != NULL,
              "last_error: %s", last);
    cr_expect(json_is_true(json_object_get(st, "failed")), "not restarted");
    json_decref(st);
}

/* ------------------------------------------------------------ lifetimes */

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

Test(sandbox, the_data_folder_survives_restarts_and_goes_with_the_data)
{
    harness_add_plugin(&h, "probe", "keeper", "{\"capabilities\": [\"fs.data\"]}");
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "keeper", "running", -1, 15.0));
    char dir[PATH_MAX], params[PATH_MAX + 16];
    snprintf(dir, sizeof(dir), "%s/state/data/keeper", h.dir);
    snprintf(params, sizeof(params), "[\"%s/kept\"]", dir);
    expect_allowed(&h, "keeper", "write", params);

    kill(harness_worker_pid(&h, "keeper"), SIGKILL);
    cr_assert(harness_wait_state(&h, "keeper", "running", 1, 15.0));
    expect_allowed(&h, "keeper", "read", params);

    cr_assert_eq(harness_op(&h, "uninstall", "keeper", NULL, 0), PLUGD_OK);
    cr_assert(exists(dir), "uninstall without remove_data keeps %s", dir);
    cr_assert_eq(harness_op(&h, "purge", "keeper", NULL, 0), PLUGD_OK);
    cr_assert(!exists(dir), "purge removes %s", dir);
}

Test(sandbox, a_killed_plugds_cgroups_are_removed_by_the_next_one)
{
    if (geteuid() != 0 || !is_v1_machine())
        cr_skip("needs root and the cgroup v1 hierarchies");
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 15.0));
    pid_t worker = harness_worker_pid(&h, "hello");
    char stale[PATH_MAX];
    snprintf(stale, sizeof(stale), "/sys/fs/cgroup/memory/plugd-%d", (int)h.plugd_pid);
    cr_assert(exists(stale), "%s", stale);
    harness_kill9(&h);
    for (int i = 0; i < 500 && !harness_pid_dead(worker); i++)
        usleep(10000);
    /* A killed plugd cannot remove its cgroup; but the other cases of this
     * file run at the same time, and any plugd that starts removes the
     * cgroups of dead ones: gone already is what is tested, seen sooner. */
    if (!exists(stale))
        return;
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 15.0));
    cr_expect(!exists(stale), "%s is removed by the next plugd", stale);
}

/* plugd with `args` stops at once: exit 2 and `message` on stderr. */
static void expect_usage_error(const char *args, const char *message)
{
    char command[PATH_MAX + 128], line[256] = "";
    snprintf(command, sizeof(command), "%s/supervisor/plugd %s 2>&1", getenv("PLUGD_BUILD_ROOT"),
             args);
    FILE *p = popen(command, "r");
    cr_assert_not_null(p);
    cr_assert_not_null(fgets(line, sizeof(line), p), "%s: no message", args);
    int status = pclose(p);
    cr_expect_str_eq(line, message);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 2, "%s: usage error: %d", args, status);
}

/* A worker stuck in a call never sees its channel close: only the
 * parent-death signal ends it when plugd is killed, also after the switch
 * to the workers' user (which clears that signal). */
Test(sandbox, a_stuck_worker_of_another_user_dies_with_a_plugd_killed_by_sigkill)
{
    harness_add_plugin(&h, "crashy", "stuck", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "stuck", "running", -1, 15.0));
    pid_t worker = harness_worker_pid(&h, "stuck");
    struct pending *hang = harness_call_async(&h, "stuck", "hang", "[]", 60000);
    harness_sleep(&h, 0.1);
    harness_kill9(&h); /* no graceful stop */
    for (int tries = 0; tries < 500 && !harness_pid_gone(worker); tries++)
        usleep(10000);
    bool is_gone = harness_pid_gone(worker);
    if (!is_gone)
        kill(worker, SIGKILL); /* leave nothing behind */
    cr_expect(is_gone, "worker %d outlived plugd", (int)worker);
    free(hang);
}

Test(sandbox, plugd_refuses_an_unknown_sandbox_mode)
{
    expect_usage_error("--sandbox loose", "plugd: --sandbox: \"loose\" is not on, strict or off\n");
}

/* One flag past the allow list's room is said, not an exit 2 without a
 * word. */
Test(sandbox, plugd_says_when_there_are_too_many_allow_uids)
{
    char args[33 * 24] = "";
    for (int i = 0; i < 33; i++)
        snprintf(args + strlen(args), sizeof(args) - strlen(args), "--allow-uid %d ", 1000 + i);
    expect_usage_error(args, "plugd: --allow-uid: at most 32\n");
}

/* ------------------------------------------------------------ pid 1, the user */

Test(sandbox, a_worker_that_is_pid_1_still_ends_at_the_sigterm_step)
{
    if (geteuid() != 0)
        cr_skip("needs root: a pid namespace");
    /* pid 1 of a namespace gets no signal it has no handler for: crashy
     * has none for SIGTERM, and the deadline after it is long */
    harness_add_plugin(&h, "crashy", "crashy",
                       "{\"limits\": {\"shutdown_drain_ms\": 300, \"shutdown_term_ms\": 60000}}");
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "crashy", "running", -1, 15.0));
    pid_t pid = harness_worker_pid(&h, "crashy");
    harness_call(&h, "crashy", "hang", "[]", 100, NULL); /* plugd.shutdown goes unanswered */
    cr_assert_eq(harness_op(&h, "disable", "crashy", NULL, 0), PLUGD_OK);
    cr_assert(harness_wait_state(&h, "crashy", "stopped", -1, 10.0), "SIGTERM was lost on pid 1");
    cr_expect(harness_pid_gone(pid));
    cr_expect_geq(harness_log_count(&h, "of plugd.shutdown: SIGTERM"), 1);
    cr_expect_eq(harness_log_count(&h, "of SIGTERM: SIGKILL"), 0, "not the 60 s deadline");
}

static void expect_owner(const char *path, uid_t uid, gid_t gid, mode_t mode)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    cr_expect(st.st_uid == uid && st.st_gid == gid, "%s: owner %u:%u", path, (unsigned)st.st_uid,
              (unsigned)st.st_gid);
    cr_expect_eq(st.st_mode & 07777, mode, "%s: mode %o", path, (unsigned)(st.st_mode & 07777));
}

Test(sandbox, workers_run_as_the_configured_user_which_owns_only_their_folders)
{
    if (geteuid() != 0)
        cr_skip("needs root: plugd switches users");
    harness_add_plugin(&h, "probe", "keeper", "{\"capabilities\": [\"fs.data\"]}");
    h.extra_args[0] = "--worker-user";
    h.extra_args[1] = "4321:4322";
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "keeper", "running", -1, 15.0));
    pid_t pid = harness_worker_pid(&h, "keeper");
    char ids[64];
    cr_assert(proc_line(pid, "status", "Uid:", ids, sizeof(ids)));
    cr_expect_str_eq(ids, "\t4321\t4321\t4321\t4321\n");
    cr_assert(proc_line(pid, "status", "Gid:", ids, sizeof(ids)));
    cr_expect_str_eq(ids, "\t4322\t4322\t4322\t4322\n");

    char path[PATH_MAX], params[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/state/tmp/keeper", h.dir);
    expect_owner(path, 4321, 4322, 0700);
    snprintf(path, sizeof(path), "%s/state/data/keeper", h.dir);
    expect_owner(path, 4321, 4322, 0700);
    snprintf(params, sizeof(params), "[\"%s/kept\"]", path);
    expect_allowed(&h, "keeper", "write", params);
    snprintf(path, sizeof(path), "%s/state/data/keeper/kept", h.dir);
    expect_owner(path, 4321, 4322, 0600); /* plugd's umask: the worker's files are its own */
    snprintf(path, sizeof(path), "%s/state/plugd.db", h.dir);
    expect_owner(path, 0, 0, 0600);
    snprintf(path, sizeof(path), "%s/state", h.dir);
    expect_owner(path, 0, 0, 0711);
}

Test(sandbox, a_state_the_worker_user_cannot_reach_keeps_plugds_uid_and_says_why)
{
    if (geteuid() != 0)
        cr_skip("needs root: plugd switches users");
    cr_assert_eq(chmod(h.dir, 0700), 0); /* nobody cannot pass h.dir */
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 15.0));
    json_t *st = harness_status(&h, "hello");
    json_t *sandbox = json_object_get(st, "sandbox");
    const char *why =
        json_string_value(json_object_get(json_object_get(sandbox, "refused"), "user"));
    char expected[PATH_MAX];
    snprintf(expected, sizeof(expected), "uid 65534 cannot reach the state: %s is 700", h.dir);
    cr_expect(why != NULL && strstr(why, "cannot reach the state") != NULL &&
                  strstr(expected, why + strlen("uid 65534 cannot reach the state: ")) != NULL,
              "refused user: %s", why);
    cr_expect(has_layer(sandbox, "capabilities") && has_layer(sandbox, "seccomp"));
    json_decref(st);
    cr_expect_geq(harness_log_count(&h, "workers keep plugd's uid: uid 65534 cannot reach"), 1);
    cr_assert_eq(harness_call(&h, "hello", "echo", "[1]", 0, NULL), PLUGD_OK);
}

Test(sandbox, plugd_refuses_a_worker_user_that_is_root_or_unknown)
{
    expect_usage_error(
        "--worker-user root",
        "plugd: --worker-user: \"root\" is root: workers need an unprivileged user\n");
    expect_usage_error(
        "--worker-user 0:100",
        "plugd: --worker-user: \"0:100\" is root: workers need an unprivileged user\n");
    expect_usage_error("--worker-user no-such-user",
                       "plugd: --worker-user: no user \"no-such-user\"\n");
    expect_usage_error("--worker-user nobody:no-such-group",
                       "plugd: --worker-user: no group \"no-such-group\"\n");
}

/* ------------------------------------------------------------ failed starts */

/* An exec that fails for a passing reason (ETXTBSY: the entrypoint is open
 * for writing) is retried with backoff until it works. */
Test(sandbox, a_start_that_fails_for_a_passing_reason_is_retried_until_it_runs)
{
    harness_add_plugin(&h, "hello", "hello", "{\"limits\": {\"crash_loop_restarts\": 1000}}");
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 15.0));
    cr_assert_eq(harness_stop(&h, 15.0), 0);
    char pattern[PATH_MAX];
    snprintf(pattern, sizeof(pattern), "%s/state/packages/hello/*/hello", h.dir);
    glob_t g;
    cr_assert_eq(glob(pattern, 0, NULL, &g), 0, "%s", pattern);
    int busy = open(g.gl_pathv[0], O_WRONLY | O_CLOEXEC);
    cr_assert_geq(busy, 0, "%s", g.gl_pathv[0]);
    globfree(&g);

    harness_start(&h);
    for (int i = 0; i < 500 && harness_log_count(&h, "Text file busy") == 0; i++)
        harness_sleep(&h, 0.02);
    cr_assert_geq(harness_log_count(&h, "Text file busy"), 1, "the exec failed with ETXTBSY");
    close(busy);
    cr_assert(harness_wait_state(&h, "hello", "running", 1, 60.0), "restarted once it could run");
    char status[32];
    harness_lifecycle(&h, "hello", status, sizeof(status));
    cr_expect_str_eq(status, "ready");
}

/* What waiting cannot change fails at once: no restart. */
Test(sandbox, an_interpreter_that_does_not_exist_fails_the_start_at_once)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    snprintf(dir, sizeof(dir), "%s/plugins/nointerp", h.dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/plugin.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"name\": \"nointerp\", \"version\": \"1.0.0\", \"entrypoint\": \"run\", "
          "\"protocol\": 1}",
          f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/run", dir);
    f = fopen(path, "w");
    fputs("#!/no/such/interpreter\n", f);
    fclose(f);
    cr_assert_eq(chmod(path, 0755), 0);
    harness_start(&h);
    cr_assert(harness_wait_status(&h, "nointerp", "error", 15.0));
    json_t *st = harness_status(&h, "nointerp");
    const char *last = json_string_value(json_object_get(st, "last_error"));
    cr_expect(last != NULL && strstr(last, "No such file or directory") != NULL, "%s", last);
    cr_expect_eq(json_integer_value(json_object_get(st, "restarts")), 0);
    json_decref(st);
}

/* Without a cgroup, the workers' process limit must not count the other
 * workers of the shared user: RLIMIT_NPROC would (every process of uid
 * nobody), and exec failed with EAGAIN past `nproc` workers. */
Test(sandbox, without_a_cgroup_the_process_limit_does_not_count_the_other_workers)
{
    if (geteuid() != 0)
        cr_skip("needs root (workers of a shared user)");
    /* plugd sees no cgroup hierarchy: an empty tmpfs over it, in this
     * test's own mount namespace */
    cr_assert_eq(unshare(CLONE_NEWNS), 0);
    cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
    cr_assert_eq(mount("none", "/sys/fs/cgroup", "tmpfs", 0, NULL), 0);
    enum { N = 8 };
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof(name), "hello%d", i);
        harness_add_plugin(&h, "hello", name, "{\"limits\": {\"nproc\": 3}}");
    }
    harness_start(&h);
    cr_assert_eq(harness_wait_count_state(&h, "running", N, 30.0), N,
                 "every worker runs; \"cannot start\" in the log %d times",
                 harness_log_count(&h, "cannot start"));
    json_t *st = harness_status(&h, "hello7");
    const char *cgroup = json_string_value(
        json_object_get(json_object_get(json_object_get(st, "sandbox"), "refused"), "cgroup"));
    cr_expect_not_null(cgroup, "no cgroup");
    json_decref(st);
}

/* ------------------------------------------------------------ environment */

static int strcmp_ptr(const char **a, const char **b)
{
    return strcmp(*a, *b);
}

/* The names in /proc/PID/environ, sorted and joined by spaces; the value
 * of `name` into value. */
static void environ_of(pid_t pid, char *names, size_t size, const char *name, char *value,
                       size_t vsize)
{
    char path[64], buf[8192];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *list[64];
    size_t count = 0;
    value[0] = '\0';
    for (size_t at = 0; at < n && count < 64; at += strlen(buf + at) + 1) {
        list[count++] = buf + at;
        if (strncmp(buf + at, name, strlen(name)) == 0 && buf[at + strlen(name)] == '=')
            snprintf(value, vsize, "%s", buf + at + strlen(name) + 1);
    }
    qsort(list, count, sizeof(list[0]), (int (*)(const void *, const void *))strcmp_ptr);
    names[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        size_t len = strcspn(list[i], "=");
        snprintf(names + strlen(names), size - strlen(names), "%s%.*s", i ? " " : "", (int)len,
                 list[i]);
    }
}

/* A worker sees only its documented environment: nothing else of plugd's
 * (a token, HOME, proxies), plus what its manifest asks for and the
 * operator allowed (--pass-env). */
Test(sandbox, a_worker_gets_a_fixed_environment_and_only_the_variables_it_was_allowed)
{
    setenv("SECRET_TOKEN", "s3cret", 1);
    setenv("GREETING", "from the operator", 1);
    setenv("NOT_ALLOWED", "asked, not allowed", 1);
    setenv("LANG", "C.UTF-8", 1);
    setenv("TZ", "UTC", 1);
    unsetenv("LC_ALL");
    harness_add_plugin(&h, "hello", "hello", "{\"env\": [\"GREETING\", \"NOT_ALLOWED\"]}");
    h.extra_args[0] = "--pass-env";
    h.extra_args[1] = "GREETING";
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 15.0));
    char names[1024], value[256];
    environ_of(harness_worker_pid(&h, "hello"), names, sizeof(names), "GREETING", value,
               sizeof(value));
    cr_expect_str_eq(names, "GREETING HOME LANG PATH PLUGD_FD PLUGD_PLUGIN TMPDIR TZ");
    cr_expect_str_eq(value, "from the operator");
    environ_of(harness_worker_pid(&h, "hello"), names, sizeof(names), "PATH", value, sizeof(value));
    cr_expect_str_eq(value, "/usr/local/bin:/usr/bin:/bin");
    environ_of(harness_worker_pid(&h, "hello"), names, sizeof(names), "HOME", value, sizeof(value));
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/state/tmp/hello", h.dir);
    cr_expect_str_eq(value, tmp, "HOME is its tmp folder");
    cr_expect_eq(harness_log_count(&h, "NOT_ALLOWED is not passed"), 1, "logged once");
}
