/* The stream module (supervisor/stream.c), which every transport's
 * subscriptions and log following go through: in-process with sinks that
 * take, refuse or stop taking (suite stream), and through a real plugd's
 * control socket and host channel (suite stream_transports). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "control_client.h"
#include "logs.h"
#include "plugd_harness.h"
#include "stream.h"

/* ------------------------------------------------------------ a sink */

#define SEEN_MAX 4096

struct fake_sink {
    enum stream_room room;
    uint64_t seqs[SEEN_MAX]; /* events written, in order */
    char names[SEEN_MAX][48];
    int n_events;
    int n_logs;
    char last_log[256];
    struct stream *close_on_write; /* the client goes while being written to */
};

static enum stream_room fake_room(void *sink)
{
    return ((struct fake_sink *)sink)->room;
}

static int fake_write_event(void *sink, const struct ev_bus_event *e)
{
    struct fake_sink *f = sink;
    if (f->room == STREAM_GONE)
        return -1;
    cr_assert_lt(f->n_events, SEEN_MAX);
    f->seqs[f->n_events] = e->seq;
    snprintf(f->names[f->n_events], sizeof(f->names[0]), "%s", e->name);
    f->n_events++;
    if (f->close_on_write != NULL) {
        stream_close(f->close_on_write);
        f->room = STREAM_GONE;
        return -1;
    }
    return 0;
}

static int fake_write_log(void *sink, const json_t *rec)
{
    struct fake_sink *f = sink;
    f->n_logs++;
    snprintf(f->last_log, sizeof(f->last_log), "%s",
             json_string_value(json_object_get(rec, "message")) ?: "");
    return 0;
}

static const struct stream_sink_ops fake_ops = {
    .room = fake_room, .write_event = fake_write_event, .write_log = fake_write_log};

static void quiet_log(void)
{
    log_set_output(fopen("/dev/null", "w"));
}

TestSuite(stream, .init = quiet_log);

static void publish(struct ev_bus *b, int n)
{
    for (int i = 0; i < n; i++)
        ev_bus_publish(b, "plugin.x.tick", "x", NULL);
}

static void subscribe(struct stream *s, const char *pattern, int64_t since,
                      struct stream_start *start)
{
    struct plugd_error err;
    cr_assert_eq(stream_subscribe(s, pattern, NULL, since, start, &err), 0, "%s", err.message);
    stream_replay(s, since);
}

