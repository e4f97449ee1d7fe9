/* The program's environment as it was given (see env.h). Runs in the
 * profiled program: no allocation of its own, no stdio. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "shim/env.h"

extern char **environ;

static const char *const kiln_vars[] = {"KILN_FD", "KILN_SOCK", "KILN_CTL", "KILN_RECORDER_PID",
					"KILN_NO_FOLLOW", "KILN_PYDOMAINS", "KILN_HEAP_SAMPLE"};
#define NVARS (sizeof(kiln_vars) / sizeof(kiln_vars[0]))

static char g_kiln[NVARS][512];  /* "NAME=value" as kiln set them */
static int g_nkiln;
static char g_self[4096];        /* the shim's path, as LD_PRELOAD names it */
static char g_user_pre[4096 + 16]; /* "LD_PRELOAD=rest": what the user preloaded besides */
static bool g_hidden, g_follow;

/* LD_PRELOAD's value without self: entries split by ':' or ' '. */
static size_t preload_rest(const char *pre, const char *self, char *out, size_t n)
{
	size_t o = 0, ls = strlen(self);
	for (const char *p = pre; *p;) {
		size_t k = strcspn(p, ": ");
		if (k && !(k == ls && !memcmp(p, self, k))) {
			if (o + k + 2 > n)
				break;
			if (o)
				out[o++] = ':';
			memcpy(out + o, p, k);
			o += k;
		}
		p += k;
		while (*p == ':' || *p == ' ')
			p++;
	}
	out[o] = 0;
	return o;
}

/* environ's LD_PRELOAD (pre) without the shim: the user's own preloads
 * stay, put in place of the entry (nothing allocated); none left: removed. */
static void drop_self_preload(const char *pre)
{
	char rest[4096];
	if (!preload_rest(pre, g_self, rest, sizeof(rest))) {
		unsetenv("LD_PRELOAD");
		return;
	}
	snprintf(g_user_pre, sizeof(g_user_pre), "LD_PRELOAD=%s", rest);
	for (char **e = environ; e && *e; e++)
		if (!strncmp(*e, "LD_PRELOAD=", 11))
			*e = g_user_pre;
}

static bool is_kiln_var(const char *e)
{
	for (size_t i = 0; i < NVARS; i++) {
		size_t n = strlen(kiln_vars[i]);
		if (!strncmp(e, kiln_vars[i], n) && e[n] == '=')
			return true;
	}
	return false;
}

void shim_env__hide(const char *self, bool follow)
{
	if (g_hidden || !self || strlen(self) >= sizeof(g_self))
		return;
	snprintf(g_self, sizeof(g_self), "%s", self);
	g_follow = follow;
	g_nkiln = 0;
	for (size_t i = 0; i < NVARS; i++) {
		const char *v = getenv(kiln_vars[i]);
		if (!v)
			continue;
		int k = snprintf(g_kiln[g_nkiln], sizeof(g_kiln[0]), "%s=%s", kiln_vars[i], v);
		if (k < 0 || (size_t)k >= sizeof(g_kiln[0]))
			continue; /* too long to keep: left where it is */
		g_nkiln++;
		unsetenv(kiln_vars[i]);
	}
	const char *pre = getenv("LD_PRELOAD");
	if (pre)
		drop_self_preload(pre);
	g_hidden = true;
}

size_t shim_env__need(char *const envp[])
{
	size_t n = 0;
	while (envp && envp[n])
		n++;
	return n + NVARS + 2;
}

char *const *shim_env__for_exec(char *const envp[], char **out, size_t max, char *pre, size_t prelen)
{
	if (!g_hidden || !g_follow || shim_env__need(envp) > max)
		return envp;
	size_t o = 0;
	bool have_pre = false;
	for (size_t i = 0; envp && envp[i]; i++) {
		const char *e = envp[i];
		if (is_kiln_var(e))
			continue; /* ours replace them */
		if (!strncmp(e, "LD_PRELOAD=", 11) && !have_pre) {
			if (strstr(e + 11, g_self)) {
				out[o++] = (char *)e;
			} else {
				int k = snprintf(pre, prelen, "LD_PRELOAD=%s%s%s", g_self, e[11] ? ":" : "", e + 11);
				if (k < 0 || (size_t)k >= prelen)
					return envp;
				out[o++] = pre;
			}
			have_pre = true;
			continue;
		}
		out[o++] = (char *)e;
	}
	if (!have_pre) {
		int k = snprintf(pre, prelen, "LD_PRELOAD=%s", g_self);
		if (k < 0 || (size_t)k >= prelen)
			return envp;
		out[o++] = pre;
	}
	for (int i = 0; i < g_nkiln; i++)
		out[o++] = g_kiln[i];
	out[o] = NULL;
	return out;
}

static char g_show_pre[8192 + 32];

void shim_env__show(void)
{
	if (!g_hidden || !g_follow)
		return;
	const char *pre = getenv("LD_PRELOAD");
	if (!pre || !strstr(pre, g_self)) {
		snprintf(g_show_pre, sizeof(g_show_pre), "LD_PRELOAD=%s%s%s", g_self, pre && *pre ? ":" : "",
			 pre ? pre : "");
		putenv(g_show_pre);
	}
	for (int i = 0; i < g_nkiln; i++)
		putenv(g_kiln[i]);
}

void shim_env__unshow(void)
{
	if (!g_hidden || !g_follow)
		return;
	for (int i = 0; i < g_nkiln; i++) {
		char name[64];
		size_t k = strcspn(g_kiln[i], "=");
		if (k >= sizeof(name))
			continue;
		memcpy(name, g_kiln[i], k);
		name[k] = 0;
		unsetenv(name);
	}
	const char *pre = getenv("LD_PRELOAD");
	if (pre && pre == g_show_pre + 11)
		drop_self_preload(pre);
}
