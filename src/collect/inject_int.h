/* What the injector's parts share, inside src/collect only:
 *   inject.c        stopping a thread at a safe point, the calls, the end
 *   inject_maps.c   the target's maps and symbols (untrusted, bounded)
 *   inject_frame.c  calls that return through a signal frame (kill-safe) */
#ifndef KILN_COLLECT_INJECT_INT_H
#define KILN_COLLECT_INJECT_INT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#define XSTATE_MAX 32768
#define MAX_PENDING 64

struct range {
	uint64_t lo, hi;
};

struct injector {
	pid_t pid, tid;
	struct user_regs_struct saved;
	unsigned char *xstate;
	size_t xlen;
	uint64_t cursor; /* next free byte below the saved stack, growing down */
	uint64_t stopped_at;
	siginfo_t pending[MAX_PENDING]; /* signals that arrived during the calls, as they came */
	int npending;
	bool dead;
	/* calls that return through a signal frame (kill-safe, see frame_call) */
	uint64_t mask;	    /* the thread's signal mask, as stopped */
	int marker;	    /* an ignored signal that tells a call's end, or 0: none free */
	uint64_t restorer;  /* libc's rt_sigreturn (__restore_rt), 0 not looked for, 1 none */
	uint64_t via;	    /* the shim's kiln_call_return, once it is loaded */
	unsigned char *framestate; /* the XSAVE area as a signal frame holds it */
	uint32_t xsize;	    /* its size, 0: no frame */
	bool mask_set;	    /* a call changed the mask: put it back at the end */
	int calls, framed;
	int waits_ended; /* timed waits our stops ended with EINTR (tracee.h) */
};

/* The runtime's own modules, which kiln treats apart. */
enum runtime_module { RT_OTHER, RT_LIBC, RT_LD, RT_SHIM };

struct unsafe {
	struct range libc, ld, shim, lockwait[2];
	uint64_t got_owner; /* the loaded shim's kiln_got_owner, or 0 */
	pid_t pid;
};

char *inject_read_maps(pid_t pid);
enum runtime_module inject_runtime_module(const char *path);
/* Where libc, ld.so and the shim are, and the lock-wait functions. */
void inject_unsafe_ranges(pid_t pid, struct unsafe *u);
/* Wait for tid to stop, up to ms. 1 stopped (*status), 0 not yet, -1 gone. */
int inject_wait_tid(pid_t tid, int *status, int ms);
/* Keep a signal that arrived during a call, to send again at the end. */
void inject_hold_signal(struct injector *in, int sig);
extern volatile sig_atomic_t *inject_cancel_flag;
/* r set for a call of fn(a0, a1, a2) with its stack at sp (the return
 * address there), nothing to restart. */
void inject_call_regs(struct user_regs_struct *r, uint64_t fn, uint64_t sp, uint64_t a0, uint64_t a1, uint64_t a2);

/* inject_frame.c: at inject__begin, what a framed call needs (the marker,
 * the XSAVE area as a frame holds it) */
void inject_frame_prepare(struct injector *in);
/* The registers thread tid, stopped at regs, resumes with (an interrupted
 * system call set to run again); false where it restarts through its
 * restart block, which rt_sigreturn would reset (that restart made ready
 * and not yet made included). */
bool inject_resumed(pid_t tid, const struct user_regs_struct *regs, struct user_regs_struct *out);
/* libc's rt_sigreturn (__restore_rt) in pid, or 1: none found. */
uint64_t inject_find_restorer(pid_t pid);
/* Whether a call can return through a frame into via. */
bool inject_framed(const struct injector *in, uint64_t via);
int inject_frame_call(struct injector *in, uint64_t via, uint64_t fn, uint64_t a0, uint64_t a1, uint64_t a2,
		      int timeout_ms, uint64_t *ret);

#endif
