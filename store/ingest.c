/*
 * ingest.c - storing a folder as a tree.
 *
 * The calling thread walks the folder, reads files and cuts them into
 * chunks; worker threads (one per CPU) hash each chunk, skip it when the
 * store already has it, else lz4-compress it and append it to a temp pack.
 * When the folder is done the packs are made durable and then, in one
 * transaction, the catalog learns the new objects, the tree and the stat
 * cache.  Memory is bounded by the job buffers, whatever the file sizes.
 *
 * The stat cache (path, device, inode, size, mtime, ctime -> chunks) lets
 * an unchanged folder be re-ingested without reading it, as git's index
 * does.  Files changed within the last seconds are not cached: their mtime
 * cannot yet tell a later write apart ("racy git").
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/hashset.h"
#include "store/internal.h"

#define JOB_ITEMS 256
#define WORKERS_MAX 8
#define SLOT_BLOCK 4096
/* A file whose mtime is this recent is not trusted to the cache. */
#define STAT_CACHE_RACY_NS (2ll * 1000000000)

/* Where a worker leaves the name and size of one chunk. */
struct slot {
	uint8_t hash[STORE_HASH_SIZE];
	uint32_t size;
};

/*
 * Chunks for the workers.  An item with a file is a small file the worker
 * reads itself into its reserved place (len bytes at most): opening and
 * reading thousands of small files is then spread over all cores instead
 * of holding up the thread that walks the folder.
 */
struct job {
	uint8_t *buf;
	size_t used;
	size_t count;
	struct {
		size_t offset;
		size_t len;
		struct slot *slot;
		struct entry *file;
	} items[JOB_ITEMS];
	struct job *next;
};

struct entry {
	char *path;
	mode_t mode;
	uint64_t size;
	char *target;
	dev_t dev;
	ino_t ino;
	int64_t mtime, ctime;
	size_t first_slot, slot_count;
	/* From the stat cache: the chunk records, not read again. */
	uint8_t *cached_chunks;
	size_t cached_count;
	bool from_cache;
	bool read_by_worker;
};

struct new_object {
	uint8_t hash[STORE_HASH_SIZE];
	uint32_t raw, stored, inner, block;
	uint64_t offset;
	size_t pack;		/* index into ingest_worker.packs */
};

/*
 * A worker thread and the packs it writes: each worker appends to packs
 * of its own, so compressed chunks reach the page cache without a lock.
 */
struct ingest_worker {
	struct store_ingest *ingest;
	pthread_t thread;
	struct pack_writer *packs;
	size_t pack_count;
	bool pack_open;		/* packs[pack_count - 1] takes appends */
	struct new_object *objects;
	size_t object_count, object_alloc;
	uint8_t *frame;
	size_t frame_cap;
	/* Small objects waiting to be compressed together. */
	uint8_t *bundle;
	size_t bundle_len;
	struct pack_member members[BUNDLE_MEMBERS_MAX];
	size_t member_count;
};

struct stat_cache_row {
	char *path;
	dev_t dev;
	ino_t ino;
	uint64_t size;
	int64_t mtime, ctime;
	uint8_t *chunks;
	size_t chunks_len;
};

struct store_ingest {
	struct store *store;
	store_report_fn *warn;
	void *warn_ctx;
	struct chunker chunker;
	int64_t start_ns;

	pthread_mutex_t lock;	/* everything below, and store->db */
	pthread_cond_t work_ready;
	pthread_cond_t job_done;
	struct job *free_jobs;
	struct job *queue_head, *queue_tail;
	int in_flight;
	bool stopping;
	struct ingest_worker workers[WORKERS_MAX];
	int worker_count;
	/* Full packs wait here for the fsync thread, which overlaps the
	 * disk's work with ours instead of leaving it all for the end. */
	pthread_t syncer;
	bool syncer_started;
	pthread_cond_t sync_ready;
	int *sync_queue;
	size_t sync_count, sync_alloc;
	int sync_pending;
	struct error error;

	/* Hashes this ingest knows are stored or being stored. */
	struct hashset seen;


	/* Per folder, owned by the calling thread. */
	struct slot **slot_blocks;
	size_t slot_count, slot_block_alloc;
	struct entry *entries;
	size_t entry_count, entry_alloc;
	struct stat_cache_row *cache;
	size_t cache_cap;
	uint8_t *staging;
	const char *root;	/* the folder being stored, resolved */
	/* Staging (no catalog): the manifest the tree is described in instead. */
	struct strbuf *manifest;
};

/* Its buffer comes with its first use: most runs store a few small files. */
static struct job *job_new(void)
{
	return xcalloc(1, sizeof(struct job));
}

static bool catalog_has_object(struct store *store, const uint8_t *hash,
			       struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, "SELECT 1 FROM objects WHERE hash = ?", err);
	int rc;

	if (!stmt)
		return false;
	sqlite3_bind_blob(stmt, 1, hash, STORE_HASH_SIZE, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		catalog_error(store, rc, "look up object", err);
	return rc == SQLITE_ROW;
}

/* Compresses block and appends it to the worker's pack with its members. */
static int ingest_write_block(struct ingest_worker *worker,
			      const struct pack_member *members, size_t count,
			      const uint8_t *block, size_t block_len,
			      struct error *err)
{
	struct pack_writer *pack;
	uint64_t offset;
	size_t stored, i;
	int ret;

