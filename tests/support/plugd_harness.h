/* Starts a real plugd in a temporary folder with real example plugins,
 * speaks to it over the host channel, and checks what it leaves behind.
 * Shared by every supervisor integration test. */
#ifndef PLUGD_HARNESS_H
#define PLUGD_HARNESS_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "plugd/error.h"
#include "plugd/ipc.h"

struct harness {
    char dir[512]; /* temp folder: plugins/, state/, plugd.log */
    pid_t plugd_pid;
    struct ev_loop *loop;
    struct ipc_conn *host;
    bool host_closed;
    json_t *events;            /* plugd.event notifications received, in order */
    const char *extra_args[8]; /* more plugd flags for harness_start, NULL-ended */
    uid_t run_as;              /* 0: plugd runs as this process; else as this uid (and gid) */
};

/* Creates the temp folder (nothing runs yet). */
void harness_init(struct harness *h);

/* Adds plugin folder `name` made from the built example `example`
 * (build/examples/EXAMPLE, else tests/fixtures/EXAMPLE): its files are linked, its plugin.json is
 * rewritten with `name` and the keys of `overrides` (a JSON object text,
 * e.g. "{\"limits\": {\"health_interval_ms\": 100}}", or NULL) merged in. */
void harness_add_plugin(struct harness *h, const char *example, const char *name,
                        const char *overrides);

/* Makes a package folder DIR/src/FOLDER from the built example like
 * harness_add_plugin, outside the plugins folder (for install and upgrade
 * commands). Returns its path (the caller frees it). */
char *harness_make_package(struct harness *h, const char *example, const char *folder,
                           const char *name, const char *overrides);

/* Starts plugd on the plugins folder with the host channel. */
void harness_start(struct harness *h);

/* Calls a plugd host command (call, status, shutdown) with `arg` (a JSON
 * object, borrowed). Returns PLUGD_OK and sets *result (a new reference,
 * may be NULL) or the error code, with the message in err_message if given. */
enum plugd_errc harness_command(struct harness *h, const char *cmd, json_t *arg, json_t **result,
                                char *err_message, size_t err_size);

/* call {plugin, method, params} with params given as JSON text ("[1, 2]"). */
enum plugd_errc harness_call(struct harness *h, const char *plugin, const char *method,
                             const char *params_json, int timeout_ms, json_t **result);

/* A call whose answer is awaited later with harness_wait (which frees it). */
struct pending;
struct pending *harness_call_async(struct harness *h, const char *plugin, const char *method,
                                   const char *params_json, int timeout_ms);
enum plugd_errc harness_wait(struct harness *h, struct pending *p, json_t **result);

/* The status map of one plugin (new reference), or NULL. */
json_t *harness_status(struct harness *h, const char *plugin);

/* Polls status until the plugin's "state" is `state` (and, when
 * `min_restarts` >= 0, "restarts" >= it). False after `seconds`. */
bool harness_wait_state(struct harness *h, const char *plugin, const char *state, int min_restarts,
                        double seconds);

/* How many plugins' workers are in `state` ("running"), from one list. */
int harness_count_state(struct harness *h, const char *state);
/* Polls list until `n` workers are in `state`; returns the last count
 * (less than n after `seconds`). */
int harness_wait_count_state(struct harness *h, const char *state, int n, double seconds);

/* The worker's pid from status (0 when none). */
pid_t harness_worker_pid(struct harness *h, const char *plugin);

/* Runs the loop for `seconds`. */
void harness_sleep(struct harness *h, double seconds);

/* How many lines of plugd's log contain `needle`. */
int harness_log_count(struct harness *h, const char *needle);

/* Asks plugd to shut down, waits for it to exit (SIGKILL after `seconds`),
 * and returns its exit status (-1 if it had to be killed). */
int harness_stop(struct harness *h, double seconds);

/* Stops plugd and checks that it exited 0 and left nothing behind: no
 * child (zombie or alive) and none of its workers. */
void harness_stop_and_check(struct harness *h);

/* subscribe {pattern, since?}: from now on plugd.event notifications are
 * collected in h->events. */
void harness_subscribe(struct harness *h, const char *pattern, long since);

/* Waits until an event `name` about `plugin` (NULL: any) has arrived after
 * index `from` of h->events; returns its index or -1 after `seconds`. */
int harness_wait_event(struct harness *h, const char *name, const char *plugin, size_t from,
                       double seconds);

/* Names of the events about `plugin` from index `from`, joined by spaces
 * ("plugin.status_changed plugin.disabled ..."), into `out`. */
