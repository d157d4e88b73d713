/* Connections over real socketpairs and pipes, both ends on one loop. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "plugd/ipc.h"

static struct ev_loop *loop;
static struct ipc_conn *client, *server;
static int raw_peer = -1; /* the server's fd, when a test writes raw bytes */

/* What the server end does with requests. */
enum server_mode { ECHO, HOLD, SILENT };
static enum server_mode mode;
static uint32_t held[20000];
static size_t n_held;

struct tally {
    int replies, errors, timeouts, closed;
    enum plugd_errc last_code;
    struct plugd_error last_error;
    bool mismatch;
};
static struct tally t;
static int closes;
static struct plugd_error close_why;
static int drains;

static void on_server_request(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    (void)ud;
    if (mode == ECHO)
        ipc_conn_reply(c, msg->msgid, ipc_param(msg, 0), NULL);
    else if (mode == HOLD)
        held[n_held++] = msg->msgid;
}

static void on_client_close(struct ipc_conn *c, const struct plugd_error *why, void *ud)
{
    (void)c;
    (void)ud;
    closes++;
    if (why != NULL)
        close_why = *why;
}

static void on_client_drain(struct ipc_conn *c, void *ud)
{
    (void)c;
    (void)ud;
    drains++;
}

static void on_reply(struct ipc_conn *c, const struct plugd_error *err,
                     const msgpack_object *result, void *ud)
{
    (void)c;
    if (err == NULL) {
        t.replies++;
        /* Every call sent its own number; the answer must be that number. */
        if (result->type != MSGPACK_OBJECT_POSITIVE_INTEGER || result->via.u64 != (uintptr_t)ud)
            t.mismatch = true;
        return;
    }
    t.errors++;
    t.last_code = err->code;
    t.last_error = *err;
    t.timeouts += err->code == PLUGD_E_TIMEOUT;
    t.closed += err->code == PLUGD_E_CONNECTION_CLOSED;
}

static void on_cap(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(l, EVBREAK_ONE);
}

/* Runs the loop until *counter reaches `target`, for at most `seconds`. */
static bool run_until(const int *counter, int target, double seconds)
{
    ev_timer cap;
    ev_timer_init(&cap, on_cap, seconds, 0.);
    ev_timer_start(loop, &cap);
    while (*counter < target && ev_is_active(&cap))
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &cap);
    return *counter >= target;
}

/* Runs the loop until the server holds `n` requests (at most 10 s). */
static void wait_for_held(size_t n)
{
    int never = 0;
    for (int i = 0; i < 1000 && n_held < n; i++)
        run_until(&never, 1, 0.01);
    cr_assert_eq(n_held, n, "the server received %zu of %zu requests", n_held, n);
}

static void make_pair(const struct ipc_options *opt, bool raw_server)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct ipc_handlers ch = {.on_close = on_client_close, .on_drain = on_client_drain};
    struct plugd_error err;
    client = ipc_conn_new(loop, sv[0], sv[0], opt, &ch, NULL, &err);
    cr_assert_not_null(client, "%s", err.message);
    if (raw_server) {
        raw_peer = sv[1];
        return;
    }
    struct ipc_handlers sh = {.on_request = on_server_request};
    server = ipc_conn_new(loop, sv[1], sv[1], opt, &sh, NULL, &err);
    cr_assert_not_null(server, "%s", err.message);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_DFL); /* the library must not need it ignored */
    loop = ev_loop_new(EVFLAG_AUTO);
    mode = ECHO;
    n_held = 0;
    memset(&t, 0, sizeof(t));
    closes = drains = 0;
    plugd_error_clear(&close_why);
}

static void teardown(void)
{
    ipc_conn_free(client);
    ipc_conn_free(server);
    client = server = NULL;
    if (raw_peer >= 0)
        close(raw_peer);
    raw_peer = -1;
    ev_loop_destroy(loop);
}

TestSuite(conn, .init = setup, .fini = teardown, .timeout = 60);

