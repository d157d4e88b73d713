/* The streaming decoder: round trips, splits, and hostile input. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "plugd/ipc.h"

static msgpack_sbuffer sbuf;
static msgpack_packer pk;
static struct ipc_decoder *dec;

static void setup(void)
{
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    dec = ipc_decoder_new(0);
}

static void teardown(void)
{
    msgpack_sbuffer_destroy(&sbuf);
    ipc_decoder_free(dec);
}

TestSuite(decoder, .init = setup, .fini = teardown);

static void pack_str(const char *s)
{
    msgpack_pack_str_with_body(&pk, s, strlen(s));
}

static void pack_request(uint32_t msgid, const char *method, int nparams)
{
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint32(&pk, msgid);
    pack_str(method);
    msgpack_pack_array(&pk, nparams);
}

static void feed(const void *data, size_t len)
{
    struct plugd_error err;
    cr_assert_eq(ipc_decoder_feed(dec, data, len, &err), 0);
}

/* Feeds the packed bytes and expects the decoder to refuse with `code`. */
static void expect_refused(enum plugd_errc code)
{
    struct ipc_message msg;
    struct plugd_error err;
    feed(sbuf.data, sbuf.size);
    cr_assert_eq(ipc_decoder_next(dec, &msg, &err), -1, "bytes were accepted");
    cr_assert_eq(err.code, code, "got %s (%s), wanted %s", plugd_errc_name(err.code), err.message,
                 plugd_errc_name(code));
    /* A failed stream stays failed. */
    cr_assert_eq(ipc_decoder_next(dec, &msg, &err), -1);
}

static void raw(const char *bytes, size_t len)
{
    msgpack_sbuffer_write(&sbuf, bytes, len);
}

Test(decoder, every_msgpack_type_round_trips)
{
    static const char bin[300] = {1, 2, 3};
    static char big_str[70000];
    memset(big_str, 'x', sizeof(big_str) - 1);
    pack_request(7, "types", 22);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_false(&pk);
    msgpack_pack_int64(&pk, 5);                                    /* positive fixint */
    msgpack_pack_int64(&pk, -7);                                   /* negative fixint */
    msgpack_pack_uint8(&pk, 200);                                  /* uint 8 */
    msgpack_pack_uint16(&pk, 60000);                               /* uint 16 */
    msgpack_pack_uint32(&pk, 4000000000u);                         /* uint 32 */
    msgpack_pack_uint64(&pk, UINT64_MAX);                          /* uint 64 */
    msgpack_pack_int8(&pk, -100);                                  /* int 8 */
    msgpack_pack_int16(&pk, -30000);                               /* int 16 */
    msgpack_pack_int32(&pk, -2000000000);                          /* int 32 */
    msgpack_pack_int64(&pk, INT64_MIN);                            /* int 64 */
    msgpack_pack_float(&pk, 1.5f);                                 /* float 32 */
    msgpack_pack_double(&pk, -2.25);                               /* float 64 */
    pack_str("fix");                                               /* fixstr */
    msgpack_pack_str_with_body(&pk, big_str, 40);                  /* str 8 */
    msgpack_pack_str_with_body(&pk, big_str, sizeof(big_str) - 1); /* str 32 */
    msgpack_pack_bin_with_body(&pk, bin, sizeof(bin));             /* bin 16 */
    msgpack_pack_ext_with_body(&pk, "abcd", 4, 9);                 /* fixext 4 */
    msgpack_pack_map(&pk, 1);
    pack_str("k");
    msgpack_pack_array(&pk, 20); /* array 16 inside a map */
    for (int i = 0; i < 20; i++)
        msgpack_pack_int(&pk, i);
    msgpack_pack_map(&pk, 0);

    feed(sbuf.data, sbuf.size);
    struct ipc_message m;
    struct plugd_error err;
    cr_assert_eq(ipc_decoder_next(dec, &m, &err), 1, "%s", err.message);
    cr_assert_eq(m.type, IPC_REQUEST);
    cr_assert_eq(m.msgid, 7);
    cr_assert(ipc_str_equals(m.method, m.method_len, "types"));
    cr_assert_eq(m.size, sbuf.size);
    const msgpack_object *p = m.params->via.array.ptr;
    cr_assert_eq(m.params->via.array.size, 22);
    cr_assert_eq(p[0].type, MSGPACK_OBJECT_NIL);
    cr_assert(p[1].via.boolean && !p[2].via.boolean);
    cr_assert_eq(p[3].via.u64, 5);
    cr_assert_eq(p[4].via.i64, -7);
    cr_assert_eq(p[5].via.u64, 200);
    cr_assert_eq(p[6].via.u64, 60000);
    cr_assert_eq(p[7].via.u64, 4000000000u);
    cr_assert_eq(p[8].via.u64, UINT64_MAX);
    cr_assert_eq(p[9].via.i64, -100);
    cr_assert_eq(p[10].via.i64, -30000);
    cr_assert_eq(p[11].via.i64, -2000000000);
    cr_assert_eq(p[12].via.i64, INT64_MIN);
    cr_assert_eq(p[13].type, MSGPACK_OBJECT_FLOAT32);
    cr_assert_float_eq(p[13].via.f64, 1.5, 1e-9);
    cr_assert_float_eq(p[14].via.f64, -2.25, 1e-12);
    cr_assert_eq(p[15].via.str.size, 3);
    cr_assert_eq(memcmp(p[15].via.str.ptr, "fix", 3), 0);
    cr_assert_eq(p[16].via.str.size, 40);
    cr_assert_eq(p[17].via.str.size, sizeof(big_str) - 1);
    cr_assert_eq(p[17].via.str.ptr[69998], 'x');
    cr_assert_eq(p[18].type, MSGPACK_OBJECT_BIN);
    cr_assert_eq(p[18].via.bin.size, 300);
    cr_assert_eq(p[18].via.bin.ptr[2], 3);
    cr_assert_eq(p[19].type, MSGPACK_OBJECT_EXT);
    cr_assert_eq(p[19].via.ext.type, 9);
    cr_assert_eq(memcmp(p[19].via.ext.ptr, "abcd", 4), 0);
    cr_assert_eq(p[20].via.map.size, 1);
    cr_assert_eq(p[20].via.map.ptr[0].val.via.array.size, 20);
    cr_assert_eq(p[20].via.map.ptr[0].val.via.array.ptr[19].via.u64, 19);
    cr_assert_eq(p[21].via.map.size, 0);
    cr_assert_eq(ipc_decoder_next(dec, &m, &err), 0);
}

