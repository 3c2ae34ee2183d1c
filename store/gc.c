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
	uint64_t live_bytes;
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

	stmt = catalog_stmt(store, "SELECT hash, pack, stored FROM objects", err);
	if (!stmt)
		return err->code;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const uint8_t *hash = sqlite3_column_blob(stmt, 0);
		struct gc_pack *pack = gc_pack_find(packs, pack_count,
						    sqlite3_column_int64(stmt, 1));
		uint64_t stored = (uint64_t)sqlite3_column_int64(stmt, 2);

		if (sqlite3_column_bytes(stmt, 0) == STORE_HASH_SIZE &&
		    hashset_contains(live, hash)) {
			if (pack) {
				pack->live_bytes += PACK_RECORD_HEADER + stored;
				pack->live_objects++;
			}
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
	sqlite3_stmt *stmt = catalog_stmt(store, "SELECT id, name, size FROM packs ORDER BY id", err);
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

struct moved_object {
	uint8_t hash[STORE_HASH_SIZE];
	uint64_t offset;
};

/* Copies the live objects of pack into a new pack and repoints them. */
static int gc_rewrite_pack(struct store *store, struct gc_pack *pack,
			   struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	struct pack_writer writer = { .fd = -1 };
	struct moved_object *moved = NULL;
	size_t moved_count = 0, i;
	uint8_t *frame = NULL;
	size_t frame_cap = 0;
	sqlite3_stmt *stmt;
	int64_t new_pack;
	int fd, rc, ret;

	pack_path(store, pack->name, &path);
	fd = open(path.buf, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = error_errno(err, -errno, "%s", path.buf);
		goto out;
	}
	ret = pack_writer_open(store, &writer, err);
	if (ret < 0)
		goto out;
	stmt = catalog_stmt(store, "SELECT hash, offset, stored, raw FROM objects WHERE pack = ? ORDER BY offset", err);
	if (!stmt) {
		ret = err->code;
		goto out;
	}
	sqlite3_bind_int64(stmt, 1, pack->id);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const uint8_t *hash = sqlite3_column_blob(stmt, 0);
		off_t offset = (off_t)sqlite3_column_int64(stmt, 1);
		uint32_t stored = (uint32_t)sqlite3_column_int64(stmt, 2);
		uint32_t raw = (uint32_t)sqlite3_column_int64(stmt, 3);

		if (stored > frame_cap) {
			free(frame);
			frame_cap = stored;
			frame = xmalloc(frame_cap);
		}
		ret = fs_pread_all(fd, frame, stored, offset);
		if (ret < 0) {
			error_errno(err, ret, "%s", path.buf);
			break;
		}
		moved = xrealloc(moved, (moved_count + 1) * sizeof(*moved));
		memcpy(moved[moved_count].hash, hash, STORE_HASH_SIZE);
		ret = pack_writer_append(&writer, hash, raw, frame, stored,
					 &moved[moved_count].offset, err);
		if (ret < 0)
			break;
		moved_count++;
	}
	sqlite3_reset(stmt);
	if (ret < 0)
		goto out;
	ret = pack_writer_commit(store, &writer, err);
	if (ret < 0)
		goto out;
	ret = catalog_begin(store, err);
	if (ret < 0)
		goto out;
	stmt = catalog_stmt(store, "INSERT INTO packs(name, size) VALUES (?, ?)", err);
	if (!stmt)
		goto fail;
	sqlite3_bind_text(stmt, 1, writer.name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, (int64_t)writer.size);
	if (sqlite3_step(stmt) != SQLITE_DONE)
		goto fail_db;
	sqlite3_reset(stmt);
	new_pack = sqlite3_last_insert_rowid(store->db);
	for (i = 0; i < moved_count; i++) {
		stmt = catalog_stmt(store, "UPDATE objects SET pack = ?, offset = ? WHERE hash = ?", err);
		if (!stmt)
			goto fail;
		sqlite3_bind_int64(stmt, 1, new_pack);
		sqlite3_bind_int64(stmt, 2, (int64_t)moved[i].offset);
		sqlite3_bind_blob(stmt, 3, moved[i].hash, STORE_HASH_SIZE, SQLITE_STATIC);
		if (sqlite3_step(stmt) != SQLITE_DONE)
			goto fail_db;
		sqlite3_reset(stmt);
	}
	ret = gc_delete_pack_row(store, pack->id, err);
	if (ret < 0)
		goto fail;
	ret = catalog_commit(store, err);
	if (ret < 0)
		goto out_new;
	/* Readers that still hold the old pack open keep reading it. */
	unlink(path.buf);
	goto out;
fail_db:
	catalog_error(store, sqlite3_errcode(store->db), "rewrite pack", err);
fail:
	ret = err->code;
	catalog_rollback(store);
out_new:
	pack_path(store, writer.name, &path);
	unlink(path.buf);
out:
	if (fd >= 0)
		close(fd);
	pack_writer_discard(&writer);
	free(frame);
	free(moved);
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
	ret = gc_exec(store, "DELETE FROM tree_entries WHERE tree NOT IN (SELECT tree FROM artifacts)", err);
	if (ret == 0)
		ret = gc_exec(store, "DELETE FROM trees WHERE id NOT IN (SELECT tree FROM artifacts)", err);
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
				stats->bytes_freed += pack->size - pack->live_bytes - PACK_MAGIC_SIZE;
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
