/* Leaf helpers with no dependency on the rest of kiln: growable buffers, a
 * bounds-checked reader, hashing, open-addressing maps, an interner, time. */
#ifndef KILN_UTIL_H
#define KILN_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation that aborts on exhaustion: kiln's own data structures are small
 * compared to the machine, and a half-built table is worse than a clear exit. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
/* Grow *arr (of *cap elements of size sz) to hold at least need elements. */
void grow_array(void **arr, size_t *cap, size_t need, size_t sz);
#define ARR_GROW(arr, cap, need) grow_array((void **)&(arr), &(cap), (need), sizeof(*(arr)))

uint64_t now_ns(void);      /* CLOCK_MONOTONIC */
uint64_t realtime_ns(void); /* CLOCK_REALTIME */
uint64_t realtime_at(uint64_t mono); /* CLOCK_REALTIME when CLOCK_MONOTONIC read mono (a past instant) */

/* A growable byte buffer (git's strbuf). */
struct buf {
	unsigned char *data;
	size_t len, cap;
};
void buf__init(struct buf *b);
void buf__release(struct buf *b);
void buf__reserve(struct buf *b, size_t extra);
void buf__put(struct buf *b, const void *p, size_t n);
void buf__u8(struct buf *b, uint8_t v);
void buf__u16(struct buf *b, uint16_t v);
void buf__u32(struct buf *b, uint32_t v);
void buf__u64(struct buf *b, uint64_t v);
/* A string as u16 length + bytes (cut at 65535). */
void buf__str(struct buf *b, const char *s);
void buf__printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* NUL-terminate without counting the NUL in len. */
const char *buf__cstr(struct buf *b);

/* A bounds-checked reader over untrusted bytes: every get fails (returns
 * false and sets bad) instead of reading past the end. */
struct cursor {
	const unsigned char *p, *end;
	bool bad;
};
void cursor__init(struct cursor *c, const void *p, size_t n);
bool cursor__u8(struct cursor *c, uint8_t *v);
bool cursor__u16(struct cursor *c, uint16_t *v);
bool cursor__u32(struct cursor *c, uint32_t *v);
bool cursor__u64(struct cursor *c, uint64_t *v);
/* A u16-length string; returns a malloc'ed NUL-terminated copy or NULL. */
char *cursor__str(struct cursor *c);
size_t cursor__left(const struct cursor *c);
/* A u16-length string as text for people and every output format: valid
 * UTF-8 kept, anything else (bytes that are not UTF-8, control characters,
 * a backslash) written as \xHH / \\, so it is shown and never obeyed by a
 * terminal, and never makes XML or JSON invalid. malloc'ed, or NULL. */
char *cursor__text(struct cursor *c);
/* The same cleaning for n bytes of s (stops at a NUL). malloc'ed. */
char *str_clean(const char *s, size_t n);

uint64_t hash_bytes(const void *p, size_t n);
static inline uint64_t hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* u64 key -> two u64 values, open addressing with backward-shift deletion.
 * Every key is valid: 0, the table's empty marker, has a slot of its own, so
 * nothing a file or a program hands in can collide with it. */
struct u64map_ent {
	uint64_t key, v1, v2;
};
struct u64map {
	struct u64map_ent *ents;
	size_t cap, len; /* cap is a power of two; len counts key 0 too */
	bool has_zero;
	struct u64map_ent zero;
};
void u64map__init(struct u64map *m);
void u64map__release(struct u64map *m);
/* Pointer to the entry for key, or NULL. Valid until the next insert. */
struct u64map_ent *u64map__find(struct u64map *m, uint64_t key);
/* Entry for key, created zeroed if absent (*created says which). */
struct u64map_ent *u64map__upsert(struct u64map *m, uint64_t key, bool *created);
bool u64map__remove(struct u64map *m, uint64_t key, struct u64map_ent *out);
/* Remove the entry e (from find or upsert, not since changed). */
void u64map__remove_at(struct u64map *m, struct u64map_ent *e);
void u64map__clear(struct u64map *m);
/* Every entry, one per call (start with *it = 0; NULL at the end). No
 * insert or remove between calls. */