static int call_number(struct ipc_conn *c, uint32_t n, double timeout)
{
    msgpack_packer *pk = ipc_conn_begin_call(c, "echo", timeout, on_reply, (void *)(uintptr_t)n);
    msgpack_pack_array(pk, 1);
    msgpack_pack_uint32(pk, n);
    struct plugd_error err;
    return ipc_conn_end(c, &err);
}

Test(conn, call_is_answered)
{
    make_pair(NULL, false);
    cr_assert_eq(call_number(client, 42, 5), 0);
    cr_assert(run_until(&t.replies, 1, 5));
    cr_assert_not(t.mismatch);
    cr_assert_eq(ipc_conn_calls_pending(client), 0);
}

static int notes;
static void on_note(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    (void)c;
    (void)ud;
    if (ipc_str_equals(msg->method, msg->method_len, "tick") &&
        ipc_param(msg, 0)->via.u64 == (uint64_t)notes)
        notes++;
}

Test(conn, notifications_arrive_in_order)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct ipc_handlers sh = {.on_notify = on_note};
    client = ipc_conn_new(loop, sv[0], sv[0], NULL, NULL, NULL, NULL);
    server = ipc_conn_new(loop, sv[1], sv[1], NULL, &sh, NULL, NULL);
    notes = 0;
    for (int i = 0; i < 100; i++) {
        msgpack_packer *pk = ipc_conn_begin_notify(client, "tick");
        msgpack_pack_array(pk, 1);
        msgpack_pack_int(pk, i);
        cr_assert_eq(ipc_conn_end(client, NULL), 0);
    }
    cr_assert(run_until(&notes, 100, 5));
}

/* A message begun and cancelled is never sent and its call never
 * answered; the next one goes out whole. */
Test(conn, a_cancelled_call_is_not_sent_and_never_completes)
{
    make_pair(NULL, false);
    mode = HOLD;
    msgpack_packer *pk = ipc_conn_begin_call(client, "echo", 5, on_reply, (void *)(uintptr_t)1);
    msgpack_pack_array(pk, 1);
    ipc_conn_cancel(client);
    cr_assert_eq(ipc_conn_calls_pending(client), 0);
    cr_assert_eq(ipc_conn_out_pending(client), 0);
    cr_assert_eq(call_number(client, 2, 5), 0);
    wait_for_held(1);
    mode = ECHO;
    ipc_conn_reply(server, held[0], NULL, NULL);
    int never = 0;
    run_until(&never, 1, 0.2);
    cr_expect_eq(t.replies + t.errors, 1, "only the call that was ended is answered");
}

Test(conn, ten_thousand_pipelined_calls_answered_out_of_order)
{
    make_pair(NULL, false);
    mode = HOLD;
    for (uint32_t i = 0; i < 10000; i++)
        cr_assert_eq(call_number(client, i, 30), 0);
    wait_for_held(10000);
    /* Answer in a shuffled order; each answer echoes the msgid's call number,
     * which the server learns from the request order (msgid - first). */
    srand(7);
    for (size_t i = n_held - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        uint32_t tmp = held[i];
        held[i] = held[j];
        held[j] = tmp;
    }
    for (size_t i = 0; i < n_held; i++) {
        msgpack_packer *pk = ipc_conn_begin_reply(server, held[i]);
        msgpack_pack_uint32(pk, held[i] - 1); /* msgids start at 1, numbers at 0 */
        cr_assert_eq(ipc_conn_end(server, NULL), 0);
    }
    cr_assert(run_until(&t.replies, 10000, 20), "only %d replies", t.replies);
    cr_assert_not(t.mismatch, "a reply went to the wrong call");
    cr_assert_eq(t.errors, 0);
    cr_assert_eq(ipc_conn_calls_pending(client), 0);
    /* Exactly once: nothing more arrives. */
    run_until(&t.replies, 10001, 0.1);
    cr_assert_eq(t.replies, 10000);
}

