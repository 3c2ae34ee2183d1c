/*
 * builtin.c - the table of built-in providers: each one's parameters and
 * help, and the dispatch that checks a workflow against them before the
 * provider makes its jobs.  Also what every provider's jobs are made of.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "providers/internal.h"

enum param_type {
	PARAM_STRING,
	PARAM_STRING_OR_LIST,	/* of strings */
};

static const char *const param_type_names[] = {
	[PARAM_STRING] = "a string",
	[PARAM_STRING_OR_LIST] = "a string or a list of strings",
};

struct param {
	const char *name;
	enum param_type type;
	bool required;
	const char *alias;	/* another name for it, read when name is not given */
};

#define BUILTIN_PARAMS_MAX 4

/*
 * Only the parameters a provider reads are declared: every other key of
 * a workflow (env, deps, resources, ...) is the runner's, checked when
 * the workflow is loaded, or a custom provider's, and is let through.
 */
static const struct builtin {
	const char *name;
	provider_jobs_fn *jobs;
	const char *help;
	struct param params[BUILTIN_PARAMS_MAX];	/* up to the first without a name */
} builtins[] = {
	{ .name = "bash", .jobs = provider_bash_jobs,
	  .help = "runs `commands` with bash, stopping at the first that fails",
	  .params = {
		{ .name = "commands", .type = PARAM_STRING_OR_LIST, .required = true },
		{ .name = "requirements", .type = PARAM_STRING },
	  } },
	{ .name = "python", .jobs = provider_python_jobs,
	  .help = "runs the Python script `file` with `args`",
	  .params = {
		/* dstack 0.0.x called it `script` */
		{ .name = "file", .type = PARAM_STRING, .required = true, .alias = "script" },
		{ .name = "args", .type = PARAM_STRING_OR_LIST },
		{ .name = "requirements", .type = PARAM_STRING },
	  } },
	{ .name = "docker", .jobs = provider_docker_jobs,
	  .help = "runs `commands` in the Docker `image` (on the host backend: on the host)",
	  .params = {
		{ .name = "image", .type = PARAM_STRING, .required = true },
		{ .name = "commands", .type = PARAM_STRING_OR_LIST, .required = true },
	  } },
	{ .name = "curl", .jobs = provider_curl_jobs,
	  .help = "downloads `url` to the file `output` and stores its folder as an artifact",
	  .params = {
		{ .name = "url", .type = PARAM_STRING, .required = true },
		{ .name = "output", .type = PARAM_STRING, .required = true },
	  } },
};

#define BUILTIN_COUNT (sizeof(builtins) / sizeof(builtins[0]))

/* Not given: absent, null, or an empty list (no commands is no job). */
static bool param_missing(const struct json *value)
{
	return !value || value->type == JSON_NULL ||
	       (value->type == JSON_ARRAY && !value->count);
}

/*
 * A list's items may be written plain (`commands: [true]`, `args: [-n,
 * 10]`): the loader reads them as words, whatever YAML makes of them.
 */
static bool param_type_matches(const struct json *value, enum param_type type)
{
	size_t i;

	if (value->type == JSON_STRING)
		return true;
	if (value->type != JSON_ARRAY || type != PARAM_STRING_OR_LIST)
		return false;
	for (i = 0; i < value->count; i++) {
		enum json_type item = value->items[i].type;

		if (item != JSON_STRING && item != JSON_NUMBER && item != JSON_BOOL)
			return false;
	}
	return true;
}

static int builtin_check(const struct builtin *builtin, const struct provider_input *in,
			 struct error *err)
{
	const struct param *param;

	for (param = builtin->params;
	     param < builtin->params + BUILTIN_PARAMS_MAX && param->name; param++) {
		const char *name = param->name;
		const struct json *value = json_get(in->data, name);

		if (param_missing(value) && param->alias &&
		    !param_missing(json_get(in->data, param->alias))) {
			name = param->alias;
			value = json_get(in->data, name);
		}
		if (param_missing(value) && param->required)
			return error_set(err, -EINVAL, "workflow '%s': provider %s needs '%s'",
					 in->workflow, builtin->name, param->name);
		if (!param_missing(value) && !param_type_matches(value, param->type))
			return error_set(err, -EINVAL, "workflow '%s': '%s': expected %s",
					 in->workflow, name, param_type_names[param->type]);
	}
	return 0;
}

int provider_builtin_jobs(const char *provider, const struct provider_input *in,
			  struct job_spec **jobs, size_t *count, struct error *err)
{
	size_t i;
	int ret;

	for (i = 0; i < BUILTIN_COUNT; i++) {
		if (strcmp(builtins[i].name, provider))
			continue;
		ret = builtin_check(&builtins[i], in, err);
		return ret < 0 ? ret : builtins[i].jobs(in, jobs, count, err);
	}
	return error_set(err, -ENOENT, "workflow '%s': unknown provider '%s'", in->workflow,
			 provider);
}

void provider_builtin_list(void (*fn)(void *ctx, const char *name, const char *help),
			   void *ctx)
{
	size_t i;

	for (i = 0; i < BUILTIN_COUNT; i++)
		fn(ctx, builtins[i].name, builtins[i].help);
}

struct job_spec *provider_job(const struct provider_input *in, char *const *commands,
			      size_t count)
{
	struct job_spec *job = xcalloc(1, sizeof(*job));
	size_t i;

	job->script = job_script(commands, count);
	job->working_dir = in->working_dir ? xstrdup(in->working_dir) : NULL;
	job->artifacts = xcalloc(in->artifact_count + 1, sizeof(*job->artifacts));
	for (i = 0; i < in->artifact_count; i++) {
		job->artifacts[i].path = xstrdup(in->artifacts[i].path);
		job->artifacts[i].mount = in->artifacts[i].mount;
	}
	job->artifact_count = in->artifact_count;
	job->ports = xcalloc(in->port_count + 1, sizeof(int));
	for (i = 0; i < in->port_count; i++)
		job->ports[i] = in->ports[i];
	job->port_count = in->port_count;
	job->image = in->image ? xstrdup(in->image) : NULL;
	if (in->resources) {
		job->resources = *in->resources;
		job->resources.gpu_name = in->resources->gpu_name ?
					  xstrdup(in->resources->gpu_name) : NULL;
	}
	return job;
}

int provider_helper_path(const char *name, struct strbuf *path, struct error *err)
{
	char self[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (len < 0)
		return error_errno(err, -errno, "/proc/self/exe");
	self[len] = '\0';
	slash = strrchr(self, '/');
	strbuf_addf(path, "%.*s/%s", slash ? (int)(slash - self) : 0, self, name);
	if (access(path->buf, X_OK) == 0)
		return 0;
	strbuf_reset(path);
	strbuf_addf(path, "%s/%s", DSTACK_LIBEXECDIR, name);
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

void job_specs_free(struct job_spec *jobs, size_t count)
{
	size_t i, j;

	for (i = 0; i < count; i++) {
		free(jobs[i].script);
		free(jobs[i].working_dir);
		for (j = 0; j < jobs[i].artifact_count; j++)
			free(jobs[i].artifacts[j].path);
		free(jobs[i].artifacts);
		for (j = 0; j < jobs[i].env_count; j++)
			free(jobs[i].env[j]);
		free(jobs[i].env);
		free(jobs[i].ports);
		free(jobs[i].depends_on);
		free(jobs[i].image);
		free(jobs[i].resources.gpu_name);
	}
	free(jobs);
}
