/* Whether a process can carry the shim (see preload.h). */
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "collect/preload.h"
#include "kiln/kiln.h"
#include "util/util.h"

/* 1 when the ELF file on fd has no program interpreter, 0 when it has one,
 * -1 when it cannot be told (not a 64-bit ELF: a script, say). Closes fd. */
static int fd_is_static(int fd)
{
	if (fd < 0)
		return -1;
	Elf64_Ehdr eh;
	int rc = -1;
	if (pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh) && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
	    eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr) && eh.e_phnum < 4096) {
		rc = 1;
		for (unsigned i = 0; i < eh.e_phnum; i++) {
			Elf64_Phdr ph;
			if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + (uint64_t)i * sizeof(ph))) != (ssize_t)sizeof(ph)) {
				rc = -1;
				break;
			}
			if (ph.p_type == PT_INTERP) {
				rc = 0;
				break;
			}
		}
	}
	close(fd);
	return rc;
}

static int is_static(uint32_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%u/exe", pid);
	return fd_is_static(open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
}

/* /proc/PID/NAME, whole, or NULL. */
static char *proc_file(uint32_t pid, const char *name, size_t *len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%u/%s", pid, name);
	return read_small_file(path, len);
}

static int is_secure(uint32_t pid)
{
	size_t len;
	char *a = proc_file(pid, "auxv", &len);
	if (!a)
		return -1;
	int rc = -1;
	for (size_t off = 0; off + 16 <= len; off += 16) {
		uint64_t k, v;
		memcpy(&k, a + off, 8);
		memcpy(&v, a + off + 8, 8);
		if (k == AT_SECURE) {
			rc = v != 0;
			break;
		}
	}
	free(a);
	return rc;
}

static int has_shim_env(uint32_t pid)
{
	size_t len;
	char *env = proc_file(pid, "environ", &len);
	if (!env)
		return -1;
	if (!len) {
		/* truly empty, or read inside execve (preload.h): the kernel
		 * writes the arguments and the environment at the same time, so
		 * arguments there mean the environment is there, and empty */
		free(env);
		size_t alen = 0;
		char *args = proc_file(pid, "cmdline", &alen);
		free(args);
		return args && alen ? 0 : PRELOAD_NOT_YET;
	}
	int rc = 0;
	for (size_t i = 0; i < len; i += strlen(env + i) + 1)
		if (!strncmp(env + i, "LD_PRELOAD=", 11) && strstr(env + i, "libkiln_shim"))
			rc = 1;
	free(env);
	return rc;
}

int preload__untracked_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if ((st.st_mode & S_ISUID && st.st_uid != geteuid()) || (st.st_mode & S_ISGID && st.st_gid != getegid())) {
		close(fd);
		return HL_SECURE_EXEC;
	}
	return fd_is_static(fd) == 1 ? HL_STATIC : -1;
}

int preload__untracked(uint32_t pid)
{
	if (is_static(pid) == 1)
		return HL_STATIC;
	if (is_secure(pid) == 1)
		return HL_SECURE_EXEC;
	int env = has_shim_env(pid);
	if (env == 0)
		return HL_ENV_CLEARED;
	return env == PRELOAD_NOT_YET ? PRELOAD_NOT_YET : -1;
}
