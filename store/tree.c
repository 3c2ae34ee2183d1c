/*
 * tree.c - trees: the canonical form that names them, and reading them
 * back (listing a run's artifacts, extracting a file's bytes).
 *
 * A tree's id is the SHA-256 of its entries in canonical order (parents
 * first, siblings by name bytes), each as "MODE SIZE PATH\0TARGET\0",
 * the chunk count (le32) and the chunk records.  Modification times are
 * left out on purpose: two folders with the same content are one tree.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/internal.h"

/* No object is larger than a chunk; a bigger record is corrupt. */
#define OBJECT_SIZE_LIMIT (64u * 1024 * 1024)

struct tree_hasher {
	EVP_MD_CTX *ctx;
};

struct tree_hasher *tree_hasher_new(void)
{
	struct tree_hasher *hasher = xcalloc(1, sizeof(*hasher));

	hasher->ctx = EVP_MD_CTX_new();
	if (!hasher->ctx || !EVP_DigestInit_ex(hasher->ctx, EVP_sha256(), NULL)) {
		fprintf(stderr, "dstack: openssl: cannot start SHA-256\n");
		abort();
	}
	return hasher;
}

void tree_hasher_add(struct tree_hasher *hasher, const char *path, mode_t mode,
		     uint64_t size, const char *target, const uint8_t *chunks,
		     size_t chunk_count)
{
	char head[64];
	uint8_t count[4];
	int n = snprintf(head, sizeof(head), "%o %llu ", (unsigned)mode,
			 (unsigned long long)size);

	EVP_DigestUpdate(hasher->ctx, head, (size_t)n);
	EVP_DigestUpdate(hasher->ctx, path, strlen(path) + 1);
	EVP_DigestUpdate(hasher->ctx, target ? target : "", strlen(target ? target : "") + 1);
	count[0] = (uint8_t)chunk_count;
	count[1] = (uint8_t)(chunk_count >> 8);
	count[2] = (uint8_t)(chunk_count >> 16);
	count[3] = (uint8_t)(chunk_count >> 24);
	EVP_DigestUpdate(hasher->ctx, count, sizeof(count));
	if (chunk_count)
		EVP_DigestUpdate(hasher->ctx, chunks, chunk_count * STORE_CHUNK_RECORD_SIZE);
}

void tree_hasher_finish(struct tree_hasher *hasher, uint8_t out[STORE_HASH_SIZE])
{
	EVP_DigestFinal_ex(hasher->ctx, out, NULL);
	EVP_MD_CTX_free(hasher->ctx);
	free(hasher);
}

int tree_path_compare(const char *a, const char *b)
{
	const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;

	while (*x && *x == *y) {
		x++;
		y++;
	}
	if (*x == *y)
		return 0;
	if (!*x || !*y)
		return *x ? 1 : -1;
	if (*x == '/' || *y == '/')
		return *x == '/' ? -1 : 1;
	return *x < *y ? -1 : 1;
}