void harness_event_names(struct harness *h, const char *plugin, size_t from, char *out,
                         size_t size);

/* A lifecycle command {plugin: name} (or {path} for install/upgrade when
 * `name` starts with '/'); returns the code, the message in `message`. */
enum plugd_errc harness_op(struct harness *h, const char *cmd, const char *name, char *message,
                           size_t size);

/* harness_op, asserting it answers `code` (the message names the command,
 * its argument and both codes). */
void harness_expect_op(struct harness *h, const char *cmd, const char *arg, enum plugd_errc code);

/* The "status" field (lifecycle) of one plugin, into `out` ("" if none). */
void harness_lifecycle(struct harness *h, const char *plugin, char *out, size_t size);

/* Polls until the plugin's lifecycle status is `status`. */
bool harness_wait_status(struct harness *h, const char *plugin, const char *status, double seconds);

/* SIGKILL to plugd (its workers die with it), reaped; the host channel is
 * closed. harness_start can start it again on the same folders. */
void harness_kill9(struct harness *h);

/* Makes plugd run as the user nobody (h->run_as) and hands it the temp
 * folder: true when that can work here (root, and a build tree that nobody
 * can read and run: a checkout in /root cannot be). Call it after adding
 * the plugins and before harness_start. */
bool harness_run_as_nobody(struct harness *h);

/* Removes the temp folder and frees everything (kills plugd if needed). */
void harness_fini(struct harness *h);

/* True when `pid` no longer exists (not even as a zombie). */
bool harness_pid_gone(pid_t pid);

/* True when `pid` has exited (gone, or a zombie its new parent has not
 * reaped yet: orphans go to whatever reaper the machine has). */
bool harness_pid_dead(pid_t pid);

/* Descendant processes of `pid` that are alive or zombies. */
int harness_count_children(pid_t pid);

/* Open fds of process `pid` that are not anonymous inodes, 0-2 included. */
int harness_count_fds(pid_t pid);

/* Open fds of process `pid` other than 0, 1, 2, `allowed` (-1: none) and
 * anonymous inodes (its own epoll/eventfd/signalfd). */
int harness_extra_fds(pid_t pid, int allowed);

/* Polls plugd's log until `count` lines contain `needle`; false after `seconds`. */
bool harness_wait_log(struct harness *h, const char *needle, int count, double seconds);

/* Runs plugctl with `args` (NULL-ended, at most 14) on this plugd's control
 * socket; returns its exit status (-1 if killed), stdout and stderr into
 * `out` and `err_out` (NUL-terminated, cut to fit). */
int harness_plugctl(struct harness *h, const char *const *args, char *out, size_t out_size,
                    char *err_out, size_t err_size);

/* Starts plugctl with `args` like harness_plugctl without waiting: its
 * stdout and stderr are read from *out_fd and *err_fd. */
pid_t harness_plugctl_spawn(struct harness *h, const char *const *args, int *out_fd, int *err_fd);

/* Reads `fd` to its end into `buf` (cut to fit, NUL-terminated); closes it. */
void harness_read_all(int fd, char *buf, size_t size);

/* Waits for child `pid`: its exit status, -1 if a signal ended it. */
int harness_exit_status(pid_t pid);

/* A field of /proc/PID/status in KiB ("VmRSS", "VmHWM": the peak), or -1. */
long harness_proc_kib(pid_t pid, const char *field);

/* CPU time (user + system) that `pid` has used, in seconds, or -1. */
double harness_cpu_seconds(pid_t pid);

/* Every open fd of `pid` (anonymous inodes too), or -1. */
int harness_all_fds(pid_t pid);

/* The test file's harness `h`, made before each test of `suite` and, after
 * it, stopped gracefully and checked: no zombie, no orphan worker, exit
 * status 0. `timeout_s` is the suite's (Criterion's per-test one leaks
 * under LSan). */
#define HARNESS_TEST_SUITE(suite, timeout_s)                                                       \
    static struct harness h;                                                                       \
    static void harness_setup(void)                                                                \
    {                                                                                              \
        harness_init(&h);                                                                          \
    }                                                                                              \
    static void harness_teardown(void)                                                             \
    {                                                                                              \
        harness_stop_and_check(&h);                                                                \
        harness_fini(&h);                                                                          \
    }                                                                                              \
    TestSuite(suite, .init = harness_setup, .fini = harness_teardown, .timeout = timeout_s)

#endif
