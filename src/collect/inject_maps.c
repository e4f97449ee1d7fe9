/* The target's maps and symbols, for the injector (inject_int.h): files are
 * opened through /proc/PID/map_files (or by path with the mapping's inode
 * checked), symbol tables read with pread, every read bounded. */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include "collect/inject.h"
#include "collect/inject_int.h"
#include "symbols/elfsym.h"
#include "util/util.h"

/* ---- the target's maps (util's proc_map) ---- */

char *inject_read_maps(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	return read_small_file(path, NULL);
}

static int open_mapping(pid_t pid, const struct proc_map *m)
{
	return proc_map__open((int)pid, m->path, m->lo, m->hi, m->ino);
}

enum runtime_module inject_runtime_module(const char *path)
{
	const char *b = path_base(path);
	if (!strncmp(b, "libc.so", 7) || !strncmp(b, "libc-", 5))
		return RT_LIBC;
	if (!strncmp(b, "ld-linux", 8) || !strncmp(b, "ld-2.", 5))
		return RT_LD;
	return strstr(b, "libkiln_shim") ? RT_SHIM : RT_OTHER;
}

typedef bool (*map_pred)(const struct proc_map *m, const void *arg);

/* The symbol in the executable mappings that pred accepts: the first
 * readable one decides, or with every_image each is asked until one defines
 * it (its path into path, when given). */
static int symbol_where(pid_t pid, map_pred pred, const void *arg, const char *symbol, uint64_t *addr,
			uint64_t *size, bool every_image, char *path, size_t npath)
{
	char *text = inject_read_maps(pid);
	if (!text)
		return -errno;
	int rc = -ENOENT;
	char *save = NULL;
	/* each file once (its text may be mapped more than once), its symbol
	 * tables read with pread: a 1 GiB executable is never copied */
	uint64_t seen[64];
	size_t nseen = 0;
	for (char *line = strtok_r(text, "\n", &save); line && rc; line = strtok_r(NULL, "\n", &save)) {
		struct proc_map m;
		if (!proc_map__parse(line, &m) || m.perms[2] != 'x' || !pred(&m, arg))
			continue;
		bool again = false;
		for (size_t i = 0; i < nseen && !again; i++)
			again = seen[i] == m.ino;
		if (again)
			continue;
		if (nseen < 64)
			seen[nseen++] = m.ino;
		int fd = open_mapping(pid, &m);
		if (fd < 0)
			continue;
		uint64_t bias, v, sz;
		int b = elfsym__bias(fd, m.lo, m.off, &bias);
		if (b == 0 && elfsym__lookup(fd, symbol, &v, &sz) == 0) {
			*addr = v + bias;
			if (size)
				*size = sz;
			if (path)
				snprintf(path, npath, "%s", m.path);
			rc = 0;
		}
		close(fd);
		if (b != -ENOEXEC && !every_image)
			break;
	}
	free(text);
	return rc;
}

static bool by_name(const struct proc_map *m, const void *arg)
{
	const char *lib = arg;
	return m->path[0] == '/' && (!lib || strstr(path_base(m->path), lib));
}

int inject__symbol(pid_t pid, const char *lib, const char *symbol, uint64_t *addr, uint64_t *size)
{
	return symbol_where(pid, by_name, lib, symbol, addr, size, false, NULL, 0);
}

struct devino {
	dev_t dev;
	ino_t ino;
};

static bool by_ino(const struct proc_map *m, const void *arg)
{
	const struct devino *d = arg;
	return m->ino == d->ino && makedev(m->dev_major, m->dev_minor) == d->dev;
}

int inject__symbol_ino(pid_t pid, dev_t dev, ino_t ino, const char *symbol, uint64_t *addr)
{
	struct devino d = {dev, ino};
	return symbol_where(pid, by_ino, &d, symbol, addr, NULL, false, NULL, 0);
}

/* Whether two descriptors hold the same bytes. */
static bool same_bytes(int a, int b)
{
	struct stat sa, sb;
	if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0 || sa.st_size != sb.st_size)
		return false;
	char x[16384], y[16384];
	for (off_t off = 0; off < sa.st_size;) {
		ssize_t k = pread(a, x, sizeof(x), off);
		if (k <= 0 || pread(b, y, (size_t)k, off) != k || memcmp(x, y, (size_t)k))
			return false;
		off += k;
	}
	return true;
}

int inject__loaded_copy(pid_t pid, int fd, dev_t *dev, ino_t *ino)
{
	char *text = inject_read_maps(pid);
	if (!text)
		return -errno;
	int rc = -ENOENT;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct proc_map m;
		if (!proc_map__parse(line, &m) || m.perms[2] != 'x' || inject_runtime_module(m.path) != RT_SHIM)
			continue;
		int mf = open_mapping(pid, &m);
		bool same = mf >= 0 && same_bytes(mf, fd);
		if (mf >= 0)
			close(mf);
		if (same) {
			*dev = makedev(m.dev_major, m.dev_minor);
			*ino = (ino_t)m.ino;
			rc = 0;
			break;
		}
		rc = -EEXIST;
	}
	free(text);
	return rc;
}

static bool not_runtime(const struct proc_map *m, const void *arg)
{
	(void)arg;
	return m->path[0] == '/' && inject_runtime_module(m->path) == RT_OTHER;
}

bool inject__own_malloc(pid_t pid, char *path, size_t n)
{
	uint64_t a;
	return symbol_where(pid, not_runtime, NULL, "malloc", &a, NULL, true, path, n) == 0;
}

bool inject__dynamic(pid_t pid)
{
	char *text = inject_read_maps(pid);
	bool dyn = text && (strstr(text, "/ld-linux") || strstr(text, "/ld-2.") || strstr(text, "/ld64"));
	free(text);
	return dyn;
}

void inject_unsafe_ranges(pid_t pid, struct unsafe *u)
{
	memset(u, 0, sizeof(*u));
	char *text = inject_read_maps(pid);
	char *save = NULL;
	for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
		struct proc_map m;
		if (!proc_map__parse(line, &m) || m.perms[2] != 'x' || m.path[0] != '/')
			continue;
		enum runtime_module k = inject_runtime_module(m.path);
		struct range *r = k == RT_LIBC ? &u->libc : k == RT_LD ? &u->ld : k == RT_SHIM ? &u->shim : NULL;
		if (r && !r->hi) {
			r->lo = m.lo;
			r->hi = m.hi;
		}
	}
	free(text);
	uint64_t a, sz;
	if (inject__symbol(pid, "libc", "__lll_lock_wait_private", &a, &sz) == 0)
		u->lockwait[0] = (struct range){a, a + (sz ? sz : 64)};
	if (inject__symbol(pid, "libc", "__lll_lock_wait", &a, &sz) == 0)
		u->lockwait[1] = (struct range){a, a + (sz ? sz : 64)};
	u->pid = pid;
	if (u->shim.hi && inject__symbol(pid, "libkiln_shim", "kiln_got_owner", &a, NULL) == 0)
		u->got_owner = a;
}
