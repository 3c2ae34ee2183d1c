/*
 * catalog.c - the SQLite catalog: schema and its migrations, the prepared
 * statement cache, transactions, and the run and tag records.
 *
 * WAL mode lets one writer and many reading processes work at once;
 * busy_timeout makes a second writer wait rather than fail.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "store/internal.h"

/* Each entry moves the schema from version i to i + 1; never edit one. */
static const char *const catalog_migrations[] = {
	/* AUTOINCREMENT: a pack or run id is never reused, so a cache keyed
	 * by pack id, or a run name ending in its id, cannot mean two things. */
	"CREATE TABLE packs("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  name TEXT NOT NULL UNIQUE,"
	"  size INTEGER NOT NULL);"
	"CREATE TABLE objects("
	"  hash BLOB PRIMARY KEY,"
	"  pack INTEGER NOT NULL REFERENCES packs(id),"
	"  offset INTEGER NOT NULL,"
	"  stored INTEGER NOT NULL,"
	"  raw INTEGER NOT NULL,"
	"  inner INTEGER NOT NULL,"
	"  block INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX objects_by_pack ON objects(pack);"
	"CREATE TABLE trees("
	"  id INTEGER PRIMARY KEY,"
	"  hash BLOB NOT NULL UNIQUE,"
	"  files INTEGER NOT NULL,"
	"  bytes INTEGER NOT NULL);"
	"CREATE TABLE tree_entries("
	"  tree INTEGER NOT NULL,"
	"  seq INTEGER NOT NULL,"
	"  path TEXT NOT NULL,"
	"  mode INTEGER NOT NULL,"
	"  size INTEGER NOT NULL,"
	"  target TEXT,"
	"  chunks BLOB,"
	"  PRIMARY KEY(tree, seq)) WITHOUT ROWID;"
	"CREATE TABLE runs("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  name TEXT NOT NULL UNIQUE,"
	"  workflow TEXT,"
	"  provider TEXT,"
	"  args TEXT NOT NULL DEFAULT '',"
	"  status TEXT NOT NULL,"
	"  submitted INTEGER NOT NULL,"
	"  started INTEGER,"
	"  finished INTEGER,"
	"  repo TEXT,"
	"  commit_hash TEXT,"
	"  exit_code INTEGER);"
	"CREATE TABLE jobs("
	"  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	"  n INTEGER NOT NULL,"
	"  status TEXT NOT NULL,"
	"  spec TEXT,"
	"  exit_code INTEGER,"
	"  PRIMARY KEY(run, n));"
	"CREATE TABLE artifacts("
	"  run INTEGER NOT NULL,"
	"  job INTEGER NOT NULL,"
	"  path TEXT NOT NULL,"
	"  tree INTEGER NOT NULL REFERENCES trees(id),"
	"  PRIMARY KEY(run, job, path),"
	"  FOREIGN KEY(run, job) REFERENCES jobs(run, n) ON DELETE CASCADE);"
	"CREATE INDEX artifacts_by_tree ON artifacts(tree);"
	"CREATE TABLE logs("
	"  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	"  seq INTEGER NOT NULL,"
	"  job INTEGER NOT NULL,"
	"  time INTEGER NOT NULL,"
	"  data BLOB NOT NULL,"
	"  PRIMARY KEY(run, seq));"
	"CREATE TABLE tags("
	"  name TEXT PRIMARY KEY,"
	"  run INTEGER NOT NULL REFERENCES runs(id),"
	"  created INTEGER NOT NULL);"
	"CREATE INDEX tags_by_run ON tags(run);"
	"CREATE TABLE stat_cache("
	"  path TEXT PRIMARY KEY,"
	"  dev INTEGER NOT NULL,"
	"  ino INTEGER NOT NULL,"
	"  size INTEGER NOT NULL,"
	"  mtime INTEGER NOT NULL,"
	"  ctime INTEGER NOT NULL,"
	"  chunks BLOB) WITHOUT ROWID;",
	/* 2: which process runs a run, so stop can reach it and a run whose
	 * runner died is known (pid plus start time: pids are reused). */
	"ALTER TABLE runs ADD COLUMN runner_pid INTEGER;"
	"ALTER TABLE runs ADD COLUMN runner_started INTEGER;",
	/* 3: the image a job named; the process group of a live job, so a
	 * restarted runner can end what a dead one left; and what live jobs
	 * hold of a backend, counted by every runner sharing the store. */
	"ALTER TABLE jobs ADD COLUMN image TEXT;"
	"ALTER TABLE jobs ADD COLUMN pid INTEGER;"
	"ALTER TABLE jobs ADD COLUMN pid_started INTEGER;"
	"CREATE TABLE claims("
	"  run INTEGER NOT NULL,"
	"  job INTEGER NOT NULL,"
	"  backend TEXT NOT NULL,"
	"  cpu INTEGER NOT NULL,"
	"  memory INTEGER NOT NULL,"
	"  gpus INTEGER NOT NULL,"
	"  PRIMARY KEY(run, job),"
	"  FOREIGN KEY(run, job) REFERENCES jobs(run, n) ON DELETE CASCADE);",
	/* 4: `dstack stop` asks through the catalog: a daemon runs many runs,
	 * so a signal to its process cannot say which one. */
	"ALTER TABLE runs ADD COLUMN stop_request INTEGER;",
	/* 5: the daemons serving the tree, so `dstack run` hands runs to them
	 * and jobs find their deps' artifacts in a mounted tree. */
	"CREATE TABLE daemons("
	"  repo TEXT PRIMARY KEY,"
	"  mountpoint TEXT NOT NULL,"
	"  pid INTEGER NOT NULL,"
	"  started INTEGER NOT NULL);",
	/* 6: where a live job's folders are on the host (artifacts with
	 * mount: true), so the tree shows them while it runs. */
	"CREATE TABLE live_artifacts("
	"  run INTEGER NOT NULL,"
	"  job INTEGER NOT NULL,"
	"  path TEXT NOT NULL,"
	"  dir TEXT NOT NULL,"
	"  PRIMARY KEY(run, job, path),"
	"  FOREIGN KEY(run, job) REFERENCES jobs(run, n) ON DELETE CASCADE);",
	/* 7: which of a job's streams a log piece came from (the fd it was
	 * written to), and why a run or a job failed, in one line. */
	"ALTER TABLE logs ADD COLUMN fd INTEGER NOT NULL DEFAULT 1;"
	"ALTER TABLE runs ADD COLUMN reason TEXT;"
	"ALTER TABLE jobs ADD COLUMN reason TEXT;",
	/* 8: the repository as the run saw it, a tree of the store (so `gc`
	 * keeps it and a rerun has it), and its branch. */
	"ALTER TABLE runs ADD COLUMN snapshot INTEGER REFERENCES trees(id);"
	"ALTER TABLE runs ADD COLUMN branch TEXT;",
	/* 9: the submodules a snapshot left out, "PATH COMMIT" lines. */
	"ALTER TABLE runs ADD COLUMN submodules TEXT;",
	/* 10: a provider from another repository: its URL and commit. */
	"ALTER TABLE runs ADD COLUMN provider_repo TEXT;"
	"ALTER TABLE runs ADD COLUMN provider_commit TEXT;",
	/* 11: how many members of a pack no object row names (a staged
	 * pack's duplicates), so gc rewrites the pack without them. */
	"ALTER TABLE packs ADD COLUMN unnamed INTEGER NOT NULL DEFAULT 0;",
	/* 12: the job result cache: a job's input key, and the job ("RUN/N")
	 * whose artifacts it was given instead of running. */
	"ALTER TABLE jobs ADD COLUMN input_key TEXT;"
	"ALTER TABLE jobs ADD COLUMN cached_from TEXT;"
	"CREATE INDEX jobs_by_input_key ON jobs(input_key) WHERE input_key IS NOT NULL;",
};