	if (!worker->frame)
		worker->frame = xmalloc(worker->frame_cap);
	ret = frame_compress(block, block_len, worker->frame, worker->frame_cap, &stored);
	if (ret < 0)
		return error_set(err, ret, "lz4: cannot compress a block");
	if (!worker->pack_open) {
		worker->packs = xrealloc(worker->packs,
					 (worker->pack_count + 1) * sizeof(*worker->packs));
		ret = pack_writer_open(worker->ingest->store,
				       &worker->packs[worker->pack_count], err);
		if (ret < 0)
			return ret;
		worker->pack_count++;
		worker->pack_open = true;
	}
	pack = &worker->packs[worker->pack_count - 1];
	ret = pack_writer_append(pack, members, count, (uint32_t)block_len, worker->frame,
				 (uint32_t)stored, &offset, err);
	if (ret < 0)
		return ret;
	for (i = 0; i < count; i++) {
		struct new_object *object;

		if (worker->object_count == worker->object_alloc) {
			worker->object_alloc = worker->object_alloc ? 2 * worker->object_alloc : 1024;
			worker->objects = xrealloc(worker->objects,
						   worker->object_alloc * sizeof(*worker->objects));
		}
		object = &worker->objects[worker->object_count++];
		memcpy(object->hash, members[i].hash, STORE_HASH_SIZE);
		object->raw = members[i].raw;
		object->inner = members[i].inner;
		object->block = (uint32_t)block_len;
		object->stored = (uint32_t)stored;
		object->offset = offset;
		object->pack = worker->pack_count - 1;
	}
	if (pack->size >= PACK_TARGET_SIZE) {
		struct store_ingest *ingest = worker->ingest;

		worker->pack_open = false;
		pack->queued = true;
		pthread_mutex_lock(&ingest->lock);
		if (ingest->sync_count == ingest->sync_alloc) {
			ingest->sync_alloc = ingest->sync_alloc ? 2 * ingest->sync_alloc : 16;
			ingest->sync_queue = xrealloc(ingest->sync_queue,
						      ingest->sync_alloc * sizeof(int));
		}
		ingest->sync_queue[ingest->sync_count++] = pack->fd;
		ingest->sync_pending++;
		pthread_cond_signal(&ingest->sync_ready);
		pthread_mutex_unlock(&ingest->lock);
	}
	return 0;
}

static void *ingest_syncer_main(void *arg)
{
	struct store_ingest *ingest = arg;
	int fd;

	pthread_mutex_lock(&ingest->lock);
	for (;;) {
		while (!ingest->sync_count && !ingest->stopping)
			pthread_cond_wait(&ingest->sync_ready, &ingest->lock);
		if (!ingest->sync_count)
			break;
		fd = ingest->sync_queue[--ingest->sync_count];
		pthread_mutex_unlock(&ingest->lock);
		if (fsync(fd) < 0) {
			int code = -errno;

			pthread_mutex_lock(&ingest->lock);
			error_errno(&ingest->error, code, "fsync of a new pack");
		} else {
			pthread_mutex_lock(&ingest->lock);
		}
		ingest->sync_pending--;
		pthread_cond_broadcast(&ingest->job_done);
	}
	pthread_mutex_unlock(&ingest->lock);
	return NULL;
}

static int ingest_flush_bundle(struct ingest_worker *worker, struct error *err)
{
	int ret = 0;

	if (worker->member_count)
		ret = ingest_write_block(worker, worker->members, worker->member_count,
					 worker->bundle, worker->bundle_len, err);
	worker->member_count = 0;
	worker->bundle_len = 0;
	return ret;
}

/* Large objects get a frame of their own; small ones join the bundle. */
static int ingest_store_object(struct ingest_worker *worker, const uint8_t *hash,
			       const uint8_t *data, size_t len, struct error *err)
{
	struct pack_member *member;
	int ret;

	if (len >= BUNDLE_OBJECT_MAX) {
		struct pack_member solo = { .inner = 0, .raw = (uint32_t)len };

		memcpy(solo.hash, hash, STORE_HASH_SIZE);
		return ingest_write_block(worker, &solo, 1, data, len, err);
	}
	if (!worker->bundle)
		worker->bundle = xmalloc(BUNDLE_SIZE);
	if (worker->bundle_len + len > BUNDLE_SIZE ||
	    worker->member_count == BUNDLE_MEMBERS_MAX) {
		ret = ingest_flush_bundle(worker, err);
		if (ret < 0)
			return ret;
	}
	member = &worker->members[worker->member_count++];
	memcpy(member->hash, hash, STORE_HASH_SIZE);
	member->inner = (uint32_t)worker->bundle_len;
	member->raw = (uint32_t)len;
	memcpy(worker->bundle + worker->bundle_len, data, len);
	worker->bundle_len += len;
	return 0;
}

