/* The probe plugin (examples/probe) tries every way out of its sandbox,
 * without and with the capability that opens it; the view is also read
 * from outside, through /proc/PID/root. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugd_harness.h"
#include "probe_checks.h"

HARNESS_TEST_SUITE(probe, 120);

/* Whether `plugin`'s worker runs in its mount namespace view. */
static bool has_view(const char *plugin)
{
    json_t *st = harness_status(&h, plugin);
    bool has = has_layer(json_object_get(st, "sandbox"), "mount_namespace");
    json_decref(st);
    return has;
}

/* ------------------------------------------------------------ the view */

/* PATH as the worker `pid` sees it (through /proc/PID/root) exists. */
static bool sees(pid_t pid, const char *path)
{
    char at[2 * PATH_MAX + 64];
    snprintf(at, sizeof(at), "/proc/%d/root%s", (int)pid, path);
    return access(at, F_OK) == 0;
}

static ino_t inode_of(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    return st.st_ino;
}

Test(probe, the_view_holds_the_system_libraries_and_only_the_workers_own_folders)
{
    if (geteuid() != 0)
        cr_skip("the mount namespace needs root");
    harness_add_plugin(&h, "probe", "keeper", "{\"capabilities\": [\"fs.data\"]}");
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "keeper", "running", -1, 15.0));
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 15.0));
    pid_t keeper = harness_worker_pid(&h, "keeper"), hello = harness_worker_pid(&h, "hello");
    char state[PATH_MAX + 16], path[2 * PATH_MAX];
    snprintf(state, sizeof(state), "%s/state", h.dir);

    /* what every program needs */
    cr_expect(sees(keeper, "/usr/bin/sh"));
    cr_expect(sees(keeper, "/lib64") || sees(keeper, "/lib"), "the loader's folder");
    cr_expect(sees(keeper, "/etc/ld.so.cache"));
    cr_expect(sees(keeper, "/dev/null") && sees(keeper, "/dev/urandom"));
    /* and nothing else of the machine */
    const char *absent[] = {"/etc/shadow", "/etc/passwd", "/home",    "/root", "/var",
                            "/sys",        "/run",        "/dev/shm", "/boot"};
    for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
        cr_expect(!sees(keeper, absent[i]), "%s is in the view", absent[i]);
    if (!IS_SANITIZER_BUILD) /* sanitizer runtimes read /proc */
        cr_expect(!sees(keeper, "/proc/1"));

    /* of the state: its package, tmp and data; not plugd's files, not another plugin's */
    snprintf(path, sizeof(path), "%s/packages/keeper", state);
    cr_expect(sees(keeper, path));
    snprintf(path, sizeof(path), "%s/data/keeper", state);
    cr_expect(sees(keeper, path));
    cr_expect(!sees(hello, path), "hello sees keeper's data");
    snprintf(path, sizeof(path), "%s/packages/hello", state);
    cr_expect(!sees(keeper, path), "keeper sees hello's package");
    snprintf(path, sizeof(path), "%s/plugd.db", state);
    cr_expect(!sees(keeper, path));
    snprintf(path, sizeof(path), "%s/plugd.sock", state);
    cr_expect(!sees(keeper, path));
    cr_expect(!sees(keeper, "/.plugd-state/plugd.db"), "the shared copy of the state is gone");

    /* /tmp is its private tmp folder, which it may write; / is read-only */
    snprintf(path, sizeof(path), "/proc/%d/root/tmp", (int)keeper);
    char tmp[PATH_MAX + 64];
    snprintf(tmp, sizeof(tmp), "%s/tmp/keeper", state);
    cr_expect_eq(inode_of(path), inode_of(tmp), "/tmp is %s", tmp);
    expect_allowed(&h, "keeper", "write", "[\"/tmp/made-by-keeper\"]");
    snprintf(path, sizeof(path), "%s/made-by-keeper", tmp);
    cr_expect_eq(access(path, F_OK), 0, "%s", path);
    expect_refused(&h, "keeper", "write", "[\"/made-at-the-root\"]", "EROFS");
    snprintf(path, sizeof(path), "/proc/%d/root/tmp", (int)hello);
    cr_expect_neq(inode_of(path), inode_of(tmp), "hello shares keeper's /tmp");
}

/* A TCP listener on 127.0.0.1; its port. */
static int loopback_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 8) == 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

#define MANY_RESTARTS "\"crash_loop_restarts\": 100"

