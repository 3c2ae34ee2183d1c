/*
 * runs.c - the life of a run in the catalog: created with its jobs,
 * moved through the status words, logs appended while jobs write them,
 * artifacts recorded as trees, and listed back.
 *
 * Times are nanoseconds since the epoch.  Logs are stored as they come,
 * in rows numbered per run, so a reader can follow a live run by asking
 * for the rows after the last one it saw.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store/internal.h"

static bool status_is_final(const char *status)
{
	return !strcmp(status, "done") || !strcmp(status, "failed") ||
	       !strcmp(status, "stopped") || !strcmp(status, "aborted");
}

/* Inserts jobs 0..count-1 of run in the open transaction. */
static int jobs_insert(struct store *store, int64_t run, int count, struct error *err)
{
	sqlite3_stmt *stmt;
	int n, rc;

	for (n = 0; n < count; n++) {
		stmt = catalog_stmt(store, "INSERT INTO jobs(run, n, status) VALUES (?, ?, 'submitted')", err);
		if (!stmt)
			return err->code;
		sqlite3_bind_int64(stmt, 1, run);
		sqlite3_bind_int(stmt, 2, n);
		rc = sqlite3_step(stmt);
		sqlite3_reset(stmt);
		if (rc != SQLITE_DONE)
			return catalog_error(store, rc, "record job", err);
	}
	return 0;
}

int store_run_add_jobs(struct store *store, int64_t run, int count,
		       struct error *err)
{
	int ret = catalog_begin(store, err);

	if (ret < 0)
		return ret;
	ret = jobs_insert(store, run, count, err);
	if (ret < 0) {
		catalog_rollback(store);
		return ret;
	}
	return catalog_commit(store, err);
}

int store_run_create(struct store *store, const struct store_run_spec *spec,
		     int job_count, struct store_run *out, struct error *err)
{
	int64_t id;
	char name[64];
	int ret;

	ret = catalog_begin(store, err);
	if (ret < 0)
		return ret;
	ret = run_insert(store, spec, "submitted", &id, name, err);
	if (ret == 0)
		ret = jobs_insert(store, id, job_count, err);
	if (ret < 0) {
		catalog_rollback(store);
		return ret;
	}
	ret = catalog_commit(store, err);
	return ret < 0 ? ret : store_run_find(store, name, out, err);
}

/*
 * Runs an UPDATE whose parameters are ?1 status, ?2 now, ?3 exit code
 * (NULL when negative), ?4 run and ?5 job; the SQL names those it uses.
 */
/*
 * Steps an UPDATE.  The steps on the way (downloading, running,
 * uploading) are lazy: they need not cost a sync each, since they reach
 * the disk with the run's next durable commit (its end, its artifacts,
 * its logs), and a power loss before that shows the run a step earlier,
 * where the orphan reaper finds it.
 */
static int run_step(struct store *store, sqlite3_stmt *stmt, bool lazy, const char *what,
		    struct error *err)
{
	struct error ignored = { 0 };
	int rc, ret = lazy ? catalog_set_durable(store, false, err) : 0;

	if (ret == 0) {
		rc = sqlite3_step(stmt);
		ret = rc == SQLITE_DONE ? 0 : catalog_error(store, rc, what, err);
	}
	sqlite3_reset(stmt);
	/* Every other commit (artifacts, logs, tags) stays durable. */
	if (lazy && catalog_set_durable(store, true, ret < 0 ? &ignored : err) < 0 && ret == 0)
		ret = err->code;
	return ret;
}

static int run_update(struct store *store, const char *sql, bool durable, const char *status,
		      int exit_code, int64_t run, int job, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, sql, err);

	if (!stmt)
		return err->code;
	sqlite3_bind_text(stmt, 1, status, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, time_now_ns());
	if (exit_code >= 0)
		sqlite3_bind_int(stmt, 3, exit_code);
	sqlite3_bind_int64(stmt, 4, run);
	if (job >= 0)
		sqlite3_bind_int(stmt, 5, job);
	return run_step(store, stmt, !durable, "update status", err);
}

