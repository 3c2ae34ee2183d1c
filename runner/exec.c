/*
 * exec.c - `dstack job-exec FOLDER`: a job of the slurm backend on its
 * node.  The node never opens the catalog (SQLite must not sit on a
 * network filesystem under writers): it reads its inputs straight from
 * the packs through the manifests the runner left in FOLDER, runs the
 * commands in a fresh folder of its own, appends their output to
 * FOLDER/logs as frames (the stream, the size, the bytes), stores each
 * artifact folder in new packs and leaves their manifests and
 * FOLDER/result.json for the runner to record.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/json.h"
#include "runner/internal.h"

extern char **environ;

static volatile sig_atomic_t exec_stopping, exec_aborting;

static void exec_stop(int sig)
{
	(void)sig;
	exec_stopping = 1;
}

/* The logs file, as dstack-docker's frames: the runner reads them so. */
static int exec_output(void *ctx, int fd, const void *data, size_t len)
{
	return fs_write_frame(*(const int *)ctx, fd == 2 ? 2 : 1, data, len);
}

/* dstack-docker's output: its stdout is frames already, its stderr is not. */
static int exec_output_docker(void *ctx, int fd, const void *data, size_t len)
{
	const int *logs = ctx;

	if (fd == 2)
		return exec_output(ctx, fd, data, len);
	return fs_write_all(*logs, data, len) < 0 ? -errno : 0;
}

/* Whether this node has a dockerd to run images in. */
static bool exec_has_docker(void)
{
	const char *host = getenv("DOCKER_HOST");

	if (host && !strncmp(host, "unix://", 7))
		return access(host + 7, W_OK) == 0;
	return !host && access("/var/run/docker.sock", W_OK) == 0;
}

/*
 * The script that runs the job in its image through the node's dockerd:
 * the snapshot is the container's /workflow, the deps bound read-only,
 * the environment the ticket's.
 */
static int exec_docker_script(const struct json *ticket, const char *root, const char *dir,
			      const struct artifact_names *ro, char *const *env,
			      size_t env_count, const struct container_files *files,
			      struct strbuf *script, struct error *err)
{
	const struct json *working_dir = json_get(ticket, "working_dir");
	const struct json *run = json_get(ticket, "run");
	struct container_spec c = { .image = json_get(ticket, "image")->string,
				    .script = json_get(ticket, "script")->string,
				    .env = env, .env_count = env_count };
	long long n = 0;

	json_integer(json_get(ticket, "job"), &n);
	return container_job_script(&c, root, dir,
				    working_dir && working_dir->type == JSON_STRING ?
				    working_dir->string : NULL, ro,
				    run && run->type == JSON_STRING ? run->string : "", (int)n,
				    files, script, err);
}

