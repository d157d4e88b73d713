/* The control socket and plugctl, over real sockets to a real plugd: every
 * command's answer and refusal, malformed input, authorization by
 * SO_PEERCRED, event and log streams, a subscriber that stops reading, and
 * plugctl's output and exit codes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control_client.h"
#include "plugd_harness.h"

HARNESS_TEST_SUITE(control, 120);

/* ------------------------------------------------------------ a client */

static void socket_path(char *out, size_t size)
{
    snprintf(out, size, "%s/state/plugd.sock", h.dir);
}

/* Connects to `path`; -errno when it cannot. */
static int connect_to(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static void client_open(struct ctl_client *c)
{
    char path[PATH_MAX];
    socket_path(path, sizeof(path));
    *c = (struct ctl_client){.fd = connect_to(path)};
    cr_assert_geq(c->fd, 0, "cannot connect to %s: %s", path, strerror(-c->fd));
}

/* Sends `line`, expects the error `code` with `needle` in its message. */
static void expect_error(struct ctl_client *c, const char *line, const char *code,
                         const char *needle)
{
    json_t *answer = ctl_client_request(c, line);
    cr_assert(json_is_false(json_object_get(answer, "ok")), "%s was not refused", line);
    json_t *error = json_object_get(answer, "error");
    const char *got = json_string_value(json_object_get(error, "code"));
    const char *message = json_string_value(json_object_get(error, "message"));
    cr_assert_str_eq(got, code, "%s: %s", line, message);
    cr_assert_not_null(strstr(message, needle), "%s: \"%s\" lacks \"%s\"", line, message, needle);
    json_decref(answer);
}

static const char *status_of(struct ctl_client *c, const char *plugin)
{
    static char status[32];
    char line[256];
    snprintf(line, sizeof(line), "{\"cmd\":\"status\",\"plugin\":\"%s\"}", plugin);
    json_t *list = ctl_client_expect_ok(c, line);
    snprintf(status, sizeof(status), "%s",
             json_string_value(json_object_get(json_array_get(list, 0), "status")) ?: "");
    json_decref(list);
    return status;
}

static void wait_status(struct ctl_client *c, const char *plugin, const char *status)
{
    for (int i = 0; i < 500 && strcmp(status_of(c, plugin), status) != 0; i++)
        usleep(20000);
    cr_assert_str_eq(status_of(c, plugin), status, "%s", plugin);
}

static void start_with(const char *const *plugins)
{
    for (size_t i = 0; plugins[i] != NULL; i++)
        harness_add_plugin(&h, plugins[i], plugins[i], NULL);
    harness_start(&h);
    for (size_t i = 0; plugins[i] != NULL; i++) {
        cr_assert(harness_wait_status(&h, plugins[i], "ready", 15.0));
        cr_assert(harness_wait_state(&h, plugins[i], "running", -1, 10.0));
    }
}

static void start_hello(void)
{
    static const char *const hello[] = {"hello", NULL};
    start_with(hello);
}

/* ------------------------------------------------------------ commands */

Test(control, reading_commands_answer_and_refuse_with_named_codes)
{
    start_hello();
    struct ctl_client c;
    client_open(&c);

    json_t *list = ctl_client_expect_ok(&c, "{\"id\":1,\"cmd\":\"list\"}");
    cr_assert_eq(json_array_size(list), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "plugin")),
                     "hello");
    json_decref(list);
    expect_error(&c, "{\"cmd\":\"list\",\"plugin\":\"hello\"}", "invalid_argument",
                 "list: unknown argument \"plugin\"");

    cr_assert_str_eq(status_of(&c, "hello"), "ready");
    expect_error(&c, "{\"cmd\":\"status\",\"plugin\":\"nosuch\"}", "plugin_not_found", "nosuch");

    json_t *stats = ctl_client_expect_ok(&c, "{\"cmd\":\"stats\",\"plugin\":\"hello\"}");
    json_t *one = json_array_get(stats, 0);
    static const char *const fields[] = {"status",         "version", "pid",    "uptime_s",
                                         "restarts",       "calls",   "errors", "latency_p50_ms",
                                         "latency_p99_ms", "rss_kib", "health"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        cr_expect_not_null(json_object_get(one, fields[i]), "stats lacks %s", fields[i]);
    cr_assert_gt(json_integer_value(json_object_get(one, "rss_kib")), 0);
    json_decref(stats);
    expect_error(&c, "{\"cmd\":\"stats\",\"plugin\":\"nosuch\"}", "plugin_not_found", "nosuch");

    json_t *doctor = ctl_client_expect_ok(&c, "{\"cmd\":\"doctor\",\"plugin\":\"hello\"}");
    cr_assert_str_eq(json_string_value(json_object_get(doctor, "manifest")), "ok");
    cr_assert_not_null(json_object_get(doctor, "capabilities"));
    cr_assert_not_null(json_object_get(doctor, "sandbox"));
    json_decref(doctor);
    expect_error(&c, "{\"cmd\":\"doctor\"}", "invalid_argument", "doctor: \"plugin\" is required");

    json_t *audit = ctl_client_expect_ok(&c, "{\"cmd\":\"audit\",\"plugin\":\"hello\"}");
    cr_assert_geq(json_array_size(audit), 2, "install and load are audited");
    json_decref(audit);
    expect_error(&c, "{\"cmd\":\"audit\",\"plugin\":\"hello\",\"limit\":\"x\"}", "invalid_argument",
                 "limit");

    json_t *logs = ctl_client_expect_ok(&c, "{\"cmd\":\"logs\",\"lines\":3}");
    cr_assert_eq(json_array_size(json_object_get(logs, "lines")), 3);
    json_decref(logs);
    expect_error(&c, "{\"cmd\":\"logs\",\"lines\":-1}", "invalid_argument", "lines");

    json_t *config = ctl_client_expect_ok(&c, "{\"cmd\":\"config\",\"plugin\":\"hello\"}");
    cr_assert(json_is_object(json_object_get(config, "effective")));
    json_decref(config);
    expect_error(&c, "{\"cmd\":\"config\",\"plugin\":\"hello\",\"config\":3}", "invalid_argument",
                 "\"config\" must be an object");
    ctl_client_close(&c);
}

