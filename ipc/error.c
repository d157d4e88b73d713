#include "plugd/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const errc_names[] = {
#define PLUGD_ERRC_NAME(id, name) [id] = name,
    PLUGD_ERRORS(PLUGD_ERRC_NAME)
#undef PLUGD_ERRC_NAME
};

const char *plugd_errc_name(enum plugd_errc code)
{
    if ((unsigned)code >= PLUGD_ERRC_COUNT)
        return "unknown";
    return errc_names[code];
}

int plugd_errc_from_name(const char *name, size_t len, enum plugd_errc *code)
{
    for (int i = 0; i < PLUGD_ERRC_COUNT; i++) {
        if (strlen(errc_names[i]) == len && memcmp(errc_names[i], name, len) == 0) {
            *code = (enum plugd_errc)i;
            return 0;
        }
    }
    return -1;
}

/* A message cut to fit may end inside a UTF-8 sequence: drop that
 * sequence, so a message of UTF-8 text stays UTF-8 (JSON takes nothing else). */
static void trim_partial_utf8(char *s, size_t len)
{
    size_t i = len, back = 0;
    while (i > 0 && back < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
        i--, back++;
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    if (need > 1 && back + 1 < need)
        s[i - 1] = '\0';
}

int plugd_error_vset(struct plugd_error *err, enum plugd_errc code, const char *fmt, va_list ap)
{
    if (err == NULL)
        return -1;
    err->code = code;
    err->is_from_peer = false;
    int n = vsnprintf(err->message, sizeof(err->message), fmt, ap);
    if (n >= (int)sizeof(err->message))
        trim_partial_utf8(err->message, sizeof(err->message) - 1);
    return -1;
}

int plugd_error_set(struct plugd_error *err, enum plugd_errc code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    plugd_error_vset(err, code, fmt, ap);
    va_end(ap);
    return -1;
}

void plugd_error_clear(struct plugd_error *err)
{
    err->code = PLUGD_OK;
    err->message[0] = '\0';
    err->is_from_peer = false;
}
