/* Streaming msgpack-rpc decoder: a read buffer, the frame scanner (scan.c)
 * that finds each message's end, msgpack-c to build the objects of one
 * complete message, and the shape check of the msgpack-rpc spec. */
#include <stdlib.h>
#include <string.h>

#include "plugd/ipc.h"
#include "scan.h"

#define READ_CHUNK (64u << 10)

struct ipc_decoder {
    char *buf;
    size_t cap;
    size_t start; /* first byte of the message being received */
    size_t end;   /* one past the last byte received */
    size_t max_message;
    bool failed;
    struct plugd_error failure;
    struct ipc_scan scan;
    msgpack_zone zone; /* holds the objects of the last message; reused */
};

struct ipc_decoder *ipc_decoder_new(size_t max_message)
{
    struct ipc_decoder *dec = calloc(1, sizeof(*dec));
    if (dec == NULL)
        return NULL;
    dec->max_message = max_message ? max_message : IPC_DEFAULT_MAX_MESSAGE;
    if (!msgpack_zone_init(&dec->zone, 8192)) {
        free(dec);
        return NULL;
    }
    ipc_scan_reset(&dec->scan);
    return dec;
}

void ipc_decoder_free(struct ipc_decoder *dec)
{
    if (dec == NULL)
        return;
    msgpack_zone_destroy(&dec->zone);
    free(dec->buf);
    free(dec);
}

size_t ipc_decoder_buffered(const struct ipc_decoder *dec)
{
    return dec->end - dec->start;
}

/* Makes room for at least `want` more bytes: first by moving the partial
 * message to the front, then by growing. The buffer never needs more than
 * one message plus one read, as next() takes messages out as they complete. */
static int reserve(struct ipc_decoder *dec, size_t want)
{
    if (dec->cap - dec->end >= want)
        return 0;
    size_t kept = dec->end - dec->start;
    if (dec->start > 0) {
        memmove(dec->buf, dec->buf + dec->start, kept);
        dec->start = 0;
        dec->end = kept;
        if (dec->cap - dec->end >= want)
            return 0;
    }
    size_t cap = dec->cap ? dec->cap : READ_CHUNK;
    while (cap - kept < want)
        cap *= 2;
    char *buf = realloc(dec->buf, cap);
    if (buf == NULL)
        return -1;
    dec->buf = buf;
    dec->cap = cap;
    return 0;
}

char *ipc_decoder_space(struct ipc_decoder *dec, size_t *len)
{
    if (dec->start == dec->end) {
        dec->start = dec->end = 0;
        /* Give back what one large message made the buffer grow to. */
        if (dec->cap > 16 * READ_CHUNK) {
            free(dec->buf);
            dec->buf = NULL;
            dec->cap = 0;
        }
    }
    if (reserve(dec, dec->cap - dec->end >= READ_CHUNK / 4 ? 1 : READ_CHUNK) < 0)
        return NULL;
    *len = dec->cap - dec->end;
    return dec->buf + dec->end;
}

void ipc_decoder_commit(struct ipc_decoder *dec, size_t n)
{
    dec->end += n;
}

int ipc_decoder_feed(struct ipc_decoder *dec, const void *data, size_t len, struct plugd_error *err)
{
    if (reserve(dec, len) < 0)
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "decoder: cannot buffer %zu bytes", len);
    memcpy(dec->buf + dec->end, data, len);
    dec->end += len;
    return 0;
}

static const char *type_name(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return "positive integer";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "negative integer";
    case MSGPACK_OBJECT_FLOAT32:
        return "float32";
    case MSGPACK_OBJECT_FLOAT64:
        return "float64";
    case MSGPACK_OBJECT_STR:
        return "str";
    case MSGPACK_OBJECT_ARRAY:
        return "array";
    case MSGPACK_OBJECT_MAP:
        return "map";
    case MSGPACK_OBJECT_BIN:
        return "bin";
    case MSGPACK_OBJECT_EXT:
        return "ext";
    }
    return "unknown";
}

static int invalid(struct plugd_error *err, const char *what, const msgpack_object *o,
                   const char *expected)
{
    return plugd_error_set(err, PLUGD_E_INVALID_MESSAGE, "%s is a %s, not %s", what,
                           type_name(o->type), expected);
}

