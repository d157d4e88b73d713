/* The lifecycle operations as data: lc_ops (supervisor/lifecycle.c)
 * against docs/lifecycle.md's operation table, and the properties the
 * table must have for operations.c's one generic path to be right. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lifecycle.h"

/* ------------------------------------------------------------ the doc */

#define MAX_CELLS 8

struct doc_row {
    char cells[MAX_CELLS][256];
    int n;
};

static char *trim(char *s)
{
    while (*s == ' ')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* The rows of the table under the header line that starts with `header`. */
static int read_doc_table(const char *header, struct doc_row *rows, int max)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/docs/lifecycle.md", getenv("PLUGD_SOURCE_ROOT"));
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[2048];
    int n = 0;
    bool in_table = false;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (!in_table) {
            in_table = strncmp(line, header, strlen(header)) == 0;
            continue;
        }
        if (line[0] != '|')
            break;
        if (strncmp(line, "| ---", 5) == 0)
            continue;
        cr_assert_lt(n, max, "more rows than expected in docs/lifecycle.md");
        struct doc_row *r = &rows[n++];
        r->n = 0;
        char *save = NULL;
        for (char *cell = strtok_r(line + 1, "|", &save); cell != NULL && r->n < MAX_CELLS;
             cell = strtok_r(NULL, "|", &save)) {
            char *t = trim(cell);
            if (*t != '\0')
                snprintf(r->cells[r->n++], sizeof(r->cells[0]), "%s", t);
        }
    }
    fclose(f);
    cr_assert(in_table, "docs/lifecycle.md has no table starting \"%s\"", header);
    return n;
}

/* "installed, ready" → LC_FROM mask; "new" is LC_FROM_NEW. */
static unsigned parse_from(const char *cell)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", cell);
    unsigned mask = 0;
    char *save = NULL;
    for (char *w = strtok_r(buf, ",", &save); w != NULL; w = strtok_r(NULL, ",", &save)) {
        w = trim(w);
        enum lc_status s;
        if (strcmp(w, "new") == 0)
            mask |= LC_FROM_NEW;
        else if (lc_status_from_name(w, &s) == 0)
            mask |= LC_FROM(s);
        else
            cr_assert_fail("docs/lifecycle.md: \"%s\" is not a status", w);
    }
    return mask;
}

static void events_text(const struct lc_op_row *op, char *out, size_t size)
{
    out[0] = '\0';
    if (op->n_events == 0)
        snprintf(out, size, "—");
    for (size_t i = 0; i < op->n_events; i++)
        snprintf(out + strlen(out), size - strlen(out), "%s%s", i ? ", " : "",
                 evt_table[op->events[i]].name);
}

static const struct lc_op_row *find_op(const char *name)
{
    for (size_t i = 0; i < LC_OP_COUNT; i++)
        if (strcmp(lc_ops[i].name, name) == 0)
            return &lc_ops[i];
    return NULL;
}

Test(operations, the_doc_table_is_lc_ops_row_for_row)
{
    struct doc_row rows[LC_OP_COUNT + 4];
    int n = read_doc_table("| operation | command | from | to | audit | events | worker |", rows,
                           LC_OP_COUNT + 4);
    cr_assert_eq(n, LC_OP_COUNT, "docs/lifecycle.md lists %d operations, lc_ops %d", n,
                 LC_OP_COUNT);
    bool seen[LC_OP_COUNT] = {0};
    for (int i = 0; i < n; i++) {
        struct doc_row *r = &rows[i];
        cr_assert_eq(r->n, 7, "row %d of the doc's table has %d cells", i + 1, r->n);
        char name[64];
        size_t len = strlen(r->cells[0]);
        cr_assert(len > 2 && r->cells[0][0] == '`' && r->cells[0][len - 1] == '`',
                  "the operation \"%s\" is not in backticks", r->cells[0]);
        snprintf(name, sizeof(name), "%.*s", (int)(len - 2), r->cells[0] + 1);
        const struct lc_op_row *op = find_op(name);
        cr_assert_not_null(op, "docs/lifecycle.md names operation %s, lc_ops has none", name);
        cr_assert_not(seen[op - lc_ops], "operation %s is twice in the doc", name);
        seen[op - lc_ops] = true;

        if (strcmp(r->cells[1], "—") != 0)
            cr_expect(strncmp(r->cells[1], op->command, strlen(op->command)) == 0 &&
                          r->cells[1][strlen(op->command)] == ' ',
                      "%s: the doc's command \"%s\" is not %s", name, r->cells[1], op->command);
        else
            cr_expect_str_eq(op->command, op->name, "%s: plugd's own operation, named so", name);
        cr_expect_eq(parse_from(r->cells[2]), op->from, "%s: the doc's from set \"%s\" differs",
                     name, r->cells[2]);
        const char *to = op->to == LC_TO_KEEP ? "unchanged" : lc_status_name(op->to);
        cr_expect_str_eq(r->cells[3], to, "%s: to", name);
        cr_expect_str_eq(r->cells[4], op->audit, "%s: audit action", name);
        char events[256];
        events_text(op, events, sizeof(events));
        cr_expect_str_eq(r->cells[5], events, "%s: events", name);
        cr_expect_str_eq(r->cells[6], lc_worker_action_name(op->worker), "%s: worker", name);
    }
    for (size_t i = 0; i < LC_OP_COUNT; i++)
        cr_expect(seen[i], "lc_ops row %s is missing from docs/lifecycle.md", lc_ops[i].name);
}