Test(decoder, response_and_notification_shapes)
{
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_uint32(&pk, UINT32_MAX);
    msgpack_pack_nil(&pk);
    pack_str("result");
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, 2);
    pack_str("tick");
    msgpack_pack_array(&pk, 0);
    feed(sbuf.data, sbuf.size);

    struct ipc_message m;
    struct plugd_error err;
    cr_assert_eq(ipc_decoder_next(dec, &m, &err), 1);
    cr_assert_eq(m.type, IPC_RESPONSE);
    cr_assert_eq(m.msgid, UINT32_MAX);
    cr_assert_eq(m.error->type, MSGPACK_OBJECT_NIL);
    cr_assert_eq(m.result->type, MSGPACK_OBJECT_STR);
    cr_assert_eq(ipc_decoder_next(dec, &m, &err), 1);
    cr_assert_eq(m.type, IPC_NOTIFY);
    cr_assert(ipc_str_equals(m.method, m.method_len, "tick"));
    cr_assert_eq(ipc_decoder_next(dec, &m, &err), 0);
}

Test(decoder, byte_by_byte_feeding_yields_the_same_messages)
{
    for (uint32_t i = 0; i < 50; i++) {
        pack_request(i, "m", 1);
        msgpack_pack_uint32(&pk, i * 1000);
    }
    struct ipc_message m;
    struct plugd_error err;
    uint32_t seen = 0;
    for (size_t i = 0; i < sbuf.size; i++) {
        feed(sbuf.data + i, 1);
        int r;
        while ((r = ipc_decoder_next(dec, &m, &err)) == 1) {
            cr_assert_eq(m.msgid, seen);
            cr_assert_eq(ipc_param(&m, 0)->via.u64, seen * 1000);
            seen++;
        }
        cr_assert_eq(r, 0);
    }
    cr_assert_eq(seen, 50);
    cr_assert_eq(ipc_decoder_buffered(dec), 0);
}

