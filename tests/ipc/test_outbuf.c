/* The output queue when memory runs out: the message is refused whole and
 * named no_memory, not buffer_full (the peer was reading; plugd was short).
 * malloc is wrapped (-Wl,--wrap=malloc): `fail_mallocs` makes the next
 * calls fail. */
#include <criterion/criterion.h>
#include <ev.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "plugd/ipc.h"
#include "plugd/outbuf.h"

void *__real_malloc(size_t size);
static int fail_mallocs;

void *__wrap_malloc(size_t size)
{
    if (fail_mallocs > 0) {
        fail_mallocs--;
        return NULL;
    }
    return __real_malloc(size);
}

Test(outbuf, a_chunk_that_cannot_be_allocated_is_out_of_memory_and_the_message_goes_whole)
{
    struct ipc_outbuf ob;
    ipc_outbuf_init(&ob, 1 << 20, 1 << 20);
    ipc_outbuf_mark(&ob);
    cr_assert_eq(ipc_outbuf_append(&ob, "kept", 4), 0);
    cr_assert_eq(ipc_outbuf_commit(&ob), 0);

    ipc_outbuf_mark(&ob);
    static char big[100000];
    fail_mallocs = 1;
    cr_assert_eq(ipc_outbuf_append(&ob, big, sizeof(big)), -1);
    fail_mallocs = 0;
    cr_assert(ob.is_out_of_memory, "a failed allocation passed for a full queue");
    cr_assert_eq(ipc_outbuf_commit(&ob), -1);
    cr_assert_eq(ob.pending, 4, "part of the refused message stayed queued");

    ipc_outbuf_mark(&ob); /* the next message starts clean */
    cr_assert(!ob.is_out_of_memory);
    ipc_outbuf_destroy(&ob);
}

Test(outbuf, a_full_queue_is_not_out_of_memory)
{
    struct ipc_outbuf ob;
    ipc_outbuf_init(&ob, 16, 16);
    ipc_outbuf_mark(&ob);
    cr_assert_eq(ipc_outbuf_append(&ob, "0123456789abcdefg", 17), -1);
    cr_assert(!ob.is_out_of_memory);
    cr_assert_eq(ipc_outbuf_commit(&ob), -1);
    ipc_outbuf_destroy(&ob);
}

Test(outbuf, a_connection_short_of_memory_says_no_memory)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct plugd_error err = {0};
    struct ipc_handlers h = {0};
    struct ipc_conn *c = ipc_conn_new(loop, sv[0], sv[0], NULL, &h, NULL, &err);
    cr_assert_not_null(c, "%s", err.message);

    msgpack_packer *pk = ipc_conn_begin_notify(c, "note");
    msgpack_pack_array(pk, 1);
    static char big[100000];
    fail_mallocs = 1000; /* every chunk the message asks for */
    msgpack_pack_bin(pk, sizeof(big));
    msgpack_pack_bin_body(pk, big, sizeof(big));
    fail_mallocs = 0;
    cr_assert_eq(ipc_conn_end(c, &err), -1);
    cr_assert_eq(err.code, PLUGD_E_NO_MEMORY, "%s: %s", plugd_errc_name(err.code), err.message);

    ipc_conn_free(c);
    ev_loop_destroy(loop);
    close(sv[1]);
}
