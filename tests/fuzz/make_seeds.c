/* Writes the seed corpus of fuzz_decoder into the folder given as argument:
 *
 *     ninja -C build-fuzz tests/fuzz/make_seeds
 *     build-fuzz/tests/fuzz/make_seeds tests/fuzz/corpus/decoder
 *
 * Each seed is one split byte (see split_size in fuzz_decoder.c) followed by
 * a stream: valid messages of every shape and msgpack type, then hostile
 * ones, each with one defect. Exotic encodings (str16 for a short str, a
 * uint64 holding 1, ...) are written as raw bytes, as msgpack-c's packer
 * always picks the shortest. */
#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

static msgpack_sbuffer sb;
static msgpack_packer pk;
static const char *dir;
static int failed;

#define RAW(s) msgpack_sbuffer_write(&sb, s, sizeof(s) - 1)

/* Starts a seed whose stream is cut into pieces chosen by `split`. */
static void begin(unsigned char split)
{
    msgpack_sbuffer_clear(&sb);
    msgpack_sbuffer_write(&sb, (const char *)&split, 1);
}

static void save(const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(sb.data, 1, sb.size, f) != sb.size || fclose(f) != 0) {
        fprintf(stderr, "make_seeds: cannot write %s: %s\n", path, strerror(errno));
        failed = 1;
    }
}

static void str(const char *s)
{
    msgpack_pack_str_with_body(&pk, s, strlen(s));
}

/* Packs [0, msgid, method, [ (caller packs nparams objects) */
static void request(uint32_t msgid, const char *method, uint32_t nparams)
{
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint32(&pk, msgid);
    str(method);
    msgpack_pack_array(&pk, nparams);
}

/* Packs [1, msgid, (caller packs error and result) */
static void response(uint32_t msgid)
{
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_uint32(&pk, msgid);
}

/* Packs [2, method, [ (caller packs nparams objects) */
static void notify(const char *method, uint32_t nparams)
{
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, 2);
    str(method);
    msgpack_pack_array(&pk, nparams);
}

static void error_map(const char *code, const char *message)
{
    msgpack_pack_map(&pk, 2);
    str("code");
    str(code);
    str("message");
    str(message);
}

/* A notification whose params nest `levels` arrays deep, counting the message array. */
static void nested(unsigned levels)
{
    RAW("\x93\x02\xa1n");
    for (unsigned i = 2; i < levels; i++)
        RAW("\x91");
    RAW("\x90");
}

static void valid_seeds(void)
{
    begin(0);
    request(1, "echo", 1);
    str("hello");
    save("01-request-echo");

    begin(1);
    request(2, "add", 2);
    msgpack_pack_int(&pk, 2);
    msgpack_pack_int(&pk, -40);
    save("02-request-add");

    begin(2);
    response(1);
    msgpack_pack_nil(&pk);
    str("hello");
    save("03-response-result");

    begin(3);
    response(3);
    error_map("method_not_found", "no method \"nosuch\"");
    msgpack_pack_nil(&pk);
    save("04-response-error-map");

    begin(4);
    response(4);
    str("a foreign peer's error");
    msgpack_pack_nil(&pk);
    save("05-response-error-str");

    begin(0x10);
    notify("tick", 1);
    msgpack_pack_uint64(&pk, 7);
    save("06-notify-tick");

    begin(5);
    request(10, "echo", 1);
    msgpack_pack_true(&pk);
    response(10);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    notify("tick", 0);
    request(11, "ping", 0);
    save("07-stream-mixed");

    begin(0xc0);
    for (uint32_t i = 1; i <= 30; i++) {
        if (i % 3 == 0) {
            notify("tick", 1);
            msgpack_pack_uint32(&pk, i);
        } else if (i % 3 == 1) {
            request(i, "add", 2);
            msgpack_pack_uint32(&pk, i);
            msgpack_pack_int32(&pk, -(int32_t)i);
        } else {
            response(i - 1);
            msgpack_pack_nil(&pk);
            msgpack_pack_int(&pk, 0);
        }
    }
    save("08-stream-many");

    /* Every integer encoding, canonical or not: fixints, uint 8..64, int 8..64. */
    begin(0);
    RAW("\x94\x00\x01\xa4ints\xdc\x00\x10"
        "\x00\x7f\xe0\xff"
        "\xcc\xff\xcd\xff\xff\xce\xff\xff\xff\xff\xcf\xff\xff\xff\xff\xff\xff\xff\xff"
        "\xd0\x80\xd1\x80\x00\xd2\x80\x00\x00\x00\xd3\x80\x00\x00\x00\x00\x00\x00\x00"
        "\xcc\x01\xcf\x00\x00\x00\x00\x00\x00\x00\x01\xd3\x00\x00\x00\x00\x00\x00\x00\x05"
        "\xd0\x7f");
    save("09-types-ints");

    /* float32 and float64, with NaNs and infinities */
    begin(7);
    RAW("\x94\x00\x02\xa6"
        "floats\x96"
        "\xca\x3f\xc0\x00\x00\xcb\xc0\x02\x00\x00\x00\x00\x00\x00"
        "\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00\xca\x7f\x80\x00\x00"
        "\xca\xff\xc0\x00\x01\xcb\x80\x00\x00\x00\x00\x00\x00\x00");
    save("10-types-floats");

    /* fixstr, str8, str16, str32 (the method too), empty strs */
    begin(0);
    RAW("\x94\x00\x03\xda\x00\x04strs\x96"
        "\xa5hello\xd9\x03"
        "abc\xda\x00\x03"
        "abc\xdb\x00\x00\x00\x03"
        "abc\xa0\xd9\x00");
    save("11-types-strs");

    begin(13);
    RAW("\x93\x02\xdb\x00\x00\x00\x04"
        "bins\x94"
        "\xc4\x03"
        "abc\xc5\x00\x03"
        "abc\xc6\x00\x00\x00\x03"
        "abc\xc4\x00");
    save("12-types-bins");

    /* fixext 1/2/4/8/16, ext 8/16/32, an empty ext, a timestamp */
    begin(0);
    RAW("\x94\x00\x05\xa4"
        "exts\x9a"
        "\xd4\x01x\xd5\x02xy\xd6\x03"
        "abcd\xd7\x04"
        "abcdefgh\xd8\x05"
        "abcdefghijklmnop"
        "\xc7\x03\x06"
        "abc\xc8\x00\x03\x07"
        "abc\xc9\x00\x00\x00\x03\x08"
        "abc\xc7\x00\x09"
        "\xd6\xff\x00\x00\x00\x01");
    save("13-types-exts");

    /* array16/32, map16/32, keys that are not strs, nested maps and arrays */
    begin(0x21);
    RAW("\x94\x00\x06\xaa"
        "containers\x96"
        "\xdc\x00\x02\xc0\xc3\xdd\x00\x00\x00\x01\xc2"
        "\xde\x00\x01\xa1k\xc0\xdf\x00\x00\x00\x01\x01\x02"
        "\x84\x00\xa4zero\xc0\xc0\x91\x01\xa5"
        "array\x80\x90"
        "\x81\xa1"
        "a\x81\xa1"
        "b\x92\x01\x81\xa1"
        "c\xc0");
    save("14-types-containers");

    begin(0);
    nested(32); /* the deepest nesting allowed */
    save("15-depth-32");

    begin(0xd0);
    request(5, "blob", 1);
    {
        static char blob[4000];
        memset(blob, 'x', sizeof(blob));
        msgpack_pack_bin_with_body(&pk, blob, sizeof(blob));
    }
    save("16-size-4000");

    /* msgid 0 and 2^32-1 as uint32; a method named in str16 */
    begin(11);
    RAW("\x94\x00\x00\xa1m\x90"
        "\x94\x01\xce\xff\xff\xff\xff\xc0\xc0"
        "\x94\x00\xcd\x00\x01\xda\x00\x01m\x90");
    save("17-msgid-limits");

    begin(0);
    request(7, "plugd.hello", 1);
    msgpack_pack_map(&pk, 2);
    str("protocol");
    msgpack_pack_int(&pk, 1);
    str("sdk");
    str("plugd-worker 0.1.0");
    save("18-plugd-hello");
}

