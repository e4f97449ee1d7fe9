/* Draining the shim's rings (include/kiln/ring.h) into the recorder.
 *
 *   /dev/shm/kiln-RECPID-N/PID.TID.NONCE.K.ring   one per thread of a process image
 *   group = (pid, nonce): its rings are merged by seq, so the recorder sees
 *   the process's allocations and frees in the order they happened.
 *
 * A group ends when its process is gone (or a zombie), or when a newer image
 * of the same pid appears (exec); its rings are then drained whatever gaps
 * remain, its live blocks become leaks, and its files are removed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "collect/heapsrc.h"
#include "collect/recorder.h"
#include "kiln/kiln.h"
#include "kiln/ring.h"
#include "util/util.h"

struct hring {
	char *path;
	struct kiln_ring_hdr *hdr;
	uint64_t *data;
	uint64_t mask, tail, head; /* head: last seen, reloaded when reached */
	uint32_t pid, tid;
	struct rproc *proc;
	uint32_t *stacks; /* ring-local stack id -> recorder cell (pid, tid, stack) */
	size_t cstacks;
};

struct hgroup {
	uint32_t pid;
	uint64_t nonce;
	uint64_t next_seq;
	struct hring **rings;
	size_t n, cap;
	bool ending; /* drain whatever is there, then end */
	bool ended;
	uint64_t stall_since;
	uint64_t stall_seq;
	uint64_t created;
};

struct heapsrc {
	struct recorder *r;
	char dir[256];
	int ino;
	struct hgroup **groups;
	size_t ngroups, cgroups;
	struct intern seen_files;
	uint64_t last_scan, last_check;
	bool seen;
};

/* Folders of recorders that died (SIGKILL) before they could clean up. */
static void remove_stale(void)
{
	DIR *d = opendir("/dev/shm");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		int pid, n;
		if (sscanf(e->d_name, "kiln-%d-%d", &pid, &n) != 2 || pid <= 0)
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		char dir[300];
		snprintf(dir, sizeof(dir), "/dev/shm/%s", e->d_name);
		remove_dir(dir);
	}
	closedir(d);
}

struct heapsrc *heapsrc__new(struct recorder *r)
{
	remove_stale();
	struct heapsrc *h = xcalloc(1, sizeof(*h));
	h->r = r;
	intern__init(&h->seen_files);
	for (int i = 0; i < 100; i++) {
		snprintf(h->dir, sizeof(h->dir), "/dev/shm/kiln-%d-%d", (int)getpid(), i);
		if (mkdir(h->dir, 0700) == 0)
			break;
		if (errno != EEXIST) {
			int e = errno;
			intern__release(&h->seen_files);
			free(h);
			errno = e;
			return NULL;
		}
	}
	h->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (h->ino >= 0)
		inotify_add_watch(h->ino, h->dir, IN_CREATE | IN_MOVED_TO);
	return h;
}

const char *heapsrc__dir(const struct heapsrc *h)
{
	return h->dir;
}

bool heapsrc__seen(const struct heapsrc *h)
{
	return h->seen;
}

static struct hgroup *group_get(struct heapsrc *h, uint32_t pid, uint64_t nonce)
{
	for (size_t i = 0; i < h->ngroups; i++)
		if (h->groups[i]->pid == pid && h->groups[i]->nonce == nonce)
			return h->groups[i];
	struct hgroup *g = xcalloc(1, sizeof(*g));
	g->pid = pid;
	g->nonce = nonce;
	g->created = now_ns();
	/* A newer image of the same pid: the older one has exec'd away. */
	for (size_t i = 0; i < h->ngroups; i++)
		if (h->groups[i]->pid == pid && !h->groups[i]->ended)
			h->groups[i]->ending = true;
	ARR_GROW(h->groups, h->cgroups, h->ngroups + 1);
	h->groups[h->ngroups++] = g;
	recorder__proc(h->r, pid);
	return g;
}

