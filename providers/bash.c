/*
 * bash.c - the built-in `bash` provider: one job whose commands bash runs
 * in order, stopping at the first that fails.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "providers/providers.h"

static int provider_bash(const struct provider_input *in, struct job_spec **jobs,
			 size_t *count, struct error *err)
{
	struct job_spec *job;
	size_t i;

	if (!in->command_count)
		return error_set(err, -EINVAL, "workflow '%s': provider bash needs 'commands'",
				 in->workflow);
	job = xcalloc(1, sizeof(*job));
	job->script = job_script(in->commands, in->command_count);
	job->working_dir = in->working_dir ? xstrdup(in->working_dir) : NULL;
	job->artifacts = xcalloc(in->artifact_count + 1, sizeof(char *));
	for (i = 0; i < in->artifact_count; i++)
		job->artifacts[i] = xstrdup(in->artifacts[i]);
	job->artifact_count = in->artifact_count;
	job->ports = xcalloc(in->port_count + 1, sizeof(int));
	for (i = 0; i < in->port_count; i++)
		job->ports[i] = in->ports[i];
	job->port_count = in->port_count;
	*jobs = job;
	*count = 1;
	return 0;
}

char *job_script(char *const *commands, size_t count)
{
	struct strbuf script = STRBUF_INIT;
	size_t i;

	/* errexit: a failing command ends the job with its status. */
	strbuf_addstr(&script, "set -e\n");
	for (i = 0; i < count; i++)
		strbuf_addf(&script, "%s\n", commands[i]);
	return script.buf;
}

int provider_builtin_jobs(const char *provider, const struct provider_input *in,
			  struct job_spec **jobs, size_t *count, struct error *err)
{
	if (!strcmp(provider, "bash"))
		return provider_bash(in, jobs, count, err);
	return error_set(err, -ENOENT, "workflow '%s': unknown provider '%s'", in->workflow,
			 provider);
}

void job_specs_free(struct job_spec *jobs, size_t count)
{
	size_t i, j;

	for (i = 0; i < count; i++) {
		free(jobs[i].script);
		free(jobs[i].working_dir);
		for (j = 0; j < jobs[i].artifact_count; j++)
			free(jobs[i].artifacts[j]);
		free(jobs[i].artifacts);
		for (j = 0; j < jobs[i].env_count; j++)
			free(jobs[i].env[j]);
		free(jobs[i].env);
		free(jobs[i].ports);
		free(jobs[i].depends_on);
	}
	free(jobs);
}
