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

static int deps_resolve(struct store *store, const struct workflow *workflow,
			const char *repo, struct dep_runs *deps, struct error *err)
{
	struct strbuf spec = STRBUF_INIT;
	struct store_run run;
	struct error why = { 0 };
	size_t i;
	int ret = 0;

	deps->ids = xcalloc(workflow->dep_count + 1, sizeof(*deps->ids));
	deps->names = xcalloc(workflow->dep_count + 1, sizeof(*deps->names));
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
		snprintf(deps->names[deps->count], sizeof(deps->names[0]), "%s", run.name);
		deps->ids[deps->count++] = run.id;
	}
	strbuf_release(&spec);
	return ret;
}


/*
 * Set by the signals that stop a run of the CLI: SIGINT, SIGTERM and
 * SIGHUP stop it; SIGUSR1 aborts it (jobs killed at once, nothing stored).
 */
static volatile sig_atomic_t runner_stopping;
static volatile sig_atomic_t runner_aborting;

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
		char text[64], *word, *plain = text;
		long long number;

		/* YAML made `10` and `true` numbers and booleans: they are words too. */
		if (item->type == JSON_STRING)
			plain = item->string;
		else if (item->type == JSON_NUMBER && json_integer(item, &number))
			snprintf(text, sizeof(text), "%lld", number);
		else if (item->type == JSON_NUMBER)
			snprintf(text, sizeof(text), "%.17g", item->number);
		else if (item->type == JSON_BOOL)
			snprintf(text, sizeof(text), "%s", item->boolean ? "true" : "false");
		else
			continue;
		word = strstr(plain, "run.args") ?
		       workflow_expand_args(plain, args, arg_count) :
		       workflow_expand_args("${{ run.args }}", &plain, 1);
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
	const struct workflow_resources *asked = &workflow->resources;
	struct job_resources resources = {
		.cpu = asked->cpu, .memory = asked->memory, .shm_size = asked->shm_size,
		.gpu_count = asked->gpu_count, .gpu_name = asked->gpu_name,
		.gpu_memory = asked->gpu_memory,
	};
	struct provider_input in = {
		.workflow = workflow->name,
		.image = workflow->image,
		.resources = &resources,
		.command_count = workflow->command_count,
		.working_dir = workflow->working_dir,
		.artifact_count = workflow->artifact_count,
	};
	char **commands = xcalloc(workflow->command_count + 1, sizeof(char *));
	struct job_artifact *artifacts = xcalloc(workflow->artifact_count + 1, sizeof(*artifacts));
	/* ports: N asks for N free ports, written as N zeros. */
	int *free_ports = xcalloc((size_t)workflow->port_free_count + 1, sizeof(int));
	size_t i;
	int ret;

	in.ports = workflow->port_free_count ? free_ports : workflow->ports;
	in.port_count = workflow->port_free_count ? (size_t)workflow->port_free_count
						  : workflow->port_count;

	for (i = 0; i < workflow->command_count; i++)
		commands[i] = workflow_expand_args(workflow->commands[i], args, arg_count);
	for (i = 0; i < workflow->artifact_count; i++) {
		artifacts[i].path = workflow->artifacts[i].path;
		artifacts[i].mount = workflow->artifacts[i].mount;
	}
	/* dstack 0.0.x allowed /paths: they name places in a container. */
	for (i = 0; i < workflow->artifact_count && !err->code; i++) {
		const struct workflow_artifact *artifact = &workflow->artifacts[i];

		if (artifact->path[0] == '/')
			error_set(err, -EINVAL,
				  "%s:%d:%d: workflow '%s': artifact '%s' is a container path;"
				  " jobs on the host need paths relative to working_dir",
				  artifact->position.file, artifact->position.line,
				  artifact->position.column, workflow->name, artifact->path);
		else if (!path_is_contained(artifact->path))
			error_set(err, -EINVAL,
				  "%s:%d:%d: workflow '%s': artifact '%s' leads out of working_dir",
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
		in.data = data;
	}
	if (err->code)
		ret = err->code;
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
	struct snapshot_info info = { 0 };
	int ret = snapshot_describe(cwd, &info, err);

	if (ret == 0)
		strbuf_addstr(out, info.repo);
	snapshot_info_release(&info);
	return ret;
}