Test(conn, deadline_expires_once_and_a_late_reply_is_counted)
{
    make_pair(NULL, false);
    mode = HOLD;
    cr_assert_eq(call_number(client, 1, 0.05), 0);
    cr_assert(run_until(&t.timeouts, 1, 5));
    cr_assert_eq(t.errors, 1);
    cr_assert_eq(ipc_conn_stats(client)->calls_timed_out, 1);
    ipc_conn_reply(server, held[0], NULL, NULL);
    int never = 0;
    for (int i = 0; i < 500 && ipc_conn_stats(client)->late_replies == 0; i++)
        run_until(&never, 1, 0.01);
    cr_assert_eq(ipc_conn_stats(client)->late_replies, 1);
    cr_assert_eq(t.errors, 1);
    cr_assert_eq(t.replies, 0);
}

Test(conn, peer_close_fails_every_pending_call_once)
{
    make_pair(NULL, false);
    mode = HOLD;
    for (uint32_t i = 0; i < 50; i++)
        call_number(client, i, 30);
    wait_for_held(50);
    ipc_conn_free(server);
    server = NULL;
    cr_assert(run_until(&t.closed, 50, 5));
    cr_assert_eq(t.errors, 50);
    cr_assert_eq(closes, 1);
    cr_assert_eq(close_why.code, PLUGD_E_CONNECTION_CLOSED);
    cr_assert_not(ipc_conn_is_open(client));
    /* Calls on a closed connection are refused at once. */
    cr_assert_eq(call_number(client, 99, 1), -1);
    cr_assert_eq(t.errors, 50);
}

static void expect_close_from_raw(const void *bytes, size_t len, enum plugd_errc code)
{
    make_pair(NULL, true);
    cr_assert_eq(write(raw_peer, bytes, len), (ssize_t)len);
    cr_assert(run_until(&closes, 1, 5));
    cr_assert_eq(close_why.code, code, "%s: %s", plugd_errc_name(close_why.code),
                 close_why.message);
}

Test(conn, malformed_bytes_close_the_connection)
{
    expect_close_from_raw("\x94\x00\x01\xc1", 4, PLUGD_E_MALFORMED_MESSAGE);
}

Test(conn, wrong_shape_closes_the_connection)
{
    expect_close_from_raw("\x93\x07\xa1m\x90", 5, PLUGD_E_INVALID_MESSAGE);
}

Test(conn, oversize_closes_the_connection_and_fails_pending_calls)
{
    struct ipc_options opt;
    ipc_options_default(&opt);
    opt.max_message = 4096;
    make_pair(&opt, true);
    call_number(client, 1, 30);
    ipc_conn_flush(client, NULL);
    static const char huge_bin[] = "\x94\x01\x01\xc0\xc6\x00\x10\x00\x00"; /* bin of 1 MiB */
    cr_assert_eq(write(raw_peer, huge_bin, 9), 9);
    cr_assert(run_until(&closes, 1, 5));
    cr_assert_eq(close_why.code, PLUGD_E_MESSAGE_TOO_LARGE);
    cr_assert_eq(t.closed, 1);
}

Test(conn, full_output_buffer_refuses_then_drains_intact)
{
    struct ipc_options opt;
    ipc_options_default(&opt);
    opt.out_high_water = 64 << 10;
    opt.out_limit = 1 << 20;
    make_pair(&opt, true); /* the raw peer does not read yet */
    static char payload[16 << 10];
    int sent = 0;
    struct plugd_error err = {0};
    for (;;) {
        msgpack_packer *pk = ipc_conn_begin_notify(client, "blob");
        msgpack_pack_array(pk, 1);
        msgpack_pack_bin_with_body(pk, payload, sizeof(payload));
        if (ipc_conn_end(client, &err) < 0)
            break;
        sent++;
        ipc_conn_flush(client, NULL);
        cr_assert_lt(sent, 10000, "the output buffer is not bounded");
    }
    cr_assert_eq(err.code, PLUGD_E_BUFFER_FULL, "%s", err.message);
    cr_assert(ipc_conn_is_congested(client));
    cr_assert(ipc_conn_is_open(client), "a full buffer must not close the connection");
    cr_assert_leq(ipc_conn_out_pending(client), opt.out_limit);

    /* Now the peer reads: every message arrives whole, then on_drain runs. */
    struct ipc_decoder *dec = ipc_decoder_new(0);
    int received = 0;
    for (int rounds = 0; received < sent; rounds++) {
        cr_assert_lt(rounds, 100000, "received %d of %d messages", received, sent);
        run_until(&drains, 1 << 30, 0.01);
        char buf[65536];
        ssize_t n = read(raw_peer, buf, sizeof(buf));
        if (n > 0)
            ipc_decoder_feed(dec, buf, (size_t)n, NULL);
        struct ipc_message m;
        while (ipc_decoder_next(dec, &m, &err) == 1) {
            cr_assert_eq(ipc_param(&m, 0)->via.bin.size, sizeof(payload));
            received++;
        }
    }
    ipc_decoder_free(dec);
    cr_assert_eq(received, sent);
    cr_assert_geq(drains, 1);
    cr_assert_not(ipc_conn_is_congested(client));
}