#define CATALOG_VERSION ((int)(sizeof(catalog_migrations) / sizeof(catalog_migrations[0])))

int catalog_error(struct store *store, int rc, const char *what,
		  struct error *err)
{
	int code;

	switch (rc & 0xff) {
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		code = -EIO;
		break;
	case SQLITE_FULL:
		code = -ENOSPC;
		break;
	case SQLITE_READONLY:
		code = -EROFS;
		break;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		code = -EBUSY;
		break;
	case SQLITE_CONSTRAINT:
		code = -EEXIST;
		break;
	case SQLITE_CANTOPEN:
	case SQLITE_PERM:
		code = -EACCES;
		break;
	case SQLITE_NOMEM:
		code = -ENOMEM;
		break;
	default:
		code = -EIO;
	}
	return error_set(err, code, "%s/catalog.db: %s: %s", store->home, what,
			 store->db ? sqlite3_errmsg(store->db) : sqlite3_errstr(rc));
}

static int catalog_exec(struct store *store, const char *sql, struct error *err)
{
	int rc = sqlite3_exec(store->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		return catalog_error(store, rc, "exec", err);
	return 0;
}

/*
 * Runs sql at open time, when a second process may be creating the same
 * catalog: switching a new file to WAL takes an exclusive lock for which
 * SQLite does not call the busy handler, so wait here instead.
 */
static int catalog_exec_at_open(struct store *store, const char *sql,
				int (*row)(void *, int, char **, char **),
				void *row_ctx, struct error *err)
{
	int64_t give_up = time_now_ns() + 30ll * 1000000000;
	int rc;

	while ((rc = sqlite3_exec(store->db, sql, row, row_ctx, NULL)) == SQLITE_BUSY &&
	       time_now_ns() < give_up)
		usleep(10000);
	if (rc != SQLITE_OK)
		return catalog_error(store, rc, "open", err);
	return 0;
}

static int catalog_user_version_cb(void *arg, int columns, char **values,
				   char **names)
{
	(void)names;
	if (columns == 1 && values[0])
		*(int *)arg = atoi(values[0]);
	return 0;
}

static int catalog_user_version(struct store *store, int *version,
				struct error *err)
{
	return catalog_exec_at_open(store, "PRAGMA user_version",
				    catalog_user_version_cb, version, err);
}

static int catalog_migrate(struct store *store, struct error *err)
{
	struct strbuf sql = STRBUF_INIT;
	int version, ret;

	ret = catalog_user_version(store, &version, err);
	if (ret < 0)
		return ret;
	if (version > CATALOG_VERSION)
		return error_set(err, -EPROTO,
				 "%s/catalog.db: schema version %d is newer than this dstack knows (%d)",
				 store->home, version, CATALOG_VERSION);
	if (version == CATALOG_VERSION)
		return 0;
	if (!store->writable)
		return error_set(err, -EROFS,
				 "%s/catalog.db: schema version %d needs an upgrade, store is read-only",
				 store->home, version);
	ret = catalog_exec_at_open(store, "BEGIN IMMEDIATE", NULL, NULL, err);
	if (ret < 0)
		return ret;
	/* Another process may have migrated while we waited for the lock. */
	ret = catalog_user_version(store, &version, err);
	for (; ret == 0 && version < CATALOG_VERSION; version++) {
		strbuf_reset(&sql);
		strbuf_addf(&sql, "%s; PRAGMA user_version = %d",
			    catalog_migrations[version], version + 1);
		ret = catalog_exec(store, sql.buf, err);
	}
	strbuf_release(&sql);
	if (ret < 0) {
		catalog_rollback(store);
		return ret;
	}
	return catalog_exec(store, "COMMIT", err);
}

/* Percent-encodes what a file: URI cannot hold as it is. */
static void uri_add_path(struct strbuf *uri, const char *path)
{
	const char *p;

	for (p = path; *p; p++) {
		if (*p == '%' || *p == '?' || *p == '#' || (unsigned char)*p < 0x20)
			strbuf_addf(uri, "%%%02x", (unsigned char)*p);
		else
			strbuf_add(uri, p, 1);
	}
}

/*
 * A WAL database opens read-only only where its -shm file exists or can
 * be made.  On read-only media, after a clean close, neither holds, and
 * nobody can be writing: open it as immutable.  A -wal file left there
 * holds commits that only a writable mount can bring in.
 */
static int catalog_read_only_uri(struct store *store, struct strbuf *uri,
				 struct error *err)
{
	struct strbuf wal = STRBUF_INIT;
	struct statvfs vfs;
	struct stat st;
	bool read_only_media, has_wal;

	strbuf_addf(&wal, "%s/catalog.db-wal", store->home);
	has_wal = stat(wal.buf, &st) == 0 && st.st_size > 0;
	strbuf_release(&wal);
	read_only_media = statvfs(store->home, &vfs) == 0 && (vfs.f_flag & ST_RDONLY);
	if (read_only_media && has_wal)
		return error_set(err, -EROFS,
				 "%s/catalog.db-wal: recent commits wait in the log; mount %s read-write once to read them",
				 store->home, store->home);
	strbuf_addstr(uri, "file:");
	uri_add_path(uri, store->home);
	strbuf_addstr(uri, "/catalog.db");
	if (read_only_media)
		strbuf_addstr(uri, "?immutable=1");
	return 0;
}

int catalog_open(struct store *store, struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	int flags = SQLITE_OPEN_NOMUTEX;
	int rc, ret;

	flags |= store->writable ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
				 : SQLITE_OPEN_READONLY | SQLITE_OPEN_URI;
	if (store->writable) {
		strbuf_addf(&path, "%s/catalog.db", store->home);
	} else {
		ret = catalog_read_only_uri(store, &path, err);
		if (ret < 0) {
			strbuf_release(&path);
			return ret;
		}
	}
	rc = sqlite3_open_v2(path.buf, &store->db, flags, NULL);
	strbuf_release(&path);
	if (rc != SQLITE_OK)
		return catalog_error(store, rc, "open", err);
	sqlite3_busy_timeout(store->db, 30000);
	sqlite3_extended_result_codes(store->db, 0);
	/*
	 * The log file stays when the last connection closes, checkpointed
	 * and (with a journal_size_limit) emptied, so an immutable reader
	 * misses nothing: the next command need not make it again and sync
	 * the directory it is in.
	 */
	if (store->writable)
		sqlite3_file_control(store->db, "main", SQLITE_FCNTL_PERSIST_WAL, &(int){ 1 });
	/*
	 * synchronous=FULL: a commit is on disk when COMMIT returns, as git's
	 * refs are; WAL keeps that to one fsync of the log per transaction.
	 */
	ret = catalog_exec_at_open(store, store->writable
				   ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
				     " PRAGMA journal_size_limit=4194304; PRAGMA foreign_keys=ON"
				   : "PRAGMA foreign_keys=ON", NULL, NULL, err);
	if (ret < 0)
		return ret;
	ret = catalog_migrate(store, err);
	if (ret < 0)
		return ret;
	/* A quick check catches a truncated or foreign file at open. */
	return catalog_exec(store, "SELECT count(*) FROM runs", err);
}

sqlite3_stmt *catalog_stmt(struct store *store, const char *sql,
			   struct error *err)
{
	sqlite3_stmt *stmt;
	int i, rc;

	for (i = 0; i < store->stmt_count; i++) {
		if (store->stmts[i].sql == sql) {
			stmt = store->stmts[i].stmt;
			sqlite3_reset(stmt);
			sqlite3_clear_bindings(stmt);
			return stmt;
		}
	}
	rc = sqlite3_prepare_v3(store->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
				&stmt, NULL);
	if (rc != SQLITE_OK) {
		catalog_error(store, rc, "prepare", err);
		return NULL;
	}
	/* Every statement is kept, so every one is finalized at close. */
	if (store->stmt_count == store->stmt_alloc) {
		store->stmt_alloc = store->stmt_alloc ? 2 * store->stmt_alloc : 32;
		store->stmts = xrealloc(store->stmts, (size_t)store->stmt_alloc * sizeof(*store->stmts));
	}
	store->stmts[store->stmt_count].sql = sql;
	store->stmts[store->stmt_count].stmt = stmt;
	store->stmt_count++;
	return stmt;
}

void catalog_finalize_all(struct store *store)
{
	int i;

	for (i = 0; i < store->stmt_count; i++)
		sqlite3_finalize(store->stmts[i].stmt);
	free(store->stmts);
	store->stmts = NULL;
	store->stmt_count = store->stmt_alloc = 0;
}

int catalog_set_durable(struct store *store, bool durable, struct error *err)
{
	int ret;

	if (store->lazy != durable)
		return 0;
	ret = catalog_exec(store, durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
			   err);
	if (ret == 0)
		store->lazy = !durable;
	return ret;
}

int catalog_begin(struct store *store, struct error *err)
{
	return catalog_exec(store, "BEGIN IMMEDIATE", err);
}

int catalog_commit(struct store *store, struct error *err)
{
	int ret = catalog_exec(store, "COMMIT", err);

	if (ret < 0)
		catalog_rollback(store);
	return ret;
}

void catalog_rollback(struct store *store)
{
	if (!sqlite3_get_autocommit(store->db))
		sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Tag names travel in paths (/dstack/tags/T) and shell words. */
int store_tag_name_check(const char *tag, struct error *err)
{
	const char *p;

	if (!*tag || *tag == '-' || *tag == '.' || strlen(tag) > 100)
		goto bad;
	for (p = tag; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
		      *p == '.'))
			goto bad;
	}
	return 0;
bad:
	return error_set(err, -EINVAL,
			 "invalid tag name '%s' (letters, digits, '.', '_', '-'; not starting with '.' or '-')",
			 tag);
}

