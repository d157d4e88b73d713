/* docs/architecture.md names files and functions; this keeps it true: every
 * path it writes in backticks exists in the tree, and every function it
 * writes as `name()` is defined in a file named in the same unit: a table
 * row, a list item or a paragraph (a row of the "how to change it" table
 * names its file and what to change there). */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DOC "docs/architecture.md"

static const char *source_root(void)
{
    const char *root = getenv("PLUGD_SOURCE_ROOT");
    return root ? root : ".";
}

/* The whole of `rel` under the source root, NUL-terminated; NULL when it
 * cannot be read. The caller frees it. */
static char *read_source(const char *rel)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", source_root(), rel);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf != NULL && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *grown = realloc(buf, cap *= 2);
            if (grown == NULL)
                free(buf);
            buf = grown;
        }
    }
    fclose(f);
    if (buf != NULL)
        buf[n] = '\0';
    return buf;
}

/* A backticked token that names a file of the tree: has a '/' or a known
 * extension, and no spaces. */
static bool is_path(const char *t)
{
    if (strchr(t, ' ') != NULL || strchr(t, '*') != NULL || t[0] == '-')
        return false;
    const char *dot = strrchr(t, '.');
    static const char *const exts[] = {".c", ".h", ".md", ".build", ".py", ".js", ".go", NULL};
    for (size_t i = 0; dot != NULL && exts[i] != NULL; i++)
        if (strcmp(dot, exts[i]) == 0)
            return strchr(t, '/') != NULL; /* a bare "worker.c" is ambiguous: write the folder */
    return false;
}

/* `name()`: a C identifier followed by "()". The name, or false. */
static bool is_function(const char *t, char *name, size_t size)
{
    size_t n = strlen(t);
    if (n < 3 || strcmp(t + n - 2, "()") != 0 || n - 2 >= size)
        return false;
    for (size_t i = 0; i < n - 2; i++)
        if (!(isalnum((unsigned char)t[i]) || t[i] == '_'))
            return false;
    snprintf(name, size, "%.*s", (int)(n - 2), t);
    return true;
}

/* True when `file` defines `fn`: the name at the start of a line's
 * declarator, followed by '(' and, on some later line, a body. */
static bool defines(const char *file, const char *fn)
{
    char *text = read_source(file);
    if (text == NULL)
        return false;
    bool found = false;
    size_t n = strlen(fn);
    for (const char *p = strstr(text, fn); p != NULL && !found; p = strstr(p + 1, fn)) {
        bool starts_word = p == text || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
        const char *line = p;
        while (line > text && line[-1] != '\n')
            line--;
        /* a definition starts at column 0 (a type, then the name) */
        const char *body = strchr(p, '{'), *semicolon = strchr(p, ';');
        found = starts_word && p[n] == '(' && line[0] != ' ' && line[0] != '\t' && line[0] != '/' &&
                body != NULL && (semicolon == NULL || body < semicolon);
    }
    free(text);
    return found;
}

struct line_tokens {
    char paths[32][256];
    size_t n_paths;
    char functions[32][128];
    size_t n_functions;
};

static void collect(const char *line, const char *eol, struct line_tokens *t)
{
    for (const char *a = memchr(line, '`', (size_t)(eol - line)); a != NULL;) {
        const char *b = memchr(a + 1, '`', (size_t)(eol - a - 1));
        if (b == NULL)
            break;
        char tok[256];
        if ((size_t)(b - a - 1) < sizeof(tok)) {
            snprintf(tok, sizeof(tok), "%.*s", (int)(b - a - 1), a + 1);
            if (is_path(tok) && t->n_paths < 32)
                snprintf(t->paths[t->n_paths++], sizeof(t->paths[0]), "%s", tok);
            else if (t->n_functions < 32 &&
                     is_function(tok, t->functions[t->n_functions], sizeof(t->functions[0])))
                t->n_functions++;
        }
        a = memchr(b + 1, '`', (size_t)(eol - b - 1));
    }
}

/* The end of the unit that starts at `s`: a table row is one line; a list
 * item or a paragraph runs to a blank line, a new item or a table. */
static const char *unit_end(const char *s)
{
    const char *eol = strchr(s, '\n');
    if (s[0] == '|' || eol == NULL)
        return eol ? eol : s + strlen(s);
    for (const char *next = eol + 1;; next = eol + 1) {
        bool is_new_unit = next[0] == '\n' || next[0] == '\0' || next[0] == '|' || next[0] == '#' ||
                           strncmp(next, "- ", 2) == 0 ||
                           (isdigit((unsigned char)next[0]) && next[1] == '.');
        if (is_new_unit)
            return eol;
        const char *after = strchr(next, '\n');
        if (after == NULL)
            return next + strlen(next);
        eol = after;
    }
}

Test(architecture, every_file_it_names_exists)
{
    char *doc = read_source(DOC);
    cr_assert_not_null(doc, "cannot read %s (set PLUGD_SOURCE_ROOT)", DOC);
    size_t checked = 0;
    for (const char *line = doc; *line != '\0';) {
        const char *eol = strchr(line, '\n');
        if (eol == NULL)
            eol = line + strlen(line);
        struct line_tokens t = {0};
        collect(line, eol, &t);
        for (size_t i = 0; i < t.n_paths; i++, checked++) {
            char path[4096];
            struct stat st;
            snprintf(path, sizeof(path), "%s/%s", source_root(), t.paths[i]);
            cr_expect(stat(path, &st) == 0, "%s names %s, which is not in the tree", DOC,
                      t.paths[i]);
        }
        line = *eol ? eol + 1 : eol;
    }
    cr_expect_gt(checked, 20, "%s names only %zu files", DOC, checked);
    free(doc);
}

Test(architecture, every_function_it_names_is_defined_in_a_file_of_its_unit)
{
    char *doc = read_source(DOC);
    cr_assert_not_null(doc, "cannot read %s (set PLUGD_SOURCE_ROOT)", DOC);
    size_t checked = 0;
    for (const char *line = doc; *line != '\0';) {
        const char *eol = unit_end(line);
        struct line_tokens t = {0};
        collect(line, eol, &t);
        for (size_t i = 0; i < t.n_functions; i++, checked++) {
            bool found = false;
            for (size_t j = 0; j < t.n_paths && !found; j++)
                found = defines(t.paths[j], t.functions[i]);
            cr_expect(found, "%s: %s() is defined in none of the files of its unit: %.*s", DOC,
                      t.functions[i], (int)(eol - line), line);
        }
        line = *eol ? eol + 1 : eol;
    }
    cr_expect_gt(checked, 10, "%s names only %zu functions", DOC, checked);
    free(doc);
}
