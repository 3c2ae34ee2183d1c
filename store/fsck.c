/*
 * fsck.c - checking a store end to end: the catalog's own integrity, every
 * object re-read from its pack and re-hashed, every tree re-hashed from its
 * entries, and every reference between them.  Problems are reported one a
 * line and counted; nothing is changed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/hashset.h"
#include "store/internal.h"

struct fsck {
	struct store *store;
	store_report_fn *report;
	void *ctx;
	uint64_t problems;
	struct strbuf line;
};

__attribute__((format(printf, 2, 3)))
static void fsck_problem(struct fsck *fsck, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	strbuf_reset(&fsck->line);
	strbuf_grow(&fsck->line, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(fsck->line.buf, (size_t)n + 1, fmt, ap);
	va_end(ap);
	fsck->line.len = (size_t)n;
	fsck->problems++;
	fsck->report(fsck->ctx, fsck->line.buf);
}

static int fsck_pragma(struct fsck *fsck, const char *sql, struct error *err)
{
	sqlite3_stmt *stmt;
	int rc = sqlite3_prepare_v2(fsck->store->db, sql, -1, &stmt, NULL);

	if (rc != SQLITE_OK)
		return catalog_error(fsck->store, rc, "check", err);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(stmt, 0);

		if (sqlite3_column_count(stmt) == 1 && text && !strcmp(text, "ok"))
			continue;
		if (sqlite3_column_count(stmt) == 1)
			fsck_problem(fsck, "catalog: %s", text ? text : "?");
		else
			fsck_problem(fsck, "catalog: table %s row %lld: broken reference to %s",
				     text, (long long)sqlite3_column_int64(stmt, 1),
				     sqlite3_column_text(stmt, 2));
	}
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE)
		return catalog_error(fsck->store, rc, "check", err);
	return 0;
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* Every object, pack by pack in offset order so each pack is read once. */
static int fsck_objects(struct fsck *fsck, uint64_t *objects, struct error *err)
{
	struct store *store = fsck->store;
	struct strbuf path = STRBUF_INIT;
	sqlite3_stmt *stmt;
	int64_t current_pack = -1;
	uint8_t *frame = NULL, *raw = NULL, check[STORE_HASH_SIZE];
	size_t frame_cap = 0, raw_cap = 0;
	char hex[65];
	int fd = -1, rc;

	stmt = catalog_stmt(store,
			    "SELECT o.hash, o.pack, o.offset, o.stored, o.raw, p.name"
			    " FROM objects o LEFT JOIN packs p ON p.id = o.pack"
			    " ORDER BY o.pack, o.offset", err);
	if (!stmt)
		return err->code;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const uint8_t *hash = sqlite3_column_blob(stmt, 0);
		int64_t pack = sqlite3_column_int64(stmt, 1);
		off_t offset = (off_t)sqlite3_column_int64(stmt, 2);
		uint32_t stored = (uint32_t)sqlite3_column_int64(stmt, 3);
		uint32_t raw_size = (uint32_t)sqlite3_column_int64(stmt, 4);
		const char *name = (const char *)sqlite3_column_text(stmt, 5);
		uint8_t header[PACK_RECORD_HEADER];

		(*objects)++;
		if (sqlite3_column_bytes(stmt, 0) != STORE_HASH_SIZE) {
			fsck_problem(fsck, "catalog: object with a malformed hash");
			continue;
		}
		hex_encode(hash, STORE_HASH_SIZE, hex);
		if (!name) {
			fsck_problem(fsck, "object %s: pack %lld not in the catalog", hex,
				     (long long)pack);
			continue;
		}
		if (pack != current_pack) {
			if (fd >= 0)
				close(fd);
			current_pack = pack;
			pack_path(store, name, &path);
			fd = open(path.buf, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				fsck_problem(fsck, "pack %s: %s", path.buf, strerror(errno));
		}
		if (fd < 0) {
			fsck_problem(fsck, "object %s: its pack %s is missing", hex, name);
			continue;
		}
		if (stored > frame_cap) {
			free(frame);
			frame_cap = stored;
			frame = xmalloc(frame_cap);
		}
		if (raw_size > raw_cap) {
			free(raw);
			raw_cap = raw_size;
			raw = xmalloc(raw_cap);
		}
		if (offset < PACK_RECORD_HEADER ||
		    fs_pread_all(fd, header, sizeof(header), offset - PACK_RECORD_HEADER) ||
		    memcmp(header, hash, STORE_HASH_SIZE) ||
		    get_le32(header + STORE_HASH_SIZE) != raw_size ||
		    get_le32(header + STORE_HASH_SIZE + 4) != stored) {
			fsck_problem(fsck, "object %s: record header in pack %s at offset %lld does not match the catalog",
				     hex, name, (long long)offset);
			continue;
		}
		/* object_read would look the object up again: read it here. */
		if (fs_pread_all(fd, frame, stored, offset) < 0) {
			fsck_problem(fsck, "object %s: truncated in pack %s", hex, name);
			continue;
		}
		if (frame_decompress(frame, stored, raw, raw_size) < 0) {
			fsck_problem(fsck, "object %s: corrupt lz4 frame in pack %s at offset %lld",
				     hex, name, (long long)offset);
			continue;
		}
		hash_bytes(raw, raw_size, check);
		if (memcmp(check, hash, STORE_HASH_SIZE))
			fsck_problem(fsck, "object %s: content hashes to something else (pack %s, offset %lld)",
				     hex, name, (long long)offset);
	}
	sqlite3_reset(stmt);
	if (fd >= 0)
		close(fd);
	free(frame);
	free(raw);
	strbuf_release(&path);
	if (rc != SQLITE_DONE)
		return catalog_error(store, rc, "read objects", err);
	return 0;
}

