/* gen_profile OUT N [LOSSES]: a kiln profile with N distinct stacks over a
 * pool of 3,000 function names: the flamegraph's and the readers' stress
 * input; with LOSSES, as many HEAP_LOSS records, each for a pid of its own
 * (what forged loss messages once made a recorder write).
 * Written with src/stream's encoders, so it is always the format the
 * reader reads. Stacks are random walks down a tree with five children a
 * node (they share prefixes as real ones do, so many frames are wide
 * enough to draw); fixed seed, so every run writes the same file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kiln/kiln.h"
#include "stream/records.h"
#include "stream/stream.h"

static uint64_t rng = 5;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: gen_profile OUT N [LOSSES]\n");
		return 2;
	}
	long n = atol(argv[2]);
	struct stream_writer *w = stream_writer__open(argv[1]);
	if (!w || n < 1) {
		perror(argv[1]);
		return 1;
	}
	struct buf b;
	buf__init(&b);
	const char *meta = "{\"kind\":\"profile\",\"program\":\"synthetic\",\"start_ns\":0,\"frequency\":999}";
	stream_writer__record(w, REC_META, meta, strlen(meta));
	rec_module__encode(&b, 0, MOD_FILE, 0, "/bin/synthetic", "");
	stream_writer__record(w, REC_MODULE, b.data, b.len);
	enum { NF = 3000 };
	char name[64], file[32];
	for (uint32_t i = 0; i < NF; i++) {
		b.len = 0;
		rec_loc__encode(&b, &(struct rec_loc){.id = i, .module = 0, .addr = 0x1000 + 16 * i, .flags = LOC_RETADDR});
		stream_writer__record(w, REC_LOC, b.data, b.len);
		snprintf(name, sizeof(name), "function_%04u_%.*s", i, (int)(i % 23), "xxxxxxxxxxxxxxxxxxxxxxx");
		snprintf(file, sizeof(file), "src/file%u.c", i % 50);
		b.len = 0;
		rec_sym__begin(&b, i, 1);
		rec_sym__frame(&b, name, file, i % 900, 0);
		stream_writer__record(w, REC_SYM, b.data, b.len);
	}
	struct buf counts;
	buf__init(&counts);
	rec_counts__begin(&counts);
	for (long sid = 0; sid < n; sid++) {
		uint16_t depth = (uint16_t)(3 + next() % 38);
		uint32_t locs[64], cur = (uint32_t)(next() % 4);
		for (uint16_t d = 0; d < depth; d++) {
			locs[depth - 1 - d] = cur; /* leaf first */
			uint32_t step = 0;
			while (step < 4 && next() % 10 < 6) /* mostly the first children */
				step++;
			cur = (cur * 5 + 1 + step) % NF;
		}
		b.len = 0;
		rec_stack__encode(&b, (uint32_t)sid, 0, depth, locs);
		stream_writer__record(w, REC_STACK, b.data, b.len);
		rec_counts__add(&counts, &(struct rec_count){1, 1, (uint32_t)sid, KM_CPU, (int64_t)(1 + next() % 50)});
		if (rec_counts__n(&counts) == 20000 || sid == n - 1) {
			stream_writer__record(w, REC_COUNTS, counts.data, counts.len);
			rec_counts__begin(&counts);
		}
		if ((sid & 4095) == 0 && stream_writer__flush(w) < 0)
			break;
	}
	long losses = argc > 3 ? atol(argv[3]) : 0;
	for (long i = 0; i < losses; i++) {
		b.len = 0;
		rec_heap_loss__encode(&b, &(struct rec_heap_loss){.pid = (uint32_t)(100000 + i), .cause = HL_NO_RING, .count = 1});
		stream_writer__record(w, REC_HEAP_LOSS, b.data, b.len);
		if ((i & 4095) == 0 && stream_writer__flush(w) < 0)
			break;
	}
	b.len = 0;
	rec_end__encode(&b, &(struct rec_end){1000000000ull, 0, 0});
	stream_writer__record(w, REC_END, b.data, b.len);
	buf__release(&b);
	buf__release(&counts);
	if (stream_writer__free(w) < 0) {
		perror(argv[1]);
		return 1;
	}
	return 0;
}
