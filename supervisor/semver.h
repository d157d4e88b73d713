/* Semantic Versioning 2.0.0: what a plugin's "version" must be and how
 * versions rank. */
#ifndef PLUGD_SEMVER_H
#define PLUGD_SEMVER_H

#include <stdbool.h>

/* True when `v` is a version by semver.org. */
bool semver_is_valid(const char *v);

/* <0, 0, >0 as `a` has lower, equal, higher precedence than `b` (semver.org
 * section 11; build metadata ignored). Both must be valid versions. */
int semver_compare(const char *a, const char *b);

#endif
