/*
 * chunk_sizes.c - the measurement behind CHUNK_MIN/AVG/MAX: for several
 * size triples, how fast the chunker cuts a file, how many chunks (catalog
 * rows) it makes, how much of the file an edit re-stores, and how many
 * bytes a random 4 KiB read must decompress.
 *
 * usage: bench-chunk-sizes FILE   (e.g. large/ckpt-0.bin of the dataset)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/internal.h"

struct cuts {
	size_t *ends;
	uint8_t (*hashes)[STORE_HASH_SIZE];
	size_t count;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cut_file(const struct chunker *chunker, const uint8_t *data,
		     size_t size, struct cuts *cuts, bool hash)
{
	size_t offset = 0;

	cuts->count = 0;
	while (offset < size) {
		size_t len = chunker_cut(chunker, data + offset, size - offset);

		cuts->ends = xrealloc(cuts->ends, (cuts->count + 1) * sizeof(size_t));
		cuts->hashes = xrealloc(cuts->hashes, (cuts->count + 1) * STORE_HASH_SIZE);
		if (hash)
			hash_bytes(data + offset, len, cuts->hashes[cuts->count]);
		offset += len;
		cuts->ends[cuts->count++] = offset;
	}
}

/* Bytes of b's chunks whose hash a does not have. */
static size_t new_bytes(const struct cuts *a, const struct cuts *b)
{
	size_t i, j, total = 0, start = 0;

	for (j = 0; j < b->count; start = b->ends[j], j++) {
		bool found = false;

		for (i = 0; i < a->count && !found; i++)
			found = !memcmp(a->hashes[i], b->hashes[j], STORE_HASH_SIZE);
		if (!found)
			total += b->ends[j] - start;
	}
	return total;
}

int main(int argc, char **argv)
{
	static const size_t avgs[] = { 64 * 1024, 256 * 1024, 1024 * 1024, 4096 * 1024 };
	struct stat st;
	uint8_t *data, *edited;
	size_t size, k;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: %s FILE\n", argv[0]);
		return 2;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(argv[1]);
		return 1;
	}
	size = (size_t)st.st_size;
	data = xmalloc(size);
	edited = xmalloc(size + 4096);
	if (fs_pread_all(fd, data, size, 0) < 0) {
		perror(argv[1]);
		return 1;
	}
	close(fd);
	printf("%-22s %8s %10s %14s %14s\n", "min/avg/max KiB", "chunks", "cut MB/s",
	       "overwrite new", "insert new");
	for (k = 0; k < sizeof(avgs) / sizeof(avgs[0]); k++) {
		struct chunker chunker;
		struct cuts base = { 0 }, changed = { 0 };
		size_t avg = avgs[k];
		double t0, t1;

		chunker_init(&chunker, avg / 4, avg, avg * 4);
		t0 = now();
		cut_file(&chunker, data, size, &base, false);
		t1 = now();
		cut_file(&chunker, data, size, &base, true);

		/* 100 bytes overwritten in the middle. */
		memcpy(edited, data, size);
		memset(edited + size / 2, 0x5a, 100);
		cut_file(&chunker, edited, size, &changed, true);
		printf("%6zu/%5zu/%6zu %11zu %10.0f %12.2f%% ", avg / 4096, avg / 1024,
		       avg * 4 / 1024, base.count, (double)size / (t1 - t0) / 1e6,
		       100.0 * (double)new_bytes(&base, &changed) / (double)size);

		/* 4 KiB inserted in the middle. */
		memcpy(edited, data, size / 2);
		memset(edited + size / 2, 0xa5, 4096);
		memcpy(edited + size / 2 + 4096, data + size / 2, size - size / 2);
		cut_file(&chunker, edited, size + 4096, &changed, true);
		printf("%13.2f%%\n", 100.0 * (double)new_bytes(&base, &changed) / (double)size);
		free(base.ends);
		free(base.hashes);
		free(changed.ends);
		free(changed.hashes);
	}
	free(data);
	free(edited);
	return 0;
}
