/*
 * read.c - reading part of a stored file, for the FUSE file system.
 *
 * Only the chunks a range touches are read.  Decompressed, verified chunks
 * are kept in one cache for the whole process, shared by every store
 * handle (each FUSE worker thread has a handle of its own).  A chunk is
 * named by the SHA-256 of its bytes, so once verified it is right for any
 * handle of any store, wherever gc moves its object later.
 *
 * The cache is an LRU bounded in bytes behind one mutex.  Entries are
 * reference-counted: bytes are copied out without the lock, and an entry
 * evicted meanwhile lives until its last reader lets go.  A chunk being
 * loaded sits in the table too, and threads wanting it wait for the one
 * loading it: the kernel's readahead sends neighbouring reads from several
 * threads at once, and each would otherwise decompress the same chunk.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/internal.h"

/* 64 chunks of the average size; the bound counts entry headers too. */
#define CHUNK_CACHE_CAPACITY (64u * 1024 * 1024)
#define CHUNK_CACHE_MIN_BUCKETS 256

/* Checking first keeps a bad record from making us allocate gigabytes. */
#define CHUNK_SIZE_LIMIT PACK_BLOCK_MAX

enum cached_chunk_state {
	CACHED_CHUNK_LOADING,
	CACHED_CHUNK_READY,
	CACHED_CHUNK_FAILED,	/* out of the table; waiters load it themselves */
};

struct cached_chunk {
	struct cached_chunk *bucket_next;
	struct cached_chunk *lru_prev, *lru_next;	/* ready ones only */
	unsigned refs;		/* the table's while in it, and each user's */
	bool in_table;		/* false once evicted, even with users left */
	enum cached_chunk_state state;
	uint8_t hash[STORE_HASH_SIZE];
	uint32_t size;
	uint8_t data[];
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t loaded;		/* some entry left CACHED_CHUNK_LOADING */
	struct cached_chunk **buckets;
	size_t bucket_count;		/* a power of two, or 0 before first use */
	size_t count;			/* entries in the table */
	struct cached_chunk *lru_newest, *lru_oldest;
	uint64_t bytes;			/* cost of the ready entries */
	uint64_t capacity;
} chunk_cache = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.loaded = PTHREAD_COND_INITIALIZER,
	.capacity = CHUNK_CACHE_CAPACITY,
};

static uint64_t cached_chunk_cost(const struct cached_chunk *chunk)
{
	return sizeof(*chunk) + chunk->size;
}

/* The link that points at hash's entry, or the NULL ending its bucket. */
static struct cached_chunk **chunk_cache_link(const uint8_t *hash)
{
	struct cached_chunk **link;
	uint64_t key;

	/* SHA-256 bytes are already uniform: any 8 of them make a good key. */
	memcpy(&key, hash, sizeof(key));
	link = &chunk_cache.buckets[key & (chunk_cache.bucket_count - 1)];
	while (*link && memcmp((*link)->hash, hash, STORE_HASH_SIZE))
		link = &(*link)->bucket_next;
	return link;
}

static void chunk_cache_grow(void)
{
	struct cached_chunk **old = chunk_cache.buckets;
	size_t old_count = chunk_cache.bucket_count, i;

	chunk_cache.bucket_count = old_count ? 2 * old_count : CHUNK_CACHE_MIN_BUCKETS;
	chunk_cache.buckets = xcalloc(chunk_cache.bucket_count, sizeof(*chunk_cache.buckets));
	for (i = 0; i < old_count; i++) {
		struct cached_chunk *chunk = old[i], *next;

		for (; chunk; chunk = next) {
			next = chunk->bucket_next;
			chunk->bucket_next = NULL;
			*chunk_cache_link(chunk->hash) = chunk;
		}
	}
	free(old);
}

static void chunk_cache_lru_unlink(struct cached_chunk *chunk)
{
	if (chunk->lru_prev)
		chunk->lru_prev->lru_next = chunk->lru_next;
	else
		chunk_cache.lru_newest = chunk->lru_next;
	if (chunk->lru_next)
		chunk->lru_next->lru_prev = chunk->lru_prev;
	else
		chunk_cache.lru_oldest = chunk->lru_prev;
	chunk->lru_prev = chunk->lru_next = NULL;
}

static void chunk_cache_lru_push(struct cached_chunk *chunk)
{
	chunk->lru_prev = NULL;
	chunk->lru_next = chunk_cache.lru_newest;
	if (chunk_cache.lru_newest)
		chunk_cache.lru_newest->lru_prev = chunk;
	else
		chunk_cache.lru_oldest = chunk;
	chunk_cache.lru_newest = chunk;
}

