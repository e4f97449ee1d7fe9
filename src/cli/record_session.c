/* kiln record's session once the target runs: the loop that drains the
 * samplers' and the shim's rings, answers snapshot requests and flushes
 * the file each second until the program ends (or -d, or a signal); then
 * the end: the heap detached or drained, leaks and exit status into the
 * file, the END record, the one-line summary. */
#include <errno.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "cli/cli.h"

#include "cli/record.h"

/* A snapshot of pid as the bytes of a profile file. */
int record_snapshot_bytes(void *ctx, uint32_t pid, struct buf *out)
{
	struct rec *st = ctx;
	heapsrc__poll(st->h);
	struct stream_writer *w = stream_writer__new();
	int rc = recorder__snapshot(st->r, pid, w);
	if (rc == 0) {
		size_t len;
		const void *p = stream_writer__pending(w, &len);
		buf__put(out, p, len);
	}
	stream_writer__free(w);
	return rc;
}

void record_on_ring(void *ctx, const struct kiln_msg *m, int fd, int page_fd)
{
	heapsrc__add_ring(((struct rec *)ctx)->h, m, fd, page_fd);
}

void record_on_loss(void *ctx, const struct kiln_msg *m)
{
	heapsrc__loss(((struct rec *)ctx)->h, m);
}

/* --snapshot-every: OUTPUT.snap.N, written whole (or not at all). */
static void snapshot_file(struct rec *st, const char *path)
{
	struct buf b;
	buf__init(&b);
	struct safe_out o;
	int rc = record_snapshot_bytes(st, st->child > 0 ? (uint32_t)st->child : (uint32_t)st->o.pid, &b);
	if (rc == 0)
		rc = safe_out__prepare(&o, path);
	if (rc == 0) {
		rc = safe_out__open_through(&o, true);
		if (rc == 0)
			rc = write_full(o.fd, b.data, b.len);
		if (rc == 0)
			rc = safe_out__commit(&o, false);
		int crc = safe_out__close(&o);
		if (rc == 0)
			rc = crc;
	}
	if (rc < 0)
		cli__warn(CMD, "snapshot %s: %s", path, strerror(-rc));
	buf__release(&b);
}

/* Put the output in place once the program runs: a regular file's
 * temporary is renamed over it (an older profile kept as NAME.old); a FIFO,
 * device or stdout is opened then (a FIFO with no reader yet is retried
 * from the loop while records wait in memory). 0 or -errno. */
int record_output_ready(struct rec *st)
{
	if (st->out_ready)
		return 0;
	int rc = st->out.through ? safe_out__open_through(&st->out, true) : safe_out__commit(&st->out, true);
	if (rc == -ENXIO) { /* a FIFO nobody reads yet */
		if (!st->out_waiting && !st->o.quiet)
			cli__warn(CMD, "%s: waiting for a reader (records are kept until then)", st->o.output);
		st->out_waiting = true;
		return 0;
	}
	if (rc < 0)
		return rc;
	stream_writer__set_fd(st->w, st->out.fd);
	st->out_ready = true;
	return 0;
}

int record_wait_status(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return KILN_EXIT_RECORD_FAIL;
}

static void summary(struct rec *st, double secs, const char *what)
{
	if (st->o.quiet)
		return;
	char size[32], lost[96] = "", hlost[96] = "";
	fmt_bytes(size, sizeof(size), (double)stream_writer__bytes(st->w));
	uint64_t sl = recorder__lost_samples(st->r), hl = st->o.heap ? recorder__heap_lost(st->r) : 0;
	if (sl)
		snprintf(lost, sizeof(lost), " (%llu samples LOST)", (unsigned long long)sl);
	if (hl)
		snprintf(hlost, sizeof(hlost), " (%llu heap events LOST: see the report)", (unsigned long long)hl);
	fprintf(stderr, "kiln record: %s %.2f s, %llu samples%s%s%s; wrote %s (%s)\n", what, secs,
		(unsigned long long)recorder__samples(st->r), lost, st->o.heap ? " and the heap" : "", hlost,
		st->o.output, size);
	/* a Python kiln does not read, or cannot read at each sample, is said now too */
	json_t *meta = recorder__meta(st->r), *v;
	size_t i;
	json_array_foreach(json_object_get(meta, "python_notices"), i, v)
		fprintf(stderr, "kiln record: python: %s\n", json_string_value(v));
	const char *nobpf = json_string_value(json_object_get(meta, "python_frames_unavailable"));
	if (nobpf && json_object_size(json_object_get(meta, "python")))
		fprintf(stderr, "kiln record: python: Python frames not caught at each sample: %s; those samples are "
				"shown as [python frames unreadable] (--wall reads them with ptrace)\n", nobpf);
}

/* Heap events in one poll that say the rings are busy: the next poll
 * comes without a pause. */
#define HEAP_BUSY 4096

/* The record loop shared by launch and attach. Returns when the target is
 * gone (child reaped: *status set), the duration passed, or on a signal. */
