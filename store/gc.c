/*
 * gc.c - removing what no run or tag reaches.
 *
 * Under the exclusive gc lock (no ingest can be between finding an object
 * stored and naming it in a run): trees no artifact names go, objects no
 * tree names go, packs left with no live object are deleted, and packs
 * holding both live and dead objects are rewritten with the live ones.  A
 * reader that looked an object up in a pack gc just deleted looks it up
 * again (object_read), so readers never notice.
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

struct gc_pack {
	int64_t id;
	char name[33];
	uint64_t size;
	uint64_t live_bytes;	/* the size of the rewritten pack */
	uint64_t live_objects;
	uint64_t dead_objects;
};

static int gc_exec(struct store *store, const char *sql, struct error *err)
{
	int rc = sqlite3_exec(store->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : catalog_error(store, rc, "gc", err);
}

/* Adds every chunk of every remaining tree to live. */
static int gc_mark(struct store *store, struct hashset *live, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, "SELECT chunks FROM tree_entries WHERE chunks IS NOT NULL", err);
	int rc;

	if (!stmt)
		return err->code;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const uint8_t *chunks = sqlite3_column_blob(stmt, 0);
		size_t count = (size_t)sqlite3_column_bytes(stmt, 0) / STORE_CHUNK_RECORD_SIZE, i;

		for (i = 0; i < count; i++)
			hashset_add(live, chunks + i * STORE_CHUNK_RECORD_SIZE);
	}
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "mark", err);
}

static struct gc_pack *gc_pack_find(struct gc_pack *packs, size_t count, int64_t id)
{
	size_t lo = 0, hi = count;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (packs[mid].id == id)
			return &packs[mid];
		if (packs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Deletes dead object rows and tallies live bytes per pack. */
static int gc_sweep_objects(struct store *store, const struct hashset *live,
			    struct gc_pack *packs, size_t pack_count,
			    struct store_gc_stats *stats, struct error *err)
{
	sqlite3_stmt *stmt, *del;
	int rc;

	stmt = catalog_stmt(store, "SELECT hash, pack FROM objects", err);
	if (!stmt)
		return err->code;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const uint8_t *hash = sqlite3_column_blob(stmt, 0);
		struct gc_pack *pack = gc_pack_find(packs, pack_count,
						    sqlite3_column_int64(stmt, 1));

		if (sqlite3_column_bytes(stmt, 0) == STORE_HASH_SIZE &&
		    hashset_contains(live, hash)) {
			if (pack)
				pack->live_objects++;
			continue;
		}
		if (pack)
			pack->dead_objects++;
		del = catalog_stmt(store, "DELETE FROM objects WHERE hash = ?", err);
		if (!del)
			break;
		sqlite3_bind_blob(del, 1, hash, sqlite3_column_bytes(stmt, 0), SQLITE_TRANSIENT);
		if (sqlite3_step(del) != SQLITE_DONE) {
			catalog_error(store, sqlite3_errcode(store->db), "delete object", err);
			sqlite3_reset(del);
			break;
		}
		sqlite3_reset(del);
		stats->objects_removed++;
	}
	sqlite3_reset(stmt);
	if (err->code)
		return err->code;
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "sweep", err);
}

static int gc_load_packs(struct store *store, struct gc_pack **out, size_t *count,
			 struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, "SELECT id, name, size, unnamed FROM packs"
						 " ORDER BY id", err);
	struct gc_pack *packs = NULL;
	size_t n = 0;
	int rc;

	if (!stmt)
		return err->code;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		packs = xrealloc(packs, (n + 1) * sizeof(*packs));
		memset(&packs[n], 0, sizeof(*packs));
		packs[n].id = sqlite3_column_int64(stmt, 0);
		snprintf(packs[n].name, sizeof(packs[n].name), "%s",
			 sqlite3_column_text(stmt, 1));
		packs[n].size = (uint64_t)sqlite3_column_int64(stmt, 2);
		/* Members no row names are dead too: a rewrite drops them. */
		packs[n].dead_objects = (uint64_t)sqlite3_column_int64(stmt, 3);
		n++;
	}
	sqlite3_reset(stmt);
	*out = packs;
	*count = n;
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "read packs", err);
}

static int gc_delete_pack_row(struct store *store, int64_t id, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, "DELETE FROM packs WHERE id = ?", err);
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, id);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "delete pack", err);
}

