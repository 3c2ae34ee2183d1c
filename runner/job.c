/*
 * job.c - one job of a run on the host: a fresh snapshot of the
 * repository as its working directory, its artifact folders made, its
 * deps' artifacts in place and read-only, its environment, its process
 * (in a cgroup with its limits where the machine allows), its output to
 * the catalog as it comes (flushed every HOST_TICK_MS at most, so a crash
 * loses under a second), and its artifact folders stored when it ends.
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
#include "runner/internal.h"

extern char **environ;

void job_env_set_all(struct job_env *env, char *const *vars, size_t count)
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

int job_ports_pick(const struct job_spec *spec, int **ports, struct error *err)
{
	size_t i;

	*ports = xcalloc(spec->port_count + 1, sizeof(int));
	for (i = 0; i < spec->port_count; i++) {
		int port = spec->ports[i] ? spec->ports[i] : job_free_port(err);

		if (port < 0)
			return port;
		(*ports)[i] = port;
	}
	return 0;
}

/* GPU indexes of a claim, as CUDA_VISIBLE_DEVICES lists them. */
static void gpus_format(uint64_t gpus, struct strbuf *out)
{
	int bit;

	for (bit = 0; bit < 64; bit++)
		if (gpus & (1ull << bit))
			strbuf_addf(out, "%s%d", out->len ? "," : "", bit);
}

static void job_env_ports(struct job_env *env, const char *prefix, const int *ports,
			  size_t count)
{
	char name[48], value[16];
	size_t i;

	for (i = 0; i < count; i++) {
		snprintf(name, sizeof(name), "%s%zu", prefix, i);
		snprintf(value, sizeof(value), "%d", ports[i]);
		job_env_set(env, name, value);
	}
}

void job_env_build(struct job_env *env, const struct job_slot *slot, bool host)
{
	const struct run_context *ctx = slot->ctx;
	const struct job_spec *spec = &ctx->jobs[slot->n];
	struct strbuf value = STRBUF_INIT;
	char **var;

	memset(env, 0, sizeof(*env));
	for (var = environ; host && *var; var++)
		job_env_put(env, *var);
	strbuf_addf(&value, "%s/%d", ctx->run->name, slot->n);
	job_env_set(env, "RUN_NAME", ctx->run->name);
	job_env_set(env, "JOB_ID", value.buf);
	job_env_set(env, "JOB_HOSTNAME", "127.0.0.1");
	job_env_set(env, "PYTHONUNBUFFERED", "1");
	job_env_ports(env, "PORT_", slot->ports, spec->port_count);
	if (spec->worker) {
		job_env_set(env, "MASTER_JOB_HOSTNAME", "127.0.0.1");
		job_env_ports(env, "MASTER_JOB_PORT_", slot->master_ports, slot->master_port_count);
	}
	/*
	 * The GPUs a job did not claim are another job's: it sees none of
	 * them.  A container is handed only its own (by dockerd), numbered
	 * from 0 there, so the host's numbers would be wrong in it.
	 */
	if (host && (slot->claim.gpus || ctx->capacity.gpu_count || host_has_gpus())) {
		strbuf_reset(&value);
		gpus_format(slot->claimed ? slot->claim.gpus : 0, &value);
		job_env_set(env, "CUDA_VISIBLE_DEVICES", value.buf ? value.buf : "");
	}
	strbuf_release(&value);
	job_env_set_all(env, spec->env, spec->env_count);
	job_env_set_all(env, ctx->workflow->env, ctx->workflow->env_count);
}

int job_artifact_check(const char *dir, const char *artifact, struct strbuf *said,
		       struct strbuf *why)
{
	struct strbuf path = STRBUF_INIT;
	struct stat st;
	char *real = NULL;
	int within = 1;

	strbuf_addf(&path, "%s/%s", dir, artifact);
	if (lstat(path.buf, &st) < 0) {
		within = 0;
		strbuf_addf(why, "artifact path '%s' does not exist", artifact);
		strbuf_addstr(said, why->buf);
	} else if ((within = fs_path_within(dir, path.buf, &real)) <= 0) {
		/* A symlink the job left there must not take the store out of its folder. */
		within = 0;
		strbuf_addf(why, "artifact path '%s' leads out of the job's folder", artifact);
		strbuf_addf(said, "%s%s%s%s: not stored", why->buf, real ? " (to " : "",
			    real ? real : "", real ? ")" : "");
	}
	free(real);
	strbuf_release(&path);
	return within;
}

