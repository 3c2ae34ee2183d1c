/*
 * chunker.c - content-defined chunking (a gear rolling hash with FastCDC's
 * normalized cut points) and the SHA-256 that names chunks.
 *
 * A cut depends only on the last 64 bytes before it, so an edit in one
 * place moves at most the cuts around it and the rest of a file keeps its
 * chunks: a changed checkpoint re-stores only what changed.
 */
#include <openssl/evp.h>

#include "store/internal.h"

/*
 * The gear table must never change: it decides every chunk boundary ever
 * stored.  It is derived from a fixed seed with splitmix64 so it needs no
 * 256-line literal.
 */
static uint64_t gear[256];
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

static void gear_fill(void)
{
	uint64_t state = 0x64737461636b21ull;	/* "dstack!" */
	int i;

	for (i = 0; i < 256; i++) {
		uint64_t z = (state += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		gear[i] = z ^ (z >> 31);
	}
}

/* A mask of the top bits of the hash: those depend on the most bytes. */
static uint64_t top_bits(unsigned bits)
{
	return ~(~0ull >> bits);
}

void chunker_init(struct chunker *chunker, size_t min, size_t avg, size_t max)
{
	unsigned bits = 0;

	pthread_once(&gear_once, gear_fill);
	while ((1ull << (bits + 1)) <= avg)
		bits++;
	chunker->min = min;
	chunker->avg = avg;
	chunker->max = max;
	/* Normalized chunking (FastCDC, level 2): sizes bunch near avg. */
	chunker->mask_small = top_bits(bits + 2);
	chunker->mask_large = top_bits(bits - 2);
}

size_t chunker_cut(const struct chunker *chunker, const uint8_t *data,
		   size_t len)
{
	size_t i = chunker->min, normal = chunker->avg;
	uint64_t hash = 0;

	if (len <= chunker->min)
		return len;
	if (len > chunker->max)
		len = chunker->max;
	if (normal > len)
		normal = len;
	for (; i < normal; i++) {
		hash = (hash << 1) + gear[data[i]];
		if (!(hash & chunker->mask_small))
			return i;
	}
	for (; i < len; i++) {
		hash = (hash << 1) + gear[data[i]];
		if (!(hash & chunker->mask_large))
			return i;
	}
	return len;
}

void hash_bytes(const void *data, size_t len, uint8_t out[STORE_HASH_SIZE])
{
	EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL);
}