Test(decoder, truncated_message_waits_for_more)
{
    pack_request(1, "echo", 1);
    pack_str("payload");
    feed(sbuf.data, sbuf.size - 3);
    struct ipc_message m;
    struct plugd_error err;
    cr_assert_eq(ipc_decoder_next(dec, &m, &err), 0);
    feed(sbuf.data + sbuf.size - 3, 3);
    cr_assert_eq(ipc_decoder_next(dec, &m, &err), 1);
}

Test(decoder, request_with_three_elements_is_invalid)
{
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint8(&pk, 1);
    pack_str("m");
    expect_refused(PLUGD_E_INVALID_MESSAGE);
}

Test(decoder, array_of_five_is_invalid)
{
    msgpack_pack_array(&pk, 5);
    for (int i = 0; i < 5; i++)
        msgpack_pack_uint8(&pk, 1);
    expect_refused(PLUGD_E_INVALID_MESSAGE);
}

Test(decoder, message_type_3_is_invalid)
{
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, 3);
    pack_str("m");
    msgpack_pack_array(&pk, 0);
    expect_refused(PLUGD_E_INVALID_MESSAGE);
}

Test(decoder, type_as_str_is_invalid)
{
    msgpack_pack_array(&pk, 3);
    pack_str("2");
    pack_str("m");
    msgpack_pack_array(&pk, 0);
    expect_refused(PLUGD_E_INVALID_MESSAGE);
}

Test(decoder, negative_msgid_is_invalid)
{
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_int8(&pk, -1);
    pack_str("m");
    msgpack_pack_array(&pk, 0);
    expect_refused(PLUGD_E_INVALID_MESSAGE);
}

Test(decoder, msgid_over_32_bits_is_invalid)
{
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_uint64(&pk, (uint64_t)UINT32_MAX + 1);
    msgpack_pack_nil(&pk);
    msgpack_pack_nil(&pk);
    expect_refused(PLUGD_E_INVALID_MESSAGE);
}

Test(decoder, method_as_int_is_invalid)
{
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_uint8(&pk, 5);
    msgpack_pack_array(&pk, 0);
    expect_refused(PLUGD_E_INVALID_MESSAGE);
}

Test(decoder, params_as_map_are_invalid)
{
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, 2);
    pack_str("m");
    msgpack_pack_map(&pk, 0);
    expect_refused(PLUGD_E_INVALID_MESSAGE);
}

Test(decoder, top_level_map_or_int_is_invalid)
{
    msgpack_pack_map(&pk, 0);
    expect_refused(PLUGD_E_INVALID_MESSAGE);
    ipc_decoder_free(dec);
    dec = ipc_decoder_new(0);
    msgpack_sbuffer_clear(&sbuf);
    msgpack_pack_int(&pk, 42);
    expect_refused(PLUGD_E_INVALID_MESSAGE);
}

Test(decoder, byte_c1_is_malformed)
{
    raw("\x94\x00\x01\xc1", 4);
    expect_refused(PLUGD_E_MALFORMED_MESSAGE);
}

/* Headers that declare gigabytes are refused from the header alone: no
 * waiting for the data, no allocation. */
Test(decoder, gigabyte_declarations_are_refused_at_the_header)
{
    static const char *const headers[] = {
        "\xdd\xff\xff\xff\xff", /* array 32 */
        "\xdf\xff\xff\xff\xff", /* map 32 */
        "\xdb\xff\xff\xff\xff", /* str 32 */
        "\xc6\xff\xff\xff\xff", /* bin 32 */
        "\xc9\xff\xff\xff\xff", /* ext 32 */
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        ipc_decoder_free(dec);
        dec = ipc_decoder_new(0);
        msgpack_sbuffer_clear(&sbuf);
        raw("\x94\x00\x01\xa1m\x91", 6);
        raw(headers[i], 5);
        expect_refused(PLUGD_E_MESSAGE_TOO_LARGE);
    }
}

static void pack_nested(int depth)
{
    /* depth containers in all: the message array, params, then nested arrays */
    pack_request(1, "deep", 1);
    for (int i = 0; i < depth - 3; i++)
        msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 0);
}

Test(decoder, nesting_at_the_limit_decodes)
{
    pack_nested(IPC_MAX_DEPTH);
    feed(sbuf.data, sbuf.size);
    struct ipc_message m;
    struct plugd_error err;
    cr_assert_eq(ipc_decoder_next(dec, &m, &err), 1, "%s", err.message);
}

Test(decoder, nesting_past_the_limit_is_malformed)
{
    pack_nested(IPC_MAX_DEPTH + 1);
    expect_refused(PLUGD_E_MALFORMED_MESSAGE);
}

