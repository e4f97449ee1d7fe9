/* libunwind remote accessors over a sampled stack (see unwind.h), after the
 * pattern of perf's unwind-libunwind-local.c: find_proc_info locates the
 * image's .eh_frame_hdr and lets libunwind binary-search it; access_mem
 * serves stack addresses from the copy and image addresses from the file. */
#include <errno.h>
#include <libunwind.h>
#include <string.h>
#include <sys/uio.h>
#include "collect/recorder.h"
#include "collect/unwind.h"
#include "symbols/image.h"

extern int UNW_OBJ(dwarf_search_unwind_table)(unw_addr_space_t as, unw_word_t ip, unw_dyn_info_t *di,
					      unw_proc_info_t *pi, int need_unwind_info, void *arg);

struct uctx {
	struct recorder *r;
	uint32_t pid;
	const struct unwind_regs *regs;
	const struct unwind_mem *mem;
	bool oob; /* a read fell outside what we have */
	bool noinfo; /* no unwind table for a frame: libunwind's next step would be a guess */
};

static int find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi, int need_unwind_info,
			  void *arg)
{
	struct uctx *u = arg;
	uint64_t bias, ms, me;
	const struct image *img = recorder__image_at(u->r, u->pid, ip, &bias, &ms, &me);
	if (!img || !img->eh_hdr_vaddr) {
		u->noinfo = true;
		return -UNW_ENOINFO;
	}
	unsigned char hdr[12];
	if (image__read(img, img->eh_hdr_vaddr, hdr, sizeof(hdr)) < 0)
		return -UNW_ENOINFO;
	/* version 1, eh_frame_ptr pcrel|sdata4, fde_count udata4, table datarel|sdata4 */
	if (hdr[0] != 1 || hdr[2] != 0x03 || hdr[3] != 0x3b)
		return -UNW_ENOINFO;
	uint32_t fde_count;
	memcpy(&fde_count, hdr + 8, 4);
	unw_dyn_info_t di;
	memset(&di, 0, sizeof(di));
	di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
	di.start_ip = img->lo + bias;
	di.end_ip = img->hi + bias;
	di.u.rti.segbase = img->eh_hdr_vaddr + bias;
	di.u.rti.table_data = img->eh_hdr_vaddr + bias + 12;
	di.u.rti.table_len = fde_count * 8 / sizeof(unw_word_t);
	int rc = UNW_OBJ(dwarf_search_unwind_table)(as, ip, &di, pi, need_unwind_info, arg);
	if (rc < 0)
		u->noinfo = true;
	return rc;
}

static void put_unwind_info(unw_addr_space_t as, unw_proc_info_t *pi, void *arg)
{
}

static int get_dyn_info_list_addr(unw_addr_space_t as, unw_word_t *dil_addr, void *arg)
{
	return -UNW_ENOINFO;
}

static int access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *valp, int write, void *arg)
{
	struct uctx *u = arg;
	if (write)
		return -UNW_EINVAL;
	const struct unwind_mem *m = u->mem;
	if (addr >= m->sp && m->size >= sizeof(*valp) && addr - m->sp <= m->size - sizeof(*valp)) {
		memcpy(valp, m->stack + (addr - m->sp), sizeof(*valp));
		return 0;
	}
	uint64_t bias;
	const struct image *img = recorder__image_at(u->r, u->pid, addr, &bias, NULL, NULL);
	if (img && image__read(img, addr - bias, valp, sizeof(*valp)) == 0)
		return 0;
	if (m->live_pid > 0) {
		struct iovec local = {valp, sizeof(*valp)}, remote = {(void *)addr, sizeof(*valp)};
		if (process_vm_readv(m->live_pid, &local, 1, &remote, 1, 0) == sizeof(*valp))
			return 0;
	}
	/* Just below or above the copied stack: the copy was too small. */
	if (addr >= m->sp)
		u->oob = true;
	*valp = 0;
	return -UNW_EINVAL;
}

static int access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *valp, int write, void *arg)
{
	struct uctx *u = arg;
	const struct unwind_regs *r = u->regs;
	if (write)
		return -UNW_EREADONLYREG;
	switch (reg) {
	case UNW_X86_64_RAX: *valp = r->ax; break;
	case UNW_X86_64_RDX: *valp = r->dx; break;
	case UNW_X86_64_RCX: *valp = r->cx; break;
	case UNW_X86_64_RBX: *valp = r->bx; break;
	case UNW_X86_64_RSI: *valp = r->si; break;
	case UNW_X86_64_RDI: *valp = r->di; break;
	case UNW_X86_64_RBP: *valp = r->bp; break;
	case UNW_X86_64_RSP: *valp = r->sp; break;
	case UNW_X86_64_R8: *valp = r->r8; break;
	case UNW_X86_64_R9: *valp = r->r9; break;
	case UNW_X86_64_R10: *valp = r->r10; break;
	case UNW_X86_64_R11: *valp = r->r11; break;
	case UNW_X86_64_R12: *valp = r->r12; break;
	case UNW_X86_64_R13: *valp = r->r13; break;
	case UNW_X86_64_R14: *valp = r->r14; break;
	case UNW_X86_64_R15: *valp = r->r15; break;
	case UNW_X86_64_RIP: *valp = r->ip; break;
	default: return -UNW_EBADREG;
	}
	return 0;
}

