/* The command table (supervisor/command_table.c) against its handlers,
 * against docs/control.md, and against what a real plugd returns: the doc
 * cannot drift from the commands again, nor the table from plugd. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command_table.h"
#include "commands.h"
#include "plugd_harness.h"

HARNESS_TEST_SUITE(command_table, 120);

/* ------------------------------------------------------------ the doc */

#define MAX_ROWS  64
#define MAX_CELLS 4

struct doc_row {
    char cell[MAX_CELLS][4096]; /* trimmed */
    int n_cells;
    int line;
};

static char *read_doc(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/docs/control.md", getenv("PLUGD_SOURCE_ROOT") ?: ".");
    FILE *f = fopen(path, "re");
    cr_assert_not_null(f, "cannot open %s (PLUGD_SOURCE_ROOT)", path);
    static char text[256 * 1024];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = 0;
    return text;
}

static void trim_into(char *dst, size_t size, const char *src, size_t len)
{
    while (len > 0 && isspace((unsigned char)*src))
        src++, len--;
    while (len > 0 && isspace((unsigned char)src[len - 1]))
        len--;
    snprintf(dst, size, "%.*s", (int)len, src);
}

/* The rows of the table under `heading` (a whole line, "## Commands") up
 * to the next heading: the lines that start with "| `". Returns how many. */
static int doc_rows(const char *heading, struct doc_row *rows, int max)
{
    const char *text = read_doc(), *p = text;
    size_t hlen = strlen(heading);
    while (*p && !(strncmp(p, heading, hlen) == 0 && p[hlen] == '\n'))
        p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p);
    cr_assert(*p, "docs/control.md has no \"%s\" section", heading);
    p = strchr(p, '\n') + 1;
    int n = 0, line = 1;
    for (const char *q = text; q < p; q++)
        line += *q == '\n';
    for (; *p && *p != '#'; line++) {
        size_t len = strcspn(p, "\n");
        if (strncmp(p, "| `", 3) == 0) {
            cr_assert_lt(n, max, "too many rows under %s", heading);
            struct doc_row *r = &rows[n++];
            r->n_cells = 0;
            r->line = line;
            const char *cell = p + 1, *end = p + len;
            while (cell < end && r->n_cells < MAX_CELLS) {
                const char *bar = memchr(cell, '|', (size_t)(end - cell));
                if (bar == NULL)
                    break;
                trim_into(r->cell[r->n_cells++], sizeof(r->cell[0]), cell, (size_t)(bar - cell));
                cell = bar + 1;
            }
        }
        p += len + (p[len] == '\n');
    }
    return n;
}

/* "`name`" → name */
static void unquote(const char *cell, char *out, size_t size)
{
    size_t len = strlen(cell);
    if (len >= 2 && cell[0] == '`' && cell[len - 1] == '`')
        snprintf(out, size, "%.*s", (int)(len - 2), cell + 1);
    else
        snprintf(out, size, "%s", cell);
}

static const struct doc_row *row_of(const struct doc_row *rows, int n, const char *name, int *count)
{
    const struct doc_row *found = NULL;
    *count = 0;
    for (int i = 0; i < n; i++) {
        char word[128];
        unquote(rows[i].cell[0], word, sizeof(word));
        if (strcmp(word, name) == 0) {
            found = found ? found : &rows[i];
            ++*count;
        }
    }
    return found;
}

/* The row of "## Commands" that documents `c` (the first, of *count). */
static const struct doc_row *command_row(const struct ct_command *c, int *count)
{
    static struct doc_row rows[MAX_ROWS];
    static int n = -1;
    if (n < 0)
        n = doc_rows("## Commands", rows, MAX_ROWS);
    return row_of(rows, n, c->name, count);
}

/* The arguments a row's cell documents: "`plugin` string, `reason?`
 * string (...)": each backquoted name outside parentheses, then its type. */
struct doc_arg {
    char name[64];
    char type[32];
    char after[128]; /* what follows the type */
    bool is_required;
};

