/* Files kiln writes or removes, done so that neither another local user nor
 * the profiled program can turn a write by (possibly root's) kiln against
 * anything the user did not name (docs/security.md).
 *
 *   path is a regular file, or absent  ─► a temporary beside it, created
 *        O_EXCL|O_NOFOLLOW under an unpredictable name, renamed over the
 *        path on commit (whole or not at all), removed on abort;
 *   anything else (device, FIFO, socket, symlink, /dev/stdout) ─► written
 *        through: opened as it is, never replaced, never removed.
 *
 * Nothing here deletes a file it did not create. */
#ifndef KILN_UTIL_SAFEFILE_H
#define KILN_UTIL_SAFEFILE_H

#include <stdbool.h>
#include <stddef.h>

struct safe_out {
	int fd;         /* -1 until open */
	char *path;     /* what the user named */
	char *tmp;      /* the temporary (regular outputs), NULL otherwise */
	bool through;   /* written through (not a regular file) */
	bool committed;
};

/* Get ready to write path. A regular output gets its temporary now (so
 * errors such as a read-only folder show before any work is done); a
 * write-through one is opened only by safe_out__open_through (a FIFO would
 * block here). 0 or -errno. */
int safe_out__prepare(struct safe_out *o, const char *path);
/* Open a write-through output (no-op for regular ones): a FIFO without a
 * reader is waited for, unless nonblock is set (then -ENXIO). 0 or -errno. */
int safe_out__open_through(struct safe_out *o, bool nonblock);
/* Put the temporary in place. keep_old: an existing regular file at path is
 * first renamed to path.old (perf's way). 0 or -errno; the fd stays open. */
int safe_out__commit(struct safe_out *o, bool keep_old);
/* Close the fd (if still open) and, if not committed, remove the temporary
 * (only ever the temporary). Returns the close error, 0 or -errno. */
int safe_out__close(struct safe_out *o);

/* Fill buf with n-1 unpredictable characters [a-zA-Z0-9] and a NUL. */
void random_token(char *buf, size_t n);

/* Remove a folder that this user owns and its plain entries (not
 * recursively), never through a symlink: the folder is opened
 * O_NOFOLLOW|O_DIRECTORY, its owner checked, and entries unlinked relative
 * to it. 0 or -errno (-EPERM when not ours). */
int remove_own_dir(const char *dir);

#endif
