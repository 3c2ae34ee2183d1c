/*
 * run.c - a run from start to end in this process: the workflow is
 * loaded, its provider makes the jobs, each job runs in a fresh snapshot
 * of the repository, its output goes to the catalog as it comes (flushed
 * every HOST_TICK_MS at most, so a crash loses under a second), and its
 * artifact folders are stored when it ends.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/json.h"
#include "providers/providers.h"
#include "runner/internal.h"
#include "runner/workflow.h"

extern char **environ;

/* Sets "K=V" entries; a bare "K" takes K from this process's environment. */
static void job_env_set_all(struct job_env *env, char *const *vars, size_t count)
{
	size_t i;

	for (i = 0; i < count; i++) {
		char *name = xstrdup(vars[i]);
		char *eq = strchr(name, '=');
		const char *value;

		if (eq) {
			*eq = '\0';
			value = eq + 1;
		} else {
			value = getenv(name);
		}
		if (value)
			job_env_set(env, name, value);
		free(name);
	}
}

/*
 * A free TCP port on the loopback: bound, read back and closed.  Another
 * process may take it before the job does; the kernel's allocator makes
 * that unlikely, and the job then fails plainly on bind.
 */
static int job_free_port(struct error *err)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t len = sizeof(addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
		port = ntohs(addr.sin_port);
	if (port < 0)
		error_errno(err, -errno, "cannot find a free port");
	if (fd >= 0)
		close(fd);
	return port < 0 ? err->code : port;
}

static int job_env_build(struct job_env *env, const struct workflow *workflow,
			 const struct job_spec *spec, const char *run_name, int job,
			 struct error *err)
{
	char job_id[96], name[32], value[16];
	char **var;
	size_t i;

	memset(env, 0, sizeof(*env));
	for (var = environ; *var; var++)
		job_env_put(env, *var);
	snprintf(job_id, sizeof(job_id), "%s/%d", run_name, job);
	job_env_set(env, "RUN_NAME", run_name);
	job_env_set(env, "JOB_ID", job_id);
	job_env_set(env, "JOB_HOSTNAME", "127.0.0.1");
	job_env_set(env, "PYTHONUNBUFFERED", "1");
	for (i = 0; i < spec->port_count; i++) {
		int port = spec->ports[i] ? spec->ports[i] : job_free_port(err);

		if (port < 0)
			return port;
		snprintf(name, sizeof(name), "PORT_%zu", i);
		snprintf(value, sizeof(value), "%d", port);
		job_env_set(env, name, value);
	}
	job_env_set_all(env, spec->env, spec->env_count);
	job_env_set_all(env, workflow->env, workflow->env_count);
	return 0;
}

/* Stores each artifact folder of a finished job; false if one is missing. */
static int job_store_artifacts(struct store *store, struct job_output *out,
			       const char *dir, const struct job_spec *spec,
			       bool *complete, struct error *err)
{
	struct store_ingest *ingest;
	struct strbuf path = STRBUF_INIT;
	size_t i;
	int ret;

	*complete = true;
	ret = store_ingest_begin(store, &ingest, NULL, NULL, err);
	if (ret < 0)
		return ret;
	for (i = 0; i < spec->artifact_count && ret == 0; i++) {
		struct stat st;
		int64_t tree;

		strbuf_reset(&path);
		strbuf_addf(&path, "%s/%s", dir, spec->artifacts[i]);
		if (lstat(path.buf, &st) < 0) {
			job_output_say(out, "artifact path '%s' does not exist", spec->artifacts[i]);
			*complete = false;
			continue;
		}
		ret = store_ingest_folder(ingest, path.buf, &tree, NULL, NULL, err);
		if (ret == 0)
			ret = store_artifact_add(store, out->run, out->job, spec->artifacts[i],
						 tree, err);
	}
	store_ingest_end(ingest);
	strbuf_release(&path);
	return ret;
}

/* The runs whose artifacts a workflow's jobs get: its deps, resolved. */
struct dep_runs {
	int64_t *ids;
	size_t count;
};