/* Map a ring file; false when it is not ready yet (header not published). */
static bool ring_open(struct heapsrc *h, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", h->dir, name);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT; /* gone already: nothing to wait for */
	struct stat st;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < KILN_RING_HDR_SIZE + 8 * (size_t)KILN_RING_WORDS_SMALL) {
		close(fd);
		return false;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return false;
	/* mapped by both sides now: the name can go, so nothing is left in
	 * /dev/shm if either side is killed */
	unlink(path);
	struct kiln_ring_hdr *hdr = p;
	uint64_t words = hdr->words;
	if (__atomic_load_n(&hdr->magic, __ATOMIC_ACQUIRE) != KILN_RING_MAGIC || words < KILN_RING_WORDS_SMALL ||
	    words > KILN_RING_WORDS || (words & (words - 1)) ||
	    (size_t)st.st_size != KILN_RING_HDR_SIZE + 8 * (size_t)words) {
		munmap(p, (size_t)st.st_size);
		return false;
	}
	struct hring *rg = xcalloc(1, sizeof(*rg));
	rg->path = xstrdup(path);
	rg->hdr = hdr;
	rg->data = (uint64_t *)((char *)p + KILN_RING_HDR_SIZE);
	rg->mask = hdr->words - 1;
	rg->tail = __atomic_load_n(&hdr->tail, __ATOMIC_ACQUIRE);
	rg->pid = hdr->pid;
	rg->tid = hdr->tid;
	rg->head = rg->tail;
	rg->proc = recorder__proc(h->r, hdr->pid);
	struct hgroup *g = group_get(h, hdr->pid, hdr->nonce);
	ARR_GROW(g->rings, g->cap, g->n + 1);
	g->rings[g->n++] = rg;
	h->seen = true;
	return true;
}

static void ring_close(struct hring *rg, bool remove)
{
	munmap(rg->hdr, KILN_RING_HDR_SIZE + 8 * (size_t)(rg->mask + 1));
	(void)remove; /* unlinked when opened */
	free(rg->path);
	free(rg->stacks);
	free(rg);
}

static void scan(struct heapsrc *h, bool full)
{
	char evbuf[8192];
	bool any = full;
	if (h->ino >= 0) {
		ssize_t n;
		while ((n = read(h->ino, evbuf, sizeof(evbuf))) > 0)
			any = true;
	}
	if (!any)
		return;
	DIR *d = opendir(h->dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len < 6 || strcmp(e->d_name + len - 5, ".ring"))
			continue;
		if (intern__get(&h->seen_files, e->d_name, (uint32_t)len) >= 0)
			continue;
		if (ring_open(h, e->d_name))
			intern__put(&h->seen_files, e->d_name, (uint32_t)len, NULL);
	}
	closedir(d);
}

static inline uint64_t ring_avail(struct hring *rg, uint64_t *head)
{
	if (rg->head == rg->tail)
		rg->head = __atomic_load_n(&rg->hdr->head, __ATOMIC_ACQUIRE);
	*head = rg->head;
	return rg->head - rg->tail;
}

#define W(rg, i) ((rg)->data[((rg)->tail + (i)) & (rg)->mask])

/* Consume STACK records at the front; return the seq of the next event, or
 * UINT64_MAX when the ring has none ready. */
static uint64_t ring_front(struct heapsrc *h, struct hring *rg)
{
	uint64_t head;
	for (;;) {
		uint64_t avail = ring_avail(rg, &head);
		if (!avail)
			return UINT64_MAX;
		uint64_t w0 = W(rg, 0);
		unsigned type = w0 & 0xff;
		if (type != RING_STACK)
			return w0 >> 8;
		uint64_t n = (w0 >> 8) & 0xffffff;
		bool truncated = (w0 >> 32) & 1;
		if (n > KILN_MAX_DEPTH || avail < n + 2) {
			/* a malformed ring (a program scribbling on it): give up on it */
			rg->tail = head;
			__atomic_store_n(&rg->hdr->tail, rg->tail, __ATOMIC_RELEASE);
			return UINT64_MAX;
		}
		uint64_t id = W(rg, 1);
		uint64_t ips[KILN_MAX_DEPTH];
		for (uint64_t i = 0; i < n; i++)
			ips[i] = W(rg, 2 + i);
		if (id < (1u << 24)) {
			ARR_GROW(rg->stacks, rg->cstacks, id + 1);
			uint32_t st = recorder__stack(h->r, rg->pid, ips, (int)n, false, truncated);
			rg->stacks[id] = recorder__cell(h->r, rg->pid, rg->tid, st);
		}
		rg->tail += n + 2;
	}
}

