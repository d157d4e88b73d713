/* The restart policy (supervisor/restart.c) in-process: every branch of
 * the backoff, the jitter, the crash-loop window, the stable-run reset and
 * the errno classification, without a process or a clock. */
#include <criterion/criterion.h>
#include <errno.h>

#include "restart.h"

static const struct restart_limits five_in_60 = {.window = 60.0, .max_restarts = 5};

Test(restart, the_first_restart_is_immediate_whatever_the_draw)
{
    cr_expect_eq(restart_backoff(0, 0.0), 0.0);
    cr_expect_eq(restart_backoff(0, 0.5), 0.0);
    cr_expect_eq(restart_backoff(0, 1.0), 0.0);
}

Test(restart, the_second_waits_a_tenth_of_a_second_then_doubles)
{
    /* draw 0.5: no jitter */
    cr_expect_float_eq(restart_backoff(1, 0.5), 0.1, 1e-9);
    cr_expect_float_eq(restart_backoff(2, 0.5), 0.2, 1e-9);
    cr_expect_float_eq(restart_backoff(3, 0.5), 0.4, 1e-9);
    cr_expect_float_eq(restart_backoff(9, 0.5), 25.6, 1e-9);
}

Test(restart, the_backoff_stops_at_thirty_seconds)
{
    cr_expect_float_eq(restart_backoff(10, 0.5), 30.0, 1e-9); /* 51.2 */
    cr_expect_float_eq(restart_backoff(64, 0.5), 30.0, 1e-9);
    cr_expect_float_eq(restart_backoff(~0u, 0.5), 30.0, 1e-9);
}

Test(restart, the_jitter_spreads_the_delay_twenty_percent_either_way)
{
    cr_expect_float_eq(restart_backoff(1, 0.0), 0.08, 1e-9);
    cr_expect_float_eq(restart_backoff(1, 1.0), 0.12, 1e-9);
    cr_expect_float_eq(restart_backoff(1, 0.25), 0.09, 1e-9);
    cr_expect_float_eq(restart_backoff(12, 1.0), 36.0, 1e-9, "the jitter applies at the cap too");
}

Test(restart, a_draw_outside_zero_to_one_is_taken_as_the_nearest_end)
{
    cr_expect_float_eq(restart_backoff(1, -3.0), 0.08, 1e-9);
    cr_expect_float_eq(restart_backoff(1, 7.0), 0.12, 1e-9);
    cr_expect_float_eq(restart_backoff(1, 0.0 / 0.0), 0.08, 1e-9);
}

Test(restart, a_crash_loop_gives_up_once_the_window_holds_max_restarts)
{
    struct restart_history h = {0};
    for (int i = 0; i < 5; i++) {
        struct restart_decision d = restart_decide(&h, &five_in_60, 100.0 + i, 0, 0.5);
        cr_assert_not(d.is_crash_loop, "restart %d", i);
    }
    struct restart_decision d = restart_decide(&h, &five_in_60, 105.0, 0, 0.5);
    cr_expect(d.is_crash_loop);
    cr_expect_eq(h.n_times, 5, "a crash loop counts no restart");
    cr_expect_eq(h.step, 5, "nor moves the backoff");
    restart_free(&h);
}

Test(restart, the_delays_of_successive_restarts_follow_the_backoff)
{
    struct restart_history h = {0};
    static const double want[] = {0, 0.1, 0.2, 0.4};
    for (int i = 0; i < 4; i++) {
        double delay = restart_decide(&h, &five_in_60, 10.0 + i, 0, 0.5).delay;
        cr_expect_float_eq(delay, want[i], 1e-9, "restart %d", i);
    }
    restart_free(&h);
}

Test(restart, restarts_older_than_the_window_are_forgotten)
{
    struct restart_history h = {0};
    for (int i = 0; i < 5; i++)
        cr_assert(restart_count(&h, &five_in_60, 100.0 + i));
    cr_expect_not(restart_count(&h, &five_in_60, 159.9), "all five are within 60 s");
    /* at 160.0 the first (100.0) is a whole window old */
    cr_expect(restart_count(&h, &five_in_60, 160.0));
    cr_expect_eq(h.n_times, 5);
    cr_expect_float_eq(h.times[0], 101.0, 1e-9);
    cr_expect_float_eq(h.times[4], 160.0, 1e-9);
    restart_free(&h);
}