/* Opens root/path for reading without touching its atime where allowed. */
static int ingest_open(const char *root, const char *path, struct error *err)
{
	struct strbuf full = STRBUF_INIT;
	int fd;

	strbuf_addf(&full, "%s/%s", root, path);
	fd = open(full.buf, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOATIME);
	if (fd < 0 && errno == EPERM)
		fd = open(full.buf, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		fd = error_errno(err, -errno, "%s", full.buf);
	strbuf_release(&full);
	return fd;
}

/* Reads up to *len bytes of a small file; *len becomes what was read. */
static int ingest_read_small(struct store_ingest *ingest, const struct entry *file,
			     uint8_t *buf, size_t *len, struct error *err)
{
	size_t done = 0;
	int fd = ingest_open(ingest->root, file->path, err);

	if (fd < 0)
		return fd;
	while (done < *len) {
		ssize_t n = read(fd, buf + done, *len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int ret = error_errno(err, -errno, "%s/%s", ingest->root, file->path);

			close(fd);
			return ret;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	*len = done;
	return 0;
}

static void ingest_process_job(struct ingest_worker *worker, struct job *job)
{
	struct store_ingest *ingest = worker->ingest;
	struct error err = { 0 };
	size_t i;
	bool store_it;

	for (i = 0; i < job->count; i++) {
		struct slot *slot = job->items[i].slot;
		uint8_t *data = job->buf + job->items[i].offset;
		size_t len = job->items[i].len;

		if (job->items[i].file &&
		    ingest_read_small(ingest, job->items[i].file, data, &len, &err) < 0)
			goto fail;
		hash_bytes(data, len, slot->hash);
		slot->size = (uint32_t)len;

		pthread_mutex_lock(&ingest->lock);
		store_it = !ingest->error.code && hashset_add(&ingest->seen, slot->hash);
		/* Staging cannot know what is stored: it writes every new chunk. */
		if (store_it && ingest->store->db)
			store_it = !catalog_has_object(ingest->store, slot->hash,
						       &ingest->error);
		pthread_mutex_unlock(&ingest->lock);
		if (store_it && ingest_store_object(worker, slot->hash, data, len, &err) < 0)
			goto fail;
	}
	return;
fail:
	pthread_mutex_lock(&ingest->lock);
	if (!ingest->error.code)
		ingest->error = err;
	pthread_mutex_unlock(&ingest->lock);
}

/* Waits until no job is queued or being processed and no fsync runs. */
static void ingest_wait_idle(struct store_ingest *ingest)
{
	pthread_mutex_lock(&ingest->lock);
	while (ingest->in_flight || ingest->sync_pending)
		pthread_cond_wait(&ingest->job_done, &ingest->lock);
	pthread_mutex_unlock(&ingest->lock);
}

static void *ingest_worker_main(void *arg)
{
	struct ingest_worker *worker = arg;
	struct store_ingest *ingest = worker->ingest;
	struct job *job;

	pthread_mutex_lock(&ingest->lock);
	for (;;) {
		while (!ingest->queue_head && !ingest->stopping)
			pthread_cond_wait(&ingest->work_ready, &ingest->lock);
		if (!ingest->queue_head)
			break;
		job = ingest->queue_head;
		ingest->queue_head = job->next;
		if (!ingest->queue_head)
			ingest->queue_tail = NULL;
		pthread_mutex_unlock(&ingest->lock);

		ingest_process_job(worker, job);

		pthread_mutex_lock(&ingest->lock);
		job->used = job->count = 0;
		job->next = ingest->free_jobs;
		ingest->free_jobs = job;
		ingest->in_flight--;
		pthread_cond_broadcast(&ingest->job_done);
	}
	pthread_mutex_unlock(&ingest->lock);
	return NULL;
}

int store_ingest_begin(struct store *store, struct store_ingest **out,
		       store_report_fn *warn, void *warn_ctx, struct error *err)
{
	struct store_ingest *ingest;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int i, ret;

	ret = store_lock_shared(store, err);
	if (ret < 0)
		return ret;
	ingest = xcalloc(1, sizeof(*ingest));
	ingest->store = store;
	ingest->warn = warn;
	ingest->warn_ctx = warn_ctx;
	chunker_init(&ingest->chunker, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
	pthread_mutex_init(&ingest->lock, NULL);
	pthread_cond_init(&ingest->work_ready, NULL);
	pthread_cond_init(&ingest->job_done, NULL);
	pthread_cond_init(&ingest->sync_ready, NULL);
	if (cpus < 1)
		cpus = 1;
	if (cpus > WORKERS_MAX)
		cpus = WORKERS_MAX;
	/* Two jobs per worker: one being processed, one waiting. */
	for (i = 0; i < 2 * cpus; i++) {
		struct job *job = job_new();

		job->next = ingest->free_jobs;
		ingest->free_jobs = job;
	}
	for (i = 0; i < cpus; i++) {
		struct ingest_worker *worker = &ingest->workers[i];

		worker->ingest = ingest;
		/* Its frame and bundle buffers come with its first block. */
		worker->frame_cap = frame_bound(CHUNK_MAX);
		if (pthread_create(&worker->thread, NULL, ingest_worker_main, worker))
			break;
		ingest->worker_count++;
	}
	ingest->syncer_started = ingest->worker_count &&
		!pthread_create(&ingest->syncer, NULL, ingest_syncer_main, ingest);
	if (!ingest->syncer_started) {
		store_ingest_end(ingest);
		return error_set(err, -EAGAIN, "cannot start ingest threads");
	}
	*out = ingest;
	return 0;
}

/* After a commit the catalog owns the packs; after a failure, nobody. */
static void ingest_worker_forget_packs(struct ingest_worker *worker)
{
	free(worker->packs);
	worker->packs = NULL;
	worker->pack_count = 0;
	worker->pack_open = false;
	worker->object_count = 0;
	worker->member_count = 0;
	worker->bundle_len = 0;
}

static void ingest_discard_packs(struct store_ingest *ingest)
{
	struct strbuf path = STRBUF_INIT;
	size_t i;
	int w;

	/* The fsync thread must be done with descriptors we close. */
	ingest_wait_idle(ingest);
	for (w = 0; w < ingest->worker_count; w++) {
		struct ingest_worker *worker = &ingest->workers[w];

		for (i = 0; i < worker->pack_count; i++) {
			struct pack_writer *pack = &worker->packs[i];

			if (pack->tmp_path) {
				pack_writer_discard(pack);
			} else {
				/* Renamed but never named by the catalog. */
				pack_path(ingest->store, pack->name, &path);
				unlink(path.buf);
			}
		}
		ingest_worker_forget_packs(worker);
	}
	strbuf_release(&path);
	/* Objects we saw in those packs are not stored after all. */
	hashset_release(&ingest->seen);
}

static void ingest_reset_folder(struct store_ingest *ingest)
{
	size_t i;

	for (i = 0; i < ingest->entry_count; i++) {
		free(ingest->entries[i].path);
		free(ingest->entries[i].target);
	}
	ingest->entry_count = 0;
	for (i = 0; i < ingest->cache_cap; i++) {
		free(ingest->cache[i].path);
		free(ingest->cache[i].chunks);
	}
	free(ingest->cache);
	ingest->cache = NULL;
	ingest->cache_cap = 0;
	for (i = 0; i * SLOT_BLOCK < ingest->slot_count; i++)
		free(ingest->slot_blocks[i]);
	ingest->slot_count = 0;
}

void store_ingest_end(struct store_ingest *ingest)
{
	struct job *job;
	int i;

	if (!ingest)
		return;
	pthread_mutex_lock(&ingest->lock);
	ingest->stopping = true;
	pthread_cond_broadcast(&ingest->work_ready);
	pthread_cond_broadcast(&ingest->sync_ready);
	pthread_mutex_unlock(&ingest->lock);
	for (i = 0; i < ingest->worker_count; i++)
		pthread_join(ingest->workers[i].thread, NULL);
	if (ingest->syncer_started)
		pthread_join(ingest->syncer, NULL);
	ingest_discard_packs(ingest);
	for (i = 0; i < WORKERS_MAX; i++) {
		free(ingest->workers[i].objects);
		free(ingest->workers[i].frame);
		free(ingest->workers[i].bundle);
	}
	ingest_reset_folder(ingest);
	while ((job = ingest->free_jobs)) {
		ingest->free_jobs = job->next;
		free(job->buf);
		free(job);
	}
	free(ingest->entries);
	free(ingest->slot_blocks);
	free(ingest->staging);
	pthread_mutex_destroy(&ingest->lock);
	pthread_cond_destroy(&ingest->work_ready);
	pthread_cond_destroy(&ingest->job_done);
	pthread_cond_destroy(&ingest->sync_ready);
	free(ingest->sync_queue);
	store_unlock(ingest->store);
	free(ingest);
}

static struct slot *slot_next(struct store_ingest *ingest)
{
	size_t block = ingest->slot_count / SLOT_BLOCK;

	if (ingest->slot_count % SLOT_BLOCK == 0) {
		if (block == ingest->slot_block_alloc) {
			ingest->slot_block_alloc = block ? 2 * block : 16;
			ingest->slot_blocks = xrealloc(ingest->slot_blocks,
				ingest->slot_block_alloc * sizeof(*ingest->slot_blocks));
		}
		ingest->slot_blocks[block] = xmalloc(SLOT_BLOCK * sizeof(struct slot));
	}
	return &ingest->slot_blocks[block][ingest->slot_count++ % SLOT_BLOCK];
}

static struct slot *slot_at(struct store_ingest *ingest, size_t index)
{
	return &ingest->slot_blocks[index / SLOT_BLOCK][index % SLOT_BLOCK];
}

static uint64_t string_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ull;
	return h;
}

static struct stat_cache_row *cache_slot(struct store_ingest *ingest,
					 const char *path)
{
	size_t i = (size_t)string_hash(path) & (ingest->cache_cap - 1);

	while (ingest->cache[i].path && strcmp(ingest->cache[i].path, path))
		i = (i + 1) & (ingest->cache_cap - 1);
	return &ingest->cache[i];
}

/* Loads the stat cache rows under root ("/abs/dir/") into a hash table. */
static int ingest_load_stat_cache(struct store_ingest *ingest, const char *root,
				  struct error *err)
{
	struct store *store = ingest->store;
	sqlite3_stmt *stmt;
	size_t rows = 0, root_len = strlen(root);
	char *upper = xstrdup(root);
	int rc;

	if (!store->db) {
		/* Staging has no cache: an empty table. */
		ingest->cache_cap = 16;
		ingest->cache = xcalloc(ingest->cache_cap, sizeof(*ingest->cache));
		free(upper);
		return 0;
	}
	/* Paths under "/a/b/" sort between it and "/a/b0" ('/' + 1). */
	upper[root_len - 1] = '0';
	stmt = catalog_stmt(store, "SELECT count(*) FROM stat_cache WHERE path > ? AND path < ?", err);
	if (!stmt)
		goto fail;
	sqlite3_bind_text(stmt, 1, root, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, upper, -1, SQLITE_STATIC);
	if (sqlite3_step(stmt) == SQLITE_ROW)
		rows = (size_t)sqlite3_column_int64(stmt, 0);
	sqlite3_reset(stmt);
	ingest->cache_cap = 16;
	while (ingest->cache_cap < 2 * rows)
		ingest->cache_cap *= 2;
	ingest->cache = xcalloc(ingest->cache_cap, sizeof(*ingest->cache));
	stmt = catalog_stmt(store,
			    "SELECT path, dev, ino, size, mtime, ctime, chunks FROM stat_cache"
			    " WHERE path > ? AND path < ?", err);
	if (!stmt)
		goto fail;
	sqlite3_bind_text(stmt, 1, root, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, upper, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && rows--) {
		const char *path = (const char *)sqlite3_column_text(stmt, 0) + root_len;
		struct stat_cache_row *row = cache_slot(ingest, path);
		size_t len = (size_t)sqlite3_column_bytes(stmt, 6);

		row->path = xstrdup(path);
		row->dev = (dev_t)sqlite3_column_int64(stmt, 1);
		row->ino = (ino_t)sqlite3_column_int64(stmt, 2);
		row->size = (uint64_t)sqlite3_column_int64(stmt, 3);
		row->mtime = sqlite3_column_int64(stmt, 4);
		row->ctime = sqlite3_column_int64(stmt, 5);
		row->chunks = xmalloc(len);
		/* An empty file has no chunks: its blob is NULL. */
		if (len)
			memcpy(row->chunks, sqlite3_column_blob(stmt, 6), len);
		row->chunks_len = len;
	}
	sqlite3_reset(stmt);
	free(upper);
	return 0;
fail:
	free(upper);
	return err->code;
}

struct cache_loader {
	struct store_ingest *ingest;
	const char *root;
	int ret;
	struct error err;
};

static void *ingest_cache_loader(void *arg)
{
	struct cache_loader *loader = arg;

	pthread_mutex_lock(&loader->ingest->lock);
	loader->ret = ingest_load_stat_cache(loader->ingest, loader->root, &loader->err);
	pthread_mutex_unlock(&loader->ingest->lock);
	return NULL;
}

static struct entry *entry_add(struct store_ingest *ingest, const char *path,
			       const struct stat *st)
{
	struct entry *entry;

	if (ingest->entry_count == ingest->entry_alloc) {
		ingest->entry_alloc = ingest->entry_alloc ? 2 * ingest->entry_alloc : 256;
		ingest->entries = xrealloc(ingest->entries,
					   ingest->entry_alloc * sizeof(*entry));
	}
	entry = &ingest->entries[ingest->entry_count++];
	memset(entry, 0, sizeof(*entry));
	entry->path = xstrdup(path);
	entry->mode = st->st_mode;
	entry->size = S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0;
	entry->dev = st->st_dev;
	entry->ino = st->st_ino;
	entry->mtime = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	entry->ctime = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
	return entry;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Appends the entries under dir (relative path rel, "" for the root) in
 * canonical order: parents first, siblings sorted by name bytes.
 */
static int ingest_walk(struct store_ingest *ingest, const char *root,
		       const char *rel, uint64_t *total, struct error *err)
{
	struct strbuf path = STRBUF_INIT, child = STRBUF_INIT, msg = STRBUF_INIT;
	char **names = NULL;
	size_t count = 0, alloc = 0, i;
	struct dirent *de;
	DIR *dir;
	int dfd, ret = 0;

	strbuf_addf(&path, "%s%s%s", root, *rel ? "/" : "", rel);
	dir = opendir(path.buf);
	if (!dir) {
		ret = error_errno(err, -errno, "%s", path.buf);
		goto out;
	}
	dfd = dirfd(dir);
	while ((errno = 0, de = readdir(dir))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (count == alloc) {
			alloc = alloc ? 2 * alloc : 64;
			names = xrealloc(names, alloc * sizeof(*names));
		}
		names[count++] = xstrdup(de->d_name);
	}
	if (errno) {
		ret = error_errno(err, -errno, "%s", path.buf);
		goto out_dir;
	}
	if (count)
		qsort(names, count, sizeof(*names), compare_names);
	for (i = 0; i < count && ret == 0; i++) {
		struct stat st;
		struct entry *entry;

		strbuf_reset(&child);
		strbuf_addf(&child, "%s%s%s", rel, *rel ? "/" : "", names[i]);
		if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			ret = error_errno(err, -errno, "%s/%s", root, child.buf);
			break;
		}
		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
			if (ingest->warn) {
				strbuf_reset(&msg);
				strbuf_addf(&msg, "%s/%s: skipping special file", root, child.buf);
				ingest->warn(ingest->warn_ctx, msg.buf);
			}
			continue;
		}
		entry = entry_add(ingest, child.buf, &st);
		if (S_ISLNK(st.st_mode)) {
			char target[4096];
			ssize_t n = readlinkat(dfd, names[i], target, sizeof(target) - 1);

			if (n < 0) {
				ret = error_errno(err, -errno, "%s/%s", root, child.buf);
				break;
			}
			target[n] = '\0';
			entry->target = xstrdup(target);
			entry->size = (uint64_t)n;
		} else if (S_ISDIR(st.st_mode)) {
			ret = ingest_walk(ingest, root, child.buf, total, err);
		} else {
			*total += entry->size;
		}
	}
out_dir:
	closedir(dir);
	for (i = 0; i < count; i++)
		free(names[i]);
	free(names);
out:
	strbuf_release(&path);
	strbuf_release(&child);
	strbuf_release(&msg);
	return ret;
}

/* Hands the current job to the workers and takes a free one. */
static struct job *ingest_submit(struct store_ingest *ingest, struct job *job)
{
	pthread_mutex_lock(&ingest->lock);
	if (job && job->count) {
		job->next = NULL;
		if (ingest->queue_tail)
			ingest->queue_tail->next = job;
		else
			ingest->queue_head = job;
		ingest->queue_tail = job;
		ingest->in_flight++;
		pthread_cond_signal(&ingest->work_ready);
		job = NULL;
	}
	if (!job) {
		while (!ingest->free_jobs)
			pthread_cond_wait(&ingest->job_done, &ingest->lock);
		job = ingest->free_jobs;
		ingest->free_jobs = job->next;
	}
	pthread_mutex_unlock(&ingest->lock);
	if (!job->buf)
		job->buf = xmalloc(CHUNK_MAX);
	return job;
}

static bool ingest_failed(struct store_ingest *ingest)
{
	bool failed;

	pthread_mutex_lock(&ingest->lock);
	failed = ingest->error.code != 0;
	pthread_mutex_unlock(&ingest->lock);
	return failed;
}

/*
 * Queues a small file for a worker to read: it is one chunk (the chunker
 * never cuts below CHUNK_MIN), given room for the size stat reported.
 */
static struct job *ingest_queue_small(struct store_ingest *ingest,
				      struct entry *entry, struct job *job)
{
	size_t n;

	if (job->count == JOB_ITEMS || CHUNK_MAX - job->used < entry->size)
		job = ingest_submit(ingest, job);
	n = job->count++;
	job->items[n].offset = job->used;
	job->items[n].len = (size_t)entry->size;
	job->items[n].file = entry;
	entry->first_slot = ingest->slot_count;
	job->items[n].slot = slot_next(ingest);
	entry->slot_count = 1;
	entry->read_by_worker = true;
	job->used += (size_t)entry->size;
	return job;
}

/* Takes the sizes the workers read: a file may have shrunk meanwhile. */
static void ingest_settle_small(struct store_ingest *ingest)
{
	size_t i;

	for (i = 0; i < ingest->entry_count; i++) {
		struct entry *entry = &ingest->entries[i];

		if (!entry->read_by_worker)
			continue;
		entry->size = slot_at(ingest, entry->first_slot)->size;
		/* An empty file has no chunk, however it got empty. */
		if (!entry->size)
			entry->slot_count = 0;
	}
}

/* Reads one file and queues its chunks; *job is the job being filled. */
static int ingest_file(struct store_ingest *ingest, const char *root,
		       struct entry *entry, struct job **job, uint64_t *done,
		       uint64_t total, store_progress_fn *progress,
		       void *progress_ctx, struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	uint8_t *buf;
	size_t cap = 2 * CHUNK_MAX, start = 0, end = 0;
	uint64_t read_total = 0;
	bool eof = false;
	int fd, ret = 0;

	if (!ingest->staging)
		ingest->staging = xmalloc(2 * CHUNK_MAX);
	buf = ingest->staging;
	strbuf_addf(&path, "%s/%s", root, entry->path);
	fd = ingest_open(root, entry->path, err);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	entry->first_slot = ingest->slot_count;
	for (;;) {
		size_t cut;
		struct slot *slot;

		if (!eof && end - start < CHUNK_MAX) {
			if (start) {
				memmove(buf, buf + start, end - start);
				end -= start;
				start = 0;
			}
			while (!eof && end < cap) {
				ssize_t n = read(fd, buf + end, cap - end);

				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0) {
					ret = error_errno(err, -errno, "%s", path.buf);
					goto out_fd;
				}
				end += (size_t)n;
				read_total += (uint64_t)n;
				/* Stat said this much: spare the read that finds EOF. */
				if (n == 0 || read_total == entry->size)
					eof = true;
			}
		}
		if (start == end)
			break;
		cut = chunker_cut(&ingest->chunker, buf + start, end - start);
		if ((*job)->count == JOB_ITEMS || CHUNK_MAX - (*job)->used < cut) {
			*job = ingest_submit(ingest, *job);
			if (ingest_failed(ingest))
				goto out_fd;
		}
		slot = slot_next(ingest);
		memcpy((*job)->buf + (*job)->used, buf + start, cut);
		(*job)->items[(*job)->count].offset = (*job)->used;
		(*job)->items[(*job)->count].len = cut;
		(*job)->items[(*job)->count].slot = slot;
		(*job)->items[(*job)->count].file = NULL;
		(*job)->count++;
		(*job)->used += cut;
		entry->slot_count++;
		start += cut;
		*done += cut;
		if (progress && cut >= CHUNK_MIN)
			progress(progress_ctx, *done, total);
	}
	/* The file changed size while we read it: record what we read. */
	entry->size = read_total;
out_fd:
	close(fd);
out:
	strbuf_release(&path);
	return ret;
}

/* The chunk records of a regular file entry, in out. */
static void entry_chunks(struct store_ingest *ingest, struct entry *entry,
			 struct strbuf *out)
{
	uint8_t record[STORE_CHUNK_RECORD_SIZE];
	size_t i;

	strbuf_reset(out);
	if (entry->from_cache) {
		strbuf_add(out, entry->cached_chunks,
			   entry->cached_count * STORE_CHUNK_RECORD_SIZE);
		return;
	}
	for (i = 0; i < entry->slot_count; i++) {
		struct slot *slot = slot_at(ingest, entry->first_slot + i);

		memcpy(record, slot->hash, STORE_HASH_SIZE);
		le32_put(record + STORE_HASH_SIZE, slot->size);
		strbuf_add(out, record, sizeof(record));
	}
}

/* packs/XX holds the packs whose names start with XX. */
static unsigned pack_dir_index(const char *name)
{
	char digits[3] = { name[0], name[1], '\0' };

	return (unsigned)strtoul(digits, NULL, 16) & 0xff;
}

/* Makes every pack of this folder durable under its final name. */
static int ingest_commit_packs(struct store_ingest *ingest, struct error *err)
{
	bool dirs[256] = { false };
	size_t i;
	int w, ret = 0;

	for (w = 0; w < ingest->worker_count && ret == 0; w++) {
		struct ingest_worker *worker = &ingest->workers[w];

		for (i = 0; i < worker->pack_count && ret == 0; i++) {
			struct pack_writer *pack = &worker->packs[i];

			if (!pack->queued)
				ret = pack_writer_sync(pack, err);
		}
	}
	/* Packs that filled up while bundles were flushed may still sync. */
	ingest_wait_idle(ingest);
	if (ret == 0 && ingest->error.code) {
		*err = ingest->error;
		ret = err->code;
	}
	for (w = 0; w < ingest->worker_count && ret == 0; w++) {
		struct ingest_worker *worker = &ingest->workers[w];

		for (i = 0; i < worker->pack_count && ret == 0; i++) {
			struct pack_writer *pack = &worker->packs[i];

			dirs[pack_dir_index(pack->name)] = true;
			ret = pack_writer_rename(ingest->store, pack, err);
		}
	}
	for (w = 0; w < 256 && ret == 0; w++) {
		char name[3];

		if (!dirs[w])
			continue;
		/* w < 256: two digits (the mask says so to -Wformat-truncation too). */
		snprintf(name, sizeof(name), "%02x", (unsigned)w & 0xffu);
		ret = pack_dir_sync(ingest->store, name, err);
	}
	if (ret == 0 && (ret = fs_fsync_dir(ingest->store->packs_dir)) < 0)
		error_errno(err, ret, "%s", ingest->store->packs_dir);
	return ret;
}

static int ingest_record_objects(struct ingest_worker *worker, struct error *err)
{
	struct store *store = worker->ingest->store;
	int64_t *pack_ids = xcalloc(worker->pack_count, sizeof(*pack_ids));
	sqlite3_stmt *stmt;
	size_t i;
	int rc, ret = 0;

	for (i = 0; i < worker->pack_count; i++) {
		stmt = catalog_stmt(store, "INSERT INTO packs(name, size) VALUES (?, ?)", err);
		if (!stmt) {
			ret = err->code;
			goto out;
		}
		sqlite3_bind_text(stmt, 1, worker->packs[i].name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, (int64_t)worker->packs[i].size);
		rc = sqlite3_step(stmt);
		sqlite3_reset(stmt);
		if (rc != SQLITE_DONE) {
			ret = catalog_error(store, rc, "record pack", err);
			goto out;
		}
		pack_ids[i] = sqlite3_last_insert_rowid(store->db);
	}
	for (i = 0; i < worker->object_count; i++) {
		struct new_object *object = &worker->objects[i];

		/* Another writer may have stored the same chunk meanwhile. */
		stmt = catalog_stmt(store,
				    "INSERT OR IGNORE INTO objects(hash, pack, offset, stored, raw, inner, block)"
				    " VALUES (?, ?, ?, ?, ?, ?, ?)", err);
		if (!stmt) {
			ret = err->code;
			goto out;
		}
		sqlite3_bind_blob(stmt, 1, object->hash, STORE_HASH_SIZE, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, pack_ids[object->pack]);
		sqlite3_bind_int64(stmt, 3, (int64_t)object->offset);
		sqlite3_bind_int64(stmt, 4, object->stored);
		sqlite3_bind_int64(stmt, 5, object->raw);
		sqlite3_bind_int64(stmt, 6, object->inner);
		sqlite3_bind_int64(stmt, 7, object->block);
		rc = sqlite3_step(stmt);
		sqlite3_reset(stmt);
		if (rc != SQLITE_DONE) {
			ret = catalog_error(store, rc, "record object", err);
			goto out;
		}
	}
out:
	free(pack_ids);
	return ret;
}

static void ingest_entry_at(void *ctx, size_t i, struct store_entry *out,
			    struct strbuf *scratch)
{
	struct store_ingest *ingest = ctx;
	struct entry *entry = &ingest->entries[i];

	out->path = entry->path;
	out->mode = entry->mode;
	out->size = entry->size;
	out->target = entry->target;
	if (S_ISREG(entry->mode)) {
		entry_chunks(ingest, entry, scratch);
		out->chunks = (const uint8_t *)scratch->buf;
		out->chunk_count = scratch->len / STORE_CHUNK_RECORD_SIZE;
	}
}

static int ingest_record_stat_cache(struct store_ingest *ingest,
				    const char *root, struct error *err)
{
	struct store *store = ingest->store;
	struct strbuf path = STRBUF_INIT, chunks = STRBUF_INIT;
	sqlite3_stmt *stmt;
	size_t i;
	int rc, ret = 0;

	for (i = 0; i < ingest->entry_count; i++) {
		struct entry *entry = &ingest->entries[i];

		/*
		 * A later write sets mtime to the time of that write; only when
		 * our mtime is that recent could it go unnoticed.
		 */
		if (!S_ISREG(entry->mode) || entry->from_cache ||
		    entry->mtime > ingest->start_ns - STAT_CACHE_RACY_NS)
			continue;
		strbuf_reset(&path);
		strbuf_addf(&path, "%s%s", root, entry->path);
		entry_chunks(ingest, entry, &chunks);
		stmt = catalog_stmt(store,
				    "INSERT OR REPLACE INTO stat_cache(path, dev, ino, size, mtime, ctime, chunks)"
				    " VALUES (?, ?, ?, ?, ?, ?, ?)", err);
		if (!stmt) {
			ret = err->code;
			break;
		}
		sqlite3_bind_text(stmt, 1, path.buf, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, (int64_t)entry->dev);
		sqlite3_bind_int64(stmt, 3, (int64_t)entry->ino);
		sqlite3_bind_int64(stmt, 4, (int64_t)entry->size);
		sqlite3_bind_int64(stmt, 5, entry->mtime);
		sqlite3_bind_int64(stmt, 6, entry->ctime);
		sqlite3_bind_blob(stmt, 7, chunks.buf ? chunks.buf : "", (int)chunks.len,
				  SQLITE_STATIC);
		rc = sqlite3_step(stmt);
		sqlite3_reset(stmt);
		if (rc != SQLITE_DONE) {
			ret = catalog_error(store, rc, "record stat cache", err);
			break;
		}
	}
	strbuf_release(&path);
	strbuf_release(&chunks);
	return ret;
}

/* Takes the chunk list from the stat cache when the file is unchanged. */
static bool ingest_use_stat_cache(struct store_ingest *ingest, struct entry *entry)
{
	struct stat_cache_row *row = cache_slot(ingest, entry->path);

	if (!row->path || row->dev != entry->dev || row->ino != entry->ino ||
	    row->size != entry->size || row->mtime != entry->mtime ||
	    row->ctime != entry->ctime ||
	    row->chunks_len % STORE_CHUNK_RECORD_SIZE)
		return false;
	entry->from_cache = true;
	entry->cached_chunks = row->chunks;
	entry->cached_count = row->chunks_len / STORE_CHUNK_RECORD_SIZE;
	return true;
}

static int compare_paths(const void *a, const void *b)
{
	return tree_path_compare(*(char *const *)a, *(char *const *)b);
}

/* Appends the entry of root/rel, a folder, a file or a symlink. */
static int ingest_list_entry(struct store_ingest *ingest, const char *root, const char *rel,
			     uint64_t *total, struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	struct entry *entry;
	struct stat st;
	int ret = 0;

	strbuf_addf(&path, "%s/%s", root, rel);
	if (lstat(path.buf, &st) < 0) {
		ret = error_errno(err, -errno, "%s", path.buf);
		goto out;
	}
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
		if (ingest->warn) {
			strbuf_addstr(&path, ": skipping special file");
			ingest->warn(ingest->warn_ctx, path.buf);
		}
		goto out;
	}
	entry = entry_add(ingest, rel, &st);
	if (S_ISLNK(st.st_mode)) {
		char target[4096];
		ssize_t n = readlink(path.buf, target, sizeof(target) - 1);

		if (n < 0) {
			ret = error_errno(err, -errno, "%s", path.buf);
			goto out;
		}
		target[n] = '\0';
		entry->target = xstrdup(target);
		entry->size = (uint64_t)n;
	} else if (S_ISREG(st.st_mode)) {
		*total += entry->size;
	}
out:
	strbuf_release(&path);
	return ret;
}