Test(decoder, hundred_thousand_nested_arrays_are_refused_quickly)
{
    for (int i = 0; i < 100000; i++)
        raw("\x91", 1);
    expect_refused(PLUGD_E_MALFORMED_MESSAGE);
}

Test(decoder, message_exactly_at_the_limit_passes_and_one_byte_more_does_not)
{
    static char payload[1000];
    pack_request(1, "m", 1);
    size_t head = sbuf.size;
    msgpack_pack_str_with_body(&pk, payload, 200); /* str 8: 2 header bytes */
    size_t limit = sbuf.size;
    cr_assert_eq(limit, head + 202);

    ipc_decoder_free(dec);
    dec = ipc_decoder_new(limit);
    feed(sbuf.data, sbuf.size);
    struct ipc_message m;
    struct plugd_error err;
    cr_assert_eq(ipc_decoder_next(dec, &m, &err), 1, "%s", err.message);

    msgpack_sbuffer_clear(&sbuf);
    pack_request(1, "m", 1);
    msgpack_pack_str_with_body(&pk, payload, 201);
    ipc_decoder_free(dec);
    dec = ipc_decoder_new(limit);
    expect_refused(PLUGD_E_MESSAGE_TOO_LARGE);
}

Test(decoder, oversize_is_refused_before_the_payload_arrives)
{
    ipc_decoder_free(dec);
    dec = ipc_decoder_new(1024);
    pack_request(1, "m", 1);
    msgpack_pack_bin(&pk, 4096); /* header only: the bytes never come */
    expect_refused(PLUGD_E_MESSAGE_TOO_LARGE);
}

Test(decoder, space_and_commit_read_in_place)
{
    pack_request(3, "in-place", 0);
    size_t len;
    char *p = ipc_decoder_space(dec, &len);
    cr_assert_not_null(p);
    cr_assert_geq(len, sbuf.size);
    memcpy(p, sbuf.data, sbuf.size);
    ipc_decoder_commit(dec, sbuf.size);
    struct ipc_message m;
    struct plugd_error err;
    cr_assert_eq(ipc_decoder_next(dec, &m, &err), 1);
    cr_assert_eq(m.msgid, 3);
}

Test(error, names_round_trip_for_every_code)
{
    for (int i = 0; i < PLUGD_ERRC_COUNT; i++) {
        const char *name = plugd_errc_name((enum plugd_errc)i);
        enum plugd_errc back;
        cr_assert_eq(plugd_errc_from_name(name, strlen(name), &back), 0, "%s", name);
        cr_assert_eq(back, (enum plugd_errc)i);
    }
    enum plugd_errc unused;
    cr_assert_eq(plugd_errc_from_name("nope", 4, &unused), -1);
    cr_assert_str_eq(plugd_errc_name(PLUGD_ERRC_COUNT), "unknown");
}

Test(error, long_messages_are_truncated_safely)
{
    struct plugd_error e;
    char big[1000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(plugd_error_set(&e, PLUGD_E_TIMEOUT, "%s", big), -1);
    cr_assert_eq(e.code, PLUGD_E_TIMEOUT);
    cr_assert_eq(strlen(e.message), PLUGD_ERROR_MESSAGE_MAX - 1);
    cr_assert_eq(plugd_error_set(NULL, PLUGD_E_TIMEOUT, "x"), -1);
}

Test(decoder, arg_reads_the_map_argument_of_plugd_methods)
{
    pack_request(1, "plugd.hello", 1);
    msgpack_pack_map(&pk, 2);
    pack_str("protocol");
    msgpack_pack_int(&pk, 1);
    pack_str("sdk");
    pack_str("x");
    feed(sbuf.data, sbuf.size);
    struct ipc_message m;
    cr_assert_eq(ipc_decoder_next(dec, &m, NULL), 1);
    cr_assert_eq(ipc_arg(&m, "protocol")->via.u64, 1);
    cr_assert_eq(ipc_arg(&m, "sdk")->type, MSGPACK_OBJECT_STR);
    cr_assert_null(ipc_arg(&m, "missing"));
    cr_assert_null(ipc_map_get(ipc_param(&m, 0), "prot"));
    cr_assert_null(ipc_map_get(NULL, "protocol"));
    cr_assert_null(ipc_param(&m, 1));
}
