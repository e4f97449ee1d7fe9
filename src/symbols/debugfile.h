/* Separate debug files (.build-id, .gnu_debuglink), found only where the
 * target cannot plant one: see debugfile.c. */
#ifndef KILN_SYMBOLS_DEBUGFILE_H
#define KILN_SYMBOLS_DEBUGFILE_H
#include <stdint.h>

#define DEBUGFILE_MAX ((long long)8 << 30) /* the largest debug file read */

/* An fd of the debug file for the binary at file_name (build_id in hex, or
 * NULL; link and crc from its .gnu_debuglink, or NULL), *found its path
 * (malloc'd); or -1. */
int debugfile__find(const char *file_name, const char *build_id, const char *link, uint32_t crc, char **found);

/* An fd of a dwz file named by absolute path (.gnu_debugaltlink), only
 * under the debug root; or -1. */
int debugfile__find_alt(const char *path, char **found);

/* The regular file at the absolute path, through directories owned by root
 * or kiln's user that no one else may write, no symlink on the way; -1 if
 * any of that fails. */
int debugfile__open_trusted(const char *path);

/* Another root than /usr/lib/debug (the unit tests). */
void debugfile__set_root(const char *dir);

#endif
