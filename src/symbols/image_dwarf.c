/* An image's DWARF (libdw): opened once, its own or a separate debug file;
 * inlined frames, file:line and tail-call chains for an address; and the
 * worker thread that loads images' DWARF at low priority before a flush
 * needs it (image__prefetch). */
#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include "symbols/debugfile.h"
#include "symbols/image_int.h"
#include "util/util.h"

/* libdw's hook for a separate debug file (and a dwz file: an absolute
 * path, CRC 0): debugfile.c's rules, never libdw's standard lookup. */
static int find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
			  const char *file_name, const char *link, GElf_Word crc, char **found)
{
	(void)userdata;
	(void)modname;
	(void)base;
	*found = NULL;
	if (link && link[0] == '/' && crc == 0)
		return debugfile__find_alt(link, found);
	const unsigned char *bits;
	GElf_Addr at;
	int n = dwfl_module_build_id(mod, &bits, &at);
	char hex[41] = "";
	static const char digits[] = "0123456789abcdef";
	for (int k = 0; k < n && k < 20; k++) {
		hex[2 * k] = digits[bits[k] >> 4];
		hex[2 * k + 1] = digits[bits[k] & 15];
		hex[2 * k + 2] = 0;
	}
	return debugfile__find(file_name, hex[0] ? hex : NULL, link, crc, found);
}

void image_dwarf_open(struct image *img)
{
	static const Dwfl_Callbacks cb = {
		.find_elf = dwfl_build_id_find_elf,
		.find_debuginfo = find_debuginfo,
		.section_address = dwfl_offline_section_address,
	};
	img->dw = xcalloc(1, sizeof(*img->dw));
	scope_cache__init(&img->dw->scopes);
	if (img->is_vdso)
		return;
	Dwfl *dwfl = dwfl_begin(&cb);
	if (!dwfl)
		return;
	dwfl_report_begin(dwfl);
	/* libdw reads the file kiln checked (or its private copy), never the
	 * path again: the path may name another file by now */
	int fd = img->fd >= 0 ? fcntl(img->fd, F_DUPFD_CLOEXEC, 0) : -1;
	if (fd < 0) {
		dwfl_end(dwfl);
		return;
	}
	Dwfl_Module *mod = dwfl_report_elf(dwfl, path_base(img->path), img->path, fd, 0, false);
	dwfl_report_end(dwfl, NULL, NULL);
	if (!mod) {
		dwfl_end(dwfl);
		return;
	}
	img->dw->dwfl = dwfl;
	img->dw->mod = mod;
}

static char *die_name(Dwarf_Die *die)
{
	Dwarf_Attribute attr;
	const char *s = NULL;
	if (dwarf_attr_integrate(die, DW_AT_linkage_name, &attr) ||
	    dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr))
		s = dwarf_formstring(&attr);
	if (s && s[0] == '_' && s[1] == 'Z')
		return symbols__demangle(s);
	if (dwarf_attr_integrate(die, DW_AT_name, &attr))
		s = dwarf_formstring(&attr);
	return s ? xstrdup(s) : NULL;
}

static const char *cu_file(Dwarf_Die *cudie, Dwarf_Word idx)
{
	Dwarf_Files *files;
	size_t nfiles;
	if (dwarf_getsrcfiles(cudie, &files, &nfiles) != 0 || idx >= nfiles)
		return NULL;
	return dwarf_filesrc(files, idx, NULL, NULL);
}

static bool die_is_call_site(Dwarf_Die *d)
{
	int t = dwarf_tag(d);
	return t == DW_TAG_call_site || t == DW_TAG_GNU_call_site;
}

static bool call_site_origin(Dwarf_Die *site, Dwarf_Die *out)
{
	Dwarf_Attribute attr;
	if (!dwarf_attr(site, DW_AT_call_origin, &attr) && !dwarf_attr(site, DW_AT_abstract_origin, &attr))
		return false;
	return dwarf_formref_die(&attr, out) != NULL;
}

static bool die_is_definition(Dwarf_Die *d)
{
	bool decl = false;
	Dwarf_Attribute attr;
	if (dwarf_attr(d, DW_AT_declaration, &attr))
		dwarf_formflag(&attr, &decl);
	return !decl && dwarf_hasattr(d, DW_AT_low_pc);
}

/* The functions a call entered by tail calls that left no frame: the call
 * site returning to ret (in one of scopes) names its callee; while that
 * callee's body ends in exactly one tail call, follow it (as gdb's tail-call
 * frames do). Frames are added innermost first with inlined = 2. */
/* The call site returning to ret among parent's children, looking into
 * lexical blocks too (a loop's body is one; the scopes index holds only
 * functions and inlined calls). */