void run_from_row(sqlite3_stmt *stmt, struct store_run *run)
{
	memset(run, 0, sizeof(*run));
	run->id = sqlite3_column_int64(stmt, 0);
	snprintf(run->name, sizeof(run->name), "%s", sqlite3_column_text(stmt, 1));
	snprintf(run->workflow, sizeof(run->workflow), "%s",
		 sqlite3_column_text(stmt, 2));
	snprintf(run->status, sizeof(run->status), "%s", sqlite3_column_text(stmt, 3));
	snprintf(run->tag, sizeof(run->tag), "%s", sqlite3_column_text(stmt, 4));
	run->submitted = sqlite3_column_int64(stmt, 5);
	run->finished = sqlite3_column_int64(stmt, 6);
	snprintf(run->artifacts, sizeof(run->artifacts), "%s",
		 sqlite3_column_text(stmt, 7) ? (const char *)sqlite3_column_text(stmt, 7) : "");
	snprintf(run->commit, sizeof(run->commit), "%s", sqlite3_column_text(stmt, 8));
	snprintf(run->repo, sizeof(run->repo), "%s", sqlite3_column_text(stmt, 9));
	snprintf(run->args, sizeof(run->args), "%s", sqlite3_column_text(stmt, 10));
	run->exit_code = sqlite3_column_int(stmt, 11);
	snprintf(run->provider, sizeof(run->provider), "%s", sqlite3_column_text(stmt, 12));
	run->runner_pid = (pid_t)sqlite3_column_int64(stmt, 13);
	run->runner_started = sqlite3_column_int64(stmt, 14);
	run->started = sqlite3_column_int64(stmt, 15);
	snprintf(run->reason, sizeof(run->reason), "%s", sqlite3_column_text(stmt, 16));
	run->snapshot = sqlite3_column_int64(stmt, 17);
	snprintf(run->branch, sizeof(run->branch), "%s", sqlite3_column_text(stmt, 18));
	snprintf(run->provider_repo, sizeof(run->provider_repo), "%s", sqlite3_column_text(stmt, 19));
	snprintf(run->provider_commit, sizeof(run->provider_commit), "%s",
		 sqlite3_column_text(stmt, 20));
	run->job_count = sqlite3_column_int(stmt, 21);
	run->jobs_cached = sqlite3_column_int(stmt, 22);
}