int record_loop(struct rec *st, int *status, bool *child_done)
{
	/* the header at once: a recorder killed in its first second still
	 * leaves a valid (if empty) profile */
	int frc = recorder__flush(st->r);
	if (frc < 0) {
		cli__error(CMD, "cannot write %s: %s", st->o.output, strerror(-frc));
		return frc;
	}
	uint64_t start = now_ns(), last_flush = start, last_snap = start;
	uint64_t dur = st->o.duration > 0 ? (uint64_t)(st->o.duration * 1e9) : 0;
	long drained = 0;
	for (;;) {
		/* at least every 2 ms with a heap (its timeline), 10 ms without;
		 * without pause while the rings keep the recorder busy (their
		 * threads would wait for it while it slept) */
		if (st->s)
			st->ops->read(st->s, drained >= HEAP_BUSY ? 0 : st->h ? 2 : 10);
		else if (drained < HEAP_BUSY)
			usleep(st->h ? 2000 : 10000);
		if (st->ch)
			channel__poll(st->ch, &st->chops);
		drained = st->h ? heapsrc__poll(st->h) : 0;
		recorder__tick(st->r);
		if (st->out_waiting && !st->out_ready) {
			int orc = record_output_ready(st);
			if (orc < 0) {
				cli__error(CMD, "cannot write %s: %s", st->o.output, strerror(-orc));
				return orc;
			}
		}
		uint64_t now = now_ns();
		if (st->child > 0) {
			/* only its end: a traced child also reports stops, which are
			 * the ptrace sampler's to handle */
			siginfo_t si;
			memset(&si, 0, sizeof(si));
			/* a traced child reports its stops here too: only an exit,
			 * told by si_code, ends the recording */
			if (waitid(P_PID, (id_t)st->child, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == st->child &&
			    (si.si_code == CLD_EXITED || si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED)) {
				waitpid(st->child, status, 0);
				*child_done = true;
				return 0;
			}
		} else if ((kill((pid_t)st->o.pid, 0) < 0 && errno == ESRCH) || record_is_zombie(st->o.pid)) {
			*child_done = true;
			return 0;
		}
		if (record_got_signal)
			return 0;
		if (dur && now - start >= dur)
			return 0;
		if (st->o.snapshot_every > 0 && now - last_snap >= (uint64_t)(st->o.snapshot_every * 1e9)) {
			char path[4200];
			snprintf(path, sizeof(path), "%s.snap.%u", st->o.output, ++st->snapshots);
			snapshot_file(st, path);
			last_snap = now;
		}
		if (now - last_flush >= 500000000ull) {
			uint64_t lost = recorder__lost_samples(st->r);
			if (lost && !st->warned_lost && !st->o.quiet) {
				cli__warn(CMD, "samples are being lost (%llu so far): the recorder cannot keep up at -F %ld; "
					       "the summary and the report count them", (unsigned long long)lost, st->o.freq);
				st->warned_lost = true;
			}
			int rc = recorder__flush(st->r);
			if (rc < 0) {
				cli__error(CMD, "cannot write %s: %s; stopped recording (the program runs on); the file "
						"holds the %.1f s before, %zu bytes of records were lost",
					   st->o.output, strerror(-rc), (double)(now - start) / 1e9,
					   stream_writer__lost(st->w));
				return rc;
			}
			last_flush = now;
		}
	}
}

/* --heap -p: put the program's allocator slots back before the last drain
 * (what the shim published until then is still read). */
static void heap_detach(struct rec *st, bool gone)
{
	if (!st->heap_attached)
		return;
	st->heap_attached = false;
	json_t *ha = json_object_get(recorder__meta(st->r), "heap_attach");
	if (gone) {
		json_object_set_new(ha, "detached", json_string("the process exited"));
		return;
	}
	char err[512];
	if (heapattach__stop(&st->ha, err, sizeof(err)) < 0) {
		cli__warn(CMD, "%s; the program stops recording by itself once it sees kiln gone", err);
		json_object_set_new(ha, "detached", json_string("failed"));
		return;
	}
	json_object_set_new(ha, "detached", json_string("slots restored"));
	json_object_set_new(ha, "detach_stopped_us", json_integer((json_int_t)(st->ha.detach_stopped_ns / 1000)));
	json_object_set_new(ha, "detach_calls", json_integer(st->ha.detach_calls));
	json_object_set_new(ha, "detach_kill_safe_calls", json_integer(st->ha.detach_framed));
	recorder__waits_ended(st->r, (uint64_t)st->ha.waits_ended);
	st->ha.waits_ended = 0;
	if (!st->o.quiet)
		fprintf(stderr, "kiln record: heap tracking detached from pid %ld (slots restored; thread %d stopped %.2f "
				"ms, kill-safe calls: %d of %d)\n",
			st->o.pid, (int)st->ha.tid, (double)st->ha.detach_stopped_ns / 1e6, st->ha.detach_framed,
			st->ha.detach_calls);
}

/* -p: the samples against the CPU time the process had meanwhile (its
 * threads' utime and stime). The kernel takes one sample per 1/F s of a
 * task's CPU time; far fewer came (none at all was seen once: perf record
 * -p got none at the same time) is said, never left for the reader to
 * notice. */
static void check_samples(struct rec *st, bool child_done)
{
	/* (user space only, the kernel leaves out the samples that land in it:
	 * fewer is no loss then) */
	if (st->cpu_at_attach < 0 || child_done || !json_is_true(json_object_get(recorder__meta(st->r), "kernel_stacks")))
		return;
	double now = record_proc_cpu(st->o.pid);
	if (now < st->cpu_at_attach)
		return;
	double used = now - st->cpu_at_attach, expected = used * (double)st->o.freq;
	uint64_t got = recorder__samples(st->r) + recorder__lost_samples(st->r);
	if (expected < 200 || (double)got >= expected / 2)
		return;
	json_object_set_new(recorder__meta(st->r), "samples_expected",
			    json_pack("{s:f, s:I, s:I}", "cpu_seconds", used, "expected", (json_int_t)expected,
				      "samples", (json_int_t)got));
	recorder__meta_changed(st->r);
	cli__warn(CMD, "pid %ld had %.2f s of CPU while attached, but only %llu samples came of the %.0f the kernel "
		       "takes at %ld Hz: the profile is thin (the kernel throttled or dropped them)",
		  st->o.pid, used, (unsigned long long)got, expected, st->o.freq);
}

int record_finish(struct rec *st, int status, bool child_done, uint64_t t0)
{
	heap_detach(st, child_done);
	if (st->s) {
		st->ops->stop(st->s);
		st->ops->read(st->s, 0);
	}
	check_samples(st, child_done);
	/* what follows drains what was recorded before now (a busy program's
	 * rings can take a second): the recording's length ends here */
	recorder__stopped(st->r);
	double secs = (double)(now_ns() - t0) / 1e9;
	if (st->ch)
		channel__poll(st->ch, &st->chops);
	if (st->h)
		heapsrc__poll(st->h);
	pid_t main_pid = st->child > 0 ? st->child : (pid_t)st->o.pid;
	if (child_done)
		recorder__exit(st->r, (uint32_t)main_pid, st->child > 0 ? status : -1);
	if (st->h) {
		heapsrc__finish(st->h);
		json_t *ha = json_object_get(recorder__meta(st->r), "heap_attach");
		if (ha)
			json_object_set_new(ha, "frees_before",
					    json_integer((json_int_t)recorder__unknown_frees(st->r, (uint32_t)main_pid)));
		uint64_t frees, over;
		recorder__heap_unmatched(st->r, &frees, &over);
		json_object_set_new(recorder__meta(st->r), "heap_unmatched",
				    json_pack("{sIsI}", "frees", (json_int_t)frees, "allocs_over_live", (json_int_t)over));
		json_object_set_new(recorder__meta(st->r), "heap_stamped_images",
				    json_integer((json_int_t)heapsrc__stamped(st->h)));
		recorder__meta_changed(st->r);
		size_t it = 0;
		uint32_t upid;
		const char *comm;
		int cause, untracked = 0;
		while (recorder__untracked(st->r, &it, &upid, &comm, &cause)) {
			cli__warn(CMD, "the heap of %s (pid %u) was not tracked: %s", comm, upid, kiln_heap_loss__why(cause));
			untracked++;
		}
		if (!heapsrc__seen(st->h) && !untracked && !st->ha.own_malloc[0])
			cli__warn(CMD, "no heap activity was seen: %s never called the system allocator "
				       "(or has one of its own, which kiln does not see)",
				  st->o.pid > 0 ? "the program" : st->o.argv[0]);
	}
	if (!st->out_ready) {
		/* a FIFO nobody has opened yet: wait for its reader now (Ctrl-C
		 * gives up: open is interrupted, the handler has no SA_RESTART) */
		int orc = safe_out__open_through(&st->out, false);
		if (orc < 0) {
			cli__error(CMD, "%s: no reader opened it (%s); the profile was not written", st->o.output,
				   strerror(-orc));
			return -EPIPE;
		}
		stream_writer__set_fd(st->w, st->out.fd);
		st->out_ready = true;
	}
	if (st->s && st->ops->report)
		st->ops->report(st->s);
	int rc = recorder__finish(st->r);
	if (rc == 0)
		summary(st, secs, child_done ? "recorded" : "recorded (detached)");
	st->out_bytes = stream_writer__bytes(st->w);
	int wrc = stream_writer__free(st->w);
	if (wrc < 0) /* the last flush failed: what reached the file */
		st->out_bytes = 0;
	st->w = NULL;
	if (rc == 0)
		rc = wrc;
	return rc;
}

void record_cleanup(struct rec *st)
{
	if (st->s)
		st->ops->close(st->s);
	heapsrc__free(st->h);
	channel__free(st->ch);
	recorder__free(st->r);
	if (st->w)
		stream_writer__free(st->w);
	safe_out__close(&st->out); /* removes only a temporary never put in place */
}
