/* Stacks that start alike: the same call into malloc at the same stack
 * pointer, reached through different callers (the shim's walk memo must
 * tell them apart by what the walk reads, not by where it starts).
 *   twins: leaf() called from via_a() and via_b(), two functions with the
 *     same frame called from main at the same depth, taken in turn.
 *   alloca: grab() has a frame-pointer frame (alloca); called from the
 *     same place, it calls malloc itself or calls itself once to do so, its
 *     alloca sized so that malloc is called at the same stack pointer both
 *     times (measured, not assumed: the program says "same sp" or exits 2).
 *     Called in turn from one place in main, nothing between them: the
 *     outer grab's frame is where it was and the inner one's words stay in
 *     the outer's alloca; every stack word a walk reads is the same, only
 *     the frame pointer tells the two apart.
 * usage: memo_twins [rounds]   (default 100000)
 * Known facts for R rounds: alloc_count leaf under via_a R, under via_b R;
 * alloc_bytes via_a 100 R, via_b 200 R; call_grab;grab 111 R bytes,
 * call_grab;grab;grab 222 R bytes; main's own 16 R bytes (an array of
 * pointers); nothing of leaf's or grab's leaks (stdout's buffer does). */
#include <alloca.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")

static uintptr_t seen_sp;

__attribute__((noinline)) static void *leaf(size_t n) { void *p = malloc(n); ESCAPE(p); return p; }
/* alike, not identical (the compiler would fold them into one) */
static volatile long calls_a, calls_b;
__attribute__((noinline)) static void *via_a(size_t n) { void *p = leaf(n); ESCAPE(p); calls_a++; return p; }
__attribute__((noinline)) static void *via_b(size_t n) { void *p = leaf(n); ESCAPE(p); calls_b++; return p; }

/* n 0: only measure where malloc would be called from. depth 1: call
 * itself (from the same place each time), its inner call with inner_pad */
__attribute__((noinline)) static void *grab(size_t pad, size_t inner_pad, size_t n, int depth)
{
	char *buf = alloca(pad);
	ESCAPE(buf);
	if (depth) {
		void *p = grab(inner_pad, 0, n, depth - 1);
		ESCAPE(p);
		return p;
	}
	if (!n) {
		uintptr_t sp;
		__asm__ volatile("mov %%rsp, %0" : "=r"(sp));
		seen_sp = sp;
		return NULL;
	}
	void *p = malloc(n);
	ESCAPE(p);
	return p;
}
/* one call site for grab, whatever the case */
__attribute__((noinline)) static void *call_grab(size_t pad, size_t inner_pad, size_t n, int depth)
{
	void *p = grab(pad, inner_pad, n, depth);
	ESCAPE(p);
	return p;
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 100000;
	/* the pad that puts the outer grab's alloca, so its call into malloc,
	 * where the inner one's is when the outer has a pad of 64 */
	call_grab(64, 64, 0, 1);
	uintptr_t sp_inner = seen_sp;
	call_grab(64, 0, 0, 0);
	uintptr_t sp_outer = seen_sp;
	if (sp_outer <= sp_inner) {
		fprintf(stderr, "memo_twins: the outer grab is not above the inner one\n");
		return 2;
	}
	size_t pad_outer = 64 + (sp_outer - sp_inner);
	call_grab(pad_outer, 0, 0, 0);
	if (seen_sp != sp_inner) {
		fprintf(stderr, "memo_twins: could not call grab at one sp (%#lx vs %#lx)\n", (unsigned long)seen_sp,
			(unsigned long)sp_inner);
		return 2;
	}
	printf("same sp\n");
	for (long i = 0; i < rounds; i++) {
		void *a = via_a(100), *b = via_b(200);
		free(a);
		free(b);
	}
	/* one grab right after the other, nothing called between them (the
	 * frees come after): the stack above the outer grab's alloca still
	 * holds the inner grab's frame of the call before */
	void **keep = malloc(2 * (size_t)rounds * sizeof *keep);
	for (long i = 0; i < 2 * rounds; i++) /* one call site: the same return address into main */
	{
		size_t pad = (i & 1) ? 64 : pad_outer, n = (i & 1) ? 222 : 111;
		__asm__ volatile("" : "+r"(pad), "+r"(n));
		keep[i] = call_grab(pad, 64, n, (int)(i & 1));
	}
	for (long i = 0; i < 2 * rounds; i++)
		free(keep[i]);
	free(keep);
	printf("memo_twins done %ld %ld %ld\n", rounds, calls_a, calls_b);
	return 0;
}
