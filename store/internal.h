/*
 * internal.h - what the files of store/ share with each other and nobody
 * else: the store handle, the chunker, packs and catalog statements.
 */
#ifndef DSTACK_STORE_INTERNAL_H
#define DSTACK_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>

#include "store/store.h"

/*
 * Chunk sizes, chosen by measurement (docs/performance.md): content-
 * defined cuts between MIN and MAX, about AVG apart.  Changing them changes
 * chunk boundaries and so loses dedup against what is already stored.
 */
#define CHUNK_MIN (256u * 1024)
#define CHUNK_AVG (1024u * 1024)
#define CHUNK_MAX (4u * 1024 * 1024)
/* The largest block a pack record may hold: a reader refuses more before
 * allocating, so a damaged header cannot ask for gigabytes. */
#define PACK_BLOCK_MAX (2 * CHUNK_MAX)

struct chunker {
	size_t min, avg, max;
	uint64_t mask_small;	/* harder to hit: used below avg */
	uint64_t mask_large;	/* easier to hit: used above avg */
};

void chunker_init(struct chunker *chunker, size_t min, size_t avg, size_t max);
/*
 * Returns the length of the first chunk of data[0, len).  The caller passes
 * at least chunker->max bytes unless the data ends within them.
 */
size_t chunker_cut(const struct chunker *chunker, const uint8_t *data,
		   size_t len);

/* SHA-256 of len bytes. */
void hash_bytes(const void *data, size_t len, uint8_t out[STORE_HASH_SIZE]);

struct store {
	char *home;
	char *packs_dir;
	char *tmp_dir;
	bool writable;
	sqlite3 *db;
	int gc_lock_fd;
	struct {
		const char *sql;
		sqlite3_stmt *stmt;
	} *stmts;
	int stmt_count, stmt_alloc;
	struct block_cache *blocks;
	bool lazy;		/* commits wait for the next durable one */
};

/* Decompressed blocks by (pack, offset); see object_read. */
struct block_cache;
void block_cache_free(struct block_cache *cache);

/*
 * Where an object lies: in the lz4 frame at offset of pack, which holds
 * block bytes once decompressed; the object is raw bytes from inner.
 * Large chunks have a frame each (inner 0, block == raw); small objects
 * share a frame (a bundle), so they compress as well as a stream of files
 * and reading many small files decompresses each bundle once.
 */
struct object_location {
	int64_t pack;
	uint64_t offset;
	uint32_t stored;
	uint32_t raw;
	uint32_t inner;
	uint32_t block;
};

/* Objects smaller than this go into bundles of about BUNDLE_SIZE bytes. */
#define BUNDLE_OBJECT_MAX (64u * 1024)
#define BUNDLE_SIZE (256u * 1024)
#define BUNDLE_MEMBERS_MAX 1024

/*
 * Pack files: "DSTKPK01", then records.  A record is a header (member
 * count, frame size, block size: le32 each), a member list (hash, inner
 * offset, size: 32 + 4 + 4 bytes each) and the frame.  Packs describe
 * themselves: the catalog could be rebuilt from them.
 */
#define PACK_MAGIC "DSTKPK01"
#define PACK_MAGIC_SIZE 8
#define PACK_RECORD_HEADER 12
#define PACK_MEMBER_SIZE (STORE_HASH_SIZE + 8)
/* A pack is closed once it passes this size. */
#define PACK_TARGET_SIZE (32u * 1024 * 1024)

struct pack_member {
	uint8_t hash[STORE_HASH_SIZE];
	uint32_t inner;
	uint32_t raw;
};

/* One record read back from a pack, for fsck and gc. */
struct pack_record {
	uint64_t offset;	/* of the frame */
	uint32_t stored, block;
	struct pack_member *members;
	size_t count;
};

struct pack_writer {
	int fd;
	char *tmp_path;
	char name[33];
	uint64_t size;
	bool queued;		/* handed to the ingest's fsync thread */
};

int pack_writer_open(struct store *store, struct pack_writer *writer,
		     struct error *err);
/* Appends a record; *offset receives where its frame starts. */
int pack_writer_append(struct pack_writer *writer,
		       const struct pack_member *members, size_t count,
		       uint32_t block, const void *frame, uint32_t stored,
		       uint64_t *offset, struct error *err);
/*
 * Making a pack durable: fsync its bytes (any thread may), rename it into
 * packs/XX/NAME, then fsync packs/XX and packs/.  Renaming many packs
 * before syncing the folders costs one journal commit, not one a pack.
 */
