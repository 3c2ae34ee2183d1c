/*
 * providers.h - providers turn one workflow into jobs.  The built-in ones
 * live here, in C; custom ones (.dstack/providers.yaml) speak the same
 * protocol through files (see DESIGN.md) and come with the runner.
 */
#ifndef DSTACK_PROVIDERS_H
#define DSTACK_PROVIDERS_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/lib.h"

/* What a provider reads of a workflow; commands have ${{ run.args }} expanded. */
struct provider_input {
	const char *workflow;
	char *const *commands;
	size_t command_count;
	const char *working_dir;	/* NULL: the repository root */
	char *const *artifacts;
	size_t artifact_count;
	const int *ports;	/* port numbers the job opens, 0: any free port */
	size_t port_count;
	/* Parameters of the python provider (and requirements for bash). */
	const char *file;	/* the script to run */
	const char *args;	/* its arguments, one shell-ready line */
	const char *requirements;	/* a pip requirements file */
	const char *python;	/* "3.10": use python3.10 where present */
};

/* One job as a provider describes it. */
struct job_spec {
	char *script;		/* run by bash in the working directory */
	char *working_dir;	/* relative to the snapshot root; NULL: root */
	char **artifacts;	/* relative to working_dir */
	size_t artifact_count;
	char **env;		/* "K=V" from the provider, under the workflow's env */
	size_t env_count;
	int *ports;		/* passed on as PORT_0..; 0: a free port is chosen */
	size_t port_count;
	size_t *depends_on;	/* indexes of jobs that must be done first */
	size_t depends_on_count;
	bool python_env;	/* runs in the store's Python environment (pip works) */
};

/* A job's script: bash stops at the first command that fails. */
char *job_script(char *const *commands, size_t count);

/*
 * The jobs of a built-in provider: -ENOENT when no built-in has that
 * name, -EINVAL (naming the parameter) when the workflow does not suit it.
 */
int provider_builtin_jobs(const char *provider, const struct provider_input *in,
			  struct job_spec **jobs, size_t *count, struct error *err);
void job_specs_free(struct job_spec *jobs, size_t count);

#endif
