/* A fast in-process unwinder for the shim: DWARF CFI rules (.eh_frame)
 * evaluated once per instruction address and cached per thread, so a walk
 * costs a table probe and two loads per frame. Only the common x86-64
 * rules are handled (CFA = RSP/RBP + offset, RBP saved at CFA + k, return
 * address at CFA - 8); anything else (signal frames, expressions) makes the
 * caller fall back to libunwind for that stack. Header-only: it is part of
 * the shim and shares its rules (no locks, no malloc, no stdio). */
#ifndef KILN_SHIM_CFI_H
#define KILN_SHIM_CFI_H

#include <link.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

struct cfi_rule {
	uintptr_t pc;
	int32_t cfa_off, rbp_off; /* rbp_off 0: RBP unchanged */
	uint8_t cfa_reg;          /* 6 RBP, 7 RSP */
	uint8_t state;            /* 0 empty, 1 ok, 2 outermost frame, 3 unsupported */
};

#define CFI_RULES 8192 /* per thread, direct-mapped */

struct cfi_find {
	uintptr_t pc;
	uintptr_t hdr;
};

static int cfi_find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct cfi_find *f = arg;
	const ElfW(Phdr) *eh = NULL;
	bool in = false;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD) {
			uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
			if (f->pc >= lo && f->pc < lo + ph->p_memsz)
				in = true;
		} else if (ph->p_type == PT_GNU_EH_FRAME) {
			eh = ph;
		}
	}
	if (!in)
		return 0;
	if (eh)
		f->hdr = info->dlpi_addr + eh->p_vaddr;
	return 1;
}

static uint64_t cfi_uleb(const uint8_t **p, const uint8_t *end)
{
	uint64_t v = 0;
	int s = 0;
	while (*p < end) {
		uint8_t b = *(*p)++;
		if (s < 64)
			v |= (uint64_t)(b & 0x7f) << s;
		s += 7;
		if (!(b & 0x80))
			break;
	}
	return v;
}

static int64_t cfi_sleb(const uint8_t **p, const uint8_t *end)
{
	int64_t v = 0;
	int s = 0;
	uint8_t b = 0;
	while (*p < end) {
		b = *(*p)++;
		if (s < 64)
			v |= (int64_t)(b & 0x7f) << s;
		s += 7;
		if (!(b & 0x80))
			break;
	}
	if (s < 64 && (b & 0x40))
		v |= -((int64_t)1 << s);
	return v;
}

/* Read a pointer in DW_EH_PE encoding; false for what we do not handle. */
static bool cfi_ptr(const uint8_t **p, const uint8_t *end, uint8_t enc, uintptr_t datarel, uintptr_t *out)
{
	const uint8_t *at = *p;
	uintptr_t v;
	if (enc == 0xff) /* omit */
		return false;
	switch (enc & 0x0f) {
	case 0x00: { uint64_t x; memcpy(&x, at, 8); v = (uintptr_t)x; *p += 8; break; }
	case 0x01: v = (uintptr_t)cfi_uleb(p, end); break;
	case 0x02: { uint16_t x; memcpy(&x, at, 2); v = x; *p += 2; break; }
	case 0x03: { uint32_t x; memcpy(&x, at, 4); v = x; *p += 4; break; }
	case 0x04: { uint64_t x; memcpy(&x, at, 8); v = (uintptr_t)x; *p += 8; break; }
	case 0x09: v = (uintptr_t)cfi_sleb(p, end); break;
	case 0x0a: { int16_t x; memcpy(&x, at, 2); v = (uintptr_t)(intptr_t)x; *p += 2; break; }
	case 0x0b: { int32_t x; memcpy(&x, at, 4); v = (uintptr_t)(intptr_t)x; *p += 4; break; }
	case 0x0c: { int64_t x; memcpy(&x, at, 8); v = (uintptr_t)x; *p += 8; break; }
	default: return false;
	}
	switch (enc & 0x70) {
	case 0x00: break;
	case 0x10: v += (uintptr_t)at; break;
	case 0x30: v += datarel; break;
	default: return false;
	}
	if (enc & 0x80)
		return false; /* indirect */
	*out = v;
	return true;
}

