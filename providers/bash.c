/*
 * bash.c - the built-in providers that run commands: `bash` (the
 * workflow's commands, in order, stopping at the first that fails) and
 * `python` (a script with its arguments).  Both install a requirements
 * file with pip first when one is given.
 */
#include <stdlib.h>

#include "providers/internal.h"

/*
 * The one job of bash and python: its commands, after `pip3 install -r`
 * when a requirements file is given.
 */
static struct job_spec *pip_job(const struct provider_input *in, char *const *commands,
				size_t command_count)
{
	char **all = xcalloc(command_count + 2, sizeof(char *));
	struct strbuf pip = STRBUF_INIT;
	struct job_spec *job;
	size_t i, n = 0;

	if (in->requirements) {
		strbuf_addstr(&pip, "pip3 install -r ");
		strbuf_add_shell_word(&pip, in->requirements);
		all[n++] = pip.buf;
	}
	for (i = 0; i < command_count; i++)
		all[n++] = commands[i];
	job = provider_job(in, all, n);
	/* pip refuses Debian's system Python: the store's environment takes it. */
	job->python_env = in->requirements != NULL;
	strbuf_release(&pip);
	free(all);
	return job;
}

int provider_python_jobs(const struct provider_input *in, struct job_spec **jobs,
			 size_t *count, struct error *err)
{
	struct strbuf run = STRBUF_INIT;
	char *commands[1];

	(void)err;
	/* python: 3.x picks that interpreter where the host has it. */
	if (in->python) {
		strbuf_addstr(&run, "py=python");
		strbuf_add_shell_word(&run, in->python);
		strbuf_addstr(&run, "; command -v \"$py\" >/dev/null ||"
			      " { echo \"dstack: $py not found, using python3\"; py=python3; }; ");
	} else {
		strbuf_addstr(&run, "py=python3; ");
	}
	strbuf_addstr(&run, "\"$py\" ");
	strbuf_add_shell_word(&run, in->file);
	if (in->args)
		strbuf_addf(&run, " %s", in->args);
	commands[0] = run.buf;
	*jobs = pip_job(in, commands, 1);
	(*jobs)->python_env = true;
	*count = 1;
	strbuf_release(&run);
	return 0;
}

int provider_bash_jobs(const struct provider_input *in, struct job_spec **jobs,
		       size_t *count, struct error *err)
{
	(void)err;
	*jobs = pip_job(in, in->commands, in->command_count);
	*count = 1;
	return 0;
}
