/* Finds where one msgpack message ends without building it.
 *
 * msgpack-c allocates the storage for an array or map as soon as it reads
 * the header, from the count the header declares: five bytes can ask for
 * 64 GiB. The scanner walks headers only, checks every declared length
 * against the message size limit and the nesting limit, and so lets the
 * decoder hand msgpack-c nothing but complete messages of a known, bounded
 * size. It resumes where it stopped when more bytes arrive. */
#ifndef IPC_SCAN_H
#define IPC_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "plugd/error.h"
#include "plugd/ipc.h"

struct ipc_scan {
    size_t pos;                       /* bytes of the message accounted for so far */
    unsigned levels;                  /* open levels; level 0 is the message itself */
    uint64_t left[IPC_MAX_DEPTH + 1]; /* objects still expected at each level */
};

void ipc_scan_reset(struct ipc_scan *s);

/* Scans `data[0..len)`, the bytes of the current message from its first
 * byte (more of them on each call). Returns 1 and sets *msg_len when the
 * message is complete (the scanner is then reset for the next one), 0 when
 * more bytes are needed, -1 with err set (message_too_large when the message
 * would exceed `max`, malformed_message otherwise). */
int ipc_scan(struct ipc_scan *s, const unsigned char *data, size_t len, size_t max, size_t *msg_len,
             struct plugd_error *err);

#endif
