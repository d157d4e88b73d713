/* supervisor/event_table.c: the events plugd emits, checked against
 * docs/events.md, the payload check that ev_bus_emit runs, and the one
 * encoding (JSON and the msgpack packed from it). */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "jsonpack.h"

static char *read_doc(void)
{
    const char *root = getenv("PLUGD_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof(path), "%s/docs/events.md", root ? root : ".");
    FILE *f = fopen(path, "re");
    cr_assert_not_null(f, "cannot open %s (set PLUGD_SOURCE_ROOT)", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* The text between the first pair of backticks in [s, end), into `out`. */
static bool backticked(const char *s, const char *end, char *out, size_t size)
{
    const char *a = memchr(s, '`', (size_t)(end - s));
    const char *b = a ? memchr(a + 1, '`', (size_t)(end - a - 1)) : NULL;
    if (b == NULL || (size_t)(b - a) > size)
        return false;
    snprintf(out, size, "%.*s", (int)(b - a - 1), a + 1);
    return true;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == ' ')
        s[--n] = '\0';
    size_t lead = strspn(s, " ");
    memmove(s, s + lead, n - lead + 1);
}

/* One payload entry, "`key` type (remark)": checks it against `row`. */
static void check_entry(const struct evt_row *row, const char *s, const char *end, bool *seen)
{
    char key[64], type[64], want[64];
    cr_assert(backticked(s, end, key, sizeof(key)), "docs/events.md: %s: \"%.*s\" names no key",
              row->name, (int)(end - s), s);
    const char *t = strchr(s, '`');
    t = strchr(t + 1, '`') + 1;
    const char *paren = memchr(t, '(', (size_t)(end - t));
    snprintf(type, sizeof(type), "%.*s", (int)((paren ? paren : end) - t), t);
    trim(type);
    for (size_t i = 0; row->keys[i].name != NULL; i++) {
        if (strcmp(row->keys[i].name, key) != 0)
            continue;
        evt_types_name(row->keys[i].types, want, sizeof(want));
        cr_assert_str_eq(type, want, "docs/events.md: %s: key \"%s\" is documented as \"%s\"",
                         row->name, key, type);
        seen[i] = true;
        return;
    }
    cr_assert_fail("docs/events.md: %s documents key \"%s\", which event_table.c lacks", row->name,
                   key);
}

/* A table row "| `name` | payload | when |" of the doc. */
static enum evt_type check_doc_row(const char *line, const char *eol)
{
    char name[EV_BUS_MAX_NAME + 1];
    const char *cell = memchr(line + 1, '|', (size_t)(eol - line - 1));
    cr_assert(cell && backticked(line, cell, name, sizeof(name)), "docs/events.md: %.*s",
              (int)(eol - line), line);
    const struct evt_row *row = evt_find(name);
    cr_assert_not_null(row, "docs/events.md documents %s, which event_table.c lacks", name);
    bool seen[EVT_MAX_KEYS] = {0};
    const char *end = memchr(cell + 1, '|', (size_t)(eol - cell - 1));
    cr_assert_not_null(end);
    /* entries split at the commas outside parentheses */
    int depth = 0;
    const char *from = cell + 1;
    bool is_none = strstr(from, "—") != NULL && strstr(from, "—") < end;
    for (const char *p = from; !is_none && p <= end; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')')
            depth--;
        else if ((*p == ',' && depth == 0) || p == end) {
            check_entry(row, from, p, seen);
            from = p + 1;
        }
    }
    for (size_t i = 0; row->keys[i].name != NULL; i++)
        cr_assert(seen[i], "docs/events.md: %s does not document key \"%s\"", name,
                  row->keys[i].name);
    return (enum evt_type)(row - evt_table);
}

Test(event_table, docs_match_the_table)
{
    const char *doc = read_doc();
    const char *at = strstr(doc, "\n## Lifecycle events");
    cr_assert_not_null(at, "docs/events.md has no \"## Lifecycle events\" section");
    const char *section_end = strstr(at + 1, "\n## ");
    bool is_documented[EVT_COUNT] = {0};
    for (const char *line = at + 1; line && *line && (!section_end || line < section_end);) {
        const char *eol = strchr(line, '\n');
        if (eol == NULL)
            eol = line + strlen(line);
        if (strncmp(line, "| `", 3) == 0) {
            enum evt_type t = check_doc_row(line, eol);
            cr_assert(!is_documented[t], "docs/events.md documents %s twice", evt_table[t].name);
            is_documented[t] = true;
        }
        line = *eol ? eol + 1 : NULL;
    }
    for (size_t t = 0; t < EVT_COUNT; t++)
        cr_assert(is_documented[t], "docs/events.md does not document %s", evt_table[t].name);
}

/* plugd's names have two parts, plugins' at least three
 * (plugin.<name>.<event>): a plugin named "worker" or "health" cannot
 * emit one of plugd's events. */
Test(event_table, names_are_valid_and_outside_every_plugins_namespace)
{
    for (size_t t = 0; t < EVT_COUNT; t++) {
        const char *name = evt_table[t].name;
        cr_assert_not_null(name, "row %zu has no name", t);
        cr_assert(ev_bus_is_valid_name(name), "%s", name);
        const char *dot = strchr(name, '.');
        cr_assert(dot != NULL && strchr(dot + 1, '.') == NULL, "%s has more than two parts", name);
        cr_assert_eq(evt_find(name), &evt_table[t]);
        for (size_t i = 0; evt_table[t].keys[i].name != NULL; i++)
            for (const char *c = evt_table[t].keys[i].name; *c; c++)
                cr_assert((*c >= 'a' && *c <= 'z') || *c == '_', "%s: key \"%s\" is not snake_case",
                          name, evt_table[t].keys[i].name);
    }
    cr_assert_null(evt_find("plugin.worker.crashed"));
}

static void expect_check(enum evt_type t, const char *payload, const char *why)
{
    json_t *v = json_loads(payload, 0, NULL);
    cr_assert_not_null(v, "%s", payload);
    char got[160] = "";
    int rc = evt_check_payload(t, v, got, sizeof(got));
    json_decref(v);
    if (why == NULL)
        cr_assert_eq(rc, 0, "%s: %s", payload, got);
    else {
        cr_assert_eq(rc, -1, "%s passed", payload);
        cr_assert_str_eq(got, why);
    }
}

Test(event_table, the_payload_check_names_what_differs)
{
    expect_check(EVT_STATUS_CHANGED, "{\"previous_status\": null, \"new_status\": \"installed\"}",
                 NULL);
    expect_check(EVT_STATUS_CHANGED, "{\"previous_status\": \"ready\", \"new_status\": \"error\"}",
                 NULL);
    expect_check(EVT_STATUS_CHANGED, "{\"previousStatus\": null, \"new_status\": \"ready\"}",
                 "key \"previous_status\" is missing");
    expect_check(EVT_STATUS_CHANGED,
                 "{\"previous_status\": null, \"new_status\": \"ready\", \"extra\": 1}",
                 "key \"extra\" is not in its row");
    expect_check(EVT_WORKER_STARTED, "{\"pid\": \"12\", \"version\": \"1.0.0\"}",
                 "key \"pid\" is string, not integer");
    expect_check(EVT_LOADED, "{\"version\": null}", "key \"version\" is nil, not string");
    expect_check(EVT_ENABLED, "{}", NULL);
    expect_check(EVT_UNLOADED, "{\"remove_data\": false}", NULL);
    char why[160];
    cr_assert_eq(evt_check_payload(EVT_ENABLED, NULL, why, sizeof(why)), -1);
    cr_assert_str_eq(why, "the payload is not an object");
}

/* The bytes every msgpack channel gets are the JSON the control socket
 * sends, field for field. */
static struct ev_bus_event *last;
static int keep(const struct ev_bus_event *e, void *ud)
{
    (void)ud;
    last = (struct ev_bus_event *)e;
    return 0;
}

static void expect_same_encoding(const struct ev_bus_event *e)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, e->packed, e->packed_len, NULL), MSGPACK_UNPACK_SUCCESS);
    json_t *from_packed = jsonpack_from_msgpack(&u.data), *json = ev_bus_event_json(e);
    char *a = json_dumps(from_packed, JSON_COMPACT), *b = json_dumps(json, JSON_COMPACT);
    cr_assert(json_equal(from_packed, json), "msgpack %s, JSON %s", a, b);
    cr_assert_eq(json_object_size(json), 5, "%s", b);
    free(a);
    free(b);
    json_decref(from_packed);
    json_decref(json);
    msgpack_unpacked_destroy(&u);
}

