/* Naming a CPython code object read from outside (see python.h): its
 * qualified name and file as UTF-8 from the str objects (every kind,
 * bounded), its line from the location table (3.11+ varint format; 3.10's
 * byte pairs), or
 * from what the shim sent when the object was alive (ring.h PYCODE). What
 * is held for every process together is counted against PY_HELD_MAX:
 * past it a table is read at each use, not kept. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include "collect/python_int.h"

/* Names and location tables held for every Python process of the
 * recording together, counted in bytes really held (what a program can
 * make the recorder keep: 6,000 code objects sharing a 1 MiB table must not
 * cost 6 GB). Past it, a table is read at each use and not kept, and the
 * names the shim sends are read from the process instead. */
#define PY_HELD_MAX ((size_t)256 << 20)
static size_t py_held;

size_t python__held(void)
{
	return __atomic_load_n(&py_held, __ATOMIC_RELAXED);
}

static size_t held_of(const struct pycode *c)
{
	return (c->qualname ? strlen(c->qualname) + 1 : 0) + (c->file ? strlen(c->file) + 1 : 0) + c->ntable +
	       sizeof(*c);
}

static bool held_fits(size_t n)
{
	return __atomic_load_n(&py_held, __ATOMIC_RELAXED) + n <= PY_HELD_MAX;
}

static void held_add(struct pycode *c)
{
	c->held = held_of(c);
	__atomic_add_fetch(&py_held, c->held, __ATOMIC_RELAXED);
}

void pycode_release(struct pycode *c)
{
	__atomic_sub_fetch(&py_held, c->held, __ATOMIC_RELAXED);
	free(c->qualname);
	free(c->file);
	free(c->table);
	memset(c, 0, sizeof(*c));
}

/* len characters of kind bytes each (1 Latin-1, 2 UCS-2, 4 UCS-4), as
 * CPython holds a str, into UTF-8 (surrogates and values past U+10FFFF
 * replaced). malloc'ed. */
static char *utf8_of(const unsigned char *raw, size_t len, unsigned kind)
{
	char *s = xmalloc(len * 4 + 1);
	size_t k = 0;
	for (size_t i = 0; i < len; i++) {
		uint32_t ch = kind == 1 ? raw[i] : kind == 2 ? (uint32_t)(raw[2 * i] | raw[2 * i + 1] << 8)
				      : (uint32_t)(raw[4 * i] | raw[4 * i + 1] << 8 | raw[4 * i + 2] << 16 | (uint32_t)raw[4 * i + 3] << 24);
		if ((ch >= 0xd800 && ch < 0xe000) || ch >= 0x110000)
			ch = 0xfffd;
		if (ch < 0x80) {
			s[k++] = (char)ch;
		} else if (ch < 0x800) {
			s[k++] = (char)(0xc0 | ch >> 6);
			s[k++] = (char)(0x80 | (ch & 0x3f));
		} else if (ch < 0x10000) {
			s[k++] = (char)(0xe0 | ch >> 12);
			s[k++] = (char)(0x80 | ((ch >> 6) & 0x3f));
			s[k++] = (char)(0x80 | (ch & 0x3f));
		} else {
			s[k++] = (char)(0xf0 | ch >> 18);
			s[k++] = (char)(0x80 | ((ch >> 12) & 0x3f));
			s[k++] = (char)(0x80 | ((ch >> 6) & 0x3f));
			s[k++] = (char)(0x80 | (ch & 0x3f));
		}
	}
	s[k] = 0;
	return s;
}

/* A str object as UTF-8 (compact strings only), at most PY_MAX_STR characters. */
char *pycode_read_str(struct pyproc *pp, uint64_t addr)
{
	const struct kiln_py_offsets *o = &pp->o;
	unsigned char h[96];
	if (o->str_compact_size > sizeof(h) || !rd(pp->pid, addr, h, o->str_compact_size))
		return NULL;
	int64_t len;
	uint32_t st;
	unsigned kind = 0;
	memcpy(&len, h + o->str_length, 8);
	memcpy(&st, h + o->str_state, 4);
	unsigned at = kiln_py_str_data(st, o, &kind);
	if (len < 0 || !at)
		return NULL;
	if (len > PY_MAX_STR)
		len = PY_MAX_STR;
	size_t nb = (size_t)len * kind;
	unsigned char *raw = xmalloc(nb + 1);
	uint64_t data = addr + at;
	if (nb && !rd(pp->pid, data, raw, nb)) {
		free(raw);
		return NULL;
	}
	char *s = utf8_of(raw, (size_t)len, kind);
	free(raw);
	return s;
}