Test(control, call_answers_and_refuses)
{
    start_hello();
    struct ctl_client c;
    client_open(&c);
    json_t *sum = ctl_client_expect_ok(
        &c, "{\"cmd\":\"call\",\"plugin\":\"hello\",\"method\":\"add\",\"params\":[2,40]}");
    cr_assert_eq(json_integer_value(sum), 42);
    json_decref(sum);
    expect_error(&c, "{\"cmd\":\"call\",\"plugin\":\"hello\",\"method\":\"nosuch\"}",
                 "method_not_found", "nosuch");
    expect_error(&c, "{\"cmd\":\"call\",\"plugin\":\"nosuch\",\"method\":\"echo\"}",
                 "plugin_not_found", "nosuch");
    expect_error(&c, "{\"cmd\":\"call\",\"plugin\":\"hello\",\"method\":\"echo\",\"params\":\"x\"}",
                 "invalid_argument", "\"params\" must be an array");
    expect_error(&c, "{\"cmd\":\"call\",\"plugin\":\"hello\"}", "invalid_argument",
                 "\"method\" is required");
    ctl_client_close(&c);
}

Test(control, the_whole_lifecycle_is_driven_over_the_socket)
{
    start_hello();
    struct ctl_client c;
    client_open(&c);
    char *v1 = harness_make_package(&h, "crashy", "v1", "tool", NULL);
    char *v2 =
        harness_make_package(&h, "crashy", "v2", "tool",
                             "{\"version\": \"2.0.0\", \"capabilities\": [\"events.emit\"]}");
    char *v3 = harness_make_package(&h, "crashy", "v3", "tool",
                                    "{\"version\": \"3.0.0\", \"capabilities\": "
                                    "[\"events.emit\", \"plugin.state.read\"]}");
    char line[PATH_MAX + 128];

    snprintf(line, sizeof(line), "{\"cmd\":\"install\",\"path\":\"%s\"}", v1);
    json_decref(ctl_client_expect_ok(&c, line));
    wait_status(&c, "tool", "ready");
    expect_error(&c, "{\"cmd\":\"install\",\"path\":\"relative/dir\"}", "invalid_argument",
                 "\"path\" must be absolute");
    expect_error(&c, "{\"cmd\":\"install\",\"path\":\"/nonexistent\"}", "invalid_manifest",
                 "/nonexistent/plugin.json");

    json_decref(
        ctl_client_expect_ok(&c, "{\"cmd\":\"disable\",\"plugin\":\"tool\",\"reason\":\"maint\"}"));
    expect_error(&c, "{\"cmd\":\"disable\",\"plugin\":\"tool\"}", "invalid_transition", "disabled");
    json_decref(ctl_client_expect_ok(&c, "{\"cmd\":\"enable\",\"plugin\":\"tool\"}"));
    wait_status(&c, "tool", "ready");

    snprintf(line, sizeof(line), "{\"cmd\":\"upgrade\",\"path\":\"%s\"}", v2);
    json_decref(ctl_client_expect_ok(&c, line));
    wait_status(&c, "tool", "upgrade_pending");
    json_decref(ctl_client_expect_ok(&c, "{\"cmd\":\"approve\",\"plugin\":\"tool\"}"));
    wait_status(&c, "tool", "ready");
    expect_error(&c, "{\"cmd\":\"approve\",\"plugin\":\"tool\"}", "invalid_transition",
                 "no upgrade to approve");

    snprintf(line, sizeof(line), "{\"cmd\":\"upgrade\",\"path\":\"%s\"}", v3);
    json_decref(ctl_client_expect_ok(&c, line));
    wait_status(&c, "tool", "upgrade_pending");
    json_decref(ctl_client_expect_ok(&c, "{\"cmd\":\"reject\",\"plugin\":\"tool\"}"));
    wait_status(&c, "tool", "ready");
    expect_error(&c, "{\"cmd\":\"reject\",\"plugin\":\"tool\"}", "invalid_transition", "ready");
    json_t *st = ctl_client_expect_ok(&c, "{\"cmd\":\"status\",\"plugin\":\"tool\"}");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(st, 0), "version")), "2.0.0",
                     "reject keeps the approved version");
    json_decref(st);

    expect_error(&c, "{\"cmd\":\"purge\",\"plugin\":\"tool\"}", "invalid_transition",
                 "only an uninstalled plugin's data can be purged");
    json_decref(ctl_client_expect_ok(&c, "{\"cmd\":\"uninstall\",\"plugin\":\"tool\"}"));
    wait_status(&c, "tool", "uninstalled");
    expect_error(&c, "{\"cmd\":\"uninstall\",\"plugin\":\"tool\"}", "invalid_transition",
                 "uninstalled");
    json_decref(ctl_client_expect_ok(&c, "{\"cmd\":\"purge\",\"plugin\":\"tool\"}"));
    expect_error(&c, "{\"cmd\":\"enable\",\"plugin\":\"nosuch\"}", "plugin_not_found", "nosuch");

    json_t *audit =
        ctl_client_expect_ok(&c, "{\"cmd\":\"audit\",\"plugin\":\"tool\",\"limit\":20}");
    json_t *row = json_array_get(audit, json_array_size(audit) - 1);
    cr_assert_str_eq(json_string_value(json_object_get(row, "action")), "install");
    char actor[32];
    snprintf(actor, sizeof(actor), "uid:%u", (unsigned)getuid());
    cr_assert_str_eq(json_string_value(json_object_get(row, "actor")), actor,
                     "the audit names the caller by uid");
    json_decref(audit);
    free(v1);
    free(v2);
    free(v3);
    ctl_client_close(&c);
}

Test(control, shutdown_stops_plugd_and_removes_the_socket)
{
    start_hello();
    struct ctl_client c;
    client_open(&c);
    json_decref(ctl_client_expect_ok(&c, "{\"id\":9,\"cmd\":\"shutdown\"}"));
    ctl_client_close(&c);
    int status = -1;
    for (int i = 0; i < 1000 && waitpid(h.plugd_pid, &status, WNOHANG) == 0; i++)
        usleep(10000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "plugd exited 0");
    h.plugd_pid = 0;
    char path[PATH_MAX];
    socket_path(path, sizeof(path));
    cr_assert_eq(access(path, F_OK), -1, "the socket file is removed");
}

/* ------------------------------------------------------------ bad input */