static int read_msgid(const msgpack_object *o, uint32_t *msgid, struct plugd_error *err)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX)
        return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                   ? plugd_error_set(err, PLUGD_E_INVALID_MESSAGE,
                                     "msgid %llu does not fit 32 bits",
                                     (unsigned long long)o->via.u64)
                   : invalid(err, "msgid", o, "an unsigned 32-bit integer");
    *msgid = (uint32_t)o->via.u64;
    return 0;
}

static int read_method(const msgpack_object *o, struct ipc_message *msg, struct plugd_error *err)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return invalid(err, "method", o, "a str");
    if (o->via.str.size == 0)
        return plugd_error_set(err, PLUGD_E_INVALID_MESSAGE, "method name is empty");
    msg->method = o->via.str.ptr;
    msg->method_len = o->via.str.size;
    return 0;
}

static int read_params(const msgpack_object *o, struct ipc_message *msg, struct plugd_error *err)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return invalid(err, "params", o, "an array");
    msg->params = o;
    return 0;
}

/* Checks `o` against the three message shapes of the spec and fills msg. */
static int read_shape(const msgpack_object *o, struct ipc_message *msg, struct plugd_error *err)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return invalid(err, "message", o, "an array");
    const msgpack_object *a = o->via.array.ptr;
    uint32_t n = o->via.array.size;
    if (n < 3 || n > 4)
        return plugd_error_set(err, PLUGD_E_INVALID_MESSAGE, "message has %u elements, not 3 or 4",
                               (unsigned)n);
    if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 > IPC_NOTIFY)
        return a[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER
                   ? plugd_error_set(err, PLUGD_E_INVALID_MESSAGE,
                                     "message type %llu is not 0, 1 or 2",
                                     (unsigned long long)a[0].via.u64)
                   : invalid(err, "message type", &a[0], "0, 1 or 2");
    msg->type = (enum ipc_msg_type)a[0].via.u64;
    uint32_t expected = msg->type == IPC_NOTIFY ? 3 : 4;
    if (n != expected)
        return plugd_error_set(err, PLUGD_E_INVALID_MESSAGE, "%s has %u elements, not %u",
                               msg->type == IPC_REQUEST    ? "request"
                               : msg->type == IPC_RESPONSE ? "response"
                                                           : "notification",
                               (unsigned)n, (unsigned)expected);
    switch (msg->type) {
    case IPC_REQUEST:
        if (read_msgid(&a[1], &msg->msgid, err) < 0 || read_method(&a[2], msg, err) < 0)
            return -1;
        return read_params(&a[3], msg, err);
    case IPC_RESPONSE:
        msg->error = &a[2];
        msg->result = &a[3];
        return read_msgid(&a[1], &msg->msgid, err);
    case IPC_NOTIFY:
        if (read_method(&a[1], msg, err) < 0)
            return -1;
        return read_params(&a[2], msg, err);
    }
    return -1;
}

/* Remembers the first error: a stream that failed once stays failed. */
static int fail(struct ipc_decoder *dec, struct plugd_error *err)
{
    dec->failed = true;
    dec->failure = *err;
    return -1;
}

int ipc_decoder_next(struct ipc_decoder *dec, struct ipc_message *msg, struct plugd_error *err)
{
    struct plugd_error local;
    if (err == NULL)
        err = &local;
    if (dec->failed) {
        *err = dec->failure;
        return -1;
    }
    msgpack_zone_clear(&dec->zone);

    size_t len;
    int r = ipc_scan(&dec->scan, (const unsigned char *)dec->buf + dec->start,
                     dec->end - dec->start, dec->max_message, &len, err);
    if (r <= 0)
        return r < 0 ? fail(dec, err) : 0;

    /* msgpack_unpack is the one msgpack-c entry point that builds into a
     * caller's zone, so objects reuse one zone instead of a malloc each. */
    msgpack_object obj;
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack(dec->buf + dec->start, len, &off, &dec->zone, &obj);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len) {
        plugd_error_set(err, PLUGD_E_MALFORMED_MESSAGE,
                        "msgpack-c could not decode a %zu-byte message (code %d)", len, (int)ur);
        return fail(dec, err);
    }
    *msg = (struct ipc_message){.size = len};
    if (read_shape(&obj, msg, err) < 0)
        return fail(dec, err);
    dec->start += len;
    return 1;
}
