/* The registry (supervisor/registry.c) in-process, with strdup made to
 * fail on demand (the test links with -Wl,--wrap=strdup): a row it cannot
 * copy is no_memory, never a row of NULL strings handed on as if read. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry.h"

static bool is_strdup_failing;

char *__real_strdup(const char *s);
char *__wrap_strdup(const char *s)
{
    return is_strdup_failing ? NULL : __real_strdup(s);
}

static char dir[] = "/tmp/plugd-test-registry-XXXXXX";
static struct registry *reg;

static void open_with_one_plugin(void)
{
    cr_assert_not_null(mkdtemp(dir));
    char path[sizeof(dir) + 16];
    snprintf(path, sizeof(path), "%s/plugd.db", dir);
    struct plugd_error err;
    cr_assert_not_null(reg = reg_open(path, &err), "%s", err.message);
    struct reg_plugin p = {.name = "hello",
                           .status = LC_INSTALLED,
                           .version = "1.0.0",
                           .digest = "d",
                           .package_dir = "/p",
                           .manifest = "{}",
                           .installed_at = 1,
                           .updated_at = 1};
    struct reg_audit a = {.actor = "plugd", .action = "install"};
    cr_assert_eq(reg_save_transition(reg, &p, -1, &a, 0, &err), 0, "%s", err.message);
}

static void close_and_remove(void)
{
    is_strdup_failing = false;
    reg_close(reg);
    char cmd[sizeof(dir) + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

static int n_rows;

static void count_row(const struct reg_plugin *p, void *ud)
{
    (void)ud;
    cr_expect_not_null(p->name, "a row with its name lost was handed on");
    n_rows++;
}

Test(registry, a_row_that_cannot_be_copied_is_no_memory, .init = open_with_one_plugin,
     .fini = close_and_remove)
{
    struct plugd_error err;
    is_strdup_failing = true;
    n_rows = 0;
    cr_expect_eq(reg_each_plugin(reg, count_row, NULL, &err), -1);
    cr_expect_eq(err.code, PLUGD_E_NO_MEMORY, "%s", err.message);
    cr_expect_eq(n_rows, 0);
    is_strdup_failing = false;
    cr_expect_eq(reg_each_plugin(reg, count_row, NULL, &err), 0, "%s", err.message);
    cr_expect_eq(n_rows, 1);
}

Test(registry, an_audit_that_cannot_be_copied_is_no_memory_not_storage_error,
     .init = open_with_one_plugin, .fini = close_and_remove)
{
    struct plugd_error err;
    is_strdup_failing = true;
    cr_expect_null(reg_audit_json(reg, "hello", 10, &err));
    cr_expect_eq(err.code, PLUGD_E_NO_MEMORY, "%s", err.message);
    is_strdup_failing = false;
    char *audit = reg_audit_json(reg, "hello", 10, &err);
    cr_expect_not_null(strstr(audit ? audit : "", "\"install\""), "%s", audit);
    free(audit);
}