int tree_record(struct store *store, tree_entry_at_fn *at, void *ctx, size_t count,
		int64_t *tree, struct error *err)
{
	struct tree_hasher *hasher = tree_hasher_new();
	struct strbuf scratch = STRBUF_INIT;
	struct store_entry entry;
	uint8_t hash[STORE_HASH_SIZE];
	uint64_t files = 0, bytes = 0;
	sqlite3_stmt *stmt;
	size_t i;
	int rc, ret = 0;

	for (i = 0; i < count; i++) {
		memset(&entry, 0, sizeof(entry));
		at(ctx, i, &entry, &scratch);
		tree_hasher_add(hasher, entry.path, entry.mode, entry.size, entry.target,
				entry.chunks, entry.chunk_count);
		if (S_ISREG(entry.mode)) {
			files++;
			bytes += entry.size;
		}
	}
	tree_hasher_finish(hasher, hash);

	stmt = catalog_stmt(store, "SELECT id FROM trees WHERE hash = ?", err);
	if (!stmt)
		goto fail;
	sqlite3_bind_blob(stmt, 1, hash, STORE_HASH_SIZE, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		*tree = sqlite3_column_int64(stmt, 0);
	sqlite3_reset(stmt);
	if (rc == SQLITE_ROW)
		goto out;
	if (rc != SQLITE_DONE) {
		ret = catalog_error(store, rc, "look up tree", err);
		goto out;
	}
	stmt = catalog_stmt(store, "INSERT INTO trees(hash, files, bytes) VALUES (?, ?, ?)", err);
	if (!stmt)
		goto fail;
	sqlite3_bind_blob(stmt, 1, hash, STORE_HASH_SIZE, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, (int64_t)files);
	sqlite3_bind_int64(stmt, 3, (int64_t)bytes);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE) {
		ret = catalog_error(store, rc, "record tree", err);
		goto out;
	}
	*tree = sqlite3_last_insert_rowid(store->db);
	for (i = 0; i < count; i++) {
		memset(&entry, 0, sizeof(entry));
		at(ctx, i, &entry, &scratch);
		stmt = catalog_stmt(store,
				    "INSERT INTO tree_entries(tree, seq, path, mode, size, target, chunks)"
				    " VALUES (?, ?, ?, ?, ?, ?, ?)", err);
		if (!stmt)
			goto fail;
		sqlite3_bind_int64(stmt, 1, *tree);
		sqlite3_bind_int64(stmt, 2, (int64_t)i);
		sqlite3_bind_text(stmt, 3, entry.path, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 4, entry.mode);
		sqlite3_bind_int64(stmt, 5, (int64_t)entry.size);
		if (entry.target)
			sqlite3_bind_text(stmt, 6, entry.target, -1, SQLITE_STATIC);
		/* A regular file has a blob, empty when it has no chunks. */
		if (S_ISREG(entry.mode))
			sqlite3_bind_blob(stmt, 7, entry.chunks ? (const void *)entry.chunks : "",
					  (int)(entry.chunk_count * STORE_CHUNK_RECORD_SIZE),
					  SQLITE_TRANSIENT);
		rc = sqlite3_step(stmt);
		sqlite3_reset(stmt);
		if (rc != SQLITE_DONE) {
			ret = catalog_error(store, rc, "record tree entry", err);
			goto out;
		}
	}
	goto out;
fail:
	ret = err->code;
out:
	strbuf_release(&scratch);
	return ret;
}

struct artifact_row {
	int job;
	char *path;
	int64_t tree;
};

/* Entries are read this many at a time; see tree_entries_walk. */
#define ENTRY_BATCH 256

struct entry_copy {
	int64_t seq;
	char *path, *target;
	mode_t mode;
	uint64_t size;
	uint8_t *chunks;
	size_t chunk_bytes;
};

static void entry_copy_release(struct entry_copy *copy)
{
	free(copy->path);
	free(copy->target);
	free(copy->chunks);
}

/*
 * Checks that the tree's entries hash to its name.  Chunks verify file
 * bytes; this verifies names, modes, sizes, links and which chunks a file
 * has, so a damaged catalog row fails the read instead of writing a file
 * under another name or mode, or leaving one out.
 */
static int tree_verify(struct store *store, int64_t tree, struct error *err)
{
	struct tree_hasher *hasher;
	uint8_t expected[STORE_HASH_SIZE], hash[STORE_HASH_SIZE];
	sqlite3_stmt *stmt;
	char hex[65];
	int64_t seq;
	bool found;
	int rc;

	stmt = catalog_stmt(store, "SELECT hash FROM trees WHERE id = ?", err);
	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, tree);
	rc = sqlite3_step(stmt);
	found = rc == SQLITE_ROW && sqlite3_column_bytes(stmt, 0) == STORE_HASH_SIZE;
	if (found)
		memcpy(expected, sqlite3_column_blob(stmt, 0), STORE_HASH_SIZE);
	sqlite3_reset(stmt);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return catalog_error(store, rc, "read tree", err);
	if (!found)
		return error_set(err, -EIO, "tree %lld: missing from the catalog or malformed",
				 (long long)tree);
	hex_encode(expected, STORE_HASH_SIZE, hex);

	/* Entries are numbered from 0 up, as ingest writes them and the walk
	 * pages through them: a number out of line is damage too. */
	stmt = catalog_stmt(store, "SELECT seq, path, mode, size, target, chunks FROM tree_entries"
			    " WHERE tree = ? ORDER BY seq", err);
	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, tree);
	hasher = tree_hasher_new();
	for (seq = 0; (rc = sqlite3_step(stmt)) == SQLITE_ROW; seq++) {
		const char *path = (const char *)sqlite3_column_text(stmt, 1);
		size_t bytes = (size_t)sqlite3_column_bytes(stmt, 5);

		if (sqlite3_column_type(stmt, 0) != SQLITE_INTEGER ||
		    sqlite3_column_int64(stmt, 0) != seq || !path || bytes % STORE_CHUNK_RECORD_SIZE)
			break;
		tree_hasher_add(hasher, path, (mode_t)sqlite3_column_int64(stmt, 2),
				(uint64_t)sqlite3_column_int64(stmt, 3),
				(const char *)sqlite3_column_text(stmt, 4),
				sqlite3_column_blob(stmt, 5), bytes / STORE_CHUNK_RECORD_SIZE);
	}
	sqlite3_reset(stmt);
	tree_hasher_finish(hasher, hash);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return catalog_error(store, rc, "read tree", err);
	if (rc == SQLITE_ROW || memcmp(hash, expected, STORE_HASH_SIZE))
		return error_set(err, -EIO, "tree %s: entries hash to something else", hex);
	return 0;
}

