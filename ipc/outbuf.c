#include "plugd/outbuf.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#define CHUNK_SIZE (64u << 10)
#define MAX_IOV    64

struct ob_chunk {
    struct ob_chunk *next;
    size_t cap;
    size_t len; /* bytes filled */
    size_t off; /* bytes already written */
    char data[];
};

void ipc_outbuf_init(struct ipc_outbuf *ob, size_t limit, size_t max_message)
{
    *ob = (struct ipc_outbuf){.limit = limit, .max_message = max_message};
}

static void free_chunk(struct ipc_outbuf *ob, struct ob_chunk *c)
{
    ob->held -= sizeof(*c) + c->cap;
    free(c);
}

void ipc_outbuf_destroy(struct ipc_outbuf *ob)
{
    for (struct ob_chunk *c = ob->head, *next; c != NULL; c = next) {
        next = c->next;
        free_chunk(ob, c);
    }
    if (ob->spare != NULL)
        free_chunk(ob, ob->spare);
    ob->head = ob->tail = ob->spare = ob->mark_tail = NULL;
    ob->pending = ob->mark_pending = ob->mark_tail_len = 0;
    ob->overflow = false;
    ob->is_out_of_memory = false;
}

/* A chunk with room for at least `want` bytes, from the spare when it fits. */
static struct ob_chunk *new_chunk(struct ipc_outbuf *ob, size_t want)
{
    struct ob_chunk *c;
    if (ob->spare != NULL && ob->spare->cap >= want) {
        c = ob->spare;
        ob->spare = NULL;
    } else {
        size_t cap = want > CHUNK_SIZE ? want : CHUNK_SIZE;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->cap = cap;
        ob->held += sizeof(*c) + cap;
    }
    c->next = NULL;
    c->len = c->off = 0;
    return c;
}

/* Keeps one standard chunk for reuse, frees the rest. */
static void retire_chunk(struct ipc_outbuf *ob, struct ob_chunk *c)
{
    if (ob->spare == NULL && c->cap == CHUNK_SIZE)
        ob->spare = c;
    else
        free_chunk(ob, c);
}

void ipc_outbuf_mark(struct ipc_outbuf *ob)
{
    ob->mark_tail = ob->tail;
    ob->mark_tail_len = ob->tail ? ob->tail->len : 0;
    ob->mark_pending = ob->pending;
    ob->overflow = false;
    ob->is_out_of_memory = false;
}

size_t ipc_outbuf_message_size(const struct ipc_outbuf *ob)
{
    return ob->pending - ob->mark_pending;
}

int ipc_outbuf_append(struct ipc_outbuf *ob, const char *data, size_t len)
{
    if (ob->overflow)
        return -1;
    if (len > ob->limit - ob->pending || len > ob->max_message - ipc_outbuf_message_size(ob)) {
        ob->overflow = true;
        return -1;
    }
    while (len > 0) {
        struct ob_chunk *t = ob->tail;
        if (t == NULL || t->len == t->cap) {
            struct ob_chunk *c = new_chunk(ob, len);
            if (c == NULL) {
                ob->overflow = ob->is_out_of_memory = true;
                return -1;
            }
            if (t == NULL)
                ob->head = c;
            else
                t->next = c;
            ob->tail = t = c;
        }
        size_t n = t->cap - t->len < len ? t->cap - t->len : len;
        memcpy(t->data + t->len, data, n);
        t->len += n;
        ob->pending += n;
        data += n;
        len -= n;
    }
    return 0;
}

void ipc_outbuf_rollback(struct ipc_outbuf *ob)
{
    struct ob_chunk *after = ob->mark_tail ? ob->mark_tail->next : ob->head;
    while (after != NULL) {
        struct ob_chunk *next = after->next;
        retire_chunk(ob, after);
        after = next;
    }
    if (ob->mark_tail != NULL) {
        ob->mark_tail->next = NULL;
        ob->mark_tail->len = ob->mark_tail_len;
    } else {
        ob->head = NULL;
    }
    ob->tail = ob->mark_tail;
    ob->pending = ob->mark_pending;
}

int ipc_outbuf_commit(struct ipc_outbuf *ob)
{
    if (!ob->overflow)
        return 0;
    ipc_outbuf_rollback(ob);
    return -1;
}

/* writev on a pipe raises SIGPIPE when the reader is gone. Hold it back for
 * the one call and swallow the one it raised, so a library never changes
 * the process's signal dispositions and the process never dies of it. */
static ssize_t writev_nosigpipe(int fd, const struct iovec *iov, int n)
{
    sigset_t pipe_only, old, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);

    ssize_t w = writev(fd, iov, n);
    int saved = errno;
    if (w < 0 && errno == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return w;
}

ssize_t ipc_outbuf_write(struct ipc_outbuf *ob, int fd, bool is_socket)
{
    struct iovec iov[MAX_IOV];
    int n = 0;
    for (struct ob_chunk *c = ob->head; c != NULL && n < MAX_IOV; c = c->next) {
        if (c->len > c->off)
            iov[n++] = (struct iovec){.iov_base = c->data + c->off, .iov_len = c->len - c->off};
    }
    if (n == 0)
        return 0;

    ssize_t w;
    do {
        if (is_socket) {
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
            w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            w = writev_nosigpipe(fd, iov, n);
        }
    } while (w < 0 && errno == EINTR);
    if (w < 0)
        return -1;

    size_t left = (size_t)w;
    ob->pending -= left;
    while (left > 0 || (ob->head != NULL && ob->head->off == ob->head->len)) {
        struct ob_chunk *c = ob->head;
        size_t n_chunk = c->len - c->off < left ? c->len - c->off : left;
        c->off += n_chunk;
        left -= n_chunk;
        if (c->off < c->len)
            break;
        if (c == ob->tail && c->cap == CHUNK_SIZE) {
            c->off = c->len = 0; /* keep the last chunk for the next message */
            break;
        }
        if (c == ob->tail) { /* one large message went: so does its memory */
            ob->head = ob->tail = NULL;
            retire_chunk(ob, c);
            break;
        }
        ob->head = c->next;
        retire_chunk(ob, c);
    }
    return w;
}