static int deps_resolve(struct store *store, const struct workflow *workflow,
			const char *repo, struct dep_runs *deps, struct error *err)
{
	struct strbuf spec = STRBUF_INIT;
	struct store_run run;
	struct error why = { 0 };
	size_t i;
	int ret = 0;

	deps->ids = xcalloc(workflow->dep_count + 1, sizeof(*deps->ids));
	for (i = 0; i < workflow->dep_count && ret == 0; i++) {
		const struct workflow_dep *dep = &workflow->deps[i];

		error_clear(&why);
		if (dep->kind == WORKFLOW_DEP_TAG) {
			strbuf_reset(&spec);
			strbuf_addf(&spec, ":%s", dep->name);
			ret = store_run_find(store, spec.buf, &run, &why);
		} else if (strchr(dep->name, '/')) {
			ret = error_set(&why, -EINVAL, "deps on other repositories ('%s') are not supported",
					dep->name);
		} else {
			ret = store_run_latest_done(store, repo, dep->name, &run, &why);
		}
		if (ret < 0) {
			/* A missing dep means the workflow cannot start. */
			ret = error_set(err, -EINVAL, "%s:%d:%d: workflow '%s': deps[%zu]: %s",
					dep->position.file, dep->position.line, dep->position.column,
					workflow->name, i, why.message);
			break;
		}
		deps->ids[deps->count++] = run.id;
	}
	strbuf_release(&spec);
	return ret;
}

struct artifact_names {
	const char *dir;
	char **paths;
	size_t count;
};

/* Collects DIR/PATH for each artifact path of a run (its root entries). */
static int artifact_name_add(void *ctx, const struct store_entry *entry)
{
	struct artifact_names *names = ctx;
	struct strbuf path = STRBUF_INIT;
	size_t i;

	if (*entry->path)
		return 0;
	strbuf_addf(&path, "%s/%s", names->dir, entry->artifact);
	for (i = 0; i < names->count; i++) {
		if (!strcmp(names->paths[i], path.buf)) {
			strbuf_release(&path);
			return 0;
		}
	}
	names->paths = xrealloc(names->paths, (names->count + 1) * sizeof(char *));
	names->paths[names->count++] = path.buf;
	return 0;
}

/* Writes the deps' artifacts into the job's directory; names them in ro. */
static int deps_materialize(struct store *store, const struct dep_runs *deps,
			    const char *dir, struct artifact_names *ro,
			    struct error *err)
{
	size_t i;
	int ret = 0;

	ro->dir = dir;
	for (i = 0; i < deps->count && ret == 0; i++) {
		ret = store_run_download(store, deps->ids[i], dir, NULL, NULL, err);
		if (ret == 0)
			ret = store_run_entries(store, deps->ids[i], artifact_name_add, ro, err);
	}
	return ret;
}

static void artifact_names_release(struct artifact_names *names)
{
	size_t i;

	for (i = 0; i < names->count; i++)
		free(names->paths[i]);
	free(names->paths);
}

volatile sig_atomic_t runner_stopping;
volatile sig_atomic_t runner_aborting;

static void runner_on_signal(int sig)
{
	if (sig == SIGUSR1)
		runner_aborting = 1;
	runner_stopping = 1;
}

/*
 * While a run executes in this process, Ctrl-C (or SIGTERM, SIGHUP) stops
 * it as `dstack stop` would, instead of leaving its jobs behind.
 */
#define RUNNER_SIGNALS 4
static const int runner_signals[RUNNER_SIGNALS] = { SIGINT, SIGTERM, SIGHUP, SIGUSR1 };

static void runner_catch_signals(struct sigaction old[RUNNER_SIGNALS])
{
	struct sigaction action = { .sa_handler = runner_on_signal, .sa_flags = SA_RESTART };
	int i;

	runner_stopping = 0;
	runner_aborting = 0;
	sigemptyset(&action.sa_mask);
	for (i = 0; i < RUNNER_SIGNALS; i++)
		sigaction(runner_signals[i], &action, &old[i]);
}