/*
 * Stores each artifact folder of a finished job.  A missing one, or one
 * leading out of the job's folder, is said and, the first time, put in
 * *missing (when not NULL and empty).
 */
static int job_store_artifacts(struct store *store, struct job_output *out,
			       const char *dir, const struct job_spec *spec,
			       struct strbuf *missing, struct error *err)
{
	struct store_ingest *ingest;
	struct strbuf path = STRBUF_INIT, said = STRBUF_INIT, why = STRBUF_INIT;
	size_t i;
	int ret;

	if (!spec->artifact_count)
		return 0;
	ret = store_ingest_begin(store, &ingest, NULL, NULL, err);
	if (ret < 0)
		return ret;
	for (i = 0; i < spec->artifact_count && ret == 0; i++) {
		int64_t tree;

		strbuf_reset(&said);
		strbuf_reset(&why);
		if (!job_artifact_check(dir, spec->artifacts[i].path, &said, &why)) {
			job_output_say(out, "%s", said.buf);
			if (missing && !missing->len)
				strbuf_addf(missing, "job %d: %s", out->job, why.buf);
			continue;
		}
		strbuf_reset(&path);
		strbuf_addf(&path, "%s/%s", dir, spec->artifacts[i].path);
		ret = store_ingest_folder(ingest, path.buf, &tree, NULL, NULL, err);
		if (ret == 0)
			ret = store_artifact_add(store, out->run, out->job, spec->artifacts[i].path,
						 tree, err);
	}
	store_ingest_end(ingest);
	strbuf_release(&path);
	strbuf_release(&said);
	strbuf_release(&why);
	return ret;
}

int artifact_name_add(void *ctx, const struct store_entry *entry)
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
	names->paths[names->count] = path.buf;
	if (names->tree) {
		struct strbuf source = STRBUF_INIT;

		strbuf_addf(&source, "%s/%s", names->tree, entry->artifact);
		names->sources = xrealloc(names->sources, (names->count + 1) * sizeof(char *));
		names->sources[names->count] = source.buf;
	}
	names->count++;
	return 0;
}

/*
 * Puts the deps' artifacts in the job's directory and names them in ro:
 * where a daemon serves the tree (and this process may mount, as root)
 * they are bound from it in the job's mount namespace, so nothing is read
 * until the job reads it; else they are written out of the store.
 */
static int deps_materialize(struct store *store, const struct dep_runs *deps,
			    const char *dir, struct artifact_names *ro,
			    struct error *err)
{
	struct store_daemon daemon;
	struct strbuf tree = STRBUF_INIT;
	struct error none = { 0 };
	bool bind = deps->count && geteuid() == 0 &&
		    runner_daemon_find(store, NULL, &daemon, &none) == 0;
	size_t i, first;
	int ret = 0;

	ro->dir = dir;
	for (i = 0; i < deps->count && ret == 0; i++) {
		first = ro->count;
		if (bind) {
			strbuf_reset(&tree);
			strbuf_addf(&tree, "%s/runs/%s/artifacts", daemon.mountpoint,
				    deps->names[i]);
			ro->tree = tree.buf;
		} else {
			ret = store_run_download(store, deps->ids[i], dir, NULL, NULL, err);
		}
		if (ret == 0)
			ret = store_run_entries(store, deps->ids[i], artifact_name_add, ro, err);
		ro->tree = NULL;
		/* The mount points: empty folders the tree's are bound onto. */
		for (; bind && ret == 0 && first < ro->count; first++) {
			ret = fs_mkdir_p(ro->paths[first], 0755);
			if (ret < 0)
				error_errno(err, ret, "%s", ro->paths[first]);
		}
	}
	strbuf_release(&tree);
	return ret;
}

void artifact_names_release(struct artifact_names *names)
{
	size_t i;

	for (i = 0; i < names->count; i++) {
		free(names->paths[i]);
		if (names->sources)
			free(names->sources[i]);
	}
	free(names->paths);
	free(names->sources);
}