int runner_repo_root(const char *cwd, struct strbuf *out, struct error *err)
{
	struct snapshot_info info = { 0 };
	int ret = snapshot_describe(cwd, &info, err);

	if (ret == 0)
		strbuf_addstr(out, info.root);
	snapshot_info_release(&info);
	return ret;
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
	job_output_release(&out);
	if (ret < 0) {
		*err = out.err;
		return ret;
	}
	ret = store_run_set_reason(store, run->id, reason, err);
	return ret < 0 ? ret : store_run_set_status(store, run->id, "failed", 1, err);
}

/* How many of the jobs name an image: on the docker backend, containers. */
static size_t run_image_count(const struct job_spec *jobs, size_t count)
{
	size_t i, images = 0;

	for (i = 0; i < count; i++)
		images += jobs[i].image != NULL;
	return images;
}

/* A provider from another repository, checked out for the run. */
struct remote_provider {
	struct strbuf dir;	/* the checkout, under $DSTACK_HOME/work */
	struct provider_def_set defs;
	char commit[41];
};

/* Makes a fresh folder from template (ending in XXXXXX), its parent too. */
static int run_temp_dir(struct strbuf *template, struct error *err)
{
	char *slash = strrchr(template->buf, '/');
	int ret;

	*slash = '\0';
	ret = fs_mkdir_p(template->buf, 0700);
	*slash = '/';
	if (ret == 0 && !mkdtemp(template->buf))
		ret = -errno;
	return ret < 0 ? error_errno(err, ret, "%s", template->buf) : 0;
}

/*
 * Checks the workflow's provider repository out and finds its provider
 * there (*def), checked as a local one is.  Errors name the URL.
 */
static int remote_provider_prepare(struct store *store, const struct runner_request *request,
				   const struct workflow *workflow,
				   struct remote_provider *remote,
				   const struct provider_def **def, struct error *err)
{
	const char *url = workflow->provider_repo;
	struct strbuf said = STRBUF_INIT;
	int ret;

	strbuf_addf(&remote->dir, "%s/work/provider.XXXXXX", store_home(store));
	ret = run_temp_dir(&remote->dir, err);
	if (ret == 0)
		ret = remote_provider_checkout(store, url, workflow->provider_ref, remote->dir.buf,
					       remote->commit, &said, err);
	if (ret == 0 && said.len && request->warn)
		request->warn(request->warn_ctx, said.buf);
	strbuf_release(&said);
	if (ret == 0 && provider_def_set_load(remote->dir.buf, &remote->defs, request->warn,
					      request->warn_ctx, err) < 0) {
		struct error why = *err;

		error_clear(err);
		ret = error_set(err, -EINVAL, "provider repository %s: %s", url, why.message);
	}
	if (ret == 0 && !remote->defs.file_count)
		ret = error_set(err, -EINVAL, "provider repository %s has no .dstack/providers.yaml"
				" (at %.12s)", url, remote->commit);
	if (ret == 0 && !(*def = provider_def_set_find(&remote->defs, workflow->provider)))
		ret = error_set(err, -EINVAL, "provider repository %s has no provider '%s' (at %.12s)",
				url, workflow->provider, remote->commit);
	if (ret == 0)
		ret = custom_provider_validate(remote->dir.buf, *def, workflow, err);
	return ret < 0 ? (err->code = -EINVAL) : 0;
}

static void remote_provider_release(struct remote_provider *remote)
{
	if (remote->dir.len)
		fs_remove_tree(remote->dir.buf);
	strbuf_release(&remote->dir);
	provider_def_set_release(&remote->defs);
}

/* What a rerun runs again: a recorded run's workflow, args and snapshot. */
struct rerun {
	struct store_run of;
	char **args;
	size_t arg_count;
	struct strbuf dir;	/* the snapshot written out, for its .dstack files */
	struct runner_request request;
};

/*
 * Reads the run spec names (RUN or :TAG) for a rerun: request becomes the
 * original's workflow and args, info its repository as recorded, with the
 * snapshot written out under $DSTACK_HOME/work as its root.
 */
static int rerun_prepare(struct store *store, const struct runner_request *request,
			 struct rerun *again, struct snapshot_info *info, struct error *err)
{
	char *space;
	int ret = store_run_find(store, request->rerun, &again->of, err);

