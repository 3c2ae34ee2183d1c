/*
 * custom.c - custom providers, the seed's mechanism: a provider defined in
 * .dstack/providers.yaml runs its commands on the host in a snapshot of
 * the repository, reads the workflow from the JSON file named by
 * DSTACK_WORKFLOW and writes its jobs, as JSON, to the file named by
 * DSTACK_JOBS.  Its output goes to the run's logs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/json.h"
#include "runner/internal.h"

extern char **environ;

int custom_provider_validate(const char *root, const struct provider_def *def,
			     const struct workflow *workflow, struct error *err)
{
	struct json *schema = NULL, *data = NULL;
	struct error why = { 0 };
	char *text = NULL;
	int ret;

	if (!def->schema)
		return 0;
	ret = workflow_yaml_file_to_json(root, def->schema, &text, err);
	if (ret < 0)
		return ret;
	ret = json_parse(text, strlen(text), &schema, err);
	if (ret == 0)
		ret = json_parse(workflow->data_json, strlen(workflow->data_json), &data, err);
	if (ret == 0 && json_schema_validate(schema, data, &why) < 0)
		ret = error_set(err, -EINVAL, "%s:%d:%d: workflow '%s': %s (provider '%s', %s)",
				workflow->position.file, workflow->position.line,
				workflow->position.column, workflow->name, why.message,
				def->name, def->schema);
	json_free(schema);
	json_free(data);
	free(text);
	return ret;
}

/* DESIGN.md's DSTACK_WORKFLOW object. */
static void workflow_file_json(struct strbuf *out, const struct workflow *workflow,
			       const struct store_run *run, const struct snapshot_info *info,
			       char *const *args, size_t arg_count)
{
	size_t i;

	strbuf_addf(out, "{\"data\": %s, \"workflow\": ", workflow->data_json);
	json_add_string(out, workflow->name);
	strbuf_addstr(out, ", \"run_name\": ");
	json_add_string(out, run->name);
	strbuf_addstr(out, ", \"args\": [");
	for (i = 0; i < arg_count; i++) {
		strbuf_addstr(out, i ? ", " : "");
		json_add_string(out, args[i]);
	}
	strbuf_addstr(out, "], \"tag\": ");
	if (run->tag[0])
		json_add_string(out, run->tag);
	else
		strbuf_addstr(out, "null");
	strbuf_addstr(out, ", \"repo\": {\"url\": ");
	json_add_string(out, info->repo);
	strbuf_addstr(out, ", \"branch\": ");
	if (info->branch)
		json_add_string(out, info->branch);
	else
		strbuf_addstr(out, "null");
	strbuf_addstr(out, ", \"commit\": ");
	json_add_string(out, info->commit);
	strbuf_addf(out, ", \"dirty\": %s}}\n", info->dirty ? "true" : "false");
}

/* A list of strings, copied; NULL text names what was expected. */
static int json_strings(const struct json *value, char ***out, size_t *count)
{
	size_t i;

	if (value->type != JSON_ARRAY)
		return -EINVAL;
	for (i = 0; i < value->count; i++)
		if (value->items[i].type != JSON_STRING)
			return -EINVAL;
	*out = xcalloc(value->count + 1, sizeof(char *));
	for (i = 0; i < value->count; i++)
		(*out)[i] = xstrdup(value->items[i].string);
	*count = value->count;
	return 0;
}

static void free_strings(char **strings, size_t count)
{
	size_t i;

	for (i = 0; i < count; i++)
		free(strings[i]);
	free(strings);
}

/* A size: bytes as a number, or "512MB" style text. */
static bool json_size(const struct json *value, uint64_t *bytes)
{
	long long number;

	if (json_integer(value, &number) && number >= 0) {
		*bytes = (uint64_t)number;
		return true;
	}
	return value->type == JSON_STRING && workflow_parse_size(value->string, bytes) == 0;
}