Test(control, malformed_lines_get_named_errors_and_the_connection_stays_usable)
{
    start_hello();
    struct ctl_client c;
    client_open(&c);
    expect_error(&c, "not json", "invalid_json", "not JSON");
    expect_error(&c, "[1, 2]", "invalid_argument", "\"cmd\"");
    expect_error(&c, "{\"id\":1}", "invalid_argument", "\"cmd\"");
    expect_error(&c, "{\"cmd\":7}", "invalid_argument", "\"cmd\"");
    expect_error(&c, "{\"cmd\":\"frobnicate\"}", "unknown_command", "frobnicate");
    expect_error(&c, "{\"cmd\":\"disable\"}", "invalid_argument", "\"plugin\" is required");
    expect_error(&c, "{\"cmd\":\"disable\",\"plugin\":7}", "invalid_argument", "plugin");
    expect_error(&c, "{\"cmd\":\"disable\",\"plugin\":\"hello\",\"bogus\":1}", "invalid_argument",
                 "unknown argument \"bogus\"");
    expect_error(&c, "{\"cmd\":\"list\",\"cmd\":\"list\"}", "invalid_json", "duplicate");

    /* a line past the limit is refused, and what follows it is read */
    size_t n = 2 * 1024 * 1024;
    char *long_line = malloc(n + 1);
    memset(long_line, 'x', n);
    long_line[n] = 0;
    expect_error(&c, long_line, "line_too_long", "longer than");
    free(long_line);

    json_t *echo = ctl_client_expect_ok(
        &c, "{\"cmd\":\"call\",\"plugin\":\"hello\",\"method\":\"echo\",\"params\":[\"fine\"]}");
    cr_assert_str_eq(json_string_value(echo), "fine");
    json_decref(echo);
    cr_assert_str_eq(status_of(&c, "hello"), "ready", "nothing changed");
    ctl_client_close(&c);
}

Test(control, ids_are_echoed_as_given)
{
    start_hello();
    struct ctl_client c;
    client_open(&c);
    static const char *const ids[] = {"7", "\"abc\"", "{\"n\":[1,2]}", "null"};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char line[128];
        snprintf(line, sizeof(line), "{\"id\":%s,\"cmd\":\"list\"}", ids[i]);
        json_t *answer = ctl_client_request(&c, line);
        json_t *want = json_loads(ids[i], JSON_DECODE_ANY, NULL);
        cr_assert(json_equal(json_object_get(answer, "id"), want), "id %s", ids[i]);
        json_decref(want);
        json_decref(answer);
    }
    json_t *answer = ctl_client_request(&c, "{\"cmd\":\"list\"}");
    cr_assert(json_is_null(json_object_get(answer, "id")), "no id: null");
    json_decref(answer);
    ctl_client_close(&c);
}

Test(control, a_thousand_malformed_requests_do_not_disturb_another_client)
{
    start_hello();
    struct ctl_client bad, good;
    client_open(&bad);
    client_open(&good);
    static const char *const junk[] = {"{", "{\"cmd\":\"nope\"}", "{\"cmd\":\"call\"}", "\x01\x02",
                                       "{\"cmd\":\"disable\",\"plugin\":\"hello\",\"x\":1}"};
    static const char *const codes[] = {"invalid_json", "unknown_command", "invalid_argument",
                                        "invalid_json", "invalid_argument"};
    for (int i = 0; i < 1000; i++)
        ctl_client_send(&bad, junk[i % 5]);
    for (int i = 0; i < 100; i++) {
        char line[128];
        snprintf(line, sizeof(line),
                 "{\"id\":%d,\"cmd\":\"call\",\"plugin\":\"hello\",\"method\":\"add\","
                 "\"params\":[%d,1]}",
                 i, i);
        json_t *sum = ctl_client_expect_ok(&good, line);
        cr_assert_eq(json_integer_value(sum), i + 1);
        json_decref(sum);
    }
    for (int i = 0; i < 1000; i++) {
        json_t *answer = ctl_client_answer(&bad);
        const char *code =
            json_string_value(json_object_get(json_object_get(answer, "error"), "code"));
        cr_assert_str_eq(code, codes[i % 5], "answer %d", i);
        json_decref(answer);
    }
    cr_assert_str_eq(status_of(&good, "hello"), "ready");
    ctl_client_close(&bad);
    ctl_client_close(&good);
}

/* ------------------------------------------------------------ who may */

/* A child that becomes `nobody` and sends one request; exits 0 when plugd's
 * answer carries `code` ("ok" for success), 1 otherwise, 2 if it cannot
 * connect. */
static pid_t request_as_nobody(const char *path, const char *code)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid != 0)
        return pid;
    if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
        _exit(3);
    int fd = connect_to(path);
    if (fd < 0)
        _exit(2);
    static const char line[] = "{\"id\":1,\"cmd\":\"list\"}\n";
    if (write(fd, line, sizeof(line) - 1) != (ssize_t)sizeof(line) - 1)
        _exit(2);
    char answer[4096] = "";
    size_t got = 0;
    ssize_t n;
    while (got < sizeof(answer) - 1 && memchr(answer, '\n', got) == NULL &&
           (n = read(fd, answer + got, sizeof(answer) - 1 - got)) > 0)
        got += (size_t)n;
    answer[got] = 0;
    bool is_match = strcmp(code, "ok") == 0 ? strstr(answer, "\"ok\":true") != NULL
                                            : strstr(answer, code) != NULL;
    _exit(is_match ? 0 : 1);
}

/* The socket in a folder anyone may enter, the file opened to everyone, so
 * that only plugd's own check stands between `nobody` and the commands. */
static void start_with_open_socket(char *path, size_t size, const char *allow_uid)
{
    cr_assert_eq(chmod(h.dir, 0711), 0);
    snprintf(path, size, "%s/open.sock", h.dir);
    h.extra_args[0] = "--control-socket";
    h.extra_args[1] = path;
    if (allow_uid != NULL) {
        h.extra_args[2] = "--allow-uid";
        h.extra_args[3] = allow_uid;
    }
    start_hello();
    cr_assert_eq(chmod(path, 0666), 0);
}

Test(control, a_user_not_allowed_is_refused_and_logged)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to become another user");
    static char path[PATH_MAX];
    start_with_open_socket(path, sizeof(path), NULL);
    cr_assert_eq(harness_exit_status(request_as_nobody(path, "permission_denied")), 0,
                 "nobody gets permission_denied");
    cr_assert_geq(harness_log_count(&h, "control: refused uid 65534"), 1);
    struct ctl_client c;
    c = (struct ctl_client){.fd = connect_to(path)};
    cr_assert_geq(c.fd, 0);
    json_decref(ctl_client_expect_ok(&c, "{\"cmd\":\"list\"}"));
    ctl_client_close(&c);
}

Test(control, an_allowed_uid_may_use_the_socket)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to become another user");
    static char path[PATH_MAX];
    start_with_open_socket(path, sizeof(path), "65534");
    cr_assert_eq(harness_exit_status(request_as_nobody(path, "ok")), 0,
                 "--allow-uid 65534 lets it in");
}

Test(control, the_socket_file_is_born_0660)
{
    start_hello();
    char path[PATH_MAX];
    socket_path(path, sizeof(path));
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISSOCK(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0660);
}

/* ------------------------------------------------------------ streams */

