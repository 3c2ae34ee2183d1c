/*
 * store.h - the content-addressed artifact store and its SQLite catalog.
 *
 * A store lives in one directory ($DSTACK_HOME): catalog.db (runs, jobs,
 * logs, tags, trees, objects) and packs/ (lz4 frames of file chunks keyed by
 * the SHA-256 of their bytes).  One process writes at a time, any number
 * read.  Every function returns 0 or a negative errno and, on failure,
 * fills the struct error with a one-line reason naming what was wrong.
 */
#ifndef DSTACK_STORE_H
#define DSTACK_STORE_H

#include <stdint.h>
#include <sys/types.h>

#include "lib/lib.h"

#define STORE_HASH_SIZE 32

/* The SHA-256 of len bytes, as lowercase hex. */
void store_hash_hex(const void *data, size_t len, char out[2 * STORE_HASH_SIZE + 1]);

struct store;
struct store_ingest;

enum store_open_mode {
	STORE_READ_ONLY,
	STORE_READ_WRITE,	/* creates $DSTACK_HOME if missing */
};

int store_open(struct store **out, const char *home, enum store_open_mode mode,
	       struct error *err);
void store_close(struct store *store);
/* $DSTACK_HOME of an open store. */
const char *store_home(const struct store *store);

/* Called as bytes are stored or extracted; total is 0 when unknown. */
typedef void store_progress_fn(void *ctx, uint64_t done, uint64_t total);

/*
 * Writes the artifacts of run under out (created if missing) as OUT/PATH
 * for each artifact path, byte for byte with modes and symlinks; where two
 * jobs wrote one path the higher-numbered job's file wins.  Never follows
 * a symlink out of out.
 */
int store_run_download(struct store *store, int64_t run, const char *out,
		       store_progress_fn *progress, void *progress_ctx,
		       struct error *err);

/* Writes tree (a run's snapshot) under out, as store_run_download does. */
int store_tree_download(struct store *store, int64_t tree, const char *out,
			struct error *err);

/* Reports one problem per call, as a line without newline. */
typedef void store_report_fn(void *ctx, const char *line);

/*
 * Ingesting folders: begin holds off `gc` until end, so objects this
 * ingest found already stored cannot vanish before a run names them.
 * warn hears of what is skipped (special files).
 */
int store_ingest_begin(struct store *store, struct store_ingest **out,
		       store_report_fn *warn, void *warn_ctx, struct error *err);
/* Stores the folder dir as a tree; *tree receives its catalog id. */
int store_ingest_folder(struct store_ingest *ingest, const char *dir,
			int64_t *tree, store_progress_fn *progress,
			void *progress_ctx, struct error *err);
/*
 * Stores the files paths name (relative to dir: a repository's snapshot)
 * and their parent folders as a tree.  A path gone meanwhile is left out.
 */
int store_ingest_paths(struct store_ingest *ingest, const char *dir, char *const *paths,
		       size_t count, int64_t *tree, struct error *err);
void store_ingest_end(struct store_ingest *ingest);

/*
 * Staging: how a node without the catalog reads and stores files (Slurm).
 * A manifest is text (see store/manifest.c): versioned, each chunk with
 * its place in the packs; manifests may be concatenated.  The places a
 * manifest gives hold until gc: keep an ingest (store_ingest_begin) open
 * from writing a manifest until the node has read it, and from before a
 * node stages until its manifest is imported (gc takes packs the catalog
 * does not name).
 */
/* Appends to manifest the entries of tree (a run's snapshot), each chunk
 * with its pack location. */
int store_manifest_tree(struct store *store, int64_t tree, struct strbuf *manifest,
			struct error *err);
/* Appends to manifest the artifacts of run laid out as store_run_download
 * writes them (OUT/ARTIFACT_PATH/..., the higher-numbered job winning). */
int store_manifest_run(struct store *store, int64_t run, struct strbuf *manifest,
		       struct error *err);
/* Writes a manifest's files under out, reading the packs of the store at
 * home directly: no catalog.  Every chunk verified (SHA-256); never follows
 * a symlink out of out. */
int store_manifest_extract(const char *home, const char *manifest, size_t len, const char *out,
			   struct error *err);
/* Stores the folder dir into new packs of the store at home, without the
 * catalog (the gc lock held shared meanwhile); appends its manifest to out. */
int store_stage_folder(const char *home, const char *dir, struct strbuf *manifest,
		       struct error *err);
/* Records a staged folder's objects and tree in the catalog, each checked
 * against its pack: *tree gets its id, as store_ingest_folder would. */
int store_stage_import(struct store_ingest *ingest, const char *manifest, size_t len,
		       int64_t *tree, struct error *err);