int store_run_set_status(struct store *store, int64_t run, const char *status,
			 int exit_code, struct error *err)
{
	int ret;

	if (status_is_final(status)) {
		ret = run_update(store,
				 "UPDATE runs SET status = ?1, finished = ?2, exit_code = ?3,"
				 " started = coalesce(started, ?2) WHERE id = ?4",
				 true, status, exit_code, run, -1, err);
		/* An ended run holds nothing, whatever its runner did. */
		return ret < 0 ? ret : run_update(store, "DELETE FROM claims WHERE run = ?4",
						  false, "", -1, run, -1, err);
	}
	return run_update(store,
			  "UPDATE runs SET status = ?1, started = coalesce(started, ?2) WHERE id = ?4",
			  false, status, -1, run, -1, err);
}

/* A job's end is made durable by its run's end, which always follows. */
int store_job_set_status(struct store *store, int64_t run, int job,
			 const char *status, int exit_code, struct error *err)
{
	if (status_is_final(status))
		return run_update(store,
				  "UPDATE jobs SET status = ?1, exit_code = ?3, pid = NULL,"
				  " pid_started = NULL WHERE run = ?4 AND n = ?5",
				  false, status, exit_code, run, job, err);
	return run_update(store,
			  "UPDATE jobs SET status = ?1, exit_code = ?3 WHERE run = ?4 AND n = ?5",
			  false, status, exit_code, run, job, err);
}

int store_job_set_image(struct store *store, int64_t run, int job,
			const char *image, struct error *err)
{
	return run_update(store, "UPDATE jobs SET image = ?1 WHERE run = ?4 AND n = ?5",
			  false, image, -1, run, job, err);
}

int store_run_set_reason(struct store *store, int64_t run, const char *reason,
			 struct error *err)
{
	return run_update(store, "UPDATE runs SET reason = coalesce(reason, ?1) WHERE id = ?4", false, reason, -1,
			  run, -1, err);
}

int store_job_set_reason(struct store *store, int64_t run, int job, const char *reason,
			 struct error *err)
{
	return run_update(store, "UPDATE jobs SET reason = ?1 WHERE run = ?4 AND n = ?5", false,
			  reason, -1, run, job, err);
}

int store_job_set_spec(struct store *store, int64_t run, int job, const char *spec,
		       struct error *err)
{
	return run_update(store, "UPDATE jobs SET spec = ?1 WHERE run = ?4 AND n = ?5", false,
			  spec, -1, run, job, err);
}

int store_run_submodules(struct store *store, int64_t run, struct strbuf *out,
			 struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, "SELECT submodules FROM runs WHERE id = ?", err);
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, run);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW && sqlite3_column_text(stmt, 0))
		strbuf_addstr(out, (const char *)sqlite3_column_text(stmt, 0));
	sqlite3_reset(stmt);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "read the run",
									   err);
}

int store_job_spec(struct store *store, int64_t run, int job, struct strbuf *out,
		   struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store,
		"SELECT spec FROM jobs WHERE run = ? AND n = ?", err);
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, run);
	sqlite3_bind_int(stmt, 2, job);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW && sqlite3_column_text(stmt, 0))
		strbuf_addstr(out, (const char *)sqlite3_column_text(stmt, 0));
	sqlite3_reset(stmt);
	if (rc == SQLITE_DONE)
		return error_set(err, -ENOENT, "no job %d", job);
	return rc == SQLITE_ROW ? 0 : catalog_error(store, rc, "read the job", err);
}

int store_job_set_running(struct store *store, int64_t run, int job, pid_t pid,
			  int64_t started, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store,
		"UPDATE jobs SET status = 'running', pid = ?1, pid_started = ?2"
		" WHERE run = ?3 AND n = ?4", err);

	if (!stmt)
		return err->code;
	sqlite3_bind_int(stmt, 1, (int)pid);
	sqlite3_bind_int64(stmt, 2, started);
	sqlite3_bind_int64(stmt, 3, run);
	sqlite3_bind_int(stmt, 4, job);
	return run_step(store, stmt, true, "record job process", err);
}

/* Adds up what the live jobs hold on backend, in the open transaction. */
static int claims_held(struct store *store, const char *backend, struct store_claim *held,
		       struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store,
		"SELECT c.cpu, c.memory, c.gpus FROM claims c JOIN runs r ON r.id = c.run"
		" WHERE c.backend = ? AND r.finished IS NULL", err);
	int rc;

	if (!stmt)
		return err->code;
	memset(held, 0, sizeof(*held));
	sqlite3_bind_text(stmt, 1, backend, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		held->cpu += sqlite3_column_int(stmt, 0);
		held->memory += (uint64_t)sqlite3_column_int64(stmt, 1);
		held->gpus |= (uint64_t)sqlite3_column_int64(stmt, 2);
	}
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "read claims", err);
}