int catalog_each(struct store *store, sqlite3_stmt *stmt,
		 int (*row)(void *ctx, sqlite3_stmt *stmt), void *ctx, const char *what,
		 struct error *err)
{
	int rc, ret = 0;

	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		ret = row(ctx, stmt);
		if (ret)
			break;
	}
	sqlite3_reset(stmt);
	if (!ret && rc != SQLITE_DONE)
		return catalog_error(store, rc, what, err);
	return ret;
}

static int run_row(void *ctx, sqlite3_stmt *stmt)
{
	struct catalog_visit *visit = ctx;
	struct store_run run;

	run_from_row(stmt, &run);
	return visit->fn.run(visit->ctx, &run);
}

int runs_each(struct store *store, sqlite3_stmt *stmt, store_run_fn *fn, void *ctx,
	      const char *what, struct error *err)
{
	struct catalog_visit visit = { .fn.run = fn, .ctx = ctx };

	return catalog_each(store, stmt, run_row, &visit, what, err);
}

int run_insert(struct store *store, const struct store_run_spec *spec,
	       const char *status, int64_t *id, char name[64], struct error *err)
{
	sqlite3_stmt *stmt;
	int64_t now = time_now_ns();
	int rc;

	/* Within the write transaction: nobody takes this id meanwhile. */
	stmt = catalog_stmt(store,
			    "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'runs'), 0) + 1",
			    err);
	if (!stmt)
		return err->code;
	rc = sqlite3_step(stmt);
	*id = sqlite3_column_int64(stmt, 0);
	sqlite3_reset(stmt);
	if (rc != SQLITE_ROW)
		return catalog_error(store, rc, "number run", err);
	run_name_make(*id, name);
	stmt = catalog_stmt(store,
			    "INSERT INTO runs(id, name, workflow, provider, args, status, submitted,"
			    " repo, commit_hash, runner_pid, runner_started, snapshot, branch,"
			    " submodules, provider_repo, provider_commit)"
			    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", err);
	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, *id);
	sqlite3_bind_text(stmt, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, spec->workflow, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, spec->provider, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 5, spec->args ? spec->args : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 6, status, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 7, now);
	sqlite3_bind_text(stmt, 8, spec->repo, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 9, spec->commit, -1, SQLITE_STATIC);
	if (spec->runner_pid) {
		sqlite3_bind_int64(stmt, 10, spec->runner_pid);
		sqlite3_bind_int64(stmt, 11, spec->runner_started);
	}
	if (spec->snapshot)
		sqlite3_bind_int64(stmt, 12, spec->snapshot);
	if (spec->branch)
		sqlite3_bind_text(stmt, 13, spec->branch, -1, SQLITE_STATIC);
	if (spec->submodules && *spec->submodules)
		sqlite3_bind_text(stmt, 14, spec->submodules, -1, SQLITE_STATIC);
	if (spec->provider_repo) {
		sqlite3_bind_text(stmt, 15, spec->provider_repo, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 16, spec->provider_commit, -1, SQLITE_STATIC);
	}
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "record run", err);
}