	memset(info, 0, sizeof(*info));
	if (ret < 0)
		return ret;
	if (!again->of.snapshot)
		return error_set(err, -EINVAL, "run %s has no snapshot to run again (it holds data,"
				 " or is older than dstack's snapshots)", again->of.name);
	if (shell_split(again->of.args, &again->args, &again->arg_count) < 0)
		return error_set(err, -EINVAL, "run %s: cannot read its args: %s", again->of.name,
				 again->of.args);
	strbuf_addf(&again->dir, "%s/work/rerun.XXXXXX", store_home(store));
	ret = run_temp_dir(&again->dir, err);
	if (ret < 0)
		return ret;
	ret = store_tree_download(store, again->of.snapshot, again->dir.buf, err);
	if (ret < 0)
		return ret;
	again->request = *request;
	again->request.workflow = again->of.workflow;
	again->request.args = again->args;
	again->request.arg_count = again->arg_count;
	info->root = xstrdup(again->dir.buf);
	info->repo = xstrdup(again->of.repo);
	info->branch = *again->of.branch ? xstrdup(again->of.branch) : NULL;
	/* "HASH" or "HASH (dirty)": the hash is the first word. */
	space = strchr(again->of.commit, ' ');
	snprintf(info->commit, sizeof(info->commit), "%.*s",
		 (int)(space ? (size_t)(space - again->of.commit) : strlen(again->of.commit)),
		 again->of.commit);
	info->dirty = space && !strcmp(space, " (dirty)");
	return store_run_submodules(store, again->of.id, &info->submodules, err);
}