Test(conn, msgids_wrap_past_uint32_max)
{
    struct ipc_options opt;
    ipc_options_default(&opt);
    opt.first_msgid = UINT32_MAX - 5;
    make_pair(&opt, false);
    for (uint32_t i = 0; i < 20; i++)
        call_number(client, i, 5);
    cr_assert(run_until(&t.replies, 20, 5));
    cr_assert_not(t.mismatch);
}

Test(conn, msgid_still_in_use_is_skipped_after_wrap)
{
    struct ipc_options opt;
    ipc_options_default(&opt);
    opt.first_msgid = UINT32_MAX - 1;
    make_pair(&opt, false);
    mode = HOLD;
    call_number(client, 1, 30); /* msgid UINT32_MAX - 1, left pending */
    wait_for_held(1);
    mode = ECHO;
    /* The next 2^32 - 1 ids would eventually reach it again; the table must
     * skip it rather than reuse it. Exercise the wrap region densely. */
    for (uint32_t i = 0; i < 200; i++)
        call_number(client, i + 100, 5);
    cr_assert(run_until(&t.replies, 200, 5));
    cr_assert_eq(ipc_conn_calls_pending(client), 1);
    ipc_conn_reply(server, held[0], NULL, NULL);
    run_until(&t.errors, 1, 0.2);
    cr_assert_eq(ipc_conn_calls_pending(client), 0);
}

static void free_from_reply(struct ipc_conn *c, const struct plugd_error *err,
                            const msgpack_object *result, void *ud)
{
    (void)result;
    (void)ud;
    if (err == NULL) {
        ipc_conn_free(c);
        client = NULL;
    }
    t.replies++;
}

Test(conn, free_inside_a_reply_callback_is_safe)
{
    make_pair(NULL, false);
    for (int i = 0; i < 3; i++) {
        msgpack_packer *pk = ipc_conn_begin_call(client, "echo", 5, free_from_reply, NULL);
        msgpack_pack_array(pk, 1);
        msgpack_pack_int(pk, i);
        ipc_conn_end(client, NULL);
    }
    cr_assert(run_until(&t.replies, 1, 5));
    /* The other two complete with connection_closed inside the free. */
    cr_assert_eq(t.replies, 3);
    cr_assert_null(client);
}

static void free_from_close(struct ipc_conn *c, const struct plugd_error *why, void *ud)
{
    (void)why;
    (void)ud;
    ipc_conn_free(c);
    client = NULL;
    closes++;
}

Test(conn, free_inside_on_close_is_safe)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct ipc_handlers ch = {.on_close = free_from_close};
    client = ipc_conn_new(loop, sv[0], sv[0], NULL, &ch, NULL, NULL);
    call_number(client, 1, 30);
    close(sv[1]);
    cr_assert(run_until(&closes, 1, 5));
    cr_assert_null(client);
}

