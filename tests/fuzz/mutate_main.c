/* Without libFuzzer: feed the fuzz target every truncation of each seed
 * file (at every byte up to 512, then every 4 KiB and the last 64 bytes)
 * and N seeded random mutations. usage: mutate N SEED_FILE... */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
	*n = fread(b, 1, (size_t)(len > 0 ? len : 0), f);
	fclose(f);
	return b;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	long n = atol(argv[1]);
	uint64_t rng = 0x9e3779b97f4a7c15ULL;
	long runs = 0;
	for (int a = 2; a < argc; a++) {
		size_t len;
		unsigned char *seed = slurp(argv[a], &len);
		if (!seed)
			return 2;
		for (size_t cut = 0; cut <= len; cut++) {
			if (cut > 512 && cut % 4096 && cut + 64 < len)
				continue;
			LLVMFuzzerTestOneInput(seed, cut);
			runs++;
		}
		unsigned char *m = malloc(len ? len : 1);
		for (long i = 0; i < n; i++) {
			memcpy(m, seed, len);
			int k = 1 + (int)(rng % 8);
			for (int j = 0; j < k && len; j++) {
				rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
				size_t at = rng % len;
				switch ((rng >> 40) % 4) {
				case 0: m[at] = (unsigned char)(rng >> 16); break;
				case 1: m[at] ^= (unsigned char)(1u << ((rng >> 24) % 8)); break;
				case 2: m[at] = 0xff; break;
				default: m[at] = 0; break;
				}
			}
			rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
			LLVMFuzzerTestOneInput(m, len);
			runs++;
		}
		free(m);
		free(seed);
	}
	printf("mutate: %ld inputs, no crash\n", runs);
	return 0;
}
