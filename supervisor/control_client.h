/* One connection to the control socket (control_client.c) and the socket
 * that accepts them (control.c): what the two halves of the control socket
 * share. Internal to them. */
#ifndef PLUGD_CONTROL_CLIENT_H
#define PLUGD_CONTROL_CLIENT_H

#include <ev.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "control.h"
#include "plugd/outbuf.h"
#include "stream.h"

struct client {
    struct control *ctl; /* NULL once control_close orphaned it */
    int fd;
    ev_io rio, wio;
    ev_idle more_w; /* lines left over from a turn: handled at the next loop turn */
    char *in;
    size_t in_off, in_len, in_cap; /* [in_off, in_len) is not handled yet */
    bool is_discarding;            /* the rest of a line that was too long */
    bool may_have_line;            /* a complete line may be buffered */
    bool is_congested;             /* output past the high water: not read until the low */
    bool is_eof;                   /* it sent all it will: closed once answered */
    struct ipc_outbuf out;         /* answers, events and log records not sent yet */
    size_t held;                   /* in_cap + out.held, as counted in ctl->held */
    unsigned holds;                /* callbacks of its own running: not freed under them */
    bool is_authorized;
    char actor[48];       /* "uid:1000", for the audit */
    struct stream stream; /* its events and followed log records */
    unsigned pending;     /* requests answered later (call, config) */
    bool is_closed;       /* gone; freed when nothing is pending */
    struct client *next;
};

struct control {
    struct plugd *d;
    struct control_options o;
    int fd;
    int reserve_fd; /* spent to accept-and-refuse when out of fds */
    ev_io accept_w;
    ev_timer accept_pause_t; /* out of fds and no reserve: accepting waits */
    ev_prepare trim_w;       /* the clients hold too much: drop the greediest */
    struct client *clients;
    size_t n_clients;        /* open ones */
    size_t held;             /* bytes of all clients' buffers */
    struct stat socket_file; /* what we bound, so we never unlink another's */
    char *line;              /* where an answer is dumped before it is queued */
    size_t line_cap;         /* grown to the longest answer so far */
};

/* Serves a new connection `fd` (taken over) from the peer `cred`; NULL
 * when out of memory (fd is still the caller's then). */
struct client *client_new(struct control *ctl, int fd, const struct ucred *cred);

/* Ends the client now; its memory goes when its last pending request is
 * answered (the answer is dropped) and no callback of its own runs. */
void client_close(struct client *c);

/* Bytes of output not sent yet. */
size_t client_queued(const struct client *c);

/* Sends what is queued without waiting; -1 when the client is gone. */
int client_flush(struct client *c);

/* Drops what the client has not read, sends it one buffer_full error line
 * saying `why`, frees its buffers and closes it: control.c's memory cap. */
void client_evict(struct client *c, const char *why);

#endif