/* resources: {cpu, memory, gpu: N | {count, name, memory}, shm_size}. */
static int job_resources_from_json(const struct json *object, size_t index,
				   struct job_resources *res, struct error *err)
{
	const struct json *gpu = json_get(object, "gpu"), *v;
	long long number;
	size_t i;

	for (i = 0; i < object->count; i++) {
		const char *key = object->keys[i];

		if (strcmp(key, "cpu") && strcmp(key, "memory") && strcmp(key, "gpu") &&
		    strcmp(key, "shm_size"))
			return error_set(err, -EINVAL, "jobs[%zu].resources: unknown field '%s'",
					 index, key);
	}
	if ((v = json_get(object, "cpu")) && v->type != JSON_NULL) {
		if (!json_integer(v, &number) || number < 0 || number > 65536)
			return error_set(err, -EINVAL, "jobs[%zu].resources.cpu: expected a count",
					 index);
		res->cpu = (int)number;
	}
	if ((v = json_get(object, "memory")) && v->type != JSON_NULL && !json_size(v, &res->memory))
		return error_set(err, -EINVAL,
				 "jobs[%zu].resources.memory: expected a size (512MB, 16GB)", index);
	if ((v = json_get(object, "shm_size")) && v->type != JSON_NULL &&
	    !json_size(v, &res->shm_size))
		return error_set(err, -EINVAL,
				 "jobs[%zu].resources.shm_size: expected a size (512MB, 16GB)", index);
	if (!gpu || gpu->type == JSON_NULL)
		return 0;
	if (json_integer(gpu, &number) && number >= 0 && number <= HOST_GPUS_MAX) {
		res->gpu_count = (int)number;
		return 0;
	}
	if (gpu->type != JSON_OBJECT)
		return error_set(err, -EINVAL,
				 "jobs[%zu].resources.gpu: expected a count or {count, name, memory}",
				 index);
	/* A name or memory alone asks for one GPU. */
	res->gpu_count = 1;
	if ((v = json_get(gpu, "count")) && v->type != JSON_NULL) {
		if (!json_integer(v, &number) || number < 0 || number > HOST_GPUS_MAX)
			return error_set(err, -EINVAL, "jobs[%zu].resources.gpu.count: expected a count",
					 index);
		res->gpu_count = (int)number;
	}
	if ((v = json_get(gpu, "name")) && v->type != JSON_NULL) {
		if (v->type != JSON_STRING)
			return error_set(err, -EINVAL, "jobs[%zu].resources.gpu.name: expected a string",
					 index);
		res->gpu_name = xstrdup(v->string);
	}
	if ((v = json_get(gpu, "memory")) && v->type != JSON_NULL && !json_size(v, &res->gpu_memory))
		return error_set(err, -EINVAL,
				 "jobs[%zu].resources.gpu.memory: expected a size (16GB)", index);
	return 0;
}

/*
 * A job's artifacts: paths, or {path: P, mount: true} as workflows write
 * them (a provider may hand on workflow.data["artifacts"] as it is).
 */
static int job_artifacts_from_json(const struct json *list, size_t index,
				   struct job_spec *job, struct error *err)
{
	size_t i;