/* What the host backend does not do of what a job asks, said in its log. */
static void job_say_host_notes(struct job_output *out, const struct job_slot *slot)
{
	const struct job_spec *spec = &slot->ctx->jobs[slot->n];
	const struct workflow_resources *asked = &slot->ctx->workflow->resources;

	if (spec->image)
		job_output_say(out, "image '%s' is recorded; the host backend runs the commands"
			       " on this machine", spec->image);
	if (spec->resources.shm_size)
		job_output_say(out, "resources.shm_size has no effect on the host backend");
	if (asked->interruptible)
		job_output_say(out, "resources.interruptible has no effect on the host backend");
	if (asked->local)
		job_output_say(out, "resources.local: the host backend runs every job here anyway");
}

/* The job's cgroup, when it asks for limits; a warning where none can be made. */
static void job_limits(struct job_output *out, const struct job_slot *slot,
		       struct job_cgroup *cg)
{
	const struct job_resources *asked = &slot->ctx->jobs[slot->n].resources;
	struct strbuf name = STRBUF_INIT;
	struct error why = { 0 };

	if (!asked->cpu && !asked->memory)
		return;
	/* The runner's pid keeps runs of two stores with one name apart. */
	strbuf_addf(&name, "%s.%d.%d", slot->ctx->run->name, slot->n, (int)getpid());
	if (job_cgroup_create(name.buf, asked, cg, &why) < 0)
		job_output_say(out, "warning: cpu and memory limits are not enforced: %s",
			       why.message);
	strbuf_release(&name);
}

struct job_process {
	struct store *store;
	struct job_slot *slot;
	struct error err;
};

static void job_started(void *arg, pid_t pid)
{
	struct job_process *process = arg;
	struct job_slot *slot = process->slot;

	store_job_set_running(process->store, slot->ctx->run->id, slot->n, pid,
			      proc_start_time(pid), &process->err);
	schedule_job_running(slot);
}

/*
 * Says how the job ended when it did not end well; a failure's line goes
 * to *reason too.  helper_reason: what dstack-docker said of it, or NULL.
 */
static void job_say_end(struct job_output *out, const struct job_slot *slot,
			const struct job_cgroup *cg, const char *helper_reason,
			struct strbuf *reason)
{
	char limit[32];

	if (slot->stopped) {
		job_output_say(out, "job %d %s", slot->n, *slot->ctx->stop.aborting ? "aborted" : "stopped");
		return;
	}
	if (!slot->code)
		return;
	if (helper_reason && *helper_reason) {
		strbuf_addf(reason, "job %d: %s", slot->n, helper_reason);
	} else if (job_cgroup_oom_killed(cg)) {
		size_format(slot->ctx->jobs[slot->n].resources.memory, limit);
		strbuf_addf(reason, "job %d was killed: out of memory (its limit is %s)", slot->n,
			    limit);
	} else {
		strbuf_addf(reason, "job %d exited with status %d", slot->n, slot->code);
	}
	job_output_say(out, "%s", reason->buf);
}

static bool job_mounts_artifacts(const struct job_spec *spec)
{
	size_t i;

	for (i = 0; i < spec->artifact_count; i++)
		if (spec->artifacts[i].mount)
			return true;
	return false;
}

/*
 * A job of the docker backend: the script that runs it in its image.
 * The snapshot is the container's /workflow; deps are bound read-only.
 * Its host name is RUN-N; a run of several containers shares a network
 * where they reach each other by those names.  The GPUs claimed for it
 * are handed to it.
 */
static int job_docker_script(const struct job_slot *slot, const char *root, const char *dir,
			     const struct artifact_names *ro, const struct container_files *files,
			     struct strbuf *script, struct error *err)
{
	const struct job_spec *spec = &slot->ctx->jobs[slot->n];
	const char *run = slot->ctx->run->name;
	struct strbuf alias = STRBUF_INIT, network = STRBUF_INIT, master = STRBUF_INIT;
	struct job_env env;
	struct container_spec c = { .image = spec->image, .script = spec->script,
				    .ports = slot->ports, .port_count = spec->port_count,
				    .gpus = slot->claimed ? slot->claim.gpus : 0,
				    .resources = &spec->resources };
	int ret;

