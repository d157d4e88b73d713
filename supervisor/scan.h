/* The plugins folder scan and the data retention sweep (scan.c): their
 * timers, which daemon.c starts once the restored plugins run. The scan
 * and the sweep themselves are plugd.h's plugd_scan and
 * plugd_sweep_retention. */
#ifndef PLUGD_SCAN_H
#define PLUGD_SCAN_H

#include "plugd.h"

/* Sets up the scan timer (every `interval` s) and the retention timer. */
void scan_timers_init(struct plugd *d, double interval);
/* Starts them: the scan timer only with a plugins folder. */
void scan_timers_start(struct plugd *d);
void scan_timers_stop(struct plugd *d);

#endif
