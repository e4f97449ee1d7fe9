/* Leaf helpers (see util.h): memory, buffers, bounded reading, small
 * files, paths; the maps are map.c's. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "util/util.h"

static void oom(void)
{
	static const char msg[] = "kiln: error: out of memory\n";
	ssize_t r = write(2, msg, sizeof(msg) - 1);
	(void)r;
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);
	if (!p)
		oom();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom();
	return p;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

void *xmemdup(const void *p, size_t n)
{
	void *q = xmalloc(n);
	if (n)
		memcpy(q, p, n);
	return q;
}

void grow_array(void **arr, size_t *cap, size_t need, size_t sz)
{
	if (need <= *cap)
		return;
	size_t c = *cap ? *cap : 8;
	while (c < need)
		c *= 2;
	*arr = xrealloc(*arr, c * sz);
	memset((char *)*arr + *cap * sz, 0, (c - *cap) * sz);
	*cap = c;
}

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t realtime_at(uint64_t mono)
{
	uint64_t real = realtime_ns(), now = now_ns();
	return mono < now ? real - (now - mono) : real;
}

void buf__init(struct buf *b)
{
	memset(b, 0, sizeof(*b));
}

void buf__release(struct buf *b)
{
	free(b->data);
	buf__init(b);
}

void buf__reserve(struct buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t c = b->cap ? b->cap : 256;
	while (c < b->len + extra + 1)
		c *= 2;
	b->data = xrealloc(b->data, c);
	b->cap = c;
}

void buf__put(struct buf *b, const void *p, size_t n)
{
	buf__reserve(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
}

void buf__u8(struct buf *b, uint8_t v) { buf__put(b, &v, 1); }
void buf__u16(struct buf *b, uint16_t v) { buf__put(b, &v, 2); }
void buf__u32(struct buf *b, uint32_t v) { buf__put(b, &v, 4); }
void buf__u64(struct buf *b, uint64_t v) { buf__put(b, &v, 8); }

void buf__str(struct buf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n > 65535)
		n = 65535;
	buf__u16(b, (uint16_t)n);
	buf__put(b, s, n);
}

void buf__printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf__reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

const char *buf__cstr(struct buf *b)
{
	buf__reserve(b, 1);
	b->data[b->len] = 0;
	return (const char *)b->data;
}

void cursor__init(struct cursor *c, const void *p, size_t n)
{
	c->p = p;
	c->end = c->p + n;
	c->bad = false;
}

static bool cursor_take(struct cursor *c, void *out, size_t n)
{
	if (c->bad || (size_t)(c->end - c->p) < n) {
		c->bad = true;
		memset(out, 0, n);
		return false;
	}
	memcpy(out, c->p, n);
	c->p += n;
	return true;
}

bool cursor__u8(struct cursor *c, uint8_t *v) { return cursor_take(c, v, 1); }
bool cursor__u16(struct cursor *c, uint16_t *v) { return cursor_take(c, v, 2); }
bool cursor__u32(struct cursor *c, uint32_t *v) { return cursor_take(c, v, 4); }
bool cursor__u64(struct cursor *c, uint64_t *v) { return cursor_take(c, v, 8); }

/* A u16-length string's bytes, bounds-checked; NULL (and c->bad) if short. */
static const char *cursor_str_bytes(struct cursor *c, uint16_t *n)
{
	if (!cursor__u16(c, n))
		return NULL;
	if ((size_t)(c->end - c->p) < *n) {
		c->bad = true;
		return NULL;
	}
	const char *s = (const char *)c->p;
	c->p += *n;
	return s;
}

char *cursor__str(struct cursor *c)
{
	uint16_t n;
	const char *s = cursor_str_bytes(c, &n);
	return s ? xstrndup(s, n) : NULL;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0; /* overlong, surrogate, beyond Unicode */
	return len;
}

char *str_clean(const char *in, size_t n)
{
	const unsigned char *s = (const unsigned char *)in;
	struct buf b;
	buf__init(&b);
	for (size_t i = 0; i < n && s[i];) {
		size_t k = utf8_len(s + i, n - i);
		if (k == 1 && (s[i] < 0x20 || s[i] == 0x7f))
			k = 0; /* a control character: shown, never obeyed */
		if (k && !(k == 1 && s[i] == '\\')) {
			buf__put(&b, s + i, k);
			i += k;
		} else if (k) {
			buf__put(&b, "\\\\", 2); /* a backslash itself, so \xHH is unambiguous */
			i++;
		} else {
			buf__printf(&b, "\\x%02x", s[i]);
			i++;
		}
	}
	buf__cstr(&b);
	return (char *)b.data;
}

