/*
 * slurm.h - jobs of the Slurm backend: submit a batch script, read the
 * state of jobs, cancel them.  Two ways to the same cluster: Slurm's
 * commands (sbatch, squeue, scancel) on this host, or slurmrestd's
 * openapi/v0.0.38 over HTTP with a JWT (libcurl).  Only the dstack-slurm
 * helper links this, so dstack itself never loads libcurl.
 */
#ifndef DSTACK_SLURM_H
#define DSTACK_SLURM_H

#include <stddef.h>

#include "lib/json.h"
#include "lib/lib.h"

/* Where jobs go: SETTINGS.json of dstack-slurm. */
struct slurm_settings {
	struct json *doc;	/* owns the strings below */
	const char *url;	/* slurmrestd, "http://host:6820"; NULL: the commands */
	char *token;		/* the JWT for url (token_file's or $SLURM_JWT) */
	const char *user;	/* X-SLURM-USER-NAME: who the jobs run as (REST only) */
	const char *partition;	/* NULL: the cluster's default */
	const char *account;	/* NULL: the user's default */
	char **options;		/* more sbatch options, "--time=10" */
	size_t option_count;
	char *own_user;		/* user when it is the effective user's name */
};

/* One batch job: REQUEST.json of dstack-slurm submit. */
struct slurm_request {
	struct json *doc;	/* owns the strings below */
	const char *name;
	const char *script;	/* "#!..." */
	const char *workdir;
	const char *output;	/* stdout and stderr of the script */
	char **env;		/* "K=V": the script's whole environment */
	size_t env_count;
	long long cpus;		/* per task; 0: the cluster's default */
	long long memory_mb;	/* 0: the cluster's default */
	long long gpus;		/* 0: none */
	const char *gpu_name;	/* "a100"; NULL: any */
	long long *after_ok;	/* run only once these jobs completed with 0 */
	size_t after_ok_count;
};

/* What Slurm says of one job. */
struct slurm_job_state {
	long long id;
	char state[32];		/* Slurm's word: PENDING, RUNNING, COMPLETED, ...; UNKNOWN: forgotten */
	char reason[64];	/* Slurm's reason word, "" for None */
	char node[256];		/* the first node of the job's NodeList, "" before placed */
	int exit_code;
	int signal;
};

/*
 * Reads SETTINGS.json.  With a url, the token comes from token_file's
 * contents (trimmed), else $SLURM_JWT; neither is an error.  user defaults
 * to the name of the effective user.
 */
int slurm_settings_read(const char *path, struct slurm_settings *settings, struct error *err);
void slurm_settings_release(struct slurm_settings *settings);

/* Reads REQUEST.json; name and script are needed. */
int slurm_request_read(const char *path, struct slurm_request *request, struct error *err);
void slurm_request_release(struct slurm_request *request);

/*
 * Submits the request with the settings' partition, account and options;
 * *id gets the job's id.  A request Slurm refuses fails with Slurm's own
 * message; so does an option the REST API has no field for.
 */
int slurm_submit(const struct slurm_settings *settings, const struct slurm_request *request,
		 long long *id, struct error *err);

/*
 * Fills states[i] for ids[i], i < count; a job Slurm no longer knows is
 * "UNKNOWN", which is no error.
 */
int slurm_state(const struct slurm_settings *settings, const long long *ids, size_t count,
		struct slurm_job_state *states, struct error *err);

/* Cancels the jobs; one that has ended, or that Slurm forgot, is no error. */
int slurm_cancel(const struct slurm_settings *settings, const long long *ids, size_t count,
		 struct error *err);

/* The first host of a Slurm host list: "gpu[07-09,12],cpu1" gives "gpu07". */
void slurm_first_host(const char *list, char *out, size_t size);

/*
 * A time limit as sbatch takes it (MIN, MIN:SEC, H:MIN:SEC, D-H, D-H:MIN,
 * D-H:MIN:SEC) in whole minutes, rounded up; -1 for INFINITE/UNLIMITED.
 * -EINVAL when text is none of these.
 */
int slurm_parse_minutes(const char *text, long long *minutes);

#endif