/*
 * Appends the entries of the files paths name under root, with their
 * parent folders, in canonical order.  A path that is gone, or is now a
 * folder, is left out: the list was made a moment before.
 */
static int ingest_list(struct store_ingest *ingest, const char *root, char *const *paths,
		       size_t count, uint64_t *total, struct error *err)
{
	char **sorted = xmalloc((count ? count : 1) * sizeof(char *));
	struct strbuf path = STRBUF_INIT, folder = STRBUF_INIT;
	const char *prev = "";
	size_t i;
	int ret = 0;

	memcpy(sorted, paths, count * sizeof(char *));
	qsort(sorted, count, sizeof(char *), compare_paths);
	for (i = 0; i < count && ret == 0; i++) {
		const char *rel = sorted[i], *slash;
		struct stat st;

		if (!*rel || !path_is_contained(rel) || (i && !strcmp(rel, sorted[i - 1])))
			continue;
		strbuf_reset(&path);
		strbuf_addf(&path, "%s/%s", root, rel);
		if (lstat(path.buf, &st) < 0 ? errno == ENOENT : S_ISDIR(st.st_mode))
			continue;
		/* Sorted so, a folder's paths are together: it came with prev's, or now. */
		for (slash = strchr(rel, '/'); slash && ret == 0; slash = strchr(slash + 1, '/')) {
			size_t len = (size_t)(slash - rel);

			if (!strncmp(prev, rel, len + 1))
				continue;
			strbuf_reset(&folder);
			strbuf_add(&folder, rel, len);
			ret = ingest_list_entry(ingest, root, folder.buf, total, err);
		}
		if (ret == 0)
			ret = ingest_list_entry(ingest, root, rel, total, err);
		prev = rel;
	}
	free(sorted);
	strbuf_release(&path);
	strbuf_release(&folder);
	return ret;
}

