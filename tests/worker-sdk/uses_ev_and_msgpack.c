/* A plugin that uses libev and msgpack-c itself, as plugd/worker.h lets it
 * (its own loop, its own packing): built by link_with_pkg_config.sh with
 * nothing but `pkg-config --cflags --libs plugd-worker`. */
#include <plugd/worker.h>
#include <stdio.h>

int main(void)
{
    struct plugd_error err;
    struct plugd_worker *w = plugd_worker_new(&err); /* not started by plugd: NULL */
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ev_run(loop, EVRUN_NOWAIT);
    ev_loop_destroy(loop);

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_int(&pk, 42);
    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    size_t off = 0;
    int rc = msgpack_unpack_next(&msg, sb.data, sb.size, &off);
    bool ok = rc == MSGPACK_UNPACK_SUCCESS && msg.data.via.i64 == 42;
    msgpack_unpacked_destroy(&msg);
    msgpack_sbuffer_destroy(&sb);
    if (w != NULL)
        plugd_worker_free(w);
    printf("%s\n", ok ? "linked" : "msgpack round trip failed");
    return ok ? 0 : 1;
}