/* The gpu_count lowest GPUs of wanted that are not taken, or 0. */
static uint64_t gpus_pick(uint64_t wanted, uint64_t taken, int gpu_count)
{
	uint64_t free = wanted & ~taken, picked = 0;
	int bit;

	for (bit = 0; bit < 64 && gpu_count > 0; bit++) {
		if (free & (1ull << bit)) {
			picked |= 1ull << bit;
			gpu_count--;
		}
	}
	return gpu_count ? 0 : picked;
}

int store_job_claim(struct store *store, int64_t run, int job, const char *backend,
		    const struct store_claim *capacity, const struct store_claim *want,
		    int gpu_count, struct store_claim *granted, struct error *err)
{
	struct store_claim held;
	sqlite3_stmt *stmt;
	uint64_t gpus;
	int rc, ret = catalog_begin(store, err);

	if (ret < 0)
		return ret;
	ret = claims_held(store, backend, &held, err);
	if (ret < 0)
		goto fail;
	gpus = gpus_pick(want->gpus, held.gpus, gpu_count);
	if (held.cpu + want->cpu > capacity->cpu ||
	    held.memory + want->memory > capacity->memory || (gpu_count && !gpus)) {
		granted->cpu = capacity->cpu > held.cpu ? capacity->cpu - held.cpu : 0;
		granted->memory = capacity->memory > held.memory ? capacity->memory - held.memory : 0;
		granted->gpus = capacity->gpus & ~held.gpus;
		catalog_rollback(store);
		return -EAGAIN;
	}
	stmt = catalog_stmt(store, "INSERT OR REPLACE INTO claims(run, job, backend, cpu, memory, gpus)"
			    " VALUES (?, ?, ?, ?, ?, ?)", err);
	if (!stmt) {
		ret = err->code;
		goto fail;
	}
	sqlite3_bind_int64(stmt, 1, run);
	sqlite3_bind_int(stmt, 2, job);
	sqlite3_bind_text(stmt, 3, backend, -1, SQLITE_STATIC);
	sqlite3_bind_int(stmt, 4, want->cpu);
	sqlite3_bind_int64(stmt, 5, (int64_t)want->memory);
	sqlite3_bind_int64(stmt, 6, (int64_t)gpus);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE) {
		ret = catalog_error(store, rc, "record claim", err);
		goto fail;
	}
	ret = catalog_commit(store, err);
	if (ret == 0) {
		*granted = *want;
		granted->gpus = gpus;
	}
	return ret;
fail:
	catalog_rollback(store);
	return ret;
}

int store_job_release(struct store *store, int64_t run, int job, struct error *err)
{
	return run_update(store, "DELETE FROM claims WHERE run = ?4 AND job = ?5", false, "", -1,
			  run, job, err);
}

int store_run_request_stop(struct store *store, int64_t run, enum store_stop_request request,
			   struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store,
		"UPDATE runs SET stop_request = max(coalesce(stop_request, 0), ?1)"
		" WHERE id = ?2 AND finished IS NULL", err);
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_int(stmt, 1, (int)request);
	sqlite3_bind_int64(stmt, 2, run);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "ask the run to stop", err);
}

int store_run_stop_request(struct store *store, int64_t run,
			   enum store_stop_request *request, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store,
		"SELECT coalesce(stop_request, 0) FROM runs WHERE id = ?", err);
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, run);
	rc = sqlite3_step(stmt);
	*request = rc == SQLITE_ROW ? (enum store_stop_request)sqlite3_column_int(stmt, 0)
				    : STORE_STOP_NONE;
	sqlite3_reset(stmt);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "read the run", err);
}

int store_log_append(struct store *store, int64_t run, int job, int fd,
		     const void *data, size_t len, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store,
		"INSERT INTO logs(run, seq, job, time, data, fd) VALUES"
		" (?1, (SELECT coalesce(max(seq), 0) + 1 FROM logs WHERE run = ?1), ?2, ?3, ?4, ?5)",
		err);
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, run);
	sqlite3_bind_int(stmt, 2, job);
	sqlite3_bind_int64(stmt, 3, time_now_ns());
	sqlite3_bind_blob(stmt, 4, data, (int)len, SQLITE_STATIC);
	sqlite3_bind_int(stmt, 5, fd);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "append log", err);
}

