/* libFuzzer target for the streaming msgpack-rpc decoder (ipc/decoder.c, ipc/scan.c).
 *
 * Input: the first byte chooses how the rest is cut into pieces (see
 * split_size); the rest is the byte stream a peer sends. The pieces go in
 * alternately through ipc_decoder_feed and ipc_decoder_space/commit, and
 * after each piece every complete message is taken out.
 *
 * Besides ASan/UBSan findings, it aborts when the decoder breaks a promise of
 * ipc.h or docs/protocol.md:
 *   - a message has a size in (0, max_message], is exactly the next `size`
 *     bytes of the stream, and matches what msgpack-c decodes from them;
 *   - its fields have the shape the type promises (params an array, ...);
 *     every object is walked, so a dangling pointer is found by ASan;
 *   - nesting never exceeds IPC_MAX_DEPTH;
 *   - an error is message_too_large, malformed_message or invalid_message,
 *     and the decoder stays failed with the same error;
 *   - how the stream is cut does not change what is decoded.
 *
 * Run it with tests/fuzz/run; the seeds in corpus/decoder come from make_seeds.c. */
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugd/ipc.h"

#define FUZZ_MAX_MESSAGE 4096 /* small, so inputs reach the size limit */
#define MAX_RECORDED     4096 /* messages remembered to compare two cuttings */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_decoder: invariant failed at line %d: %s\n", __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* What one pass over the stream produced, to compare two cuttings. */
struct outcome {
    size_t count;
    size_t consumed; /* sum of the sizes of the messages */
    enum ipc_msg_type types[MAX_RECORDED];
    size_t sizes[MAX_RECORDED];
    enum plugd_errc failure; /* PLUGD_OK when the stream did not fail */
};

/* 0: the whole stream at once; 1..0xbf: that many bytes; 0xc0..0xff: 64..4096 bytes. */
static size_t split_size(uint8_t b, size_t total)
{
    if (b == 0)
        return total > 0 ? total : 1;
    if (b < 0xc0)
        return b;
    return (size_t)(b - 0xbf) * 64;
}

/* Compares an object the decoder returned with msgpack-c's own decoding of
 * the same bytes, reading every byte and pointer of `got`. */