/* A chunk this ingest stored, for the manifest: where it went. */
struct stored_chunk {
	const struct new_object *object;
	const char *pack;
};

static int compare_stored_chunks(const void *a, const void *b)
{
	return memcmp(((const struct stored_chunk *)a)->object->hash,
		      ((const struct stored_chunk *)b)->object->hash, STORE_HASH_SIZE);
}

/*
 * Describes the folder just stored in ingest->manifest.  Each chunk was
 * stored once (seen), by some worker: every slot finds its object.
 */
static int ingest_write_manifest(struct store_ingest *ingest, struct error *err)
{
	struct stored_chunk *chunks = NULL, key;
	struct manifest_writer writer;
	struct new_object probe;
	size_t count = 0, i, j;
	int w, ret = 0;

	for (w = 0; w < ingest->worker_count; w++)
		count += ingest->workers[w].object_count;
	chunks = xmalloc((count ? count : 1) * sizeof(*chunks));
	count = 0;
	for (w = 0; w < ingest->worker_count; w++) {
		struct ingest_worker *worker = &ingest->workers[w];

		for (i = 0; i < worker->object_count; i++) {
			chunks[count].object = &worker->objects[i];
			chunks[count++].pack = worker->packs[worker->objects[i].pack].name;
		}
	}
	qsort(chunks, count, sizeof(*chunks), compare_stored_chunks);
	key.object = &probe;
	manifest_begin(&writer, ingest->manifest);
	for (i = 0; i < ingest->entry_count && ret == 0; i++) {
		struct entry *entry = &ingest->entries[i];

		manifest_add_entry(&writer, entry->path, entry->mode, entry->size, entry->target);
		for (j = 0; S_ISREG(entry->mode) && j < entry->slot_count; j++) {
			struct slot *slot = slot_at(ingest, entry->first_slot + j);
			const struct stored_chunk *found;
			struct object_location loc;

			memcpy(probe.hash, slot->hash, STORE_HASH_SIZE);
			found = bsearch(&key, chunks, count, sizeof(*chunks), compare_stored_chunks);
			if (!found) {
				ret = error_set(err, -EIO, "%s/%s: a chunk was not stored",
						ingest->root, entry->path);
				break;
			}
			memset(&loc, 0, sizeof(loc));
			loc.offset = found->object->offset;
			loc.stored = found->object->stored;
			loc.raw = found->object->raw;
			loc.inner = found->object->inner;
			loc.block = found->object->block;
			manifest_add_chunk(&writer, slot->hash, found->pack, &loc);
		}
	}
	if (ret == 0)
		manifest_end(&writer);
	free(chunks);
	return ret;
}

