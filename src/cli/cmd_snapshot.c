/* kiln snapshot PID [-o FILE]: ask the recorder of a program running under
 * `kiln record --heap` to write that process's live heap, now. The program's
 * environment names the recorder's control socket (KILN_CTL). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "cli/cli.h"

#define CMD "snapshot"

static void help(void)
{
	printf("usage: kiln snapshot PID [-o FILE]\n\n"
	       "Write a heap snapshot of PID, a program (or a child of one) running under\n"
	       "`kiln record --heap`. Prints the file written (default kiln-PID-N.snap).\n");
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
		if (!strncmp(env + i, "KILN_CTL=", 9))
			found = xstrdup(env + i + 9);
	free(env);
	*err = 0;
	return found;
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
	if (!ctl) {
		if (err)
			return cli__error(CMD, "cannot read the environment of pid %ld: %s", pid, strerror(err));
		return cli__error(CMD, "pid %ld is not running under `kiln record --heap`", pid);
	}
	char def[PATH_MAX], abs[2 * PATH_MAX + 2];
	if (!output) {
		for (int i = 1; i < 100000; i++) {
			snprintf(def, sizeof(def), "kiln-%ld-%d.snap", pid, i);
			if (access(def, F_OK) != 0)
				break;
		}
		output = def;
	}
	if (output[0] != '/') {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof(cwd)))
			return cli__error(CMD, "getcwd: %s", strerror(errno));
		snprintf(abs, sizeof(abs), "%s/%s", cwd, output);
	} else {
		snprintf(abs, sizeof(abs), "%s", output);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	size_t len = strlen(ctl);
	if (len > sizeof(a.sun_path) - 2)
		len = sizeof(a.sun_path) - 2;
	memcpy(a.sun_path + 1, ctl, len);
	free(ctl);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)) < 0) {
		if (fd >= 0)
			close(fd);
		return cli__error(CMD, "the kiln recorder of pid %ld is gone (the recording has ended)", pid);
	}
	char req[2 * PATH_MAX + 64];
	snprintf(req, sizeof(req), "snapshot %ld %s\n", pid, abs);
	write_full(fd, req, strlen(req));
	char reply[PATH_MAX + 64];
	size_t n = 0;
	struct pollfd p = {fd, POLLIN, 0};
	while (n < sizeof(reply) - 1 && poll(&p, 1, 30000) > 0) {
		ssize_t k = read(fd, reply + n, sizeof(reply) - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	reply[n] = 0;
	reply[strcspn(reply, "\n")] = 0;
	if (strncmp(reply, "ok ", 3))
		return cli__error(CMD, "%s", n ? reply : "no answer from the recorder");
	printf("%s\n", output);
	return 0;
}
