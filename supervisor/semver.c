/* Semantic Versioning 2.0.0 (semver.org): which strings are versions and
 * how two of them rank. Manifests are checked with it; upgrades compare
 * with it. */
#include "semver.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A dot-separated identifier list: alphanumerics and '-', none empty; with
 * `is_numeric_strict`, numeric identifiers have no leading zero. */
static bool is_identifiers(const char *s, size_t n, bool is_numeric_strict)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.') {
            if (!isalnum((unsigned char)s[i]) && s[i] != '-')
                return false;
            continue;
        }
        size_t len = i - start;
        if (len == 0)
            return false;
        bool is_numeric = true;
        for (size_t k = start; k < i; k++)
            is_numeric = is_numeric && isdigit((unsigned char)s[k]);
        if (is_numeric_strict && is_numeric && len > 1 && s[start] == '0')
            return false;
        start = i + 1;
    }
    return true;
}

/* Parses MAJOR.MINOR.PATCH; sets *rest to what follows. */
static bool parse_core(const char *v, unsigned long long core[3], const char **rest)
{
    const char *p = v;
    for (int i = 0; i < 3; i++) {
        if (!isdigit((unsigned char)*p) || (p[0] == '0' && isdigit((unsigned char)p[1])))
            return false;
        char *end;
        errno = 0;
        core[i] = strtoull(p, &end, 10);
        if (errno)
            return false;
        p = end;
        if (i < 2 && *p++ != '.')
            return false;
    }
    *rest = p;
    return true;
}

bool semver_is_valid(const char *v)
{
    unsigned long long core[3];
    const char *rest;
    if (!parse_core(v, core, &rest))
        return false;
    const char *plus = strchr(rest, '+');
    size_t pre_len = plus ? (size_t)(plus - rest) : strlen(rest);
    if (pre_len > 0 && (rest[0] != '-' || !is_identifiers(rest + 1, pre_len - 1, true)))
        return false;
    return plus == NULL || is_identifiers(plus + 1, strlen(plus + 1), false);
}

static int compare_identifier(const char *a, size_t an, const char *b, size_t bn)
{
    bool a_num = true, b_num = true;
    for (size_t i = 0; i < an; i++)
        a_num = a_num && isdigit((unsigned char)a[i]);
    for (size_t i = 0; i < bn; i++)
        b_num = b_num && isdigit((unsigned char)b[i]);
    if (a_num && b_num) {
        if (an != bn)
            return an < bn ? -1 : 1; /* no leading zeros: longer is larger */
        return memcmp(a, b, an);
    }
    if (a_num != b_num)
        return a_num ? -1 : 1; /* numeric identifiers rank lower */
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

int semver_compare(const char *a, const char *b)
{
    unsigned long long ca[3] = {0}, cb[3] = {0};
    const char *ra = "", *rb = "";
    parse_core(a, ca, &ra);
    parse_core(b, cb, &rb);
    for (int i = 0; i < 3; i++)
        if (ca[i] != cb[i])
            return ca[i] < cb[i] ? -1 : 1;
    size_t na = strcspn(ra, "+"), nb = strcspn(rb, "+");
    if (na == 0 && nb == 0)
        return 0;
    if (na == 0 || nb == 0)
        return na == 0 ? 1 : -1; /* a release outranks its pre-releases */
    ra++, rb++, na--, nb--;
    while (na > 0 && nb > 0) {
        size_t la = strcspn(ra, ".+"), lb = strcspn(rb, ".+");
        la = la < na ? la : na;
        lb = lb < nb ? lb : nb;
        int c = compare_identifier(ra, la, rb, lb);
        if (c)
            return c < 0 ? -1 : 1;
        ra += la, rb += lb, na -= la, nb -= lb;
        if (na > 0)
            ra++, na--;
        if (nb > 0)
            rb++, nb--;
    }
    return (na > 0) - (nb > 0);
}