int store_run_logs_size(struct store *store, int64_t run, int job, uint64_t *bytes,
			struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store,
		"SELECT coalesce(sum(length(data)), 0) FROM logs WHERE run = ?1"
		" AND (?2 = -2 OR job = ?2)", err);
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, run);
	sqlite3_bind_int(stmt, 2, job);
	rc = sqlite3_step(stmt);
	*bytes = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(stmt, 0) : 0;
	sqlite3_reset(stmt);
	return rc == SQLITE_ROW ? 0 : catalog_error(store, rc, "read logs", err);
}

int store_run_logs(struct store *store, int64_t run, int64_t *after,
		   store_log_fn *fn, void *ctx, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store,
		"SELECT seq, job, data, fd FROM logs WHERE run = ? AND seq > ? ORDER BY seq", err);
	int rc, ret = 0;

	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, run);
	sqlite3_bind_int64(stmt, 2, *after);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const void *data = sqlite3_column_blob(stmt, 2);

		*after = sqlite3_column_int64(stmt, 0);
		/* An empty (or, damaged, NULL) piece reads back as NULL: hand
		 * out a pointer that memcpy and fwrite may take. */
		ret = fn(ctx, sqlite3_column_int(stmt, 1), sqlite3_column_int(stmt, 3),
			 data ? data : "", (size_t)sqlite3_column_bytes(stmt, 2));
		if (ret)
			break;
	}
	sqlite3_reset(stmt);
	if (!ret && rc != SQLITE_DONE)
		return catalog_error(store, rc, "read logs", err);
	return ret;
}

int store_artifact_add(struct store *store, int64_t run, int job,
		       const char *path, int64_t tree, struct error *err)
{
	sqlite3_stmt *stmt;
	int rc;

	if (!path_is_contained(path))
		return error_set(err, -EINVAL, "artifact path '%s': must be relative, without '..'",
				 path);
	stmt = catalog_stmt(store, "INSERT OR REPLACE INTO artifacts(run, job, path, tree)"
			    " VALUES (?, ?, ?, ?)", err);
	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, run);
	sqlite3_bind_int(stmt, 2, job);
	sqlite3_bind_text(stmt, 3, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 4, tree);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "record artifact", err);
}

int store_live_artifact_add(struct store *store, int64_t run,
			    const struct store_live_artifact *live, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store,
		"INSERT OR REPLACE INTO live_artifacts(run, job, path, dir) VALUES (?, ?, ?, ?)",
		err);

	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, run);
	sqlite3_bind_int(stmt, 2, live->job);
	sqlite3_bind_text(stmt, 3, live->path, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, live->dir, -1, SQLITE_STATIC);
	/* Lost with a crash, it is not missed: an ended run shows none. */
	return run_step(store, stmt, true, "record a live artifact", err);
}

int store_live_artifacts_clear(struct store *store, int64_t run, int job,
			       struct error *err)
{
	return run_update(store, "DELETE FROM live_artifacts WHERE run = ?4 AND job = ?5", false,
			  "", -1, run, job, err);
}

static int live_row(void *ctx, sqlite3_stmt *stmt)
{
	struct catalog_visit *visit = ctx;
	struct store_live_artifact live = {
		.job = sqlite3_column_int(stmt, 0),
		.path = (const char *)sqlite3_column_text(stmt, 1),
		.dir = (const char *)sqlite3_column_text(stmt, 2),
	};

	return visit->fn.live(visit->ctx, &live);
}

int store_run_live_artifacts(struct store *store, int64_t run, store_live_artifact_fn *fn,
			     void *ctx, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store,
		"SELECT job, path, dir FROM live_artifacts WHERE run = ? ORDER BY job, path", err);
	struct catalog_visit visit = { .fn.live = fn, .ctx = ctx };

	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, run);
	return catalog_each(store, stmt, live_row, &visit, "list live artifacts", err);
}

static int job_row(void *ctx, sqlite3_stmt *stmt)
{
	struct catalog_visit *visit = ctx;
	struct store_job job = { 0 };

	job.n = sqlite3_column_int(stmt, 0);
	snprintf(job.status, sizeof(job.status), "%s", sqlite3_column_text(stmt, 1));
	job.exit_code = sqlite3_column_int(stmt, 2);
	snprintf(job.image, sizeof(job.image), "%s", sqlite3_column_text(stmt, 3));
	job.pid = (pid_t)sqlite3_column_int(stmt, 4);
	job.pid_started = sqlite3_column_int64(stmt, 5);
	snprintf(job.reason, sizeof(job.reason), "%s", sqlite3_column_text(stmt, 6));
	snprintf(job.input_key, sizeof(job.input_key), "%s", sqlite3_column_text(stmt, 7));
	snprintf(job.cached_from, sizeof(job.cached_from), "%s", sqlite3_column_text(stmt, 8));
	return visit->fn.job(visit->ctx, &job);
}