Test(probe, without_capabilities_every_way_out_fails_and_is_reported)
{
    harness_add_plugin(&h, "probe", "probe", "{\"limits\": {" MANY_RESTARTS "}}");
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_start(&h);
    harness_subscribe(&h, "plugin.sandbox_violation", 0);
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 15.0));
    cr_assert(harness_wait_state(&h, "probe", "running", -1, 15.0));
    pid_t hello = harness_worker_pid(&h, "hello");
    char params[PATH_MAX + 16];

    /* files outside the view, and writes outside a data folder: absent
     * from the mount namespace, or read-only there; landlock refuses what
     * the view holds (and everything, where there is no view) */
    const char *absent = has_view("probe") ? "ENOENT" : "EACCES";
    const char *read_only = has_view("probe") ? "EROFS" : "EACCES";
    expect_refused(&h, "probe", "read", "[\"/etc/shadow\"]", absent);
    expect_refused(&h, "probe", "read", "[\"/usr/bin/sh\"]", "EACCES");
    snprintf(params, sizeof(params), "[\"%s/plugd.log\"]", h.dir);
    expect_refused(&h, "probe", "read", params, absent);
    snprintf(params, sizeof(params), "[\"%s/state/escaped\"]", h.dir);
    expect_refused(&h, "probe", "write", params, read_only);
    expect_refused(&h, "probe", "write", "[\"written-into-the-package\"]", read_only); /* its cwd */
    expect_refused(&h, "probe", "write", "[\"/dev/shm/probe\"]", absent);
    expect_refused(&h, "probe", "exec", "[\"/bin/sh\"]", "EACCES");
    expect_allowed(&h, "probe", "inherited_fds", "[]");

    /* system calls outside the allow-list end it, named */
    int port, listener = loopback_listener(&port);
    expect_violation(&h, "probe", "tcp_socket", "[]", "socket");
    snprintf(params, sizeof(params), "[%d]", port);
    expect_violation(&h, "probe", "connect", params, "socket");
    close(listener);
    expect_violation(&h, "probe", "fork", "[1]", "clone");
    expect_violation(&h, "probe", "unmount", "[\"/tmp\"]", "umount2"); /* the view stays */
    snprintf(params, sizeof(params), "[%d]", (int)h.plugd_pid);
    expect_violation(&h, "probe", "signal", params, "kill");
    snprintf(params, sizeof(params), "[%d]", (int)hello);
    if (!IS_SANITIZER_BUILD) /* LeakSanitizer needs ptrace: landlock refuses it there, */
        expect_violation(&h, "probe", "ptrace", params, "ptrace");
    else /* or the pid namespace has no other process */
        expect_refused(&h, "probe", "ptrace", params, geteuid() == 0 ? "ESRCH" : "EPERM");

    /* nobody else was harmed */
    cr_assert_eq(harness_worker_pid(&h, "hello"), hello);
    cr_assert_eq(harness_call(&h, "hello", "echo", "[\"fine\"]", 0, NULL), PLUGD_OK);
}

Test(probe, memory_past_the_limit_is_an_oom_kill_named_in_status)
{
    harness_add_plugin(&h, "probe", "probe", "{\"limits\": {\"memory_mb\": 32}}");
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "probe", "running", -1, 15.0));
    cr_assert_null(probe(&h, "probe", "alloc", "[200]"), "200 MiB within a 32 MiB limit");
    cr_assert(harness_wait_state(&h, "probe", "running", 1, 15.0));
    json_t *st = harness_status(&h, "probe");
    const char *last = json_string_value(json_object_get(st, "last_error"));
    if (is_v1_machine() || geteuid() != 0) /* the cgroup names it; RLIMIT_DATA fails malloc */
        cr_expect(last != NULL && strstr(last, "out of memory") != NULL, "last_error: %s", last);
    json_decref(st);
    expect_allowed(&h, "probe", "alloc", "[8]");
}

Test(probe, cpu_time_past_the_limit_is_a_kill_named_in_status)
{
    harness_add_plugin(&h, "probe", "probe", "{\"limits\": {\"cpu_seconds\": 1}}");
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "probe", "running", -1, 15.0));
    expect_allowed(&h, "probe", "spin", "[0]");
    cr_assert_null(probe(&h, "probe", "spin", "[5]"), "5 s of CPU time within a limit of 1 s");
    cr_assert(harness_wait_state(&h, "probe", "running", 1, 15.0), "restarted");
    json_t *st = harness_status(&h, "probe");
    const char *last = json_string_value(json_object_get(st, "last_error"));
    if (geteuid() == 0) /* its cgroup counts the CPU time that names it */
        cr_expect(last != NULL && strstr(last, "out of CPU time") != NULL, "last_error: %s", last);
    else
        cr_expect(last != NULL, "a reason");
    json_decref(st);
}

