/* The registry migration to generations (schema 1 → 2) on a database as
 * the plugd before generations wrote it (tests/fixtures/registry/
 * registry-v1.sql, main's schema 1): each plugin's current package is
 * generation 1, a pending upgrade candidate 2, nothing else changed. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry.h"

static char dir[] = "/tmp/plugd-test-migration-XXXXXX";
static char path[sizeof(dir) + 16];

static char *read_fixture(void)
{
    char file[1024];
    snprintf(file, sizeof(file), "%s/tests/fixtures/registry/registry-v1.sql",
             getenv("PLUGD_SOURCE_ROOT") ? getenv("PLUGD_SOURCE_ROOT") : ".");
    FILE *f = fopen(file, "r");
    cr_assert_not_null(f, "%s", file);
    static char sql[65536];
    size_t n = fread(sql, 1, sizeof(sql) - 1, f);
    fclose(f);
    sql[n] = 0;
    return sql;
}

/* The old plugd's database, written by sqlite alone. */
static void make_v1_database(void)
{
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/plugd.db", dir);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    cr_assert_eq(sqlite3_exec(db, read_fixture(), NULL, NULL, &msg), SQLITE_OK, "%s", msg);
    sqlite3_close(db);
}

static void remove_dir(void)
{
    char cmd[sizeof(dir) + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

static json_t *history(struct registry *reg, const char *plugin)
{
    struct plugd_error err;
    char *text = reg_history_json(reg, plugin, &err);
    cr_assert_not_null(text, "%s", err.message);
    json_t *rows = json_loads(text, 0, NULL);
    free(text);
    cr_assert(json_is_array(rows));
    return rows;
}

static void expect_generation(json_t *row, int number, const char *version, const char *outcome,
                              bool known_good)
{
    cr_assert_not_null(row);
    cr_expect_eq(json_integer_value(json_object_get(row, "generation")), number);
    cr_expect_str_eq(json_string_value(json_object_get(row, "version")), version);
    cr_expect_str_eq(json_string_value(json_object_get(row, "outcome")), outcome);
    cr_expect_eq(json_is_true(json_object_get(row, "known_good")), known_good, "%s %d", version,
                 number);
    cr_expect_str_eq(json_string_value(json_object_get(row, "actor")), "migration");
}

static int user_version(void)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int n_plugins;

static void count(const struct reg_plugin *p, void *ud)
{
    (void)p;
    (void)ud;
    n_plugins++;
}

Test(registry_migration, each_plugins_current_version_becomes_generation_1,
     .init = make_v1_database, .fini = remove_dir)
{
    cr_assert_eq(user_version(), 1);
    struct plugd_error err;
    struct registry *reg = reg_open(path, &err);
    cr_assert_not_null(reg, "%s", err.message);
    cr_expect_eq(user_version(), REG_SCHEMA_VERSION);
    cr_expect_eq(REG_SCHEMA_VERSION, 2);

    json_t *rows = history(reg, "hello");
    cr_assert_eq(json_array_size(rows), 1);
    json_t *g1 = json_array_get(rows, 0);
    expect_generation(g1, 1, "1.0.0", "active", true);
    cr_expect_str_eq(json_string_value(json_object_get(g1, "digest")), "aaaa");
    cr_expect_eq(json_integer_value(json_object_get(g1, "protocol")), 1);
    cr_expect(json_is_false(json_object_get(g1, "config_changed")));
    cr_expect_eq(json_real_value(json_object_get(g1, "started_at")), 100.0);
    cr_expect(json_is_null(json_object_get(g1, "ended_at")));
    json_decref(rows);

    rows = history(reg, "counter"); /* upgrade_pending: its pending version is candidate 2 */
    cr_assert_eq(json_array_size(rows), 2);
    expect_generation(json_array_get(rows, 0), 2, "1.1.0", "candidate", false);
    expect_generation(json_array_get(rows, 1), 1, "1.0.0", "active", true);
    json_t *added = json_object_get(json_array_get(rows, 0), "capabilities_added");
    cr_expect_eq(json_array_size(added), 1);
    cr_expect_str_eq(json_string_value(json_array_get(added, 0)), "plugin.state.read");
    json_decref(rows);

    rows = history(reg, "broken"); /* error: active, but not known to be good */
    expect_generation(json_array_get(rows, 0), 1, "2.0.0", "active", false);
    json_decref(rows);
    rows = history(reg, "fresh"); /* installed, never loaded: still the candidate */
    expect_generation(json_array_get(rows, 0), 1, "0.2.0", "candidate", false);
    json_decref(rows);
    rows = history(reg, "gone"); /* uninstalled: ended when it was */
    json_t *gone = json_array_get(rows, 0);
    expect_generation(gone, 1, "0.1.0", "active", false);
    cr_expect_eq(json_real_value(json_object_get(gone, "ended_at")), 520.0);
    json_decref(rows);

    n_plugins = 0;
    cr_assert_eq(reg_each_plugin(reg, count, NULL, &err), 0, "%s", err.message);
    cr_expect_eq(n_plugins, 5, "every plugin row is still there");
    reg_close(reg);

    /* opened again: migrated once, not twice */
    cr_assert_not_null(reg = reg_open(path, &err), "%s", err.message);
    rows = history(reg, "hello");
    cr_expect_eq(json_array_size(rows), 1);
    json_decref(rows);
    reg_close(reg);
}