/* An object's new place after a rewrite. */
struct moved_object {
	uint8_t hash[STORE_HASH_SIZE];
	uint64_t offset;
	uint32_t inner, block, stored;
};

struct live_row {
	uint64_t offset;
	uint32_t inner;
};

static int live_row_compare(const void *a, const void *b)
{
	const struct live_row *x = a, *y = b;

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return x->inner < y->inner ? -1 : x->inner > y->inner;
}

/* The (offset, inner) of every object row still naming pack. */
static int gc_live_rows(struct store *store, int64_t pack, struct live_row **out,
			size_t *count, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, "SELECT offset, inner FROM objects WHERE pack = ?", err);
	struct live_row *rows = NULL;
	size_t n = 0;
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, pack);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		rows = xrealloc(rows, (n + 1) * sizeof(*rows));
		rows[n].offset = (uint64_t)sqlite3_column_int64(stmt, 0);
		rows[n].inner = (uint32_t)sqlite3_column_int64(stmt, 1);
		n++;
	}
	sqlite3_reset(stmt);
	if (n)
		qsort(rows, n, sizeof(*rows), live_row_compare);
	*out = rows;
	*count = n;
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "read objects", err);
}

struct gc_rewrite {
	struct store *store;
	struct pack_writer writer;
	struct moved_object *moved;
	size_t moved_count;
	uint8_t *frame, *block, *new_block, *new_frame;
};

static void gc_moved_add(struct gc_rewrite *rw, const struct pack_member *m,
			 uint64_t offset, uint32_t block, uint32_t stored)
{
	struct moved_object *o;

	rw->moved = xrealloc(rw->moved, (rw->moved_count + 1) * sizeof(*rw->moved));
	o = &rw->moved[rw->moved_count++];
	memcpy(o->hash, m->hash, STORE_HASH_SIZE);
	o->offset = offset;
	o->inner = m->inner;
	o->block = block;
	o->stored = stored;
}

/*
 * Copies one record's live members: the record as it is when all of it
 * lives, else the live members recompressed into a smaller block.
 */
static int gc_rewrite_record(struct gc_rewrite *rw, int fd, const char *path,
			     struct pack_record *record, const struct live_row *live,
			     size_t live_count, struct error *err)
{
	struct pack_member *kept = xcalloc(record->count, sizeof(*kept));
	size_t count = 0, i, new_len = 0, stored;
	uint64_t offset;
	int ret;

	for (i = 0; i < record->count; i++) {
		struct live_row key = { record->offset, record->members[i].inner };

		if (live_count && bsearch(&key, live, live_count, sizeof(*live), live_row_compare))
			kept[count++] = record->members[i];
	}
	if (!count) {
		free(kept);
		return 0;
	}
	rw->frame = xrealloc(rw->frame, record->stored);
	ret = fs_pread_all(fd, rw->frame, record->stored, (off_t)record->offset);
	if (ret < 0) {
		error_errno(err, ret, "%s", path);
		goto out;
	}
	if (count == record->count) {
		ret = pack_writer_append(&rw->writer, kept, count, record->block, rw->frame,
					 record->stored, &offset, err);
		for (i = 0; ret == 0 && i < count; i++)
			gc_moved_add(rw, &kept[i], offset, record->block, record->stored);
		goto out;
	}
	rw->block = xrealloc(rw->block, record->block);
	if (frame_decompress(rw->frame, record->stored, rw->block, record->block) < 0) {
		ret = error_set(err, -EIO, "%s: corrupt block at offset %llu (run fsck)", path,
				(unsigned long long)record->offset);
		goto out;
	}
	rw->new_block = xrealloc(rw->new_block, record->block);
	for (i = 0; i < count; i++) {
		memcpy(rw->new_block + new_len, rw->block + kept[i].inner, kept[i].raw);
		kept[i].inner = (uint32_t)new_len;
		new_len += kept[i].raw;
	}
	rw->new_frame = xrealloc(rw->new_frame, frame_bound(new_len));
	ret = frame_compress(rw->new_block, new_len, rw->new_frame, frame_bound(new_len), &stored);
	if (ret < 0) {
		error_set(err, ret, "lz4: cannot compress a block");
		goto out;
	}
	ret = pack_writer_append(&rw->writer, kept, count, (uint32_t)new_len, rw->new_frame,
				 (uint32_t)stored, &offset, err);
	for (i = 0; ret == 0 && i < count; i++)
		gc_moved_add(rw, &kept[i], offset, (uint32_t)new_len, (uint32_t)stored);
out:
	free(kept);
	return ret;
}