struct u64map_ent *u64map__next(struct u64map *m, size_t *it);

/* Interns byte strings to dense ids 0..n-1; keeps one copy of each. */
struct intern {
	uint32_t *slots; /* id+1, 0 = empty */
	size_t nslots;
	unsigned char **keys;
	uint32_t *lens;
	uint64_t *hashes;
	size_t n, cap;
};
void intern__init(struct intern *t);
void intern__release(struct intern *t);
/* Id of the key, adding it if new (*added says which). */
uint32_t intern__put(struct intern *t, const void *key, uint32_t len, bool *added);
/* Id of the key or -1. */
int64_t intern__get(const struct intern *t, const void *key, uint32_t len);
static inline const void *intern__key(const struct intern *t, uint32_t id, uint32_t *len)
{
	if (len)
		*len = t->lens[id];
	return t->keys[id];
}
/* Convenience for NUL-terminated strings. */
uint32_t intern__str(struct intern *t, const char *s);
static inline const char *intern__cstr(const struct intern *t, uint32_t id)
{
	return (const char *)t->keys[id];
}

/* a + b, held at INT64_MAX / INT64_MIN instead of overflowing: sums of
 * values read from a file (which may be crafted) never wrap. */
static inline int64_t sat_add(int64_t a, int64_t b)
{
	int64_t r;
	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}
#define SAT_ADD(lhs, v) ((lhs) = sat_add((lhs), (v)))

/* In an array of n elements of size bytes, each starting with a u64 key and
 * sorted by it: how many have a key <= key (the last such is at the result
 * minus one; 0: none). */
size_t upper_bound_u64(const void *base, size_t n, size_t size, uint64_t key);

/* qsort that accepts an empty (NULL) array, which qsort itself may not be given. */
static inline void sort_array(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(base, n, size, cmp);
}

/* Write all of p, retrying on EINTR and short writes; 0 or -errno. */
int write_full(int fd, const void *p, size_t n);
/* Read a whole small file (/proc) into a malloc'ed NUL-terminated buffer. */
char *read_small_file(const char *path, size_t *len);
/* The state letter of /proc/PID/stat (or /proc/PID/task/TID/stat when tid
 * > 0): 'R', 'S', 'Z'...; 0 when the process or thread is gone. */
char proc_state(int pid, int tid);
/* sscanf of /proc/PID/stat past its name (which may hold spaces and ')'),
 * fmt starting at the state field: the fields converted, -1 when the
 * process is gone. */
int proc_stat_scan(int pid, const char *fmt, ...) __attribute__((format(scanf, 2, 3)));
/* Why a ptrace of pid is refused when another process traces it (one
 * tracer at a time): "cannot attach to pid N: it is already traced by ..."
 * in out, the tracer's pid returned; 0 when it is not traced (or by kiln
 * itself). */
int proc_traced_why(int pid, char *out, size_t n);
/* One line of /proc/PID/maps; path points into the line ("" when none). */
struct proc_map {
	uint64_t lo, hi, off, ino;
	unsigned dev_major, dev_minor;
	char perms[8];
	const char *path;
};
bool proc_map__parse(const char *line, struct proc_map *m);
/* Open what pid maps at [lo, hi) from path, as untrusted: the kernel's own
 * handle (/proc/PID/map_files) when we may use it, else the path without
 * following a symlink or blocking on a FIFO; only a regular file with the
 * mapping's inode (ino 0: unknown). A descriptor, or -1. */
int proc_map__open(int pid, const char *path, uint64_t lo, uint64_t hi, uint64_t ino);
/* Remove a folder's entries (not recursively) and the folder. */
void remove_dir(const char *dir);
/* Basename without allocation. */
const char *path_base(const char *path);
/* Whether a path names a CPython interpreter or its library by its base
 * name (python3.X, libpython3.X.so): a guess by name, nothing read. */
bool path_is_python(const char *path);
/* Human-readable count of bytes into buf. */
const char *fmt_bytes(char *buf, size_t n, double v);

#endif