Test(control, events_stream_in_order_until_the_client_leaves)
{
    start_hello();
    struct ctl_client sub, op;
    client_open(&sub);
    client_open(&op);
    json_t *answer = ctl_client_expect_ok(&sub, "{\"cmd\":\"subscribe\",\"pattern\":\"plugin.*\"}");
    cr_assert_not_null(json_object_get(answer, "seq"));
    json_decref(answer);
    json_decref(ctl_client_expect_ok(&op, "{\"cmd\":\"disable\",\"plugin\":\"hello\"}"));
    json_decref(ctl_client_expect_ok(&op, "{\"cmd\":\"enable\",\"plugin\":\"hello\"}"));
    wait_status(&op, "hello", "ready");

    bool saw_disabled = false, saw_enabled = false;
    json_int_t last_seq = -1;
    while (!saw_enabled) {
        json_t *msg = ctl_client_read(&sub, 10.0);
        cr_assert_not_null(msg, "the stream stopped before plugin.enabled");
        json_t *e = json_object_get(msg, "event");
        cr_assert_not_null(e);
        json_int_t seq = json_integer_value(json_object_get(e, "seq"));
        cr_assert_gt(seq, last_seq, "events arrive in order");
        last_seq = seq;
        const char *name = json_string_value(json_object_get(e, "name"));
        saw_disabled = saw_disabled || strcmp(name, "plugin.disabled") == 0;
        saw_enabled = strcmp(name, "plugin.enabled") == 0;
        cr_assert(!saw_enabled || saw_disabled, "disabled comes before enabled");
        json_decref(msg);
    }
    ctl_client_close(&sub); /* leaves mid-stream */
    json_decref(ctl_client_expect_ok(&op, "{\"cmd\":\"disable\",\"plugin\":\"hello\"}"));
    json_decref(ctl_client_expect_ok(&op, "{\"cmd\":\"enable\",\"plugin\":\"hello\"}"));
    wait_status(&op, "hello", "ready");
    ctl_client_close(&op);
}

Test(control, subscribe_with_since_replays_and_a_filter_selects)
{
    start_hello();
    struct ctl_client c;
    client_open(&c);
    json_t *answer =
        ctl_client_expect_ok(&c, "{\"cmd\":\"subscribe\",\"pattern\":\"plugin.loaded\","
                                 "\"filter\":{\"plugin\":\"hello\"},\"since\":0}");
    json_decref(answer);
    json_t *msg = ctl_client_read(&c, 10.0);
    cr_assert_not_null(msg, "the past plugin.loaded is replayed");
    json_t *e = json_object_get(msg, "event");
    cr_assert_str_eq(json_string_value(json_object_get(e, "name")), "plugin.loaded");
    cr_assert_str_eq(json_string_value(json_object_get(e, "plugin")), "hello");
    json_decref(msg);
    expect_error(&c, "{\"cmd\":\"subscribe\",\"pattern\":7}", "invalid_argument", "pattern");
    ctl_client_close(&c);
}

Test(control, logs_follow_streams_new_records)
{
    start_hello();
    struct ctl_client c, op;
    client_open(&c);
    client_open(&op);
    json_decref(ctl_client_expect_ok(
        &c, "{\"cmd\":\"logs\",\"plugin\":\"hello\",\"lines\":0,\"follow\":true}"));
    json_decref(ctl_client_expect_ok(
        &op, "{\"cmd\":\"disable\",\"plugin\":\"hello\",\"reason\":\"look\"}"));
    bool found = false;
    for (int i = 0; i < 50 && !found; i++) {
        json_t *msg = ctl_client_read(&c, 10.0);
        cr_assert_not_null(msg, "no log record streamed");
        json_t *rec = json_object_get(msg, "log");
        cr_assert_not_null(rec);
        cr_assert_str_eq(json_string_value(json_object_get(rec, "plugin")), "hello",
                         "only hello's records are followed");
        found = strstr(json_string_value(json_object_get(rec, "message")) ?: "", "disable") != NULL;
        json_decref(msg);
    }
    cr_assert(found, "the disable record was streamed");
    ctl_client_close(&c);
    ctl_client_close(&op);
}

Test(control, a_subscriber_that_stops_reading_is_dropped_while_others_keep_receiving)
{
    harness_add_plugin(&h, "crashy", "flood", "{\"capabilities\": [\"events.emit\"]}");
    harness_start(&h);
    cr_assert(harness_wait_status(&h, "flood", "ready", 15.0));
    cr_assert(harness_wait_state(&h, "flood", "running", -1, 10.0));
    struct ctl_client slow, fast, op;
    client_open(&slow);
    client_open(&fast);
    client_open(&op);
    int small = 4096;
    setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    json_decref(
        ctl_client_expect_ok(&slow, "{\"cmd\":\"subscribe\",\"pattern\":\"plugin.flood.*\"}"));
    json_decref(
        ctl_client_expect_ok(&fast, "{\"cmd\":\"subscribe\",\"pattern\":\"plugin.flood.*\"}"));

    /* in batches the fast one keeps up with; the slow one, reading nothing,
     * overflows its queue (1,024 events) behind its 1 MiB of unsent output */
    enum { BATCH = 500, N = 40 * BATCH };
    int seen = 0;
    while (seen < N) {
        ctl_client_send(&op, "{\"cmd\":\"call\",\"plugin\":\"flood\",\"method\":\"emit_many\","
                             "\"params\":[{\"n\":500,\"size\":16}]}");
        for (int end = seen + BATCH; seen < end; seen++) {
            json_t *msg = ctl_client_read(&fast, 20.0);
            cr_assert_not_null(msg, "the fast subscriber stopped at %d events", seen);
            json_t *e = json_object_get(msg, "event");
            cr_assert_str_eq(json_string_value(json_object_get(e, "name")), "plugin.flood.flood");
            cr_assert_eq(json_integer_value(json_object_get(json_object_get(e, "payload"), "i")),
                         seen % BATCH);
            json_decref(msg);
        }
        json_t *answer = ctl_client_answer(&op);
        cr_assert_eq(json_integer_value(json_object_get(answer, "result")), BATCH);
        json_decref(answer);
    }

    /* the slow one now reads: some events, then the notice, then nothing */
    bool was_dropped = false;
    int got = 0;
    json_t *msg;
    while (!was_dropped && (msg = ctl_client_read(&slow, 10.0)) != NULL) {
        const char *name =
            json_string_value(json_object_get(json_object_get(msg, "event"), "name"));
        was_dropped = strcmp(name, "subscriber.overflow") == 0;
        got += !was_dropped;
        json_decref(msg);
    }
    cr_assert(was_dropped, "the slow subscriber is told it was dropped");
    cr_assert_lt(got, N);
    cr_assert_eq(harness_log_count(&h, "event subscription dropped"), 1);
    json_decref(
        ctl_client_expect_ok(&slow, "{\"cmd\":\"list\"}")); /* its connection still answers */
    ctl_client_close(&slow);
    ctl_client_close(&fast);
    ctl_client_close(&op);
}