static bool find_call_site(Dwarf_Die *parent, uint64_t ret, Dwarf_Die *site, int depth)
{
	Dwarf_Die child;
	if (depth > 16 || dwarf_child(parent, &child) != 0)
		return false;
	do {
		if (dwarf_tag(&child) == DW_TAG_lexical_block) {
			if (find_call_site(&child, ret, site, depth + 1))
				return true;
			continue;
		}
		if (!die_is_call_site(&child))
			continue;
		Dwarf_Attribute attr;
		Dwarf_Addr pc;
		if ((dwarf_attr(&child, DW_AT_call_return_pc, &attr) || dwarf_attr(&child, DW_AT_low_pc, &attr)) &&
		    dwarf_formaddr(&attr, &pc) == 0 && pc == ret) {
			*site = child;
			return true;
		}
	} while (dwarf_siblingof(&child, &child) == 0);
	return false;
}

static int tail_chain(Dwarf_Die *scopes, int ns, uint64_t ret, struct sym_frame *out, int max)
{
	Dwarf_Die site, callee;
	bool found = false;
	for (int i = 0; i < ns && !found; i++) {
		found = find_call_site(&scopes[i], ret, &site, 0);
		int tag = dwarf_tag(&scopes[i]);
		if (tag == DW_TAG_subprogram)
			break;
	}
	if (!found || !call_site_origin(&site, &callee))
		return 0;
	char *names[8];
	int n = 0;
	while (n < 8 && die_is_definition(&callee)) {
		names[n] = die_name(&callee);
		if (!names[n])
			break;
		n++;
		/* exactly one tail call in its body? */
		Dwarf_Die child, next;
		int tails = 0;
		if (dwarf_child(&callee, &child) == 0) {
			do {
				if (!die_is_call_site(&child))
					continue;
				bool tail = false;
				Dwarf_Attribute attr;
				if (dwarf_attr(&child, DW_AT_call_tail_call, &attr) ||
				    dwarf_attr(&child, DW_AT_GNU_tail_call, &attr))
					dwarf_formflag(&attr, &tail);
				if (tail && call_site_origin(&child, &next))
					tails++;
			} while (dwarf_siblingof(&child, &child) == 0);
		}
		if (tails != 1)
			break;
		/* find it again (next holds the last one seen) */
		if (dwarf_child(&callee, &child) != 0)
			break;
		do {
			bool tail = false;
			Dwarf_Attribute attr;
			if (die_is_call_site(&child) &&
			    (dwarf_attr(&child, DW_AT_call_tail_call, &attr) || dwarf_attr(&child, DW_AT_GNU_tail_call, &attr)) &&
			    dwarf_formflag(&attr, &tail) == 0 && tail && call_site_origin(&child, &next))
				break;
		} while (dwarf_siblingof(&child, &child) == 0);
		callee = next;
	}
	/* innermost first */
	int k = 0;
	for (int i = n - 1; i >= 0; i--) {
		if (k < max) {
			out[k].func = names[i];
			out[k].file = xstrdup("");
			out[k].line = 0;
			out[k].inlined = 2;
			k++;
		} else {
			free(names[i]);
		}
	}
	return k;
}

void sym_frame__release(struct sym_frame *f)
{
	free(f->func);
	free(f->file);
	f->func = f->file = NULL;
}

/* ---- prefetch worker ---- */
static pthread_mutex_t pf_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pf_cv = PTHREAD_COND_INITIALIZER;
static struct image **pf_queue;
static size_t pf_len, pf_cap;
static bool pf_started, pf_stop;
static pthread_t pf_thread;
static pid_t pf_tid;

static void *pf_main(void *arg)
{
	/* background work: the profiled program and the recorder's draining
	 * come first on a machine with few cores */
	pthread_mutex_lock(&pf_mu);
	pf_tid = (pid_t)syscall(SYS_gettid);
	pthread_mutex_unlock(&pf_mu);
	setpriority(PRIO_PROCESS, (id_t)pf_tid, 19);
	pthread_mutex_lock(&pf_mu);
	for (;;) {
		while (!pf_len && !pf_stop)
			pthread_cond_wait(&pf_cv, &pf_mu);
		if (!pf_len)
			break;
		struct image *img = pf_queue[0];
		memmove(pf_queue, pf_queue + 1, --pf_len * sizeof(*pf_queue));
		pthread_mutex_unlock(&pf_mu);
		if (!img->dw)
			image_dwarf_open(img);
		if (img->dw->mod) {
			Dwarf_Addr bias;
			dwfl_module_getdwarf(img->dw->mod, &bias);
		}
		if (!img->syms_loaded)
			image_load_syms(img);
		pthread_mutex_lock(&pf_mu);
		__atomic_store_n(&img->prefetch, 2, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&pf_cv);
	}
	pthread_mutex_unlock(&pf_mu);
	return NULL;
}

