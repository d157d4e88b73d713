#include "restart.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void restart_reset(struct restart_history *h)
{
    h->n_times = 0; /* the array stays for the next restarts */
    h->step = 0;
}

void restart_free(struct restart_history *h)
{
    free(h->times);
    memset(h, 0, sizeof(*h));
}

/* Room for one more time, growing toward `limit`; false when it cannot
 * grow. */
static bool make_room(struct restart_history *h, unsigned limit)
{
    if (h->n_times < h->cap)
        return true;
    unsigned cap = h->cap < 8 ? 8 : h->cap * 2;
    if (cap > limit)
        cap = limit;
    double *grown = cap > h->cap ? realloc(h->times, cap * sizeof(*grown)) : NULL;
    if (grown == NULL)
        return false;
    h->times = grown;
    h->cap = cap;
    return true;
}

double restart_backoff(unsigned step, double draw)
{
    if (step == 0)
        return 0; /* the first restart is immediate */
    double d = RESTART_BACKOFF_BASE;
    for (unsigned i = 1; i < step && d < RESTART_BACKOFF_MAX; i++)
        d *= 2;
    if (d > RESTART_BACKOFF_MAX)
        d = RESTART_BACKOFF_MAX;
    if (!(draw >= 0)) /* NaN too */
        draw = 0;
    if (draw > 1)
        draw = 1;
    return d * (1.0 + RESTART_JITTER * (2.0 * draw - 1.0));
}

bool restart_count(struct restart_history *h, const struct restart_limits *l, double now)
{
    unsigned kept = 0;
    for (unsigned i = 0; i < h->n_times; i++)
        if (now - h->times[i] < l->window)
            h->times[kept++] = h->times[i];
    h->n_times = kept;
    if ((int)kept >= l->max_restarts)
        return false;
    if (!make_room(h, (unsigned)l->max_restarts)) {
        if (h->n_times == 0)
            return true; /* nothing to give way: counted as none */
        memmove(h->times, h->times + 1, (h->n_times - 1) * sizeof(*h->times));
        h->n_times--;
    }
    h->times[h->n_times++] = now;
    return true;
}

struct restart_decision restart_decide(struct restart_history *h, const struct restart_limits *l,
                                       double now, double running_since, double draw)
{
    if (running_since > 0 && now - running_since >= l->window)
        h->step = 0; /* it had been stable: start the backoff over */
    if (!restart_count(h, l, now))
        return (struct restart_decision){.is_crash_loop = true};
    return (struct restart_decision){.delay = restart_backoff(h->step++, draw)};
}

bool restart_is_transient(int error)
{
    switch (error) {
    case EAGAIN:
    case EINTR:
    case ETOOMANYREFS:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case ETXTBSY:
        return true;
    default:
        return false;
    }
}