struct cfi_state {
	int64_t cfa_off, rbp_off;
	uint8_t cfa_reg;
	bool bad, ra_undefined;
};

/* Run CFA instructions from p to end while loc <= pc. */
static bool cfi_run(const uint8_t *p, const uint8_t *end, uintptr_t loc, uintptr_t pc, uint64_t caf, int64_t daf,
		    struct cfi_state *st, const struct cfi_state *init, uint8_t fde_enc)
{
	struct cfi_state stack[8];
	int depth = 0;
	while (p < end) {
		uint8_t op = *p++;
		uint8_t hi = op & 0xc0, lo = op & 0x3f;
		uint64_t reg, delta;
		if (hi == 0x40) { /* advance_loc */
			loc += lo * caf;
			if (loc > pc)
				return true;
			continue;
		}
		if (hi == 0x80) { /* offset */
			int64_t off = (int64_t)cfi_uleb(&p, end) * daf;
			if (lo == 6)
				st->rbp_off = off;
			continue;
		}
		if (hi == 0xc0) { /* restore */
			if (lo == 6)
				st->rbp_off = init ? init->rbp_off : 0;
			if (lo == 16)
				st->ra_undefined = init ? init->ra_undefined : false;
			continue;
		}
		switch (op) {
		case 0x00: break; /* nop */
		case 0x01: { uintptr_t v; if (!cfi_ptr(&p, end, fde_enc, 0, &v)) return false; loc = v; if (loc > pc) return true; break; }
		case 0x02: delta = *p++; loc += delta * caf; if (loc > pc) return true; break;
		case 0x03: { uint16_t d; memcpy(&d, p, 2); p += 2; loc += d * caf; if (loc > pc) return true; break; }
		case 0x04: { uint32_t d; memcpy(&d, p, 4); p += 4; loc += d * caf; if (loc > pc) return true; break; }
		case 0x05: reg = cfi_uleb(&p, end); { int64_t off = (int64_t)cfi_uleb(&p, end) * daf; if (reg == 6) st->rbp_off = off; } break;
		case 0x06: reg = cfi_uleb(&p, end); if (reg == 6) st->rbp_off = init ? init->rbp_off : 0; break;
		case 0x07: reg = cfi_uleb(&p, end); if (reg == 16) st->ra_undefined = true; if (reg == 6) st->bad = true; break;
		case 0x08: reg = cfi_uleb(&p, end); if (reg == 6) st->rbp_off = 0; break;
		case 0x09: reg = cfi_uleb(&p, end); cfi_uleb(&p, end); if (reg == 6 || reg == 16) st->bad = true; break;
		case 0x0a: if (depth == 8) return false; stack[depth++] = *st; break;
		case 0x0b: if (!depth) return false; { bool ra = st->ra_undefined; *st = stack[--depth]; (void)ra; } break;
		case 0x0c: st->cfa_reg = (uint8_t)cfi_uleb(&p, end); st->cfa_off = (int64_t)cfi_uleb(&p, end); break;
		case 0x0d: st->cfa_reg = (uint8_t)cfi_uleb(&p, end); break;
		case 0x0e: st->cfa_off = (int64_t)cfi_uleb(&p, end); break;
		case 0x0f: { uint64_t n = cfi_uleb(&p, end); p += n; st->bad = true; break; } /* def_cfa_expression */
		case 0x10: { reg = cfi_uleb(&p, end); uint64_t n = cfi_uleb(&p, end); p += n; if (reg == 6 || reg == 16) st->bad = true; break; }
		case 0x11: reg = cfi_uleb(&p, end); { int64_t off = cfi_sleb(&p, end) * daf; if (reg == 6) st->rbp_off = off; } break;
		case 0x12: st->cfa_reg = (uint8_t)cfi_uleb(&p, end); st->cfa_off = cfi_sleb(&p, end) * daf; break;
		case 0x13: st->cfa_off = cfi_sleb(&p, end) * daf; break;
		case 0x14: case 0x15: reg = cfi_uleb(&p, end); cfi_uleb(&p, end); if (reg == 6 || reg == 16) st->bad = true; break;
		case 0x16: { reg = cfi_uleb(&p, end); uint64_t n = cfi_uleb(&p, end); p += n; if (reg == 6 || reg == 16) st->bad = true; break; }
		case 0x2e: cfi_uleb(&p, end); break; /* GNU_args_size */
		case 0x2f: reg = cfi_uleb(&p, end); { int64_t off = -(int64_t)cfi_uleb(&p, end) * daf; if (reg == 6) st->rbp_off = off; } break;
		default: return false;
		}
	}
	return true;
}