void image__prefetch(struct image *img)
{
	if (img->prefetch || img->is_vdso)
		return;
	pthread_mutex_lock(&pf_mu);
	if (!pf_started && !pf_stop) {
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the main thread */
		pf_started = pthread_create(&pf_thread, NULL, pf_main, NULL) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (pf_started) {
		ARR_GROW(pf_queue, pf_cap, pf_len + 1);
		pf_queue[pf_len++] = img;
		img->prefetch = 1;
		pthread_cond_broadcast(&pf_cv);
	}
	pthread_mutex_unlock(&pf_mu);
}

bool image__loading(const struct image *img)
{
	return __atomic_load_n(&img->prefetch, __ATOMIC_ACQUIRE) == 1;
}

static void prefetch_wait(struct image *img)
{
	pthread_mutex_lock(&pf_mu);
	while (img->prefetch == 1)
		pthread_cond_wait(&pf_cv, &pf_mu);
	pthread_mutex_unlock(&pf_mu);
}

void image__prefetch_hurry(void)
{
	pthread_mutex_lock(&pf_mu);
	for (size_t i = 0; i < pf_len; i++)
		pf_queue[i]->prefetch = 0; /* the caller's first use loads it */
	pf_len = 0;
	if (pf_tid > 0)
		setpriority(PRIO_PROCESS, (id_t)pf_tid, 0); /* where allowed (root): finish what it holds soon */
	pthread_cond_broadcast(&pf_cv);
	pthread_mutex_unlock(&pf_mu);
}

void image__prefetch_stop(void)
{
	pthread_mutex_lock(&pf_mu);
	pf_stop = true;
	pthread_cond_broadcast(&pf_cv);
	bool started = pf_started;
	pf_started = false;
	pthread_mutex_unlock(&pf_mu);
	if (started)
		pthread_join(pf_thread, NULL);
	free(pf_queue);
	pf_queue = NULL;
	pf_len = pf_cap = 0;
}

int image__symbolize(struct image *img, uint64_t vaddr, uint64_t ret, struct sym_frame *out, int max)
{
	if (max <= 0)
		return 0;
	if (img->prefetch == 1)
		prefetch_wait(img);
	if (!img->dw)
		image_dwarf_open(img);
	int n = 0;
	const char *file = NULL;
	int line = 0;
	if (img->dw->mod) {
		Dwfl_Line *dl = dwfl_module_getsrc(img->dw->mod, vaddr);
		if (dl)
			file = dwfl_lineinfo(dl, NULL, &line, NULL, NULL, NULL);
		Dwarf_Addr bias = 0;
		Dwarf_Die *cudie = dwfl_module_addrdie(img->dw->mod, vaddr, &bias);
		/* the concrete chain of functions at the address, every inlined
		 * level, from the unit's index (built on its first address) */
		Dwarf_Die *scopes = NULL;
		int ns = cudie ? scope_cache__find(&img->dw->scopes, cudie, vaddr - bias, &scopes) : 0;
		char *cur_file = file ? xstrdup(file) : NULL;
		int cur_line = line;
		if (ret && ns > 0)
			n = tail_chain(scopes, ns, ret, out, max / 2);
		for (int i = 0; i < ns && n < max; i++) {
			int tag = dwarf_tag(&scopes[i]);
			if (tag != DW_TAG_subprogram && tag != DW_TAG_inlined_subroutine)
				continue;
			char *name = die_name(&scopes[i]);
			if (!name && tag == DW_TAG_subprogram) {
				const struct image_sym *s = image_find_sym(img, vaddr);
				if (s)
					name = symbols__demangle(s->name);
			}
			out[n].func = name ? name : xstrdup("");
			out[n].file = cur_file ? cur_file : xstrdup("");
			out[n].line = (uint32_t)(cur_line > 0 ? cur_line : 0);
			out[n].inlined = tag == DW_TAG_inlined_subroutine;
			n++;
			cur_file = NULL;
			if (tag != DW_TAG_inlined_subroutine)
				break;
			Dwarf_Attribute attr;
			Dwarf_Word w;
			cur_line = 0;
			if (dwarf_attr(&scopes[i], DW_AT_call_file, &attr) && dwarf_formudata(&attr, &w) == 0) {
				const char *f = cu_file(cudie, w);
				cur_file = f ? xstrdup(f) : NULL;
			}
			if (dwarf_attr(&scopes[i], DW_AT_call_line, &attr) && dwarf_formudata(&attr, &w) == 0)
				cur_line = (int)w;
		}
		free(cur_file);
		free(scopes);
		/* A chain ending in an inlined frame lacks its outer function
		 * (abstract DIE only): name it from the symbol table. */
		if (n > 0 && out[n - 1].inlined == 1 && n < max) {
			const struct image_sym *s = image_find_sym(img, vaddr);
			if (s) {
				out[n].func = symbols__demangle(s->name);
				out[n].file = xstrdup("");
				out[n].line = 0;
				out[n].inlined = false;
				n++;
			}
		}
	}
	bool named = false;
	for (int i = 0; i < n; i++)
		named |= out[i].inlined != 2;
	if (!named && n < max) {
		const struct image_sym *s = image_find_sym(img, vaddr);
		if (!s)
			return n;
		out[n].func = symbols__demangle(s->name);
		out[n].file = xstrdup(file ? file : "");
		out[n].line = (uint32_t)(line > 0 ? line : 0);
		out[n].inlined = 0;
		n++;
	}
	return n;
}