/*
 * A name is found through its index, whose entry gives the row; the last
 * column reads the name back from that row itself (an index gives back
 * the columns it holds), so a damaged entry cannot hand out another run.
 */
#define RUN_KEY_COLUMN 23	/* the first after those run_from_row reads */

static const char run_by_name_sql[] = RUN_COLUMNS ","
	" (SELECT x.name FROM runs x WHERE x.id = r.id) FROM runs r WHERE r.name = ?";

static const char run_by_tag_sql[] = RUN_COLUMNS ","
	" (SELECT t.name FROM tags t WHERE t.rowid = g.rowid)"
	" FROM runs r JOIN tags g ON g.run = r.id WHERE g.name = ?";

int store_run_find(struct store *store, const char *spec, struct store_run *out,
		   struct error *err)
{
	bool by_tag = spec[0] == ':';
	const char *key = by_tag ? spec + 1 : spec;
	sqlite3_stmt *stmt = catalog_stmt(store, by_tag ? run_by_tag_sql
						      : run_by_name_sql, err);
	const char *stored;
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		stored = (const char *)sqlite3_column_text(stmt, RUN_KEY_COLUMN);
		if (!stored || strcmp(stored, key)) {
			sqlite3_reset(stmt);
			return error_set(err, -EIO, "%s/catalog.db: %s '%s': table and index disagree",
					 store->home, by_tag ? "tag" : "run", key);
		}
		run_from_row(stmt, out);
		sqlite3_reset(stmt);
		return 0;
	}
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE)
		return catalog_error(store, rc, "find run", err);
	if (by_tag)
		return error_set(err, -ENOENT, "no tag '%s'", spec + 1);
	return error_set(err, -ENOENT, "no run '%s'", spec);
}