/*
 * Calls fn for each entry of the artifact's tree, once the tree is
 * verified.  Rows are copied out a batch at a time and fn runs with no
 * statement open: an open statement would pin this connection to an old
 * snapshot of the catalog, and an object that gc moved meanwhile could
 * not be found at its new place.
 */
static int tree_entries_walk(struct store *store, const struct artifact_row *artifact,
			     store_entry_fn *fn, void *ctx, struct error *err)
{
	struct entry_copy batch[ENTRY_BATCH];
	struct store_entry entry;
	int64_t next = 0;
	size_t count, i;
	int rc, ret;

	ret = tree_verify(store, artifact->tree, err);
	if (ret < 0)
		return ret;
	do {
		sqlite3_stmt *stmt = catalog_stmt(store,
			"SELECT seq, path, mode, size, target, chunks FROM tree_entries"
			" WHERE tree = ? AND seq >= ? ORDER BY seq LIMIT 256", err);

		if (!stmt)
			return err->code;
		sqlite3_bind_int64(stmt, 1, artifact->tree);
		sqlite3_bind_int64(stmt, 2, next);
		count = 0;
		while (count < ENTRY_BATCH && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
			struct entry_copy *copy = &batch[count++];
			const char *target = (const char *)sqlite3_column_text(stmt, 4);
			size_t bytes = (size_t)sqlite3_column_bytes(stmt, 5);

			copy->seq = sqlite3_column_int64(stmt, 0);
			copy->path = xstrdup((const char *)sqlite3_column_text(stmt, 1));
			copy->mode = (mode_t)sqlite3_column_int64(stmt, 2);
			copy->size = (uint64_t)sqlite3_column_int64(stmt, 3);
			copy->target = target ? xstrdup(target) : NULL;
			copy->chunk_bytes = bytes;
			copy->chunks = xmalloc(bytes ? bytes : 1);
			if (bytes)
				memcpy(copy->chunks, sqlite3_column_blob(stmt, 5), bytes);
		}
		if (count < ENTRY_BATCH && rc != SQLITE_DONE)
			ret = catalog_error(store, rc, "read tree", err);
		sqlite3_reset(stmt);
		for (i = 0; i < count; i++) {
			if (!ret) {
				memset(&entry, 0, sizeof(entry));
				entry.job = artifact->job;
				entry.artifact = artifact->path;
				entry.path = batch[i].path;
				entry.mode = batch[i].mode;
				entry.size = batch[i].size;
				entry.target = batch[i].target;
				entry.chunks = batch[i].chunks;
				entry.chunk_count = batch[i].chunk_bytes / STORE_CHUNK_RECORD_SIZE;
				ret = fn(ctx, &entry);
			}
			next = batch[i].seq + 1;
			entry_copy_release(&batch[i]);
		}
	} while (!ret && count == ENTRY_BATCH);
	return ret;
}

/*
 * The index (run, job, path) finds a run's artifacts; their rows are read
 * from the table and must say the same.  SQLite checks neither against
 * the other on a read, so a damaged index entry would otherwise name an
 * artifact wrongly or point at another run's.
 */