static void exec_say(int logs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void exec_say(int logs, const char *fmt, ...)
{
	struct strbuf line = STRBUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	job_line_vformat(&line, fmt, ap);
	va_end(ap);
	exec_output(&logs, 1, line.buf, line.len);
	strbuf_release(&line);
}

static int exec_extract(const char *home, const char *folder, const char *name,
			const char *out, struct error *err)
{
	struct strbuf path = STRBUF_INIT, text = STRBUF_INIT;
	int ret;

	strbuf_addf(&path, "%s/%s", folder, name);
	ret = fs_read_file(path.buf, &text);
	if (ret < 0)
		error_errno(err, ret, "%s", path.buf);
	if (ret == 0 && text.len)
		ret = store_manifest_extract(home, text.buf, text.len, out, err);
	strbuf_release(&path);
	strbuf_release(&text);
	return ret;
}

/* Stores each artifact folder: its manifest beside the ticket, its entry in result. */
static int exec_artifacts(const char *home, const char *folder, const char *dir,
			  char *const *artifacts, size_t count, int logs, struct strbuf *result,
			  struct error *err)
{
	struct strbuf path = STRBUF_INIT, manifest = STRBUF_INIT, name = STRBUF_INIT;
	struct strbuf said = STRBUF_INIT, why = STRBUF_INIT;
	size_t i;
	int ret = 0;

	strbuf_addstr(result, ",\"artifacts\":[");
	for (i = 0; i < count && ret == 0; i++) {
		strbuf_addstr(result, i ? ",{\"path\":" : "{\"path\":");
		json_add_string(result, artifacts[i]);
		strbuf_reset(&said);
		strbuf_reset(&why);
		if (!job_artifact_check(dir, artifacts[i], &said, &why)) {
			exec_say(logs, "%s", said.buf);
			strbuf_addstr(result, ",\"missing\":");
			json_add_string(result, why.buf);
			strbuf_addstr(result, "}");
			continue;
		}
		strbuf_reset(&path);
		strbuf_reset(&manifest);
		strbuf_reset(&name);
		strbuf_addf(&path, "%s/%s", dir, artifacts[i]);
		strbuf_addf(&name, "artifact-%zu.manifest", i);
		ret = store_stage_folder(home, path.buf, &manifest, err);
		strbuf_reset(&path);
		strbuf_addf(&path, "%s/%s", folder, name.buf);
		if (ret == 0 && (ret = fs_write_file(path.buf, manifest.buf ? manifest.buf : "",
						     manifest.len)) < 0)
			error_errno(err, ret, "%s", path.buf);
		strbuf_addstr(result, ",\"manifest\":");
		json_add_string(result, name.buf);
		strbuf_addstr(result, "}");
	}
	strbuf_addstr(result, "]");
	strbuf_release(&path);
	strbuf_release(&manifest);
	strbuf_release(&name);
	strbuf_release(&said);
	strbuf_release(&why);
	return ret;
}

/* result.json, whole or not at all: the runner reads it once Slurm says the job ended. */
static int exec_result_write(const char *folder, const struct strbuf *result, struct error *err)
{
	struct strbuf tmp = STRBUF_INIT, path = STRBUF_INIT;
	int ret;

	strbuf_addf(&tmp, "%s/result.json.tmp", folder);
	strbuf_addf(&path, "%s/result.json", folder);
	ret = fs_write_file(tmp.buf, result->buf, result->len);
	if (ret == 0 && rename(tmp.buf, path.buf) < 0)
		ret = -errno;
	if (ret < 0)
		error_errno(err, ret, "%s", path.buf);
	strbuf_release(&tmp);
	strbuf_release(&path);
	return ret;
}

int runner_job_exec(const char *folder, int *code, struct error *err)
{
	static const int signals[] = { SIGTERM, SIGINT, SIGHUP };
	const char *home = getenv("DSTACK_HOME"), *tmp = getenv("TMPDIR");
	struct sigaction action = { .sa_handler = exec_stop };
	struct run_stop stop = { .stopping = &exec_stopping, .aborting = &exec_aborting };
	struct strbuf path = STRBUF_INIT, text = STRBUF_INIT, root = STRBUF_INIT;
	struct strbuf dir = STRBUF_INIT, result = STRBUF_INIT;
	struct json *ticket = NULL;
	const struct json *field;
	/* The job's own variables (a container's whole environment), and
	 * those over the node's environment. */
	struct job_env own = { 0 }, env = { 0 };
	const char *node_name = "localhost";
	char **vars = NULL, **artifacts = NULL, **deps = NULL, **read_only = NULL, **var;
	size_t var_count = 0, artifact_count = 0, dep_count = 0, read_only_count = 0, i;
	char node[256];
	bool stopped = false;
	int logs = -1, ret;
	struct container_files files = { STRBUF_INIT, STRBUF_INIT, STRBUF_INIT };
	struct strbuf docker_script = STRBUF_INIT;
	struct host_job job = { .output = exec_output, .output_ctx = &logs, .stop = &stop,
				.store_dir = home };

	*code = 1;
	if (!home || !*home)
		return error_set(err, -EINVAL, "job-exec: DSTACK_HOME is not set (the store the job"
				 " belongs to)");
	for (i = 0; i < sizeof(signals) / sizeof(*signals); i++)
		sigaction(signals[i], &action, NULL);
	strbuf_addf(&path, "%s/job.json", folder);
	ret = fs_read_file(path.buf, &text);
	if (ret < 0)
		error_errno(err, ret, "%s", path.buf);
	if (ret == 0 && json_parse(text.buf, text.len, &ticket, err) < 0)
		ret = error_set(err, -EINVAL, "%s: %s", path.buf, err->message);
	field = json_get(ticket, "script");
	if (ret == 0 && (!field || field->type != JSON_STRING))
		ret = error_set(err, -EINVAL, "%s: script: expected a string", path.buf);
	/* A requeued job runs again: the last attempt's result is no answer. */
	strbuf_reset(&path);
	strbuf_addf(&path, "%s/result.json", folder);
	if (ret == 0 && unlink(path.buf) < 0 && errno != ENOENT)
		ret = error_errno(err, -errno, "%s", path.buf);
	strbuf_reset(&path);
	strbuf_addf(&path, "%s/logs", folder);
	if (ret == 0 && (logs = open(path.buf, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
				     0600)) < 0)
		ret = error_errno(err, -errno, "%s", path.buf);
	if (ret < 0)
		goto out;
	/* The runner hears the job started from this first line. */
	field = json_get(ticket, "job");
	if (getenv("SLURMD_NODENAME"))
		node_name = getenv("SLURMD_NODENAME");
	else if (gethostname(node, sizeof(node)) == 0)
		node_name = node;
	exec_say(logs, "job %lld runs on %s (Slurm job %s)",
		 field && field->type == JSON_NUMBER ? (long long)field->number : 0, node_name,
		 getenv("SLURM_JOB_ID") ? getenv("SLURM_JOB_ID") : "?");
	/* Node-local: a job's many small files stay off the shared filesystem. */
	strbuf_addf(&root, "%s/dstack-job.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(root.buf)) {
		ret = error_errno(err, -errno, "%s", root.buf);
		strbuf_reset(&root);
		goto out;
	}
	ret = exec_extract(home, folder, "snapshot.manifest", root.buf, err);
	field = json_get(ticket, "working_dir");
	strbuf_addf(&dir, "%s%s%s", root.buf, field && field->type == JSON_STRING ? "/" : "",
		    field && field->type == JSON_STRING ? field->string : "");
	if (ret == 0 && (ret = fs_mkdir_p(dir.buf, 0755)) < 0)
		error_errno(err, ret, "%s", dir.buf);
	if (ret == 0 && (json_get_strings(ticket, "artifacts", &artifacts, &artifact_count, err) < 0 ||
			 json_get_strings(ticket, "env", &vars, &var_count, err) < 0 ||
			 json_get_strings(ticket, "read_only", &deps, &dep_count, err) < 0))
		ret = error_set(err, -EINVAL, "%s/job.json: %s", folder, err->message);
	for (i = 0; i < artifact_count && ret == 0; i++) {
		strbuf_reset(&path);
		strbuf_addf(&path, "%s/%s", dir.buf, artifacts[i]);
		if ((ret = fs_mkdir_p(path.buf, 0755)) < 0)
			error_errno(err, ret, "%s", path.buf);
	}
	if (ret == 0)
		ret = exec_extract(home, folder, "deps.manifest", dir.buf, err);
	if (ret < 0)
		goto out;
	for (i = 0; i < var_count; i++)
		job_env_put(&own, vars[i]);
	/* The name the other jobs of the run were given for this node. */
	job_env_set(&own, "JOB_HOSTNAME", node_name);
	for (var = environ; *var; var++)
		job_env_put(&env, *var);
	for (i = 0; i < own.count; i++)
		job_env_put(&env, own.vars[i]);
	/* The deps' folders, where they are now. */
	read_only = xcalloc(dep_count + 1, sizeof(char *));
	for (read_only_count = 0; read_only_count < dep_count; read_only_count++) {
		strbuf_reset(&path);
		strbuf_addf(&path, "%s/%s", dir.buf, deps[read_only_count]);
		read_only[read_only_count] = xstrdup(path.buf);
	}
	job.script = json_get(ticket, "script")->string;
	job.read_only = read_only;
	job.read_only_count = read_only_count;
	job.own_dir = root.buf;
	field = json_get(ticket, "image");
	if (field && field->type == JSON_STRING && exec_has_docker()) {
		/* Beside the snapshot, so the job does not see it. */
		container_files_init(&files, root.buf);
		exec_say(logs, "job runs in image '%s' through this node's dockerd", field->string);
		struct artifact_names ro = { .dir = dir.buf, .paths = read_only,
					     .count = read_only_count };

		ret = exec_docker_script(ticket, root.buf, dir.buf, &ro, own.vars, own.count, &files,
					 &docker_script, err);
		job.script = docker_script.buf;
		/* A container sees only what dockerd binds. */
		job.output = exec_output_docker;
		job.split_stderr = true;
		job.read_only_count = 0;
		job.store_dir = NULL;
	} else if (field && field->type == JSON_STRING) {
		exec_say(logs, "image '%s': this node has no dockerd; the commands run on the node",
			 field->string);
	}
	job.dir = dir.buf;
	job.env = env.vars;
	if (ret == 0)
		ret = host_job_run(&job, code, &stopped, err);
	strbuf_addf(&result, "{\"code\":%d,\"stopped\":%s", *code, stopped ? "true" : "false");
	/* The image as the registry named it when pulled: the run's record. */
	strbuf_reset(&text);
	if (ret == 0 && files.pinned.len && fs_read_file(files.pinned.buf, &text) == 0 &&
	    text.len) {
		strbuf_addstr(&result, ",\"image\":");
		json_add_string(&result, text.buf);
	}
	strbuf_reset(&text);
	if (ret == 0 && files.reason.len)
		fs_read_file(files.reason.buf, &text);
	if (ret == 0 && *code && !stopped && text.len) {
		strbuf_addstr(&result, ",\"reason\":");
		json_add_string(&result, text.buf);
	} else if (ret == 0 && *code && !stopped) {
		strbuf_addstr(&result, ",\"reason\":");
		strbuf_reset(&text);
		strbuf_addf(&text, "exited with status %d", *code);
		json_add_string(&result, text.buf);
	}
	if (ret == 0)
		ret = exec_artifacts(home, folder, dir.buf, artifacts, artifact_count, logs, &result,
				     err);
	strbuf_addstr(&result, "}\n");
	if (ret == 0)
		ret = exec_result_write(folder, &result, err);
out:
	/* Said where the runner reads it: Slurm's output file is a last resort. */
	if (ret < 0 && logs >= 0) {
		exec_say(logs, "job-exec: %s", err->message);
		strbuf_reset(&result);
		strbuf_addstr(&result, "{\"code\":1,\"stopped\":false,\"reason\":");
		strbuf_reset(&text);
		strbuf_addf(&text, "job-exec: %s", err->message);
		json_add_string(&result, text.buf);
		strbuf_addstr(&result, "}\n");
		exec_result_write(folder, &result, &(struct error){ 0 });
	}
	if (root.len)
		fs_remove_tree(root.buf);
	container_files_remove(&files);
	strbuf_release(&docker_script);
	if (logs >= 0)
		close(logs);
	for (i = 0; i < read_only_count; i++)
		free(read_only[i]);
	free(read_only);
	free(deps);
	free(artifacts);
	free(vars);
	job_env_release(&env);
	job_env_release(&own);
	json_free(ticket);
	strbuf_release(&path);
	strbuf_release(&text);
	strbuf_release(&root);
	strbuf_release(&dir);
	strbuf_release(&result);
	return ret;
}