/* Every event from `first` on, once each, in order. */
static void expect_seqs_from(const struct fake_sink *f, uint64_t first, int n)
{
    cr_assert_eq(f->n_events, n, "%d events, not %d", f->n_events, n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(f->seqs[i], first + (uint64_t)i, "event %d is seq %llu, not %llu", i,
                     (unsigned long long)f->seqs[i], (unsigned long long)(first + i));
}

Test(stream, a_replay_joins_the_live_events_without_a_gap_or_a_duplicate)
{
    struct ev_bus *b = ev_bus_new();
    struct fake_sink f = {.room = STREAM_READY};
    struct stream s;
    stream_init(&s, b, &fake_ops, &f, "test", NULL);
    publish(b, 10);
    struct stream_start start;
    subscribe(&s, "plugin.*", 3, &start);
    cr_assert_eq(start.seq, 10, "the answer names the newest event");
    cr_assert(!start.has_gap);
    publish(b, 5);
    expect_seqs_from(&f, 4, 12); /* 4..10 replayed, 11..15 live */
    stream_close(&s);
    publish(b, 1);
    cr_assert_eq(f.n_events, 12, "nothing after close");
    ev_bus_free(b);
}

Test(stream, a_busy_sink_gets_the_replay_and_the_live_events_later_in_order)
{
    struct ev_bus *b = ev_bus_new();
    struct fake_sink f = {.room = STREAM_BUSY};
    struct stream s;
    stream_init(&s, b, &fake_ops, &f, "test", NULL);
    publish(b, 10);
    struct stream_start start;
    subscribe(&s, "*", 0, &start);
    publish(b, 5);
    cr_assert_eq(f.n_events, 0, "a busy sink is not written to");
    f.room = STREAM_READY;
    stream_drain(&s);
    expect_seqs_from(&f, 1, 15);
    ev_bus_free(b);
}

Test(stream, a_forgotten_past_is_a_gap_named_in_the_answer)
{
    struct ev_bus *b = ev_bus_new();
    struct fake_sink f = {.room = STREAM_READY};
    struct stream s;
    stream_init(&s, b, &fake_ops, &f, "test", NULL);
    publish(b, EV_BUS_HISTORY + 10);
    struct stream_start start;
    subscribe(&s, "*", 5, &start);
    cr_assert(start.has_gap);
    expect_seqs_from(&f, 11, EV_BUS_HISTORY); /* the oldest kept, on */
    stream_close(&s);
    ev_bus_free(b);
}

Test(stream, a_sink_that_stops_taking_is_dropped_with_a_notice_and_starves_no_other)
{
    struct ev_bus *b = ev_bus_new();
    struct fake_sink slow = {.room = STREAM_BUSY}, fast = {.room = STREAM_READY};
    struct stream s_slow, s_fast;
    stream_init(&s_slow, b, &fake_ops, &slow, "slow", NULL);
    stream_init(&s_fast, b, &fake_ops, &fast, "fast", NULL);
    struct stream_start start;
    subscribe(&s_slow, "*", -1, &start);
    subscribe(&s_fast, "*", -1, &start);
    publish(b, EV_BUS_QUEUE + 1);
    expect_seqs_from(&fast, 1, EV_BUS_QUEUE + 1);
    cr_assert_eq(slow.n_events, 1, "only the notice reaches the busy sink");
    cr_assert_str_eq(slow.names[0], "subscriber.overflow");
    cr_assert_eq(slow.seqs[0], EV_BUS_QUEUE + 1, "the notice carries the newest seq");
    cr_assert_null(s_slow.sub, "its subscription ended");
    /* the stream stays: it subscribes again and resumes */
    slow.room = STREAM_READY;
    subscribe(&s_slow, "*", EV_BUS_QUEUE - 1, &start);
    cr_assert_eq(slow.n_events, 3, "the notice, then seqs %d and %d", EV_BUS_QUEUE,
                 EV_BUS_QUEUE + 1);
    publish(b, 1);
    cr_assert_eq(slow.n_events, 4);
    cr_assert_eq(fast.n_events, EV_BUS_QUEUE + 2);
    stream_close(&s_slow);
    stream_close(&s_fast);
    ev_bus_free(b);
}

Test(stream, a_client_that_goes_while_written_to_ends_its_stream_safely)
{
    struct ev_bus *b = ev_bus_new();
    struct fake_sink f = {.room = STREAM_READY}, other = {.room = STREAM_READY};
    struct stream s, s_other;
    stream_init(&s, b, &fake_ops, &f, "going", NULL);
    stream_init(&s_other, b, &fake_ops, &other, "other", NULL);
    f.close_on_write = &s;
    struct stream_start start;
    subscribe(&s, "*", -1, &start);
    subscribe(&s_other, "*", -1, &start);
    publish(b, 3);
    cr_assert_eq(f.n_events, 1);
    cr_assert_eq(other.n_events, 3);
    struct ev_bus_stats st;
    ev_bus_stats(b, &st);
    cr_assert_eq(st.subscribers, 1);
    ev_bus_free(b);
}

Test(stream, the_seventeenth_pattern_is_limit_reached_and_changes_nothing)
{
    struct ev_bus *b = ev_bus_new();
    struct fake_sink f = {.room = STREAM_READY};
    struct stream s;
    stream_init(&s, b, &fake_ops, &f, "test", NULL);
    struct stream_start start;
    for (int i = 0; i < EV_BUS_MAX_PATTERNS; i++)
        subscribe(&s, "a.*", -1, &start);
    struct plugd_error err;
    cr_assert_eq(stream_subscribe(&s, "plugin.*", NULL, -1, &start, &err), -1);
    cr_assert_eq(err.code, PLUGD_E_LIMIT_REACHED);
    cr_assert_not_null(strstr(err.message, "16"), "%s", err.message);
    publish(b, 1);
    cr_assert_eq(f.n_events, 0, "plugin.* was not added");
    stream_close(&s);
    ev_bus_free(b);
}

Test(stream, followed_logs_are_filtered_by_plugin_and_dropped_while_the_sink_is_busy)
{
    struct ev_bus *b = ev_bus_new();
    struct fake_sink hello = {.room = STREAM_READY}, all = {.room = STREAM_BUSY};
    struct stream s_hello, s_all;
    stream_init(&s_hello, b, &fake_ops, &hello, "hello", NULL);
    stream_init(&s_all, b, &fake_ops, &all, "all", NULL);
    struct plugd_error err;
    cr_assert_eq(stream_follow_logs(&s_hello, "hello", &err), 0);
    cr_assert_eq(stream_follow_logs(&s_all, NULL, &err), 0);
    log_plugd("info", "hello", "one");
    log_plugd("info", "other", "two");
    log_plugd("info", NULL, "three");
    cr_assert_eq(hello.n_logs, 1);
    cr_assert_str_eq(hello.last_log, "one");
    cr_assert_eq(all.n_logs, 0, "a busy sink loses log records, nothing waits");
    all.room = STREAM_READY;
    log_plugd("info", NULL, "four");
    cr_assert_eq(all.n_logs, 1, "then it gets the new ones");
    cr_assert_eq(hello.n_logs, 1);
    stream_close(&s_hello);
    log_plugd("info", "hello", "five");
    cr_assert_eq(hello.n_logs, 1, "nothing after close");
    stream_close(&s_all);
    ev_bus_free(b);
}

Test(stream, the_65th_log_follower_is_limit_reached_and_a_freed_place_is_taken_again)
{
    struct ev_bus *b = ev_bus_new();
    static struct fake_sink f[LOG_LISTENERS + 1];
    static struct stream s[LOG_LISTENERS + 1];
    struct plugd_error err;
    for (int i = 0; i <= LOG_LISTENERS; i++) {
        f[i].room = STREAM_READY;
        stream_init(&s[i], b, &fake_ops, &f[i], "follower", NULL);
    }
    for (int i = 0; i < LOG_LISTENERS; i++)
        cr_assert_eq(stream_follow_logs(&s[i], NULL, &err), 0);
    cr_assert_eq(stream_follow_logs(&s[LOG_LISTENERS], NULL, &err), -1);
    cr_assert_eq(err.code, PLUGD_E_LIMIT_REACHED);
    cr_assert_not_null(strstr(err.message, "64"), "%s", err.message);
    log_plugd("info", NULL, "heard");
    for (int i = 0; i < LOG_LISTENERS; i++)
        cr_assert_eq(f[i].n_logs, 1, "follower %d", i);
    cr_assert_eq(f[LOG_LISTENERS].n_logs, 0);
    stream_close(&s[0]);
    cr_assert_eq(stream_follow_logs(&s[LOG_LISTENERS], NULL, &err), 0, "%s", err.message);
    for (int i = 1; i <= LOG_LISTENERS; i++)
        stream_close(&s[i]);
    ev_bus_free(b);
}

/* ------------------------------------------------------------ real transports */

HARNESS_TEST_SUITE(stream_transports, 120);

static void start_plugins(const char *example, const char *name, const char *overrides)
{
    harness_add_plugin(&h, example, name, overrides);
    harness_start(&h);
    cr_assert(harness_wait_status(&h, name, "ready", 15.0));
    cr_assert(harness_wait_state(&h, name, "running", -1, 10.0));
}

static int count_named(json_t *events, const char *name)
{
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e) n +=
        strcmp(json_string_value(json_object_get(e, "name")), name) == 0;
    return n;
}