	if (list->type != JSON_ARRAY)
		return error_set(err, -EINVAL, "jobs[%zu].artifacts: expected a list of paths", index);
	job->artifacts = xcalloc(list->count + 1, sizeof(*job->artifacts));
	for (i = 0; i < list->count; i++) {
		const struct json *item = &list->items[i], *path = item, *mount = NULL;
		struct job_artifact *artifact = &job->artifacts[job->artifact_count];

		if (item->type == JSON_OBJECT) {
			size_t k;

			for (k = 0; k < item->count; k++)
				if (strcmp(item->keys[k], "path") && strcmp(item->keys[k], "mount"))
					return error_set(err, -EINVAL,
							 "jobs[%zu].artifacts[%zu]: unknown field '%s'",
							 index, i, item->keys[k]);
			path = json_get(item, "path");
			mount = json_get(item, "mount");
		}
		if (!path || path->type != JSON_STRING)
			return error_set(err, -EINVAL,
					 "jobs[%zu].artifacts[%zu]: expected a path or {path: P, mount: true}",
					 index, i);
		if (mount && mount->type != JSON_BOOL && mount->type != JSON_NULL)
			return error_set(err, -EINVAL, "jobs[%zu].artifacts[%zu].mount: expected true or false",
					 index, i);
		if (path_plain(path->string, &artifact->path) < 0)
			return error_set(err, -EINVAL,
					 "jobs[%zu].artifacts[%zu]: '%s' names no folder of the working directory",
					 index, i, path->string);
		job->artifact_count++;
		artifact->mount = mount && mount->boolean;
		if (!path_is_contained(artifact->path))
			return error_set(err, -EINVAL,
					 "jobs[%zu].artifacts[%zu]: '%s' must be a relative path on the host backend",
					 index, i, artifact->path);
	}
	return 0;
}

/* One job object of DSTACK_JOBS; errors name the field. */
static int job_from_json(const struct json *object, size_t index, size_t total,
			 struct job_spec *job, struct error *err)
{
	static const char *const known[] = {
		"image", "commands", "env", "ports", "working_dir", "artifacts",
		"resources", "depends_on", "master", NULL,
	};
	const struct json *value;
	char **commands = NULL;
	size_t i, command_count = 0;
	long long number;

	if (object->type != JSON_OBJECT)
		return error_set(err, -EINVAL, "jobs[%zu]: expected an object", index);
	for (i = 0; i < object->count; i++) {
		const char *const *k = known;

		while (*k && strcmp(*k, object->keys[i]))
			k++;
		if (!*k)
			return error_set(err, -EINVAL, "jobs[%zu]: unknown field '%s'", index,
					 object->keys[i]);
	}
	for (i = 0; i < object->count; i++) {
		const char *key = object->keys[i];
		const struct json *v = &object->items[i];

		/* commands last, when nothing else can fail: see below. */
		if (v->type == JSON_NULL || !strcmp(key, "commands"))
			continue;
		if (!strcmp(key, "image")) {
			/* Images matter on container backends; the host records them. */
			if (v->type != JSON_STRING)
				return error_set(err, -EINVAL, "jobs[%zu].image: expected a string", index);
			job->image = *v->string ? xstrdup(v->string) : NULL;
		} else if (!strcmp(key, "working_dir")) {
			if (v->type != JSON_STRING || (*v->string && !path_is_contained(v->string)))
				return error_set(err, -EINVAL,
						 "jobs[%zu].working_dir: expected a relative path", index);
			job->working_dir = *v->string ? xstrdup(v->string) : NULL;
		} else if (!strcmp(key, "artifacts")) {
			int ret = job_artifacts_from_json(v, index, job, err);

			if (ret < 0)
				return ret;
		} else if (!strcmp(key, "env")) {
			size_t j;

			if (v->type != JSON_OBJECT)
				return error_set(err, -EINVAL, "jobs[%zu].env: expected an object", index);
			job->env = xcalloc(v->count + 1, sizeof(char *));
			for (j = 0; j < v->count; j++) {
				struct strbuf var = STRBUF_INIT;

				if (v->items[j].type != JSON_STRING)
					return error_set(err, -EINVAL, "jobs[%zu].env.%s: expected a string",
							 index, v->keys[j]);
				strbuf_addf(&var, "%s=%s", v->keys[j], v->items[j].string);
				job->env[job->env_count++] = var.buf;
			}
		} else if (!strcmp(key, "ports")) {
			size_t j;

			if (json_integer(v, &number) && number >= 0 && number <= 64) {
				job->ports = xcalloc((size_t)number + 1, sizeof(int));
				job->port_count = (size_t)number;
				continue;
			}
			if (v->type != JSON_ARRAY)
				return error_set(err, -EINVAL,
						 "jobs[%zu].ports: expected a count or a list of ports", index);
			job->ports = xcalloc(v->count + 1, sizeof(int));
			for (j = 0; j < v->count; j++) {
				if (!json_integer(&v->items[j], &number) || number < 1 || number > 65535)
					return error_set(err, -EINVAL, "jobs[%zu].ports[%zu]: expected a port number",
							 index, j);
				job->ports[job->port_count++] = (int)number;
			}
		} else if (!strcmp(key, "depends_on")) {
			size_t j;

			if (v->type != JSON_ARRAY)
				return error_set(err, -EINVAL, "jobs[%zu].depends_on: expected a list of job indexes",
						 index);
			job->depends_on = xcalloc(v->count + 1, sizeof(size_t));
			for (j = 0; j < v->count; j++) {
				if (!json_integer(&v->items[j], &number) || number < 0 ||
				    (size_t)number >= total || (size_t)number == index)
					return error_set(err, -EINVAL,
							 "jobs[%zu].depends_on[%zu]: expected the index of another job",
							 index, j);
				job->depends_on[job->depends_on_count++] = (size_t)number;
			}
		} else if (!strcmp(key, "master")) {
			if (!json_integer(v, &number) || number < 0 || (size_t)number >= total ||
			    (size_t)number == index)
				return error_set(err, -EINVAL,
						 "jobs[%zu].master: expected the index of another job", index);
			job->worker = true;
			job->master = (size_t)number;
		} else if (!strcmp(key, "resources")) {
			int ret;

			if (v->type != JSON_OBJECT)
				return error_set(err, -EINVAL, "jobs[%zu].resources: expected an object", index);
			ret = job_resources_from_json(v, index, &job->resources, err);
			if (ret < 0)
				return ret;
		}
	}
	value = json_get(object, "commands");
	if (!value || value->type == JSON_NULL)
		return error_set(err, -EINVAL, "jobs[%zu]: missing field 'commands'", index);
	if (json_strings(value, &commands, &command_count) < 0 || !command_count) {
		free_strings(commands, command_count);
		return error_set(err, -EINVAL, "jobs[%zu].commands: expected a list of strings",
				 index);
	}
	job->script = job_script(commands, command_count);
	free_strings(commands, command_count);
	return 0;
}

