/* Helpers shared by the subcommands (see cli.h). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli/cli.h"
#include "kiln/kiln.h"

static void vmsg(const char *cmd, const char *fmt, va_list ap)
{
	fprintf(stderr, "kiln %s: ", cmd);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

int cli__usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(cmd, fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try 'kiln %s --help'.\n", cmd);
	return KILN_EXIT_USAGE;
}

int cli__error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(cmd, fmt, ap);
	va_end(ap);
	return KILN_EXIT_ERROR;
}

int cli__private_dir(const char *cmd, const char *name, char *dir, size_t n)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, n, "%s/kiln-%s.XXXXXX", tmp && tmp[0] == '/' ? tmp : "/tmp", name);
	if (!mkdtemp(dir))
		return cli__error(cmd, "cannot make a private folder in %s: %s", tmp ? tmp : "/tmp", strerror(errno));
	return 0;
}

void cli__warn(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "kiln %s: warning: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

bool cli__parse_long(const char *s, long lo, long hi, long *out)
{
	if (!s || !*s)
		return false;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

bool cli__parse_double(const char *s, double lo, double hi, double *out)
{
	if (!s || !*s)
		return false;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

bool cli__parse_bytes(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	if (!s || *s < '0' || *s > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (shift && (!strcmp(end, "iB") || !strcmp(end, "B")))
		end += strlen(end);
	if (errno || *end || v > (hi >> shift) || (v << shift) < lo)
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

void view_opts__init(struct view_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->by = BY_FUNCTION;
	o->limit = 25;
	o->pid = o->tid = -1;
}

/* "FROM..TO", "FROM..", "..TO": seconds, 0 <= FROM <= TO. */
static bool parse_time_range(const char *arg, double *from, double *to)
{
	const char *dots = strstr(arg, "..");
	if (!dots)
		return false;
	char a[64], b[64];
	size_t la = (size_t)(dots - arg), lb = strlen(dots + 2);
	if (la >= sizeof(a) || lb >= sizeof(b))
		return false;
	memcpy(a, arg, la);
	a[la] = 0;
	memcpy(b, dots + 2, lb + 1);
	char *end;
	*from = 0;
	*to = 1e18;
	if (la) {
		*from = strtod(a, &end);
		if (*end || end == a || !(*from >= 0 && *from < 1e15))
			return false;
	}
	if (lb) {
		*to = strtod(b, &end);
		if (*end || end == b || !(*to >= 0 && *to < 1e15))
			return false;
	}
	return *from <= *to;
}

int view_opts__parse(struct view_opts *o, const char *cmd, int c, const char *arg)
{
	long v;
	switch (c) {
	case OPT_METRIC:
		if (kiln_metric__parse(arg) < 0) {
			cli__usage(cmd, "unknown metric '%s' (cpu, wall, alloc_bytes, alloc_count, leak_bytes, "
					"leak_count, peak_bytes, temp_count, live_bytes, live_count)", arg);
			return -1;
		}
		o->metric_name = arg;
		return 1;
	case OPT_BY:
		if ((o->by = by__parse(arg)) < 0) {
			cli__usage(cmd, "--by takes function, line, file, lib, stack, process, task or state, not '%s'", arg);
			return -1;
		}
		return 1;
	case OPT_SORT:
		if (strcmp(arg, "self") && strcmp(arg, "total")) {
			cli__usage(cmd, "--sort takes self or total, not '%s'", arg);
			return -1;
		}
		o->sort_self = !strcmp(arg, "self");
		return 1;
	case OPT_LIMIT:
		if (!cli__parse_long(arg, 0, INT_MAX, &v)) {
			cli__usage(cmd, "--limit takes a whole number >= 0 (0: no limit), not '%s'", arg);
			return -1;
		}
		o->limit = v;
		return 1;
	case OPT_PID:
	case OPT_TID:
		if (!cli__parse_long(arg, 1, INT_MAX, &v)) {
			cli__usage(cmd, "--%s takes a positive id, not '%s'", c == OPT_PID ? "pid" : "tid", arg);
			return -1;
		}
		if (c == OPT_PID)
			o->pid = v;
		else
			o->tid = v;
		return 1;
	case OPT_JSON:
		o->json = true;
		return 1;
	case OPT_THREADS:
		o->threads = true;
		return 1;
	case OPT_ALLFRAMES:
		o->all_frames = true;
		return 1;
	case OPT_PYONLY:
		o->python_only = true;
		return 1;
	case OPT_INVERTED:
		o->inverted = true;
		return 1;
	case OPT_RAW:
		o->raw = true;
		return 1;
	case OPT_NORMALIZE:
		o->normalize = true;
		return 1;
	case OPT_FORMAT:
		o->format = arg;
		return 1;
	case OPT_TITLE:
		o->title = arg;
		return 1;
	case OPT_TIME: {
		double from, to;
		if (!parse_time_range(arg, &from, &to)) {
			cli__usage(cmd, "--time takes FROM..TO in seconds from the recording's start (either may be left "
					"out: 1.5.., ..2), FROM <= TO, not '%s'", arg);
			return -1;
		}
		bool diff = !strcmp(cmd, "diff");
		if (o->time_new_set || (o->time_set && !diff)) {
			cli__usage(cmd, "--time given more than %s", diff ? "twice (BASE's, NEW's)" : "once");
			return -1;
		}
		if (o->time_set) { /* diff: a second --time is NEW's stretch */
			o->time_new_from = from;
			o->time_new_to = to;
			o->time_new_set = true;
		} else {
			o->time_from = from;
			o->time_to = to;
			o->time_set = true;
		}
		return 1;
	}
	case 'o':
		o->output = arg;
		return 1;
	default:
		return 0;
	}
}