int store_run_add_data(struct store *store, const char *tag,
		       const struct store_artifact_ref *artifacts, size_t count,
		       struct store_run *out, struct error *err)
{
	static const struct store_run_spec data_spec = { 0 };
	sqlite3_stmt *stmt;
	int64_t now = time_now_ns(), run_id;
	char name[64];
	size_t i;
	int ret, rc;

	ret = store_tag_name_check(tag, err);
	if (ret < 0)
		return ret;
	for (i = 0; i < count; i++)
		if (!path_is_contained(artifacts[i].path))
			return error_set(err, -EINVAL,
					 "artifact path '%s': must be relative, without '..'",
					 artifacts[i].path);
	ret = catalog_begin(store, err);
	if (ret < 0)
		return ret;
	stmt = catalog_stmt(store, "SELECT run FROM tags WHERE name = ?", err);
	if (!stmt)
		goto fail;
	sqlite3_bind_text(stmt, 1, tag, -1, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc == SQLITE_ROW) {
		ret = error_set(err, -EEXIST, "tag '%s' already exists (delete it first)", tag);
		goto out;
	}
	ret = run_insert(store, &data_spec, "done", &run_id, name, err);
	if (ret < 0)
		goto out;
	stmt = catalog_stmt(store, "UPDATE runs SET started = submitted, finished = submitted,"
			    " exit_code = 0 WHERE id = ?", err);
	if (!stmt)
		goto fail;
	sqlite3_bind_int64(stmt, 1, run_id);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE)
		goto fail_rc;
	stmt = catalog_stmt(store, "INSERT INTO jobs(run, n, status, exit_code) VALUES (?, 0, 'done', 0)", err);
	if (!stmt)
		goto fail;
	sqlite3_bind_int64(stmt, 1, run_id);
	if ((rc = sqlite3_step(stmt)) != SQLITE_DONE)
		goto fail_rc;
	for (i = 0; i < count; i++) {
		stmt = catalog_stmt(store, "INSERT INTO artifacts(run, job, path, tree) VALUES (?, 0, ?, ?)", err);
		if (!stmt)
			goto fail;
		sqlite3_bind_int64(stmt, 1, run_id);
		sqlite3_bind_text(stmt, 2, artifacts[i].path, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 3, artifacts[i].tree);
		rc = sqlite3_step(stmt);
		if (rc == SQLITE_CONSTRAINT) {
			ret = error_set(err, -EINVAL, "artifact path '%s' given twice",
					artifacts[i].path);
			goto out;
		}
		if (rc != SQLITE_DONE)
			goto fail_rc;
	}
	stmt = catalog_stmt(store, "INSERT INTO tags(name, run, created) VALUES (?, ?, ?)", err);
	if (!stmt)
		goto fail;
	sqlite3_bind_text(stmt, 1, tag, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, run_id);
	sqlite3_bind_int64(stmt, 3, now);
	if ((rc = sqlite3_step(stmt)) != SQLITE_DONE)
		goto fail_rc;
	ret = catalog_commit(store, err);
	if (ret < 0)
		return ret;
	return store_run_find(store, name, out, err);