Test(restart, one_restart_allowed_gives_up_at_the_second_crash)
{
    const struct restart_limits one = {.window = 60.0, .max_restarts = 1};
    struct restart_history h = {0};
    cr_expect_not(restart_decide(&h, &one, 1.0, 0, 0.5).is_crash_loop);
    cr_expect(restart_decide(&h, &one, 2.0, 0, 0.5).is_crash_loop);
    restart_free(&h);
}

Test(restart, a_run_stable_for_a_whole_window_starts_the_backoff_over)
{
    struct restart_history h = {.step = 7};
    struct restart_decision d = restart_decide(&h, &five_in_60, 200.0, 140.0, 0.5);
    cr_expect_not(d.is_crash_loop);
    cr_expect_eq(d.delay, 0.0, "immediate again");
    cr_expect_eq(h.step, 1);
    restart_free(&h);
}

Test(restart, a_run_shorter_than_a_window_keeps_the_backoff_going)
{
    struct restart_history h = {.step = 3};
    struct restart_decision d = restart_decide(&h, &five_in_60, 200.0, 140.5, 0.5);
    cr_expect_float_eq(d.delay, 0.4, 1e-9);
    cr_expect_eq(h.step, 4);
    restart_free(&h);
}

Test(restart, a_start_that_never_ran_keeps_the_backoff_going)
{
    struct restart_history h = {.step = 2};
    double delay = restart_decide(&h, &five_in_60, 1e6, 0, 0.5).delay;
    cr_expect_float_eq(delay, 0.2, 1e-9);
    restart_free(&h);
}

Test(restart, reset_forgets_every_restart_and_the_backoff)
{
    struct restart_history h = {0};
    for (int i = 0; i < 5; i++)
        restart_decide(&h, &five_in_60, 1.0 + i, 0, 0.5);
    restart_reset(&h);
    cr_expect_eq(h.n_times, 0);
    cr_expect_eq(h.step, 0);
    struct restart_decision d = restart_decide(&h, &five_in_60, 6.0, 0, 0.5);
    cr_expect_not(d.is_crash_loop);
    cr_expect_eq(d.delay, 0.0);
    restart_free(&h);
}

Test(restart, the_largest_limit_a_manifest_may_set_is_reached)
{
    const struct restart_limits many = {.window = 1e9, .max_restarts = 1000};
    struct restart_history h = {0};
    for (int i = 0; i < 1000; i++)
        cr_assert(restart_count(&h, &many, 1.0 + i), "restart %d refused", i + 1);
    cr_expect_not(restart_count(&h, &many, 2000.0), "1,000 restarts within the window, and more");
    cr_expect_eq(h.n_times, 1000);
    cr_expect_leq(h.cap, 1000, "the history grew past the limit");
    restart_free(&h);
}

Test(restart, a_reset_forgets_the_count_but_keeps_the_room)
{
    struct restart_history h = {0};
    for (int i = 0; i < 5; i++)
        cr_assert(restart_count(&h, &five_in_60, 1.0 + i));
    restart_reset(&h);
    cr_expect_eq(h.n_times, 0);
    cr_expect_eq(h.step, 0);
    cr_expect(restart_count(&h, &five_in_60, 7.0), "a reset history still counted old restarts");
    restart_free(&h);
    cr_expect_null(h.times);
}

Test(restart, errnos_that_waiting_can_change_are_transient)
{
    static const int transient[] = {EAGAIN, EINTR, ETOOMANYREFS, ENOMEM, EMFILE, ENFILE, ETXTBSY};
    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
        cr_expect(restart_is_transient(transient[i]), "errno %d", transient[i]);
}

Test(restart, errnos_that_waiting_cannot_change_fail_for_good)
{
    static const int permanent[] = {0, ENOENT, EACCES, ENOEXEC, EPERM, ENOTDIR, ELOOP, EINVAL};
    for (size_t i = 0; i < sizeof(permanent) / sizeof(permanent[0]); i++)
        cr_expect_not(restart_is_transient(permanent[i]), "errno %d", permanent[i]);
}
