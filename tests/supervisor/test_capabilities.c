/* The capability table (supervisor/capabilities.c) against what it must
 * agree with: its pinned rows, docs/manifest.md and docs/sandbox.md, the
 * host services plugd grants (services.c), the manifest's refusal, and the
 * seccomp programs plugd compiles per kind of policy (sandbox/seccomp.c). */
#include <criterion/criterion.h>
#include <limits.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capabilities.h"
#include "layers.h"
#include "manifest.h"
#include "services.h"

/* The table as it must be: a changed row fails here first (then change
 * docs/manifest.md with it). Services joined by ",". */
static const struct {
    const char *name;
    const char *services;
    uint32_t relax;
} pinned[] = {
    {"events.emit", "events.emit", 0},
    {"events.subscribe", "events.subscribe", 0},
    {"plugin.state.read", "state.get,state.list", 0},
    {"plugin.state.write", "state.set,state.delete", 0},
    {"net.outbound", "", SB_RELAX_NETWORK},
    {"fs.read", "", SB_RELAX_READ_USR},
    {"fs.data", "", SB_RELAX_DATA},
    {"process.spawn", "", SB_RELAX_SPAWN},
    {"host.call", "host.*", 0},
};

#define N_PINNED (sizeof(pinned) / sizeof(pinned[0]))

/* The services every worker has without a capability. */
static const char *const open_services = "log";

