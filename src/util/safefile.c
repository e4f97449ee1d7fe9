/* Safe outputs and removals (see safefile.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "util/safefile.h"
#include "util/util.h"

void random_token(char *buf, size_t n)
{
	static const char set[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	unsigned char rnd[64];
	if (!n)
		return;
	size_t k = n - 1 < sizeof(rnd) ? n - 1 : sizeof(rnd);
	if (getrandom(rnd, k, 0) != (ssize_t)k) {
		/* no entropy source: still never predictable from outside alone */
		uint64_t x = now_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)buf;
		for (size_t i = 0; i < k; i++)
			rnd[i] = (unsigned char)((x = hash_u64(x + i)) >> 24);
	}
	for (size_t i = 0; i < k; i++)
		buf[i] = set[rnd[i] % (sizeof(set) - 1)];
	buf[k] = 0;
}

int safe_out__prepare(struct safe_out *o, const char *path)
{
	memset(o, 0, sizeof(*o));
	o->fd = -1;
	struct stat st;
	if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		if (S_ISDIR(st.st_mode))
			return -EISDIR;
		o->through = true;
		o->path = xstrdup(path);
		return 0;
	}
	const char *base = path_base(path);
	size_t dirlen = (size_t)(base - path);
	for (int tries = 0; tries < 16; tries++) {
		char tok[13];
		random_token(tok, sizeof(tok));
		struct buf b;
		buf__init(&b);
		buf__printf(&b, "%.*s.%s.kiln-%s.tmp", (int)dirlen, path, base, tok);
		int fd = open(buf__cstr(&b), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
		if (fd >= 0) {
			o->fd = fd;
			o->tmp = (char *)b.data;
			o->path = xstrdup(path);
			return 0;
		}
		int e = errno;
		buf__release(&b);
		if (e != EEXIST)
			return -e;
	}
	return -EEXIST;
}

int safe_out__open_through(struct safe_out *o, bool nonblock)
{
	if (!o->through || o->fd >= 0)
		return 0;
	/* O_TRUNC does nothing to a device or FIFO; for a symlink to a regular
	 * file it is what a shell's '>' does. */
	int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY;
	int fd = open(o->path, flags | (nonblock ? O_NONBLOCK : 0), 0666);
	if (fd < 0)
		return -errno;
	if (nonblock) {
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0)
			fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	}
	o->fd = fd;
	return 0;
}

int safe_out__commit(struct safe_out *o, bool keep_old)
{
	if (o->committed || o->through) {
		o->committed = true;
		return 0;
	}
	struct stat st;
	if (keep_old && lstat(o->path, &st) == 0 && S_ISREG(st.st_mode)) {
		struct buf old;
		buf__init(&old);
		buf__printf(&old, "%s.old", o->path);
		int rc = rename(o->path, buf__cstr(&old)) < 0 ? -errno : 0;
		buf__release(&old);
		if (rc < 0)
			return rc;
	}
	if (rename(o->tmp, o->path) < 0)
		return -errno;
	o->committed = true;
	return 0;
}

int safe_out__close(struct safe_out *o)
{
	int rc = 0;
	if (o->fd >= 0 && close(o->fd) < 0)
		rc = -errno;
	o->fd = -1;
	if (o->tmp && !o->committed)
		unlink(o->tmp); /* ours: created O_EXCL above */
	free(o->tmp);
	free(o->path);
	o->tmp = o->path = NULL;
	return rc;
}

int remove_own_dir(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	struct stat st;
	if (fstat(dfd, &st) < 0 || st.st_uid != geteuid()) {
		close(dfd);
		return -EPERM;
	}
	int dup_fd = dup(dfd);
	DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dfd, e->d_name, 0); /* a symlink is removed, never followed */
		closedir(d);
	} else if (dup_fd >= 0) {
		close(dup_fd);
	}
	close(dfd);
	return rmdir(dir) < 0 ? -errno : 0;
}
