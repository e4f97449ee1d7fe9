/* kiln snapshot PID [-o FILE]: ask the recorder of a program running under
 * `kiln record --heap` for that process's live heap, now, and write it.
 *
 *   client ── "snapshot PID" ──► recorder's socket (KILN_CTL, in its private
 *                                0700 folder; it checks our uid: its own or root)
 *          ◄── "ok SIZE", then SIZE bytes (or "error ...")
 *   client writes FILE itself, with its own rights (util/safefile.h)
 *
 * The program's environment names the socket (for a program kiln attached
 * to, the attached shim's kiln_ctl does: an environment cannot change once
 * a program runs), and the program may lie: the
 * client talks only to a server running as its own user or root, bounds
 * what it accepts, and gives up after a deadline. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#include "cli/cli.h"
#include "collect/channel.h"
#include "collect/inject.h"

#define CMD "snapshot"

static void help(void)
{
	printf("usage: kiln snapshot PID [-o FILE]\n\n"
	       "Write a heap snapshot of PID, a program (or a child of one) running under\n"
	       "`kiln record --heap`. Prints the file written (default kiln-PID-N.snap);\n"
	       "-o - writes it to standard output.\n");
}

static char *find_ctl(long pid, int *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/environ", pid);
	size_t len;
	char *env = read_small_file(path, &len);
	if (!env) {
		*err = errno;
		return NULL;
	}
	char *found = NULL;
	for (size_t i = 0; i < len; i += strlen(env + i) + 1)
		if (!strncmp(env + i, "KILN_CTL=", 9)) {
			free(found);
			found = xstrdup(env + i + 9);
		}
	free(env);
	*err = 0;
	return found;
}

/* An attached shim's kiln_ctl (collect/heapattach.h), or NULL. */
static char *find_attached_ctl(long pid)
{
	uint64_t at;
	if (inject__symbol((pid_t)pid, "libkiln_shim", "kiln_ctl", &at, NULL) < 0)
		return NULL;
	char path[256];
	struct iovec l = {path, sizeof(path)}, r = {(void *)(uintptr_t)at, sizeof(path)};
	if (process_vm_readv((pid_t)pid, &l, 1, &r, 1, 0) != (ssize_t)sizeof(path))
		return NULL;
	path[sizeof(path) - 1] = 0;
	return path[0] == '/' ? xstrdup(path) : NULL;
}

/* Connect to the recorder's socket, if it runs as us or root. */
static int connect_ctl(const char *path, long pid)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (path[0] != '/' || strlen(path) >= sizeof(a.sun_path)) {
		cli__error(CMD, "pid %ld names no usable kiln socket", pid);
		return -1;
	}
	memcpy(a.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		if (e == EACCES || e == EPERM)
			cli__error(CMD, "permission denied: the recording of pid %ld belongs to another user", pid);
		else
			cli__error(CMD, "the kiln recorder of pid %ld is gone (the recording has ended)", pid);
		return -1;
	}
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 || (cr.uid != geteuid() && cr.uid != 0)) {
		close(fd);
		cli__error(CMD, "pid %ld names a socket served by another user (uid %u), not a kiln recorder of "
				"yours: refused", pid, (unsigned)cr.uid);
		return -1;
	}
	return fd;
}

/* The reply: "ok SIZE" then SIZE bytes, within the deadline. */
static int receive(int fd, struct buf *out, long pid)
{
	uint64_t deadline = now_ns() + KILN_SNAPSHOT_DEADLINE_NS;
	char *msg = xmalloc(KILN_SNAPSHOT_CHUNK + 1);
	unsigned long long want = 0;
	bool head = false;
	int rc = -1;
	for (;;) {
		uint64_t now = now_ns();
		struct pollfd p = {fd, POLLIN, 0};
		if (now >= deadline || poll(&p, 1, (int)((deadline - now) / 1000000) + 1) <= 0) {
			cli__error(CMD, "no answer from the recorder of pid %ld in time", pid);
			break;
		}
		ssize_t n = recv(fd, msg, KILN_SNAPSHOT_CHUNK, 0);
		if (n <= 0) {
			cli__error(CMD, "the recorder of pid %ld closed the connection before the snapshot was whole", pid);
			break;
		}
		if (!head) {
			msg[n] = 0;
			char extra;
			if (!strncmp(msg, "error ", 6)) {
				cli__error(CMD, "pid %ld: %s", pid, msg + 6);
				break;
			}
			if (sscanf(msg, "ok %llu%c", &want, &extra) != 1 || want > KILN_SNAPSHOT_MAX) {
				cli__error(CMD, "pid %ld: the recorder's answer is not understood", pid);
				break;
			}
			head = true;
		} else {
			if ((unsigned long long)(out->len + (size_t)n) > want) {
				cli__error(CMD, "pid %ld: the recorder sent more than it announced", pid);
				break;
			}
			buf__put(out, msg, (size_t)n);
		}
		if (head && out->len == want) {
			rc = 0;
			break;
		}
	}
	free(msg);
	return rc;
}

int cmd_snapshot(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	const char *output = NULL;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		if (c == 'o')
			output = optarg;
		else if (c == 'h')
			return help(), 0;
		else
			return cli__usage(CMD, "unknown option or missing value");
	}
	if (optind >= argc)
		return cli__usage(CMD, "no PID given");
	long pid;
	if (!cli__parse_long(argv[optind], 1, INT_MAX, &pid))
		return cli__usage(CMD, "PID must be a positive number, not '%s'", argv[optind]);
	if (optind + 1 < argc)
		return cli__usage(CMD, "one PID at a time");
	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return cli__error(CMD, "no process with pid %ld", pid);
	int err;
	char *ctl = find_ctl(pid, &err);
	if (!ctl)
		ctl = find_attached_ctl(pid);
	if (!ctl) {
		if (err == EACCES || err == EPERM)
			return cli__error(CMD, "permission denied: pid %ld belongs to another user", pid);
		if (err)
			return cli__error(CMD, "cannot read the environment of pid %ld: %s", pid, strerror(err));
		return cli__error(CMD, "pid %ld is not running under `kiln record --heap`", pid);
	}
	int fd = connect_ctl(ctl, pid);
	free(ctl);
	if (fd < 0)
		return KILN_EXIT_ERROR;
	char req[64];
	int n = snprintf(req, sizeof(req), "snapshot %ld", pid);
	struct buf snap;
	buf__init(&snap);
	int rc = send(fd, req, (size_t)n, MSG_NOSIGNAL) == n ? receive(fd, &snap, pid)
							      : cli__error(CMD, "cannot talk to the recorder of pid %ld", pid);
	close(fd);
	if (rc) {
		buf__release(&snap);
		return KILN_EXIT_ERROR;
	}
	char def[64];
	if (!output) {
		for (int i = 1; i < 100000; i++) {
			snprintf(def, sizeof(def), "kiln-%ld-%d.snap", pid, i);
			if (access(def, F_OK) != 0)
				break;
		}
		output = def;
	}
	bool to_stdout = cli__is_stdout(output);
	struct out o;
	if (out__open(&o, CMD, output) < 0) {
		buf__release(&snap);
		return KILN_EXIT_ERROR;
	}
	bool ok = fwrite(snap.data, 1, snap.len, o.f) == snap.len;
	buf__release(&snap);
	if (out__close(&o, CMD, ok))
		return KILN_EXIT_ERROR;
	if (!to_stdout) /* the snapshot itself went to stdout */
		printf("%s\n", output);
	return 0;
}