fail_rc:
	ret = catalog_error(store, rc, "record run", err);
	goto out;
fail:
	ret = err->code ? err->code : catalog_error(store, sqlite3_errcode(store->db), "record run", err);
out:
	catalog_rollback(store);
	return ret;
}

int store_run_remove(struct store *store, const char *name, struct error *err)
{
	struct store_run run;
	sqlite3_stmt *stmt;
	int ret, rc;

	ret = catalog_begin(store, err);
	if (ret < 0)
		return ret;
	ret = store_run_find(store, name, &run, err);
	if (ret < 0)
		goto out;
	if (run.tag[0]) {
		ret = error_set(err, -EBUSY, "run '%s' is tagged '%s' (delete the tag first)",
				name, run.tag);
		goto out;
	}
	if (!run.finished) {
		ret = error_set(err, -EBUSY, "run '%s' is %s (stop it first)", name,
				run.status);
		goto out;
	}
	stmt = catalog_stmt(store, "DELETE FROM runs WHERE id = ?", err);
	if (!stmt) {
		ret = err->code;
		goto out;
	}
	sqlite3_bind_int64(stmt, 1, run.id);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE) {
		ret = catalog_error(store, rc, "remove run", err);
		goto out;
	}
	return catalog_commit(store, err);
out:
	catalog_rollback(store);
	return ret;
}

