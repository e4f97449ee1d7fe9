/* The profile file format, version 1 (docs/file-format.md is the prose).
 *
 *   file   := header record*
 *   header := "KILNPROF" u32 version u32 header_size(16)
 *   record := u16 type u16 zero u32 len u32 crc32(payload) payload[len]
 *
 * All integers little-endian. Records are written in order of dependence
 * (a module before the locations in it, a location before stacks using it),
 * flushed at least once a second, so a file cut short is valid up to its
 * last whole record. A clean recording ends with REC_END. Each flush's
 * records may be stored compressed as one ZBLOCK record (its own CRC over
 * the compressed bytes, each record inside keeping its header and CRC): a
 * file cut short is then valid up to its last whole block.
 */
#ifndef KILN_STREAM_FORMAT_H
#define KILN_STREAM_FORMAT_H

#define KILN_MAGIC "KILNPROF"
#define KILN_FORMAT_VERSION 1u
#define KILN_HEADER_SIZE 16u
#define KILN_REC_HEADER 12u
#define KILN_REC_MAX (64u << 20) /* no record is larger; a larger len is corruption */

enum kiln_rec {
	REC_META = 1,    /* JSON object: kind, program, argv, start_ns, frequency, events */
	REC_PROCESS = 2, /* u32 pid, u32 ppid, u64 start_ns, str name, str exe */
	REC_THREAD = 3,  /* u32 pid, u32 tid, str name */
	REC_EXIT = 4,    /* u32 pid, i32 wait status (-1 unknown), u64 end_ns */
	REC_MODULE = 5,  /* u32 id, u8 kind, u32 pid, str path, str build_id */
	REC_LOC = 6,     /* u32 id, u32 module, u64 addr (ELF vaddr in module), u8 flags */
	REC_SYM = 7,     /* u32 loc, u16 n, n x {str func, str file, u32 line, u8 inlined}, innermost first */
	REC_STACK = 8,   /* u32 id, u16 flags, u16 depth, u32 loc[depth], leaf first */
	REC_COUNTS = 9,  /* u32 n, n x {u32 pid, u32 tid, u32 stack, u8 metric, i64 value}: absolute, last wins */
	REC_END = 10,    /* u64 end_ns, u64 samples, u64 lost */
	REC_LOST = 11,   /* u64 lost samples so far */
	REC_HEAP_LOSS = 12, /* u32 pid, u8 cause (enum kiln_heap_loss), u64 count: absolute, last wins */
	REC_TIME = 13,   /* u64 realtime ns: the recording reached this time (each flush) */
	REC_TIMELINE = 14, /* u64 realtime ns, u16 n, n x {u32 pid, i64 heap, u64 rss}: one point of memory over time */
	REC_ZBLOCK = 15, /* u32 raw_len, zstd frame of raw_len bytes: records (never a ZBLOCK) compressed as one */
	REC_SLOW = 16,   /* u32 pid, u32 tid, u64 start_ns, u64 duration_ns, u32 stack, str task: one callback held an event loop */
	REC_WINDOW = 17, /* u64 realtime ns, then a COUNTS payload of deltas: what changed per cell since the window before */
};

/* A ZBLOCK holds at most this many bytes of records once decompressed (the
 * writer closes a block at KILN_ZBLOCK_TARGET; one record may exceed it). */
#define KILN_ZBLOCK_TARGET (16u << 20)
#define KILN_ZBLOCK_MAX (KILN_REC_MAX + KILN_REC_HEADER)

/* A TIMELINE entry's heap is the most bytes live in the process since the
 * point before (so the largest of them is the peak, exactly), or
 * TIMELINE_NO_HEAP where the heap is not tracked; rss is the resident set
 * when the point was taken, or TIMELINE_NO_RSS where it could not be read.
 * pid 0 is every process of the recording together. */
#define TIMELINE_NO_HEAP INT64_MIN
#define TIMELINE_NO_RSS UINT64_MAX
#define TIMELINE_MAX_ENTRIES 4096

/* A WINDOW's entries are what one stretch of the recording added to a cell,
 * ending at the record's time (the one before it, or the start, opens it):
 * cpu and wall samples taken, alloc_bytes and alloc_count allocated, and
 * live_bytes and live_count as signed deltas: allocated less freed (an
 * image's end frees nothing: what it held stays counted, as its leaks).
 * Summed over every window, cpu, wall and alloc_* are the COUNTS totals,
 * and live_* are leak_* for every image that ended. Several records may share
 * one time (a large window is split); a window with nothing in it is
 * written too (its time is an edge). */

enum kiln_module_kind {
	MOD_FILE = 0,  /* an ELF file on disk */
	MOD_VDSO = 1,  /* the kernel's vDSO */
	MOD_ANON = 2,  /* anonymous executable memory (JIT); addr is absolute */
	MOD_KERNEL = 3,
	MOD_PYTHON = 4, /* Python frames; addr is an id, the SYM names function, file and line */
};

#define LOC_RETADDR 1u /* the address is a return address: symbolize addr-1 */
#define STACK_TRUNCATED 1u /* the unwinder stopped early; a marker frame is shown */

#endif