char *cursor__text(struct cursor *c)
{
	uint16_t n;
	const char *s = cursor_str_bytes(c, &n);
	return s ? str_clean(s, n) : NULL;
}

size_t cursor__left(const struct cursor *c)
{
	return c->bad ? 0 : (size_t)(c->end - c->p);
}

int write_full(int fd, const void *p, size_t n)
{
	const char *s = p;
	while (n) {
		ssize_t w = write(fd, s, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

char *read_small_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct buf b;
	buf__init(&b);
	for (;;) {
		buf__reserve(&b, 4096);
		ssize_t r = read(fd, b.data + b.len, b.cap - b.len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r < 0) {
				int e = errno;
				close(fd);
				buf__release(&b);
				errno = e;
				return NULL;
			}
			break;
		}
		b.len += (size_t)r;
	}
	close(fd);
	buf__cstr(&b);
	if (len)
		*len = b.len;
	return (char *)b.data;
}

bool proc_map__parse(const char *line, struct proc_map *m)
{
	int pos = 0;
	unsigned long long lo, hi, off, ino;
	if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu%n", &lo, &hi, m->perms, &off, &m->dev_major, &m->dev_minor,
		   &ino, &pos) < 7 || hi <= lo)
		return false;
	m->lo = lo;
	m->hi = hi;
	m->off = off;
	m->ino = ino;
	const char *p = line + pos;
	while (*p == ' ')
		p++;
	m->path = p;
	return true;
}

int proc_map__open(int pid, const char *path, uint64_t lo, uint64_t hi, uint64_t ino)
{
	char alt[128];
	snprintf(alt, sizeof(alt), "/proc/%d/map_files/%llx-%llx", pid, (unsigned long long)lo, (unsigned long long)hi);
	int fd = open(alt, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && path[0] == '/')
		fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (ino && st.st_ino != ino)) {
		close(fd);
		return -1;
	}
	return fd;
}

char proc_state(int pid, int tid)
{
	char path[96];
	if (tid > 0)
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
	else
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	char *st = read_small_file(path, NULL);
	if (!st)
		return 0;
	char *rp = strrchr(st, ')'); /* the name may hold spaces and ')' */
	char c = rp && rp[1] == ' ' ? rp[2] : 0;
	free(st);
	return c;
}

int proc_stat_scan(int pid, const char *fmt, ...)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	char *st = read_small_file(path, NULL);
	char *rp = st ? strrchr(st, ')') : NULL;
	int n = -1;
	if (rp) {
		va_list ap;
		va_start(ap, fmt);
		n = vsscanf(rp + 1, fmt, ap);
		va_end(ap);
	}
	free(st);
	return n;
}

/* The pid tracing pid (TracerPid), 0 when none; its comm in name. */
static int proc_tracer(int pid, char *name, size_t n)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	char *st = read_small_file(path, NULL);
	int tracer = 0;
	const char *t = st ? strstr(st, "\nTracerPid:") : NULL;
	if (t)
		tracer = atoi(t + 11);
	free(st);
	if (n)
		name[0] = 0;
	if (tracer > 0 && n) {
		snprintf(path, sizeof(path), "/proc/%d/comm", tracer);
		char *c = read_small_file(path, NULL);
		if (c) {
			c[strcspn(c, "\n")] = 0;
			snprintf(name, n, "%s", c);
			free(c);
		}
	}
	return tracer > 0 ? tracer : 0;
}

int proc_traced_why(int pid, char *out, size_t n)
{
	char name[64];
	int tracer = proc_tracer(pid, name, sizeof(name));
	if (tracer <= 0 || tracer == (int)getpid())
		return 0;
	snprintf(out, n,
		 "cannot attach to pid %d: it is already traced by pid %d%s%s%s; one tracer at a time: detach that "
		 "one first",
		 pid, tracer, name[0] ? " (" : "", name, name[0] ? ")" : "");
	return tracer;
}

void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char p[4200];
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(dir);
}

const char *path_base(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

bool path_is_python(const char *path)
{
	const char *b = path_base(path);
	return !strncmp(b, "python", 6) || !strncmp(b, "libpython", 9);
}

const char *fmt_bytes(char *out, size_t n, double v)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;
	double a = v < 0 ? -v : v;
	while (a >= 1024 && u < 4) {
		a /= 1024;
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, n, "%.0f %s", v, units[u]);
	else
		snprintf(out, n, "%.2f %s", v, units[u]);
	return out;
}