static void compare(const msgpack_object *got, const msgpack_object *want, unsigned depth)
{
    /* The message array is depth 1; containers open up to IPC_MAX_DEPTH. */
    CHECK(depth <= IPC_MAX_DEPTH + 1);
    CHECK(got->type == want->type);
    switch (got->type) {
    case MSGPACK_OBJECT_NIL:
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        CHECK(got->via.boolean == want->via.boolean);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        CHECK(got->via.u64 == want->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        CHECK(got->via.i64 == want->via.i64 && got->via.i64 < 0);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        /* Bit for bit: NaN != NaN. */
        CHECK(memcmp(&got->via.f64, &want->via.f64, sizeof(double)) == 0);
        break;
    case MSGPACK_OBJECT_STR:
        CHECK(got->via.str.size == want->via.str.size);
        CHECK(got->via.str.size <= FUZZ_MAX_MESSAGE);
        CHECK(got->via.str.size == 0 ||
              memcmp(got->via.str.ptr, want->via.str.ptr, got->via.str.size) == 0);
        break;
    case MSGPACK_OBJECT_BIN:
        CHECK(got->via.bin.size == want->via.bin.size);
        CHECK(got->via.bin.size <= FUZZ_MAX_MESSAGE);
        CHECK(got->via.bin.size == 0 ||
              memcmp(got->via.bin.ptr, want->via.bin.ptr, got->via.bin.size) == 0);
        break;
    case MSGPACK_OBJECT_EXT:
        CHECK(got->via.ext.type == want->via.ext.type);
        CHECK(got->via.ext.size == want->via.ext.size);
        CHECK(got->via.ext.size <= FUZZ_MAX_MESSAGE);
        CHECK(got->via.ext.size == 0 ||
              memcmp(got->via.ext.ptr, want->via.ext.ptr, got->via.ext.size) == 0);
        break;
    case MSGPACK_OBJECT_ARRAY:
        CHECK(depth <= IPC_MAX_DEPTH);
        CHECK(got->via.array.size == want->via.array.size);
        CHECK(got->via.array.size <= FUZZ_MAX_MESSAGE);
        for (uint32_t i = 0; i < got->via.array.size; i++)
            compare(&got->via.array.ptr[i], &want->via.array.ptr[i], depth + 1);
        break;
    case MSGPACK_OBJECT_MAP:
        CHECK(depth <= IPC_MAX_DEPTH);
        CHECK(got->via.map.size == want->via.map.size);
        CHECK(got->via.map.size <= FUZZ_MAX_MESSAGE / 2);
        for (uint32_t i = 0; i < got->via.map.size; i++) {
            compare(&got->via.map.ptr[i].key, &want->via.map.ptr[i].key, depth + 1);
            compare(&got->via.map.ptr[i].val, &want->via.map.ptr[i].val, depth + 1);
        }
        break;
    default:
        CHECK(!"unknown msgpack object type");
    }
}

/* Checks one message: its bytes are stream[0..msg->size), its shape is
 * what its type promises, and its objects equal msgpack-c's decoding. */
static void check_message(const struct ipc_message *msg, const uint8_t *stream, size_t left,
                          msgpack_zone *zone)
{
    CHECK(msg->size > 0 && msg->size <= FUZZ_MAX_MESSAGE && msg->size <= left);

    msgpack_zone_clear(zone);
    msgpack_object ref;
    size_t off = 0;
    CHECK(msgpack_unpack((const char *)stream, msg->size, &off, zone, &ref) ==
          MSGPACK_UNPACK_SUCCESS);
    CHECK(off == msg->size);
    CHECK(ref.type == MSGPACK_OBJECT_ARRAY && ref.via.array.size >= 3);
    const msgpack_object *a = ref.via.array.ptr;
    CHECK(a[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[0].via.u64 == msg->type);

    switch (msg->type) {
    case IPC_REQUEST:
    case IPC_NOTIFY: {
        const msgpack_object *method = &a[msg->type == IPC_REQUEST ? 2 : 1];
        const msgpack_object *params = &a[msg->type == IPC_REQUEST ? 3 : 2];
        CHECK(ref.via.array.size == (msg->type == IPC_REQUEST ? 4u : 3u));
        if (msg->type == IPC_REQUEST)
            CHECK(a[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[1].via.u64 == msg->msgid);
        CHECK(msg->method != NULL && msg->method_len > 0);
        CHECK(method->type == MSGPACK_OBJECT_STR && method->via.str.size == msg->method_len);
        CHECK(memcmp(msg->method, method->via.str.ptr, msg->method_len) == 0);
        CHECK(msg->params != NULL && msg->params->type == MSGPACK_OBJECT_ARRAY);
        compare(msg->params, params, 2);
        for (uint32_t i = 0; i < msg->params->via.array.size; i++)
            CHECK(ipc_param(msg, i) == &msg->params->via.array.ptr[i]);
        CHECK(ipc_param(msg, msg->params->via.array.size) == NULL);
        break;
    }
    case IPC_RESPONSE:
        CHECK(ref.via.array.size == 4);
        CHECK(a[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[1].via.u64 == msg->msgid);
        CHECK(msg->error != NULL && msg->result != NULL);
        compare(msg->error, &a[2], 2);
        compare(msg->result, &a[3], 2);
        break;
    default:
        CHECK(!"message type is not 0, 1 or 2");
    }
}

/* Takes every complete message out of `dec`. Returns false once the stream failed. */
static bool drain(struct ipc_decoder *dec, const uint8_t *stream, size_t received,
                  struct outcome *out, msgpack_zone *zone)
{
    for (;;) {
        struct ipc_message msg;
        struct plugd_error err;
        size_t before = ipc_decoder_buffered(dec);
        CHECK(before == received - out->consumed);
        int r = ipc_decoder_next(dec, &msg, &err);
        if (r == 0) {
            CHECK(ipc_decoder_buffered(dec) == before);
            return true;
        }
        if (r < 0) {
            CHECK(err.code == PLUGD_E_MESSAGE_TOO_LARGE || err.code == PLUGD_E_MALFORMED_MESSAGE ||
                  err.code == PLUGD_E_INVALID_MESSAGE);
            CHECK(err.message[0] != '\0' && memchr(err.message, '\0', sizeof(err.message)));
            struct plugd_error again;
            CHECK(ipc_decoder_next(dec, &msg, &again) == -1 && again.code == err.code);
            out->failure = err.code;
            return false;
        }
        CHECK(r == 1);
        check_message(&msg, stream + out->consumed, received - out->consumed, zone);
        CHECK(ipc_decoder_buffered(dec) == before - msg.size);
        if (out->count < MAX_RECORDED) {
            out->types[out->count] = msg.type;
            out->sizes[out->count] = msg.size;
        }
        out->count++;
        out->consumed += msg.size;
    }
}

/* Feeds `stream` in pieces of `piece` bytes, draining after each. */
static void run(const uint8_t *stream, size_t len, size_t piece, struct outcome *out,
                msgpack_zone *zone)
{
    struct ipc_decoder *dec = ipc_decoder_new(FUZZ_MAX_MESSAGE);
    CHECK(dec != NULL);
    memset(out, 0, sizeof(*out));
    size_t received = 0;
    for (unsigned i = 0; received < len; i++) {
        size_t n = len - received < piece ? len - received : piece;
        if (i % 2 == 0) {
            struct plugd_error err;
            CHECK(ipc_decoder_feed(dec, stream + received, n, &err) == 0);
        } else {
            /* The way connections read: into the decoder's own buffer. */
            for (size_t done = 0; done < n;) {
                size_t space;
                char *p = ipc_decoder_space(dec, &space);
                CHECK(p != NULL && space > 0);
                size_t k = n - done < space ? n - done : space;
                memcpy(p, stream + received + done, k);
                ipc_decoder_commit(dec, k);
                done += k;
            }
        }
        received += n;
        if (!drain(dec, stream, received, out, zone))
            break;
    }
    ipc_decoder_free(dec);
}

static struct outcome cut, whole;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const uint8_t *stream = data + 1;
    size_t len = size - 1;
    size_t piece = split_size(data[0], len);

    msgpack_zone zone;
    CHECK(msgpack_zone_init(&zone, 8192));
    run(stream, len, piece, &cut, &zone);
    if (piece < len) {
        /* The same stream in one piece must decode the same way. */
        run(stream, len, len, &whole, &zone);
        CHECK(cut.count == whole.count && cut.consumed == whole.consumed);
        CHECK(cut.failure == whole.failure);
        size_t n = cut.count < MAX_RECORDED ? cut.count : MAX_RECORDED;
        for (size_t i = 0; i < n; i++)
            CHECK(cut.types[i] == whole.types[i] && cut.sizes[i] == whole.sizes[i]);
    }
    msgpack_zone_destroy(&zone);
    return 0;
}