static void runner_release_signals(const struct sigaction old[RUNNER_SIGNALS])
{
	int i;

	for (i = 0; i < RUNNER_SIGNALS; i++)
		sigaction(runner_signals[i], &old[i], NULL);
}

/*
 * Runs one job to its end; *code gets its exit code (0 when done), and
 * *stopped whether a signal stopped it (it is "stopped" then, whatever
 * its code; what it stored so far is kept).
 */
static int job_run(struct store *store, const struct runner_request *request,
		   const struct snapshot_info *info, const struct workflow *workflow,
		   const struct dep_runs *deps, const struct store_run *run, int n,
		   const struct job_spec *spec, int *code, bool *stopped,
		   struct error *err)
{
	struct artifact_names ro = { 0 };
	struct job_output out = { .store = store, .request = request, .run = run->id, .job = n };
	struct host_job host = { .output = job_output_write, .tick = job_output_tick,
				 .output_ctx = &out, .script = spec->script };
	struct strbuf root = STRBUF_INIT, dir = STRBUF_INIT;
	struct job_env env;
	bool complete;
	size_t i;
	int ret;

	strbuf_addf(&root, "%s/work/%s-%d", store_home(store), run->name, n);
	ret = fs_mkdir_p(root.buf, 0700);
	if (ret < 0) {
		error_errno(err, ret, "%s", root.buf);
		goto out;
	}
	ret = store_job_set_status(store, run->id, n, "downloading", -1, err);
	if (ret == 0)
		ret = snapshot_copy(info, root.buf, err);
	if (ret < 0)
		goto out;
	strbuf_addf(&dir, "%s%s%s", root.buf, spec->working_dir ? "/" : "",
		    spec->working_dir ? spec->working_dir : "");
	/* Artifact folders exist before the commands start, as dstack mounted them. */
	for (i = 0; i < spec->artifact_count && ret == 0; i++) {
		struct strbuf path = STRBUF_INIT;

		strbuf_addf(&path, "%s/%s", dir.buf, spec->artifacts[i]);
		ret = fs_mkdir_p(path.buf, 0755);
		if (ret < 0)
			error_errno(err, ret, "%s", path.buf);
		strbuf_release(&path);
	}
	if (ret == 0)
		ret = deps_materialize(store, deps, dir.buf, &ro, err);
	if (ret < 0)
		goto out;
	ret = job_env_build(&env, workflow, spec, run->name, n, err);
	if (ret == 0 && spec->python_env)
		ret = runner_python_env(store, &env, err);
	if (ret < 0) {
		job_env_release(&env);
		goto out;
	}
	host.dir = dir.buf;
	host.env = env.vars;
	host.read_only = ro.paths;
	host.read_only_count = ro.count;
	ret = store_run_set_status(store, run->id, "running", -1, err);
	if (ret == 0)
		ret = store_job_set_status(store, run->id, n, "running", -1, err);
	if (ret == 0)
		ret = host_job_run(&host, code, stopped, err);
	job_env_release(&env);
	if (ret == 0 && *stopped)
		job_output_say(&out, "job %d %s", n, runner_aborting ? "aborted" : "stopped");
	else if (ret == 0 && *code)
		job_output_say(&out, "job %d exited with status %d", n, *code);
	/* An aborted job stores nothing. */
	if (ret == 0 && !runner_aborting)
		ret = store_job_set_status(store, run->id, n, "uploading", -1, err);
	if (ret == 0 && !runner_aborting)
		ret = job_store_artifacts(store, &out, dir.buf, spec, &complete, err);
	else
		complete = true;
	if (ret == 0 && !complete && !*code)
		*code = 1;
	if (job_output_flush(&out) < 0 && ret == 0) {
		*err = out.err;
		ret = err->code;
	}
	if (ret == 0 && *stopped)
		ret = store_job_set_status(store, run->id, n,
					   runner_aborting ? "aborted" : "stopped", -1, err);
	else if (ret == 0)
		ret = store_job_set_status(store, run->id, n, *code ? "failed" : "done", *code, err);
out:
	artifact_names_release(&ro);
	fs_remove_tree(root.buf);
	strbuf_release(&out.pending);
	strbuf_release(&root);
	strbuf_release(&dir);
	return ret;
}

