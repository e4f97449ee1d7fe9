/* Time spent in the kernel: read(2) of /dev/zero and getppid(2) in a loop.
 *   syscall_loop N: N rounds (default 300000).
 * Known facts: most CPU samples are in the kernel, under __libc_read and
 * getppid; with kernel stacks recorded, read_zero and do_syscall_64 show. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 300000;
    char b[4096]; int fd = open("/dev/zero", O_RDONLY);
    for (long i = 0; i < n; i++) { if (read(fd, b, sizeof b) < 0) return 1; getppid(); }
    return 0;
}