struct store_run {
	int64_t id;
	char name[64];
	char workflow[128];
	char status[16];
	char tag[128];		/* empty when untagged */
	int64_t submitted;	/* ns since the epoch */
	int64_t started;	/* 0 until its first job starts */
	int64_t finished;	/* 0 while live */
	char artifacts[256];	/* artifact paths of all jobs, ", "-joined */
	char provider[128];
	char args[512];		/* one shell-quoted line */
	char repo[512];
	char commit[64];	/* with " (dirty)" when so */
	int exit_code;		/* -1: none (live, stopped, aborted) */
	pid_t runner_pid;	/* the process running it, 0 if none */
	int64_t runner_started;	/* that process's start time (proc_start_time) */
	char reason[256];	/* why it failed, one line; empty: it did not */
	int64_t snapshot;	/* the repository as it ran, a tree; 0: none */
	char branch[256];	/* empty: none */
	char provider_repo[512];	/* a provider from another repository; empty: none */
	char provider_commit[41];
	int job_count;
	int jobs_cached;	/* jobs served by the job result cache */
};

/* One job of a run. */
struct store_job {
	int n;
	char status[16];
	int exit_code;		/* -1: none */
	char image[256];	/* empty: none */
	pid_t pid;		/* its process group while live, else 0 */
	int64_t pid_started;	/* that process's start time */
	char reason[256];	/* why it failed, one line; empty: it did not */
	char input_key[65];	/* its input key (hex), empty: none was made */
	char cached_from[96];	/* "RUN/N" that served it; empty: it ran */
};
typedef int store_job_fn(void *ctx, const struct store_job *job);
/* Calls fn for each job of run, by number. */
int store_run_jobs(struct store *store, int64_t run, store_job_fn *fn, void *ctx,
		   struct error *err);

/* One artifact folder of a finished run. */
struct store_artifact_ref {
	const char *path;	/* relative to the job's working directory */
	int64_t tree;
};

/*
 * Records a finished run with one job whose artifacts are the given
 * trees, tagged tag (which must not exist yet).  This is how data enters
 * the store without a job.
 */
int store_run_add_data(struct store *store, const char *tag,
		       const struct store_artifact_ref *artifacts, size_t count,
		       struct store_run *out, struct error *err);

typedef int store_run_fn(void *ctx, const struct store_run *run);

/* What a run is started from; NULL fields are recorded as unknown. */
struct store_run_spec {
	const char *workflow;
	const char *provider;
	const char *args;	/* one shell-quoted line */
	const char *repo;	/* remote URL, else the local path */
	const char *commit;	/* full hash, " (dirty)" appended when so */
	pid_t runner_pid;	/* the process that will run it */
	int64_t runner_started;
	int64_t snapshot;	/* the repository's tree (store_ingest_paths), 0: none */
	const char *branch;	/* NULL: none (a detached HEAD) */
	/* The submodules the snapshot leaves out, "PATH COMMIT\n" each; NULL: none. */
	const char *submodules;
	/* A provider from another repository: its URL and the commit run. */
	const char *provider_repo;
	const char *provider_commit;
};

/* A new run in status "submitted" with job_count jobs numbered from 0. */
int store_run_create(struct store *store, const struct store_run_spec *spec,
		     int job_count, struct store_run *out, struct error *err);
/* Adds jobs 0..count-1 to a run created without them (custom providers). */
int store_run_add_jobs(struct store *store, int64_t run, int count,
		       struct error *err);
/*
 * Moves a run or a job to a status word (DESIGN.md's); a final one (done,
 * failed, stopped, aborted) records the finish time and exit_code
 * (negative: none).
 */
int store_run_set_status(struct store *store, int64_t run, const char *status,
			 int exit_code, struct error *err);
int store_job_set_status(struct store *store, int64_t run, int job,
			 const char *status, int exit_code, struct error *err);
/* A job's spec as the provider made it (YAML, for jobs/N/spec.yaml). */
int store_job_set_spec(struct store *store, int64_t run, int job, const char *spec,
		       struct error *err);
/* Appends the run's submodules ("PATH COMMIT\n" each) to out. */
int store_run_submodules(struct store *store, int64_t run, struct strbuf *out,
			 struct error *err);
/* Appends the job's spec to out (nothing when none was recorded). */
int store_job_spec(struct store *store, int64_t run, int job, struct strbuf *out,
		   struct error *err);
/*
 * Why a run or a job failed, one line, for `dstack ps RUN` and info.  A
 * run keeps the first reason it is given: the failure that came first.
 */
int store_run_set_reason(struct store *store, int64_t run, const char *reason,
			 struct error *err);
int store_job_set_reason(struct store *store, int64_t run, int job, const char *reason,
			 struct error *err);
/* Records the image a job names (kept on the host backend for the record). */
int store_job_set_image(struct store *store, int64_t run, int job,
			const char *image, struct error *err);