int custom_jobs_from_json(const char *text, size_t len, struct job_spec **jobs,
			  size_t *count, struct error *err)
{
	struct json *root = NULL;
	size_t i;
	int ret = json_parse(text, len, &root, err);

	if (ret < 0)
		return ret;
	if (root->type != JSON_ARRAY || !root->count) {
		json_free(root);
		return error_set(err, -EINVAL, "expected a non-empty list of jobs");
	}
	*jobs = xcalloc(root->count, sizeof(**jobs));
	*count = root->count;
	for (i = 0; i < root->count && ret == 0; i++)
		ret = job_from_json(&root->items[i], i, root->count, &(*jobs)[i], err);
	json_free(root);
	if (ret < 0) {
		job_specs_free(*jobs, *count);
		*jobs = NULL;
		*count = 0;
	}
	return ret;
}

/*
 * The provider's commands in its image, through dstack-docker: the
 * snapshot is /workflow, the two files are in /run/dstack, and the dstack
 * module is bound read-only where PYTHONUSERBASE finds it.  Nothing of
 * the host's environment goes in.
 */
static int provider_docker_script(const struct run_context *ctx, const struct provider_def *def,
				  const char *root, const struct container_files *files,
				  struct strbuf *script, struct error *err)
{
	struct strbuf base = STRBUF_INIT, item = STRBUF_INIT;
	struct job_env env = { 0 };
	char *binds[4] = { 0 }, *labels[2] = { 0 };
	struct container_spec c = { .image = def->image, .workdir = "/workflow",
				    .binds = binds, .bind_count = 4,
				    .labels = labels, .label_count = 2 };
	size_t i;
	int ret = runner_python_user_base(ctx->store, &base, err);

