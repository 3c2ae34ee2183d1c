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
	} stmts[64];
	int stmt_count;
};

/* Where an object's lz4 frame lies. */
struct object_location {
	int64_t pack;
	uint64_t offset;
	uint32_t stored;
	uint32_t raw;
};

/* Pack files: "DSTKPK01", then records of hash, raw size, stored size, frame. */
#define PACK_MAGIC "DSTKPK01"
#define PACK_MAGIC_SIZE 8
#define PACK_RECORD_HEADER (STORE_HASH_SIZE + 8)
/* A pack is closed once it passes this size. */
#define PACK_TARGET_SIZE (32u * 1024 * 1024)

struct pack_writer {
	int fd;
	char *tmp_path;
	char name[33];
	uint64_t size;
};

int pack_writer_open(struct store *store, struct pack_writer *writer,
		     struct error *err);
/* Appends a record; *offset receives where its frame starts. */
int pack_writer_append(struct pack_writer *writer, const uint8_t *hash,
		       uint32_t raw_size, const void *frame, uint32_t stored,
		       uint64_t *offset, struct error *err);
/* fsync, rename into packs/XX/NAME, fsync the directory. */
int pack_writer_commit(struct store *store, struct pack_writer *writer,
		       struct error *err);
void pack_writer_discard(struct pack_writer *writer);
/* packs/XX/NAME for a pack name. */
void pack_path(struct store *store, const char *name, struct strbuf *out);

/* lz4 frame with a content checksum, so reads detect corruption cheaply. */
size_t frame_bound(size_t raw_size);
int frame_compress(const void *raw, size_t raw_size, void *out,
		   size_t out_size, size_t *stored);
/* Decodes one frame into exactly raw_size bytes; -EIO on any mismatch. */
int frame_decompress(const void *frame, size_t stored, void *out,
		     size_t raw_size);

/*
 * Reads an object's bytes into out (raw bytes), checking the lz4 frame's
 * checksum; with verify_hash also the SHA-256.  Corruption is -EIO.
 */
int object_read(struct store *store, const uint8_t *hash, void *out,
		uint32_t raw_size, bool verify_hash, struct error *err);
int object_find(struct store *store, const uint8_t *hash,
		struct object_location *loc, char pack_name[33]);

/* Catalog */
int catalog_open(struct store *store, struct error *err);
int catalog_begin(struct store *store, struct error *err);
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

/* Tree serialization, shared by ingest (to name trees) and fsck. */
struct tree_hasher;
struct tree_hasher *tree_hasher_new(void);
void tree_hasher_add(struct tree_hasher *hasher, const char *path, mode_t mode,
		     uint64_t size, const char *target, const uint8_t *chunks,
		     size_t chunk_count);
void tree_hasher_finish(struct tree_hasher *hasher,
			uint8_t out[STORE_HASH_SIZE]);

/* Locks that keep gc and writers apart (flock on $DSTACK_HOME/gc.lock). */
int store_lock_shared(struct store *store, struct error *err);
int store_lock_exclusive(struct store *store, struct error *err);
void store_unlock(struct store *store);

#endif
