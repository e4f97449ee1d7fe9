/* util/safefile.c: what kiln writes replaces only regular files, through an
 * unpredictable temporary, and removes nothing it did not create. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "util/safefile.h"
#include "util/util.h"

static char dir[64];

static void setup(void)
{
	strcpy(dir, "/tmp/kiln-unit.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

static char *path(const char *name)
{
	static char p[4][128];
	static int k;
	char *s = p[k++ % 4];
	snprintf(s, 128, "%s/%s", dir, name);
	return s;
}

static size_t entries(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", dir);
	FILE *f = popen(cmd, "r");
	size_t n = 0;
	cr_assert_eq(fscanf(f, "%zu", &n), 1);
	pclose(f);
	return n;
}

TestSuite(safefile, .init = setup, .fini = teardown);

Test(safefile, regular_file_replaced_whole_on_commit)
{
	char *p = path("out");
	FILE *f = fopen(p, "w");
	fputs("old", f);
	fclose(f);
	struct safe_out o;
	cr_assert_eq(safe_out__prepare(&o, p), 0);
	cr_assert_not(o.through);
	cr_assert_eq(write(o.fd, "new", 3), 3);
	char *c = read_small_file(p, NULL);
	cr_assert_str_eq(c, "old"); /* not touched until the commit */
	free(c);
	cr_assert_eq(safe_out__commit(&o, true), 0);
	cr_assert_eq(safe_out__close(&o), 0);
	c = read_small_file(p, NULL);
	cr_assert_str_eq(c, "new");
	free(c);
	c = read_small_file(path("out.old"), NULL);
	cr_assert_str_eq(c, "old");
	free(c);
	cr_assert_eq(entries(), 2);
}

Test(safefile, abort_removes_only_the_temporary)
{
	char *p = path("keep");
	FILE *f = fopen(p, "w");
	fputs("precious", f);
	fclose(f);
	struct safe_out o;
	cr_assert_eq(safe_out__prepare(&o, p), 0);
	cr_assert_eq(entries(), 2);
	cr_assert_eq(safe_out__close(&o), 0);
	char *c = read_small_file(p, NULL);
	cr_assert_str_eq(c, "precious");
	free(c);
	cr_assert_eq(entries(), 1);
}

Test(safefile, fifo_and_symlink_are_written_through)
{
	char *fifo = path("fifo"), *link = path("link"), *target = path("target");
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	struct safe_out o;
	cr_assert_eq(safe_out__prepare(&o, fifo), 0);
	cr_assert(o.through);
	cr_assert_eq(safe_out__open_through(&o, true), -ENXIO); /* nobody reads yet */
	int r = open(fifo, O_RDONLY | O_NONBLOCK);
	cr_assert_geq(r, 0);
	cr_assert_eq(safe_out__open_through(&o, true), 0);
	cr_assert_eq(write(o.fd, "x", 1), 1);
	cr_assert_eq(safe_out__commit(&o, true), 0);
	safe_out__close(&o);
	char ch;
	cr_assert_eq(read(r, &ch, 1), 1);
	close(r);
	struct stat st;
	cr_assert_eq(lstat(fifo, &st), 0);
	cr_assert(S_ISFIFO(st.st_mode));

	cr_assert_eq(symlink(target, link), 0);
	cr_assert_eq(safe_out__prepare(&o, link), 0);
	cr_assert(o.through);
	cr_assert_eq(safe_out__open_through(&o, false), 0);
	cr_assert_eq(write(o.fd, "t", 1), 1);
	safe_out__close(&o);
	cr_assert_eq(lstat(link, &st), 0);
	cr_assert(S_ISLNK(st.st_mode)); /* still a link */
	char *c = read_small_file(target, NULL);
	cr_assert_str_eq(c, "t");
	free(c);
}

Test(safefile, device_is_never_replaced)
{
	struct safe_out o;
	cr_assert_eq(safe_out__prepare(&o, "/dev/null"), 0);
	cr_assert(o.through);
	cr_assert_eq(safe_out__open_through(&o, false), 0);
	cr_assert_eq(safe_out__commit(&o, true), 0);
	safe_out__close(&o);
	struct stat st;
	cr_assert_eq(stat("/dev/null", &st), 0);
	cr_assert(S_ISCHR(st.st_mode));
}

Test(safefile, temporary_names_are_unpredictable)
{
	char *p = path("x");
	struct safe_out a, b;
	cr_assert_eq(safe_out__prepare(&a, p), 0);
	cr_assert_eq(safe_out__prepare(&b, p), 0);
	cr_assert_str_neq(a.tmp, b.tmp);
	cr_assert_null(strstr(a.tmp, "kiln-tmp")); /* not the old predictable name */
	safe_out__close(&a);
	safe_out__close(&b);
	cr_assert_eq(entries(), 0);
}

Test(safefile, remove_own_dir_never_follows_a_symlink)
{
	char *victim = path("victim"), *link = path("link");
	cr_assert_eq(mkdir(victim, 0700), 0);
	FILE *f = fopen(path("victim/a"), "w");
	fclose(f);
	cr_assert_eq(symlink(victim, link), 0);
	cr_assert_lt(remove_own_dir(link), 0);
	struct stat st;
	cr_assert_eq(stat(path("victim/a"), &st), 0);
	/* its own folder, with a symlink inside: the link goes, not its target */
	char *own = path("own");
	cr_assert_eq(mkdir(own, 0700), 0);
	cr_assert_eq(symlink(victim, path("own/l")), 0);
	cr_assert_eq(remove_own_dir(own), 0);
	cr_assert_eq(stat(path("victim/a"), &st), 0);
	cr_assert_neq(stat(own, &st), 0);
}
