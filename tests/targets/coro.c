/* Allocations on coroutine stacks (makecontext/swapcontext), which lie outside
 * the thread's own stack: a profiler's unwinder must not read past them.
 *   coro N: N switches into a coroutine (on a 64 KiB malloc'd stack) that
 *   leaks one 100-byte block in coro_leak() and frees one 50-byte block.
 * Known facts: leak in coro_leak: N blocks, N*100 B; alloc_count in
 * coro_leak + coro_temp = 2N. */
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
static ucontext_t main_ctx, co_ctx;
static void *keep[100000]; static int nk;
__attribute__((noinline)) static void coro_leak(void) { keep[nk] = malloc(100); ESCAPE(keep[nk]); nk++; }
__attribute__((noinline)) static void coro_temp(void) { void *p = malloc(50); ESCAPE(p); free(p); }
static void body(void) { for (;;) { coro_leak(); coro_temp(); swapcontext(&co_ctx, &main_ctx); } }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    if (n > 100000) return 2;
    size_t sz = 64 * 1024;
    char *stack = malloc(sz);
    getcontext(&co_ctx);
    co_ctx.uc_stack.ss_sp = stack; co_ctx.uc_stack.ss_size = sz; co_ctx.uc_link = &main_ctx;
    makecontext(&co_ctx, body, 0);
    for (int i = 0; i < n; i++) swapcontext(&main_ctx, &co_ctx);
    printf("coro done %d\n", nk);
    return 0;
}