static void ring_consume_event(struct heapsrc *h, struct hring *rg)
{
	uint64_t w0 = W(rg, 0);
	unsigned type = w0 & 0xff;
	if (type == RING_ALLOC) {
		uint64_t addr = W(rg, 1), size = W(rg, 2), id = W(rg, 3);
		uint32_t cell = id < rg->cstacks ? rg->stacks[id]
					: recorder__cell(h->r, rg->pid, rg->tid,
							 recorder__stack(h->r, rg->pid, NULL, 0, false, true));
		recorder__alloc_cell(h->r, cell, addr, size);
		rg->tail += 4;
	} else if (type == RING_FREE) {
		recorder__free_in(h->r, rg->proc, W(rg, 1));
		rg->tail += 2;
	} else {
		uint64_t head;
		ring_avail(rg, &head);
		rg->tail = head; /* unknown: skip what is there */
	}
}

/* Merge a group's rings in seq order. Returns events processed. */
static long group_drain(struct heapsrc *h, struct hgroup *g, bool force, long budget)
{
	long n = 0;
	while (n < budget) {
		struct hring *best = NULL;
		uint64_t bseq = UINT64_MAX;
		for (size_t i = 0; i < g->n; i++) {
			uint64_t s = ring_front(h, g->rings[i]);
			if (s < bseq) {
				bseq = s;
				best = g->rings[i];
			}
		}
		if (!best)
			break;
		if (bseq > g->next_seq && !force) {
			/* an event still being written by another thread */
			uint64_t now = now_ns();
			if (g->stall_seq != g->next_seq) {
				g->stall_seq = g->next_seq;
				g->stall_since = now;
				break;
			}
			if (now - g->stall_since < 1000000000ull)
				break;
		}
		ring_consume_event(h, best);
		g->next_seq = bseq + 1;
		n++;
		if ((n & 4095) == 0)
			for (size_t i = 0; i < g->n; i++)
				__atomic_store_n(&g->rings[i]->hdr->tail, g->rings[i]->tail, __ATOMIC_RELEASE);
	}
	for (size_t i = 0; i < g->n; i++)
		__atomic_store_n(&g->rings[i]->hdr->tail, g->rings[i]->tail, __ATOMIC_RELEASE);
	/* rings of ended threads, fully drained: remove */
	size_t k = 0;
	for (size_t i = 0; i < g->n; i++) {
		struct hring *rg = g->rings[i];
		uint64_t head;
		if (__atomic_load_n(&rg->hdr->closed, __ATOMIC_ACQUIRE) && !ring_avail(rg, &head))
			ring_close(rg, true);
		else
			g->rings[k++] = rg;
	}
	g->n = k;
	return n;
}

static bool process_gone(uint32_t pid)
{
	char st = proc_state((int)pid, 0);
	return !st || st == 'Z' || st == 'X';
}

static void group_end(struct heapsrc *h, struct hgroup *g)
{
	group_drain(h, g, true, LONG_MAX);
	recorder__heap_end(h->r, g->pid);
	for (size_t i = 0; i < g->n; i++)
		ring_close(g->rings[i], true);
	g->n = 0;
	g->ended = true;
}

long heapsrc__poll(struct heapsrc *h)
{
	uint64_t now = now_ns();
	bool full = now - h->last_scan > 200000000ull;
	if (full)
		h->last_scan = now;
	scan(h, full);
	long n = 0;
	bool check = now - h->last_check > 100000000ull;
	if (check)
		h->last_check = now;
	for (size_t i = 0; i < h->ngroups; i++) {
		struct hgroup *g = h->groups[i];
		if (g->ended)
			continue;
		/* an older image of this pid must finish first */
		bool older_live = false;
		for (size_t j = 0; j < i; j++)
			if (h->groups[j]->pid == g->pid && !h->groups[j]->ended)
				older_live = true;
		if (older_live)
			continue;
		n += group_drain(h, g, false, 1 << 18);
		if (g->ending || (check && process_gone(g->pid))) {
			scan(h, true); /* a last ring may have appeared */
			group_end(h, g);
		}
	}
	return n;
}

void heapsrc__finish(struct heapsrc *h)
{
	scan(h, true);
	for (size_t i = 0; i < h->ngroups; i++)
		if (!h->groups[i]->ended)
			group_end(h, h->groups[i]);
}

void heapsrc__free(struct heapsrc *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->ngroups; i++) {
		struct hgroup *g = h->groups[i];
		for (size_t k = 0; k < g->n; k++)
			ring_close(g->rings[k], true);
		free(g->rings);
		free(g);
	}
	free(h->groups);
	remove_dir(h->dir); /* rings never mapped, and the folder */
	if (h->ino >= 0)
		close(h->ino);
	intern__release(&h->seen_files);
	free(h);
}