Test(probe, each_capability_opens_only_its_own_way)
{
    harness_add_plugin(&h, "probe", "net", "{\"capabilities\": [\"net.outbound\"]}");
    harness_add_plugin(&h, "probe", "reader", "{\"capabilities\": [\"fs.read\"]}");
    harness_add_plugin(&h, "probe", "keeper", "{\"capabilities\": [\"fs.data\"]}");
    harness_add_plugin(&h, "probe", "spawner",
                       "{\"capabilities\": [\"process.spawn\"], \"limits\": {\"nproc\": 8}}");
    harness_start(&h);
    const char *all[] = {"net", "reader", "keeper", "spawner"};
    for (size_t i = 0; i < 4; i++)
        cr_assert(harness_wait_state(&h, all[i], "running", -1, 15.0), "%s", all[i]);
    char params[PATH_MAX + 16];

    int port, listener = loopback_listener(&port);
    expect_allowed(&h, "net", "tcp_socket", "[]");
    snprintf(params, sizeof(params), "[%d]", port);
    expect_allowed(&h, "net", "connect", params);
    close(listener);
    expect_refused(&h, "net", "read", "[\"/usr/bin/sh\"]", "EACCES");
    if (access("/etc/hosts", R_OK) == 0) { /* name lookups: for the network only */
        expect_allowed(&h, "net", "read", "[\"/etc/hosts\"]");
        expect_refused(&h, "reader", "read", "[\"/etc/hosts\"]", "EACCES");
    }

    expect_allowed(&h, "reader", "read", "[\"/usr/bin/sh\"]");
    expect_refused(&h, "reader", "read", "[\"/etc/shadow\"]",
                   has_view("reader") ? "ENOENT" : "EACCES");

    json_t *dir = probe(&h, "keeper", "env", "[\"PLUGD_DATA\"]");
    snprintf(params, sizeof(params), "%s/state/data/keeper", h.dir);
    cr_assert_str_eq(json_string_value(dir), params);
    json_decref(dir);
    snprintf(params, sizeof(params), "[\"%s/state/data/keeper/kept\"]", h.dir);
    expect_allowed(&h, "keeper", "write", params);
    expect_allowed(&h, "keeper", "read", params);
    snprintf(params, sizeof(params), "[\"%s/state/data/reader-was-here\"]", h.dir);
    expect_refused(&h, "reader", "write", params, has_view("reader") ? "ENOENT" : "EACCES");
    json_t *none = probe(&h, "reader", "env", "[\"PLUGD_DATA\"]");
    cr_expect(json_is_null(none), "no data folder without fs.data");
    json_decref(none);

    json_t *r = probe(&h, "spawner", "spawn", "[\"/bin/sh\"]");
    cr_assert_not_null(r);
    cr_expect(json_is_true(json_object_get(r, "ok")));
    cr_expect_eq(json_integer_value(json_object_get(r, "status")), 7, "sh ran");
    json_decref(r);
    /* its own processes only: plugd is not in its pid namespace (landlock
     * scopes signals where there is none) */
    snprintf(params, sizeof(params), "[%d]", (int)h.plugd_pid);
    expect_refused(&h, "spawner", "signal", params, geteuid() == 0 ? "ESRCH" : "EPERM");
    r = probe(&h, "spawner", "fork", "[40]");
    cr_assert_not_null(r);
    cr_expect(json_is_false(json_object_get(r, "ok")), "40 processes within nproc 8");
    cr_expect_lt(json_integer_value(json_object_get(r, "forked")), 8);
    json_decref(r);
}

Test(probe, on_violation_eperm_refuses_the_call_and_the_worker_goes_on)
{
    harness_add_plugin(&h, "probe", "probe", "{\"sandbox\": {\"on_violation\": \"eperm\"}}");
    harness_start(&h);
    harness_subscribe(&h, "plugin.sandbox_violation", 0);
    cr_assert(harness_wait_state(&h, "probe", "running", -1, 15.0));
    pid_t pid = harness_worker_pid(&h, "probe");
    expect_refused(&h, "probe", "tcp_socket", "[]", "EPERM");
    expect_refused(&h, "probe", "fork", "[1]", "EPERM");
    int i = harness_wait_event(&h, "plugin.sandbox_violation", "probe", 0, 10.0);
    cr_assert_geq(i, 0);
    json_t *payload = json_object_get(json_array_get(h.events, (size_t)i), "payload");
    cr_expect_str_eq(json_string_value(json_object_get(payload, "syscall")), "socket");
    cr_expect_str_eq(json_string_value(json_object_get(payload, "action")), "eperm");
    cr_assert_eq(harness_worker_pid(&h, "probe"), pid, "the same worker");
    json_t *st = harness_status(&h, "probe");
    json_t *sandbox = json_object_get(st, "sandbox");
    cr_expect_eq(json_integer_value(json_object_get(sandbox, "violations")), 2);
    cr_expect_str_eq(json_string_value(json_object_get(sandbox, "last_violation")), "clone");
    json_decref(st);
}

Test(probe, off_runs_the_worker_without_any_layer)
{
    h.extra_args[0] = "--sandbox";
    h.extra_args[1] = "off";
    harness_add_plugin(&h, "probe", "probe", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "probe", "running", -1, 15.0));
    json_t *st = harness_status(&h, "probe");
    json_t *active = json_object_get(json_object_get(st, "sandbox"), "active");
    cr_expect_eq(json_array_size(active), 1, "only the fds are closed, as always");
    cr_expect(has_layer(json_object_get(st, "sandbox"), "fds"));
    json_decref(st);
    expect_allowed(&h, "probe", "read", "[\"/usr/bin/sh\"]");
}