/* ------------------------------------------------------------ plugctl */

/* Runs plugctl with `args` (NULL-ended) on this test's plugd. */
static int plugctl(const char *const *args, char *out, size_t out_size, char *err_out,
                   size_t err_size)
{
    return harness_plugctl(&h, args, out, out_size, err_out, err_size);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

Test(control, plugctl_prints_tables_and_json_and_exits_with_meaningful_codes)
{
    start_hello();
    char out[16384], err[4096];

    cr_assert_eq(plugctl((const char *[]){"list", NULL}, out, sizeof(out), err, sizeof(err)), 0);
    cr_assert(strncmp(out, "PLUGIN", 6) == 0, "a table with a header: %s", out);
    cr_assert_not_null(strstr(out, "hello"));

    cr_assert_eq(
        plugctl((const char *[]){"status", "hello", NULL}, out, sizeof(out), err, sizeof(err)), 0);
    const char *layers = strstr(out, "\nsandbox ");
    cr_assert_not_null(layers, "status shows the sandbox: %s", out);
    cr_expect_not_null(strstr(layers, "\"landlock\""), "%s", layers);
    cr_expect_not_null(strstr(layers, "\"seccomp\""), "%s", layers);
    if (geteuid() == 0)
        cr_expect_not_null(strstr(layers, "\"mount_namespace\""), "%s", layers);

    cr_assert_eq(
        plugctl((const char *[]){"--json", "list", NULL}, out, sizeof(out), err, sizeof(err)), 0);
    json_t *list = json_loads(out, 0, NULL);
    cr_assert(json_is_array(list), "--json prints JSON: %s", out);
    json_decref(list);

    cr_assert_eq(plugctl((const char *[]){"call", "hello", "add", "2", "40", NULL}, out,
                         sizeof(out), err, sizeof(err)),
                 0);
    cr_assert_str_eq(out, "42\n");

    cr_assert_eq(plugctl((const char *[]){"disable", "hello", "maintenance", NULL}, out,
                         sizeof(out), err, sizeof(err)),
                 0);
    cr_assert_eq(
        plugctl((const char *[]){"disable", "hello", NULL}, out, sizeof(out), err, sizeof(err)), 1,
        "plugd refused: 1");
    cr_assert_eq(count_lines(err), 1, "one line on stderr: %s", err);
    cr_assert_not_null(strstr(err, "invalid_transition"), "%s", err);

    cr_assert_eq(plugctl((const char *[]){"disable", NULL}, out, sizeof(out), err, sizeof(err)), 2,
                 "usage: 2");
    cr_assert_eq(count_lines(err), 1, "%s", err);
    cr_assert_eq(plugctl((const char *[]){"frobnicate", NULL}, out, sizeof(out), err, sizeof(err)),
                 2);
    cr_assert_eq(
        plugctl((const char *[]){"logs", "-n", "many", NULL}, out, sizeof(out), err, sizeof(err)),
        2, "a count that is not a number is a usage error");
    cr_assert_not_null(strstr(err, "\"many\" is not a number"), "%s", err);
    cr_assert_eq(plugctl((const char *[]){"--socket", "/nonexistent.sock", "list", NULL}, out,
                         sizeof(out), err, sizeof(err)),
                 3, "cannot reach plugd: 3");
    cr_assert_not_null(strstr(err, "/nonexistent.sock"), "%s", err);

    cr_assert_eq(
        plugctl((const char *[]){"help", "uninstall", NULL}, out, sizeof(out), err, sizeof(err)),
        0);
    cr_assert_not_null(strstr(out, "--remove-data"), "%s", out);
    cr_assert_eq(count_lines(out), 1);

    cr_assert_eq(
        plugctl((const char *[]){"enable", "hello", NULL}, out, sizeof(out), err, sizeof(err)), 0);
    cr_assert_eq(plugctl((const char *[]){"audit", "hello", "-n", "2", NULL}, out, sizeof(out), err,
                         sizeof(err)),
                 0);
    cr_assert_not_null(strstr(out, "enable"), "%s", out);
    cr_assert_not_null(strstr(out, "maintenance"), "%s", out);
    cr_assert_eq(count_lines(out), 3, "a header and two rows: %s", out);
}

Test(control, plugctl_events_follows_the_stream)
{
    start_hello();
    char bin[PATH_MAX], sock[PATH_MAX];
    snprintf(bin, sizeof(bin), "%s/supervisor/plugctl", getenv("PLUGD_BUILD_ROOT"));
    socket_path(sock, sizeof(sock));
    int o[2];
    cr_assert_eq(pipe(o), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(o[1], 1);
        execl(bin, bin, "--socket", sock, "--json", "events", "plugin.*", (char *)NULL);
        _exit(127);
    }
    close(o[1]);
    usleep(200000); /* let it subscribe */
    struct ctl_client op;
    client_open(&op);
    json_decref(ctl_client_expect_ok(&op, "{\"cmd\":\"disable\",\"plugin\":\"hello\"}"));
    struct ctl_client follower = {.fd = o[0]};
    bool found = false;
    json_t *e;
    while (!found && (e = ctl_client_read(&follower, 10.0)) != NULL) {
        found = strcmp(json_string_value(json_object_get(e, "name")) ?: "", "plugin.disabled") == 0;
        json_decref(e);
    }
    cr_assert(found, "plugctl events printed plugin.disabled");
    kill(pid, SIGTERM);
    harness_exit_status(pid);
    ctl_client_close(&follower);
    ctl_client_close(&op);
}

/* ------------------------------------------------------------ the socket file */

Test(control, a_stale_socket_file_is_replaced_and_a_live_one_refused)
{
    start_hello();
    harness_kill9(&h); /* leaves the socket file behind */
    char path[PATH_MAX];
    socket_path(path, sizeof(path));
    cr_assert_eq(access(path, F_OK), 0);
    harness_start(&h);
    cr_assert(harness_wait_status(&h, "hello", "ready", 15.0));
    struct ctl_client c;
    client_open(&c);
    json_decref(ctl_client_expect_ok(&c, "{\"cmd\":\"list\"}"));
    ctl_client_close(&c);

    /* a second plugd on the same socket path refuses to start */
    char bin[PATH_MAX], state[PATH_MAX];
    snprintf(bin, sizeof(bin), "%s/supervisor/plugd", getenv("PLUGD_BUILD_ROOT"));
    snprintf(state, sizeof(state), "%s/state2", h.dir);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        execl(bin, bin, "--state-dir", state, "--control-socket", path, (char *)NULL);
        _exit(127);
    }
    cr_assert_eq(harness_exit_status(pid), 1, "another plugd is listening there");
    client_open(&c);
    json_decref(ctl_client_expect_ok(&c, "{\"cmd\":\"list\"}"));
    ctl_client_close(&c);
}

