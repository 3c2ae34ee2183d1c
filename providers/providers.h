/*
 * providers.h - providers turn one workflow into jobs.  The built-in ones
 * live here, in C; custom ones (.dstack/providers.yaml) speak the same
 * protocol through files (see DESIGN.md) and come with the runner.
 */
#ifndef DSTACK_PROVIDERS_H
#define DSTACK_PROVIDERS_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/json.h"
#include "lib/lib.h"

/* What a job asks of the machine; 0 or NULL: not asked. */
struct job_resources {
	int cpu;
	uint64_t memory;	/* bytes */
	uint64_t shm_size;	/* bytes */
	int gpu_count;
	char *gpu_name;		/* a GPU of this name (a substring of it) */
	uint64_t gpu_memory;	/* bytes, at least, per GPU */
};

/* An artifact folder of a job, relative to its working directory. */
struct job_artifact {
	char *path;
	bool mount;		/* shown live in the tree while the job runs */
};

/* What a provider reads of a workflow; commands have ${{ run.args }} expanded. */
struct provider_input {
	const char *workflow;
	char *const *commands;
	size_t command_count;
	const char *working_dir;	/* NULL: the repository root */
	const struct job_artifact *artifacts;
	size_t artifact_count;
	const int *ports;	/* port numbers the job opens, 0: any free port */
	size_t port_count;
	/* Parameters of the python provider (and requirements for bash). */
	const char *file;	/* the script to run */
	const char *args;	/* its arguments, one shell-ready line */
	const char *requirements;	/* a pip requirements file */
	const char *python;	/* "3.10": use python3.10 where present */
	const char *image;	/* the workflow's image, NULL when not given */
	const struct job_resources *resources;
	/* Every parameter the user wrote (workflow.data of DESIGN.md). */
	const struct json *data;
};

/* One job as a provider describes it. */
struct job_spec {
	char *script;		/* run by bash in the working directory */
	char *working_dir;	/* relative to the snapshot root; NULL: root */
	struct job_artifact *artifacts;
	size_t artifact_count;
	char **env;		/* "K=V" from the provider, under the workflow's env */
	size_t env_count;
	int *ports;		/* passed on as PORT_0..; 0: a free port is chosen */
	size_t port_count;
	size_t *depends_on;	/* indexes of jobs that must be done first */
	size_t depends_on_count;
	bool python_env;	/* runs in the store's Python environment (pip works) */
	char *image;		/* recorded on the host backend; NULL: none */
	struct job_resources resources;
	bool worker;		/* starts once job `master` runs, with its address */
	size_t master;
};

/*
 * The path of a helper program of dstack's (dstack-curl, dstack-docker):
 * beside this executable (a build tree), else where it is installed.
 */
int provider_helper_path(const char *name, struct strbuf *path, struct error *err);

/* A job's script: bash stops at the first command that fails. */
char *job_script(char *const *commands, size_t count);

/*
 * The jobs of a built-in provider: -ENOENT when no built-in has that
 * name, -EINVAL (naming the workflow and the parameter) when a parameter
 * the provider needs is missing or of the wrong type, before any job is
 * made.
 */
int provider_builtin_jobs(const char *provider, const struct provider_input *in,
			  struct job_spec **jobs, size_t *count, struct error *err);
void job_specs_free(struct job_spec *jobs, size_t count);

/* Calls fn with the name and one line of help of each built-in provider. */
void provider_builtin_list(void (*fn)(void *ctx, const char *name, const char *help),
			   void *ctx);

/*
 * What the curl provider's job runs (`dstack _curl URL OUTPUT`): downloads
 * url, following redirects, into output (relative to the current
 * directory; missing folders are made), through a temporary file renamed
 * into place, so a failure leaves no output.  Progress lines go to log.
 * An HTTP status of 400 or more, or no connection, fails (-EIO) naming
 * the URL and the status or reason; *stop set by a signal handler gives
 * up (-EINTR).
 */
int provider_curl_fetch(const char *url, const char *output, FILE *log,
			const volatile sig_atomic_t *stop, struct error *err);

#endif
