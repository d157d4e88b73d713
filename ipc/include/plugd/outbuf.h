/* An outgoing byte queue: a list of chunks written with one writev/sendmsg,
 * bounded by a hard limit. A message is appended between mark and commit; a
 * message that does not fit is rolled back whole, so the peer never sees
 * part of one. ipc_conn queues its msgpack-rpc messages in one; plugd's
 * control socket its JSON lines. */
#ifndef PLUGD_IPC_OUTBUF_H
#define PLUGD_IPC_OUTBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct ob_chunk;

struct ipc_outbuf {
    struct ob_chunk *head; /* next bytes to write */
    struct ob_chunk *tail; /* where appends go */
    struct ob_chunk *spare;
    size_t pending;     /* bytes queued, not yet written */
    size_t limit;       /* pending may never exceed this */
    size_t max_message; /* one message may never exceed this */
    size_t held;        /* bytes of memory its chunks take (the spare too) */
    /* The message being appended. */
    struct ob_chunk *mark_tail;
    size_t mark_tail_len;
    size_t mark_pending;
    bool overflow;
    bool is_out_of_memory; /* the message overflowed for want of memory, not of room */
};

void ipc_outbuf_init(struct ipc_outbuf *ob, size_t limit, size_t max_message);
/* Frees every chunk: what was queued is dropped. The queue stays usable
 * (empty, with its limits). */
void ipc_outbuf_destroy(struct ipc_outbuf *ob);

/* Starts a message. */
void ipc_outbuf_mark(struct ipc_outbuf *ob);
/* Appends to the current message; after an overflow, appends nothing.
 * Returns 0 or -1 (overflow, or no memory: is_out_of_memory tells which). */
int ipc_outbuf_append(struct ipc_outbuf *ob, const char *data, size_t len);
/* Size of the message appended since ipc_outbuf_mark. */
size_t ipc_outbuf_message_size(const struct ipc_outbuf *ob);
/* Ends the message: 0 if it is queued, -1 if it overflowed (it is then
 * removed whole). */
int ipc_outbuf_commit(struct ipc_outbuf *ob);
/* Removes everything appended since ipc_outbuf_mark. */
void ipc_outbuf_rollback(struct ipc_outbuf *ob);

/* Writes as much as `fd` takes (sendmsg with MSG_NOSIGNAL on a socket,
 * writev with SIGPIPE held back on a pipe). Returns the bytes written, or -1
 * with errno (EAGAIN when the fd is full). */
ssize_t ipc_outbuf_write(struct ipc_outbuf *ob, int fd, bool is_socket);

#endif