static int gc_repoint(struct store *store, struct gc_rewrite *rw, int64_t old_pack,
		      struct error *err)
{
	sqlite3_stmt *stmt;
	int64_t new_pack;
	size_t i;
	int ret;

	ret = catalog_begin(store, err);
	if (ret < 0)
		return ret;
	stmt = catalog_stmt(store, "INSERT INTO packs(name, size) VALUES (?, ?)", err);
	if (!stmt)
		goto fail;
	sqlite3_bind_text(stmt, 1, rw->writer.name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, (int64_t)rw->writer.size);
	if (sqlite3_step(stmt) != SQLITE_DONE)
		goto fail_db;
	sqlite3_reset(stmt);
	new_pack = sqlite3_last_insert_rowid(store->db);
	for (i = 0; i < rw->moved_count; i++) {
		struct moved_object *o = &rw->moved[i];

		stmt = catalog_stmt(store, "UPDATE objects SET pack = ?, offset = ?, inner = ?,"
				    " block = ?, stored = ? WHERE hash = ? AND pack = ?", err);
		if (!stmt)
			goto fail;
		sqlite3_bind_int64(stmt, 1, new_pack);
		sqlite3_bind_int64(stmt, 2, (int64_t)o->offset);
		sqlite3_bind_int64(stmt, 3, o->inner);
		sqlite3_bind_int64(stmt, 4, o->block);
		sqlite3_bind_int64(stmt, 5, o->stored);
		sqlite3_bind_blob(stmt, 6, o->hash, STORE_HASH_SIZE, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 7, old_pack);
		if (sqlite3_step(stmt) != SQLITE_DONE)
			goto fail_db;
		sqlite3_reset(stmt);
	}
	ret = gc_delete_pack_row(store, old_pack, err);
	if (ret < 0)
		goto fail;
	return catalog_commit(store, err);
fail_db:
	catalog_error(store, sqlite3_errcode(store->db), "rewrite pack", err);
	sqlite3_reset(stmt);
fail:
	catalog_rollback(store);
	return err->code;
}

/* Copies the live objects of pack into a new pack and repoints them. */
static int gc_rewrite_pack(struct store *store, struct gc_pack *pack,
			   struct error *err)
{
	struct gc_rewrite rw = { .store = store, .writer = { .fd = -1 } };
	struct pack_record record = { 0 };
	struct strbuf path = STRBUF_INIT;
	struct live_row *live = NULL;
	size_t live_count = 0;
	uint64_t pos = PACK_MAGIC_SIZE;
	struct stat st;
	int fd, ret;

	pack_path(store, pack->name, &path);
	fd = open(path.buf, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = error_errno(err, -errno, "%s", path.buf);
		goto out;
	}
	ret = gc_live_rows(store, pack->id, &live, &live_count, err);
	if (ret == 0)
		ret = pack_writer_open(store, &rw.writer, err);
	while (ret == 0 && (ret = pack_record_next(fd, (uint64_t)st.st_size, &pos, &record)) > 0)
		ret = gc_rewrite_record(&rw, fd, path.buf, &record, live, live_count, err);
	if (ret < 0) {
		if (!err->code)
			error_set(err, ret, "%s: malformed record at offset %llu (run fsck)",
				  path.buf, (unsigned long long)pos);
		goto out;
	}
	ret = pack_writer_commit(store, &rw.writer, err);
	if (ret < 0)
		goto out;
	ret = gc_repoint(store, &rw, pack->id, err);
	if (ret < 0) {
		struct strbuf fresh = STRBUF_INIT;

		pack_path(store, rw.writer.name, &fresh);
		unlink(fresh.buf);
		strbuf_release(&fresh);
		goto out;
	}
	pack->live_bytes = rw.writer.size;
	/* Readers that still hold the old pack open keep reading it. */
	unlink(path.buf);
out:
	if (fd >= 0)
		close(fd);
	pack_writer_discard(&rw.writer);
	free(record.members);
	free(live);
	free(rw.moved);
	free(rw.frame);
	free(rw.block);
	free(rw.new_block);
	free(rw.new_frame);
	strbuf_release(&path);
	return ret;
}