	strbuf_addf(&item, "%s/repo:/workflow", root);
	binds[0] = xstrdup(item.buf);
	strbuf_reset(&item);
	strbuf_addf(&item, "%s/io:/run/dstack", root);
	binds[1] = xstrdup(item.buf);
	/* At the host's paths, where the user site's links point. */
	strbuf_reset(&item);
	strbuf_addf(&item, "%s/lib:%s/lib:ro", base.buf, base.buf);
	binds[2] = xstrdup(item.buf);
	binds[3] = xstrdup(DSTACK_PYTHON_DIR ":" DSTACK_PYTHON_DIR ":ro");
	strbuf_reset(&item);
	strbuf_addf(&item, "dstack.run=%s", ctx->run->name);
	labels[0] = xstrdup(item.buf);
	labels[1] = xstrdup("dstack.job=provider");
	job_env_set(&env, "DSTACK_WORKFLOW", "/run/dstack/workflow.json");
	job_env_set(&env, "DSTACK_JOBS", "/run/dstack/jobs.json");
	job_env_set(&env, "RUN_NAME", ctx->run->name);
	job_env_set(&env, "PYTHONUNBUFFERED", "1");
	job_env_set(&env, "PYTHONUSERBASE", base.buf);
	c.script = job_script(def->commands, def->command_count);
	c.env = env.vars;
	c.env_count = env.count;
	if (ret == 0)
		ret = container_script(&c, files, script, err);
	free((char *)c.script);
	job_env_release(&env);
	for (i = 0; i < 4; i++)
		free(binds[i]);
	free(labels[0]);
	free(labels[1]);
	strbuf_release(&base);
	strbuf_release(&item);
	return ret;
}

/* The provider's commands on the host, with this process's environment. */
static int provider_host_env(const struct run_context *ctx, const char *in, const char *jobs,
			     struct job_env *env, struct error *err)
{
	char **var;

	for (var = environ; *var; var++)
		job_env_put(env, *var);
	job_env_set(env, "DSTACK_WORKFLOW", in);
	job_env_set(env, "DSTACK_JOBS", jobs);
	job_env_set(env, "RUN_NAME", ctx->run->name);
	job_env_set(env, "PYTHONUNBUFFERED", "1");
	return runner_python_env(ctx->store, env, err);
}

/* Why the provider failed, or 0. */
static int provider_failure(const struct provider_def *def, int ret, bool stopped, int status,
			    const char *helper_reason, struct error *err)
{
	if (ret < 0)
		return ret;
	if (stopped)
		return error_set(err, -EPROTO, "provider '%s' was stopped", def->name);
	if (status && helper_reason && *helper_reason)
		return error_set(err, -EPROTO, "provider '%s': %s", def->name, helper_reason);
	if (status)
		return error_set(err, -EPROTO, "provider '%s' exited with status %d", def->name,
				 status);
	return 0;
}

int custom_provider_jobs(const struct run_context *ctx, const struct provider_def *def,
			 struct job_spec **jobs, size_t *count, struct error *err)
{
	struct store *store = ctx->store;
	const struct store_run *run = ctx->run;
	struct job_output out = { .store = store, .request = ctx->request, .run = run->id,
				  .job = -1 };
	struct run_ticker ticker = { .out = &out, .stop = &ctx->stop };
	struct host_job host = { .output = job_output_write, .output_ctx = &out,
				 .tick = run_tick, .tick_ctx = &ticker, .stop = &ctx->stop };
	struct strbuf root = STRBUF_INIT, dir = STRBUF_INIT, in = STRBUF_INIT,
		      jobs_path = STRBUF_INIT, text = STRBUF_INIT, script = STRBUF_INIT,
		      helper_said = STRBUF_INIT;
	struct container_files files = { STRBUF_INIT, STRBUF_INIT, STRBUF_INIT };
	bool docker = ctx->backend == BACKEND_DOCKER && def->image;
	struct job_env env = { 0 };
	bool stopped;
	int status = 0, ret;

