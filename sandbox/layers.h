/* Inside sandbox/: the layers sb_apply calls, each in its own file. */
#ifndef PLUGD_SANDBOX_LAYERS_H
#define PLUGD_SANDBOX_LAYERS_H

#include <stddef.h>

#include "sandbox.h"

/* Sanitizer runtimes reserve terabytes of address space up front, read
 * /proc/self/maps, and LeakSanitizer stops the threads with ptrace from a
 * clone that shares the memory: such builds loosen exactly that. */
#if defined(__SANITIZE_ADDRESS__)
#define SB_HAS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_HAS_SANITIZER 1
#endif
#endif
#ifndef SB_HAS_SANITIZER
#define SB_HAS_SANITIZER 0
#endif

/* Marks `layer` refused with "what: strerror(err)" (the first reason kept). */
void sb_refuse(struct sb_report *r, enum sb_layer layer, const char *what, int err);
void sb_refuse_text(struct sb_report *r, enum sb_layer layer, const char *text);
/* "WHAT: strerror(err)" into `reason`, the end of a long WHAT (a path) kept. */
void sb_reason(char reason[SB_REASON_MAX], const char *what, int err);
void sb_activate(struct sb_report *r, enum sb_layer layer);
/* Writes `value` into DIR/FILE: 0, or -1 with errno. */
int sb_write_file(const char *dir, const char *file, const char *value);

#define SB_NAME_LOOKUP_FILES 5
extern const char *const sb_name_lookup_files[SB_NAME_LOOKUP_FILES];

/* Enters the view and makes it the worker's own (view.c). */
void sb_enter_view(const struct sb_policy *p, struct sb_report *r);

/* The highest landlock ABI the kernel has (0: none). */
int sb_landlock_abi(void);
void sb_apply_landlock(const struct sb_policy *p, struct sb_report *r);
/* The allow-list for `p`'s kind of worker when it is pid 1, compiled the
 * first time that kind asks (NULL when it cannot be). */
const struct sb_filter *sb_filter_for_pid1(const struct sb_policy *p);
/* How many programs are compiled (one per kind asked for so far). */
size_t sb_filters_count(void);
void sb_filters_free(void);
/* Returns the notification fd (-1 when the filter could not be loaded). */
int sb_apply_seccomp(const struct sb_policy *p, struct sb_report *r);

#endif