static unsigned char *read_bytes(struct pyproc *pp, uint64_t addr, size_t *n)
{
	int64_t len;
	if (!rd(pp->pid, addr + pp->o.bytes_size, &len, 8) || len < 0 || len > PY_MAX_TABLE)
		return NULL;
	unsigned char *b = xmalloc((size_t)len + 1);
	if (len && !rd(pp->pid, addr + pp->o.bytes_sval, b, (size_t)len)) {
		free(b);
		return NULL;
	}
	*n = (size_t)len;
	return b;
}

static bool varint(const unsigned char *t, size_t n, size_t *i, uint32_t *out);

/* A signed varint (sign in the lowest bit), as line deltas are written. */
static bool svarint(const unsigned char *t, size_t n, size_t *i, int *out)
{
	uint32_t v;
	if (!varint(t, n, i, &v))
		return false;
	*out = (v & 1) ? -(int)(v >> 1) : (int)(v >> 1);
	return true;
}

static bool varint(const unsigned char *t, size_t n, size_t *i, uint32_t *out)
{
	uint32_t v = 0;
	unsigned shift = 0;
	for (;;) {
		if (*i >= n || shift > 28)
			return false;
		unsigned char b = t[(*i)++];
		v |= (uint32_t)(b & 63) << shift;
		if (!(b & 64))
			break;
		shift += 6;
	}
	*out = v;
	return true;
}

int python__line(const unsigned char *t, size_t n, int firstlineno, uint32_t lasti)
{
	int line = firstlineno;
	uint64_t addr = 0;
	size_t i = 0;
	while (i < n) {
		unsigned char b = t[i++];
		if (!(b & 0x80))
			return -1; /* not the start of an entry: not a 3.11+ table */
		unsigned code = (b >> 3) & 15, len = (b & 7) + 1u;
		int delta = 0;
		bool none = false;
		uint32_t v;
		switch (code) {
		case 15:
			none = true;
			break;
		case 14: /* a line delta, an end line, two columns */
			if (!svarint(t, n, &i, &delta))
				return -1;
			for (int k = 0; k < 3; k++)
				if (!varint(t, n, &i, &v))
					return -1;
			break;
		case 13: /* a line delta, no columns */
			if (!svarint(t, n, &i, &delta))
				return -1;
			break;
		case 10:
		case 11:
		case 12:
			delta = (int)code - 10;
			i += 2;
			break;
		default:
			i += 1;
			break;
		}
		line += delta;
		if (lasti < addr + len)
			return none ? -1 : line;
		addr += len;
	}
	return -1;
}

int python__line_310(const unsigned char *t, size_t n, int firstlineno, uint32_t lasti)
{
	/* byte pairs (PEP 626, Objects/lnotab_notes.txt): how many bytes of
	 * bytecode the range covers, then the line's change (signed; -128: the
	 * range has no line). Offsets are in bytes, two to an instruction. */
	uint64_t off = (uint64_t)lasti * 2, start, end = 0;
	int line = firstlineno;
	for (size_t i = 0; i + 1 < n; i += 2) {
		start = end;
		end += t[i];
		int delta = (signed char)t[i + 1];
		bool none = delta == -128;
		if (!none)
			line += delta;
		if (off >= start && off < end)
			return none ? -1 : line;
	}
	return -1;
}

/* The line of lasti in code's table, in the table's format for pp's version. */
static int line_of(const struct pyproc *pp, const unsigned char *t, size_t n, int firstlineno, uint32_t lasti)
{
	return pp->o.frame_object ? python__line_310(t, n, firstlineno, lasti) : python__line(t, n, firstlineno, lasti);
}

