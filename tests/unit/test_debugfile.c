/* symbols/debugfile.c: a separate debug file is read only where the target
 * cannot plant one: no symlink, FIFO or device, no folder another user may
 * write, the debuglink's CRC and the build-id checked. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "symbols/debugfile.h"

static char dir[64];

static void setup(void)
{
	strcpy(dir, "/tmp/kiln-dbg.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

static const char *at(const char *name)
{
	static char p[4][256];
	static int k;
	k = (k + 1) % 4;
	snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
	return p[k];
}

static void put(const char *name, const char *text)
{
	FILE *f = fopen(at(name), "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

TestSuite(debugfile, .init = setup, .fini = teardown);

Test(debugfile, regular_file_in_own_folder)
{
	put("a.debug", "x");
	int fd = debugfile__open_trusted(at("a.debug"));
	cr_assert_geq(fd, 0);
	close(fd);
}

Test(debugfile, refuses_symlink_fifo_device_and_relative)
{
	cr_assert_eq(symlink("/dev/zero", at("zero")), 0);
	cr_assert_eq(mkfifo(at("fifo"), 0600), 0);
	put("t", "x");
	cr_assert_eq(symlink(at("t"), at("link")), 0);
	cr_assert_lt(debugfile__open_trusted(at("zero")), 0);
	cr_assert_lt(debugfile__open_trusted(at("fifo")), 0); /* and does not block */
	cr_assert_lt(debugfile__open_trusted(at("link")), 0);
	cr_assert_lt(debugfile__open_trusted("/dev/zero"), 0);
	cr_assert_lt(debugfile__open_trusted("a/b"), 0);
	char up[300];
	snprintf(up, sizeof(up), "%s/../%s/t", dir, strrchr(dir, '/') + 1);
	cr_assert_lt(debugfile__open_trusted(up), 0);
}

Test(debugfile, refuses_a_folder_others_may_write)
{
	cr_assert_eq(mkdir(at("open"), 0777), 0);
	cr_assert_eq(chmod(at("open"), 0777), 0);
	put("open/a.debug", "x");
	cr_assert_lt(debugfile__open_trusted(at("open/a.debug")), 0);
	cr_assert_eq(chmod(at("open"), 0755), 0);
	int fd = debugfile__open_trusted(at("open/a.debug"));
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(chmod(at("open/a.debug"), 0666), 0);
	cr_assert_lt(debugfile__open_trusted(at("open/a.debug")), 0);
}

Test(debugfile, debuglink_crc_checked_beside_the_binary)
{
	put("prog", "not read");
	put("prog.debug", "debug bytes");
	uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const Bytef *)"debug bytes", 11);
	debugfile__set_root(at("none"));
	char *found = NULL;
	int fd = debugfile__find(at("prog"), NULL, "prog.debug", crc, &found);
	cr_assert_geq(fd, 0);
	cr_assert_str_eq(found, at("prog.debug"));
	close(fd);
	free(found);
	cr_assert_lt(debugfile__find(at("prog"), NULL, "prog.debug", crc ^ 1, &found), 0);
	cr_assert_null(found);
	/* a name with a folder in it, or the binary itself */
	cr_assert_lt(debugfile__find(at("prog"), NULL, "../prog.debug", crc, &found), 0);
	cr_assert_lt(debugfile__find(at("prog"), NULL, "prog", (uint32_t)crc32(0L, (const Bytef *)"not read", 8), &found), 0);
	/* .debug/NAME too */
	cr_assert_eq(mkdir(at(".debug"), 0755), 0);
	cr_assert_eq(rename(at("prog.debug"), at(".debug/prog.debug")), 0);
	fd = debugfile__find(at("prog"), NULL, "prog.debug", crc, &found);
	cr_assert_geq(fd, 0);
	close(fd);
	free(found);
}

Test(debugfile, build_id_under_the_root_must_match)
{
	/* a file at the build-id's place that is no ELF with that id */
	cr_assert_eq(mkdir(at(".build-id"), 0755), 0);
	cr_assert_eq(mkdir(at(".build-id/ab"), 0755), 0);
	put(".build-id/ab/cdef.debug", "not an ELF");
	debugfile__set_root(dir);
	char *found = NULL;
	cr_assert_lt(debugfile__find("/nowhere/prog", "abcdef", NULL, 0, &found), 0);
	cr_assert_null(found);
	cr_assert_lt(debugfile__find("/nowhere/prog", "ab/../x", NULL, 0, &found), 0);
	/* a dwz file: only under the root */
	put("alt.debug", "x");
	int fd = debugfile__find_alt(at("alt.debug"), &found);
	cr_assert_geq(fd, 0);
	close(fd);
	free(found);
	cr_assert_lt(debugfile__find_alt("/etc/passwd", &found), 0);
	char up[300];
	snprintf(up, sizeof(up), "%s/../etc", dir);
	cr_assert_lt(debugfile__find_alt(up, &found), 0);
}