Test(control, config_set_is_validated_by_the_worker_and_applied_hot)
{
    harness_add_plugin(&h, "crashy", "crashy", "{\"config\": {\"config_hooks\": true}}");
    harness_start(&h);
    cr_assert(harness_wait_status(&h, "crashy", "ready", 15.0));
    cr_assert(harness_wait_state(&h, "crashy", "running", -1, 10.0));
    pid_t pid = harness_worker_pid(&h, "crashy");
    struct ctl_client c;
    client_open(&c);
    json_decref(ctl_client_expect_ok(&c, "{\"cmd\":\"config\",\"plugin\":\"crashy\","
                                         "\"config\":{\"config_hooks\":true,\"value\":5}}"));
    json_t *v = ctl_client_expect_ok(
        &c, "{\"cmd\":\"call\",\"plugin\":\"crashy\",\"method\":\"config_value\"}");
    cr_assert_eq(json_integer_value(v), 5, "applied");
    json_decref(v);
    cr_assert_eq(harness_worker_pid(&h, "crashy"), pid, "hot, without a restart");
    expect_error(&c,
                 "{\"cmd\":\"config\",\"plugin\":\"crashy\","
                 "\"config\":{\"config_hooks\":true,\"bad\":true,\"value\":7}}",
                 "invalid_request", "\"bad\" must not be true");
    json_t *shown = ctl_client_expect_ok(&c, "{\"cmd\":\"config\",\"plugin\":\"crashy\"}");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(shown, "effective"), "value")),
                 5, "a refused config changes nothing");
    json_decref(shown);
    v = ctl_client_expect_ok(
        &c, "{\"cmd\":\"call\",\"plugin\":\"crashy\",\"method\":\"config_value\"}");
    cr_assert_eq(json_integer_value(v), 5);
    json_decref(v);
    ctl_client_close(&c);
}

/* ------------------------------------------------------------ limits */

#define LINE_MAX_BYTES (1024 * 1024) /* CONTROL_LINE_MAX */

/* A `list` request of exactly `len` bytes (padded with JSON whitespace),
 * sent whole or in pieces of `piece` bytes with pauses between them. */
static void send_padded(struct ctl_client *c, size_t len, size_t piece)
{
    static const char req[] = "{\"id\":1,\"cmd\":\"list\"}";
    char *line = malloc(len + 2);
    cr_assert_not_null(line);
    memset(line, ' ', len);
    memcpy(line, req, sizeof(req) - 1);
    line[len] = '\n';
    for (size_t off = 0; off < len + 1;) {
        size_t n = piece && len + 1 - off > piece ? piece : len + 1 - off;
        ssize_t w = send(c->fd, line + off, n, MSG_NOSIGNAL);
        cr_assert_gt(w, 0, "send: %s", strerror(errno));
        off += (size_t)w;
        if (piece)
            usleep(2000);
    }
    free(line);
}

Test(control, the_line_limit_is_exact_whole_or_in_pieces)
{
    start_hello();
    struct ctl_client c;
    client_open(&c);
    static const size_t pieces[] = {0, 100000, 4096};
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        send_padded(&c, LINE_MAX_BYTES + 1, pieces[i]);
        json_t *answer = ctl_client_answer(&c);
        json_t *error = json_object_get(answer, "error");
        cr_assert_str_eq(json_string_value(json_object_get(error, "code")) ?: "ok", "line_too_long",
                         "a line of the limit + 1 byte (pieces of %zu) is refused", pieces[i]);
        cr_assert_not_null(strstr(json_string_value(json_object_get(error, "message")),
                                  "longer than 1048576 bytes"));
        json_decref(answer);

        send_padded(&c, LINE_MAX_BYTES, pieces[i]);
        answer = ctl_client_answer(&c);
        cr_assert(json_is_true(json_object_get(answer, "ok")),
                  "a line of exactly the limit (pieces of %zu) is a request: %s", pieces[i],
                  json_string_value(json_object_get(json_object_get(answer, "error"), "message")));
        cr_assert_eq(json_integer_value(json_object_get(answer, "id")), 1);
        json_decref(answer);
    }
    json_decref(ctl_client_expect_ok(&c, "{\"cmd\":\"list\"}"));
    ctl_client_close(&c);
}

#ifdef __SANITIZE_ADDRESS__
#define RSS_CAP_KIB (1024 * 1024) /* ASan's shadow and quarantine */
#else
#define RSS_CAP_KIB (256 * 1024)
#endif

Test(control, clients_that_pipeline_and_never_read_starve_neither_others_nor_health_checks)
{
    harness_add_plugin(&h, "hello", "hello",
                       "{\"limits\": {\"health_interval_ms\": 100, \"health_timeout_ms\": 1000}}");
    harness_start(&h);
    cr_assert(harness_wait_status(&h, "hello", "ready", 15.0));
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0));

    /* each bad client writes status requests as fast as plugd takes them
     * and reads nothing; plugd must stop reading them, not buffer for them */
    enum { BAD = 8, ROUNDS = 150 };
    static const char req[] = "{\"cmd\":\"status\"}\n";
    static char chunk[65536];
    size_t chunk_len = sizeof(chunk) / (sizeof(req) - 1) * (sizeof(req) - 1);
    for (size_t i = 0; i < chunk_len; i += sizeof(req) - 1)
        memcpy(chunk + i, req, sizeof(req) - 1);
    struct ctl_client bad[BAD], good;
    size_t off[BAD] = {0};
    for (int i = 0; i < BAD; i++) {
        client_open(&bad[i]);
        fcntl(bad[i].fd, F_SETFL, O_NONBLOCK);
    }
    client_open(&good);
    size_t sent = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < BAD; i++) {
            for (size_t budget = 256 * 1024; budget > 0;) {
                ssize_t w = send(bad[i].fd, chunk + off[i], chunk_len - off[i], MSG_NOSIGNAL);
                if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                    break;
                cr_assert_gt(w, 0, "plugd dropped a client that only sent requests: %s",
                             strerror(errno));
                off[i] = (off[i] + (size_t)w) % chunk_len;
                sent += (size_t)w;
                budget = (size_t)w >= budget ? 0 : budget - (size_t)w;
            }
        }
        json_t *list = ctl_client_expect_ok(&good, "{\"cmd\":\"status\",\"plugin\":\"hello\"}");
        json_t *st = json_array_get(list, 0);
        cr_assert_eq(json_integer_value(json_object_get(st, "restarts")), 0,
                     "round %d: the worker missed a health check (%s)", round,
                     json_string_value(json_object_get(st, "last_error")));
        cr_assert_str_eq(json_string_value(json_object_get(st, "state")), "running");
        json_decref(list);
    }
    long peak = harness_proc_kib(h.plugd_pid, "VmHWM");
    cr_assert_gt(peak, 0);
    cr_assert_lt(peak, RSS_CAP_KIB, "plugd's peak RSS %ld KiB (%zu bytes of requests sent)", peak,
                 sent);
    for (int i = 0; i < BAD; i++)
        ctl_client_close(&bad[i]);
    json_decref(ctl_client_expect_ok(&good, "{\"cmd\":\"list\"}"));
    ctl_client_close(&good);
}