int pyproc__define(struct pyproc *pp, uint64_t code, int32_t first, const unsigned char *qual, size_t qlen,
		   unsigned qkind, const unsigned char *file, size_t flen, unsigned fkind, const unsigned char *table,
		   size_t tlen)
{
	if ((qkind != 1 && qkind != 2 && qkind != 4) || (fkind != 1 && fkind != 2 && fkind != 4) || !qlen ||
	    qlen > PY_MAX_STR || flen > PY_MAX_STR || tlen > PY_MAX_TABLE)
		return -EINVAL;
	size_t cost = qlen * 4 + flen * 4 + tlen + sizeof(struct pycode); /* at most, as UTF-8 */
	if (!held_fits(cost))
		return -ENOSPC; /* the object is read from the process instead */
	bool created;
	int replaced = 0;
	struct u64map_ent *e = u64map__upsert(&pp->defs, code, &created);
	struct pycode *c;
	if (created) {
		ARR_GROW(pp->defv, pp->cdefs, pp->ndefs + 1);
		e->v1 = pp->ndefs + 1;
		c = &pp->defv[pp->ndefs++];
		memset(c, 0, sizeof(*c));
	} else {
		c = &pp->defv[e->v1 - 1];
		pycode_release(c);
		replaced = 1;
	}
	c->addr = code;
	c->firstlineno = first;
	c->qualname = utf8_of(qual, qlen, qkind);
	c->file = utf8_of(file, flen, fkind);
	c->table = tlen ? xmemdup(table, tlen) : NULL;
	c->ntable = tlen;
	held_add(c);
	return replaced;
}

bool pyproc__name(struct pyproc *pp, const struct pyframe *f, const char **func, const char **file, uint32_t *line,
		  uint32_t *def_line)
{
	const struct kiln_py_offsets *o = &pp->o;
	uint64_t code = f->code;
	uint32_t lasti = f->lasti;
	struct u64map_ent *d = f->has_first ? u64map__find(&pp->defs, code) : NULL;
	if (d && pp->defv[d->v1 - 1].firstlineno == f->first) {
		/* the names the shim sent while the object lived */
		const struct pycode *c = &pp->defv[d->v1 - 1];
		int l = c->table ? line_of(pp, c->table, c->ntable, c->firstlineno, lasti) : -1;
		*func = c->qualname;
		*file = c->file;
		*line = (uint32_t)(l > 0 ? l : c->firstlineno > 0 ? c->firstlineno : 0);
		*def_line = (uint32_t)(c->firstlineno > 0 ? c->firstlineno : 0);
		return true;
	}
	unsigned char h[256];
	if (!code || o->co_size > sizeof(h) || !rd(pp->pid, code, h, o->co_size))
		return false;
	uint64_t type, name_p, qual_p, file_p, table_p;
	int32_t first;
	memcpy(&type, h + 8, 8);
	memcpy(&name_p, h + o->co_name, 8);
	memcpy(&qual_p, h + o->co_qualname, 8);
	memcpy(&file_p, h + o->co_filename, 8);
	memcpy(&table_p, h + o->co_linetable, 8);
	memcpy(&first, h + o->co_firstlineno, 4);
	if (type != pp->code_type || (f->has_first && first != f->first))
		return false;
	struct pycode *c = &pp->codes[hash_u64(code) & (PY_CODE_CACHE - 1)];
	if (c->addr != code || c->name_p != name_p || c->qual_p != qual_p || c->file_p != file_p ||
	    c->table_p != table_p || c->firstlineno != first) {
		pycode_release(c);
		c->qualname = pycode_read_str(pp, qual_p);
		if (!c->qualname)
			c->qualname = pycode_read_str(pp, name_p);
		c->file = pycode_read_str(pp, file_p);
		c->table = read_bytes(pp, table_p, &c->ntable);
		if (!c->qualname) {
			pycode_release(c);
			return false;
		}
		if (!c->file)
			c->file = xstrdup("");
		if (o->version >= 0x30d && !pp->init_shim && !strcmp(c->qualname, "__init__") &&
		    !strcmp(c->file, "__init__") && !c->ntable)
			pp->init_shim = code; /* _Py_InitCleanup, known by what it holds */
		c->addr = code;
		c->name_p = name_p;
		c->qual_p = qual_p;
		c->file_p = file_p;
		c->table_p = table_p;
		c->firstlineno = first;
		if (!held_fits(held_of(c))) {
			free(c->table);
			c->table = NULL;
			c->ntable = 0;
			c->transient = table_p != 0;
		}
		held_add(c);
	}
	int l;
	if (c->transient) { /* over the budget: read, used, let go */
		size_t nt = 0;
		unsigned char *t = read_bytes(pp, table_p, &nt);
		l = t ? line_of(pp, t, nt, first, lasti) : -1;
		free(t);
	} else {
		l = c->table ? line_of(pp, c->table, c->ntable, first, lasti) : -1;
	}
	*func = c->qualname;
	*file = c->file;
	*line = (uint32_t)(l > 0 ? l : first > 0 ? first : 0);
	*def_line = (uint32_t)(first > 0 ? first : 0);
	return true;
}
