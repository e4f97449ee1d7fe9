/* Separate debug files, found kiln's own way (not libdw's standard lookup,
 * which opens whatever a target's .gnu_debuglink names, FIFOs and devices
 * included, and may ask debuginfod over the network):
 *   1. by build-id: /usr/lib/debug/.build-id/xx/yyyy.debug;
 *   2. by .gnu_debuglink (a plain file name, its CRC checked):
 *      /usr/lib/debug/DIR/NAME, then DIR/NAME and DIR/.debug/NAME beside
 *      the binary.
 * Every directory on the way is walked with openat(O_NOFOLLOW) and must be
 * owned by root or kiln's user and writable by no one else; the file is
 * opened O_NOFOLLOW|O_NONBLOCK and must be such a regular file too, of a
 * bounded size. A FIFO, a device, a symlink or another user's file is never
 * read. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "symbols/debugfile.h"
#include "util/util.h"

static const char *debug_root = "/usr/lib/debug";

void debugfile__set_root(const char *dir)
{
	debug_root = dir;
}

static bool trusted_stat(const struct stat *st)
{
	return (st->st_uid == 0 || st->st_uid == geteuid()) && !(st->st_mode & (S_IWGRP | S_IWOTH));
}

/* Open the regular file at absolute path, every directory above it trusted
 * and no component a symlink. An fd, or -1. */
int debugfile__open_trusted(const char *path)
{
	if (path[0] != '/' || strlen(path) >= 4096)
		return -1;
	char buf[4096];
	strcpy(buf, path);
	int dfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	char *p = buf + 1;
	for (;;) {
		struct stat st;
		/* a sticky folder of root's (/tmp) is walked through: no one can
		 * swap an entry of another's there, and the entry is checked next */
		if (fstat(dfd, &st) < 0 || !S_ISDIR(st.st_mode) ||
		    !(trusted_stat(&st) || (st.st_uid == 0 && (st.st_mode & S_ISVTX))))
			break;
		char *slash = strchr(p, '/');
		if (!*p || (p[0] == '.' && (!p[1] || p[1] == '/' || (p[1] == '.' && (!p[2] || p[2] == '/')))))
			break; /* an empty, . or .. component: not a path kiln makes */
		if (slash)
			*slash = 0;
		int fd = openat(dfd, p, (slash ? O_DIRECTORY : O_NONBLOCK) | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		close(dfd);
		if (fd < 0)
			return -1;
		if (!slash) {
			if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || !trusted_stat(&st) ||
			    st.st_size > DEBUGFILE_MAX) {
				close(fd);
				return -1;
			}
			return fd;
		}
		dfd = fd;
		p = slash + 1;
	}
	close(dfd);
	return -1;
}

/* The GNU build-id note of the ELF file at fd, as hex, equals want. */
static bool build_id_is(int fd, const char *want)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size < 64)
		return false;
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED)
		return false;
	elf_version(EV_CURRENT);
	Elf *elf = elf_memory(m, (size_t)st.st_size);
	bool same = false;
	Elf_Scn *scn = NULL;
	while (elf && !same && (scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		size_t off = 0, no, de;
		GElf_Nhdr nh;
		while (d && (off = gelf_getnote(d, off, &nh, &no, &de)) > 0) {
			if (nh.n_type != NT_GNU_BUILD_ID || nh.n_namesz != 4 || memcmp((char *)d->d_buf + no, "GNU", 4) ||
			    nh.n_descsz * 2 != strlen(want))
				continue;
			static const char hex[] = "0123456789abcdef";
			const unsigned char *b = (const unsigned char *)d->d_buf + de;
			same = true;
			for (size_t k = 0; k < nh.n_descsz && same; k++)
				same = want[2 * k] == hex[b[k] >> 4] && want[2 * k + 1] == hex[b[k] & 15];
			break;
		}
	}
	elf_end(elf);
	munmap(m, (size_t)st.st_size);
	return same;
}

static bool crc_is(int fd, uint32_t want)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return false;
	uLong crc = crc32(0L, Z_NULL, 0);
	size_t cap = 1 << 20;
	unsigned char *buf = xmalloc(cap);
	bool ok = true;
	for (off_t at = 0; ok && at < st.st_size;) {
		ssize_t n = pread(fd, buf, cap, at);
		ok = n > 0;
		if (ok) {
			crc = crc32(crc, buf, (uInt)n);
			at += n;
		}
	}
	free(buf);
	return ok && (uint32_t)crc == want;
}

static bool plain_name(const char *s)
{
	size_t n = s ? strnlen(s, 256) : 0;
	return n > 0 && n < 256 && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

int debugfile__find(const char *file_name, const char *build_id, const char *link, uint32_t crc, char **found)
{
	char path[4096];
	*found = NULL;
	size_t idlen = build_id ? strlen(build_id) : 0;
	if (idlen >= 4 && idlen <= 40 && strspn(build_id, "0123456789abcdef") == idlen) {
		snprintf(path, sizeof(path), "%s/.build-id/%.2s/%s.debug", debug_root, build_id, build_id + 2);
		int fd = debugfile__open_trusted(path);
		if (fd >= 0 && build_id_is(fd, build_id)) {
			*found = xstrdup(path);
			return fd;
		}
		if (fd >= 0)
			close(fd);
	}
	if (!plain_name(link) || !file_name || file_name[0] != '/')
		return -1;
	const char *slash = strrchr(file_name, '/');
	int dirlen = (int)(slash - file_name);
	char dir[4096];
	snprintf(dir, sizeof(dir), "%.*s", dirlen, file_name);
	const char *fmts[] = {"%s%s/%s", "%s%s/.debug/%s"};
	const char *roots[] = {debug_root, ""};
	for (int r = 0; r < 2; r++)
		for (int f = 0; f < (r == 0 ? 1 : 2); f++) {
			if (snprintf(path, sizeof(path), fmts[f], roots[r], dir, link) >= (int)sizeof(path))
				continue;
			if (!strcmp(path, file_name))
				continue; /* the binary itself */
			int fd = debugfile__open_trusted(path);
			if (fd < 0)
				continue;
			if (crc_is(fd, crc)) {
				*found = xstrdup(path);
				return fd;
			}
			close(fd);
		}
	return -1;
}

int debugfile__find_alt(const char *path, char **found)
{
	size_t n = strlen(debug_root);
	*found = NULL;
	if (strncmp(path, debug_root, n) || path[n] != '/' || strstr(path, "/../") || strstr(path, "/./"))
		return -1;
	int fd = debugfile__open_trusted(path);
	if (fd >= 0)
		*found = xstrdup(path);
	return fd;
}