static const char run_artifacts_sql[] =
	"SELECT i.job, i.path, a.run, a.job, a.path, a.tree"
	" FROM (SELECT rowid AS id, job, path FROM artifacts WHERE run = ?) i"
	" LEFT JOIN artifacts a ON a.rowid = i.id ORDER BY i.job, i.path";

static bool run_artifact_row_agrees(sqlite3_stmt *stmt, int64_t run)
{
	const char *indexed = (const char *)sqlite3_column_text(stmt, 1);
	const char *path = (const char *)sqlite3_column_text(stmt, 4);

	return indexed && path && !strcmp(indexed, path) &&
	       sqlite3_column_type(stmt, 2) == SQLITE_INTEGER &&
	       sqlite3_column_int64(stmt, 2) == run &&
	       sqlite3_column_int64(stmt, 0) == sqlite3_column_int64(stmt, 3);
}

int store_run_entries(struct store *store, int64_t run, store_entry_fn *fn,
		      void *ctx, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, run_artifacts_sql, err);
	struct artifact_row *rows = NULL;
	size_t count = 0, i;
	struct store_entry root;
	int rc, ret = 0;

	if (!stmt)
		return err->code;
	/* Collected first: fn may use the catalog, and rows are few. */
	sqlite3_bind_int64(stmt, 1, run);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (!run_artifact_row_agrees(stmt, run)) {
			ret = error_set(err, -EIO, "%s/catalog.db: artifacts of run %lld: table and index disagree",
					store->home, (long long)run);
			break;
		}
		rows = xrealloc(rows, (count + 1) * sizeof(*rows));
		rows[count].job = sqlite3_column_int(stmt, 3);
		rows[count].path = xstrdup((const char *)sqlite3_column_text(stmt, 4));
		rows[count].tree = sqlite3_column_int64(stmt, 5);
		count++;
	}
	sqlite3_reset(stmt);
	if (!ret && rc != SQLITE_DONE)
		ret = catalog_error(store, rc, "list artifacts", err);
	for (i = 0; i < count && !ret; i++) {
		memset(&root, 0, sizeof(root));
		root.job = rows[i].job;
		root.artifact = rows[i].path;
		root.path = "";
		root.mode = S_IFDIR | 0755;
		ret = fn(ctx, &root);
		if (!ret)
			ret = tree_entries_walk(store, &rows[i], fn, ctx, err);
	}
	for (i = 0; i < count; i++)
		free(rows[i].path);
	free(rows);
	return ret;
}

int tree_entries(struct store *store, int64_t tree, store_entry_fn *fn, void *ctx,
		 struct error *err)
{
	struct artifact_row row = { .job = -1, .path = "", .tree = tree };

	return tree_entries_walk(store, &row, fn, ctx, err);
}

int store_entry_extract(struct store *store, const struct store_entry *entry,
			int fd, store_progress_fn *progress, void *progress_ctx,
			struct error *err)
{
	uint8_t *buf = NULL;
	size_t cap = 0, i;
	uint64_t done = 0;
	int ret = 0;

	for (i = 0; i < entry->chunk_count; i++) {
		const uint8_t *record = entry->chunks + i * STORE_CHUNK_RECORD_SIZE;
		uint32_t size = le32_get(record + STORE_HASH_SIZE);

		if (size > OBJECT_SIZE_LIMIT) {
			ret = error_set(err, -EIO, "%s/%s: chunk %zu: impossible size %u",
					entry->artifact, entry->path, i, size);
			break;
		}
		if (size > cap) {
			free(buf);
			cap = size;
			buf = xmalloc(cap);
		}
		ret = object_read(store, record, buf, size, true, err);
		if (ret < 0)
			break;
		ret = fs_write_all(fd, buf, size);
		if (ret < 0) {
			error_errno(err, ret, "%s/%s", entry->artifact, entry->path);
			break;
		}
		done += size;
		if (progress)
			progress(progress_ctx, done, entry->size);
	}
	if (ret == 0 && done != entry->size)
		ret = error_set(err, -EIO, "%s/%s: chunks hold %llu bytes, entry says %llu",
				entry->artifact, entry->path, (unsigned long long)done,
				(unsigned long long)entry->size);
	free(buf);
	return ret;
}
