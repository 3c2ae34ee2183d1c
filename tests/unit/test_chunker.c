/*
 * test_chunker.c - content-defined chunking: cuts are deterministic, sizes
 * stay within bounds, and an edit in one place moves only nearby cuts.
 */
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"
#include "tests/unit/check.h"

#define DATA_SIZE (48u * 1024 * 1024)

static uint8_t *random_data(size_t size, unsigned seed)
{
	uint8_t *data = xmalloc(size);

	test_fill_random(data, size, seed);
	return data;
}

/* Cuts data into chunks; returns their count and fills cut offsets. */
static size_t cut_all(const struct chunker *chunker, const uint8_t *data,
		      size_t size, size_t *ends, size_t max_cuts)
{
	size_t offset = 0, count = 0;

	while (offset < size && count < max_cuts) {
		offset += chunker_cut(chunker, data + offset, size - offset);
		ends[count++] = offset;
	}
	return count;
}

static void test_bounds_and_determinism(void)
{
	struct chunker chunker;
	uint8_t *data = random_data(DATA_SIZE, 1);
	size_t *a = xcalloc(4096, sizeof(size_t)), *b = xcalloc(4096, sizeof(size_t));
	size_t n, m, i, prev = 0;

	chunker_init(&chunker, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
	n = cut_all(&chunker, data, DATA_SIZE, a, 4096);
	m = cut_all(&chunker, data, DATA_SIZE, b, 4096);
	CHECK(n == m);
	CHECK(!memcmp(a, b, n * sizeof(size_t)));
	CHECK(a[n - 1] == DATA_SIZE);
	for (i = 0; i < n; i++) {
		size_t len = a[i] - prev;

		CHECK(len <= CHUNK_MAX);
		if (i + 1 < n)
			CHECK(len >= CHUNK_MIN);
		prev = a[i];
	}
	/* Normalized chunking keeps the mean near avg (within a factor 1.5). */
	CHECK(DATA_SIZE / n > CHUNK_AVG * 2 / 3);
	CHECK(DATA_SIZE / n < CHUNK_AVG * 3 / 2);
	free(a);
	free(b);
	free(data);
}

/* Counts chunks of b whose (offset-independent) content also is in a. */
static size_t shared_chunks(const size_t *a, size_t n, const uint8_t *da,
			    const size_t *b, size_t m, const uint8_t *db)
{
	size_t i, j, shared = 0, pa, pb = 0;

	for (j = 0; j < m; pb = b[j], j++) {
		pa = 0;
		for (i = 0; i < n; pa = a[i], i++) {
			if (a[i] - pa == b[j] - pb && !memcmp(da + pa, db + pb, a[i] - pa)) {
				shared++;
				break;
			}
		}
	}
	return shared;
}

static void test_edit_is_local(void)
{
	struct chunker chunker;
	uint8_t *data = random_data(DATA_SIZE, 2);
	uint8_t *edited = xmalloc(DATA_SIZE + 100);
	size_t *a = xcalloc(4096, sizeof(size_t)), *b = xcalloc(4096, sizeof(size_t));
	size_t n, m, shared;

	chunker_init(&chunker, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
	n = cut_all(&chunker, data, DATA_SIZE, a, 4096);

	/* Overwrite 100 bytes in the middle: at most two chunks differ. */
	memcpy(edited, data, DATA_SIZE);
	memset(edited + DATA_SIZE / 2, 0x5a, 100);
	m = cut_all(&chunker, edited, DATA_SIZE, b, 4096);
	shared = shared_chunks(a, n, data, b, m, edited);
	CHECK(m - shared <= 2);

	/* Insert 100 bytes in the middle: cuts resynchronise after it. */
	memcpy(edited, data, DATA_SIZE / 2);
	memset(edited + DATA_SIZE / 2, 0xa5, 100);
	memcpy(edited + DATA_SIZE / 2 + 100, data + DATA_SIZE / 2, DATA_SIZE / 2);
	m = cut_all(&chunker, edited, DATA_SIZE + 100, b, 4096);
	shared = shared_chunks(a, n, data, b, m, edited);
	CHECK(m - shared <= 3);
	free(a);
	free(b);
	free(edited);
	free(data);
}

static void test_small_and_uniform_input(void)
{
	struct chunker chunker;
	uint8_t *zeros = xcalloc(3 * CHUNK_MAX, 1);

	chunker_init(&chunker, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
	CHECK(chunker_cut(&chunker, zeros, 0) == 0);
	CHECK(chunker_cut(&chunker, zeros, 10) == 10);
	CHECK(chunker_cut(&chunker, zeros, CHUNK_MIN) == CHUNK_MIN);
	/* Zeros never hit a cut point: the max bounds the chunk. */
	CHECK(chunker_cut(&chunker, zeros, 3 * CHUNK_MAX) == CHUNK_MAX);
	free(zeros);
}

int main(void)
{
	RUN_TEST(test_bounds_and_determinism);
	RUN_TEST(test_edit_is_local);
	RUN_TEST(test_small_and_uniform_input);
	return check_failures ? 1 : 0;
}