/* Drops one reference, under the lock. */
static void chunk_cache_put_locked(struct cached_chunk *chunk)
{
	if (--chunk->refs == 0)
		free(chunk);
}

/* Takes chunk out of the table and drops the table's reference. */
static void chunk_cache_remove(struct cached_chunk *chunk)
{
	*chunk_cache_link(chunk->hash) = chunk->bucket_next;
	chunk->in_table = false;
	chunk_cache.count--;
	if (chunk->state == CACHED_CHUNK_READY) {
		chunk_cache_lru_unlink(chunk);
		chunk_cache.bytes -= cached_chunk_cost(chunk);
	}
	chunk_cache_put_locked(chunk);
}

static void chunk_cache_trim(void)
{
	while (chunk_cache.bytes > chunk_cache.capacity && chunk_cache.lru_oldest)
		chunk_cache_remove(chunk_cache.lru_oldest);
}

void chunk_cache_set_capacity(uint64_t bytes)
{
	pthread_mutex_lock(&chunk_cache.lock);
	chunk_cache.capacity = bytes;
	chunk_cache_trim();
	pthread_mutex_unlock(&chunk_cache.lock);
}

static void chunk_cache_put(struct cached_chunk *chunk)
{
	pthread_mutex_lock(&chunk_cache.lock);
	chunk_cache_put_locked(chunk);
	pthread_mutex_unlock(&chunk_cache.lock);
}

/*
 * A new entry for hash, in the table and loading, under the lock: two
 * references, the table's and the loader's.
 */
static struct cached_chunk *chunk_cache_claim(const uint8_t *hash, uint32_t size)
{
	struct cached_chunk *chunk = xmalloc(sizeof(*chunk) + size);

	memset(chunk, 0, sizeof(*chunk));
	memcpy(chunk->hash, hash, STORE_HASH_SIZE);
	chunk->size = size;
	chunk->refs = 2;
	chunk->in_table = true;
	chunk->state = CACHED_CHUNK_LOADING;
	if (chunk_cache.count >= chunk_cache.bucket_count)
		chunk_cache_grow();
	*chunk_cache_link(hash) = chunk;
	chunk_cache.count++;
	return chunk;
}

/*
 * Reads and verifies a claimed entry's bytes and wakes its waiters: the
 * entry, still referenced, or NULL (it is out of the table) with err set.
 */
static struct cached_chunk *chunk_cache_fill(struct store *store, struct cached_chunk *chunk,
					     struct error *err)
{
	if (object_read(store, chunk->hash, chunk->data, chunk->size, true, err) < 0) {
		pthread_mutex_lock(&chunk_cache.lock);
		chunk_cache_remove(chunk);
		chunk->state = CACHED_CHUNK_FAILED;
		chunk_cache_put_locked(chunk);
		chunk = NULL;
	} else {
		pthread_mutex_lock(&chunk_cache.lock);
		chunk->state = CACHED_CHUNK_READY;
		chunk_cache_lru_push(chunk);
		chunk_cache.bytes += cached_chunk_cost(chunk);
		chunk_cache_trim();
	}
	pthread_cond_broadcast(&chunk_cache.loaded);
	pthread_mutex_unlock(&chunk_cache.lock);
	return chunk;
}

/*
 * The chunk named by hash, from the cache or else read, verified and
 * cached; the caller puts the reference it gets.  NULL on failure, with
 * err filled.
 */
static struct cached_chunk *chunk_cache_get(struct store *store, const uint8_t *hash,
					    uint32_t size, struct error *err)
{
	struct cached_chunk *chunk;
	char hex[65];

	pthread_mutex_lock(&chunk_cache.lock);
	for (;;) {
		chunk = chunk_cache.bucket_count ? *chunk_cache_link(hash) : NULL;
		if (!chunk)
			break;
		chunk->refs++;
		while (chunk->state == CACHED_CHUNK_LOADING)
			pthread_cond_wait(&chunk_cache.loaded, &chunk_cache.lock);
		if (chunk->state == CACHED_CHUNK_READY) {
			/* If evicted while we waited, it is still good to read. */
			if (chunk->in_table) {
				chunk_cache_lru_unlink(chunk);
				chunk_cache_lru_push(chunk);
			}
			pthread_mutex_unlock(&chunk_cache.lock);
			if (chunk->size != size) {
				/* One hash, one size: the record or the catalog is wrong. */
				hex_encode(hash, STORE_HASH_SIZE, hex);
				error_set(err, -EIO, "object %s: size %u expected, %u stored",
					  hex, size, chunk->size);
				chunk_cache_put(chunk);
				return NULL;
			}
			return chunk;
		}
		/* Its loader failed and took it out: try again, for our own error. */
		chunk_cache_put_locked(chunk);
	}
	chunk = chunk_cache_claim(hash, size);
	pthread_mutex_unlock(&chunk_cache.lock);
	return chunk_cache_fill(store, chunk, err);
}