int pack_writer_sync(struct pack_writer *writer, struct error *err);
int pack_writer_rename(struct store *store, struct pack_writer *writer,
		       struct error *err);
int pack_dir_sync(struct store *store, const char *name, struct error *err);
/* All three steps for one pack. */
int pack_writer_commit(struct store *store, struct pack_writer *writer,
		       struct error *err);
void pack_writer_discard(struct pack_writer *writer);
/*
 * Reads the record at *pos of the pack open on fd (size bytes long) and
 * advances *pos past it; 0 at the end, -EIO for a malformed record.
 * record->members is reallocated as needed; the caller frees it.
 */
int pack_record_next(int fd, uint64_t size, uint64_t *pos,
		     struct pack_record *record);
/* packs/XX/NAME for a pack name. */
void pack_path(struct store *store, const char *name, struct strbuf *out);
/* Whether name is one a pack is given (32 hex digits): one read from a
 * damaged catalog must not become a path. */
bool pack_name_valid(const char *name);

/* lz4 frame with a content checksum, so reads detect corruption cheaply. */
size_t frame_bound(size_t raw_size);
int frame_compress(const void *raw, size_t raw_size, void *out,
		   size_t out_size, size_t *stored);
/* Decodes one frame into exactly raw_size bytes; -EIO on any mismatch. */
int frame_decompress(const void *frame, size_t stored, void *out,
		     size_t raw_size);

/*
 * Reads an object's bytes into out (raw bytes), checking the lz4 frame's
 * checksum; with verify_hash also the SHA-256.  Corruption is -EIO.  The
 * last few decompressed blocks are kept, so reading the small files of a
 * bundle one after another decompresses it once.
 */
int object_read(struct store *store, const uint8_t *hash, void *out,
		uint32_t raw_size, bool verify_hash, struct error *err);
int object_find(struct store *store, const uint8_t *hash,
		struct object_location *loc, char pack_name[33]);

/*
 * Reads the object at loc of pack name, whoever placed it there (a
 * manifest, a pack record), verifying its SHA-256; loc->pack keys the
 * block cache (0: not cached; one key must always mean one pack).
 */
int object_read_from(struct store *store, const char *name, const uint8_t *hash,
		     const struct object_location *loc, void *out, struct error *err);

/*
 * The capacity in bytes of store_entry_pread's chunk cache (64 MiB unless
 * set): tests shrink it to make eviction happen with little data.
 */
void chunk_cache_set_capacity(uint64_t bytes);

/*
 * A store of packs alone, for a node that must not open the catalog (it
 * may sit on NFS): db stays NULL.  writable: packs may be added (gc.lock
 * is created if missing); else gc.lock is only used if it is there.
 */
int store_open_packs(struct store **out, const char *home, bool writable,
		     struct error *err);

/* Catalog */
int catalog_open(struct store *store, struct error *err);
int catalog_begin(struct store *store, struct error *err);
/*
 * Whether the next commits are on disk when they return (the default),
 * or only once a later durable commit syncs the log they are in: SQLite
 * keeps them in order, so a power loss can only lose the newest.
 */
int catalog_set_durable(struct store *store, bool durable, struct error *err);
int catalog_commit(struct store *store, struct error *err);
void catalog_rollback(struct store *store);
/*
 * The prepared statement for sql, reset and unbound.  Statements are
 * prepared once per store and reused; sql must be a string literal.
 */
sqlite3_stmt *catalog_stmt(struct store *store, const char *sql,
			   struct error *err);
/* Formats the current SQLite error for the catalog into err. */
int catalog_error(struct store *store, int rc, const char *what,
		  struct error *err);
void catalog_finalize_all(struct store *store);

/* Run names: adjective-animal-N. */
void run_name_make(int64_t number, char out[64]);
/* The columns run_from_row reads, in its order, from runs r. */
#define RUN_COLUMNS \
	"SELECT r.id, r.name, coalesce(r.workflow, ''), r.status," \
	" coalesce((SELECT name FROM tags t WHERE t.run = r.id ORDER BY created DESC LIMIT 1), '')," \
	" r.submitted, coalesce(r.finished, 0)," \
	" (SELECT group_concat(path, ', ') FROM (SELECT DISTINCT path FROM artifacts a" \
	"  WHERE a.run = r.id ORDER BY path))," \
	" coalesce(r.commit_hash, ''), coalesce(r.repo, ''), r.args, coalesce(r.exit_code, -1)," \
	" coalesce(r.provider, ''), coalesce(r.runner_pid, 0), coalesce(r.runner_started, 0)," \
	" coalesce(r.started, 0), coalesce(r.reason, ''), coalesce(r.snapshot, 0)," \
	" coalesce(r.branch, ''), coalesce(r.provider_repo, ''), coalesce(r.provider_commit, '')," \
	" (SELECT count(*) FROM jobs j WHERE j.run = r.id)," \
	" (SELECT count(*) FROM jobs j WHERE j.run = r.id AND j.cached_from IS NOT NULL)"