static void join(const char *const *items, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (; *items != NULL; items++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", used ? "," : "", *items);
}

Test(capabilities, rows_are_the_pinned_ones)
{
    size_t n;
    const struct capability *table = cap_table(&n);
    cr_assert_eq(n, N_PINNED, "the table has %zu rows, the test pins %zu", n, N_PINNED);
    for (size_t i = 0; i < n; i++) {
        char services[256];
        join(table[i].services, services, sizeof(services));
        cr_expect_str_eq(table[i].name, pinned[i].name);
        cr_expect_str_eq(services, pinned[i].services, "%s", table[i].name);
        cr_expect_eq(table[i].relax, pinned[i].relax, "%s", table[i].name);
        cr_expect(table[i].description != NULL && table[i].description[0] != '\0', "%s",
                  table[i].name);
        cr_expect_eq(cap_find(table[i].name), &table[i], "%s is listed once", table[i].name);
        /* the names doctor shows are the mask's, one per bit */
        size_t bits = 0, names = 0;
        for (uint32_t b = 1; b != 0; b <<= 1)
            if (table[i].relax & b) {
                cr_expect_not_null(cap_relax_name(b), "relaxation %#x has no name", b);
                bits++;
            }
        for (const char *const *s = table[i].sandbox; *s != NULL; s++)
            names++;
        cr_expect_eq(names, bits, "%s", table[i].name);
    }
}

/* ------------------------------------------------------------ the docs */

static char *read_doc(const char *name)
{
    const char *root = getenv("PLUGD_SOURCE_ROOT");
    cr_assert_not_null(root, "PLUGD_SOURCE_ROOT is not set (run the tests with meson test)");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/docs/%s", root, name);
    FILE *f = fopen(path, "re");
    cr_assert_not_null(f, "cannot open %s", path);
    static char text[1 << 17];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    cr_assert_lt(n, sizeof(text) - 1, "%s is longer than the test reads", path);
    text[n] = '\0';
    return strdup(text);
}

/* The rows "| `NAME` | ... |" of the first table after the heading. */
struct doc_row {
    char name[64];
    char cells[2][1024]; /* the next two cells */
};

static size_t doc_table(const char *text, const char *heading, struct doc_row *rows, size_t max)
{
    const char *at = strstr(text, heading);
    cr_assert_not_null(at, "no \"%s\"", heading);
    at = strstr(at, "\n|");
    cr_assert_not_null(at, "no table below \"%s\"", heading);
    size_t n = 0;
    for (at++; *at == '|'; at = strchr(at, '\n') + 1) {
        const char *end = strchr(at, '\n');
        cr_assert_not_null(end);
        char line[2048];
        snprintf(line, sizeof(line), "%.*s", (int)(end - at), at);
        if (strncmp(line, "| `", 3) != 0)
            continue; /* the header and its rule */
        cr_assert_lt(n, max);
        struct doc_row *r = &rows[n++];
        memset(r, 0, sizeof(*r));
        char *cell = strtok(line + 1, "|");
        sscanf(cell, " `%63[^`]`", r->name);
        for (int i = 0; i < 2 && (cell = strtok(NULL, "|")) != NULL; i++)
            snprintf(r->cells[i], sizeof(r->cells[i]), "%s", cell);
    }
    return n;
}

/* The `code` spans of a cell joined by ",", "host.<method>" read as the
 * table's "host.*"; "" for "—". */
static void code_spans(const char *cell, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (const char *s = strchr(cell, '`'); s != NULL; s = strchr(s, '`')) {
        const char *e = strchr(s + 1, '`');
        cr_assert_not_null(e, "unbalanced ` in %s", cell);
        int len = (int)(e - s - 1);
        if (strncmp(s + 1, "host.<method>", (size_t)len) == 0 && len == 13)
            used += (size_t)snprintf(out + used, size - used, "%shost.*", used ? "," : "");
        else
            used +=
                (size_t)snprintf(out + used, size - used, "%s%.*s", used ? "," : "", len, s + 1);
        s = e + 1;
    }
}

Test(capabilities, docs_manifest_lists_exactly_the_table)
{
    char *text = read_doc("manifest.md");
    struct doc_row rows[64];
    size_t n_doc = doc_table(text, "\n## Capabilities\n", rows, 64);
    size_t n;
    const struct capability *table = cap_table(&n);
    for (size_t i = 0; i < n_doc; i++) {
        const struct capability *c = cap_find(rows[i].name);
        cr_expect_not_null(c, "docs/manifest.md documents `%s`, which the table lacks",
                           rows[i].name);
        if (c == NULL)
            continue;
        char doc[512], want[512];
        /* host services: every code span ("events.emit (own namespace only)") */
        code_spans(rows[i].cells[0], doc, sizeof(doc));
        join(c->services, want, sizeof(want));
        cr_expect_str_eq(doc, want, "the host services of %s", c->name);
        /* sandbox relaxation: the span before the ":" ("`network`: ...") */
        char *colon = strstr(rows[i].cells[1], "`:");
        if (colon != NULL)
            colon[1] = '\0';
        code_spans(rows[i].cells[1], doc, sizeof(doc));
        join(c->sandbox, want, sizeof(want));
        cr_expect_str_eq(doc, want, "the sandbox relaxation of %s", c->name);
    }
    for (size_t i = 0; i < n; i++) {
        bool is_documented = false;
        for (size_t j = 0; j < n_doc; j++)
            is_documented |= strcmp(rows[j].name, table[i].name) == 0;
        cr_expect(is_documented, "%s is not in docs/manifest.md \"Capabilities\"", table[i].name);
    }
    cr_expect_eq(n_doc, n, "docs/manifest.md has %zu rows, the table %zu", n_doc, n);
    free(text);
}

Test(capabilities, docs_sandbox_lists_every_relaxing_capability)
{
    char *text = read_doc("sandbox.md");
    struct doc_row rows[64];
    size_t n_doc = doc_table(text, "\n## How each capability widens the policy\n", rows, 64);
    size_t n, n_relaxing = 0;
    const struct capability *table = cap_table(&n);
    for (size_t i = 0; i < n; i++) {
        if (table[i].relax == 0)
            continue;
        n_relaxing++;
        bool is_documented = false;
        for (size_t j = 0; j < n_doc; j++)
            is_documented |= strcmp(rows[j].name, table[i].name) == 0;
        cr_expect(is_documented, "%s is not in docs/sandbox.md", table[i].name);
    }
    for (size_t j = 0; j < n_doc; j++) {
        const struct capability *c = cap_find(rows[j].name);
        cr_expect(c != NULL && c->relax != 0,
                  "docs/sandbox.md says %s widens the policy; the table says it does not",
                  rows[j].name);
    }
    cr_expect_eq(n_doc, n_relaxing);
    free(text);
}

/* ------------------------------------------------------------ services */

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* names[0..n) sorted, joined by "," into out; frees them. */
static void sorted(char **names, size_t n, char *out, size_t size)
{
    qsort(names, n, sizeof(names[0]), by_name);
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? "," : "", names[i]);
        free(names[i]);
    }
}

/* What services_pack_granted grants (the worker's host_api) a manifest
 * with `caps`, sorted. */
static void granted(const char *const *caps, size_t n_caps, char *out, size_t size)
{
    struct manifest m = {0};
    for (size_t i = 0; i < n_caps; i++)
        m.capabilities[i] = (char *)caps[i];
    m.n_capabilities = n_caps;
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    services_pack_granted(&pk, &m);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, buf.data, buf.size, NULL), MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(u.data.type, MSGPACK_OBJECT_ARRAY);
    char *names[64];
    size_t n = u.data.via.array.size;
    cr_assert_lt(n, 64);
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *o = &u.data.via.array.ptr[i];
        cr_assert_eq(o->type, MSGPACK_OBJECT_STR);
        cr_assert_not_null(names[i] = strndup(o->via.str.ptr, o->via.str.size));
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&buf);
    sorted(names, n, out, size);
}

/* The open services and those the rows `rows` list, sorted. */
static void expected(const struct capability *const *rows, size_t n_rows, char *out, size_t size)
{
    char *names[64];
    size_t n = 0;
    cr_assert_not_null(names[n++] = strdup(open_services));
    for (size_t i = 0; i < n_rows; i++)
        for (const char *const *s = rows[i]->services; *s != NULL; s++) {
            cr_assert_lt(n, 64);
            cr_assert_not_null(names[n++] = strdup(*s));
        }
    sorted(names, n, out, size);
}

