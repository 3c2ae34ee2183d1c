/*
 * cache.c - the job result cache: a job's input key (made by the runner)
 * recorded on its row, and a done job with the same key serving a new
 * one with its artifact trees.  Nothing is copied: the new job's
 * artifact rows name the same trees, so gc keeps them while either run
 * (or a tag on it) is there, and a removed run's key goes with its row.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store/internal.h"

void store_hash_hex(const void *data, size_t len, char out[2 * STORE_HASH_SIZE + 1])
{
	uint8_t hash[STORE_HASH_SIZE];

	hash_bytes(data, len, hash);
	hex_encode(hash, sizeof(hash), out);
}

/* A done job with key, newest first, not job itself. */
static const char cache_done_sql[] =
	"SELECT j.run, j.n, r.name FROM jobs j JOIN runs r ON r.id = j.run"
	" WHERE j.input_key = ?1 AND j.status = 'done' AND NOT (j.run = ?2 AND j.n = ?3)"
	" ORDER BY r.finished DESC, r.id DESC LIMIT 1";

/* A job with key that its live run has not ended yet. */
static const char cache_busy_sql[] =
	"SELECT r.name, j.n, coalesce(r.runner_pid, 0), coalesce(r.runner_started, 0)"
	" FROM jobs j JOIN runs r ON r.id = j.run"
	" WHERE j.input_key = ?1 AND NOT (j.run = ?2 AND j.n = ?3)"
	" AND j.status NOT IN ('done', 'failed', 'stopped', 'aborted')"
	" AND r.status NOT IN ('done', 'failed', 'stopped', 'aborted') LIMIT 1";

static void cache_bind(sqlite3_stmt *stmt, const char *key, int64_t run, int job)
{
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, run);
	sqlite3_bind_int(stmt, 3, job);
}

/* The served job's artifacts become job's, and it says where they came from. */
static int cache_take(struct store *store, int64_t run, int job, const char *key,
		      int64_t from_run, const struct store_cache_source *from, struct error *err)
{
	char cached_from[96];
	sqlite3_stmt *stmt;
	int rc;

	stmt = catalog_stmt(store, "INSERT OR REPLACE INTO artifacts(run, job, path, tree)"
			    " SELECT ?1, ?2, path, tree FROM artifacts WHERE run = ?3 AND job = ?4",
			    err);
	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, run);
	sqlite3_bind_int(stmt, 2, job);
	sqlite3_bind_int64(stmt, 3, from_run);
	sqlite3_bind_int(stmt, 4, from->job);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE)
		return catalog_error(store, rc, "record cached artifacts", err);
	snprintf(cached_from, sizeof(cached_from), "%s/%d", from->run, from->job);
	stmt = catalog_stmt(store, "UPDATE jobs SET input_key = ?1, cached_from = ?2"
			    " WHERE run = ?3 AND n = ?4", err);
	if (!stmt)
		return err->code;
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, cached_from, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, run);
	sqlite3_bind_int(stmt, 4, job);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "record cache source", err);
}

/* Looks for a done job (done), or a live one, with key; 1 when one was found. */
static int cache_find(struct store *store, int64_t run, int job, const char *key, bool done,
		      int64_t *from_run, struct store_cache_source *source, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, done ? cache_done_sql : cache_busy_sql, err);
	int rc;

	if (!stmt)
		return err->code;
	cache_bind(stmt, key, run, job);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW && done) {
		*from_run = sqlite3_column_int64(stmt, 0);
		source->job = sqlite3_column_int(stmt, 1);
		snprintf(source->run, sizeof(source->run), "%s", sqlite3_column_text(stmt, 2));
	} else if (rc == SQLITE_ROW) {
		snprintf(source->run, sizeof(source->run), "%s", sqlite3_column_text(stmt, 0));
		source->job = sqlite3_column_int(stmt, 1);
		source->runner_pid = (pid_t)sqlite3_column_int(stmt, 2);
		source->runner_started = sqlite3_column_int64(stmt, 3);
	}
	sqlite3_reset(stmt);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "look up the job cache", err);
}

int store_job_cache(struct store *store, int64_t run, int job, const char *key, bool lookup,
		    struct store_cache_source *source, struct error *err)
{
	struct error ignored = { 0 };
	sqlite3_stmt *stmt;
	int64_t from_run = 0;
	int answer = STORE_CACHE_MISS, rc, ret;