void run_from_row(sqlite3_stmt *stmt, struct store_run *run);
/* Calls fn for each entry of tree (its artifact "", its job -1), in order. */
int tree_entries(struct store *store, int64_t tree, store_entry_fn *fn, void *ctx,
		 struct error *err);
/*
 * A lister's caller: its callback, of the lister's type, and its context,
 * as a row function of catalog_each gets them.
 */
struct catalog_visit {
	union {
		store_run_fn *run;
		store_job_fn *job;
		store_live_artifact_fn *live;
		store_daemon_fn *daemon;
	} fn;
	void *ctx;
};
/*
 * Steps stmt to its end, calling row for each row (a non-zero return
 * stops the walk and is returned); resets it after.
 */
int catalog_each(struct store *store, sqlite3_stmt *stmt,
		 int (*row)(void *ctx, sqlite3_stmt *stmt), void *ctx, const char *what,
		 struct error *err);
/* Steps a RUN_COLUMNS statement, calling fn per run; resets it after. */
int runs_each(struct store *store, sqlite3_stmt *stmt, store_run_fn *fn, void *ctx,
	      const char *what, struct error *err);
/* Inserts a run row in the open transaction, named adjective-animal-ID. */
int run_insert(struct store *store, const struct store_run_spec *spec,
	       const char *status, int64_t *id, char name[64], struct error *err);

/* Tree serialization, shared by ingest (to name trees) and fsck. */
struct tree_hasher;
struct tree_hasher *tree_hasher_new(void);
void tree_hasher_add(struct tree_hasher *hasher, const char *path, mode_t mode,
		     uint64_t size, const char *target, const uint8_t *chunks,
		     size_t chunk_count);
void tree_hasher_finish(struct tree_hasher *hasher,
			uint8_t out[STORE_HASH_SIZE]);

/* Orders a tree's paths: parents first, siblings by name bytes ('/' first). */
int tree_path_compare(const char *a, const char *b);
/* Fills entry with entry i of a tree being recorded; scratch may hold its chunks. */
typedef void tree_entry_at_fn(void *ctx, size_t i, struct store_entry *entry,
			      struct strbuf *scratch);
/*
 * Inserts, in the open transaction, the tree of count entries (canonical
 * order) unless an identical one exists; *tree gets its id.
 */
int tree_record(struct store *store, tree_entry_at_fn *at, void *ctx, size_t count,
		int64_t *tree, struct error *err);

/*
 * Writing entries (artifact/path) under a folder, as store_run_download
 * does: write puts a regular file's bytes in fd.  close applies the
 * folders' modes unless ret (the caller's result so far) is an error, and
 * returns the outcome, with err filled.
 */
struct download;
typedef int download_write_fn(void *ctx, const struct store_entry *entry, int fd,
			      struct error *err);
int download_open(struct download **out, const char *dir, download_write_fn *write,
		  void *write_ctx, struct error *err);
int download_add(struct download *download, const struct store_entry *entry);
int download_close(struct download *download, int ret, struct error *err);

/* The store an ingest writes to. */
struct store *ingest_store(struct store_ingest *ingest);

/*
 * Manifests (manifest.c): a tree's entries with where each chunk lies in
 * the packs, for a node without the catalog.  The writer counts entries
 * for the end line that tells a whole manifest from a truncated one.
 */
struct manifest_writer {
	struct strbuf *out;
	size_t entries;
};
void manifest_begin(struct manifest_writer *writer, struct strbuf *out);
void manifest_add_entry(struct manifest_writer *writer, const char *path, mode_t mode,
			uint64_t size, const char *target);
/* A chunk of the entry added last; loc->raw is its size. */
void manifest_add_chunk(struct manifest_writer *writer, const uint8_t *hash,
			const char *pack, const struct object_location *loc);
void manifest_end(struct manifest_writer *writer);

/* Locks that keep gc and writers apart (flock on $DSTACK_HOME/gc.lock). */
int store_lock_shared(struct store *store, struct error *err);
int store_lock_exclusive(struct store *store, struct error *err);
void store_unlock(struct store *store);

#endif
