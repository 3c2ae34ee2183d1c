/*
 * runner.h - running workflows: load the repository's workflows, ask the
 * provider for jobs, snapshot the repository, run the jobs on the host,
 * keep their logs and store their artifacts.
 */
#ifndef DSTACK_RUNNER_H
#define DSTACK_RUNNER_H

#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

/* Whether jobs may be served by the job result cache. */
enum runner_cache {
	RUNNER_CACHE_WORKFLOW,	/* as the workflow says (cache: true) */
	RUNNER_CACHE_ON,	/* run --cache */
	RUNNER_CACHE_OFF,	/* run --no-cache: every job runs; keys are recorded */
};

struct runner_request {
	const char *cwd;		/* inside the user's git repository */
	const char *workflow;
	/*
	 * "RUN" or ":TAG": runs that run's workflow with its args again on
	 * its snapshot, wherever the checkout has gone since (workflow, args
	 * and cwd are then unused).
	 */
	const char *rerun;
	/* "host" or "docker"; NULL: $DSTACK_HOME/config.yaml's, else host. */
	const char *backend;
	enum runner_cache cache;
	char *const *args;
	size_t arg_count;
	/*
	 * Hears every piece of job output as it comes, when not NULL: fd 2
	 * for what a job wrote to stderr where it was kept apart, else 1.
	 */
	int (*output)(void *ctx, int fd, const void *data, size_t len);
	void *output_ctx;
	/* Hears warnings ("FILE:LINE:COL: ..."), when not NULL. */
	void (*warn)(void *ctx, const char *line);
	void *warn_ctx;
	/* Hears of the run once it exists (run -d hands its name back). */
	void (*created)(void *ctx, const struct store_run *run);
	void *created_ctx;
	/*
	 * SIGINT, SIGTERM and SIGHUP stop the run, SIGUSR1 aborts it (the
	 * CLI); a daemon running many runs leaves its signals alone.
	 */
	bool stop_on_signals;
};

/*
 * Runs a workflow to its end in this process.  Fails before anything runs
 * for an unknown workflow (-ENOENT) or one that cannot start (-EINVAL);
 * once the run exists, *run describes it and a failing job is no error:
 * run->status says "failed".
 */
int runner_run(struct store *store, const struct runner_request *request,
	       struct store_run *run, struct error *err);

/*
 * Stops a live run: its runner (this or another process) is signalled
 * (SIGTERM, or SIGUSR1 to abort) and this waits until the run has ended.
 * A run whose runner died is marked failed.  -EALREADY for an ended run.
 */
int runner_stop(struct store *store, const char *name, bool abort,
		struct store_run *run, struct error *err);
/*
 * `dstack job-exec FOLDER`: runs the slurm backend's job that FOLDER
 * describes, on this node, without the catalog (exec.c); *code gets the
 * job's exit status.
 */
int runner_job_exec(const char *folder, int *code, struct error *err);
/* Marks failed the live runs whose runner is gone; returns how many. */
int runner_reap_orphans(struct store *store, struct error *err);

/*
 * A live daemon serving the tree of repo's runs (of any repository's when
 * repo is NULL) over this store: -ENOENT when there is none.
 */
int runner_daemon_find(struct store *store, const char *repo, struct store_daemon *daemon,
		       struct error *err);

/*
 * A process that takes many runs (the daemon) keeps libgit2 started
 * between them: starting it parses the system's CA bundle, about 5 ms a
 * run.  Each hold is ended by a release.
 */
void runner_git_hold(void);
void runner_git_release(void);

/* The identity runs of the repository around cwd are recorded under. */
int runner_repo_id(const char *cwd, struct strbuf *out, struct error *err);
/* The working tree root of the repository around cwd. */
int runner_repo_root(const char *cwd, struct strbuf *out, struct error *err);

/*
 * Calls fn with the name of each provider of the repository around cwd
 * (.dstack/providers.yaml) and the file, relative to the repository root,
 * that defines it; warn hears that file's warnings.  Outside a repository
 * there are none.
 */
int runner_providers_each(const char *cwd,
			  void (*fn)(void *ctx, const char *name, const char *file),
			  void (*warn)(void *ctx, const char *line), void *ctx,
			  struct error *err);

/*
 * Calls fn with each workflow of the repository whose working tree is
 * root, and the workflow as loaded, as YAML; a non-zero return stops.
 */
int runner_workflows_each(const char *root,
			  int (*fn)(void *ctx, const char *name, const char *spec_yaml),
			  void *ctx, struct error *err);

#endif