/* Pack files that no catalog row names: left by an ingest that died. */
static void gc_remove_orphan_packs(struct store *store, struct gc_pack *packs,
				   size_t count, struct store_gc_stats *stats)
{
	struct strbuf path = STRBUF_INIT;
	DIR *top = opendir(store->packs_dir), *sub;
	struct dirent *de, *pe;
	struct stat st;
	size_t i;

	if (!top)
		return;
	while ((de = readdir(top))) {
		if (de->d_name[0] == '.')
			continue;
		strbuf_reset(&path);
		strbuf_addf(&path, "%s/%s", store->packs_dir, de->d_name);
		sub = opendir(path.buf);
		if (!sub)
			continue;
		while ((pe = readdir(sub))) {
			bool known = false;

			if (pe->d_name[0] == '.')
				continue;
			for (i = 0; i < count && !known; i++)
				known = !strcmp(packs[i].name, pe->d_name);
			if (known)
				continue;
			strbuf_reset(&path);
			strbuf_addf(&path, "%s/%s/%s", store->packs_dir, de->d_name, pe->d_name);
			if (stat(path.buf, &st) == 0 && unlink(path.buf) == 0) {
				stats->packs_removed++;
				stats->bytes_freed += (uint64_t)st.st_size;
			}
		}
		closedir(sub);
	}
	closedir(top);
	strbuf_release(&path);
}

int store_gc(struct store *store, struct store_gc_stats *stats, struct error *err)
{
	struct hashset live = { 0 };
	struct strbuf path = STRBUF_INIT;
	struct gc_pack *packs = NULL;
	size_t pack_count = 0, i;
	int ret;

	memset(stats, 0, sizeof(*stats));
	ret = store_lock_exclusive(store, err);
	if (ret < 0)
		return ret;
	ret = catalog_begin(store, err);
	if (ret < 0)
		goto out;
	/* A tree lives while a run's artifact or a run's snapshot. */
	ret = gc_exec(store, "DELETE FROM tree_entries WHERE tree NOT IN (SELECT tree FROM artifacts"
			     " UNION SELECT snapshot FROM runs WHERE snapshot IS NOT NULL)", err);
	if (ret == 0)
		ret = gc_exec(store, "DELETE FROM trees WHERE id NOT IN (SELECT tree FROM artifacts"
				     " UNION SELECT snapshot FROM runs WHERE snapshot IS NOT NULL)", err);
	if (ret == 0)
		stats->trees_removed = (uint64_t)sqlite3_changes(store->db);
	/* The cache may name chunks we are about to delete. */
	if (ret == 0)
		ret = gc_exec(store, "DELETE FROM stat_cache", err);
	if (ret == 0)
		ret = gc_mark(store, &live, err);
	if (ret == 0)
		ret = gc_load_packs(store, &packs, &pack_count, err);
	if (ret == 0)
		ret = gc_sweep_objects(store, &live, packs, pack_count, stats, err);
	for (i = 0; ret == 0 && i < pack_count; i++)
		if (!packs[i].live_objects)
			ret = gc_delete_pack_row(store, packs[i].id, err);
	if (ret == 0)
		ret = catalog_commit(store, err);
	else
		catalog_rollback(store);
	if (ret < 0)
		goto out;
	for (i = 0; i < pack_count && ret == 0; i++) {
		struct gc_pack *pack = &packs[i];

		if (!pack->live_objects) {
			pack_path(store, pack->name, &path);
			if (unlink(path.buf) == 0 || errno == ENOENT) {
				stats->packs_removed++;
				stats->bytes_freed += pack->size;
			}
		} else if (pack->dead_objects) {
			ret = gc_rewrite_pack(store, pack, err);
			if (ret == 0) {
				stats->packs_rewritten++;
				stats->bytes_freed += pack->size - pack->live_bytes;
			}
		}
	}
	if (ret == 0) {
		free(packs);
		packs = NULL;
		ret = gc_load_packs(store, &packs, &pack_count, err);
	}
	if (ret == 0)
		gc_remove_orphan_packs(store, packs, pack_count, stats);
out:
	store_unlock(store);
	hashset_release(&live);
	free(packs);
	strbuf_release(&path);
	return ret;
}