/* Stores dir, all of it (paths NULL) or the files paths name, as a tree. */
static int ingest_tree(struct store_ingest *ingest, const char *dir, char *const *paths,
		       size_t path_count, int64_t *tree, store_progress_fn *progress,
		       void *progress_ctx, struct error *err)
{
	struct store *store = ingest->store;
	struct strbuf root = STRBUF_INIT;
	char *real = realpath(dir, NULL);
	struct job *job = NULL;
	struct cache_loader loader = { 0 };
	pthread_t loader_thread;
	bool loading;
	uint64_t total = 0, done = 0;
	struct stat st;
	size_t i;
	int w, ret;

	if (!real)
		return error_errno(err, -errno, "%s", dir);
	if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
		ret = error_set(err, -ENOTDIR, "%s: not a directory", dir);
		goto out;
	}
	error_clear(&ingest->error);
	ingest->start_ns = time_now_ns();
	ingest->root = real;
	strbuf_addf(&root, "%s/", strcmp(real, "/") ? real : "");
	/* The walk is all system calls, the cache load all SQLite: overlap them. */
	loader.ingest = ingest;
	loader.root = root.buf;
	loading = !pthread_create(&loader_thread, NULL, ingest_cache_loader, &loader);
	if (!loading)
		ingest_cache_loader(&loader);
	if (paths)
		ret = ingest_list(ingest, real, paths, path_count, &total, err);
	else
		ret = ingest_walk(ingest, real, "", &total, err);
	if (loading)
		pthread_join(loader_thread, NULL);
	if (ret == 0 && loader.ret < 0) {
		*err = loader.err;
		ret = loader.ret;
	}
	if (ret < 0)
		goto out;
	job = ingest_submit(ingest, NULL);
	for (i = 0; i < ingest->entry_count && ret == 0; i++) {
		struct entry *entry = &ingest->entries[i];

		if (!S_ISREG(entry->mode))
			continue;
		if (ingest_use_stat_cache(ingest, entry)) {
			done += entry->size;
			continue;
		}
		if (entry->size && entry->size < CHUNK_MIN) {
			job = ingest_queue_small(ingest, entry, job);
			done += entry->size;
			if (progress)
				progress(progress_ctx, done, total);
			continue;
		}
		ret = ingest_file(ingest, real, entry, &job, &done, total, progress,
				  progress_ctx, err);
		if (ingest_failed(ingest))
			break;
	}
	job = ingest_submit(ingest, job);
	ingest_wait_idle(ingest);
	ingest_settle_small(ingest);
	pthread_mutex_lock(&ingest->lock);
	job->next = ingest->free_jobs;
	ingest->free_jobs = job;
	if (ingest->error.code && ret == 0) {
		*err = ingest->error;
		ret = err->code;
	}
	pthread_mutex_unlock(&ingest->lock);
	/*
	 * The workers are idle: their bundles are ours to finish, without the
	 * lock, which a bundle that fills its pack takes to queue the fsync.
	 */
	for (w = 0; w < ingest->worker_count && ret == 0; w++)
		ret = ingest_flush_bundle(&ingest->workers[w], err);
	for (w = 0; w < ingest->worker_count; w++)
		ingest->workers[w].pack_open = false;
	if (ret < 0)
		goto out;
	if (progress)
		progress(progress_ctx, total, total);

	ret = ingest_commit_packs(ingest, err);
	if (ret < 0)
		goto out;
	if (!store->db) {
		ret = ingest_write_manifest(ingest, err);
		/* The manifest names them now; gc takes them if it is never imported. */
		for (w = 0; w < ingest->worker_count && ret == 0; w++)
			ingest_worker_forget_packs(&ingest->workers[w]);
		goto out;
	}
	ret = catalog_begin(store, err);
	if (ret < 0)
		goto out;
	for (w = 0; w < ingest->worker_count && ret == 0; w++)
		ret = ingest_record_objects(&ingest->workers[w], err);
	if (ret == 0)
		ret = tree_record(store, ingest_entry_at, ingest, ingest->entry_count, tree, err);
	if (ret == 0)
		ret = ingest_record_stat_cache(ingest, root.buf, err);
	if (ret == 0)
		ret = catalog_commit(store, err);
	else
		catalog_rollback(store);
	if (ret == 0) {
		/* The catalog names them now: they are no longer ours to remove. */
		for (w = 0; w < ingest->worker_count; w++)
			ingest_worker_forget_packs(&ingest->workers[w]);
	}