/*
 * Moves a job to "running" with its process group (and that process's
 * start time), so a later runner can end what a dead one left; a final
 * status forgets the process.
 */
int store_job_set_running(struct store *store, int64_t run, int job, pid_t pid,
			  int64_t started, struct error *err);

/*
 * The job result cache.  The runner makes a job's input key (hex); the
 * store finds what it names.
 */
enum store_cache_answer {
	STORE_CACHE_MISS,	/* the job runs: its key is now recorded */
	STORE_CACHE_HIT,	/* a done job served it: its artifacts are the job's */
	STORE_CACHE_BUSY,	/* a job of a live run has the key: wait for it */
};
struct store_cache_source {
	char run[64];		/* the job's run */
	int job;
	pid_t runner_pid;	/* BUSY: the live run's runner and its start */
	int64_t runner_started;
};
/*
 * Looks key up for job of run, in one write transaction, so that of two
 * identical jobs asking at once one runs and the other waits: a done job
 * with key serves (HIT, *source names it; the job's artifact rows name
 * the same trees and its row says where they came from); else a job of a
 * live run with key (BUSY, nothing changes); else the job takes the key
 * (MISS).  lookup false: takes the key at once (a run without the cache,
 * or --no-cache), made durable by the run's end as a status step is.
 * Returns the answer, or a negative errno.
 */
int store_job_cache(struct store *store, int64_t run, int job, const char *key, bool lookup,
		    struct store_cache_source *source, struct error *err);
/*
 * The content hash of tree (a snapshot), or with paths of only its
 * entries at or under one of them: equal trees hash equal in any store.
 */
int store_tree_digest(struct store *store, int64_t tree, char *const *paths, size_t count,
		      uint8_t out[STORE_HASH_SIZE], struct error *err);
/* Appends "JOB LEN:PATH HASH\n" for each artifact of run (of job only; -1:
 * every job's), by job and path: what its artifacts hold. */
int store_run_artifact_digests(struct store *store, int64_t run, int job, struct strbuf *out,
			       struct error *err);

/* What a job holds of a backend's capacity while it runs. */
struct store_claim {
	int cpu;
	uint64_t memory;	/* bytes */
	uint64_t gpus;		/* a bit per GPU index */
};
/*
 * Claims for a job want's cpu and memory and gpu_count of the GPUs in
 * want->gpus, when what the live jobs of every process sharing the store
 * hold on backend leaves that much of capacity free: *granted gets the
 * claim (its gpus: the ones picked).  -EAGAIN when it does not fit, with
 * what is free now in *granted.  The claim ends with store_job_release,
 * or when its run ends.
 */
int store_job_claim(struct store *store, int64_t run, int job, const char *backend,
		    const struct store_claim *capacity, const struct store_claim *want,
		    int gpu_count, struct store_claim *granted, struct error *err);
int store_job_release(struct store *store, int64_t run, int job, struct error *err);

/* What a run's runner is asked to do, through the catalog. */
enum store_stop_request {
	STORE_STOP_NONE,
	STORE_STOP_STOP,	/* SIGTERM the jobs, SIGKILL after the grace */
	STORE_STOP_ABORT,	/* kill them now, store nothing */
};
/* Asks a live run to stop (an abort overrides a stop, never the reverse). */
int store_run_request_stop(struct store *store, int64_t run, enum store_stop_request request,
			   struct error *err);
int store_run_stop_request(struct store *store, int64_t run,
			   enum store_stop_request *request, struct error *err);

/*
 * Appends output of a job to the run's logs; fd says which of its streams
 * it came from (1: stdout, or both where they were one; 2: stderr).
 */
int store_log_append(struct store *store, int64_t run, int job, int fd,
		     const void *data, size_t len, struct error *err);
typedef int store_log_fn(void *ctx, int job, int fd, const void *data, size_t len);
/* How many bytes of logs a run has (of job only; -2: of all its jobs). */
int store_run_logs_size(struct store *store, int64_t run, int job, uint64_t *bytes,
			struct error *err);
/* Calls fn for each log row after *after, which it advances. */
int store_run_logs(struct store *store, int64_t run, int64_t *after,
		   store_log_fn *fn, void *ctx, struct error *err);
/* Records a stored tree as artifact path of a job (inside an ingest). */
int store_artifact_add(struct store *store, int64_t run, int job,
		       const char *path, int64_t tree, struct error *err);
/*
 * A folder of a live job shown in the tree as artifact path of the job
 * until the job stores it (artifacts with mount: true): dir is where it
 * is on the host.
 */
struct store_live_artifact {
	int job;
	const char *path;
	const char *dir;
};
int store_live_artifact_add(struct store *store, int64_t run,
			    const struct store_live_artifact *live, struct error *err);