static int doc_args(const char *cell, struct doc_arg *args, int max)
{
    int n = 0, depth = 0;
    for (const char *p = cell; *p; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')')
            depth--;
        if (*p != '`' || depth > 0)
            continue;
        const char *end = strchr(p + 1, '`');
        cr_assert_not_null(end, "an unclosed ` in \"%s\"", cell);
        cr_assert_lt(n, max);
        struct doc_arg *a = &args[n++];
        size_t len = (size_t)(end - p - 1);
        a->is_required = !(len > 0 && p[len] == '?');
        snprintf(a->name, sizeof(a->name), "%.*s", (int)(len - !a->is_required), p + 1);
        p = end + 1;
        while (*p == ' ')
            p++;
        size_t tlen = strspn(p, "abcdefghijklmnopqrstuvwxyz");
        snprintf(a->type, sizeof(a->type), "%.*s", (int)tlen, p);
        snprintf(a->after, sizeof(a->after), "%s", p + tlen);
        p += tlen - 1;
    }
    return n;
}

/* The field names of the first {...} of a result cell, at its top level:
 * "`[{plugin, manifest (why), capabilities [{name}]}]`" → plugin manifest
 * capabilities. */
static int doc_fields(const char *cell, char fields[][64], int max)
{
    const char *p = strchr(cell, '{');
    int n = 0, depth = 0;
    bool is_at_name = true;
    for (; p && *p; p++) {
        if (strchr("{[(", *p))
            depth++;
        if (strchr("}])", *p) && --depth == 0)
            break;
        if (depth == 1 && *p == ',') {
            is_at_name = true;
        } else if (depth == 1 && is_at_name && (isalnum((unsigned char)*p) || *p == '_')) {
            size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
            cr_assert_lt(n, max);
            snprintf(fields[n++], 64, "%.*s", (int)len, p);
            p += len - 1;
            is_at_name = false;
        }
    }
    return n;
}

/* 86400000 → "86,400,000" */
static void with_commas(long long n, char *out, size_t size)
{
    char digits[32];
    int len = snprintf(digits, sizeof(digits), "%lld", n), k = 0;
    for (int i = 0; i < len && (size_t)k + 2 < size; i++) {
        if (i > 0 && digits[i - 1] != '-' && (len - i) % 3 == 0)
            out[k++] = ',';
        out[k++] = digits[i];
    }
    out[k] = 0;
}

/* How docs/control.md writes an argument's range after its type: " (1–255
 * bytes", " (0 or more", " (1–10,000"; "" without one. */
static void range_text(const struct ct_arg *a, char *out, size_t size)
{
    char lo[32], hi[32];
    with_commas(a->min, lo, sizeof(lo));
    with_commas(a->max, hi, sizeof(hi));
    if ((a->type != CT_INTEGER && a->type != CT_STRING) || (a->min == 0 && a->max == 0))
        snprintf(out, size, "%s", "");
    else if (a->type == CT_STRING)
        snprintf(out, size, " (1–%s bytes", hi);
    else if (a->max == LLONG_MAX)
        snprintf(out, size, " (%s or more", lo);
    else
        snprintf(out, size, " (%s–%s", lo, hi);
}

