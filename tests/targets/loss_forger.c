/* A hostile program under kiln record --heap: it sends forged loss messages
 * on the shim's channel ($KILN_FD), each naming a pid of its own.
 *   loss_forger N VERSION: N messages of ring-protocol VERSION, pids from
 *   4,000,000 up (none alive), then leaks 1,000 bytes in forged_leak() and
 *   exits 0.
 * Known facts: the recorder keeps no process, and the profile no record,
 * for the forged pids; leak_bytes under forged_leak = 1000. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
struct msg { uint32_t magic; uint16_t type, version; uint32_t pid, tid; uint64_t cause, count; };
static void *keep;
__attribute__((noinline)) static void forged_leak(void) { keep = malloc(1000); __asm__ volatile("" : : "r"(keep) : "memory"); }
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long n = atol(argv[1]);
    const char *fdv = getenv("KILN_FD");
    int fd = fdv ? atoi(fdv) : -1;
    long sent = 0;
    for (long i = 0; fd >= 0 && i < n; i++) {
        struct msg m = {0x6b6d7367u, 2, (uint16_t)atoi(argv[2]), (uint32_t)(4000000 + i), 1, 0, 1000000};
        if (send(fd, &m, sizeof(m), MSG_NOSIGNAL) == (ssize_t)sizeof(m)) sent++;
    }
    forged_leak();
    printf("forged %ld of %ld\n", sent, n);
    return 0;
}