Test(control, out_of_fds_plugd_refuses_connections_without_spinning_and_recovers)
{
    start_hello();
    pid_t pid = h.plugd_pid;
    struct rlimit old, low;
    cr_assert_eq(prlimit(pid, RLIMIT_NOFILE, NULL, &old), 0, "%s", strerror(errno));
    low = old;
    low.rlim_cur = (rlim_t)harness_all_fds(pid) + 2;
    cr_assert_eq(prlimit(pid, RLIMIT_NOFILE, &low, NULL), 0, "%s", strerror(errno));

    enum { BURST = 40 };
    struct ctl_client burst[BURST];
    for (int i = 0; i < BURST; i++)
        client_open(&burst[i]); /* the backlog holds what plugd cannot take */
    harness_sleep(&h, 0.3);
    double before = harness_cpu_seconds(pid);
    harness_sleep(&h, 1.0);
    double used = harness_cpu_seconds(pid) - before;
    cr_assert_geq(before, 0);
    cr_assert_lt(used, 0.3, "plugd used %.2f s of CPU in 1 s while out of fds", used);

    int refused = 0;
    for (int i = 0; i < BURST; i++) {
        struct pollfd p = {.fd = burst[i].fd, .events = POLLIN};
        if (poll(&p, 1, 0) != 1)
            continue; /* taken as a client: nothing to read */
        json_t *msg = ctl_client_read(&burst[i], 1.0);
        if (msg == NULL)
            continue;
        json_t *error = json_object_get(msg, "error");
        cr_assert_str_eq(json_string_value(json_object_get(error, "code")), "io_error");
        cr_assert_not_null(strstr(json_string_value(json_object_get(error, "message")),
                                  "out of file descriptors"));
        refused++;
        json_decref(msg);
        cr_assert_null(ctl_client_read(&burst[i], 5.0), "a refused connection is closed");
    }
    cr_assert_geq(refused, BURST / 2, "refused with a line: %d of %d", refused, BURST);
    for (int i = 0; i < BURST; i++)
        ctl_client_close(&burst[i]);

    /* the clients gone, plugd serves again under the same limit */
    struct ctl_client c;
    bool is_served = false;
    for (int tries = 0; tries < 50 && !is_served; tries++) {
        client_open(&c);
        ctl_client_send(&c, "{\"cmd\":\"list\"}");
        json_t *answer = ctl_client_read(&c, 5.0);
        is_served = answer != NULL && json_is_true(json_object_get(answer, "ok"));
        json_decref(answer);
        ctl_client_close(&c);
        if (!is_served)
            harness_sleep(&h, 0.1);
    }
    cr_assert(is_served, "plugd serves again once the clients closed");
    cr_assert_eq(prlimit(pid, RLIMIT_NOFILE, &old, NULL), 0);
}

#define MAX_CLIENTS 128 /* CONTROL_MAX_CLIENTS */

Test(control, clients_past_the_limit_are_refused_with_an_error_line)
{
    start_hello();
    static struct ctl_client cs[MAX_CLIENTS];
    for (int i = 0; i < MAX_CLIENTS; i++) {
        client_open(&cs[i]);
        json_decref(ctl_client_expect_ok(&cs[i], "{\"cmd\":\"list\"}"));
    }
    struct ctl_client extra;
    client_open(&extra);
    json_t *msg = ctl_client_read(&extra, 10.0);
    cr_assert_not_null(msg, "the client past the limit is told");
    json_t *error = json_object_get(msg, "error");
    cr_assert_str_eq(json_string_value(json_object_get(error, "code")), "buffer_full");
    cr_assert_not_null(strstr(json_string_value(json_object_get(error, "message")),
                              "at most 128 control clients"));
    json_decref(msg);
    cr_assert_null(ctl_client_read(&extra, 5.0), "and closed");
    ctl_client_close(&extra);

    ctl_client_close(&cs[0]);
    bool is_served = false;
    for (int tries = 0; tries < 50 && !is_served; tries++) {
        client_open(&extra);
        ctl_client_send(&extra, "{\"cmd\":\"list\"}");
        json_t *answer = ctl_client_read(&extra, 5.0);
        is_served = answer != NULL && json_is_true(json_object_get(answer, "ok"));
        json_decref(answer);
        ctl_client_close(&extra);
        if (!is_served)
            harness_sleep(&h, 0.05);
    }
    cr_assert(is_served, "a place left is taken again");
    for (int i = 1; i < MAX_CLIENTS; i++)
        ctl_client_close(&cs[i]);
}

/* ------------------------------------------------------------ startup, exit */