/* A string parameter of the workflow (from data_json), or NULL. */
static const char *data_string(const struct json *data, const char *key)
{
	const struct json *value = json_get(data, key);

	return value && value->type == JSON_STRING ? value->string : NULL;
}

/*
 * The python provider's `args`, as one shell-ready line: a string is
 * taken as the user wrote it, a list is quoted word by word; either may
 * hold ${{ run.args }}.
 */
static char *data_args(const struct json *data, char *const *args, size_t arg_count)
{
	const struct json *value = json_get(data, "args");
	struct strbuf line = STRBUF_INIT;
	size_t i;

	if (!value || value->type == JSON_NULL)
		return NULL;
	if (value->type == JSON_STRING)
		return workflow_expand_args(value->string, args, arg_count);
	for (i = 0; value->type == JSON_ARRAY && i < value->count; i++) {
		const struct json *item = &value->items[i];
		char *word;

		if (item->type != JSON_STRING)
			continue;
		word = strstr(item->string, "run.args") ?
		       workflow_expand_args(item->string, args, arg_count) :
		       workflow_expand_args("${{ run.args }}", &item->string, 1);
		strbuf_addf(&line, "%s%s", line.len ? " " : "", word);
		free(word);
	}
	return line.buf ? line.buf : xstrdup("");
}

/* The jobs of a workflow, with ${{ run.args }} expanded in its commands. */
static int runner_jobs(const struct workflow *workflow, char *const *args,
		       size_t arg_count, struct job_spec **jobs, size_t *count,
		       struct error *err)
{
	struct json *data = NULL;
	char *python_args = NULL;
	struct provider_input in = {
		.workflow = workflow->name,
		.command_count = workflow->command_count,
		.working_dir = workflow->working_dir,
		.artifact_count = workflow->artifact_count,
	};
	char **commands = xcalloc(workflow->command_count + 1, sizeof(char *));
	char **artifacts = xcalloc(workflow->artifact_count + 1, sizeof(char *));
	/* ports: N asks for N free ports, written as N zeros. */
	int *free_ports = xcalloc((size_t)workflow->port_free_count + 1, sizeof(int));
	size_t i;
	int ret;

	in.ports = workflow->port_free_count ? free_ports : workflow->ports;
	in.port_count = workflow->port_free_count ? (size_t)workflow->port_free_count
						  : workflow->port_count;

	for (i = 0; i < workflow->command_count; i++)
		commands[i] = workflow_expand_args(workflow->commands[i], args, arg_count);
	for (i = 0; i < workflow->artifact_count; i++)
		artifacts[i] = workflow->artifacts[i].path;
	/* dstack 0.0.x allowed /paths: they name places in a container. */
	for (i = 0; i < workflow->artifact_count && !err->code; i++) {
		const struct workflow_artifact *artifact = &workflow->artifacts[i];

		if (artifact->path[0] == '/')
			error_set(err, -EINVAL,
				  "%s:%d:%d: workflow '%s': artifact '%s' is a container path;"
				  " jobs on the host need paths relative to working_dir",
				  artifact->position.file, artifact->position.line,
				  artifact->position.column, workflow->name, artifact->path);
	}
	in.commands = commands;
	in.artifacts = artifacts;
	in.python = workflow->python;
	/* data_json is ours, made by the loader: it always parses. */
	if (!err->code &&
	    json_parse(workflow->data_json, strlen(workflow->data_json), &data, err) == 0) {
		in.file = data_string(data, "file") ? data_string(data, "file")
						    : data_string(data, "script");
		in.requirements = data_string(data, "requirements");
		python_args = data_args(data, args, arg_count);
		in.args = python_args;
	}
	if (err->code)
		ret = err->code;
	else if (workflow->provider_repo)
		ret = error_set(err, -EINVAL,
				"workflow '%s': providers from other repositories are not supported yet",
				workflow->name);
	else
		ret = provider_builtin_jobs(workflow->provider, &in, jobs, count, err);
	for (i = 0; i < workflow->command_count; i++)
		free(commands[i]);
	free(commands);
	free(artifacts);
	free(free_ports);
	free(python_args);
	json_free(data);
	/* An unknown provider means the workflow cannot start. */
	return ret == -ENOENT ? (err->code = -EINVAL) : ret;
}

