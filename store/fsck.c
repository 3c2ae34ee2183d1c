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
	struct hashset damaged;		/* objects found unreadable or wrong */
	int64_t *damaged_trees;		/* trees with a problem, for the runs they affect */
	size_t damaged_tree_count;
};

__attribute__((format(printf, 2, 3)))
static void fsck_problem(struct fsck *fsck, const char *fmt, ...)
{
	va_list ap;

	strbuf_reset(&fsck->line);
	va_start(ap, fmt);
	strbuf_vaddf(&fsck->line, fmt, ap);
	va_end(ap);
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

/* A member found in a pack, and whether its bytes hash to its name. */
struct fsck_member {
	uint8_t hash[STORE_HASH_SIZE];
	uint64_t offset;
	uint32_t stored, block, inner, raw;
	bool intact;
};

struct fsck_members {
	struct fsck_member *items;
	size_t count, alloc;
};

/* Reads every record of the pack open on fd, verifying each member. */
static void fsck_scan_pack(struct fsck *fsck, int fd, const char *name,
			   uint64_t size, struct fsck_members *found)
{
	struct pack_record record = { 0 };
	uint64_t pos = PACK_MAGIC_SIZE;
	uint8_t *frame = NULL, *block = NULL, check[STORE_HASH_SIZE];
	char magic[PACK_MAGIC_SIZE];
	size_t i;
	int ret;

	if (size < PACK_MAGIC_SIZE || fs_pread_all(fd, magic, sizeof(magic), 0) ||
	    memcmp(magic, PACK_MAGIC, PACK_MAGIC_SIZE)) {
		fsck_problem(fsck, "pack %s: not a pack file", name);
		return;
	}
	while ((ret = pack_record_next(fd, size, &pos, &record)) > 0) {
		bool frame_ok;

		frame = xrealloc(frame, record.stored ? record.stored : 1);
		block = xrealloc(block, record.block ? record.block : 1);
		frame_ok = fs_pread_all(fd, frame, record.stored, (off_t)record.offset) == 0 &&
			   frame_decompress(frame, record.stored, block, record.block) == 0;
		for (i = 0; i < record.count; i++) {
			struct pack_member *m = &record.members[i];
			struct fsck_member *f;

			if (found->count == found->alloc) {
				found->alloc = found->alloc ? 2 * found->alloc : 256;
				found->items = xrealloc(found->items, found->alloc * sizeof(*f));
			}
			f = &found->items[found->count++];
			memcpy(f->hash, m->hash, STORE_HASH_SIZE);
			f->offset = record.offset;
			f->stored = record.stored;
			f->block = record.block;
			f->inner = m->inner;
			f->raw = m->raw;
			f->intact = false;
			if (frame_ok && (uint64_t)m->inner + m->raw <= record.block) {
				hash_bytes(block + m->inner, m->raw, check);
				f->intact = !memcmp(check, m->hash, STORE_HASH_SIZE);
			}
		}
	}
	if (ret < 0)
		fsck_problem(fsck, "pack %s: malformed record at offset %llu", name,
			     (unsigned long long)pos);
	free(record.members);
	free(frame);
	free(block);
}

static struct fsck_member *fsck_member_find(struct fsck_members *found,
					    uint64_t offset, uint32_t inner)
{
	size_t lo = 0, hi = found->count;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		struct fsck_member *m = &found->items[mid];

		if (m->offset == offset && m->inner == inner)
			return m;
		if (m->offset < offset || (m->offset == offset && m->inner < inner))
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Checks the catalog's objects in one pack against what the pack holds. */
static int fsck_pack(struct fsck *fsck, int64_t pack, const char *name,
		     uint64_t *objects, struct error *err)
{
	struct store *store = fsck->store;
	struct fsck_members found = { 0 };
	struct strbuf path = STRBUF_INIT;
	sqlite3_stmt *stmt;
	struct stat st;
	char hex[65];
	int fd, rc;

	pack_path(store, name, &path);
	fd = open(path.buf, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		fsck_problem(fsck, "pack %s: %s", name, strerror(errno));
	else
		fsck_scan_pack(fsck, fd, name, (uint64_t)st.st_size, &found);
	if (fd >= 0)
		close(fd);
	strbuf_release(&path);

	stmt = catalog_stmt(store, "SELECT hash, offset, inner, raw, stored, block FROM objects"
			    " WHERE pack = ? ORDER BY offset, inner", err);
	if (!stmt) {
		free(found.items);
		return err->code;
	}
	sqlite3_bind_int64(stmt, 1, pack);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const uint8_t *hash = sqlite3_column_blob(stmt, 0);
		uint64_t offset = (uint64_t)sqlite3_column_int64(stmt, 1);
		struct fsck_member *m = fsck_member_find(&found, offset,
			(uint32_t)sqlite3_column_int64(stmt, 2));

		(*objects)++;
		if (sqlite3_column_bytes(stmt, 0) != STORE_HASH_SIZE) {
			fsck_problem(fsck, "catalog: object with a malformed hash in pack %s", name);
			continue;
		}
		hex_encode(hash, STORE_HASH_SIZE, hex);
		if (!m || memcmp(m->hash, hash, STORE_HASH_SIZE) ||
		    m->raw != (uint32_t)sqlite3_column_int64(stmt, 3))
			fsck_problem(fsck, "object %s: not found in pack %s at offset %llu",
				     hex, name, (unsigned long long)offset);
		else if (sqlite3_column_int64(stmt, 4) != m->stored ||
			 sqlite3_column_int64(stmt, 5) != m->block)
			/* A read trusts the catalog's sizes: they must be the pack's. */
			fsck_problem(fsck, "object %s: frame sizes in the catalog differ from pack %s at offset %llu",
				     hex, name, (unsigned long long)offset);
		else if (!m->intact)
			fsck_problem(fsck, "object %s: corrupt (pack %s, offset %llu)", hex,
				     name, (unsigned long long)offset);
		else
			continue;
		hashset_add(&fsck->damaged, hash);
	}
	sqlite3_reset(stmt);
	free(found.items);
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "read objects", err);
}

static int fsck_objects(struct fsck *fsck, uint64_t *objects, struct error *err)
{
	struct store *store = fsck->store;
	sqlite3_stmt *stmt = catalog_stmt(store, "SELECT id, name FROM packs ORDER BY id", err);
	int64_t *ids = NULL;
	char (*names)[33] = NULL;
	size_t count = 0, i;
	int rc, ret = 0;

	if (!stmt)
		return err->code;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(stmt, 1);

		if (!name || !pack_name_valid(name)) {
			fsck_problem(fsck, "catalog: pack %lld has a malformed name",
				     (long long)sqlite3_column_int64(stmt, 0));
			continue;
		}
		ids = xrealloc(ids, (count + 1) * sizeof(*ids));
		names = xrealloc(names, (count + 1) * sizeof(*names));
		ids[count] = sqlite3_column_int64(stmt, 0);
		memcpy(names[count], name, sizeof(names[count]));
		count++;
	}
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE)
		ret = catalog_error(store, rc, "read packs", err);
	for (i = 0; i < count && ret == 0; i++)
		ret = fsck_pack(fsck, ids[i], names[i], objects, err);
	free(ids);
	free(names);
	return ret;
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
	uint64_t before = fsck->problems;
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

		if (!path) {
			fsck_problem(fsck, "tree %s: an entry has no path", tree_hex);
			continue;
		}
		tree_hasher_add(hasher, path, mode, size, target, chunks, count);
		if (!S_ISREG(mode))
			continue;
		if (bytes % STORE_CHUNK_RECORD_SIZE)
			fsck_problem(fsck, "tree %s: %s: malformed chunk list", tree_hex, path);
		for (i = 0; i < count; i++) {
			const uint8_t *record = chunks + i * STORE_CHUNK_RECORD_SIZE;
			uint32_t chunk_size = le32_get(record + STORE_HASH_SIZE);

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
			else if (hashset_contains(&fsck->damaged, record))
				fsck_problem(fsck, "tree %s: %s: chunk %s is damaged", tree_hex,
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
	if (fsck->problems > before) {
		fsck->damaged_trees = xrealloc(fsck->damaged_trees, (fsck->damaged_tree_count + 1) *
					       sizeof(*fsck->damaged_trees));
		fsck->damaged_trees[fsck->damaged_tree_count++] = tree;
	}
	return err->code;
}

/*
 * Names the runs a damaged tree reaches, as an artifact or as the
 * repository snapshot their jobs start from: what a user loses.
 */
static int fsck_affected_runs(struct fsck *fsck, int64_t tree, struct error *err)
{
	struct store *store = fsck->store;
	sqlite3_stmt *stmt;
	int rc;

	stmt = catalog_stmt(store, "SELECT r.name, a.job, a.path FROM artifacts a"
			    " JOIN runs r ON r.id = a.run WHERE a.tree = ? ORDER BY r.id, a.job, a.path",
			    err);
	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, tree);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
		fsck_problem(fsck, "run %s: artifact %s of job %d is damaged",
			     sqlite3_column_text(stmt, 0), sqlite3_column_text(stmt, 2),
			     sqlite3_column_int(stmt, 1));
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE)
		return catalog_error(store, rc, "read artifacts", err);
	stmt = catalog_stmt(store, "SELECT name FROM runs WHERE snapshot = ? ORDER BY id", err);
	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, tree);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
		fsck_problem(fsck, "run %s: its repository snapshot is damaged",
			     sqlite3_column_text(stmt, 0));
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "read runs", err);
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
	for (i = 0; i < fsck->damaged_tree_count && ret == 0; i++)
		ret = fsck_affected_runs(fsck, fsck->damaged_trees[i], err);
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
	hashset_release(&fsck.damaged);
	free(fsck.damaged_trees);
	*problems = fsck.problems;
	return ret;
}