Test(control, a_second_plugd_on_the_same_state_is_refused_naming_the_first_and_changes_nothing)
{
    start_hello();
    pid_t worker = harness_worker_pid(&h, "hello");
    char sock[PATH_MAX], lock[PATH_MAX], log[PATH_MAX], plugins[PATH_MAX], state[PATH_MAX];
    socket_path(sock, sizeof(sock));
    snprintf(lock, sizeof(lock), "%s/state/plugd.lock", h.dir);
    snprintf(log, sizeof(log), "%s/second.log", h.dir);
    snprintf(plugins, sizeof(plugins), "%s/plugins", h.dir);
    snprintf(state, sizeof(state), "%s/state", h.dir);
    struct stat sock_before, sock_after;
    cr_assert_eq(stat(sock, &sock_before), 0);

    /* the same folders, as an operator starting it twice by mistake would */
    char bin[PATH_MAX];
    snprintf(bin, sizeof(bin), "%s/supervisor/plugd", getenv("PLUGD_BUILD_ROOT"));
    int e[2];
    cr_assert_eq(pipe2(e, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(e[1], 2);
        execl(bin, bin, "--plugins-dir", plugins, "--state-dir", state, "--log-file", log,
              (char *)NULL);
        _exit(127);
    }
    close(e[1]);
    char err[4096];
    harness_read_all(e[0], err, sizeof(err));
    cr_assert_eq(harness_exit_status(pid), 1, "the second plugd exits 1: %s", err);
    char want[64];
    snprintf(want, sizeof(want), "another plugd (pid %d)", (int)h.plugd_pid);
    cr_assert_not_null(strstr(err, want), "the error names the first plugd: %s", err);
    cr_assert_not_null(strstr(err, "plugd.lock"), "%s", err);

    cr_assert_eq(access(log, F_OK), -1, "the refused plugd did not even open its log");
    cr_assert_eq(stat(sock, &sock_after), 0, "the first's socket is still there");
    cr_assert_eq(sock_after.st_ino, sock_before.st_ino, "and it is the same file");
    FILE *f = fopen(lock, "r");
    cr_assert_not_null(f);
    int holder = 0;
    cr_assert_eq(fscanf(f, "%d", &holder), 1);
    fclose(f);
    cr_assert_eq(holder, h.plugd_pid, "the lock still names the first");
    cr_assert_eq(harness_worker_pid(&h, "hello"), worker, "the first's worker runs on");
    struct ctl_client c;
    client_open(&c);
    json_t *sum = ctl_client_expect_ok(
        &c, "{\"cmd\":\"call\",\"plugin\":\"hello\",\"method\":\"add\",\"params\":[1,2]}");
    cr_assert_eq(json_integer_value(sum), 3);
    json_decref(sum);
    ctl_client_close(&c);
}

/* Connects to plugd's socket as soon as it listens (plugd is starting). */
static void client_open_early(struct ctl_client *c)
{
    char path[PATH_MAX];
    socket_path(path, sizeof(path));
    for (int tries = 0; tries < 20000; tries++) {
        int fd = connect_to(path);
        if (fd >= 0) {
            *c = (struct ctl_client){.fd = fd};
            return;
        }
        usleep(500);
    }
    cr_assert_fail("plugd never listened on %s", path);
}

Test(control, commands_answer_while_restored_plugins_are_still_starting)
{
    enum { N = 64 };
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "p%02d", i);
        harness_add_plugin(&h, "hello", name, NULL);
    }
    harness_start(&h);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "p%02d", i);
        cr_assert(harness_wait_status(&h, name, "ready", 30.0), "%s", name);
    }
    harness_kill9(&h); /* its workers die with it */

    /* brought back from the registry: the socket answers before every
     * worker has even been started */
    harness_start(&h);
    setpriority(PRIO_PROCESS, (id_t)h.plugd_pid, 10); /* this test gets the CPU first */
    struct ctl_client c;
    client_open_early(&c);
    json_t *list = ctl_client_expect_ok(&c, "{\"cmd\":\"list\"}");
    cr_assert_eq(json_array_size(list), N, "every plugin is listed from the registry");
    int not_started = 0;
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p)
    {
        cr_assert_str_eq(json_string_value(json_object_get(p, "status")), "ready");
        not_started += strcmp(json_string_value(json_object_get(p, "state")) ?: "", "stopped") == 0;
    }
    json_decref(list);
    cr_assert_gt(not_started, 0, "list answered while workers were still to be started");
    for (int k = 0; k < N; k++) {
        snprintf(name, sizeof(name), "p%02d", k);
        cr_assert(harness_wait_state(&h, name, "running", -1, 30.0), "%s", name);
    }
    ctl_client_close(&c);
}

Test(control, plugctl_shutdown_exits_0_and_followers_get_the_last_records_then_exit_3)
{
    start_hello();
    int ev_out, ev_err, log_out, log_err;
    pid_t events = harness_plugctl_spawn(&h, (const char *[]){"--json", "events", "plugin.*", NULL},
                                         &ev_out, &ev_err);
    pid_t logs = harness_plugctl_spawn(
        &h, (const char *[]){"--json", "logs", "-n", "0", "-f", NULL}, &log_out, &log_err);
    /* with --json the answer comes first: then the follower is subscribed */
    struct ctl_client ev = {.fd = ev_out}, lg = {.fd = log_out};
    json_t *first = ctl_client_read(&ev, 10.0);
    cr_assert_not_null(json_object_get(first, "seq"), "events subscribed");
    json_decref(first);
    first = ctl_client_read(&lg, 10.0);
    cr_assert_not_null(json_object_get(first, "lines"), "logs followed");
    json_decref(first);

    char out[4096], err[4096];
    cr_assert_eq(plugctl((const char *[]){"shutdown", NULL}, out, sizeof(out), err, sizeof(err)), 0,
                 "shutdown is answered: %s", err);
    int status = -1;
    cr_assert_eq(waitpid(h.plugd_pid, &status, 0), h.plugd_pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    h.plugd_pid = 0;

    bool saw_stopped = false, saw_exit = false;
    json_t *msg;
    while ((msg = ctl_client_read(&ev, 10.0)) != NULL) {
        saw_stopped =
            saw_stopped ||
            (strcmp(json_string_value(json_object_get(msg, "name")) ?: "",
                    "plugin.worker_stopped") == 0 &&
             strcmp(json_string_value(json_object_get(msg, "plugin")) ?: "", "hello") == 0);
        json_decref(msg);
    }
    while ((msg = ctl_client_read(&lg, 10.0)) != NULL) {
        saw_exit = saw_exit || strcmp(json_string_value(json_object_get(msg, "message")) ?: "",
                                      "plugd stopped") == 0;
        json_decref(msg);
    }
    cr_assert(saw_stopped, "the events follower got hello's last plugin.worker_stopped");
    cr_assert(saw_exit, "the logs follower got plugd's last record");
    char ev_text[1024], log_text[1024];
    harness_read_all(ev_err, ev_text, sizeof(ev_text));
    harness_read_all(log_err, log_text, sizeof(log_text));
    cr_assert_eq(harness_exit_status(events), 3, "events: %s", ev_text);
    cr_assert_eq(harness_exit_status(logs), 3, "logs -f: %s", log_text);
    cr_assert_not_null(strstr(ev_text, "plugd closed the stream"), "%s", ev_text);
    cr_assert_not_null(strstr(log_text, "plugd closed the stream"), "%s", log_text);
    ctl_client_close(&ev);
    ctl_client_close(&lg);
}

Test(control, plugctl_shutdown_exits_0_with_no_worker_running)
{
    start_hello();
    char out[4096], err[4096];
    cr_assert_eq(
        plugctl((const char *[]){"disable", "hello", NULL}, out, sizeof(out), err, sizeof(err)), 0);
    cr_assert(harness_wait_state(&h, "hello", "stopped", -1, 20.0));
    cr_assert_eq(plugctl((const char *[]){"shutdown", NULL}, out, sizeof(out), err, sizeof(err)), 0,
                 "shutdown is answered before plugd exits: %s", err);
    int status = -1;
    cr_assert_eq(waitpid(h.plugd_pid, &status, 0), h.plugd_pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    h.plugd_pid = 0;
}
