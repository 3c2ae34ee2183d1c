/*
 * internal.h - what the files of runner/ share: snapshots and host jobs.
 */
#ifndef DSTACK_RUNNER_INTERNAL_H
#define DSTACK_RUNNER_INTERNAL_H

#include <stdbool.h>

#include "runner/runner.h"

struct snapshot_info {
	char *root;		/* the repository's working tree */
	char *repo;		/* remote URL (origin, else the first), else root */
	char commit[41];	/* HEAD, empty in a repository without commits */
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
/* *status: the exit code, or 128 + signal. */
int host_job_run(const struct host_job *job, int *status, struct error *err);

#endif