int store_run_jobs(struct store *store, int64_t run, store_job_fn *fn, void *ctx,
		   struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, "SELECT n, status, coalesce(exit_code, -1),"
					  " coalesce(image, ''), coalesce(pid, 0), coalesce(pid_started, 0),"
					  " coalesce(reason, ''), coalesce(input_key, ''),"
					  " coalesce(cached_from, '') FROM jobs WHERE run = ? ORDER BY n", err);
	struct catalog_visit visit = { .fn.job = fn, .ctx = ctx };

	if (!stmt)
		return err->code;
	sqlite3_bind_int64(stmt, 1, run);
	return catalog_each(store, stmt, job_row, &visit, "list jobs", err);
}

static const char run_latest_done_sql[] =
	RUN_COLUMNS " FROM runs r WHERE r.workflow = ?1 AND r.status = 'done'"
	" AND (?2 IS NULL OR r.repo = ?2) ORDER BY r.id DESC LIMIT 1";

int store_run_latest_done(struct store *store, const char *repo,
			  const char *workflow, struct store_run *out,
			  struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, run_latest_done_sql, err);
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_text(stmt, 1, workflow, -1, SQLITE_STATIC);
	if (repo)
		sqlite3_bind_text(stmt, 2, repo, -1, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		run_from_row(stmt, out);
	sqlite3_reset(stmt);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc != SQLITE_DONE)
		return catalog_error(store, rc, "find run", err);
	return error_set(err, -ENOENT, "no done run of workflow '%s'", workflow);
}

static const char run_list_sql[] = RUN_COLUMNS " FROM runs r WHERE ?1 IS NULL OR r.repo = ?1"
				   " ORDER BY r.id DESC";

int store_run_list(struct store *store, const char *repo, store_run_fn *fn,
		   void *ctx, struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, run_list_sql, err);

	if (!stmt)
		return err->code;
	if (repo)
		sqlite3_bind_text(stmt, 1, repo, -1, SQLITE_STATIC);
	return runs_each(store, stmt, fn, ctx, "list runs", err);
}

int store_daemon_add(struct store *store, const struct store_daemon *daemon,
		     struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store,
		"INSERT OR REPLACE INTO daemons(repo, mountpoint, pid, started) VALUES (?, ?, ?, ?)",
		err);
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_text(stmt, 1, daemon->repo, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, daemon->mountpoint, -1, SQLITE_STATIC);
	sqlite3_bind_int(stmt, 3, (int)daemon->pid);
	sqlite3_bind_int64(stmt, 4, daemon->started);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "record the daemon", err);
}

int store_daemon_remove(struct store *store, const char *repo, pid_t pid,
			struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, "DELETE FROM daemons WHERE repo = ? AND pid = ?",
					  err);
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_text(stmt, 1, repo, -1, SQLITE_STATIC);
	sqlite3_bind_int(stmt, 2, (int)pid);
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, "forget the daemon", err);
}

static int daemon_row(void *ctx, sqlite3_stmt *stmt)
{
	struct catalog_visit *visit = ctx;
	struct store_daemon daemon = { 0 };

	snprintf(daemon.repo, sizeof(daemon.repo), "%s", sqlite3_column_text(stmt, 0));
	snprintf(daemon.mountpoint, sizeof(daemon.mountpoint), "%s", sqlite3_column_text(stmt, 1));
	daemon.pid = (pid_t)sqlite3_column_int(stmt, 2);
	daemon.started = sqlite3_column_int64(stmt, 3);
	return visit->fn.daemon(visit->ctx, &daemon);
}

int store_daemon_list(struct store *store, store_daemon_fn *fn, void *ctx,
		      struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store,
		"SELECT repo, mountpoint, pid, started FROM daemons ORDER BY repo", err);
	struct catalog_visit visit = { .fn.daemon = fn, .ctx = ctx };

	if (!stmt)
		return err->code;
	return catalog_each(store, stmt, daemon_row, &visit, "list daemons", err);
}