Test(stream_transports, one_subscription_reads_the_same_on_the_control_socket_and_the_host_channel)
{
    start_plugins("hello", "hello", NULL);
    static const char sub[] = "{\"cmd\":\"subscribe\",\"pattern\":\"plugin.*\","
                              "\"filter\":{\"plugin\":\"hello\"},\"since\":0}";
    struct ctl_client c, op;
    ctl_client_open(&c, &h);
    ctl_client_open(&op, &h);
    json_t *control_start = ctl_client_expect_ok(&c, sub);
    json_t *arg = json_pack("{s:s, s:{s:s}, s:i}", "pattern", "plugin.*", "filter", "plugin",
                            "hello", "since", 0);
    json_t *host_start = NULL;
    cr_assert_eq(harness_command(&h, "subscribe", arg, &host_start, NULL, 0), PLUGD_OK);
    json_decref(arg);
    cr_assert(json_equal(control_start, host_start), "the same answer on both");
    json_decref(control_start);
    json_decref(host_start);

    json_decref(ctl_client_expect_ok(&op, "{\"cmd\":\"disable\",\"plugin\":\"hello\"}"));
    json_decref(ctl_client_expect_ok(&op, "{\"cmd\":\"enable\",\"plugin\":\"hello\"}"));
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 10.0));
    /* the first start (replayed) and the one after enable (live) */
    json_t *on_control = json_array();
    while (count_named(on_control, "plugin.worker_started") < 2) {
        json_t *msg = ctl_client_read(&c, 10.0);
        cr_assert_not_null(msg, "the control stream stopped");
        json_t *e = json_object_get(msg, "event");
        cr_assert_not_null(e, "only events stream here");
        json_array_append(on_control, e);
        json_decref(msg);
    }
    while (count_named(h.events, "plugin.worker_started") < 2)
        cr_assert_geq(harness_wait_event(&h, "plugin.worker_started", "hello",
                                         json_array_size(h.events), 10.0),
                      0, "the host stream stopped");
    size_t n = json_array_size(on_control);
    cr_assert_geq(json_array_size(h.events), n);
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(on_control, i), *b = json_array_get(h.events, i);
        json_int_t seq = json_integer_value(json_object_get(a, "seq"));
        cr_assert_eq(seq, (json_int_t)i + 1, "every event once, in order, from 1 (got %lld at %zu)",
                     (long long)seq, i);
        cr_assert_eq(json_integer_value(json_object_get(b, "seq")), seq);
        cr_assert_str_eq(json_string_value(json_object_get(a, "name")),
                         json_string_value(json_object_get(b, "name")));
        cr_assert(json_equal(json_object_get(a, "payload"), json_object_get(b, "payload")));
    }
    json_decref(on_control);
    ctl_client_close(&c);
    ctl_client_close(&op);
}

