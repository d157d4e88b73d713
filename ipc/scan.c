#include "scan.h"

/* What one msgpack header says: its own size, the payload bytes that follow
 * it (str, bin, ext, numbers are counted in the header), and how many objects
 * it contains (arrays: n, maps: 2n). */
struct header {
    size_t size;
    uint64_t payload;
    uint64_t children;
    bool is_container;
};

static uint64_t read_be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Decodes the header at p (avail bytes readable). Returns 1 when decoded, 0
 * when more bytes are needed, -1 for the one byte msgpack never uses. */
static int read_header(const unsigned char *p, size_t avail, struct header *h)
{
    unsigned char b = p[0];
    size_t len_bytes = 0; /* width of a length field that follows the type byte */
    int extra = 0;        /* bytes after the length field that belong to the header */

    *h = (struct header){.size = 1};
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 1; /* fixint, nil, bool */
    if (b <= 0x8f) {
        *h = (struct header){.size = 1, .children = 2u * (b & 0x0f), .is_container = true};
        return 1;
    }
    if (b <= 0x9f) {
        *h = (struct header){.size = 1, .children = b & 0x0f, .is_container = true};
        return 1;
    }
    if (b <= 0xbf) {
        h->payload = b & 0x1f;
        return 1;
    }
    switch (b) {
    case 0xc1:
        return -1;
    case 0xc4:
    case 0xc5:
    case 0xc6: /* bin 8/16/32 */
        len_bytes = 1u << (b - 0xc4);
        break;
    case 0xc7:
    case 0xc8:
    case 0xc9: /* ext 8/16/32: length, then the type byte */
        len_bytes = 1u << (b - 0xc7);
        extra = 1;
        break;
    case 0xca:
        h->payload = 4;
        return 1;
    case 0xcb:
        h->payload = 8;
        return 1;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf: /* uint 8..64 */
        h->payload = 1u << (b - 0xcc);
        return 1;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: /* int 8..64 */
        h->payload = 1u << (b - 0xd0);
        return 1;
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: /* fixext: type byte + data */
        h->payload = 1u + (1u << (b - 0xd4));
        return 1;
    case 0xd9:
    case 0xda:
    case 0xdb: /* str 8/16/32 */
        len_bytes = 1u << (b - 0xd9);
        break;
    case 0xdc:
    case 0xdd: /* array 16/32 */
    case 0xde:
    case 0xdf: /* map 16/32 */
        len_bytes = (b == 0xdc || b == 0xde) ? 2 : 4;
        h->is_container = true;
        break;
    }
    h->size = 1 + len_bytes + extra;
    if (avail < 1 + len_bytes)
        return 0;
    uint64_t n = read_be(p + 1, len_bytes);
    if (!h->is_container)
        h->payload = n;
    else
        h->children = (b >= 0xde) ? 2 * n : n;
    return 1;
}

void ipc_scan_reset(struct ipc_scan *s)
{
    s->pos = 0;
    s->levels = 1;
    s->left[0] = 1;
}

int ipc_scan(struct ipc_scan *s, const unsigned char *data, size_t len, size_t max, size_t *msg_len,
             struct plugd_error *err)
{
    while (s->pos < len) {
        struct header h;
        int r = read_header(data + s->pos, len - s->pos, &h);
        if (r < 0)
            return plugd_error_set(err, PLUGD_E_MALFORMED_MESSAGE,
                                   "byte 0xc1 at offset %zu is not msgpack", s->pos);
        /* Every contained object takes at least one byte, so a count is a
         * lower bound on the size, checked before anything is buffered. */
        uint64_t at_least = (uint64_t)h.size + h.payload + h.children;
        if (s->pos > max || at_least > max - s->pos)
            return plugd_error_set(err, PLUGD_E_MESSAGE_TOO_LARGE,
                                   "message exceeds the %zu-byte limit (offset %zu declares "
                                   "%llu more bytes)",
                                   max, s->pos, (unsigned long long)at_least);
        if (r == 0 || h.size + h.payload > len - s->pos)
            return 0;
        /* Same rule as msgpack-c's parser stack: a container, even an empty
         * one, may open only while fewer than IPC_MAX_DEPTH are open. */
        if (h.is_container && s->levels > IPC_MAX_DEPTH)
            return plugd_error_set(err, PLUGD_E_MALFORMED_MESSAGE,
                                   "nesting deeper than %d levels at offset %zu", IPC_MAX_DEPTH,
                                   s->pos);
        s->pos += h.size + h.payload;
        s->left[s->levels - 1]--;
        if (h.children > 0)
            s->left[s->levels++] = h.children;
        while (s->levels > 0 && s->left[s->levels - 1] == 0)
            s->levels--;
        if (s->levels == 0) {
            *msg_len = s->pos;
            ipc_scan_reset(s);
            return 1;
        }
    }
    return 0;
}