/* ------------------------------------------------------------ properties */

Test(operations, every_row_moves_along_the_transition_table)
{
    for (size_t i = 0; i < LC_OP_COUNT; i++) {
        const struct lc_op_row *op = &lc_ops[i];
        cr_expect_neq(op->from, 0u, "%s runs from nowhere", op->name);
        cr_expect_eq(op->from & op->unchanged, 0u, "%s both runs and does nothing", op->name);
        cr_expect_not_null(op->audit, "%s has no audit action", op->name);
        if (op->to == LC_TO_KEEP)
            continue;
        for (int s = 0; s < LC_STATUS_COUNT; s++)
            if (op->from & LC_FROM(s))
                cr_expect(lc_is_allowed((enum lc_status)s, (enum lc_status)op->to),
                          "%s: %s -> %s is not an allowed transition", op->name, lc_status_name(s),
                          lc_status_name(op->to));
    }
}

Test(operations, every_allowed_transition_is_some_operation)
{
    for (int from = 0; from < LC_STATUS_COUNT; from++) {
        for (int to = 0; to < LC_STATUS_COUNT; to++) {
            if (!lc_is_allowed(from, to))
                continue;
            bool found = false;
            for (size_t i = 0; i < LC_OP_COUNT && !found; i++)
                found = lc_ops[i].to == to && (lc_ops[i].from & LC_FROM(from));
            cr_expect(found, "no operation makes %s -> %s", lc_status_name(from),
                      lc_status_name(to));
        }
    }
}

Test(operations, the_worker_action_agrees_with_the_target_status)
{
    for (size_t i = 0; i < LC_OP_COUNT; i++) {
        const struct lc_op_row *op = &lc_ops[i];
        if (op->worker == LC_WORKER_LOAD || op->worker == LC_WORKER_START)
            cr_expect(lc_runs_worker(op->to), "%s starts a worker that %s has none", op->name,
                      lc_status_name(op->to));
        if (op->worker == LC_WORKER_STOP)
            cr_expect_not(lc_runs_worker(op->to), "%s stops the worker of a %s plugin", op->name,
                          lc_status_name(op->to));
        cr_expect_eq(op->to == LC_TO_KEEP, op->worker == LC_WORKER_CONFIG,
                     "%s: only config keeps the status, and it does", op->name);
    }
    for (int s = 0; s < LC_STATUS_COUNT; s++) {
        cr_expect(!lc_serves_calls(s) || lc_runs_worker(s), "%s serves calls without a worker",
                  lc_status_name(s));
        cr_expect(!lc_is_removed(s) || !lc_runs_worker(s), "%s is removed but runs",
                  lc_status_name(s));
    }
}

Test(operations, events_follow_status_changed_and_are_published_once)
{
    for (size_t i = 0; i < LC_OP_COUNT; i++) {
        const struct lc_op_row *op = &lc_ops[i];
        cr_expect_leq(op->n_events, (size_t)LC_OP_EVENTS, "%s", op->name);
        for (size_t e = 0; e < op->n_events; e++)
            cr_expect_neq(op->events[e], EVT_STATUS_CHANGED,
                          "%s lists status_changed, which run() publishes itself", op->name);
    }
}