int runner_repo_id(const char *cwd, struct strbuf *out, struct error *err)
{
	struct snapshot_info info;
	int ret = snapshot_describe(cwd, &info, err);

	if (ret == 0)
		strbuf_addstr(out, info.repo);
	snapshot_info_release(&info);
	return ret;
}

int runner_repo_root(const char *cwd, struct strbuf *out, struct error *err)
{
	struct snapshot_info info;
	int ret = snapshot_describe(cwd, &info, err);

	if (ret == 0)
		strbuf_addstr(out, info.root);
	snapshot_info_release(&info);
	return ret;
}

/*
 * The order jobs run in: each after the jobs it depends on (Kahn's
 * algorithm, lowest index first among the ready ones).
 */
static int jobs_order(const struct job_spec *jobs, size_t count, size_t *order,
		      struct error *err)
{
	bool *placed = xcalloc(count + 1, sizeof(bool));
	size_t done = 0, i, j;

	while (done < count) {
		for (i = 0; i < count; i++) {
			bool ready = !placed[i];

			for (j = 0; ready && j < jobs[i].depends_on_count; j++)
				ready = placed[jobs[i].depends_on[j]];
			if (ready)
				break;
		}
		if (i == count) {
			free(placed);
			return error_set(err, -EPROTO, "the jobs' depends_on make a cycle");
		}
		placed[i] = true;
		order[done++] = i;
	}
	free(placed);
	return 0;
}

/* The first job i depends on that did not end done, or -1. */
static int job_blocked_by(const struct job_spec *job, const int *codes)
{
	size_t j;

	for (j = 0; j < job->depends_on_count; j++)
		if (codes[job->depends_on[j]])
			return (int)job->depends_on[j];
	return -1;
}

/* A provider that failed fails the run: its reason goes to the logs. */
static int run_provider_failed(struct store *store, const struct runner_request *request,
			       const struct store_run *run, const char *reason,
			       struct error *err)
{
	struct job_output out = { .store = store, .request = request, .run = run->id, .job = -1 };
	int ret;

	job_output_say(&out, "%s", reason);
	ret = job_output_flush(&out);
	strbuf_release(&out.pending);
	if (ret < 0) {
		*err = out.err;
		return ret;
	}
	return store_run_set_status(store, run->id, "failed", 1, err);
}

int runner_run(struct store *store, const struct runner_request *request,
	       struct store_run *run, struct error *err)
{
	struct workflow_set set = { 0 };
	struct provider_def_set defs = { 0 };
	const struct provider_def *def;
	const struct workflow *workflow;
	struct job_spec *jobs = NULL;
	struct dep_runs deps = { 0 };
	struct snapshot_info info;
	struct store_run_spec spec = { 0 };
	char *args = NULL, commit[64];
	size_t count = 0, i, *order = NULL;
	int *codes = NULL, first_failure = 0, ret;
	struct sigaction old_signals[RUNNER_SIGNALS];
	bool stopped = false;

