/* Conversions between jansson values (manifests, logs, the control socket)
 * and msgpack (the wire). */
#ifndef PLUGD_JSONPACK_H
#define PLUGD_JSONPACK_H

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>

/* Packs `v` as the equivalent msgpack value. 0, or -1 when the packer's
 * writer failed (an sbuffer out of memory): what it holds is then cut off. */
int jsonpack_pack(msgpack_packer *pk, const json_t *v);

/* A new jansson value for `o`, whole or NULL when out of memory. What JSON
 * cannot hold becomes a string: bin "<bin SIZE>", ext "<ext TYPE SIZE>", an
 * unsigned integer past 2^63-1 its decimal digits ("18446744073709551615"),
 * a map key that is not a str "<key INDEX>"; a str key is cut to 255 bytes;
 * strs that are not UTF-8 as jsonpack_string_lossy makes them. */
json_t *jsonpack_from_msgpack(const msgpack_object *o);

/* A JSON string of `len` bytes, as they are when they are UTF-8 (a NUL
 * byte too: JSON writes \u0000); when not, every byte but ASCII other than
 * NUL becomes '?', so text from a worker always serializes. NULL when out
 * of memory. */
json_t *jsonpack_string_lossy(const char *s, size_t len);

/* A JSON string of `s`, or null for NULL. */
json_t *jsonpack_string_or_null(const char *s);

/* Sets `key` (one of ours: constant ASCII, so jansson's key checks are
 * skipped) of object `o` to `v`, taking `v` even on failure. False when
 * `o` or `v` is NULL or the set fails: a builder ands the results and
 * drops the object when one failed. For answers built per plugin, where
 * json_pack's format parsing and checks cost more than the values. */
bool jsonpack_put(json_t *o, const char *key, json_t *v);

#endif