Test(operations, each_operation_has_its_from_set_target_and_events)
{
    const unsigned all_but_uninstalled = LC_FROM(LC_INSTALLED) | LC_FROM(LC_READY) |
                                         LC_FROM(LC_DISABLED) | LC_FROM(LC_ERROR) |
                                         LC_FROM(LC_UPGRADE_PENDING);
    struct {
        enum lc_op op;
        unsigned from;
        int to;
        int event; /* -1: none */
    } expected[] = {
        {LC_OP_INSTALL, LC_FROM_NEW, LC_INSTALLED, -1},
        {LC_OP_REINSTALL, LC_FROM(LC_UNINSTALLED), LC_INSTALLED, -1},
        {LC_OP_LOAD, LC_FROM(LC_INSTALLED), LC_READY, EVT_LOADED},
        {LC_OP_FAIL, LC_FROM(LC_INSTALLED) | LC_FROM(LC_READY) | LC_FROM(LC_UPGRADE_PENDING),
         LC_ERROR, EVT_ERROR},
        {LC_OP_ENABLE, LC_FROM(LC_DISABLED) | LC_FROM(LC_ERROR), LC_READY, EVT_ENABLED},
        {LC_OP_DISABLE, LC_FROM(LC_READY), LC_DISABLED, EVT_DISABLED},
        {LC_OP_UPGRADE, LC_FROM(LC_READY) | LC_FROM(LC_ERROR), LC_READY, EVT_UPGRADED},
        {LC_OP_UPGRADE_PENDING, LC_FROM(LC_READY), LC_UPGRADE_PENDING, EVT_UPGRADE_PENDING},
        {LC_OP_RELOAD, LC_FROM(LC_READY) | LC_FROM(LC_ERROR), LC_READY, EVT_UPGRADED},
        {LC_OP_APPROVE, LC_FROM(LC_UPGRADE_PENDING), LC_READY, EVT_UPGRADED},
        {LC_OP_REJECT, LC_FROM(LC_UPGRADE_PENDING), LC_READY, EVT_UPGRADE_REJECTED},
        {LC_OP_UNINSTALL, all_but_uninstalled, LC_UNINSTALLED, EVT_UNLOADED},
        {LC_OP_CONFIG, all_but_uninstalled | LC_FROM(LC_UNINSTALLED), LC_TO_KEEP, -1},
    };
    cr_assert_eq(sizeof(expected) / sizeof(expected[0]), LC_OP_COUNT);
    for (size_t i = 0; i < LC_OP_COUNT; i++) {
        const struct lc_op_row *op = &lc_ops[expected[i].op];
        cr_expect_eq(op->from, expected[i].from, "%s: from", op->name);
        cr_expect_eq(op->to, expected[i].to, "%s: to", op->name);
        cr_expect_eq(op->n_events, expected[i].event < 0 ? 0u : 1u, "%s: events", op->name);
        if (expected[i].event >= 0)
            cr_expect_eq(op->events[0], (enum evt_type)expected[i].event, "%s: event", op->name);
    }
    cr_expect_eq(lc_ops[LC_OP_ENABLE].unchanged, LC_FROM(LC_READY) | LC_FROM(LC_INSTALLED),
                 "enable of an enabled plugin does nothing");
}

Test(operations, a_refusal_names_the_command_and_the_status_and_nothing_runs)
{
    for (size_t i = 0; i < LC_OP_COUNT; i++) {
        const struct lc_op_row *op = &lc_ops[i];
        for (int from = -1; from < LC_STATUS_COUNT; from++) {
            unsigned bit = from < 0 ? LC_FROM_NEW : LC_FROM(from);
            struct plugd_error err = {0};
            int rc = lc_op_check((enum lc_op)i, from, &err);
            if (op->from & bit) {
                cr_expect_eq(rc, LC_OP_RUNS, "%s from %d", op->name, from);
            } else if (op->unchanged & bit) {
                cr_expect_eq(rc, LC_OP_NOTHING, "%s from %d", op->name, from);
            } else {
                const char *status = from < 0 ? "new" : lc_status_name(from);
                char prefix[64];
                snprintf(prefix, sizeof(prefix), "%s: ", op->command);
                cr_expect_eq(rc, -1, "%s from %s", op->name, status);
                cr_expect_eq(err.code, PLUGD_E_INVALID_TRANSITION);
                cr_expect(strncmp(err.message, prefix, strlen(prefix)) == 0 &&
                              strstr(err.message, status) != NULL,
                          "%s from %s: \"%s\"", op->name, status, err.message);
            }
        }
    }
}