	strbuf_addf(&root, "%s/work/%s-provider", store_home(store), run->name);
	strbuf_addf(&dir, "%s/repo", root.buf);
	strbuf_addf(&in, "%s/io/workflow.json", root.buf);
	strbuf_addf(&jobs_path, "%s/io/jobs.json", root.buf);
	ret = fs_mkdir_p(dir.buf, 0700);
	if (ret == 0) {
		strbuf_addf(&text, "%s/io", root.buf);
		ret = fs_mkdir_p(text.buf, 0700);
		strbuf_reset(&text);
	}
	if (ret < 0) {
		error_errno(err, ret, "%s", root.buf);
		goto out;
	}
	/* Another repository's provider runs in its checkout, moved here. */
	if (ctx->provider_dir && rename(ctx->provider_dir, dir.buf) < 0)
		ret = error_errno(err, -errno, "%s", dir.buf);
	else if (!ctx->provider_dir)
		ret = store_tree_download(store, run->snapshot, dir.buf, err);
	if (ret < 0)
		goto out;
	workflow_file_json(&text, ctx->workflow, run, ctx->info, ctx->request->args,
			   ctx->request->arg_count);
	ret = fs_write_file(in.buf, text.buf, text.len);
	if (ret < 0) {
		error_errno(err, ret, "%s", in.buf);
		goto out;
	}
	if (docker) {
		job_output_say(&out, "provider '%s' runs in image '%s' through dockerd", def->name,
			       def->image);
		container_files_init(&files, root.buf);
		ret = provider_docker_script(ctx, def, root.buf, &files, &script, err);
		host.output = job_output_frames;
		host.split_stderr = true;
	} else {
		ret = provider_host_env(ctx, in.buf, jobs_path.buf, &env, err);
		host.env = env.vars;
		char *commands = job_script(def->commands, def->command_count);

		strbuf_addstr(&script, commands);
		free(commands);
	}
	if (ret < 0)
		goto out;
	host.dir = dir.buf;
	host.script = script.buf;
	/* A container sees only what dockerd binds; the helper writes beside root. */
	host.store_dir = docker ? NULL : store_home(store);
	host.own_dir = root.buf;
	ret = host_job_run(&host, &status, &stopped, err);
	/* The image as the registry named it: how to run the same provider again. */
	if (ret == 0 && docker && fs_read_file(files.pinned.buf, &helper_said) == 0 &&
	    helper_said.len)
		job_output_say(&out, "provider '%s' ran in %s", def->name, helper_said.buf);
	strbuf_reset(&helper_said);
	if (ret == 0 && docker)
		fs_read_file(files.reason.buf, &helper_said);
	ret = provider_failure(def, ret, stopped, status, helper_said.buf, err);
	strbuf_reset(&text);
	if (ret == 0 && fs_read_file(jobs_path.buf, &text) < 0)
		ret = error_set(err, -EPROTO, "provider '%s' wrote no jobs to DSTACK_JOBS", def->name);
	if (ret == 0 && custom_jobs_from_json(text.buf ? text.buf : "", text.len, jobs, count, err) < 0) {
		struct error why = *err;

		error_clear(err);
		ret = error_set(err, -EPROTO, "provider '%s': DSTACK_JOBS: %s", def->name, why.message);
	}
	if (job_output_flush(&out) < 0 && ret == 0) {
		*err = out.err;
		ret = err->code;
	}
out:
	job_env_release(&env);
	fs_remove_tree(root.buf);
	container_files_remove(&files);
	job_output_release(&out);
	strbuf_release(&root);
	strbuf_release(&dir);
	strbuf_release(&in);
	strbuf_release(&jobs_path);
	strbuf_release(&text);
	strbuf_release(&script);
	strbuf_release(&helper_said);
	return ret;
}
