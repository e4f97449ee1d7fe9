/* Calling functions inside a running process with ptrace alone (what gdb's
 * `call` does), for heap tracking of a process kiln did not launch.
 *
 *   inject__begin: stop ONE thread at a safe point (not inside the allocator,
 *                  the dynamic linker or the shim; preferably one whose
 *                  calls can be kill-safe: enum round in inject.c), save
 *                  its registers, its whole FPU/vector state and its mask
 *   inject__call:  registers for fn(args) and continue; the call returns
 *                  through a signal frame that puts the thread back as it
 *                  was even if kiln is killed meanwhile (inject.c: "calls
 *                  that return through a signal frame"), or, where that
 *                  cannot be, to address 0, whose SIGSEGV kiln catches
 *   inject__end:   every register back, detach: an interrupted system call
 *                  restarts as if nothing happened; signals that arrived
 *                  meanwhile are sent again
 *
 * Only the chosen thread stops, and only for the calls. */
#ifndef KILN_COLLECT_INJECT_H
#define KILN_COLLECT_INJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

struct injector;

/* Stop a thread of pid at a safe point (tries each thread for up to
 * timeout_ms). 0, or -errno with a one-line reason in err. */
int inject__begin(pid_t pid, int timeout_ms, struct injector **out, char *err, size_t n);
/* Copy n bytes onto the stopped thread's stack (below its red zone), for
 * the calls' arguments: the address they are at, or 0. */
uint64_t inject__push(struct injector *in, const void *data, size_t n);
/* Call fn(a0, a1, a2) in the thread and wait up to timeout_ms for it to
 * return. 0 and *ret, or -errno (-ETIMEDOUT, -ESRCH: the process died,
 * -EFAULT: the call crashed). */
int inject__call(struct injector *in, uint64_t fn, uint64_t a0, uint64_t a1, uint64_t a2, int timeout_ms,
		 uint64_t *ret);
/* The same for a call whose result is not needed (dlopen: its mapping
 * tells; close). 0 or -errno. */
int inject__call_void(struct injector *in, uint64_t fn, uint64_t a0, uint64_t a1, uint64_t a2, int timeout_ms);
/* The loaded shim's kiln_call_return: every call from now on returns
 * through it (its result kept), kill-safe. */
void inject__return_via(struct injector *in, uint64_t tramp);
/* How many calls were made, and how many of them returned through a signal
 * frame (would have left the thread where it was had kiln been killed);
 * how many waits with a timeout kiln's stops ended with EINTR (tracee.h:
 * the threads it stopped to choose one, and the one it took). */
void inject__counts(const struct injector *in, int *calls, int *framed, int *waits_ended);
/* Read memory of the process. 0 or -errno. */
int inject__read(struct injector *in, uint64_t addr, void *out, size_t n);
/* Restore and let the thread go. The time it was stopped, in ns. */
uint64_t inject__end(struct injector *in);

/* While *flag is set (kiln's own SIGINT or SIGTERM), a call in progress
 * ends at once, as a timeout does (-EINTR). */
void inject__cancel_on(volatile sig_atomic_t *flag);
pid_t inject__tid(const struct injector *in);

/* The runtime address of symbol in the first executable mapping of pid whose
 * path contains lib (NULL: any). 0, or -ENOENT. */
int inject__symbol(pid_t pid, const char *lib, const char *symbol, uint64_t *addr, uint64_t *size);
/* The same for the mapping of the file with this device and inode. */
int inject__symbol_ino(pid_t pid, dev_t dev, ino_t ino, const char *symbol, uint64_t *addr);
/* Whether a module of pid other than the C library defines malloc (its own
 * allocator: jemalloc, tcmalloc, one built in), and which, into path. */
bool inject__own_malloc(pid_t pid, char *path, size_t n);
/* A heap shim already loaded in pid (an earlier attach's) holding the very
 * bytes of fd: 0 with its mapping's device and inode; -EEXIST when a shim
 * is loaded that is another (another kiln's), -ENOENT when none is. */
int inject__loaded_copy(pid_t pid, int fd, dev_t *dev, ino_t *ino);
/* Whether pid maps a dynamic linker (else it is static: nothing can be
 * loaded into it). */
bool inject__dynamic(pid_t pid);

#endif
