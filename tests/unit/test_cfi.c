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
	int n = cfi_backtrace(rules, ip, sp, bp, stack_hi(), true, ours, 64);
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
