/* A hostile program: it writes random words into kiln's shared-memory rings
 * (the "memfd:kiln-ring" mappings it can see in /proc/self/maps) while it
 * allocates, as a program with a wild pointer, or one that attacks its
 * profiler, would.
 *   ring_scribbler N SEED: N rounds of (1000 malloc+free pairs in work(),
 *   then 64 random words written at random places of every ring mapped).
 * Known facts: kiln must not crash, hang or grow without bound; the rings it
 * finds broken are reported as lost (ring_corrupt), never as silent data.
 * Prints "scribbled K words" at the end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
static uint64_t rng;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
__attribute__((noinline)) static void work(void) { for (int i = 0; i < 1000; i++) { void *p = malloc(16 + next() % 512); ESCAPE(p); free(p); } }
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200;
    rng = argc > 2 ? strtoull(argv[2], NULL, 10) | 1 : 88172645463325252ULL;
    long words = 0;
    for (long r = 0; r < n; r++) {
        work();
        FILE *f = fopen("/proc/self/maps", "r");
        if (!f) return 1;
        char line[512];
        uintptr_t lo[64], hi[64]; int k = 0;
        while (k < 64 && fgets(line, sizeof line, f))
            if (strstr(line, "kiln-ring") && sscanf(line, "%lx-%lx", &lo[k], &hi[k]) == 2) k++;
        fclose(f);
        for (int i = 0; i < k; i++)
            for (int w = 0; w < 64; w++) {
                uint64_t *p = (uint64_t *)(lo[i] + (next() % ((hi[i] - lo[i]) / 8)) * 8);
                *p = (next() & 1) ? next() : next() % 4096; /* small values look plausible */
                words++;
            }
    }
    printf("scribbled %ld words\n", words);
    return 0;
}