Test(capabilities, each_service_is_granted_by_exactly_its_rows)
{
    char got[1024], want[1024];
    granted(NULL, 0, got, sizeof(got));
    cr_expect_str_eq(got, open_services, "without capabilities a worker gets only the open ones");
    size_t n;
    const struct capability *table = cap_table(&n);
    const char *all[64];
    const struct capability *all_rows[64];
    for (size_t i = 0; i < n; i++) {
        const struct capability *row = &table[i];
        granted(&row->name, 1, got, sizeof(got));
        expected(&row, 1, want, sizeof(want));
        cr_expect_str_eq(got, want, "%s alone", row->name);
        all[i] = row->name;
        all_rows[i] = row;
        struct manifest m = {.n_capabilities = 1};
        m.capabilities[0] = (char *)row->name;
        cr_expect_eq(cap_relaxations(&m), row->relax, "%s alone", row->name);
    }
    granted(all, n, got, sizeof(got));
    expected(all_rows, n, want, sizeof(want));
    cr_expect_str_eq(got, want, "every capability: every service a row names, none else");
}

Test(capabilities, relaxations_add_up)
{
    size_t n;
    const struct capability *table = cap_table(&n);
    struct manifest m = {0};
    uint32_t want = 0;
    for (size_t i = 0; i < n; i++) {
        m.capabilities[m.n_capabilities++] = (char *)table[i].name;
        want |= table[i].relax;
        cr_expect_eq(cap_relaxations(&m), want, "the first %zu capabilities", i + 1);
    }
}

/* ------------------------------------------------------------ manifest */

Test(capabilities, an_unknown_capability_is_refused_naming_every_known_one)
{
    const char *root = getenv("PLUGD_SOURCE_ROOT");
    cr_assert_not_null(root);
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/tests/fixtures/manifests/valid-minimal", root);
    json_t *doc =
        json_pack("{s:s, s:s, s:s, s:i, s:[ss]}", "name", "caps", "version", "1.0.0", "entrypoint",
                  "run", "protocol", 1, "capabilities", "fs.read", "net.everything");
    cr_assert_not_null(doc);
    struct plugd_error err;
    cr_assert_null(manifest_parse(doc, dir, &err));
    json_decref(doc);
    cr_expect_eq(err.code, PLUGD_E_INVALID_MANIFEST);
    cr_expect(strstr(err.message, "\"capabilities[1]\": \"net.everything\" is not a known "
                                  "capability (known: ") != NULL,
              "%s", err.message);
    size_t n;
    const struct capability *table = cap_table(&n);
    for (size_t i = 0; i < n; i++)
        cr_expect(strstr(err.message, table[i].name) != NULL, "%s is not named in: %s",
                  table[i].name, err.message);
}

/* ------------------------------------------------------------ seccomp */

/* A program per combination of what changes the allow-list, compiled when
 * first asked for: the filesystem relaxations share one, so 2^N
 * relaxations do not mean 2^N programs. */
Test(capabilities, seccomp_programs_are_cached_per_kind_when_asked)
{
    cr_assert_eq(sb_filters_count(), 0, "nothing is compiled before a worker asks");
    size_t n;
    const struct capability *table = cap_table(&n);
    cr_assert_lt(n, 16);
    const struct sb_filter *by_kind[2][SB_RELAX_SECCOMP + 1] = {{0}};
    size_t kinds = 0;
    for (int eperm = 0; eperm < 2; eperm++)
        for (uint32_t subset = 0; subset < (1u << n); subset++) {
            struct manifest m = {0};
            for (size_t i = 0; i < n; i++)
                if (subset & (1u << i))
                    m.capabilities[m.n_capabilities++] = (char *)table[i].name;
            struct sb_policy p = {.relax = cap_relaxations(&m),
                                  .on_violation = eperm ? SB_VIOLATION_EPERM : SB_VIOLATION_KILL};
            const struct sb_filter *f = sb_filter_for_pid1(&p);
            cr_assert_not_null(f, "the allow-list for relaxations %#x compiles", p.relax);
            const struct sb_filter **seen = &by_kind[eperm][p.relax & SB_RELAX_SECCOMP];
            if (*seen == NULL) {
                *seen = f;
                kinds++;
            }
            cr_assert_eq(f, *seen, "relaxations %#x: one program per kind", p.relax);
            cr_assert_eq(sb_filters_count(), kinds, "relaxations %#x", p.relax);
        }
    cr_expect_eq(kinds, 8, "network x spawn x on_violation");
    sb_filters_free();
    cr_expect_eq(sb_filters_count(), 0);
}
