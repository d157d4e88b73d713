/* Conversions between jansson values (manifests, logs, the control socket)
 * and msgpack (the wire). */
#ifndef PLUGD_JSONPACK_H
#define PLUGD_JSONPACK_H

#include <jansson.h>
#include <msgpack.h>

/* Packs `v` as the equivalent msgpack value. */
void jsonpack_pack(msgpack_packer *pk, const json_t *v);

/* A new jansson value for `o` (bin and ext become base-less strings of
 * their length, "<bin 32>"; an unsigned integer past 2^63-1, which jansson
 * cannot hold, the string of its decimal digits, "18446744073709551615");
 * NULL when out of memory. */
json_t *jsonpack_from_msgpack(const msgpack_object *o);

/* A JSON string of `len` bytes; bytes that are not valid UTF-8 (or NUL)
 * become '?', so text from a worker always serializes. */
json_t *jsonpack_string_lossy(const char *s, size_t len);

#endif
