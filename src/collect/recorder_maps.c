/* The recorder's memory maps (from perf's MMAP records or /proc/PID/maps),
 * the modules and images they name, and the native locations and stacks
 * made of addresses in them. A mapped file is opened as untrusted: never
 * blocking, never through a symlink, checked against what the kernel says
 * is mapped (symbols/image.c). */
#include <errno.h>
#include <string.h>
#include "collect/unwind.h"
#include "collect/recorder_int.h"

uint32_t recorder_module_get(struct recorder *r, const char *key, const char *path, uint8_t kind, uint32_t pid,
			   struct image *img)
{
	bool added;
	uint32_t id = intern__put(&r->modkeys, key, (uint32_t)strlen(key), &added);
	if (added) {
		ARR_GROW(r->mods, r->cmods, id + 1);
		r->mods[id].path = xstrdup(path);
		r->mods[id].kind = kind;
		r->mods[id].pid = pid;
		r->mods[id].img = img;
		r->nmods = id + 1;
	}
	return id;
}

static struct image *image_get(struct recorder *r, const char *path, uint32_t pid, uint64_t start, uint64_t end,
			       uint64_t ino)
{
	bool added;
	uint32_t id = intern__put(&r->imgkeys, path, (uint32_t)strlen(path), &added);
	ARR_GROW(r->imgs, r->cimgs, id + 1);
	if (added) {
		int fd = proc_map__open((int)pid, path, start, end, ino);
		r->imgs[id] = fd >= 0 ? image__open_fd(fd, path) : NULL;
	}
	return r->imgs[id];
}

static int map_cmp(const void *a, const void *b)
{
	const struct rmap *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

void recorder__mmap(struct recorder *r, uint32_t pid, uint64_t start, uint64_t len, uint64_t pgoff,
		    const char *path, uint64_t ino)
{
	struct rproc *p = recorder__proc(r, pid);
	uint64_t end = start + len;
	struct rmap m = {.start = start, .end = end, .pgoff = pgoff, .module = UINT32_MAX};
	if (!strcmp(path, "[vdso]")) {
		if (!r->vdso_tried) {
			r->vdso = image__vdso();
			r->vdso_tried = true;
		}
		m.img = r->vdso;
		if (m.img && image__bias(m.img, start, 0, &m.bias) == 0)
			m.module = recorder_module_get(r, "[vdso]", "[vdso]", MOD_VDSO, 0, m.img);
		else
			m.img = NULL;
	} else if (path[0] == '/') {
		char clean[4096];
		snprintf(clean, sizeof(clean), "%s", path);
		size_t n = strlen(clean);
		if (n > 10 && !strcmp(clean + n - 10, " (deleted)"))
			clean[n - 10] = 0;
		m.img = image_get(r, clean, pid, start, end, ino);
		if (m.img && image__bias(m.img, start, pgoff, &m.bias) == 0)
			m.module = recorder_module_get(r, clean, clean, MOD_FILE, 0, m.img);
		else
			m.img = NULL;
		if (m.img && !p->py_img && path_is_python(clean))
			recorder_python_detect(r, p, m.img, m.bias);
	} else if (path[0] == '[' && strcmp(path, "[anon]") && strncmp(path, "[anon:", 6)) {
		return; /* [stack], [heap], [vsyscall]: no code kiln can name */
	}
	/* Replace whatever overlapped: the newer mapping wins; what an old
	 * mapping had below and above the new one stays. At most one old
	 * mapping can stick out above (they do not overlap each other). */
	size_t k = 0;
	bool changed = false, has_hi = false;
	struct rmap hi;
	for (size_t i = 0; i < p->nmaps; i++) {
		struct rmap *o = &p->maps[i];
		if (o->end <= start || o->start >= end) {
			p->maps[k++] = *o;
			continue;
		}
		changed = true;
		if (o->end > end) { /* the part above */
			hi = *o;
			hi.pgoff += end - o->start;
			hi.start = end;
			has_hi = true;
		}
		if (o->start < start) { /* and the part below */
			struct rmap lo = *o;
			lo.end = start;
			p->maps[k++] = lo;
		}
	}
	p->nmaps = k;
	ARR_GROW(p->maps, p->cmaps, p->nmaps + 2);
	p->maps[p->nmaps++] = m;
	if (has_hi)
		p->maps[p->nmaps++] = hi;
	sort_array(p->maps, p->nmaps, sizeof(*p->maps), map_cmp);
	p->last_hit = 0;
	if (changed)
		recorder_flush_unwind(p);
}

int recorder__read_maps(struct recorder *r, uint32_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%u/maps", pid);
	char *text = read_small_file(path, NULL);
	if (!text)
		return -errno;
	struct rproc *p = recorder__proc(r, pid);
	p->maps_read_ns = now_ns();
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct proc_map m;
		if (!proc_map__parse(line, &m) || m.perms[2] != 'x')
			continue;
		recorder__mmap(r, pid, m.lo, m.hi - m.lo, m.off, *m.path ? m.path : "[anon]", m.ino);
	}
	free(text);
	return 0;
}

