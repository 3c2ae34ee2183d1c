/*
 * bash.c - the built-in providers that run commands: `bash` (the
 * workflow's commands, in order, stopping at the first that fails) and
 * `python` (a script with its arguments).  Both install a requirements
 * file with pip first when one is given.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "providers/providers.h"

/*
 * The one job of a built-in provider: its commands, after
 * `pip3 install -r` when a requirements file is given, with the
 * workflow's working_dir, artifacts and ports.
 */
static struct job_spec *provider_job(const struct provider_input *in,
				     char *const *commands, size_t command_count)
{
	struct job_spec *job = xcalloc(1, sizeof(*job));
	char **all = xcalloc(command_count + 2, sizeof(char *));
	struct strbuf pip = STRBUF_INIT;
	size_t i, n = 0;

	if (in->requirements) {
		strbuf_addf(&pip, "pip3 install -r '%s'", in->requirements);
		all[n++] = pip.buf;
		job->python_env = true;
	}
	for (i = 0; i < command_count; i++)
		all[n++] = commands[i];
	job->script = job_script(all, n);
	strbuf_release(&pip);
	free(all);
	job->working_dir = in->working_dir ? xstrdup(in->working_dir) : NULL;
	job->artifacts = xcalloc(in->artifact_count + 1, sizeof(char *));
	for (i = 0; i < in->artifact_count; i++)
		job->artifacts[i] = xstrdup(in->artifacts[i]);
	job->artifact_count = in->artifact_count;
	job->ports = xcalloc(in->port_count + 1, sizeof(int));
	for (i = 0; i < in->port_count; i++)
		job->ports[i] = in->ports[i];
	job->port_count = in->port_count;
	return job;
}

static int provider_python(const struct provider_input *in, struct job_spec **jobs,
			   size_t *count, struct error *err)
{
	struct strbuf run = STRBUF_INIT;
	char *commands[1];

	if (!in->file)
		return error_set(err, -EINVAL, "workflow '%s': provider python needs 'file'",
				 in->workflow);
	/* python: 3.x picks that interpreter where the host has it. */
	if (in->python)
		strbuf_addf(&run, "py=python%s; command -v \"$py\" >/dev/null ||"
			    " { echo \"dstack: $py not found, using python3\"; py=python3; }; ",
			    in->python);
	else
		strbuf_addstr(&run, "py=python3; ");
	strbuf_addf(&run, "\"$py\" '%s'%s%s", in->file, in->args ? " " : "",
		    in->args ? in->args : "");
	commands[0] = run.buf;
	*jobs = provider_job(in, commands, 1);
	(*jobs)->python_env = true;
	*count = 1;
	strbuf_release(&run);
	return 0;
}

static int provider_bash(const struct provider_input *in, struct job_spec **jobs,
			 size_t *count, struct error *err)
{
	if (!in->command_count)
		return error_set(err, -EINVAL, "workflow '%s': provider bash needs 'commands'",
				 in->workflow);
	*jobs = provider_job(in, in->commands, in->command_count);
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
	if (!strcmp(provider, "python"))
		return provider_python(in, jobs, count, err);
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
