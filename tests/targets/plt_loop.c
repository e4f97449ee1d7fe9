/* Calls through the PLT in a tight loop (built -fno-builtin, so memcpy and
 * abs stay calls): samples land in the PLT stubs too.
 * Known facts: the stubs are memcpy@plt and abs@plt, never _init. */
#include <stdlib.h>
#include <string.h>
volatile int sink;
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000000;
    char a[64] = "x", b[64];
    for (long i = 0; i < n; i++) { memcpy(b, a, (size_t)(i & 31)); sink += abs((int)i); }
    return 0;
}