Test(event_table, one_encoding_for_json_and_msgpack)
{
    struct ev_bus *b = ev_bus_new();
    ev_bus_sub_add(ev_bus_subscribe(b, keep, NULL, NULL), "*", NULL, NULL);
    uint64_t seq =
        ev_bus_emit(b, EVT_STATUS_CHANGED, "hello",
                    json_pack("{s:n, s:s}", "previous_status", "new_status", "installed"));
    cr_assert_eq(seq, 1);
    cr_assert_not_null(last);
    cr_assert_str_eq(last->name, "plugin.status_changed");
    expect_same_encoding(last);
    json_t *v = ev_bus_event_json(last);
    cr_assert(json_is_null(json_object_get(json_object_get(v, "payload"), "previous_status")));
    cr_assert_str_eq(json_string_value(json_object_get(v, "plugin")), "hello");
    json_decref(v);

    /* the overflow notice: the newest seq, no plugin, packed the same way */
    struct ev_bus_event *n =
        ev_bus_notice_new(seq, EVT_SUBSCRIBER_OVERFLOW, json_pack("{s:s}", "reason", "full"));
    cr_assert_not_null(n);
    cr_assert_eq(n->seq, seq);
    cr_assert_null(n->plugin);
    cr_assert_str_eq(n->name, "subscriber.overflow");
    expect_same_encoding(n);
    cr_assert_eq(ev_bus_last_seq(b), seq, "a notice takes no sequence number");
    ev_bus_event_unref(n);
    ev_bus_free(b);
}