static bool is_listed(const char *const *list, const char *name)
{
    for (; list && *list; list++)
        if (strcmp(*list, name) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------ the table */

Test(command_table, every_row_has_a_handler_and_the_rows_follow_enum_ct_id)
{
    char why[256];
    const char *wrong = cmd_check_table(why, sizeof(why));
    cr_assert_null(wrong, "%s", wrong);
}

Test(command_table, synopses_are_made_from_the_arguments)
{
    static const char *const expected[][2] = {
        {"list", "list"},
        {"status", "status [PLUGIN]"},
        {"uninstall", "uninstall PLUGIN [--remove-data]"},
        {"call", "call PLUGIN METHOD [ARG...]"},
        {"subscribe", "events [PATTERN] [--filter JSON] [--since SEQ]"},
        {"logs", "logs [PLUGIN] [-n LINES] [-f]"},
        {"audit", "audit PLUGIN [-n LIMIT]"},
    };
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        char synopsis[256];
        const struct ct_command *c = ct_find(expected[i][0]);
        cr_assert_not_null(c, "%s", expected[i][0]);
        cr_expect_eq(ct_synopsis(c, synopsis, sizeof(synopsis)), strlen(expected[i][1]));
        cr_expect_str_eq(synopsis, expected[i][1]);
    }
}

/* What people see is what plugd sends: every printed column is a field. */
Test(command_table, printed_columns_are_fields_of_the_result)
{
    for (size_t i = 0; i < CT_COUNT; i++) {
        const struct ct_command *c = &ct_commands[i];
        if (c->columns == NULL || c->rows_key != NULL || c->fields == NULL)
            continue;
        for (const struct ct_column *col = c->columns; col->title; col++)
            cr_expect(is_listed(c->fields, col->key), "%s prints %s, which it does not return",
                      c->name, col->key);
    }
}

/* ------------------------------------------------------------ docs/control.md */

Test(command_table, docs_control_md_documents_every_command_with_its_arguments_and_synopsis)
{
    for (size_t i = 0; i < CT_COUNT; i++) {
        const struct ct_command *c = &ct_commands[i];
        int count;
        const struct doc_row *r = command_row(c, &count);
        cr_expect_eq(count, 1, "docs/control.md documents command %s %d times (once wanted)",
                     c->name, count);
        if (r == NULL)
            continue;
        cr_assert_eq(r->n_cells, 4, "docs/control.md:%d: command | arguments | plugctl | result",
                     r->line);

        struct doc_arg args[16];
        int n_args = doc_args(r->cell[1], args, 16);
        for (int k = 0; k < n_args; k++) {
            const struct ct_arg *a = ct_find_arg(c, args[k].name);
            cr_expect_not_null(a, "docs/control.md:%d: %s has no argument \"%s\"", r->line, c->name,
                               args[k].name);
            if (a == NULL)
                continue;
            cr_expect_eq(args[k].is_required, a->is_required,
                         "docs/control.md:%d: %s's \"%s\" is %s (write `%s%s`)", r->line, c->name,
                         a->name, a->is_required ? "required" : "optional", a->name,
                         a->is_required ? "" : "?");
            cr_expect_str_eq(args[k].type, ct_type_name(a->type),
                             "docs/control.md:%d: %s's \"%s\" is of type %s, not \"%s\"", r->line,
                             c->name, a->name, ct_type_name(a->type), args[k].type);
            char range[128];
            range_text(a, range, sizeof(range));
            cr_expect(strncmp(args[k].after, range, strlen(range)) == 0,
                      "docs/control.md:%d: %s's \"%s\" is to be written `%s%s` %s%s)", r->line,
                      c->name, a->name, a->name, a->is_required ? "" : "?", ct_type_name(a->type),
                      range);
        }
        for (const struct ct_arg *a = c->args; a->name; a++) {
            bool is_documented = false;
            for (int k = 0; k < n_args; k++)
                is_documented = is_documented || strcmp(args[k].name, a->name) == 0;
            cr_expect(is_documented, "docs/control.md:%d: %s's argument \"%s\" is missing", r->line,
                      c->name, a->name);
        }
        if (n_args == 0)
            cr_expect_str_eq(r->cell[1], "—", "docs/control.md:%d: no arguments is written —",
                             r->line);

        char synopsis[256], want[300], doc[512];
        ct_synopsis(c, synopsis, sizeof(synopsis));
        snprintf(want, sizeof(want), "plugctl %s", synopsis);
        unquote(r->cell[2], doc, sizeof(doc));
        cr_expect_str_eq(doc, want, "docs/control.md:%d: plugctl's synopsis of %s is `%s`", r->line,
                         c->name, want);
    }
}

Test(command_table, docs_control_md_documents_no_command_the_table_lacks)
{
    static struct doc_row rows[MAX_ROWS];
    int n = doc_rows("## Commands", rows, MAX_ROWS);
    cr_assert_gt(n, 0);
    for (int i = 0; i < n; i++) {
        char name[128];
        unquote(rows[i].cell[0], name, sizeof(name));
        cr_expect_not_null(ct_find(name),
                           "docs/control.md:%d documents command \"%s\", which plugd does not have",
                           rows[i].line, name);
    }
}

/* The fields a result cell lists are the table's; "as `status`" stands
 * for another command's list. */
Test(command_table, docs_control_md_lists_the_result_fields_of_the_table)
{
    for (size_t i = 0; i < CT_COUNT; i++) {
        const struct ct_command *c = &ct_commands[i];
        int count;
        const struct doc_row *r = command_row(c, &count);
        if (c->fields == NULL || r == NULL || r->n_cells < 4)
            continue;
        const char *as = strstr(r->cell[3], "as `");
        if (as != NULL) {
            char other[64];
            sscanf(as + 4, "%63[a-z_]", other);
            const struct ct_command *o = ct_find(other);
            cr_expect(o && o->fields == c->fields,
                      "docs/control.md:%d: %s does not return the fields of \"%s\"", r->line,
                      c->name, other);
            continue;
        }
        char fields[64][64];
        int n_fields = doc_fields(r->cell[3], fields, 64);
        for (int k = 0; k < n_fields; k++)
            cr_expect(is_listed(c->fields, fields[k]),
                      "docs/control.md:%d: %s returns no field \"%s\"", r->line, c->name,
                      fields[k]);
        for (const char *const *f = c->fields; *f; f++) {
            bool is_documented = false;
            for (int k = 0; k < n_fields; k++)
                is_documented = is_documented || strcmp(fields[k], *f) == 0;
            cr_expect(is_documented, "docs/control.md:%d: %s's field \"%s\" is missing", r->line,
                      c->name, *f);
        }
    }
}

/* ------------------------------------------------------------ a real plugd */

/* `object`'s keys are exactly `fields`. */
static void expect_keys(const char *cmd, json_t *object, const char *const *fields)
{
    cr_assert(json_is_object(object), "%s answers an object", cmd);
    const char *key;
    json_t *v;
    json_object_foreach(object, key, v)
    {
        cr_expect(is_listed(fields, key), "%s returns \"%s\", which the table does not list", cmd,
                  key);
    }
    for (const char *const *f = fields; *f; f++)
        cr_expect_not_null(json_object_get(object, *f), "%s does not return \"%s\"", cmd, *f);
}

static json_t *command(const char *cmd, const char *args_json)
{
    json_t *args = json_loads(args_json, 0, NULL), *result = NULL;
    char message[512] = "";
    enum plugd_errc code = harness_command(&h, cmd, args, &result, message, sizeof(message));
    json_decref(args);
    cr_assert_eq(code, PLUGD_OK, "%s: %s", cmd, message);
    return result;
}

/* "string or null" admits a string and null. */
static bool type_admits(const char *doc_type, const json_t *v)
{
    static const char *const names[] = {
        [JSON_OBJECT] = "object",   [JSON_ARRAY] = "array", [JSON_STRING] = "string",
        [JSON_INTEGER] = "integer", [JSON_REAL] = "number", [JSON_TRUE] = "boolean",
        [JSON_FALSE] = "boolean",   [JSON_NULL] = "null"};
    const char *want = names[json_typeof(v)];
    for (const char *p = doc_type; (p = strstr(p, want)) != NULL; p += strlen(want))
        if ((p == doc_type || p[-1] == ' ') && (p[strlen(want)] == 0 || p[strlen(want)] == ' '))
            return true;
    return false;
}

Test(command_table, plugd_returns_the_fields_that_the_table_and_docs_control_md_list)
{
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 30.0));

    const char *const *status_fields = ct_find("status")->fields;
    json_t *status = command("status", "{\"plugin\": \"hello\"}");
    cr_assert_eq(json_array_size(status), 1);
    expect_keys("status", json_array_get(status, 0), status_fields);
    json_t *list = command("list", "{}");
    expect_keys("list", json_array_get(list, 0), ct_find("list")->fields);
    json_decref(list);
    json_t *stats = command("stats", "{\"plugin\": \"hello\"}");
    expect_keys("stats", json_array_get(stats, 0), ct_find("stats")->fields);
    json_decref(stats);
    json_t *doctor = command("doctor", "{\"plugin\": \"hello\"}");
    expect_keys("doctor", doctor, ct_find("doctor")->fields);
    json_decref(doctor);
    json_t *logs = command("logs", "{\"lines\": 1}");
    expect_keys("logs", logs, ct_find("logs")->fields);
    json_decref(logs);

    /* docs/control.md's "Status fields": the same names, and each value of
     * the type written there */
    static struct doc_row rows[MAX_ROWS];
    int n = doc_rows("### Status fields", rows, MAX_ROWS);
    json_t *one = json_array_get(status, 0);
    for (int i = 0; i < n; i++) {
        char name[64];
        unquote(rows[i].cell[0], name, sizeof(name));
        json_t *v = json_object_get(one, name);
        cr_expect_not_null(v, "docs/control.md:%d: status has no field \"%s\"", rows[i].line, name);
        if (v == NULL || type_admits(rows[i].cell[1], v))
            continue;
        char *text = json_dumps(v, JSON_ENCODE_ANY);
        cr_expect_fail("docs/control.md:%d: status's \"%s\" is %s, not of type \"%s\"",
                       rows[i].line, name, text, rows[i].cell[1]);
        free(text);
    }
    for (const char *const *f = status_fields; *f; f++) {
        int count;
        row_of(rows, n, *f, &count);
        cr_expect_eq(count, 1, "docs/control.md's Status fields documents \"%s\" %d times", *f,
                     count);
    }
    json_decref(status);
}