/*
 * Loads the chunk named by hash into the cache unless it is there or
 * being loaded.  Errors are left for chunk_cache_get to meet again.
 */
static void chunk_cache_load(struct store *store, const uint8_t *hash, uint32_t size)
{
	struct cached_chunk *chunk = NULL;
	struct error ignored = { 0 };

	pthread_mutex_lock(&chunk_cache.lock);
	if (!chunk_cache.bucket_count || !*chunk_cache_link(hash))
		chunk = chunk_cache_claim(hash, size);
	pthread_mutex_unlock(&chunk_cache.lock);
	if (chunk && (chunk = chunk_cache_fill(store, chunk, &ignored)))
		chunk_cache_put(chunk);
}


/*
 * The first chunk is found by summing sizes from the file's first, once a
 * call: a file has about one chunk a MiB, so even a 10 GiB file costs
 * 10,000 additions, little next to one chunk's decompression or a FUSE
 * round trip.
 */
int store_entry_pread(struct store *store, const struct store_entry *entry, void *buf,
		      size_t size, uint64_t offset, size_t *done, struct error *err)
{
	uint8_t *out = buf;
	uint64_t start = 0, end;	/* of chunk i within the file */
	uint64_t first_start;
	size_t copied = 0, first, i;

	*done = 0;
	if (!S_ISREG(entry->mode))
		return error_set(err, S_ISDIR(entry->mode) ? -EISDIR : -EINVAL,
				 "%s/%s: not a regular file", entry->artifact, entry->path);
	if (offset >= entry->size)
		return 0;
	if (size > entry->size - offset)
		size = (size_t)(entry->size - offset);
	/* The first chunk the range touches, found once for both passes. */
	for (first = 0; first < entry->chunk_count; first++, start = end) {
		end = start + le32_get(entry->chunks + first * STORE_CHUNK_RECORD_SIZE +
				       STORE_HASH_SIZE);
		if (end > offset)
			break;
	}
	first_start = start;
	/*
	 * The kernel's readahead asks for neighbouring ranges on several
	 * threads at once, and neighbours share a chunk at their edge.  Each
	 * thread first loads what no other is loading, then waits for the
	 * rest: taken in order, the second thread would wait for the shared
	 * chunk before starting on its own, and one core would do the work.
	 */
	for (i = first; i < entry->chunk_count && start < offset + size; i++, start = end) {
		const uint8_t *record = entry->chunks + i * STORE_CHUNK_RECORD_SIZE;
		uint32_t chunk_size = le32_get(record + STORE_HASH_SIZE);

		end = start + chunk_size;
		if (chunk_size <= CHUNK_SIZE_LIMIT)
			chunk_cache_load(store, record, chunk_size);
	}
	start = first_start;
	for (i = first; i < entry->chunk_count && copied < size; i++, start = end) {
		const uint8_t *record = entry->chunks + i * STORE_CHUNK_RECORD_SIZE;
		uint32_t chunk_size = le32_get(record + STORE_HASH_SIZE);
		struct cached_chunk *chunk;
		uint64_t at;
		size_t n;

		end = start + chunk_size;
		if (chunk_size > CHUNK_SIZE_LIMIT)
			return error_set(err, -EIO, "%s/%s: chunk %zu: impossible size %u",
					 entry->artifact, entry->path, i, chunk_size);
		chunk = chunk_cache_get(store, record, chunk_size, err);
		if (!chunk)
			return err->code;
		at = offset + copied - start;
		n = (size_t)(end - start - at);
		if (n > size - copied)
			n = size - copied;
		memcpy(out + copied, chunk->data + at, n);
		chunk_cache_put(chunk);
		copied += n;
	}
	if (copied < size)
		return error_set(err, -EIO, "%s/%s: chunks hold %llu bytes, entry says %llu",
				 entry->artifact, entry->path, (unsigned long long)start,
				 (unsigned long long)entry->size);
	*done = copied;
	return 0;
}