static void hostile_seeds(void)
{
    begin(1);
    RAW("\x94\x00\x01\xa4"
        "echo\x91\xa5hel"); /* cut inside the str */
    save("19-truncated-request");

    begin(2);
    RAW("\x93\x02\xa1m\x90" /* a valid notification, then half a str32 header */
        "\x94\x00\x01\xdb\x00");
    save("20-truncated-header");

    begin(0);
    RAW("\x82\xa4type\x00\xa5msgid\x01");
    save("21-shape-not-array");

    begin(3);
    RAW("\x93\x00\x01\xa1m");
    save("22-shape-request-3-elements");

    begin(0);
    RAW("\x94\x02\xa1m\x90\xc0");
    save("23-shape-notify-4-elements");

    begin(0);
    RAW("\x93\x02\xa1m\x90\x90");
    save("24-shape-empty-array");

    begin(0);
    RAW("\x94\x03\x01\xa1m\x90");
    save("25-shape-type-3");

    begin(6);
    RAW("\x94\x00\xcf\x00\x00\x00\x01\x00\x00\x00\x00\xa1m\x90");
    save("26-msgid-too-big");

    begin(0);
    RAW("\x94\x01\xff\xc0\xc0");
    save("27-msgid-negative");

    begin(0);
    RAW("\x94\x00\x01\x2a\x90");
    save("28-method-not-str");

    begin(0);
    RAW("\x93\x02\xa0\x90");
    save("29-method-empty");

    begin(0);
    RAW("\x94\x00\x01\xa1m\x80");
    save("30-params-not-array");

    begin(4);
    RAW("\x93\x02\xa1m\x90"
        "\x94\x00\x01\xa1m\x92\x01\xc1");
    save("31-byte-c1");

    begin(0);
    RAW("\x94\x00\x01\xa1m\xdd\xff\xff\xff\xff\x01\x02");
    save("32-huge-array32");

    begin(1);
    RAW("\x94\x00\x01\xdb\xff\xff\xff\xf0"
        "abc");
    save("33-huge-str32");

    begin(0);
    RAW("\x94\x00\x01\xa1m\x91\xc6\x80\x00\x00\x00"
        "abc");
    save("34-huge-bin32");

    begin(0);
    RAW("\x93\x02\xa1m\x91\xdf\x7f\xff\xff\xff\x01\x02");
    save("35-huge-map32");

    begin(0);
    RAW("\x93\x02\xa1m\x91\xc9\xff\xff\xff\xff\x01");
    save("36-huge-ext32");

    begin(0);
    nested(33);
    save("37-depth-33");

    begin(9);
    nested(40);
    save("38-depth-40");

    begin(0xff);
    request(8, "blob", 1);
    {
        static char blob[4100];
        memset(blob, 'y', sizeof(blob));
        msgpack_pack_bin_with_body(&pk, blob, sizeof(blob));
    }
    save("39-size-4100");

    begin(0);
    RAW("\x93\x02\xa1m\x90"
        "\x93\x02\xa1m\x91\xdc\x10\x00"); /* array16 of 4096: over the limit with its header */
    save("40-array16-over-limit");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    dir = argv[1];
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    valid_seeds();
    hostile_seeds();
    msgpack_sbuffer_destroy(&sb);
    return failed;
}
