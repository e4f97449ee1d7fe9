/* symbols/elfsym.c: one symbol of an ELF file read with pread, the same
 * answers as the mapped image's lookup, refusals for what is no ELF. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "symbols/elfsym.h"
#include "symbols/image.h"

static const char *libc_path(void)
{
	static const char *c[] = {"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		if (access(c[i], R_OK) == 0)
			return c[i];
	return NULL;
}

Test(elfsym, same_as_the_image)
{
	const char *p = libc_path();
	if (!p)
		cr_skip_test("skipped: no libc.so.6 at the Debian paths");
	struct image *img = image__open(p);
	cr_assert_not_null(img);
	const char *names[] = {"malloc", "dlopen", "free", "__libc_start_main"};
	int fd = open(p, O_RDONLY);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		uint64_t v1 = 0, s1 = 0, v2 = 0, s2 = 0;
		cr_assert_eq(image__find_symbol(img, names[i], &v1, &s1), 0, "%s", names[i]);
		cr_assert_eq(elfsym__lookup(fd, names[i], &v2, &s2), 0, "%s", names[i]);
		cr_assert_eq(v1, v2, "%s", names[i]);
		cr_assert_eq(s1, s2, "%s", names[i]);
	}
	uint64_t v, s, b1, b2;
	cr_assert_eq(elfsym__lookup(fd, "no_such_symbol_kiln", &v, &s), -ENOENT);
	cr_assert_eq(elfsym__lookup(fd, "mallo", &v, &s), -ENOENT); /* a prefix is not the name */
	cr_assert_eq(image__bias(img, 0x7f0000000000, 0, &b1), 0);
	cr_assert_eq(elfsym__bias(fd, 0x7f0000000000, 0, &b2), 0);
	cr_assert_eq(b1, b2);
	close(fd);
	image__free(img);
}

Test(elfsym, not_an_elf)
{
	char path[] = "/tmp/kiln-elfsym.XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "\177ELF but not really, and short", 31), 31);
	uint64_t v, s, b;
	cr_assert_eq(elfsym__lookup(fd, "malloc", &v, &s), -ENOEXEC);
	cr_assert_eq(elfsym__bias(fd, 0, 0, &b), -ENOEXEC);
	close(fd);
	unlink(path);
	cr_assert_eq(elfsym__lookup(-1, "malloc", &v, &s), -ENOEXEC);
}