/* ------------------------------------------------------------ plugctl */

static int plugctl(const char *const *args, char *out, size_t out_size, char *err, size_t err_size)
{
    return harness_plugctl(&h, args, out, out_size, err, err_size);
}

/* plugctl parses by the table: flags anywhere after the command, a word
 * starting with '-' a value where the command has no flags, and a usage
 * error that names the problem and prints the command's synopsis. */
Test(command_table, plugctl_takes_arguments_as_the_table_says)
{
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_start(&h);
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 30.0));
    char out[8192], err[2048];

    cr_assert_eq(plugctl((const char *[]){"call", "hello", "add", "-1", "-2", NULL}, out,
                         sizeof(out), err, sizeof(err)),
                 0, "%s", err);
    cr_expect_str_eq(out, "-3\n");
    cr_assert_eq(plugctl((const char *[]){"call", "hello", "echo", "{\"a\": [1]}", NULL}, out,
                         sizeof(out), err, sizeof(err)),
                 0, "%s", err);
    cr_expect_str_eq(out, "a                  [1]\n", "an object result as key value lines");

    cr_assert_eq(plugctl((const char *[]){"--json", "logs", "-n", "1", "hello", NULL}, out,
                         sizeof(out), err, sizeof(err)),
                 0, "%s", err);
    json_t *logs = json_loads(out, 0, NULL);
    json_t *lines = json_object_get(logs, "lines");
    cr_expect_eq(json_array_size(lines), 1, "-n before the plugin: %s", out);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(lines, 0), "plugin")),
                     "hello");
    json_decref(logs);

    cr_assert_eq(plugctl((const char *[]){"stats", NULL}, out, sizeof(out), err, sizeof(err)), 0);
    cr_expect(strncmp(out, "PLUGIN               STATUS           PID      ", 47) == 0,
              "the table's columns: %s", out);
    cr_expect_not_null(strstr(out, "\nhello "), "%s", out);

    cr_assert_eq(
        plugctl((const char *[]){"audit", "-n", "1", NULL}, out, sizeof(out), err, sizeof(err)), 2);
    cr_expect_str_eq(
        err, "plugctl: audit: PLUGIN is missing (usage: plugctl audit PLUGIN [-n LIMIT])\n");
    cr_assert_eq(plugctl((const char *[]){"logs", "-x", NULL}, out, sizeof(out), err, sizeof(err)),
                 2);
    cr_expect_not_null(strstr(err, "unknown option \"-x\""), "%s", err);
    cr_assert_eq(plugctl((const char *[]){"enable", "hello", "again", NULL}, out, sizeof(out), err,
                         sizeof(err)),
                 2);
    cr_expect_not_null(strstr(err, "one argument too many: \"again\""), "%s", err);
    cr_assert_eq(plugctl((const char *[]){"events", "--since", "x", NULL}, out, sizeof(out), err,
                         sizeof(err)),
                 2);
    cr_expect_not_null(strstr(err, "--since SEQ: \"x\" is not a number"), "%s", err);

    /* the usage lists every command of the table with its synopsis */
    cr_assert_eq(plugctl((const char *[]){"--help", NULL}, out, sizeof(out), err, sizeof(err)), 0);
    for (size_t i = 0; i < CT_COUNT; i++) {
        char synopsis[256], line[300];
        ct_synopsis(&ct_commands[i], synopsis, sizeof(synopsis));
        snprintf(line, sizeof(line), "\n  %s ", synopsis);
        cr_expect(strstr(out, line) ||
                      (snprintf(line, sizeof(line), "\n  %s\n", synopsis), strstr(out, line)),
                  "plugctl --help lists %s", synopsis);
    }
    cr_assert_eq(
        plugctl((const char *[]){"help", "events", NULL}, out, sizeof(out), err, sizeof(err)), 0);
    cr_expect_str_eq(out, "usage: plugctl [--socket PATH] [--json] events [PATTERN] [--filter "
                          "JSON] [--since SEQ]  # follow the event stream\n");
}