int store_tag_check_free(struct store *store, const char *tag,
			 struct error *err)
{
	sqlite3_stmt *stmt;
	int ret = store_tag_name_check(tag, err), rc;

	if (ret < 0)
		return ret;
	stmt = catalog_stmt(store, "SELECT 1 FROM tags WHERE name = ?", err);
	if (!stmt)
		return err->code;
	sqlite3_bind_text(stmt, 1, tag, -1, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc == SQLITE_ROW)
		return error_set(err, -EEXIST, "tag '%s' already exists (delete it first)", tag);
	if (rc != SQLITE_DONE)
		return catalog_error(store, rc, "look up tag", err);
	return 0;
}

/* Inserts tag for run_spec in the open transaction. */
static int tag_insert(struct store *store, const char *tag, const char *run_spec,
		      struct error *err)
{
	struct store_run run;
	sqlite3_stmt *stmt;
	int ret, rc;

	ret = store_run_find(store, run_spec, &run, err);
	if (ret < 0)
		return ret;
	stmt = catalog_stmt(store, "INSERT INTO tags(name, run, created) VALUES (?, ?, ?)", err);
	if (!stmt)
		return err->code;
	sqlite3_bind_text(stmt, 1, tag, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, run.id);
	sqlite3_bind_int64(stmt, 3, time_now_ns());
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc == SQLITE_CONSTRAINT)
		return error_set(err, -EEXIST, "tag '%s' already exists (delete it first)", tag);
	if (rc != SQLITE_DONE)
		return catalog_error(store, rc, "add tag", err);
	return 0;
}

int store_tag_add(struct store *store, const char *tag, const char *run_spec,
		  struct error *err)
{
	int ret = store_tag_name_check(tag, err);

	if (ret < 0)
		return ret;
	ret = catalog_begin(store, err);
	if (ret < 0)
		return ret;
	ret = tag_insert(store, tag, run_spec, err);
	if (ret < 0) {
		catalog_rollback(store);
		return ret;
	}
	return catalog_commit(store, err);
}

int store_tag_move(struct store *store, const char *tag, const char *run_spec,
		   struct error *err)
{
	sqlite3_stmt *stmt;
	int ret, rc;

	ret = store_tag_name_check(tag, err);
	if (ret < 0)
		return ret;
	ret = catalog_begin(store, err);
	if (ret < 0)
		return ret;
	stmt = catalog_stmt(store, "DELETE FROM tags WHERE name = ?", err);
	if (!stmt) {
		catalog_rollback(store);
		return err->code;
	}
	sqlite3_bind_text(stmt, 1, tag, -1, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE) {
		catalog_rollback(store);
		return catalog_error(store, rc, "move tag", err);
	}
	ret = tag_insert(store, tag, run_spec, err);
	if (ret < 0) {
		catalog_rollback(store);
		return ret;
	}
	return catalog_commit(store, err);
}

int store_tag_delete(struct store *store, const char *tag, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, "DELETE FROM tags WHERE name = ?", err);
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_text(stmt, 1, tag, -1, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE)
		return catalog_error(store, rc, "delete tag", err);
	if (sqlite3_changes(store->db) == 0)
		return error_set(err, -ENOENT, "no tag '%s'", tag);
	return 0;
}

static const char tag_list_sql[] =
	"SELECT r.id, r.name, coalesce(r.workflow, ''), r.status, g.name,"
	" r.submitted, coalesce(r.finished, 0),"
	" (SELECT group_concat(path, ', ') FROM (SELECT DISTINCT path FROM artifacts a"
	"  WHERE a.run = r.id ORDER BY path)),"
	" coalesce(r.commit_hash, ''), coalesce(r.repo, ''), r.args, coalesce(r.exit_code, -1),"
	" coalesce(r.provider, ''), coalesce(r.runner_pid, 0), coalesce(r.runner_started, 0)"
	" FROM tags g JOIN runs r ON g.run = r.id ORDER BY g.name";

int store_tag_list(struct store *store, store_run_fn *fn, void *ctx,
		   struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, tag_list_sql, err);

	return stmt ? runs_each(store, stmt, fn, ctx, "list tags", err) : err->code;
}
