/* Peer values as text in error messages (ipc/text.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "plugd/ipc.h"

/* Packs with `pack` and unpacks it (valid until the next call). */
static msgpack_unpacked unpacked;
static msgpack_sbuffer sb; /* the object's strs point into it */
static const msgpack_object *object_of(void (*pack)(msgpack_packer *pk))
{
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack(&pk);
    msgpack_unpacked_destroy(&unpacked);
    msgpack_unpacked_init(&unpacked);
    cr_assert_eq(msgpack_unpack_next(&unpacked, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    return &unpacked.data;
}

static void fini(void)
{
    msgpack_unpacked_destroy(&unpacked);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_init(&sb);
}

TestSuite(text, .init = fini, .fini = fini);

static void pack_every_type(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 9);
    msgpack_pack_nil(pk);
    msgpack_pack_true(pk);
    msgpack_pack_uint64(pk, UINT64_MAX);
    msgpack_pack_int64(pk, INT64_MIN);
    msgpack_pack_double(pk, 0.5);
    msgpack_pack_str_with_body(pk, "a\"b\\\n", 5);
    msgpack_pack_bin_with_body(pk, "xyz", 3);
    msgpack_pack_ext_with_body(pk, "12345678", 8, 1);
    msgpack_pack_map(pk, 1);
    msgpack_pack_int(pk, 7);
    msgpack_pack_array(pk, 0);
}

Test(text, every_type_is_written_out)
{
    char buf[256];
    ipc_object_text(object_of(pack_every_type), buf, sizeof(buf));
    cr_assert_str_eq(buf, "[null, true, 18446744073709551615, -9223372036854775808, 0.5, "
                          "\"a\\\"b\\\\\\u000a\", <bin 3>, <ext 1 8>, {7: []}]");
}

static void pack_long_array(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 100);
    for (int i = 0; i < 100; i++)
        msgpack_pack_int(pk, 1000 + i);
}

Test(text, what_does_not_fit_is_cut_whole_and_marked)
{
    char buf[20]; /* 16 bytes of content: "1002" would end past them */
    size_t n = ipc_object_text(object_of(pack_long_array), buf, sizeof(buf));
    cr_assert_eq(n, strlen(buf));
    cr_assert_lt(n, sizeof(buf));
    cr_assert_str_eq(buf, "[1000, 1001, ...", "got %s", buf);
}

static void pack_bad_utf8(msgpack_packer *pk)
{
    /* é, a lone continuation byte, an overlong '/', a surrogate, then € */
    msgpack_pack_str_with_body(pk, "\xc3\xa9\x80\xc0\xaf\xed\xa0\x80\xe2\x82\xac", 11);
}

Test(text, bytes_that_are_not_utf8_become_question_marks)
{
    char buf[64];
    ipc_object_text(object_of(pack_bad_utf8), buf, sizeof(buf));
    cr_assert_str_eq(buf, "\"\xc3\xa9??????\xe2\x82\xac\"", "got %s", buf);
}

Test(text, a_multibyte_character_is_never_split)
{
    /* "€€€€" in 10 bytes: content room is 10 - 4 = 6 bytes, two whole € */
    char buf[10];
    struct plugd_error err;
    msgpack_object o = {
        .type = MSGPACK_OBJECT_STR,
        .via.str = {.size = 12, .ptr = "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"}};
    ipc_object_text(&o, buf, sizeof(buf));
    cr_assert_str_eq(buf, "\"\xe2\x82\xac...", "got %s", buf);
    ipc_error_from_object(&o, &err);
    cr_assert_str_eq(err.message, "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac");
}

static void pack_map_with_unknown_code(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    ipc_pack_str(pk, "code");
    ipc_pack_str(pk, "ENOENT");
    ipc_pack_str(pk, "message");
    ipc_pack_str(pk, "no such file");
}

static void pack_map_without_message(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    ipc_pack_str(pk, "code");
    ipc_pack_str(pk, "worker_error");
    ipc_pack_str(pk, "detail");
    msgpack_pack_int(pk, 5);
}

static void pack_str_with_controls(msgpack_packer *pk)
{
    msgpack_pack_str_with_body(pk, "line 1\nline\0 2\r", 15);
}

Test(text, error_objects_of_every_shape_keep_their_content)
{
    struct plugd_error err;
    ipc_error_from_object(object_of(pack_map_with_unknown_code), &err);
    cr_assert_eq(err.code, PLUGD_E_REMOTE);
    cr_assert_str_eq(err.message, "ENOENT: no such file");
    cr_assert(err.is_from_peer);

    ipc_error_from_object(object_of(pack_map_without_message), &err);
    cr_assert_eq(err.code, PLUGD_E_WORKER_ERROR);
    cr_assert_str_eq(err.message, "{\"code\": \"worker_error\", \"detail\": 5}");

    ipc_error_from_object(object_of(pack_str_with_controls), &err);
    cr_assert_eq(err.code, PLUGD_E_REMOTE);
    cr_assert_str_eq(err.message, "line 1\nline? 2?");

    ipc_error_from_object(object_of(pack_long_array), &err);
    cr_assert_lt(strlen(err.message), PLUGD_ERROR_MESSAGE_MAX);
    cr_assert(strstr(err.message, "...") != NULL, "a long error is cut and marked: %s",
              err.message);
}

Test(text, plugd_error_set_clears_the_peer_mark)
{
    struct plugd_error err;
    ipc_error_from_object(object_of(pack_map_with_unknown_code), &err);
    plugd_error_set(&err, PLUGD_E_TIMEOUT, "here");
    cr_assert_not(err.is_from_peer);
}

Test(text, a_message_cut_to_fit_never_ends_inside_a_utf8_sequence)
{
    char euros[3 * 100 + 1] = "";
    for (int i = 0; i < 100; i++)
        strcat(euros, "\xe2\x82\xac");
    struct plugd_error err;
    for (int shift = 0; shift < 3; shift++) {
        plugd_error_set(&err, PLUGD_E_WORKER_ERROR, "%.*s%s", shift, "ab", euros);
        size_t len = strlen(err.message);
        cr_assert_eq((len - (size_t)shift) % 3, 0, "shift %d: %zu bytes end inside a \u20ac", shift,
                     len);
    }
}