	job_env_build(&env, slot, false);
	/* On the run's network the jobs reach each other by these names. */
	strbuf_addf(&alias, "%s-%d", run, slot->n);
	strbuf_addf(&network, "dstack-%s", run);
	job_env_set(&env, "JOB_HOSTNAME", alias.buf);
	if (spec->worker) {
		strbuf_addf(&master, "%s-%zu", run, spec->master);
		job_env_set(&env, "MASTER_JOB_HOSTNAME", master.buf);
	}
	c.env = env.vars;
	c.env_count = env.count;
	c.network = slot->ctx->docker_network ? network.buf : NULL;
	c.alias = alias.buf;
	ret = container_job_script(&c, root, dir, spec->working_dir, ro, run, slot->n, files,
				   script, err);
	job_env_release(&env);
	strbuf_release(&alias);
	strbuf_release(&network);
	strbuf_release(&master);
	return ret;
}

int job_run(struct store *store, struct job_slot *slot, struct error *err)
{
	const struct run_context *ctx = slot->ctx;
	const struct job_spec *spec = &ctx->jobs[slot->n];
	int64_t run = ctx->run->id;
	int n = slot->n;
	struct artifact_names ro = { 0 };
	struct job_output out = { .store = store, .request = ctx->request, .run = run, .job = n };
	struct job_process process = { .store = store, .slot = slot };
	struct run_ticker ticker = { .out = &out, .stop = &ctx->stop };
	struct host_job host = { .output = job_output_write, .output_ctx = &out,
				 .tick = run_tick, .tick_ctx = &ticker, .stop = &ctx->stop,
				 .script = spec->script,
				 .started = job_started, .started_ctx = &process };
	struct job_cgroup cg = { .procs = { -1, -1 } };
	struct strbuf root = STRBUF_INIT, dir = STRBUF_INIT;
	struct strbuf docker_script = STRBUF_INIT, pinned = STRBUF_INIT;
	/* Why the job failed: dstack-docker's word, and the job's line. */
	struct strbuf helper_reason = STRBUF_INIT, reason = STRBUF_INIT;
	struct container_files files = { STRBUF_INIT, STRBUF_INIT, STRBUF_INIT };
	struct job_env env;
	struct error ignored = { 0 };
	bool docker = false;
	size_t i;
	int ret;

	ret = job_cache_serve(store, slot, err);
	if (ret != 0)
		return ret < 0 ? ret : 0;
	if (ctx->backend == BACKEND_SLURM)
		return slurm_job_run(store, slot, err);
	strbuf_addf(&root, "%s/work/%s-%d", store_home(store), ctx->run->name, n);
	ret = fs_mkdir_p(root.buf, 0700);
	if (ret < 0) {
		error_errno(err, ret, "%s", root.buf);
		goto out;
	}
	ret = store_job_set_status(store, run, n, "downloading", -1, err);
	if (ret == 0 && spec->image)
		ret = store_job_set_image(store, run, n, spec->image, err);
	if (ret == 0)
		ret = store_tree_download(store, ctx->run->snapshot, root.buf, err);
	if (ret < 0)
		goto out;
	strbuf_addf(&dir, "%s%s%s", root.buf, spec->working_dir ? "/" : "",
		    spec->working_dir ? spec->working_dir : "");
	/* A working_dir the snapshot lacks is made, as dockerd makes a WorkingDir. */
	ret = fs_mkdir_p(dir.buf, 0755);
	if (ret < 0) {
		error_errno(err, ret, "%s", dir.buf);
		goto out;
	}
	/* Artifact folders exist before the commands start, as dstack mounted them. */
	for (i = 0; i < spec->artifact_count && ret == 0; i++) {
		struct strbuf path = STRBUF_INIT;

		strbuf_addf(&path, "%s/%s", dir.buf, spec->artifacts[i].path);
		ret = fs_mkdir_p(path.buf, 0755);
		if (ret < 0) {
			error_errno(err, ret, "%s", path.buf);
		} else if (spec->artifacts[i].mount) {
			struct store_live_artifact live = { .job = n, .path = spec->artifacts[i].path,
							    .dir = path.buf };

			ret = store_live_artifact_add(store, run, &live, err);
		}
		strbuf_release(&path);
	}
	if (ret == 0)
		ret = deps_materialize(store, ctx->deps, dir.buf, &ro, err);
	if (ret < 0)
		goto out;
	docker = ctx->backend == BACKEND_DOCKER && spec->image;
	if (docker) {
		/* Beside the snapshot, so the job does not see it. */
		container_files_init(&files, root.buf);
		job_output_say(&out, "job %d runs in image '%s' through dockerd", n, spec->image);
		ret = job_docker_script(slot, root.buf, dir.buf, &ro, &files, &docker_script, err);
		if (ret < 0)
			goto out;
		host.script = docker_script.buf;
		/* dockerd gives the container's streams apart: so are they kept. */
		host.output = job_output_frames;
		host.split_stderr = true;
	} else {
		job_say_host_notes(&out, slot);
		job_limits(&out, slot, &cg);
	}
	job_env_build(&env, slot, true);
	if (spec->python_env && !docker)
		ret = runner_python_env(store, &env, err);
	if (ret < 0) {
		job_env_release(&env);
		goto out;
	}
	host.dir = dir.buf;
	host.env = env.vars;
	/* In a container the deps are bound by dockerd. */
	host.read_only = docker ? NULL : ro.paths;
	host.read_only_count = docker ? 0 : ro.count;
	host.read_only_sources = docker ? NULL : ro.sources;
	/* A container sees only what dockerd binds; the helper writes beside root. */
	host.store_dir = docker ? NULL : store_home(store);
	host.own_dir = root.buf;
	host.cgroup_procs = cg.procs;
	host.cgroup_count = cg.count;
	ret = store_run_set_status(store, run, "running", -1, err);
	if (ret == 0)
		ret = host_job_run(&host, &slot->code, &slot->stopped, err);
	if (ret == 0 && process.err.code)
		ret = (*err = process.err).code;
	/* The image as the registry named it when pulled: the run's record. */
	if (ret == 0 && docker && fs_read_file(files.pinned.buf, &pinned) == 0 && pinned.len)
		ret = store_job_set_image(store, run, n, pinned.buf, err);
	job_env_release(&env);
	/* What dstack-docker knows of the end that the exit status does not say. */
	if (ret == 0 && docker)
		fs_read_file(files.reason.buf, &helper_reason);
	if (ret == 0)
		job_say_end(&out, slot, &cg, helper_reason.buf, &reason);
	/* What the job left behind, even outside its process group, ends with it. */
	job_cgroup_destroy(&cg);
	/* An aborted job stores nothing. */
	if (ret == 0 && !*ctx->stop.aborting)
		ret = store_job_set_status(store, run, n, "uploading", -1, err);
	if (ret == 0 && !*ctx->stop.aborting)
		ret = job_store_artifacts(store, &out, dir.buf, spec,
					  reason.len ? NULL : &reason, err);
	if (ret == 0)
		ret = job_record_end(store, slot, &out, &reason, err);
	else
		job_output_flush(&out);
out:
	job_cgroup_destroy(&cg);
	artifact_names_release(&ro);
	/* Stored by now, or never to be: the tree stops showing the folders. */
	if (job_mounts_artifacts(spec) &&
	    store_live_artifacts_clear(store, run, n, ret < 0 ? &ignored : err) < 0 && ret == 0)
		ret = err->code;
	fs_remove_tree(root.buf);
	container_files_remove(&files);
	strbuf_release(&pinned);
	strbuf_release(&helper_reason);
	strbuf_release(&reason);
	strbuf_release(&docker_script);
	job_output_release(&out);
	strbuf_release(&root);
	strbuf_release(&dir);
	return ret;
}