/* Re-hashes one tree and checks that its chunks exist with their sizes. */
static int fsck_tree(struct fsck *fsck, int64_t tree, const uint8_t *expected,
		     struct error *err)
{
	struct store *store = fsck->store;
	struct tree_hasher *hasher = tree_hasher_new();
	uint8_t hash[STORE_HASH_SIZE];
	char tree_hex[65], chunk_hex[65];
	sqlite3_stmt *stmt, *lookup;
	int rc;

	hex_encode(expected, STORE_HASH_SIZE, tree_hex);
	stmt = catalog_stmt(store,
			    "SELECT path, mode, size, target, chunks FROM tree_entries"
			    " WHERE tree = ? ORDER BY seq", err);
	if (!stmt) {
		tree_hasher_finish(hasher, hash);
		return err->code;
	}
	sqlite3_bind_int64(stmt, 1, tree);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const char *path = (const char *)sqlite3_column_text(stmt, 0);
		mode_t mode = (mode_t)sqlite3_column_int64(stmt, 1);
		uint64_t size = (uint64_t)sqlite3_column_int64(stmt, 2), sum = 0;
		const char *target = (const char *)sqlite3_column_text(stmt, 3);
		const uint8_t *chunks = sqlite3_column_blob(stmt, 4);
		size_t bytes = (size_t)sqlite3_column_bytes(stmt, 4);
		size_t count = bytes / STORE_CHUNK_RECORD_SIZE, i;

		tree_hasher_add(hasher, path, mode, size, target, chunks, count);
		if (!S_ISREG(mode))
			continue;
		if (bytes % STORE_CHUNK_RECORD_SIZE)
			fsck_problem(fsck, "tree %s: %s: malformed chunk list", tree_hex, path);
		for (i = 0; i < count; i++) {
			const uint8_t *record = chunks + i * STORE_CHUNK_RECORD_SIZE;
			uint32_t chunk_size = get_le32(record + STORE_HASH_SIZE);

			sum += chunk_size;
			lookup = catalog_stmt(store, "SELECT raw FROM objects WHERE hash = ?", err);
			if (!lookup)
				break;
			sqlite3_bind_blob(lookup, 1, record, STORE_HASH_SIZE, SQLITE_STATIC);
			rc = sqlite3_step(lookup);
			hex_encode(record, STORE_HASH_SIZE, chunk_hex);
			if (rc != SQLITE_ROW)
				fsck_problem(fsck, "tree %s: %s: chunk %s is missing", tree_hex,
					     path, chunk_hex);
			else if ((uint32_t)sqlite3_column_int64(lookup, 0) != chunk_size)
				fsck_problem(fsck, "tree %s: %s: chunk %s has the wrong size",
					     tree_hex, path, chunk_hex);
			sqlite3_reset(lookup);
		}
		if (sum != size)
			fsck_problem(fsck, "tree %s: %s: chunks hold %llu bytes, entry says %llu",
				     tree_hex, path, (unsigned long long)sum,
				     (unsigned long long)size);
	}
	sqlite3_reset(stmt);
	tree_hasher_finish(hasher, hash);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return catalog_error(store, rc, "read tree", err);
	if (memcmp(hash, expected, STORE_HASH_SIZE))
		fsck_problem(fsck, "tree %s: entries hash to something else", tree_hex);
	return err->code;
}

static int fsck_trees(struct fsck *fsck, uint64_t *trees, struct error *err)
{
	struct store *store = fsck->store;
	sqlite3_stmt *stmt;
	int64_t *ids = NULL;
	uint8_t (*hashes)[STORE_HASH_SIZE] = NULL;
	size_t count = 0, i;
	int rc, ret = 0;

	stmt = catalog_stmt(store, "SELECT id, hash FROM trees ORDER BY id", err);
	if (!stmt)
		return err->code;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (sqlite3_column_bytes(stmt, 1) != STORE_HASH_SIZE) {
			fsck_problem(fsck, "catalog: tree %lld has a malformed hash",
				     (long long)sqlite3_column_int64(stmt, 0));
			continue;
		}
		ids = xrealloc(ids, (count + 1) * sizeof(*ids));
		hashes = xrealloc(hashes, (count + 1) * sizeof(*hashes));
		ids[count] = sqlite3_column_int64(stmt, 0);
		memcpy(hashes[count], sqlite3_column_blob(stmt, 1), STORE_HASH_SIZE);
		count++;
	}
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE)
		ret = catalog_error(store, rc, "read trees", err);
	for (i = 0; i < count && ret == 0; i++)
		ret = fsck_tree(fsck, ids[i], hashes[i], err);
	*trees = count;
	free(ids);
	free(hashes);
	return ret;
}

int store_fsck(struct store *store, store_report_fn *report, void *ctx,
	       uint64_t *problems, struct error *err)
{
	struct fsck fsck = { .store = store, .report = report, .ctx = ctx };
	uint64_t objects = 0, trees = 0;
	int ret;

	ret = fsck_pragma(&fsck, "PRAGMA integrity_check", err);
	if (ret == 0)
		ret = fsck_pragma(&fsck, "PRAGMA foreign_key_check", err);
	/* A consistent view of the catalog while we read packs. */
	if (ret == 0)
		ret = sqlite3_exec(store->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK
			? 0 : catalog_error(store, sqlite3_errcode(store->db), "begin", err);
	if (ret == 0)
		ret = fsck_objects(&fsck, &objects, err);
	if (ret == 0)
		ret = fsck_trees(&fsck, &trees, err);
	catalog_rollback(store);
	strbuf_release(&fsck.line);
	*problems = fsck.problems;
	return ret;
}