int view_opts__metric(const struct view_opts *o, const char *cmd, const struct profile *p)
{
	if (!o->metric_name)
		return profile__default_metric(p);
	return kiln_metric__parse(o->metric_name);
}

int view_opts__check_ids(const struct view_opts *o, const char *cmd, const char *path, const struct profile *p)
{
	if (o->pid >= 0 && !profile__process(p, (uint32_t)o->pid)) {
		bool any = false;
		for (size_t i = 0; i < p->ncells && !any; i++)
			any = p->cells[i].pid == (uint64_t)o->pid;
		if (!any)
			return cli__error(cmd, "%s: no process %lld in it (%zu process%s: see --by process)", path,
					  (long long)o->pid, p->nprocs, p->nprocs == 1 ? "" : "es"), -1;
	}
	if (o->tid >= 0) {
		bool any = false;
		for (size_t i = 0; i < p->nthreads && !any; i++)
			any = p->threads[i].tid == (uint64_t)o->tid && (o->pid < 0 || p->threads[i].pid == (uint64_t)o->pid);
		for (size_t i = 0; i < p->ncells && !any; i++)
			any = p->cells[i].tid == (uint64_t)o->tid;
		if (!any)
			return cli__error(cmd, "%s: no thread %lld in it", path, (long long)o->tid), -1;
	}
	return 0;
}

int view_opts__apply(struct view_opts *o, const char *cmd, const char *path, struct profile *p)
{
	p->python_only = o->python_only;
	if (!o->time_set)
		return 0;
	int m = o->metric_name ? kiln_metric__parse(o->metric_name) : profile__default_metric(p);
	if (!o->metric_name && !profile__time_metric(m)) /* leak_*: what is live at the stretch's end */
		m = m == KM_LEAK_COUNT ? KM_LIVE_COUNT : KM_LIVE_BYTES;
	if (!profile__time_metric(m))
		return cli__usage(cmd, "--time shows what a stretch of time holds: cpu, wall, alloc_bytes, alloc_count, "
				       "or live_bytes, live_count (live at its end), not %s", kiln_metric__name(m));
	char err[256];
	double from = o->time_from, to = o->time_to; /* widened in p, not here: diff cuts a second file */
	if (profile__time_range(p, &from, &to, err, sizeof(err)) < 0)
		return cli__error(cmd, "%s: --time: %s", path, err);
	o->metric_name = kiln_metric__name(m);
	return 0;
}

int cli__load(const char *cmd, const char *path, struct profile *p)
{
	char err[512];
	if (profile__load(p, path, err, sizeof(err)) < 0) {
		cli__error(cmd, "%s: %s", path, err);
		profile__release(p);
		return -1;
	}
	if (p->warning[0])
		cli__warn(cmd, "%s: %s", path, p->warning);
	return 0;
}

bool cli__is_stdout(const char *path)
{
	if (!path || !strcmp(path, "-"))
		return true;
	struct stat so, po;
	return fstat(STDOUT_FILENO, &so) == 0 && stat(path, &po) == 0 && so.st_dev == po.st_dev &&
	       so.st_ino == po.st_ino && !S_ISCHR(so.st_mode);
}

int out__open(struct out *o, const char *cmd, const char *path)
{
	memset(o, 0, sizeof(*o));
	if (!path || !strcmp(path, "-")) {
		o->f = stdout;
		return 0;
	}
	int rc = safe_out__prepare(&o->so, path);
	if (rc == 0)
		rc = safe_out__open_through(&o->so, false);
	if (rc == 0 && !(o->f = fdopen(o->so.fd, "w")))
		rc = -errno;
	if (rc < 0) {
		cli__error(cmd, "cannot write %s: %s", path, strerror(-rc));
		safe_out__close(&o->so);
		return -1;
	}
	o->so.fd = -1; /* the FILE owns it now */
	return 0;
}

int out__close(struct out *o, const char *cmd, bool ok)
{
	if (o->f == stdout) {
		/* a reader that went away (| head) is no error; main checks the
		 * rest before exiting */
		if (!ok && ferror(stdout) && errno == EPIPE)
			return 0;
		return ok ? 0 : 1;
	}
	const char *path = o->so.path;
	/* a write error is said here, whoever noticed it first (an exporter
	 * returns -1 on ferror without a word) */
	errno = 0;
	bool werr = fflush(o->f) != 0 || ferror(o->f);
	int e = errno ? errno : EIO;
	if (werr && !errno && !o->so.through) {
		/* the write failed earlier and stdio kept no errno: one more byte
		 * into the temporary (discarded) tells why (a full disk, say) */
		char c = 0;
		if (write(fileno(o->f), &c, 1) < 0)
			e = errno;
	}
	if (fclose(o->f) != 0 && !werr) {
		werr = true;
		e = errno;
	}
	if (werr) {
		cli__error(cmd, "cannot write %s: %s", path, strerror(e));
		ok = false;
	}
	int rc;
	if (ok && (rc = safe_out__commit(&o->so, false)) < 0) {
		cli__error(cmd, "cannot write %s: %s", path, strerror(-rc));
		ok = false;
	}
	safe_out__close(&o->so);
	return ok ? 0 : 1;
}
