/* DWARF-CFI unwinding of another process's stack with libunwind's remote
 * API, from a register set and a copy of the top of its stack (perf's
 * PERF_SAMPLE_STACK_USER, or process_vm_readv under ptrace). Unwind tables
 * are read from the ELF files the recorder knows the process maps. */
#ifndef KILN_COLLECT_UNWIND_H
#define KILN_COLLECT_UNWIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct recorder;

/* The registers unwinding needs, x86-64. */
struct unwind_regs {
	uint64_t ip, sp, bp, bx, r12, r13, r14, r15;
	uint64_t ax, cx, dx, si, di, r8, r9, r10, r11;
};

struct unwind_mem {
	const unsigned char *stack; /* copy of memory at [sp, sp+size) */
	uint64_t sp;
	size_t size;
	pid_t live_pid; /* >0: read beyond the copy with process_vm_readv */
};

void *unwind__new_as(void);
void unwind__free_as(void *as);

/* Unwind into ips (leaf first, ips[0] = regs->ip). Returns the count;
 * *truncated is set when the walk stopped before the outermost frame (stack
 * copy too small, no unwind info, or max reached). */
int unwind__stack(struct recorder *r, uint32_t pid, const struct unwind_regs *regs,
		  const struct unwind_mem *mem, uint64_t *ips, int max, bool *truncated);

#endif