	ret = snapshot_describe(request->cwd, &info, err);
	if (ret < 0)
		return ret;
	runner_catch_signals(old_signals);
	ret = workflow_set_load(info.root, &set, request->warn, request->warn_ctx, err);
	if (ret == 0)
		ret = provider_def_set_load(info.root, &defs, request->warn, request->warn_ctx, err);
	if (ret < 0)
		goto out;
	workflow = workflow_set_find(&set, request->workflow);
	if (!workflow) {
		ret = error_set(err, -ENOENT, "no workflow '%s' in %s/.dstack", request->workflow,
				info.root);
		goto out;
	}
	/* A provider of the repository wins over a built-in of the same name. */
	def = workflow->provider_repo ? NULL : provider_def_set_find(&defs, workflow->provider);
	if (def)
		ret = custom_provider_validate(info.root, def, workflow, err);
	else
		ret = runner_jobs(workflow, request->args, request->arg_count, &jobs, &count, err);
	if (ret == 0)
		ret = deps_resolve(store, workflow, info.repo, &deps, err);
	if (ret < 0)
		goto out;
	args = workflow_expand_args("${{ run.args }}", request->args, request->arg_count);
	snprintf(commit, sizeof(commit), "%s%s", info.commit, info.dirty ? " (dirty)" : "");
	spec.workflow = workflow->name;
	spec.provider = workflow->provider;
	spec.args = args;
	spec.repo = info.repo;
	spec.commit = commit;
	spec.runner_pid = getpid();
	spec.runner_started = proc_start_time(getpid());
	ret = store_run_create(store, &spec, def ? 0 : (int)count, run, err);
	if (ret < 0)
		goto out;
	if (request->created)
		request->created(request->created_ctx, run);
	ret = store_run_set_status(store, run->id, "downloading", -1, err);
	if (ret == 0 && def) {
		ret = custom_provider_jobs(store, request, def, &info, workflow, run, &jobs, &count,
					   err);
		if (ret == 0)
			ret = store_run_add_jobs(store, run->id, (int)count, err);
	}
	order = xcalloc(count + 1, sizeof(*order));
	codes = xcalloc(count + 1, sizeof(*codes));
	if (ret == 0 && (ret = jobs_order(jobs, count, order, err)) < 0)
		err->code = ret = -EPROTO;
	if (ret == -EPROTO && runner_stopping) {
		ret = store_run_set_status(store, run->id, "stopped", -1, err);
		if (ret == 0)
			ret = store_run_find(store, run->name, run, err);
		goto out;
	}
	if (ret == -EPROTO) {
		ret = run_provider_failed(store, request, run, err->message, err);
		if (ret == 0)
			ret = store_run_find(store, run->name, run, err);
		goto out;
	}
	for (i = 0; i < count && ret == 0; i++) {
		size_t n = order[i];
		int blocker = job_blocked_by(&jobs[n], codes);

		if (stopped || runner_stopping) {
			stopped = true;
			ret = store_job_set_status(store, run->id, (int)n,
						   runner_aborting ? "aborted" : "stopped", -1, err);
			continue;
		}
		if (blocker >= 0) {
			codes[n] = 1;
			ret = store_job_set_status(store, run->id, (int)n, "failed", -1, err);
			continue;
		}
		ret = job_run(store, request, &info, workflow, &deps, run, (int)n, &jobs[n],
			      &codes[n], &stopped, err);
		if (ret == 0 && !stopped && codes[n] && !first_failure)
			first_failure = codes[n];
	}
	if (ret < 0) {
		/* The run cannot go on; record why it stopped as best we can. */
		struct error ignored = { 0 };

		store_run_set_status(store, run->id, "failed", -1, &ignored);
		goto out;
	}
	if (stopped)
		ret = store_run_set_status(store, run->id, runner_aborting ? "aborted" : "stopped",
					   -1, err);
	else
		ret = store_run_set_status(store, run->id, first_failure ? "failed" : "done",
					   first_failure, err);
	if (ret == 0)
		ret = store_run_find(store, run->name, run, err);
out:
	runner_release_signals(old_signals);
	job_specs_free(jobs, count);
	free(order);
	free(codes);
	free(deps.ids);
	provider_def_set_release(&defs);
	workflow_set_release(&set);
	snapshot_info_release(&info);
	free(args);
	return ret;
}