/* A word that is not UTF-8 is a usage error naming it: it was dropped
 * before (a call went out without that parameter; a plugin name came out
 * as "PLUGIN is missing"). No plugd is needed: nothing is sent. */
Test(command_table, plugctl_refuses_a_word_that_is_not_utf8)
{
    char out[1024], err[1024];
    cr_assert_eq(plugctl((const char *[]){"call", "hello", "echo", "\xff", NULL}, out, sizeof(out),
                         err, sizeof(err)),
                 2, "%s", err);
    cr_expect_not_null(strstr(err, "call: ARG: \"\xff\" is not UTF-8 text"), "%s", err);
    cr_assert_eq(
        plugctl((const char *[]){"enable", "h\xff", NULL}, out, sizeof(out), err, sizeof(err)), 2);
    cr_expect_not_null(strstr(err, "enable: PLUGIN: \"h\xff\" is not UTF-8 text"), "%s", err);
}

/* The ranges of the table are plugd's: checked before any command runs,
 * with the field named. */
Test(command_table, plugd_refuses_arguments_out_of_the_range_of_the_table)
{
    harness_add_plugin(&h, "hello", "hello", NULL);
    harness_start(&h);
    static const char *const refused[][3] = {
        {"audit", "{\"plugin\": \"hello\", \"limit\": 0}",
         "audit: \"limit\" must be from 1 to 10000"},
        {"logs", "{\"lines\": 1001}", "logs: \"lines\" must be from 0 to 1000"},
        {"call", "{\"plugin\": \"hello\", \"method\": \"echo\", \"timeout_ms\": 86400001}",
         "call: \"timeout_ms\" must be from 1 to 86400000"},
        {"subscribe", "{\"since\": -1}", "subscribe: \"since\" must be 0 or more"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        json_t *args = json_loads(refused[i][1], 0, NULL), *result = NULL;
        char message[512] = "";
        cr_expect_eq(harness_command(&h, refused[i][0], args, &result, message, sizeof(message)),
                     PLUGD_E_INVALID_ARGUMENT, "%s %s", refused[i][0], refused[i][1]);
        cr_expect_str_eq(message, refused[i][2]);
        json_decref(args);
        json_decref(result);
    }
    char method[300];
    memset(method, 'm', 256);
    method[256] = 0;
    json_t *args = json_pack("{s:s, s:s}", "plugin", "hello", "method", method), *result = NULL;
    char message[512] = "";
    cr_expect_eq(harness_command(&h, "call", args, &result, message, sizeof(message)),
                 PLUGD_E_INVALID_ARGUMENT);
    cr_expect_str_eq(message, "call: \"method\" must be 1 to 255 bytes");
    json_decref(args);
    json_decref(result);
    json_t *sum = NULL;
    cr_assert(harness_wait_state(&h, "hello", "running", -1, 30.0));
    cr_expect_eq(harness_call(&h, "hello", "add", "[2, 3]", 86400000, &sum), PLUGD_OK,
                 "the largest timeout is taken");
    json_decref(sum);
}