out:
	if (ret < 0)
		ingest_discard_packs(ingest);
	ingest_reset_folder(ingest);
	ingest->root = NULL;
	strbuf_release(&root);
	free(real);
	return ret;
}

int store_ingest_folder(struct store_ingest *ingest, const char *dir,
			int64_t *tree, store_progress_fn *progress,
			void *progress_ctx, struct error *err)
{
	return ingest_tree(ingest, dir, NULL, 0, tree, progress, progress_ctx, err);
}

int store_ingest_paths(struct store_ingest *ingest, const char *dir, char *const *paths,
		       size_t count, int64_t *tree, struct error *err)
{
	return ingest_tree(ingest, dir, paths, count, tree, NULL, NULL, err);
}

struct store *ingest_store(struct store_ingest *ingest)
{
	return ingest->store;
}

int store_stage_folder(const char *home, const char *dir, struct strbuf *manifest,
		       struct error *err)
{
	struct store_ingest *ingest;
	struct store *store;
	int64_t unused;
	int ret;

	ret = store_open_packs(&store, home, true, err);
	if (ret < 0)
		return ret;
	/* The ingest holds the gc lock shared until its end. */
	ret = store_ingest_begin(store, &ingest, NULL, NULL, err);
	if (ret == 0) {
		ingest->manifest = manifest;
		ret = ingest_tree(ingest, dir, NULL, 0, &unused, NULL, NULL, err);
		store_ingest_end(ingest);
	}
	store_close(store);
	return ret;
}
