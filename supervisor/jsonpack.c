#include "jsonpack.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int jsonpack_pack(msgpack_packer *pk, const json_t *v)
{
    int rc = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *val;
        rc = msgpack_pack_map(pk, json_object_size(v));
        json_object_foreach((json_t *)v, key, val)
        {
            if (rc == 0)
                rc = msgpack_pack_str_with_body(pk, key, strlen(key));
            if (rc == 0)
                rc = jsonpack_pack(pk, val);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *val;
        rc = msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach((json_t *)v, i, val)
        {
            if (rc == 0)
                rc = jsonpack_pack(pk, val);
        }
        break;
    }
    case JSON_STRING:
        rc = msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        rc = msgpack_pack_int64(pk, json_integer_value(v));
        break;
    case JSON_REAL:
        rc = msgpack_pack_double(pk, json_real_value(v));
        break;
    case JSON_TRUE:
        rc = msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        rc = msgpack_pack_false(pk);
        break;
    case JSON_NULL:
        rc = msgpack_pack_nil(pk);
        break;
    }
    return rc == 0 ? 0 : -1;
}

json_t *jsonpack_string_lossy(const char *s, size_t len)
{
    json_t *v = json_stringn(s, len);
    if (v != NULL)
        return v;
    /* Not UTF-8: keep ASCII but NUL, replace every other byte. */
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        copy[i] = (s[i] > 0 && (unsigned char)s[i] < 0x80) ? s[i] : '?';
    copy[len] = '\0';
    v = json_stringn(copy, len);
    free(copy);
    return v;
}

/* A JSON object for `map`: a str key cut to 255 bytes and made UTF-8 as
 * jsonpack_string_lossy does, any other key "<key I>"; NULL when out of
 * memory. */
static json_t *object_from_map(const msgpack_object_map *map)
{
    json_t *obj = json_object();
    for (uint32_t i = 0; obj != NULL && i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        char tag[32];
        snprintf(tag, sizeof(tag), "<key %u>", i);
        json_t *key = k->type == MSGPACK_OBJECT_STR
                          ? jsonpack_string_lossy(k->via.str.ptr,
                                                  k->via.str.size < 255 ? k->via.str.size : 255)
                          : json_string(tag);
        json_t *val = key ? jsonpack_from_msgpack(&map->ptr[i].val) : NULL;
        int rc = val ? json_object_set_new(obj, json_string_value(key), val) : -1;
        json_decref(key);
        if (rc < 0) { /* set_new has released val */
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* A JSON array for `array`; NULL when out of memory. */
static json_t *array_from_msgpack(const msgpack_object_array *array)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; arr != NULL && i < array->size; i++) {
        json_t *val = jsonpack_from_msgpack(&array->ptr[i]);
        if (val == NULL || json_array_append_new(arr, val) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *jsonpack_from_msgpack(const msgpack_object *o)
{
    char tag[32];
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX) {
            /* jansson holds int64 only: the digits, exact, as a string
             * (docs/control.md) rather than a negative number */
            snprintf(tag, sizeof(tag), "%" PRIu64, o->via.u64);
            return json_string(tag);
        }
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
        return jsonpack_string_lossy(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_ARRAY:
        return array_from_msgpack(&o->via.array);
    case MSGPACK_OBJECT_MAP:
        return object_from_map(&o->via.map);
    case MSGPACK_OBJECT_BIN:
        snprintf(tag, sizeof(tag), "<bin %u>", o->via.bin.size);
        return json_string(tag);
    case MSGPACK_OBJECT_EXT:
        snprintf(tag, sizeof(tag), "<ext %d %u>", o->via.ext.type, o->via.ext.size);
        return json_string(tag);
    }
    return json_null();
}

bool jsonpack_put(json_t *o, const char *key, json_t *v)
{
    if (o == NULL || v == NULL) {
        json_decref(v);
        return false;
    }
    return json_object_set_new_nocheck(o, key, v) == 0;
}

json_t *jsonpack_string_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}
