/* The heap channel and the snapshot socket (see channel.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "collect/channel.h"
#include "util/safefile.h"

#define MAX_CONNS 256
#define MSGS_PER_POLL 4096

struct conn {
	int fd;
	uid_t uid;
	bool spoke;        /* sent a first message */
	uint64_t deadline; /* of a snapshot request being answered, or 0 */
	struct buf out;
	size_t sent, head_len; /* head_len: the "ok SIZE" message that leads a reply */
	bool close_after;
};

struct channel {
	char dir[128], sock_path[160];
	int listen_fd;
	int pair[2]; /* [0] ours, [1] the program's */
	ino_t child_ino;
	struct conn *conns;
	size_t nconns, cconns;
};

static bool own_private_dir(const char *dir)
{
	struct stat st;
	return lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & 0777) == 0700;
}

struct channel *channel__new(void)
{
	struct channel *ch = xcalloc(1, sizeof(*ch));
	ch->listen_fd = ch->pair[0] = ch->pair[1] = -1;
	static const char *const bases[] = {"/dev/shm", "/tmp"};
	int e = 0;
	for (size_t i = 0; i < ARRAY_SIZE(bases) && !ch->dir[0]; i++) {
		snprintf(ch->dir, sizeof(ch->dir), "%s/kiln-XXXXXX", bases[i]);
		if (!mkdtemp(ch->dir) || !own_private_dir(ch->dir)) {
			e = errno ? errno : EPERM;
			ch->dir[0] = 0;
		}
	}
	if (!ch->dir[0])
		goto fail;
	snprintf(ch->sock_path, sizeof(ch->sock_path), "%s/ctl", ch->dir);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	memcpy(a.sun_path, ch->sock_path, strlen(ch->sock_path) + 1);
	ch->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (ch->listen_fd < 0 || bind(ch->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(ch->listen_fd, 64) < 0)
		goto fail_errno;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ch->pair) < 0)
		goto fail_errno;
	fcntl(ch->pair[0], F_SETFL, O_NONBLOCK);
	int sz = 4 << 20;
	if (setsockopt(ch->pair[0], SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(ch->pair[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	struct stat st;
	if (fstat(ch->pair[1], &st) < 0)
		goto fail_errno;
	ch->child_ino = st.st_ino;
	return ch;
fail_errno:
	e = errno;
fail:
	channel__free(ch);
	errno = e;
	return NULL;
}

static void conn_close(struct channel *ch, size_t i)
{
	close(ch->conns[i].fd);
	buf__release(&ch->conns[i].out);
	ch->conns[i] = ch->conns[--ch->nconns];
}

void channel__free(struct channel *ch)
{
	if (!ch)
		return;
	while (ch->nconns)
		conn_close(ch, 0);
	free(ch->conns);
	if (ch->listen_fd >= 0)
		close(ch->listen_fd);
	for (int i = 0; i < 2; i++)
		if (ch->pair[i] >= 0)
			close(ch->pair[i]);
	if (ch->dir[0])
		remove_own_dir(ch->dir);
	free(ch);
}

const char *channel__dir(const struct channel *ch)
{
	return ch->dir;
}

const char *channel__sock_path(const struct channel *ch)
{
	return ch->sock_path;
}

int channel__child_fd(const struct channel *ch)
{
	return ch->pair[1];
}

ino_t channel__child_ino(const struct channel *ch)
{
	return ch->child_ino;
}

void channel__adopt(struct channel *ch, int fd)
{
	for (int i = 0; i < 2; i++)
		if (ch->pair[i] >= 0)
			close(ch->pair[i]);
	ch->pair[0] = fd;
	ch->pair[1] = -1;
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	int sz = 4 << 20;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

void channel__close_child_end(struct channel *ch)
{
	if (ch->pair[1] >= 0)
		close(ch->pair[1]);
	ch->pair[1] = -1;
}

/* One message; 1 read, 0 nothing waiting, -1 the peer is gone. fd[0] and
 * fd[1] get the first two descriptors passed (others are closed), or -1. */
static int recv_one(int sock, void *buf, size_t cap, ssize_t *len, int fd[2])
{
	union {
		char b[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {buf, cap};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b)};
	fd[0] = fd[1] = -1;
	ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (n == 0)
		return -1;
	int got = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (got < 2)
				fd[got++] = f;
			else
				close(f);
		}
	}
	*len = (mh.msg_flags & MSG_TRUNC) ? -1 : n;
	return 1;
}

/* A shim message: ring or loss; anything else is dropped. */
static void shim_msg(const struct channel_ops *ops, const void *buf, ssize_t len, const int fd[2])
{
	struct kiln_msg m;
	if (len == (ssize_t)sizeof(m)) {
		memcpy(&m, buf, sizeof(m));
		if (m.magic == KILN_MSG_MAGIC && m.version == KILN_RING_VERSION) {
			if (m.type == KILN_MSG_RING && fd[0] >= 0) {
				ops->ring(ops->ctx, &m, fd[0], fd[1]);
				return;
			}
			if (m.type == KILN_MSG_LOSS && ops->loss)
				ops->loss(ops->ctx, &m);
		}
	}
	for (int i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
}

static void snapshot_request(struct conn *c, const struct channel_ops *ops, const char *req,
			     ssize_t len)
{
	char text[64];
	size_t n = (size_t)len < sizeof(text) - 1 ? (size_t)len : sizeof(text) - 1;
	memcpy(text, req, n);
	text[n] = 0;
	unsigned long pid;
	char extra;
	c->deadline = now_ns() + KILN_SNAPSHOT_DEADLINE_NS;
	c->close_after = true;
	c->out.len = 0;
	c->sent = 0;
	if (c->uid != geteuid() && c->uid != 0) {
		buf__printf(&c->out, "error permission denied: the recording belongs to another user");
		return;
	}
	if (sscanf(text, "snapshot %lu%c", &pid, &extra) != 1 || !pid || pid > UINT32_MAX) {
		buf__printf(&c->out, "error bad request");
		return;
	}
	struct buf snap;
	buf__init(&snap);
	int rc = ops->snapshot ? ops->snapshot(ops->ctx, (uint32_t)pid, &snap) : -ENOTSUP;
	if (rc < 0) {
		buf__printf(&c->out, "error %s", rc == -ESRCH ? "that process is not recorded here" : strerror(-rc));
	} else {
		/* "ok SIZE" alone in the first message, then the bytes */
		buf__printf(&c->out, "ok %zu", snap.len);
		c->head_len = c->out.len;
		buf__put(&c->out, snap.data, snap.len);
	}
	c->spoke = true;
	buf__release(&snap);
}

/* Send what is pending, a message at a time, without blocking. False when
 * the connection is finished (sent or broken). */
static bool conn_send(struct conn *c)
{
	while (c->sent < c->out.len) {
		size_t n = c->out.len - c->sent < KILN_SNAPSHOT_CHUNK ? c->out.len - c->sent : KILN_SNAPSHOT_CHUNK;
		if (c->sent == 0 && c->head_len)
			n = c->head_len; /* the header alone */
		ssize_t w = send(c->fd, c->out.data + c->sent, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0)
			return errno == EAGAIN || errno == EINTR;
		c->sent += (size_t)w;
	}
	return false;
}

void channel__poll(struct channel *ch, const struct channel_ops *ops)
{
	static char buf[512];
	ssize_t len;
	int fd[2];
	/* the launched program and its descendants */
	for (int i = 0; i < MSGS_PER_POLL && ch->pair[0] >= 0; i++) {
		int rc = recv_one(ch->pair[0], buf, sizeof(buf), &len, fd);
		if (rc <= 0)
			break;
		shim_msg(ops, buf, len, fd);
	}
	/* new connections */
	for (;;) {
		int c = accept4(ch->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c < 0)
			break;
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		if (ch->nconns >= MAX_CONNS || getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0) {
			close(c);
			continue;
		}
		ARR_GROW(ch->conns, ch->cconns, ch->nconns + 1);
		struct conn *k = &ch->conns[ch->nconns++];
		memset(k, 0, sizeof(*k));
		k->fd = c;
		k->uid = cr.uid;
		buf__init(&k->out);
	}
	uint64_t now = now_ns();
	for (size_t i = 0; i < ch->nconns;) {
		struct conn *c = &ch->conns[i];
		bool keep = true;
		if (!c->close_after) {
			for (int m = 0; m < 64 && !c->close_after; m++) {
				int rc = recv_one(c->fd, buf, sizeof(buf), &len, fd);
				if (rc == 0)
					break;
				if (rc < 0) {
					keep = false;
					break;
				}
				if (len >= 9 && !memcmp(buf, "snapshot ", 9) && !c->spoke) {
					for (int f = 0; f < 2; f++)
						if (fd[f] >= 0)
							close(fd[f]);
					snapshot_request(c, ops, buf, len);
				} else {
					c->spoke = true;
					shim_msg(ops, buf, len, fd);
				}
			}
		}
		if (keep && c->close_after)
			keep = conn_send(c) && now < c->deadline;
		if (keep)
			i++;
		else
			conn_close(ch, i);
	}
}

void channel__remove_stale(void)
{
	DIR *d = opendir("/dev/shm");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		char dir[300];
		int pid, n;
		bool old_style = sscanf(e->d_name, "kiln-%d-%d", &pid, &n) == 2;
		if (strncmp(e->d_name, "kiln-", 5) || (!old_style && strlen(e->d_name) != 11))
			continue;
		snprintf(dir, sizeof(dir), "/dev/shm/%s", e->d_name);
		if (!own_private_dir(dir))
			continue; /* another user's, or not a folder (a symlink): never touched */
		if (old_style) {
			if (pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH)
				continue;
		} else {
			/* alive while its recorder answers on ctl */
			struct sockaddr_un a = {.sun_family = AF_UNIX};
			if (strlen(dir) + 5 > sizeof(a.sun_path))
				continue;
			memcpy(a.sun_path, dir, strlen(dir));
			memcpy(a.sun_path + strlen(dir), "/ctl", 5);
			int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
			bool alive = s >= 0 && connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
			struct stat st;
			if (!alive && errno == ENOENT && lstat(dir, &st) == 0 && st.st_mtime + 60 > time(NULL))
				alive = true; /* a recorder starting up: its socket is not there yet */
			if (s >= 0)
				close(s);
			if (alive)
				continue;
		}
		remove_own_dir(dir);
	}
	closedir(d);
}