int job_record_end(struct store *store, struct job_slot *slot, struct job_output *out,
		   const struct strbuf *reason, struct error *err)
{
	int64_t run = slot->ctx->run->id;
	int n = slot->n, ret = 0;

	if (reason->len && !slot->code && !slot->stopped)
		slot->code = 1;
	/* The first failure is the run's reason too. */
	if (reason->len && slot->code && !slot->stopped)
		ret = store_job_set_reason(store, run, n, reason->buf, err);
	if (ret == 0 && reason->len && slot->code && !slot->stopped)
		ret = store_run_set_reason(store, run, reason->buf, err);
	if (job_output_flush(out) < 0 && ret == 0) {
		*err = out->err;
		ret = err->code;
	}
	if (ret == 0 && slot->stopped)
		ret = store_job_set_status(store, run, n, *slot->ctx->stop.aborting ? "aborted" :
					   "stopped", -1, err);
	else if (ret == 0)
		ret = store_job_set_status(store, run, n, slot->code ? "failed" : "done",
					   slot->code, err);
	return ret;
}

/* A job as its provider made it, as JSON: the fields of DESIGN.md's jobs. */
static void job_spec_json(const struct job_spec *spec, struct strbuf *json)
{
	const struct job_resources *res = &spec->resources;
	char *script = xstrdup(spec->script), *line, *save = NULL;
	size_t i;
	bool first = true;

	/* The script is "set -e" and the commands, a line each. */
	strbuf_addstr(json, "{\"commands\":[");
	for (line = strtok_r(script, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (first && !strcmp(line, "set -e")) {
			first = false;
			continue;
		}
		if (json->buf[json->len - 1] != '[')
			strbuf_addstr(json, ",");
		json_add_string(json, line);
		first = false;
	}
	strbuf_addstr(json, "]");
	free(script);
	if (spec->image) {
		strbuf_addstr(json, ",\"image\":");
		json_add_string(json, spec->image);
	}
	if (spec->working_dir) {
		strbuf_addstr(json, ",\"working_dir\":");
		json_add_string(json, spec->working_dir);
	}
	/* Mounted ones as the workflow wrote them: {path: P, mount: true}. */
	if (spec->artifact_count) {
		strbuf_addstr(json, ",\"artifacts\":[");
		for (i = 0; i < spec->artifact_count; i++) {
			strbuf_addstr(json, i ? "," : "");
			if (spec->artifacts[i].mount)
				strbuf_addstr(json, "{\"path\":");
			json_add_string(json, spec->artifacts[i].path);
			if (spec->artifacts[i].mount)
				strbuf_addstr(json, ",\"mount\":true}");
		}
		strbuf_addstr(json, "]");
	}
	if (spec->env_count)
		json_add_strings_field(json, "env", spec->env, spec->env_count);
	if (spec->port_count) {
		strbuf_addstr(json, ",\"ports\":[");
		for (i = 0; i < spec->port_count; i++)
			strbuf_addf(json, "%s%d", i ? "," : "", spec->ports[i]);
		strbuf_addstr(json, "]");
	}
	if (res->cpu || res->memory || res->gpu_count || res->shm_size) {
		strbuf_addstr(json, ",\"resources\":{");
		strbuf_addf(json, "\"cpu\":%d,\"memory\":%llu,\"shm_size\":%llu,"
			    "\"gpu\":{\"count\":%d,\"memory\":%llu", res->cpu,
			    (unsigned long long)res->memory, (unsigned long long)res->shm_size,
			    res->gpu_count, (unsigned long long)res->gpu_memory);
		if (res->gpu_name) {
			strbuf_addstr(json, ",\"name\":");
			json_add_string(json, res->gpu_name);
		}
		strbuf_addstr(json, "}}");
	}
	if (spec->depends_on_count) {
		strbuf_addstr(json, ",\"depends_on\":[");
		for (i = 0; i < spec->depends_on_count; i++)
			strbuf_addf(json, "%s%zu", i ? "," : "", spec->depends_on[i]);
		strbuf_addstr(json, "]");
	}
	if (spec->worker)
		strbuf_addf(json, ",\"master\":%zu", spec->master);
	strbuf_addstr(json, "}");
}

int job_specs_record(struct store *store, int64_t run, const struct job_spec *jobs,
		     size_t count, struct error *err)
{
	struct strbuf json = STRBUF_INIT, yaml = STRBUF_INIT;
	struct json *value = NULL;
	size_t i;
	int ret = 0;

	for (i = 0; i < count && ret == 0; i++) {
		strbuf_reset(&json);
		strbuf_reset(&yaml);
		job_spec_json(&jobs[i], &json);
		/* Ours, so it parses. */
		ret = json_parse(json.buf, json.len, &value, err);
		if (ret == 0) {
			env_mask_spec(value);
			json_add_yaml(&yaml, value);
			ret = store_job_set_spec(store, run, (int)i, yaml.buf, err);
		}
		json_free(value);
		value = NULL;
	}
	strbuf_release(&json);
	strbuf_release(&yaml);
	return ret;
}