static int access_fpreg(unw_addr_space_t as, unw_regnum_t num, unw_fpreg_t *val, int write, void *arg)
{
	return -UNW_EINVAL;
}

static int resume(unw_addr_space_t as, unw_cursor_t *cu, void *arg)
{
	return -UNW_EINVAL;
}

static int get_proc_name(unw_addr_space_t as, unw_word_t addr, char *bufp, size_t buf_len, unw_word_t *offp,
			 void *arg)
{
	return -UNW_EINVAL;
}

static unw_accessors_t accessors = {
	.find_proc_info = find_proc_info,
	.put_unwind_info = put_unwind_info,
	.get_dyn_info_list_addr = get_dyn_info_list_addr,
	.access_mem = access_mem,
	.access_reg = access_reg,
	.access_fpreg = access_fpreg,
	.resume = resume,
	.get_proc_name = get_proc_name,
};

void *unwind__new_as(void)
{
	unw_addr_space_t as = unw_create_addr_space(&accessors, 0);
	if (as)
		unw_set_caching_policy(as, UNW_CACHE_GLOBAL);
	return as;
}

void unwind__free_as(void *as)
{
	unw_destroy_addr_space(as);
}

/* CPython's perf trampoline (-X perf, 3.12+): copies of
 * _Py_trampoline_func_start in anonymous memory, with no unwind table:
 *   sub $8,%rsp; call *%rcx; add $8,%rsp; ret
 * Its one frame is known: above a return address into it (after the call)
 * the caller's return address is at sp+8 and its sp is sp+16. */
static const unsigned char py_trampoline[] = {0x48, 0x83, 0xec, 0x08, 0xff, 0xd1, 0x48, 0x83, 0xc4, 0x08, 0xc3};
#define PY_TRAMPOLINE_RET 6

static bool is_py_trampoline_return(struct uctx *u, uint64_t ip)
{
	unsigned char code[sizeof(py_trampoline)];
	uint64_t bias;
	if (ip < PY_TRAMPOLINE_RET || recorder__image_at(u->r, u->pid, ip, &bias, NULL, NULL))
		return false; /* in a file: its own tables say how to unwind it */
	struct iovec l = {code, sizeof(code)}, r = {(void *)(uintptr_t)(ip - PY_TRAMPOLINE_RET), sizeof(code)};
	return process_vm_readv((pid_t)u->pid, &l, 1, &r, 1, 0) == (ssize_t)sizeof(code) &&
	       !memcmp(code, py_trampoline, sizeof(code));
}

static uint64_t cursor_reg(unw_cursor_t *c, unw_regnum_t reg)
{
	unw_word_t v = 0;
	unw_get_reg(c, reg, &v);
	return v;
}

int unwind__stack(struct recorder *r, uint32_t pid, const struct unwind_regs *regs,
		  const struct unwind_mem *mem, uint64_t *ips, int max, bool *truncated)
{
	struct uctx u = {.r = r, .pid = pid, .regs = regs, .mem = mem};
	unw_addr_space_t as = recorder__unw_as(r, pid);
	struct unwind_regs resumed; /* the registers above a trampoline, to start again from */
	*truncated = false;
	int n = 0;
	if (max <= 0)
		return 0;
	ips[n++] = regs->ip;
	unw_cursor_t c;
	if (!as || unw_init_remote(&c, as, &u) < 0) {
		*truncated = true;
		return n;
	}
	for (;;) {
		if (n >= 2 && is_py_trampoline_return(&u, cursor_reg(&c, UNW_REG_IP))) {
			/* CPython's trampoline has no unwind table, but its one frame
			 * is known: the walk goes on above it, from the registers the
			 * cursor has (the trampoline changes none but rsp) */
			unw_word_t sp = cursor_reg(&c, UNW_REG_SP), ra = 0;
			if (access_mem(as, sp + 8, &ra, 0, &u) < 0 || !ra || n == max) {
				*truncated = true;
				break;
			}
			resumed = (struct unwind_regs){
				.ip = ra, .sp = sp + 16, .bp = cursor_reg(&c, UNW_X86_64_RBP),
				.bx = cursor_reg(&c, UNW_X86_64_RBX), .r12 = cursor_reg(&c, UNW_X86_64_R12),
				.r13 = cursor_reg(&c, UNW_X86_64_R13), .r14 = cursor_reg(&c, UNW_X86_64_R14),
				.r15 = cursor_reg(&c, UNW_X86_64_R15),
			};
			u.regs = &resumed;
			ips[n++] = ra;
			if (unw_init_remote(&c, as, &u) < 0) {
				*truncated = true;
				break;
			}
			continue;
		}
		u.noinfo = false;
		int s = unw_step(&c);
		if (s < 0) {
			*truncated = true;
			break;
		}
		if (u.noinfo) {
			/* libunwind found no table for the frame it stepped from: what
			 * it did instead is a guess, never kept. The stack ends here:
			 * cut short, unless libunwind itself took this for the
			 * outermost frame (as at the dynamic linker's entry). */
			*truncated = s > 0;
			break;
		}
		if (s == 0)
			break; /* the outermost frame */
		unw_word_t ip;
		if (unw_get_reg(&c, UNW_REG_IP, &ip) < 0) {
			*truncated = true;
			break;
		}
		if (!ip)
			break;
		if (n == max) {
			*truncated = true;
			break;
		}
		ips[n++] = ip;
	}
	return n;
}
