/* Loading the heap shim into a running process (see heapattach.h). */
#include <dlfcn.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "collect/heapattach.h"
#include "collect/inject.h"
#include "util/util.h"

#define CALL_MS 5000 /* dlopen of the shim: it maps a few pages, runs a constructor */
#define PROBE_MS 1000 /* malloc(64) and free: nothing held while it waits */

static int pidfd_getfd_of(pid_t pid, int fd)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pfd < 0)
		return -errno;
	int got = (int)syscall(SYS_pidfd_getfd, pfd, fd, 0);
	int e = errno;
	close(pfd);
	return got < 0 ? -e : got;
}

/* A seccomp filter is on (/proc's "Seccomp: 2"): a call kiln makes in the
 * program might be one the filter kills it for. */
static bool seccomp_filtered(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	char *t = read_small_file(path, NULL);
	const char *s = t ? strstr(t, "\nSeccomp:") : NULL;
	bool on = s && strtol(s + 9, NULL, 10) != 0;
	free(t);
	return on;
}

/* The descriptor taken from the program is the shim's end of a socket
 * pair of the kind it makes (AF_UNIX, SOCK_SEQPACKET, its peer in that
 * process): anything else (a pipe put at that number by another thread) is
 * refused, not read as a channel on which nothing ever comes. */
static bool channel_ok(int fd, pid_t pid)
{
	struct stat st;
	int type = 0, domain = 0;
	socklen_t l1 = sizeof(type), l2 = sizeof(domain);
	struct ucred cr;
	socklen_t l3 = sizeof(cr);
	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
	       getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) == 0 && type == SOCK_SEQPACKET &&
	       getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l2) == 0 && domain == AF_UNIX &&
	       getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l3) == 0 && cr.pid == pid;
}

/* The descriptor of pid that is the memfd called name, or -1 (none, or
 * more than one). */
static int fd_named(pid_t pid, const char *name)
{
	char dir[64], want[128];
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	snprintf(want, sizeof(want), "/memfd:%s (deleted)", name);
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int found = -1, count = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char path[330], link[160];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		ssize_t k = readlink(path, link, sizeof(link) - 1);
		if (k <= 0)
			continue;
		link[k] = 0;
		if (!strcmp(link, want)) {
			found = atoi(e->d_name);
			count++;
		}
	}
	closedir(d);
	return count == 1 ? found : -1;
}

/* A memfd made in the program (memfd_create, or syscall(SYS_memfd_create)
 * where glibc lacks the wrapper), filled here through /proc/PID/fd/N with the
 * shim's bytes read from sfd: *mfd its number there, *mst what it is. */
