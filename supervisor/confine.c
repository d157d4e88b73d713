#include "confine.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "logs.h"
#include "services.h"

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP ? rmdir(path) : unlink(path))
        log_plugd("warn", NULL, "cannot remove %s: %s", path, strerror(errno));
    return 0; /* go on with the rest */
}

void remove_tree(const char *dir)
{
    if (dir[0] != '\0' && access(dir, F_OK) == 0)
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static void on_notify(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct wk_confinement *c = io->data;
    struct sb_syscall call;
    if (sb_notify_receive(io->fd, &call) < 0)
        return; /* the caller died meanwhile */
    c->violations++;
    snprintf(c->last_violation, sizeof(c->last_violation), "%s", call.name);
    c->on_violation(c, &call);
}

void confine_init(struct wk_confinement *c,
                  void (*on_violation)(struct wk_confinement *c, const struct sb_syscall *call),
                  void *owner)
{
    ev_io_init(&c->notify_w, on_notify, -1, EV_READ);
    c->notify_w.data = c;
    c->on_violation = on_violation;
    c->owner = owner;
}

/* mkdir -p of `dir` below an existing `base`, 0700 */
static int make_dir(const char *base, const char *sub, const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", base, sub);
    if (mkdir(out, 0700) < 0 && errno != EEXIST)
        return -1;
    snprintf(out, size, "%s/%s/%s", base, sub, name);
    return mkdir(out, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/* What must be executable: the entrypoint, the interpreter its "#!" names,
 * and the ELF interpreter (the dynamic loader) of the program that runs. */
static void find_interpreters(struct wk_confinement *c, const char *entrypoint)
{
    c->interpreter[0][0] = c->interpreter[1][0] = '\0';
    const char *program = entrypoint;
    if (sb_script_interpreter(entrypoint, c->interpreter[0], PATH_MAX))
        program = c->interpreter[0];
    sb_elf_interpreter(program, c->interpreter[1], PATH_MAX);
}

void confine_prepare(struct wk_confinement *c, const struct manifest *m, struct sb_policy *p)
{
    static const struct sb_system off = {.mode = SB_MODE_OFF};
    const struct sb_system *s = c->system != NULL ? c->system : &off;
    const struct worker_limits *l = &m->limits;
    sb_policy_init(p, s, l->memory_mb, l->nofile, l->nproc, -1);
    c->tmp_dir[0] = c->data_dir[0] = c->cgroup_why[0] = '\0';
    memset(&c->cgroup, 0, sizeof(c->cgroup));
    if (!p->enabled)
        return;
    if (c->state_dir != NULL) {
        if (make_dir(c->state_dir, "tmp", m->name, c->tmp_dir, sizeof(c->tmp_dir)) < 0) {
            log_plugd("warn", m->name, "cannot create %s: %s", c->tmp_dir, strerror(errno));
            c->tmp_dir[0] = '\0';
        }
        if (manifest_has_capability(m, "fs.data") &&
            make_dir(c->state_dir, "data", m->name, c->data_dir, sizeof(c->data_dir)) < 0) {
            log_plugd("warn", m->name, "cannot create %s: %s", c->data_dir, strerror(errno));
            c->data_dir[0] = '\0';
        }
    }
    if (sb_cgroup_create(s, m->name, l->memory_mb, l->nproc, l->cpu_percent, &c->cgroup,
                         c->cgroup_why, sizeof(c->cgroup_why)) < 0)
        sb_policy_without_cgroup(p, l->memory_mb, l->nproc, c->cgroup_why);
    else
        for (int i = 0; i < SB_CG_COUNT; i++)
            p->cgroup_dir[i] = c->cgroup.dir[i];
    find_interpreters(c, m->entrypoint);
    p->package_dir = m->dir;
    p->exec[0] = m->entrypoint;
    p->exec[1] = c->interpreter[0];
    p->exec[2] = c->interpreter[1];
    p->tmp_dir = c->tmp_dir;
    p->data_dir = c->data_dir[0] ? c->data_dir : NULL;
    p->may_read_usr = manifest_has_capability(m, "fs.read");
    p->may_network = manifest_has_capability(m, "net.outbound");
    p->may_spawn = manifest_has_capability(m, "process.spawn");
    if (p->may_network)
        p->net_fd = -1; /* the host's network */
    p->on_violation = m->is_violation_eperm ? SB_VIOLATION_EPERM : SB_VIOLATION_KILL;
}

int confine_set_env(const struct wk_confinement *c)
{
    if (c->tmp_dir[0] != '\0' && setenv("TMPDIR", c->tmp_dir, 1) < 0)
        return -1;
    if (c->data_dir[0] != '\0' && setenv("PLUGD_DATA", c->data_dir, 1) < 0)
        return -1;
    return 0;
}

void confine_watch(struct wk_confinement *c, struct ev_loop *loop, int notify_fd)
{
    ev_io_set(&c->notify_w, notify_fd, EV_READ);
    ev_io_start(loop, &c->notify_w);
}

bool confine_oom_killed(const struct wk_confinement *c)
{
    return c->system != NULL && sb_cgroup_oom_killed(c->system, &c->cgroup);
}

void confine_release(struct wk_confinement *c, struct ev_loop *loop)
{
    if (c->notify_w.fd >= 0) {
        ev_io_stop(loop, &c->notify_w);
        close(c->notify_w.fd);
        ev_io_set(&c->notify_w, -1, EV_READ);
    }
    sb_cgroup_remove(&c->cgroup);
    remove_tree(c->tmp_dir);
    c->tmp_dir[0] = '\0';
}
