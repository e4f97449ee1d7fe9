/* Redirecting a running program's allocator calls to the shim, for
 * `kiln record --heap -p PID` (the shim arrives by dlopen, too late for
 * LD_PRELOAD to interpose): every loaded module's GOT slots for the
 * allocation functions (JUMP_SLOT and GLOB_DAT relocations) are pointed at
 * the shim's hooks, the old values kept so that detaching puts each back.
 * A full-RELRO slot is made writable for the store and read-only again.
 * Modules loaded later are patched by the shim's own dlopen hook. */
#ifndef KILN_SHIM_GOT_H
#define KILN_SHIM_GOT_H

#include <stddef.h>

struct got_hook {
	const char *name;
	void *hook;
};

/* Point every slot named in hooks[n] at its hook, in every module but the
 * shim's own (self: an address in it) and the dynamic linker. Slots already
 * patched are left. The count patched, or -errno (no memory for the list). */
int got__patch(const struct got_hook *hooks, size_t n, const void *self);
/* Forget the slots of modules no longer loaded (after a dlclose). */
void got__prune(void);
/* Put every patched slot back as it was (only in modules still loaded).
 * The count restored. */
int got__restore(void);
/* Slots patched now. */
size_t got__count(void);

#endif
