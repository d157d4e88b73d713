/* A peer's values as text, for error messages: bounded, and always valid
 * UTF-8 (plugd puts error messages into JSON, which takes nothing else). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "plugd/ipc.h"

#define CUT_MARK "..."

/* Text being written into a caller's buffer; what does not fit is cut
 * whole (a token, a UTF-8 sequence) and the cut is marked with "...". */
struct text {
    char *buf;
    size_t cap; /* bytes for content: the buffer less the NUL and the mark */
    size_t len;
    bool is_cut;
};

static void text_init(struct text *t, char *buf, size_t size)
{
    *t = (struct text){.buf = buf, .cap = size > sizeof(CUT_MARK) ? size - sizeof(CUT_MARK) : 0};
}

static void put(struct text *t, const char *s, size_t n)
{
    if (t->is_cut)
        return;
    if (n > t->cap - t->len) {
        t->is_cut = true;
        return;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
}

static void putf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct text *t, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        put(t, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Ends the text; returns its length. */
static size_t text_end(struct text *t, size_t size)
{
    if (size == 0)
        return 0;
    if (t->is_cut && size > sizeof(CUT_MARK)) {
        memcpy(t->buf + t->len, CUT_MARK, sizeof(CUT_MARK) - 1);
        t->len += sizeof(CUT_MARK) - 1;
    }
    t->buf[t->len] = '\0';
    return t->len;
}

/* The length of the well-formed UTF-8 sequence at `s` (at most `n`
 * bytes), or 0 when there is none: overlong forms, surrogates and code
 * points past U+10FFFF are not UTF-8. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* Peer bytes as text: in quotes with JSON escapes, or bare with control
 * characters other than tab and newline as '?'. Bytes that are not UTF-8
 * become '?' either way. */
static void put_bytes(struct text *t, const char *s, size_t n, bool is_quoted)
{
    const unsigned char *p = (const unsigned char *)s;
    if (is_quoted)
        put(t, "\"", 1);
    for (size_t i = 0; i < n && !t->is_cut;) {
        unsigned char c = p[i];
        size_t len = utf8_len(p + i, n - i);
        if (len == 0) {
            put(t, "?", 1);
            i++;
        } else if (len > 1) {
            put(t, s + i, len);
            i += len;
        } else if (is_quoted && (c == '"' || c == '\\')) {
            char esc[2] = {'\\', (char)c};
            put(t, esc, 2);
            i++;
        } else if (is_quoted && (c < 0x20 || c == 0x7f)) {
            putf(t, "\\u%04x", c);
            i++;
        } else if (!is_quoted && (c < 0x20 || c == 0x7f) && c != '\t' && c != '\n') {
            put(t, "?", 1);
            i++;
        } else {
            put(t, s + i, 1);
            i++;
        }
    }
    if (is_quoted)
        put(t, "\"", 1);
}

static void put_object(struct text *t, const msgpack_object *o, int depth)
{
    if (depth > IPC_MAX_DEPTH) {
        t->is_cut = true;
        return;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        put(t, "null", 4);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        o->via.boolean ? put(t, "true", 4) : put(t, "false", 5);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        putf(t, "%" PRIu64, o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        putf(t, "%" PRId64, o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        putf(t, "%.17g", o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        put_bytes(t, o->via.str.ptr, o->via.str.size, true);
        break;
    case MSGPACK_OBJECT_BIN:
        putf(t, "<bin %" PRIu32 ">", o->via.bin.size);
        break;
    case MSGPACK_OBJECT_EXT:
        putf(t, "<ext %d %" PRIu32 ">", o->via.ext.type, o->via.ext.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        put(t, "[", 1);
        for (uint32_t i = 0; i < o->via.array.size && !t->is_cut; i++) {
            if (i > 0)
                put(t, ", ", 2);
            put_object(t, &o->via.array.ptr[i], depth + 1);
        }
        put(t, "]", 1);
        break;
    case MSGPACK_OBJECT_MAP:
        put(t, "{", 1);
        for (uint32_t i = 0; i < o->via.map.size && !t->is_cut; i++) {
            if (i > 0)
                put(t, ", ", 2);
            put_object(t, &o->via.map.ptr[i].key, depth + 1);
            put(t, ": ", 2);
            put_object(t, &o->via.map.ptr[i].val, depth + 1);
        }
        put(t, "}", 1);
        break;
    }
}

size_t ipc_object_text(const msgpack_object *o, char *buf, size_t size)
{
    struct text t;
    text_init(&t, buf, size);
    put_object(&t, o, 0);
    return text_end(&t, size);
}

/* The text of an error object: a str as it is; a map's "message" when that
 * is a str; any other value (Neovim's [type, message], an int, a map
 * without a message) written out whole. */
static void put_error_text(struct text *t, const msgpack_object *o)
{
    const msgpack_object *message = ipc_map_get(o, "message");
    if (o->type == MSGPACK_OBJECT_STR)
        put_bytes(t, o->via.str.ptr, o->via.str.size, false);
    else if (message != NULL && message->type == MSGPACK_OBJECT_STR)
        put_bytes(t, message->via.str.ptr, message->via.str.size, false);
    else
        put_object(t, o, 0);
}

void ipc_error_from_object(const msgpack_object *o, struct plugd_error *err)
{
    char text[PLUGD_ERROR_MESSAGE_MAX];
    struct text t;
    text_init(&t, text, sizeof(text));
    const msgpack_object *code = ipc_map_get(o, "code");
    bool has_code = code != NULL && code->type == MSGPACK_OBJECT_STR;
    enum plugd_errc known = PLUGD_E_REMOTE;
    if (has_code && (plugd_errc_from_name(code->via.str.ptr, code->via.str.size, &known) < 0 ||
                     known == PLUGD_OK)) {
        /* a code plugd does not know stays in the text */
        known = PLUGD_E_REMOTE;
        put_bytes(&t, code->via.str.ptr, code->via.str.size, false);
        put(&t, ": ", 2);
    }
    put_error_text(&t, o);
    text_end(&t, sizeof(text));
    plugd_error_set(err, known, "%s", text);
    err->is_from_peer = true;
}
