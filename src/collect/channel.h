/* The recorder's end of the heap channel (include/kiln/ring.h) and of the
 * snapshot socket, in a private folder no other user can enter:
 *
 *   /dev/shm/kiln-XXXXXX/   mkdtemp, 0700, checked with lstat (else /tmp)
 *       ctl                 SOCK_SEQPACKET: `kiln snapshot` (peer uid checked:
 *                           kiln's own or root) and shims that lost their
 *                           inherited socket
 *   socketpair              one end inherited by the launched program
 *                           ($KILN_FD), the other read here
 *
 * Everything a peer sends is untrusted: messages have one fixed form,
 * descriptors are handed on only with a ring message (others are closed), a
 * snapshot reply is sent without blocking within a whole-request deadline,
 * and connections are bounded. */
#ifndef KILN_COLLECT_CHANNEL_H
#define KILN_COLLECT_CHANNEL_H

#include <stdint.h>
#include <sys/types.h>
#include "kiln/ring.h"
#include "util/util.h"

struct channel;

struct channel_ops {
	void *ctx;
	/* A ring from a shim, and its image page (stamps) or -1: both the
	 * callee's to close. */
	void (*ring)(void *ctx, const struct kiln_msg *m, int fd, int page_fd);
	void (*loss)(void *ctx, const struct kiln_msg *m);
	/* Snapshot of pid into out (a whole profile file): 0 or -errno. */
	int (*snapshot)(void *ctx, uint32_t pid, struct buf *out);
};

/* Make the folder, the socket and the pair. NULL with errno. */
struct channel *channel__new(void);
void channel__free(struct channel *ch); /* closes, removes the folder */
const char *channel__dir(const struct channel *ch);
const char *channel__sock_path(const struct channel *ch);
/* The end the launched program inherits, and its inode ($KILN_FD). */
int channel__child_fd(const struct channel *ch);
ino_t channel__child_ino(const struct channel *ch);
/* Read shims' messages from fd (an attached program's channel, taken with
 * pidfd_getfd) instead of the pair. */
void channel__adopt(struct channel *ch, int fd);
/* After the launch: the recorder keeps no copy of the child's end. */
void channel__close_child_end(struct channel *ch);
/* Accept, read what is waiting (bounded), answer, send pending replies. */
void channel__poll(struct channel *ch, const struct channel_ops *ops);

/* Folders of recorders that died (SIGKILL) before they could clean up:
 * only this user's, never through a symlink. */
void channel__remove_stale(void);

#define KILN_SNAPSHOT_DEADLINE_NS 10000000000ull /* a whole request and its reply */
#define KILN_SNAPSHOT_CHUNK 32768u               /* reply message size */
#define KILN_SNAPSHOT_MAX (1ull << 32)           /* the largest reply a client accepts */

#endif