Test(conn, pipe_pair_works_like_a_socketpair)
{
    int a[2], b[2];
    cr_assert_eq(pipe2(a, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(b, O_CLOEXEC), 0);
    struct ipc_handlers sh = {.on_request = on_server_request};
    client = ipc_conn_new(loop, a[0], b[1], NULL, NULL, NULL, NULL);
    server = ipc_conn_new(loop, b[0], a[1], NULL, &sh, NULL, NULL);
    for (uint32_t i = 0; i < 100; i++)
        call_number(client, i, 5);
    cr_assert(run_until(&t.replies, 100, 5));
    cr_assert_not(t.mismatch);
}

Test(conn, writing_to_a_closed_pipe_does_not_raise_sigpipe)
{
    int a[2], b[2];
    cr_assert_eq(pipe2(a, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(b, O_CLOEXEC), 0);
    struct ipc_handlers ch = {.on_close = on_client_close};
    client = ipc_conn_new(loop, a[0], b[1], NULL, &ch, NULL, NULL);
    close(b[0]); /* nobody reads what the client writes */
    cr_assert_eq(call_number(client, 1, 5), 0);
    struct plugd_error err;
    cr_assert_eq(ipc_conn_flush(client, &err), -1);
    cr_assert_eq(err.code, PLUGD_E_IO);
    cr_assert_eq(t.closed, 1); /* the pending call failed, the process lives */
    close(a[1]);
}

Test(conn, writing_to_a_closed_socket_does_not_raise_sigpipe)
{
    make_pair(NULL, true);
    close(raw_peer);
    raw_peer = -1;
    call_number(client, 1, 5);
    struct plugd_error err;
    cr_assert_eq(ipc_conn_flush(client, &err), -1);
    cr_assert_eq(closes, 1);
}

Test(conn, remote_error_keeps_a_known_code)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    client = ipc_conn_new(loop, sv[0], sv[0], NULL, NULL, NULL, NULL);
    server = ipc_conn_new(loop, sv[1], sv[1], NULL, NULL, NULL, NULL); /* serves nothing */
    call_number(client, 1, 5);
    cr_assert(run_until(&t.errors, 1, 5));
    cr_assert_eq(t.last_code, PLUGD_E_METHOD_NOT_FOUND);
}

/* The raw peer answers call 1 (the client's first msgid) with `error`. */
static void answer_raw_error(void (*pack_error)(msgpack_packer *pk))
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, IPC_RESPONSE);
    msgpack_pack_uint32(&pk, 1);
    pack_error(&pk);
    msgpack_pack_nil(&pk);
    cr_assert_eq(write(raw_peer, sb.data, sb.size), (ssize_t)sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void pack_neovim_error(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, 0);
    ipc_pack_str(pk, "Vim:E492: Not an editor command: foo");
}

Test(conn, an_array_error_keeps_its_content)
{
    make_pair(NULL, true);
    call_number(client, 1, 5);
    answer_raw_error(pack_neovim_error);
    cr_assert(run_until(&t.errors, 1, 5));
    cr_assert_eq(t.last_code, PLUGD_E_REMOTE);
    cr_assert_str_eq(t.last_error.message, "[0, \"Vim:E492: Not an editor command: foo\"]");
    cr_assert(t.last_error.is_from_peer);
}

static void pack_int_error(msgpack_packer *pk)
{
    msgpack_pack_int(pk, -42);
}

Test(conn, an_int_error_keeps_its_content)
{
    make_pair(NULL, true);
    call_number(client, 1, 5);
    answer_raw_error(pack_int_error);
    cr_assert(run_until(&t.errors, 1, 5));
    cr_assert_eq(t.last_code, PLUGD_E_REMOTE);
    cr_assert_str_eq(t.last_error.message, "-42");
}

static void pack_forged_timeout(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    ipc_pack_str(pk, "code");
    ipc_pack_str(pk, "timeout");
    ipc_pack_str(pk, "message");
    ipc_pack_str(pk, "my own deadline");
}

Test(conn, a_peers_code_is_marked_as_the_peers)
{
    make_pair(NULL, true);
    call_number(client, 1, 5);
    answer_raw_error(pack_forged_timeout);
    cr_assert(run_until(&t.errors, 1, 5));
    cr_assert_eq(t.last_code, PLUGD_E_TIMEOUT);
    cr_assert_str_eq(t.last_error.message, "my own deadline");
    cr_assert(t.last_error.is_from_peer, "the peer's timeout looks like a deadline passed here");
}

Test(conn, a_deadline_that_passed_here_is_not_the_peers)
{
    make_pair(NULL, true);
    call_number(client, 1, 0.05);
    cr_assert(run_until(&t.timeouts, 1, 5));
    cr_assert_not(t.last_error.is_from_peer);
}