static int shim_memfd(struct injector *in, pid_t pid, uint64_t memfd_fn, uint64_t syscall_fn, int sfd, int *mfd,
		      struct stat *mst, char *err, size_t n)
{
	/* a name of this attach's own (/memfd:libkiln_shim.so.KILNPID.N in its
	 * maps): the call's result is not needed, the descriptor is found by
	 * it, so the call is kill-safe too (inject.h) */
	static unsigned serial;
	char name[64];
	snprintf(name, sizeof(name), "libkiln_shim.so.%d.%u.%x", (int)getpid(), ++serial,
		 (unsigned)(now_ns() & 0xffffff));
	uint64_t nm = inject__push(in, name, strlen(name) + 1);
	int rc = !nm ? -EFAULT
	     : memfd_fn ? inject__call_void(in, memfd_fn, nm, 1 /* MFD_CLOEXEC */, 0, CALL_MS)
			: inject__call_void(in, syscall_fn, SYS_memfd_create, nm, 1, CALL_MS);
	int fd = rc < 0 ? -1 : fd_named(pid, name);
	if (rc < 0 || fd < 0) {
		snprintf(err, n, "pid %d could not make a memfd for the heap shim: %s", (int)pid,
			 strerror(rc < 0 ? -rc : EMFILE));
		return rc < 0 ? rc : -EMFILE;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	int out = open(path, O_WRONLY | O_CLOEXEC);
	if (out < 0 || fstat(out, mst) < 0 || !S_ISREG(mst->st_mode) || mst->st_size != 0 || mst->st_nlink != 0) {
		snprintf(err, n, "pid %d: its memfd for the heap shim cannot be written (%s)", (int)pid,
			 out < 0 ? strerror(errno) : "not the empty memfd just made");
		if (out >= 0)
			close(out);
		return -EPERM;
	}
	char buf[65536];
	off_t off = 0;
	for (;;) {
		ssize_t k = pread(sfd, buf, sizeof(buf), off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		if (write(out, buf, (size_t)k) != k) {
			k = -1;
			break;
		}
		off += k;
	}
	struct stat in_st;
	int e = errno;
	if (fstat(sfd, &in_st) < 0 || off != in_st.st_size || fstat(out, mst) < 0 || mst->st_size != off) {
		snprintf(err, n, "pid %d: the heap shim could not be copied into its memfd: %s", (int)pid, strerror(e));
		close(out);
		return -EIO;
	}
	close(out);
	*mfd = fd;
	return 0;
}

/* inject__end, counting the calls made and those that were kill-safe. */
static uint64_t finish(struct heapattach *ha, struct injector *in, bool detaching)
{
	int calls, framed, waits;
	inject__counts(in, &calls, &framed, &waits);
	*(detaching ? &ha->detach_calls : &ha->calls) += calls;
	*(detaching ? &ha->detach_framed : &ha->framed) += framed;
	ha->waits_ended += waits;
	return inject__end(in);
}

static int call_int(struct injector *in, uint64_t fn, uint64_t a0, int *out)
{
	uint64_t ret;
	int rc = inject__call(in, fn, a0, 0, 0, CALL_MS, &ret);
	if (rc == 0)
		*out = (int)(int32_t)ret;
	return rc;
}

int heapattach__start(struct heapattach *ha, pid_t pid, const char *shim_path, pid_t recorder,
		      uint64_t sample, const char *ctl, int *fd, char *err, size_t n)
{
	memset(ha, 0, sizeof(*ha));
	ha->pid = pid;
	*fd = -1;
	if (!inject__dynamic(pid)) {
		snprintf(err, n, "pid %d is statically linked: no library can be loaded into it, so its allocator "
				 "cannot be hooked", (int)pid);
		return -ENOEXEC;
	}
	char tracer[160];
	if (proc_traced_why(pid, tracer, sizeof(tracer))) {
		/* another tracer: its stops ('t') are not the program's */
		snprintf(err, n, "%s", tracer);
		return -EPERM;
	}
	if (proc_state(pid, pid) == 'T' || proc_state(pid, pid) == 't') {
		snprintf(err, n, "pid %d is stopped: kiln attaches to a running process and leaves it as it was "
				 "(send it SIGCONT first)", (int)pid);
		return -EAGAIN;
	}
	if (seccomp_filtered(pid)) {
		snprintf(err, n, "pid %d runs under a seccomp filter: the calls loading the heap shim (mmap, socketpair, "
				 "openat) could kill it, so its heap is not tracked (CPU sampling needs no call: drop --heap)",
			 (int)pid);
		return -EPERM;
	}
	/* the shim goes in as bytes, never as a path: the program's mount
	 * and user namespaces may resolve kiln's path to another file. It is
	 * read here, checked, and copied into a memfd the program makes, which
	 * it loads as /proc/self/fd/N. */
	struct stat st;
	int sfd = open(shim_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (sfd < 0 || fstat(sfd, &st) < 0) {
		snprintf(err, n, "cannot find the heap shim %s: %s", shim_path, strerror(errno));
		if (sfd >= 0)
			close(sfd);
		return -ENOENT;
	}
	if (!S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 022) ||
	    st.st_size <= 0 || st.st_size > (64 << 20)) {
		snprintf(err, n, "the heap shim %s may be written by another user: not loading it into pid %d",
			 shim_path, (int)pid);
		close(sfd);
		return -EPERM;
	}
	uint64_t memfd_fn = 0, syscall_fn = 0, close_fn = 0;
	if (inject__symbol(pid, "libc.so", "memfd_create", &memfd_fn, NULL) < 0 &&
	    inject__symbol(pid, "libc.so", "syscall", &syscall_fn, NULL) < 0) {
		snprintf(err, n, "pid %d has no memfd_create kiln can call (no glibc?): the shim is not loaded by a "
				 "path the program resolves, so its heap is not tracked", (int)pid);
		close(sfd);
		return -ENOENT;
	}
	inject__symbol(pid, "libc.so", "close", &close_fn, NULL);
	uint64_t dlopen_fn, dlerror_fn = 0;
	int flags = RTLD_NOW;
	if (inject__symbol(pid, "libc.so", "dlopen", &dlopen_fn, NULL) < 0 &&
	    inject__symbol(pid, "libdl", "dlopen", &dlopen_fn, NULL) < 0) {
		if (inject__symbol(pid, "libc", "__libc_dlopen_mode", &dlopen_fn, NULL) < 0) {
			snprintf(err, n, "pid %d has no dlopen kiln can find (no glibc?): its allocator cannot be hooked",
				 (int)pid);
			close(sfd);
			return -ENOENT;
		}
		flags = RTLD_NOW | (int)0x80000000; /* __RTLD_DLOPEN */
	} else if (inject__symbol(pid, "libc.so", "dlerror", &dlerror_fn, NULL) < 0) {
		inject__symbol(pid, "libdl", "dlerror", &dlerror_fn, NULL);
	}
	/* glibc's allocator, called first: a lock it waits for (a fork in
	 * another thread that does not end) holds the thread where nothing is
	 * held yet, and it is put back as it was; dlopen, which takes the
	 * loader's lock before it allocates, is called only once it returned.
	 * posix_memalign with an alignment above malloc's takes the arena's
	 * lock (malloc may not: its thread cache), and leaves its result in
	 * memory, so the probe is kill-safe (inject.h) */
	uint64_t memalign_fn = 0, free_fn = 0;
	if (inject__symbol(pid, "libc.so", "posix_memalign", &memalign_fn, NULL) < 0 ||
	    inject__symbol(pid, "libc.so", "free", &free_fn, NULL) < 0)
		memalign_fn = 0;
	struct injector *in;
	int rc = inject__begin(pid, 2000, &in, err, n);
	if (rc < 0) {
		close(sfd);
		return rc;
	}
	ha->tid = inject__tid(in);
	if (memalign_fn) {
		uint64_t blk = 0, at = inject__push(in, &blk, sizeof(blk));
		rc = at ? inject__call_void(in, memalign_fn, at, 64, 64, PROBE_MS) : -EFAULT;
		if (rc == 0 && inject__read(in, at, &blk, sizeof(blk)) == 0 && blk)
			rc = inject__call_void(in, free_fn, blk, 0, 0, PROBE_MS);
		if (rc < 0) {
			snprintf(err, n, "pid %d: its allocator stayed locked for %d ms (a fork that does not end?): "
					 "not loading the heap shim, the thread put back as it was",
				 (int)pid, PROBE_MS);
			ha->stopped_ns = finish(ha, in, false);
			close(sfd);
			return rc;
		}
	}
	/* an earlier attach's shim, the same bytes, is used again (a second
	 * copy could not get the static TLS it needs); another kiln's is not */
	dev_t ldev;
	ino_t lino;
	int lc = inject__loaded_copy(pid, sfd, &ldev, &lino);
	uint64_t handle = 0;
	if (lc == -EEXIST) {
		snprintf(err, n, "pid %d holds the heap shim of another kiln build: attach with that kiln, or restart "
				 "the program", (int)pid);
		close(sfd);
		ha->stopped_ns = finish(ha, in, false);
		return -EEXIST;
	}
	if (lc == 0) {
		st.st_dev = ldev;
		st.st_ino = lino;
		handle = 1;
		rc = 0;
	} else {
		int mfd = -1;
		struct stat mst;
		rc = shim_memfd(in, pid, memfd_fn, syscall_fn, sfd, &mfd, &mst, err, n);
		if (rc < 0) {
			close(sfd);
			ha->stopped_ns = finish(ha, in, false);
			return rc;
		}
		st = mst; /* the shim's symbols are looked up in the memfd's mapping */
		char self[64];
		snprintf(self, sizeof(self), "/proc/self/fd/%d", mfd);
		uint64_t path = inject__push(in, self, strlen(self) + 1);
		/* its result is not needed (the shim's mapping says whether it
		 * loaded), so even this long call is kill-safe */
		rc = path ? inject__call_void(in, dlopen_fn, path, (uint64_t)flags, 0, CALL_MS) : -EFAULT;
		uint64_t probe;
		handle = rc == 0 && inject__symbol_ino(pid, st.st_dev, st.st_ino, "kiln_attach_prepare", &probe) == 0;
		if (close_fn) /* loaded (or not): the descriptor is no longer needed */
			inject__call_void(in, close_fn, (uint64_t)mfd, 0, 0, PROBE_MS);
	}
	if (handle && inject__symbol_ino(pid, st.st_dev, st.st_ino, "kiln_call_return", &ha->return_fn) == 0)
		inject__return_via(in, ha->return_fn);
	close(sfd);
	if (rc < 0 || !handle) {
		char why[256] = "";
		uint64_t msg = 0;
		if (rc == 0 && dlerror_fn && inject__call(in, dlerror_fn, 0, 0, 0, CALL_MS, &msg) == 0 && msg &&
		    inject__read(in, msg, why, sizeof(why) - 1) == 0)
			why[sizeof(why) - 1] = 0;
		snprintf(err, n, "cannot load %s into pid %d: %s", shim_path, (int)pid,
			 rc < 0 ? strerror(-rc) : why[0] ? why : "dlopen failed");
		ha->stopped_ns = finish(ha, in, false);
		return rc < 0 ? rc : -ENOENT;
	}
	uint64_t prep, start;
	if (inject__symbol_ino(pid, st.st_dev, st.st_ino, "kiln_attach_prepare", &prep) < 0 ||
	    inject__symbol_ino(pid, st.st_dev, st.st_ino, "kiln_attach_start", &start) < 0 ||
	    inject__symbol_ino(pid, st.st_dev, st.st_ino, "kiln_detach", &ha->detach_fn) < 0) {
		snprintf(err, n, "the shim loaded into pid %d has no attach entry points (an older kiln's?)", (int)pid);
		ha->stopped_ns = finish(ha, in, false);
		return -ENOENT;
	}
	char cfg[512];
	snprintf(cfg, sizeof(cfg), "%d %llu %s", (int)recorder, (unsigned long long)sample, ctl);
	uint64_t cfg_at = inject__push(in, cfg, strlen(cfg) + 1);
	int theirs = -EFAULT;
	rc = cfg_at ? call_int(in, prep, cfg_at, &theirs) : -EFAULT;
	if (rc < 0 || theirs < 0) {
		int e = rc < 0 ? rc : theirs;
		if (e == -EBUSY)
			snprintf(err, n, "pid %d is already heap-profiled by another kiln (one recorder at a time)",
				 (int)pid);
		else
			snprintf(err, n, "cannot start heap tracking in pid %d: %s", (int)pid, strerror(-e));
		ha->stopped_ns = finish(ha, in, false);
		return e;
	}
	int mine = pidfd_getfd_of(pid, theirs);
	int slots = 0;
	if (mine >= 0 && !channel_ok(mine, pid)) {
		close(mine);
		mine = -EPROTO;
		snprintf(err, n, "pid %d handed over something else than the heap shim's socket (descriptor %d changed "
				 "under the attach): not recording its heap", (int)pid, theirs);
	} else if (mine < 0) {
		snprintf(err, n, "cannot take the channel from pid %d (pidfd_getfd): %s", (int)pid, strerror(-mine));
	}
	if (mine < 0) {
		uint64_t ignored;
		inject__call(in, ha->detach_fn, 0, 0, 0, CALL_MS, &ignored);
		ha->stopped_ns = finish(ha, in, false);
		return mine;
	}
	rc = call_int(in, start, (uint64_t)theirs, &slots);
	if (rc < 0 || slots <= 0) {
		int e = rc < 0 ? rc : slots;
		snprintf(err, n, "cannot hook the allocator of pid %d: %s", (int)pid,
			 e == -ENOENT ? "no module calls malloc through a GOT slot" : strerror(-e));
		close(mine);
		ha->stopped_ns = finish(ha, in, false);
		return e;
	}
	ha->slots = slots;
	ha->stopped_ns = finish(ha, in, false);
	if (!inject__own_malloc(pid, ha->own_malloc, sizeof(ha->own_malloc)))
		ha->own_malloc[0] = 0;
	*fd = mine;
	return 0;
}

int heapattach__stop(struct heapattach *ha, char *err, size_t n)
{
	if (!ha->detach_fn)
		return 0;
	struct injector *in;
	int rc = inject__begin(ha->pid, 2000, &in, err, n);
	if (rc < 0)
		return rc;
	uint64_t ret = 0;
	if (ha->return_fn)
		inject__return_via(in, ha->return_fn);
	rc = inject__call(in, ha->detach_fn, 0, 0, 0, CALL_MS, &ret);
	ha->detach_stopped_ns = finish(ha, in, true);
	if (rc < 0) {
		snprintf(err, n, "cannot detach from pid %d: %s", (int)ha->pid, strerror(-rc));
		return rc;
	}
	/* 1: a thread was inside the shim (waiting for ring room while kiln,
	 * busy detaching, drained nothing): the slots are back, but the rings
	 * stayed mapped for it. Such a thread leaves within milliseconds once
	 * the channel is closed; then a second call unmaps what is left, so
	 * no attach leaves kiln's memory in the program. */
	for (int tries = 0; ret == 1 && tries < 3; tries++) {
		usleep(50000);
		if (inject__begin(ha->pid, 2000, &in, err, n) < 0)
			break;
		inject__return_via(in, ha->return_fn);
		if (inject__call(in, ha->detach_fn, 0, 0, 0, CALL_MS, &ret) < 0)
			ret = 0;
		ha->detach_stopped_ns += finish(ha, in, true);
	}
	ha->detach_fn = 0;
	return 0;
}