static void rerun_release(struct rerun *again)
{
	if (again->dir.len)
		fs_remove_tree(again->dir.buf);
	strbuf_release(&again->dir);
	shell_words_free(again->args, again->arg_count);
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
	struct snapshot_info info = { 0 };
	struct store_run_spec spec = { 0 };
	struct store_ingest *ingest = NULL;
	struct rerun again = { .dir = STRBUF_INIT };
	struct remote_provider remote = { .dir = STRBUF_INIT };
	struct error why = { 0 };
	volatile sig_atomic_t stopping = 0, aborting = 0;
	struct run_context ctx = { .store = store, .request = request, .info = &info,
				   .deps = &deps, .run = run,
				   .stop = { .stopping = &stopping, .aborting = &aborting } };
	struct strbuf args = STRBUF_INIT, slurm = STRBUF_INIT;
	char commit[64];
	size_t count = 0;
	int first_failure = 0, ret;
	struct sigaction old_signals[RUNNER_SIGNALS];
	bool stopped = false;

	ret = run_backend_resolve(store, request->backend, &ctx.backend, &slurm, err);
	ctx.slurm_settings = slurm.buf;
	ctx.slurm_poll = ret == 0 && ctx.backend == BACKEND_SLURM ? slurm_poll_new() : NULL;
	if (ret == 0 && request->rerun) {
		ret = rerun_prepare(store, request, &again, &info, err);
		if (ret == 0)
			ctx.request = request = &again.request;
	} else if (ret == 0) {
		ret = snapshot_describe(request->cwd, &info, err);
	}
	if (ret < 0) {
		snapshot_info_release(&info);
		rerun_release(&again);
		strbuf_release(&slurm);
		slurm_poll_free(ctx.slurm_poll);
		return ret;
	}
	if (request->stop_on_signals) {
		runner_catch_signals(old_signals);
		ctx.stop.stopping = &runner_stopping;
		ctx.stop.aborting = &runner_aborting;
	}
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
	ctx.workflow = workflow;
	if (request->cache == RUNNER_CACHE_OFF)
		ctx.cache = RUN_CACHE_REFRESH;
	else if (request->cache == RUNNER_CACHE_ON || workflow->cache)
		ctx.cache = RUN_CACHE_ON;
	/* A provider of the repository wins over a built-in of the same name. */
	def = workflow->provider_repo ? NULL : provider_def_set_find(&defs, workflow->provider);
	if (workflow->provider_repo) {
		ret = remote_provider_prepare(store, request, workflow, &remote, &def, err);
		ctx.provider_dir = remote.dir.buf;
		spec.provider_repo = workflow->provider_repo;
		spec.provider_commit = remote.commit;
	} else if (def)
		ret = custom_provider_validate(info.root, def, workflow, err);
	else
		ret = runner_jobs(workflow, request->args, request->arg_count, &jobs, &count, err);
	ctx.jobs = jobs;
	ctx.count = count;
	/* A built-in's jobs asking more than the host has never start. */
	if (ret == 0 && (ret = schedule_check(&ctx, &why)) < 0) {
		ret = error_set(err, -EINVAL, "workflow '%s': %s", workflow->name, why.message);
		goto out;
	}
	if (ret == 0)
		ret = deps_resolve(store, workflow, info.repo, &deps, err);
	if (ret < 0)
		goto out;
	/* Shown a line each by ps and info, and split again by --rerun. */
	strbuf_add_shell_line_words(&args, request->args, request->arg_count);
	snprintf(commit, sizeof(commit), "%s%s", info.commit, info.dirty ? " (dirty)" : "");
	spec.workflow = workflow->name;
	spec.provider = workflow->provider;
	spec.args = args.buf ? args.buf : "";
	spec.repo = info.repo;
	spec.commit = commit;
	spec.runner_pid = getpid();
	spec.runner_started = proc_start_time(getpid());
	spec.branch = info.branch;
	spec.submodules = info.submodules.buf;
	/*
	 * The repository as it is now, stored (a rerun's is stored already):
	 * jobs start from it whenever they start, and the ingest holds gc off
	 * until the run names it.
	 */
	spec.snapshot = again.of.snapshot;
	ret = store_ingest_begin(store, &ingest, NULL, NULL, err);
	if (ret == 0 && !spec.snapshot)
		ret = store_ingest_paths(ingest, info.root, info.paths, info.path_count,
					 &spec.snapshot, err);
	if (ret == 0)
		ret = store_run_create(store, &spec, def ? 0 : (int)count, run, err);
	if (ingest)
		store_ingest_end(ingest);
	if (ret < 0)
		goto out;
	if (request->created)
		request->created(request->created_ctx, run);
	ret = store_run_set_status(store, run->id, "downloading", -1, err);
	if (ret == 0 && def) {
		ret = custom_provider_jobs(&ctx, def, &jobs, &count, err);
		ctx.jobs = jobs;
		ctx.count = count;
		if (ret == 0)
			ret = store_run_add_jobs(store, run->id, (int)count, err);
		if (ret == 0 && (ret = schedule_check(&ctx, err)) < 0)
			err->code = ret = -EPROTO;
	}
	if (ret == 0)
		ret = job_specs_record(store, run->id, jobs, count, err);
	if (ret == 0)
		ret = run_cache_prepare(store, &ctx, err);
	/*
	 * Containers reach each other by name on a network of the run's own.
	 * A lone one needs none: making, joining and removing one costs
	 * dockerd about half a second.
	 */
	ctx.docker_network = ctx.backend == BACKEND_DOCKER && run_image_count(jobs, count) > 1;
	if (ret == 0 && ctx.docker_network)
		ret = run_docker_network(run, err);
	if (ret == 0)
		ret = run_schedule(&ctx, &first_failure, &stopped, err);
	/* A helper that ended well took its container; else they may be left. */
	if (ctx.backend == BACKEND_DOCKER && run_image_count(jobs, count) &&
	    (ctx.docker_network || stopped || first_failure || ret < 0)) {
		struct strbuf said = STRBUF_INIT;

		run_docker_cleanup(run, &said);
		strbuf_release(&said);
	}
	/* A provider that failed, or whose jobs cannot run, fails the run. */
	if (ret == -EPROTO && *ctx.stop.stopping) {
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
	if (ret < 0) {
		/* The run cannot go on; record why it stopped as best we can. */
		struct error ignored = { 0 };

		store_run_set_reason(store, run->id, err->message, &ignored);
		store_run_set_status(store, run->id, "failed", -1, &ignored);
		goto out;
	}
	if (stopped)
		ret = store_run_set_status(store, run->id, *ctx.stop.aborting ? "aborted" : "stopped",
					   -1, err);
	else
		ret = store_run_set_status(store, run->id, first_failure ? "failed" : "done",
					   first_failure, err);
	if (ret == 0)
		ret = store_run_find(store, run->name, run, err);
out:
	if (request->stop_on_signals)
		runner_release_signals(old_signals);
	host_capacity_release(&ctx.capacity);
	strbuf_release(&ctx.cache_run_part);
	job_specs_free(jobs, count);
	free(deps.ids);
	free(deps.names);
	provider_def_set_release(&defs);
	workflow_set_release(&set);
	snapshot_info_release(&info);
	rerun_release(&again);
	remote_provider_release(&remote);
	strbuf_release(&args);
	strbuf_release(&slurm);
	slurm_poll_free(ctx.slurm_poll);
	return ret;
}
