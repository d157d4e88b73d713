/* The control commands as data: name, arguments (JSON type, and how
 * plugctl takes them), help, and the result's fields and printed columns.
 * plugd (commands.c: argument checks, dispatch) and plugctl (parser,
 * usage, help, printers) both compile this one table; docs/control.md is
 * checked against it by tests/supervisor/test_command_table.c. It depends
 * on libc only, so man pages and shell completion can be generated from it
 * by a small program that links command_table.c. */
#ifndef PLUGD_COMMAND_TABLE_H
#define PLUGD_COMMAND_TABLE_H

#include <stdbool.h>
#include <stddef.h>

/* One per row of ct_commands, in its order: commands.c indexes its
 * handlers with it. */
enum ct_id {
    CT_LIST,
    CT_STATUS,
    CT_INSTALL,
    CT_UPGRADE,
    CT_RELOAD,
    CT_ENABLE,
    CT_DISABLE,
    CT_APPROVE,
    CT_REJECT,
    CT_UNINSTALL,
    CT_PURGE,
    CT_CALL,
    CT_CONFIG,
    CT_SUBSCRIBE,
    CT_LOGS,
    CT_STATS,
    CT_DOCTOR,
    CT_AUDIT,
    CT_HISTORY,
    CT_SHUTDOWN,
    CT_COUNT
};

/* An argument's JSON type. A string is never empty. */
enum ct_type { CT_STRING, CT_INTEGER, CT_BOOLEAN, CT_OBJECT, CT_ARRAY };

/* How plugctl takes an argument. A positional array takes every word left,
 * each as JSON (a bare word is a string). A flag of type boolean takes no
 * value. */
enum ct_cli { CT_POSITIONAL, CT_FLAG, CT_NOT_IN_CLI };

/* ct_arg.hints */
#define CT_HINT_PATH    0x1u /* plugctl sends it absolute */
#define CT_HINT_STREAMS 0x2u /* true: a stream follows the answer (logs follow) */

struct ct_arg {
    const char *name; /* the JSON key; NULL ends a list */
    enum ct_type type;
    bool is_required;
    enum ct_cli cli;
    const char *flag;    /* CT_FLAG: "-n", "--remove-data" */
    const char *metavar; /* the word in the synopsis ("PLUGIN"); NULL for a boolean flag */
    unsigned hints;
    const char *help;
    /* checked by plugd before the command runs: CT_INTEGER from min to max
     * (both 0: any); CT_STRING at most max bytes (0: any) */
    long long min, max;
};

/* How plugctl prints a result for people (--json prints it as it came). */
enum ct_output {
    CT_OUT_VALUE,   /* an object as "key value" lines, an array one element a line */
    CT_OUT_BLOCKS,  /* an array of objects, each as CT_OUT_VALUE, a blank line between */
    CT_OUT_TABLE,   /* rows under a header of column titles */
    CT_OUT_RECORDS, /* rows without a header */
    CT_OUT_NONE,    /* nothing: a stream follows */
};

enum ct_cell { CT_CELL_STRING, CT_CELL_INTEGER, CT_CELL_REAL, CT_CELL_TIME, CT_CELL_JSON };

/* One printed column: `width` < 0 left-aligned, > 0 right-aligned, 0 as
 * wide as its text (the last column). */
struct ct_column {
    const char *title; /* NULL ends a list */
    const char *key;
    enum ct_cell cell;
    int width;
    int precision;        /* CT_CELL_REAL: digits after the point */
    int gap;              /* spaces before it (0: one) */
    const char *fallback; /* the key to print when `key` is absent */
};

/* ct_command.flags */
#define CT_STREAMS 0x1u /* a stream always follows the answer (subscribe) */

struct ct_command {
    enum ct_id id;
    const char *name;     /* on the wire */
    const char *cli_name; /* plugctl's word when it differs, else NULL */
    const struct ct_arg *args;
    const char *summary;
    unsigned flags;
    enum ct_output output;
    const char *rows_key; /* the rows are result[rows_key] (NULL: the result) */
    const struct ct_column *columns;
    const char *const *fields; /* every key of the result object (or of each element);
                                  NULL: not fixed */
};

extern const struct ct_command ct_commands[CT_COUNT];

/* plugctl's options before the command (--help aside). */
struct ct_option {
    const char *name;    /* "socket" for --socket; NULL ends the list */
    const char *metavar; /* its value's word, NULL: it takes none */
    const char *help;
};
extern const struct ct_option ct_options[];

/* How events and log records that follow an answer are printed. */
extern const struct ct_column ct_event_columns[];
extern const struct ct_column ct_log_columns[];

/* The command named `name` on the wire, or NULL. */
const struct ct_command *ct_find(const char *name);

/* The command plugctl calls `word` ("events"), or NULL. */
const struct ct_command *ct_find_cli(const char *word);

/* plugctl's word for `c`. */
const char *ct_cli_name(const struct ct_command *c);

/* "string", "integer", "boolean", "object", "array": as docs/control.md
 * writes them. */
const char *ct_type_name(enum ct_type type);

/* plugctl's synopsis of `c` after "plugctl": "logs [PLUGIN] [-n LINES] [-f]".
 * Cut to fit `size`; returns the length it needed. */
size_t ct_synopsis(const struct ct_command *c, char *buf, size_t size);

/* The argument of `c` named `name` (JSON key), or NULL. */
const struct ct_arg *ct_find_arg(const struct ct_command *c, const char *name);

#endif
