/* The event bus alone: patterns, filters, order, bounded queues, resuming. */
#include <criterion/criterion.h>
#include <string.h>

#include "events.h"

struct collector {
    char names[64][64];
    uint64_t seqs[64];
    int n;
    bool is_busy; /* the channel takes nothing */
    int dropped;  /* times on_drop ran */
    char why[128];
};

static int collect(const struct ev_bus_event *e, void *ud)
{
    struct collector *c = ud;
    if (c->is_busy)
        return 1;
    if (c->n < 64) {
        snprintf(c->names[c->n], sizeof(c->names[0]), "%s", e->name);
        c->seqs[c->n] = e->seq;
    }
    c->n++;
    return 0;
}

static void on_drop(struct ev_bus_sub *s, const char *why, void *ud)
{
    (void)s;
    struct collector *c = ud;
    c->dropped++;
    snprintf(c->why, sizeof(c->why), "%s", why);
}

static struct ev_bus_sub *subscribe(struct ev_bus *b, struct collector *c, const char *pattern,
                                    const char *filter)
{
    struct ev_bus_sub *s = ev_bus_subscribe(b, collect, on_drop, c);
    json_t *f = filter ? json_loads(filter, 0, NULL) : NULL;
    cr_assert_eq(ev_bus_sub_add(s, pattern, f, NULL), 0);
    json_decref(f);
    return s;
}

Test(events, patterns_and_filters_select_events_in_order)
{
    struct ev_bus *b = ev_bus_new();
    struct collector all = {0}, hello = {0}, errors = {0}, changed = {0};
    subscribe(b, &all, "*", NULL);
    subscribe(b, &hello, "plugin.*", "{\"plugin\": \"hello\"}");
    subscribe(b, &errors, "plugin.status_changed", "{\"new_status\": \"error\"}");
    subscribe(b, &changed, "plugin.*.changed", NULL);
    ev_bus_publish(b, "plugin.status_changed", "hello",
                   json_pack("{s:s, s:s}", "previous_status", "ready", "new_status", "error"));
    ev_bus_publish(b, "plugin.status_changed", "other",
                   json_pack("{s:s, s:s}", "previous_status", "ready", "new_status", "disabled"));
    ev_bus_publish(b, "plugin.counter.changed", "counter", json_pack("{s:i}", "value", 1));
    ev_bus_publish(b, "plugin.hello.changed", "hello", NULL);
    cr_assert_eq(all.n, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(all.seqs[i], (uint64_t)i + 1, "sequence numbers are 1, 2, 3, ...");
    cr_assert_eq(hello.n, 2);
    cr_assert_str_eq(hello.names[1], "plugin.hello.changed");
    cr_assert_eq(errors.n, 1);
    cr_assert_eq(errors.seqs[0], 1);
    cr_assert_eq(changed.n, 2);
    cr_assert_str_eq(changed.names[0], "plugin.counter.changed");
    ev_bus_free(b);
}

Test(events, a_busy_channel_gets_its_events_later_in_order)
{
    struct ev_bus *b = ev_bus_new();
    struct collector c = {0};
    struct ev_bus_sub *s = subscribe(b, &c, "*", NULL);
    c.is_busy = true;
    for (int i = 0; i < 10; i++)
        ev_bus_publish(b, "x.y", NULL, NULL);
    cr_assert_eq(c.n, 0);
    c.is_busy = false;
    ev_bus_publish(b, "x.z", NULL, NULL); /* behind the queue, not ahead of it */
    cr_assert_eq(c.n, 0, "a new event must not overtake queued ones");
    ev_bus_sub_drain(s);
    cr_assert_eq(c.n, 11);
    for (int i = 0; i < 11; i++)
        cr_assert_eq(c.seqs[i], (uint64_t)i + 1);
    ev_bus_free(b);
}

Test(events, an_overflowing_subscriber_is_dropped_and_others_keep_receiving)
{
    struct ev_bus *b = ev_bus_new();
    struct collector slow = {0}, fast = {0};
    subscribe(b, &slow, "*", NULL);
    subscribe(b, &fast, "*", NULL);
    slow.is_busy = true;
    for (int i = 0; i < EV_BUS_QUEUE + 10; i++)
        ev_bus_publish(b, "x.y", NULL, NULL);
    cr_assert_eq(slow.dropped, 1);
    cr_assert(strstr(slow.why, "queue overflowed"), "%s", slow.why);
    cr_assert_eq(fast.n, EV_BUS_QUEUE + 10);
    struct ev_bus_stats st;
    ev_bus_stats(b, &st);
    cr_assert_eq(st.subscribers, 1);
    cr_assert_eq(st.dropped_subscribers, 1);
    cr_assert_eq(st.queued_now, 0, "the dropped subscriber's queue is gone");
    ev_bus_free(b);
}

Test(events, a_subscriber_resumes_from_a_sequence_number)
{
    struct ev_bus *b = ev_bus_new();
    for (int i = 0; i < 5; i++)
        ev_bus_publish(b, i % 2 ? "a.odd" : "a.even", NULL, NULL);
    struct collector c = {0};
    struct ev_bus_sub *s = subscribe(b, &c, "a.even", NULL);
    cr_assert_eq(ev_bus_sub_replay(s, 1), false);
    cr_assert_eq(c.n, 2, "events 3 and 5 are the even ones after 1");
    cr_assert_eq(c.seqs[0], 3);
    cr_assert_eq(c.seqs[1], 5);
    ev_bus_free(b);

    b = ev_bus_new();
    for (int i = 0; i < EV_BUS_HISTORY + 100; i++)
        ev_bus_publish(b, "a.b", NULL, NULL);
    struct collector late = {0};
    s = subscribe(b, &late, "*", NULL);
    late.is_busy = true; /* count only what is offered, into the queue */
    cr_assert_eq(ev_bus_sub_replay(s, 10), true, "events 11 to 100 are forgotten: a gap");
    late.is_busy = false;
    ev_bus_sub_drain(s);
    cr_assert_eq(late.n, EV_BUS_QUEUE < EV_BUS_HISTORY ? EV_BUS_QUEUE : EV_BUS_HISTORY);
    cr_assert_eq(late.seqs[0], 101, "the replay starts at the oldest kept event");
    ev_bus_free(b);
}

Test(events, event_names_are_checked)
{
    cr_assert(ev_bus_is_valid_name("plugin.hello.changed"));
    cr_assert(ev_bus_is_valid_name("plugin.a-b.c_d.1"));
    cr_assert(!ev_bus_is_valid_name(""));
    cr_assert(!ev_bus_is_valid_name("plugin..x"));
    cr_assert(!ev_bus_is_valid_name("plugin.x."));
    cr_assert(!ev_bus_is_valid_name(".plugin"));
    cr_assert(!ev_bus_is_valid_name("Plugin.x"));
    cr_assert(!ev_bus_is_valid_name("plugin.x*"));
}