/* Forgets the live folders of a job (it ended). */
int store_live_artifacts_clear(struct store *store, int64_t run, int job,
			       struct error *err);
typedef int store_live_artifact_fn(void *ctx, const struct store_live_artifact *live);
int store_run_live_artifacts(struct store *store, int64_t run, store_live_artifact_fn *fn,
			     void *ctx, struct error *err);
/* The newest done run of workflow in repo (any repo when NULL). */
int store_run_latest_done(struct store *store, const char *repo,
			  const char *workflow, struct store_run *out,
			  struct error *err);
/* Calls fn for each run of repo (all runs when NULL), newest first. */
int store_run_list(struct store *store, const char *repo, store_run_fn *fn,
		   void *ctx, struct error *err);

/* A daemon serving the tree of a repository's runs (`dstack mount`). */
struct store_daemon {
	char repo[512];
	char mountpoint[4096];
	pid_t pid;
	int64_t started;	/* proc_start_time of pid: pids are reused */
};
/* Records the daemon of its repository, replacing one recorded before. */
int store_daemon_add(struct store *store, const struct store_daemon *daemon,
		     struct error *err);
/* Forgets the daemon pid recorded for repo (if it is still that one). */
int store_daemon_remove(struct store *store, const char *repo, pid_t pid,
			struct error *err);
typedef int store_daemon_fn(void *ctx, const struct store_daemon *daemon);
int store_daemon_list(struct store *store, store_daemon_fn *fn, void *ctx,
		      struct error *err);

/* Resolves "RUN" or ":TAG" to a run. */
int store_run_find(struct store *store, const char *spec, struct store_run *out,
		   struct error *err);
/* Deletes a finished, untagged run; its objects stay until `gc`. */
int store_run_remove(struct store *store, const char *name, struct error *err);

int store_tag_add(struct store *store, const char *tag, const char *run_spec,
		  struct error *err);
/*
 * Checks that tag is a valid name no tag has yet: lets a caller refuse
 * before storing anything.  Adding the tag checks again, atomically.
 */
int store_tag_check_free(struct store *store, const char *tag,
			 struct error *err);
/* Points tag at a run, whether or not it named another before. */
int store_tag_move(struct store *store, const char *tag, const char *run_spec,
		   struct error *err);
/* -EINVAL, with the rules in the message, for a name a tag cannot have. */
int store_tag_name_check(const char *tag, struct error *err);
int store_tag_delete(struct store *store, const char *tag, struct error *err);
/* Calls fn for each tagged run, by tag name; a non-zero return stops. */
int store_tag_list(struct store *store, store_run_fn *fn, void *ctx,
		   struct error *err);

/* One file, folder or symlink inside an artifact. */
struct store_entry {
	int job;
	const char *artifact;	/* the artifact path it belongs to */
	const char *path;	/* relative to the artifact folder */
	mode_t mode;
	uint64_t size;
	const char *target;	/* symlinks */
	const uint8_t *chunks;	/* regular files: count records, see below */
	size_t chunk_count;
};
/* A chunk record inside store_entry.chunks. */
#define STORE_CHUNK_RECORD_SIZE (STORE_HASH_SIZE + 4)

typedef int store_entry_fn(void *ctx, const struct store_entry *entry);
/*
 * Calls fn for every entry of every artifact of run, by job, then artifact
 * path, parents before children.  A non-zero return from fn stops the walk
 * and is returned.
 */
int store_run_entries(struct store *store, int64_t run, store_entry_fn *fn,
		      void *ctx, struct error *err);

/* Writes the bytes of a regular-file entry to fd, verifying every chunk. */
int store_entry_extract(struct store *store, const struct store_entry *entry,
			int fd, store_progress_fn *progress, void *progress_ctx,
			struct error *err);
/*
 * Reads up to size bytes of a regular-file entry at offset into buf;
 * *done gets how many (short only at the end of the file).  Only the
 * chunks the range touches are read and decompressed, each verified;
 * decompressed chunks are kept in a cache shared by every store handle
 * of the process (bounded, thread-safe), so neighbouring reads from any
 * thread reuse them.  On failure *done is 0; buf may hold some verified
 * bytes of the range.
 */
int store_entry_pread(struct store *store, const struct store_entry *entry, void *buf,
		      size_t size, uint64_t offset, size_t *done, struct error *err);

/* Re-hashes every object and checks every reference; counts problems. */
int store_fsck(struct store *store, store_report_fn *report, void *ctx,
	       uint64_t *problems, struct error *err);

struct store_gc_stats {
	uint64_t trees_removed;
	uint64_t objects_removed;
	uint64_t packs_removed;
	uint64_t packs_rewritten;
	uint64_t bytes_freed;
};
/* Removes what no run or tag reaches; safe while others read. */
int store_gc(struct store *store, struct store_gc_stats *stats,
	     struct error *err);

#endif