/* Compute the rule at pc. */
static void cfi_compute(uintptr_t pc, struct cfi_rule *r)
{
	r->pc = pc;
	r->state = 3;
	struct cfi_find f = {.pc = pc};
	if (!dl_iterate_phdr(cfi_find_cb, &f) || !f.hdr)
		return;
	const uint8_t *hdr = (const uint8_t *)f.hdr;
	if (hdr[0] != 1 || hdr[3] != 0x3b)
		return;
	const uint8_t *p = hdr + 4, *hend = hdr + 64;
	uintptr_t ehp, count;
	if (!cfi_ptr(&p, hend, hdr[1], f.hdr, &ehp) || !cfi_ptr(&p, hend, hdr[2], f.hdr, &count) || !count)
		return;
	const int32_t *table = (const int32_t *)p;
	size_t lo = 0, hi = count;
	while (lo + 1 < hi) {
		size_t mid = (lo + hi) / 2;
		if (f.hdr + (intptr_t)table[2 * mid] <= pc)
			lo = mid;
		else
			hi = mid;
	}
	if (f.hdr + (intptr_t)table[2 * lo] > pc)
		return;
	const uint8_t *fde = (const uint8_t *)(f.hdr + (intptr_t)table[2 * lo + 1]);
	uint32_t flen;
	memcpy(&flen, fde, 4);
	if (flen == 0 || flen == 0xffffffffu)
		return;
	const uint8_t *fend = fde + 4 + flen;
	int32_t cie_ptr;
	memcpy(&cie_ptr, fde + 4, 4);
	const uint8_t *cie = fde + 4 - cie_ptr;
	uint32_t clen;
	memcpy(&clen, cie, 4);
	if (clen == 0 || clen == 0xffffffffu)
		return;
	const uint8_t *cend = cie + 4 + clen, *c = cie + 8;
	uint8_t version = *c++;
	const char *aug = (const char *)c;
	c += strlen(aug) + 1;
	if (aug[0] && aug[0] != 'z')
		return;
	uint64_t caf = cfi_uleb(&c, cend);
	int64_t daf = cfi_sleb(&c, cend);
	if (version == 1)
		c++;
	else
		cfi_uleb(&c, cend);
	uint8_t fde_enc = 0;
	if (aug[0] == 'z') {
		uint64_t alen = cfi_uleb(&c, cend);
		const uint8_t *aend = c + alen;
		for (const char *a = aug + 1; *a; a++) {
			if (*a == 'R') {
				fde_enc = *c++;
			} else if (*a == 'P') {
				uintptr_t pv;
				uint8_t penc = *c++;
				if (!cfi_ptr(&c, aend, penc & 0x7f, 0, &pv))
					return;
			} else if (*a == 'L') {
				c++;
			} else {
				return; /* 'S' (signal frame) and the rest: libunwind knows */
			}
		}
		c = aend;
	}
	struct cfi_state init = {.cfa_reg = 7, .cfa_off = 8};
	if (!cfi_run(c, cend, 0, 0, caf, daf, &init, NULL, fde_enc) || init.bad)
		return;
	p = fde + 8;
	uintptr_t start, range;
	if (!cfi_ptr(&p, fend, fde_enc, 0, &start) || !cfi_ptr(&p, fend, fde_enc & 0x0f, 0, &range))
		return;
	if (pc < start || pc >= start + range)
		return;
	if (aug[0] == 'z') {
		uint64_t alen = cfi_uleb(&p, fend);
		p += alen;
	}
	struct cfi_state st = init;
	if (!cfi_run(p, fend, start, pc, caf, daf, &st, &init, fde_enc) || st.bad)
		return;
	if (st.ra_undefined) {
		r->state = 2;
		return;
	}
	if ((st.cfa_reg != 6 && st.cfa_reg != 7) || st.cfa_off <= 0 || st.cfa_off > (1 << 24))
		return;
	r->cfa_reg = st.cfa_reg;
	r->cfa_off = (int32_t)st.cfa_off;
	r->rbp_off = (int32_t)st.rbp_off;
	r->state = 1;
}