	memset(source, 0, sizeof(*source));
	/* A key taken without a lookup decides nothing: durable with the run's end. */
	if (!lookup && (ret = catalog_set_durable(store, false, err)) < 0)
		return ret;
	/* One write transaction: of two identical jobs asking at once, one runs. */
	ret = catalog_begin(store, err);
	if (ret < 0)
		goto out;
	if (lookup) {
		ret = cache_find(store, run, job, key, true, &from_run, source, err);
		if (ret == 1) {
			answer = STORE_CACHE_HIT;
			ret = cache_take(store, run, job, key, from_run, source, err);
		} else if (ret == 0) {
			ret = cache_find(store, run, job, key, false, &from_run, source, err);
			if (ret == 1) {
				answer = STORE_CACHE_BUSY;
				ret = 0;
			}
		}
	}
	if (ret == 0 && answer == STORE_CACHE_MISS) {
		stmt = catalog_stmt(store, "UPDATE jobs SET input_key = ?1 WHERE run = ?2 AND n = ?3",
				    err);
		if (!stmt) {
			ret = err->code;
		} else {
			cache_bind(stmt, key, run, job);
			rc = sqlite3_step(stmt);
			sqlite3_reset(stmt);
			if (rc != SQLITE_DONE)
				ret = catalog_error(store, rc, "record the input key", err);
		}
	}
	if (ret < 0)
		catalog_rollback(store);
	else
		ret = catalog_commit(store, err);
out:
	if (!lookup && catalog_set_durable(store, true, ret < 0 ? &ignored : err) < 0 && ret == 0)
		ret = err->code;
	return ret < 0 ? ret : answer;
}

/* Feeds the entries of a tree at or under one of the paths to a hasher. */
struct digest_walk {
	struct tree_hasher *hasher;
	char *const *paths;
	size_t count;
};

static bool path_is_under(const char *path, const char *top)
{
	size_t len = strlen(top);

	return !strncmp(path, top, len) && (!path[len] || path[len] == '/');
}

static int digest_entry(void *ctx, const struct store_entry *entry)
{
	struct digest_walk *walk = ctx;
	size_t i;

	for (i = 0; i < walk->count; i++) {
		if (path_is_under(entry->path, walk->paths[i])) {
			tree_hasher_add(walk->hasher, entry->path, entry->mode, entry->size,
					entry->target, entry->chunks, entry->chunk_count);
			return 0;
		}
	}
	return 0;
}

int store_tree_digest(struct store *store, int64_t tree, char *const *paths, size_t count,
		      uint8_t out[STORE_HASH_SIZE], struct error *err)
{
	struct digest_walk walk = { .paths = paths, .count = count };
	sqlite3_stmt *stmt;
	int rc, ret;

	if (count) {
		walk.hasher = tree_hasher_new();
		ret = tree_entries(store, tree, digest_entry, &walk, err);
		tree_hasher_finish(walk.hasher, out);
		return ret;
	}
	stmt = catalog_stmt(store, "SELECT hash FROM trees WHERE id = ?", err);
	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, tree);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW && sqlite3_column_bytes(stmt, 0) == STORE_HASH_SIZE)
		memcpy(out, sqlite3_column_blob(stmt, 0), STORE_HASH_SIZE);
	sqlite3_reset(stmt);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return error_set(err, -EIO, "%s/catalog.db: tree %lld is missing", store->home,
				 (long long)tree);
	return catalog_error(store, rc, "read tree", err);
}

static int artifact_digest_row(void *ctx, sqlite3_stmt *stmt)
{
	struct strbuf *out = ctx;
	char hex[2 * STORE_HASH_SIZE + 1];

	if (sqlite3_column_bytes(stmt, 2) != STORE_HASH_SIZE)
		return -EIO;
	hex_encode(sqlite3_column_blob(stmt, 2), STORE_HASH_SIZE, hex);
	/* The path's length first: a name may hold a space or a newline. */
	strbuf_addf(out, "%d %d:%s %s\n", sqlite3_column_int(stmt, 0),
		    sqlite3_column_bytes(stmt, 1), (const char *)sqlite3_column_text(stmt, 1), hex);
	return 0;
}

int store_run_artifact_digests(struct store *store, int64_t run, int job, struct strbuf *out,
			       struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store,
		"SELECT a.job, a.path, t.hash FROM artifacts a JOIN trees t ON t.id = a.tree"
		" WHERE a.run = ?1 AND (?2 < 0 OR a.job = ?2) ORDER BY a.job, a.path", err);
	int ret;

	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, run);
	sqlite3_bind_int(stmt, 2, job);
	ret = catalog_each(store, stmt, artifact_digest_row, out, "read artifact trees", err);
	if (ret == -EIO && !err->code)
		ret = error_set(err, -EIO, "%s/catalog.db: a tree of run %lld has a damaged hash",
				store->home, (long long)run);
	return ret;
}
