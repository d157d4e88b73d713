/* jsonpack (supervisor/jsonpack.c) in-process: msgpack to JSON is whole
 * or NULL, never a value with members silently missing, when jansson runs
 * out of memory part way; keys that JSON cannot take as they are still
 * arrive. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "jsonpack.h"

/* jansson's allocator, failing every allocation from the `fail_at`th on
 * (0: never). */
static int allocations, fail_at;

static void *counting_malloc(size_t size)
{
    if (fail_at > 0 && ++allocations >= fail_at)
        return NULL;
    return malloc(size);
}

static void fail_from(int n)
{
    allocations = 0;
    fail_at = n;
    json_set_alloc_funcs(counting_malloc, free);
}

/* {"a": [1, 2, 3], "b": {"c": "d"}, "e": "f"} unpacked into `u` */
static const msgpack_object *nested(msgpack_unpacked *u, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_array(&pk, 3);
    for (int i = 1; i <= 3; i++)
        msgpack_pack_int(&pk, i);
    msgpack_pack_str_with_body(&pk, "b", 1);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "c", 1);
    msgpack_pack_str_with_body(&pk, "d", 1);
    msgpack_pack_str_with_body(&pk, "e", 1);
    msgpack_pack_str_with_body(&pk, "f", 1);
    msgpack_unpacked_init(u);
    cr_assert_eq(msgpack_unpack_next(u, sb->data, sb->size, NULL), MSGPACK_UNPACK_SUCCESS);
    return &u->data;
}

Test(jsonpack, out_of_memory_anywhere_gives_null_not_a_value_with_holes)
{
    msgpack_unpacked u;
    msgpack_sbuffer sb;
    const msgpack_object *o = nested(&u, &sb);
    fail_from(0);
    json_t *whole = jsonpack_from_msgpack(o);
    cr_assert_not_null(whole);
    char *want = json_dumps(whole, JSON_SORT_KEYS);
    json_decref(whole);
    int n_failing = 0;
    for (int at = 1; at < 200; at++) {
        fail_from(at);
        json_t *v = jsonpack_from_msgpack(o);
        fail_from(0);
        if (v == NULL) {
            n_failing++;
            continue;
        }
        char *got = json_dumps(v, JSON_SORT_KEYS);
        cr_expect_str_eq(got, want, "allocation %d failed, and the value came back cut", at);
        free(got);
        json_decref(v);
    }
    cr_expect_gt(n_failing, 0, "no allocation was failed: the test does not test");
    free(want);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

Test(jsonpack, a_key_that_is_not_utf8_arrives_made_readable)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "k\xff", 2);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 7);
    msgpack_pack_int(&pk, 2);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    json_t *v = jsonpack_from_msgpack(&u.data);
    cr_assert_not_null(v);
    cr_expect_eq(json_integer_value(json_object_get(v, "k?")), 1);
    cr_expect_eq(json_integer_value(json_object_get(v, "<key 1>")), 2);
    json_decref(v);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}