/* What a walk read (cfi_backtrace's rd): every stack word it loaded, with
 * its value, and whether the starting RBP was used before one was loaded.
 * A walk is a function of its start (ip, sp, and bp where used), the rules
 * and these words: the same start and the same words give the same frames
 * (stack.c's walk memo). n -1: more words than max (not kept). */
struct cfi_reads {
	int n, max;
	bool bp_in;
	uintptr_t *addr;
	uint64_t *val;
};

static inline void cfi_read(struct cfi_reads *rd, uintptr_t at, uint64_t v)
{
	if (!rd || rd->n < 0)
		return;
	if (rd->n == rd->max) {
		rd->n = -1;
		return;
	}
	rd->addr[rd->n] = at;
	rd->val[rd->n++] = v;
}

/* Walk from (ip, sp, bp) within [sp, stack_hi). exact: ip is where the
 * thread is (else a return address, looked up at ip - 1). Returns the frame
 * count, or -1 when a frame's rule is not one we handle (use libunwind).
 * rd (or NULL): what the walk read. */
static int cfi_backtrace(struct cfi_rule *rules, uintptr_t ip, uintptr_t sp, uintptr_t bp, uintptr_t stack_hi,
			 bool exact, void **out, int max, struct cfi_reads *rd)
{
	int n = 0;
	bool first = exact, bp_loaded = false;
	if (rd) {
		rd->n = 0;
		rd->bp_in = false;
	}
	while (n < max) {
		out[n++] = (void *)ip;
		uintptr_t pc = first ? ip : ip - 1;
		first = false;
		struct cfi_rule *r = &rules[(pc >> 1) & (CFI_RULES - 1)];
		if (r->pc != pc || !r->state)
			cfi_compute(pc, r);
		if (r->state == 2)
			return n;
		if (r->state != 1)
			return -1;
		if (r->cfa_reg != 7 && !bp_loaded && rd)
			rd->bp_in = true;
		uintptr_t cfa = (r->cfa_reg == 7 ? sp : bp) + (uintptr_t)(intptr_t)r->cfa_off;
		if (cfa <= sp || cfa > stack_hi || (cfa & 7))
			return -1;
		uintptr_t ra;
		memcpy(&ra, (const void *)(cfa - 8), 8);
		cfi_read(rd, cfa - 8, ra);
		if (r->rbp_off) {
			uintptr_t at = cfa + (uintptr_t)(intptr_t)r->rbp_off;
			if (at < sp || at + 8 > stack_hi)
				return -1;
			memcpy(&bp, (const void *)at, 8);
			cfi_read(rd, at, bp);
			bp_loaded = true;
		}
		sp = cfa;
		ip = ra;
		if (!ip)
			return n;
	}
	return n;
}

#endif