struct rmap *recorder_map_at(struct rproc *p, uint64_t addr)
{
	if (p->last_hit < p->nmaps) {
		struct rmap *m = &p->maps[p->last_hit];
		if (addr >= m->start && addr < m->end)
			return m;
	}
	size_t lo = upper_bound_u64(p->maps, p->nmaps, sizeof(*p->maps), addr);
	if (lo && addr < p->maps[lo - 1].end) {
		p->last_hit = lo - 1;
		return &p->maps[lo - 1];
	}
	return NULL;
}

const struct image *recorder__image_at(struct recorder *r, uint32_t pid, uint64_t addr, uint64_t *bias,
				       uint64_t *map_start, uint64_t *map_end)
{
	struct rproc *p = recorder_proc_find(r, pid);
	if (!p)
		return NULL;
	struct rmap *m = recorder_map_at(p, addr);
	if (m && m->img) {
		*bias = m->bias;
		if (map_start)
			*map_start = m->start;
		if (map_end)
			*map_end = m->end;
		return m->img;
	}
	/* Not in an executable mapping: perhaps in a read-only segment of an
	 * image (.eh_frame), which only its executable mapping tells us of. */
	for (size_t i = 0; i < p->nmaps; i++) {
		m = &p->maps[i];
		if (m->img && addr >= m->img->lo + m->bias && addr < m->img->hi + m->bias) {
			*bias = m->bias;
			if (map_start)
				*map_start = m->start;
			if (map_end)
				*map_end = m->end;
			return m->img;
		}
	}
	return NULL;
}

void *recorder__unw_as(struct recorder *r, uint32_t pid)
{
	struct rproc *p = recorder__proc(r, pid);
	if (!p->as)
		p->as = unwind__new_as();
	return p->as;
}

/* p's own module named what ("[anon]": anonymous memory, JIT code;
 * "[unmapped]": addresses in no mapping), made at its first use. */
static uint32_t pid_module(struct recorder *r, struct rproc *p, uint32_t *id, const char *what)
{
	if (!*id) {
		char k[48];
		snprintf(k, sizeof(k), "%s%u", what, p->pid);
		*id = recorder_module_get(r, k, what, MOD_ANON, p->pid, NULL) + 1;
	}
	return *id - 1;
}

uint32_t recorder_loc_get(struct recorder *r, struct rproc *p, uint64_t ip, bool retaddr)
{
	struct {
		uint32_t module, flags;
		uint64_t addr;
	} kkey;
	if (ip >= KILN_KERNEL_START) { /* a kernel frame: one module for every process */
		if (!r->has_kernel) {
			r->kernel_module = recorder_module_get(r, "[kernel.kallsyms]", "[kernel.kallsyms]", MOD_KERNEL, 0, NULL);
			r->has_kernel = true;
		}
		kkey.module = r->kernel_module;
		kkey.flags = retaddr ? LOC_RETADDR : 0;
		kkey.addr = ip;
		return intern__put(&r->locs, &kkey, sizeof(kkey), NULL);
	}
	struct rmap *m = recorder_map_at(p, ip);
	if (!m && now_ns() - p->maps_read_ns > 20000000ull) {
		recorder__read_maps(r, p->pid);
		m = recorder_map_at(p, ip);
	}
	struct {
		uint32_t module, flags;
		uint64_t addr;
	} key;
	if (m && m->module != UINT32_MAX) {
		key.module = m->module;
		key.addr = ip - m->bias;
	} else {
		/* in no mapping, even after reading the maps again (e.g. a sample
		 * inside execve, whose user address is the old image's): said as
		 * such, never as anonymous (JIT) memory */
		key.module = m ? pid_module(r, p, &p->anon_module, "[anon]") : pid_module(r, p, &p->unmapped_module, "[unmapped]");
		key.addr = ip;
	}
	key.flags = retaddr ? LOC_RETADDR : 0;
	bool added;
	uint32_t id = intern__put(&r->locs, &key, sizeof(key), &added);
	if (added && m && m->img)
		image__prefetch(m->img);
	return id;
}

uint32_t recorder__stack(struct recorder *r, uint32_t pid, const uint64_t *ips, int n, bool exact_leaf,
			 bool truncated)
{
	return recorder__stack_at(r, pid, ips, n, exact_leaf ? 0 : -1, -1, truncated);
}

uint32_t recorder__stack_at(struct recorder *r, uint32_t pid, const uint64_t *ips, int n, int exact_a, int exact_b,
			    bool truncated)
{
	struct rproc *p = recorder__proc(r, pid);
	uint32_t key[2 + KILN_MAX_DEPTH];
	if (n > KILN_MAX_DEPTH) {
		n = KILN_MAX_DEPTH;
		truncated = true;
	}
	key[0] = truncated ? STACK_TRUNCATED : 0;
	key[1] = (uint32_t)n;
	for (int i = 0; i < n; i++)
		key[2 + i] = recorder_loc_get(r, p, ips[i], i != exact_a && i != exact_b);
	return intern__put(&r->stacks, key, (uint32_t)(2 + n) * 4, NULL);
}
