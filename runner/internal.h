/*
 * internal.h - what the files of runner/ share: snapshots and host jobs.
 */
#ifndef DSTACK_RUNNER_INTERNAL_H
#define DSTACK_RUNNER_INTERNAL_H

#include <signal.h>
#include <stdbool.h>

#include "providers/providers.h"
#include "runner/runner.h"
#include "runner/workflow.h"

struct snapshot_info {
	char *root;		/* the repository's working tree */
	char *repo;		/* remote URL (origin, else the first), else root */
	char commit[41];	/* HEAD, empty in a repository without commits */
	char *branch;		/* HEAD's branch, NULL when detached or unborn */
	bool dirty;		/* uncommitted changes or untracked files */
};

/* Finds the repository around cwd and describes it. */
int snapshot_describe(const char *cwd, struct snapshot_info *info,
		      struct error *err);
/*
 * Copies the working tree as git sees it into dest: tracked files as they
 * are now (deleted ones left out) and untracked files not ignored.
 */
int snapshot_copy(const struct snapshot_info *info, const char *dest,
		  struct error *err);
void snapshot_info_release(struct snapshot_info *info);

/* Runs a bash script on the host in dir with env, in its own process group. */
struct host_job {
	const char *dir;
	const char *script;
	char *const *env;	/* "K=V", NULL-terminated */
	/* Made read-only in the job's own mount namespace (where allowed). */
	char *const *read_only;
	size_t read_only_count;
	int (*output)(void *ctx, const void *data, size_t len);
	/* Called when output pauses, at least every HOST_TICK_MS. */
	int (*tick)(void *ctx);
	void *output_ctx;
};
#define HOST_TICK_MS 250
/* How long a stopped job has between SIGTERM and SIGKILL. */
#define HOST_STOP_GRACE_NS (10ll * 1000000000)
/*
 * *status: the exit code, or 128 + signal.  When runner_stopping is set
 * meanwhile, the job's process group is stopped and *stopped set.
 */
int host_job_run(const struct host_job *job, int *status, bool *stopped,
		 struct error *err);
/*
 * Set by the signals that stop a run in this process: SIGINT, SIGTERM and
 * SIGHUP stop it; SIGUSR1 aborts it (jobs killed at once, nothing stored).
 */
extern volatile sig_atomic_t runner_stopping;
extern volatile sig_atomic_t runner_aborting;

/* An environment: "K=V" strings, NULL-terminated; a later name wins. */
struct job_env {
	char **vars;
	size_t count;
};
void job_env_set(struct job_env *env, const char *name, const char *value);
void job_env_put(struct job_env *env, const char *var);	/* "K=V" */
void job_env_release(struct job_env *env);

/* Output of job (or -1: the provider) of a run, on its way to the logs. */
struct job_output {
	struct store *store;
	const struct runner_request *request;
	int64_t run;
	int job;
	struct strbuf pending;
	struct error err;
};
int job_output_write(void *ctx, const void *data, size_t len);
int job_output_tick(void *ctx);
int job_output_flush(struct job_output *out);
/* A "dstack: ..." line of our own in the job's output. */
void job_output_say(struct job_output *out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Puts the store's Python environment (made on first use) and the dstack
 * module within reach of env: PATH, VIRTUAL_ENV, PYTHONUSERBASE.
 */
int runner_python_env(struct store *store, struct job_env *env, struct error *err);

/* Custom providers (custom.c). */
/* Checks the workflow's parameters against the provider's schema, if any. */
int custom_provider_validate(const char *root, const struct provider_def *def,
			     const struct workflow *workflow, struct error *err);
/*
 * Runs the provider for a run that exists; its output goes to the run's
 * logs.  -EPROTO when the provider fails or writes bad jobs: the message
 * names the provider and the field.
 */
int custom_provider_jobs(struct store *store, const struct runner_request *request,
			 const struct provider_def *def, const struct snapshot_info *info,
			 const struct workflow *workflow, const struct store_run *run,
			 struct job_spec **jobs, size_t *count, struct error *err);

#endif
