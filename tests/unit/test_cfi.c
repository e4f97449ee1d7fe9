/* The shim's CFI unwinder against libunwind on the same stacks: the frames
 * it finds must be libunwind's, for -O2 code without frame pointers. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sys/mman.h>
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include "shim/cfi.h"

static struct cfi_rule *rules;
static uintptr_t stack_hi(void)
{
	pthread_attr_t a;
	void *addr;
	size_t size;
	pthread_getattr_np(pthread_self(), &a);
	pthread_attr_getstack(&a, &addr, &size);
	pthread_attr_destroy(&a);
	return (uintptr_t)addr + size;
}

static int both(void **ours, void **theirs, int *n_theirs)
{
	uintptr_t ip, sp, bp;
	__asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2" : "=r"(ip), "=r"(sp), "=r"(bp));
	int n = cfi_backtrace(rules, ip, sp, bp, stack_hi(), true, ours, 64, NULL);
	*n_theirs = unw_backtrace(theirs, 64);
	return n;
}

__attribute__((noinline)) static int level3(void **a, void **b, int *nb) { int r = both(a, b, nb); __asm__ volatile(""); return r; }
__attribute__((noinline)) static int level2(void **a, void **b, int *nb, int k) { int r = k ? level2(a, b, nb, k - 1) : level3(a, b, nb); __asm__ volatile(""); return r; }
__attribute__((noinline)) static int level1(void **a, void **b, int *nb) { char buf[300]; __asm__ volatile("" : : "r"(buf) : "memory"); int r = level2(a, b, nb, 5); return r + buf[0] * 0; }

static void compare(void)
{
	void *a[64], *b[64];
	int nb;
	int na = level1(a, b, &nb);
	cr_assert_gt(na, 8, "the CFI walk found %d frames", na);
	/* libunwind starts at its caller (both); ours at the asm inside both */
	cr_assert_eq(na, nb, "frames: ours %d, libunwind's %d", na, nb);
	for (int i = 1; i < na; i++)
		cr_assert_eq(a[i], b[i], "frame %d: %p vs %p", i, a[i], b[i]);
}

Test(cfi, same_frames_as_libunwind)
{
	rules = mmap(NULL, sizeof(*rules) * CFI_RULES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	compare();
	compare(); /* again, from the cache */
}

static void *thread_main(void *arg)
{
	compare();
	return arg;
}

Test(cfi, in_a_thread_down_to_clone)
{
	rules = mmap(NULL, sizeof(*rules) * CFI_RULES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pthread_t t;
	pthread_create(&t, NULL, thread_main, NULL);
	pthread_join(t, NULL);
}

/* What a walk read (cfi_reads, the shim's walk memo): every return address
 * it found is a word it read, on the stack (those of this function's
 * callers still there, as read); the same
 * start reads the same words again; a budget too small is said (n -1). */
__attribute__((noinline)) static int walk_reads(struct cfi_reads *rd, void **out, uintptr_t *start)
{
	uintptr_t ip, sp, bp;
	__asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2" : "=r"(ip), "=r"(sp), "=r"(bp));
	start[0] = ip;
	start[1] = sp;
	int n = cfi_backtrace(rules, ip, sp, bp, stack_hi(), true, out, 64, rd);
	__asm__ volatile("");
	return n;
}

Test(cfi, reads_are_what_the_walk_found)
{
	rules = mmap(NULL, sizeof(*rules) * CFI_RULES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t addr[2][64];
	uint64_t val[2][64];
	void *out[2][64];
	uintptr_t st[2][2];
	struct cfi_reads rd[2];
	int n[2];
	for (int r = 0; r < 2; r++) { /* the same start twice (the compiler may make it two call sites) */
		rd[r] = (struct cfi_reads){.max = 64, .addr = addr[r], .val = val[r]};
		n[r] = walk_reads(&rd[r], out[r], st[r]);
	}
	cr_assert_gt(n[0], 2, "the walk found %d frames", n[0]);
	cr_assert_geq(rd[0].n, n[0] - 1, "%d words read for %d frames", rd[0].n, n[0]);
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);
	for (int i = 1; i < n[0]; i++) {
		bool found = false;
		for (int k = 0; k < rd[0].n && !found; k++)
			found = val[0][k] == (uint64_t)(uintptr_t)out[0][i] && addr[0][k] >= st[0][1] && addr[0][k] < stack_hi() &&
				!(addr[0][k] & 7) && (addr[0][k] < here || *(const uint64_t *)addr[0][k] == val[0][k]);
		cr_assert(found, "frame %d's return address %p is not a word the walk read where it was", i, out[0][i]);
	}
	cr_assert_eq(st[0][1], st[1][1], "not the same start");
	cr_assert_eq(n[1], n[0]);
	cr_assert_eq(rd[1].n, rd[0].n);
	cr_assert_eq(memcmp(addr[0], addr[1], sizeof(**addr) * (size_t)rd[0].n), 0, "other addresses read from the same start");
	/* the first word is walk_reads's return address: the call site's */
	cr_assert_eq(val[0][0], (uint64_t)(uintptr_t)out[0][1]);
	cr_assert_eq(val[1][0], (uint64_t)(uintptr_t)out[1][1]);
	for (int k = 1; k < rd[0].n; k++)
		cr_assert_eq(val[0][k], val[1][k], "word %d of %d (at %#lx) read as %#lx, then %#lx", k, rd[0].n,
			     (unsigned long)addr[0][k], (unsigned long)val[0][k], (unsigned long)val[1][k]);
	struct cfi_reads small = {.max = 1, .addr = addr[1], .val = val[1]};
	cr_assert_eq(walk_reads(&small, out[1], st[1]), n[0], "a small budget changes the walk");
	cr_assert_eq(small.n, -1, "a budget of 1 for %d words is not said", rd[0].n);
}