Test(stream_transports, a_subscriber_that_falls_behind_gets_every_event_once_it_reads)
{
    start_plugins("crashy", "flood", "{\"capabilities\": [\"events.emit\"]}");
    struct ctl_client behind, op;
    ctl_client_open(&behind, &h);
    ctl_client_open(&op, &h);
    int small = 4096;
    setsockopt(behind.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    json_decref(
        ctl_client_expect_ok(&behind, "{\"cmd\":\"subscribe\",\"pattern\":\"plugin.flood.*\"}"));
    /* ~2.4 MiB: past the 1 MiB of unsent output, the rest waits in its
     * queue of the bus (under its 1,024 events) */
    enum { N = 1200 };
    json_t *n = ctl_client_expect_ok(&op, "{\"cmd\":\"call\",\"plugin\":\"flood\",\"method\":"
                                          "\"emit_many\",\"params\":[{\"n\":1200,\"size\":2000}]}");
    cr_assert_eq(json_integer_value(n), N);
    json_decref(n);
    for (int i = 0; i < N; i++) {
        json_t *msg = ctl_client_read(&behind, 10.0);
        cr_assert_not_null(msg, "the stream stalled after %d of %d events", i, N);
        json_t *e = json_object_get(msg, "event");
        cr_assert_str_eq(json_string_value(json_object_get(e, "name")), "plugin.flood.flood");
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(e, "payload"), "i")), i);
        json_decref(msg);
    }
    cr_assert_eq(harness_log_count(&h, "event subscription dropped"), 0);
    ctl_client_close(&behind);
    ctl_client_close(&op);
}

Test(stream_transports, the_65th_log_follower_gets_limit_reached_and_the_others_keep_receiving)
{
    start_plugins("hello", "hello", NULL);
    static const char follow[] = "{\"cmd\":\"logs\",\"lines\":0,\"follow\":true}";
    static struct ctl_client f[LOG_LISTENERS + 1];
    struct ctl_client op;
    ctl_client_open(&op, &h);
    for (int i = 0; i <= LOG_LISTENERS; i++)
        ctl_client_open(&f[i], &h);
    for (int i = 0; i < LOG_LISTENERS; i++)
        json_decref(ctl_client_expect_ok(&f[i], follow));
    json_t *answer = ctl_client_request(&f[LOG_LISTENERS], follow);
    json_t *error = json_object_get(answer, "error");
    cr_assert_str_eq(json_string_value(json_object_get(error, "code")), "limit_reached");
    const char *message = json_string_value(json_object_get(error, "message"));
    cr_assert_not_null(strstr(message, "64"), "the message names the limit: %s", message);
    json_decref(answer);

    json_decref(ctl_client_expect_ok(
        &op, "{\"cmd\":\"disable\",\"plugin\":\"hello\",\"reason\":\"look\"}"));
    for (int i = 0; i < LOG_LISTENERS; i++) {
        bool found = false;
        for (int k = 0; k < 200 && !found; k++) {
            json_t *msg = ctl_client_read(&f[i], 10.0);
            cr_assert_not_null(msg, "follower %d got no record of the disable", i);
            json_t *rec = json_object_get(msg, "log");
            cr_assert_not_null(rec, "follower %d: only log records stream here", i);
            found = strstr(json_string_value(json_object_get(rec, "message")) ?: "", "disable");
            json_decref(msg);
        }
        cr_assert(found, "follower %d got the disable record", i);
    }
    /* a follower that leaves frees its place */
    ctl_client_close(&f[0]);
    json_t *late = NULL;
    for (int k = 0; k < 100; k++) {
        json_t *a = ctl_client_request(&f[LOG_LISTENERS], follow);
        bool is_ok = json_is_true(json_object_get(a, "ok"));
        json_decref(a);
        if (is_ok) {
            late = json_true();
            break;
        }
        harness_sleep(&h, 0.02); /* plugd sees the close on its next turn */
    }
    cr_assert_not_null(late, "the place the first follower left is taken");
    for (int i = 1; i <= LOG_LISTENERS; i++)
        ctl_client_close(&f[i]);
    ctl_client_close(&op);
}
