/*
 * slurm.c - a job of the slurm backend, on the runner's side.  The job's
 * folder under $DSTACK_HOME/work, which every node sees, gets what
 * `dstack job-exec` needs there (exec.c): job.json and the manifests of
 * its inputs.  dstack-slurm submits it.  Until Slurm ends it, the logs the
 * node appends go to the catalog, Slurm's state to the job's status (a
 * pending job's reason to its info), and `dstack stop` becomes scancel.
 * What the node stored comes back as manifests, recorded here: only the
 * runner writes the catalog.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/json.h"
#include "runner/internal.h"

extern char **environ;

/*
 * How often the runner looks at the job's logs, and asks Slurm its state:
 * often at first, then seldom (each ask costs slurmctld a request and the
 * runner a helper), but at once when the node's job-exec says it started
 * (its first bytes of logs) or ended (its result).
 */
#define SLURM_LOOK_NS (250ll * 1000000)
#define SLURM_STATE_FIRST_NS (1000ll * 1000000)
#define SLURM_STATE_LATER_NS (5000ll * 1000000)
#define SLURM_STATE_SLOWER_AFTER_NS (10000ll * 1000000)

struct slurm_state {
	long long id;
	char state[32];		/* Slurm's word: PENDING, RUNNING, COMPLETED, ... */
	char reason[64];	/* why it is pending, or "" */
	char node[256];		/* where it runs, once placed */
	int exit_code;
	int signal;
};

/*
 * dstack-slurm VERB SETTINGS ARGS...: its stdout into out; its one line
 * of error (without "dstack: ") as the error.
 */
static int slurm_call(const char *verb, const char *settings, char *const *args, size_t count,
		      struct strbuf *out, struct error *err)
{
	struct strbuf helper = STRBUF_INIT;
	char **argv = xcalloc(count + 4, sizeof(char *));
	char *line, *end;
	int status = 0, ret;
	size_t i;

	ret = provider_helper_path("dstack-slurm", &helper, err);
	argv[0] = "dstack-slurm";
	argv[1] = (char *)verb;
	argv[2] = (char *)settings;
	for (i = 0; i < count; i++)
		argv[3 + i] = args[i];
	if (ret == 0)
		ret = host_exec(helper.buf, argv, out, true, &status, err);
	if (ret == 0 && status) {
		strbuf_trim_end(out);
		line = out->len ? out->buf : "";
		end = strrchr(line, '\n');
		line = end ? end + 1 : line;
		if (!strncmp(line, "dstack: ", 8))
			line += 8;
		ret = error_set(err, status == 127 ? -ENOENT : -EIO, "%s",
				status == 127 ? "slurm: dstack-slurm cannot be run" : *line ? line :
				"slurm: dstack-slurm failed");
	}
	free(argv);
	strbuf_release(&helper);
	return ret;
}

/* One line of dstack-slurm state into st. */
static int slurm_state_parse(const char *line, size_t len, struct slurm_state *st,
			     struct error *err)
{
	struct json *value = NULL;
	const struct json *field;
	long long number;

	memset(st, 0, sizeof(*st));
	if (json_parse(line, len, &value, err) < 0)
		return error_set(err, -EPROTO, "slurm: dstack-slurm state: %s", err->message);
	st->id = json_integer(json_get(value, "id"), &number) ? number : 0;
	field = json_get(value, "state");
	snprintf(st->state, sizeof(st->state), "%s",
		 field && field->type == JSON_STRING ? field->string : "UNKNOWN");
	field = json_get(value, "reason");
	snprintf(st->reason, sizeof(st->reason), "%s",
		 field && field->type == JSON_STRING ? field->string : "");
	field = json_get(value, "node");
	snprintf(st->node, sizeof(st->node), "%s",
		 field && field->type == JSON_STRING ? field->string : "");
	st->exit_code = json_integer(json_get(value, "exit_code"), &number) ? (int)number : 0;
	st->signal = json_integer(json_get(value, "signal"), &number) ? (int)number : 0;
	json_free(value);
	return 0;
}

struct slurm_poll {
	pthread_mutex_t lock;
	struct slurm_state *jobs;	/* the run's live Slurm jobs, as last heard */
	size_t count;
	int64_t asked;			/* when, on CLOCK_MONOTONIC */
};

struct slurm_poll *slurm_poll_new(void)
{
	struct slurm_poll *poll = xcalloc(1, sizeof(*poll));

	pthread_mutex_init(&poll->lock, NULL);
	return poll;
}

void slurm_poll_free(struct slurm_poll *poll)
{
	if (!poll)
		return;
	pthread_mutex_destroy(&poll->lock);
	free(poll->jobs);
	free(poll);
}

static void slurm_poll_add(struct slurm_poll *poll, long long id)
{
	pthread_mutex_lock(&poll->lock);
	poll->jobs = xrealloc(poll->jobs, (poll->count + 1) * sizeof(*poll->jobs));
	memset(&poll->jobs[poll->count], 0, sizeof(*poll->jobs));
	poll->jobs[poll->count++].id = id;
	pthread_mutex_unlock(&poll->lock);
}

static void slurm_poll_remove(struct slurm_poll *poll, long long id)
{
	size_t i;

	pthread_mutex_lock(&poll->lock);
	for (i = 0; i < poll->count && poll->jobs[i].id != id; i++)
		;
	if (i < poll->count)
		poll->jobs[i] = poll->jobs[--poll->count];
	pthread_mutex_unlock(&poll->lock);
}

/*
 * The state of Slurm job id, heard at most fresh_ns ago: one ask serves
 * every job of the run, since dstack-slurm state takes them all at once.
 */
static int slurm_poll_state(struct slurm_poll *poll, const char *settings, long long id,
			    int64_t fresh_ns, struct slurm_state *st, struct error *err)
{
	struct strbuf out = STRBUF_INIT;
	struct slurm_state heard;
	char **args;
	char *line, *end;
	size_t i;
	int ret = 0;

	pthread_mutex_lock(&poll->lock);
	if (!poll->asked || time_monotonic_ns() - poll->asked > fresh_ns) {
		args = xcalloc(poll->count + 1, sizeof(char *));
		for (i = 0; i < poll->count; i++) {
			strbuf_reset(&out);
			strbuf_addf(&out, "%lld", poll->jobs[i].id);
			args[i] = xstrdup(out.buf);
		}
		strbuf_reset(&out);
		ret = slurm_call("state", settings, args, poll->count, &out, err);
		for (line = out.buf; ret == 0 && line && *line; line = end ? end + 1 : NULL) {
			end = strchr(line, '\n');
			ret = slurm_state_parse(line, end ? (size_t)(end - line) : strlen(line),
						&heard, err);
			for (i = 0; ret == 0 && i < poll->count; i++)
				if (poll->jobs[i].id == heard.id)
					poll->jobs[i] = heard;
		}
		for (i = 0; i < poll->count; i++)
			free(args[i]);
		free(args);
		poll->asked = ret == 0 ? time_monotonic_ns() : 0;
	}
	for (i = 0; i < poll->count && poll->jobs[i].id != id; i++)
		;
	if (ret == 0 && i < poll->count && *poll->jobs[i].state)
		*st = poll->jobs[i];
	else if (ret == 0)
		ret = error_set(err, -EPROTO, "slurm: dstack-slurm state said nothing of job %lld",
				id);
	pthread_mutex_unlock(&poll->lock);
	strbuf_release(&out);
	return ret;
}

static void slurm_cancel(const char *settings, long long id)
{
	struct strbuf out = STRBUF_INIT;
	struct error ignored = { 0 };
	char arg[24];
	char *args[] = { arg };

	snprintf(arg, sizeof(arg), "%lld", id);
	slurm_call("cancel", settings, args, 1, &out, &ignored);
	strbuf_release(&out);
}

static bool slurm_state_final(const char *state)
{
	static const char *const live[] = { "PENDING", "RUNNING", "COMPLETING", "CONFIGURING",
					    "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING",
					    "STAGE_OUT", "RESV_DEL_HOLD", "REQUEUE_HOLD",
					    "REQUEUE_FED", "STOPPED" };
	size_t i;

	for (i = 0; i < sizeof(live) / sizeof(*live); i++)
		if (!strcmp(state, live[i]))
			return false;
	return true;
}

/* Whether the job waits in the queue: not yet placed, or put back. */
static bool slurm_state_waiting(const char *state)
{
	return !strcmp(state, "PENDING") || !strncmp(state, "REQUEUE", 7) ||
	       !strcmp(state, "RESV_DEL_HOLD");
}

/* Why Slurm ended a job that did not end by itself, or NULL. */
static const char *slurm_state_reason(const char *state)
{
	static const struct { const char *state, *why; } reasons[] = {
		{ "TIMEOUT", "it reached its time limit in Slurm" },
		{ "NODE_FAIL", "its node failed" },
		{ "PREEMPTED", "Slurm preempted it" },
		{ "OUT_OF_MEMORY", "it was killed: out of memory" },
		{ "BOOT_FAIL", "its node failed to boot" },
		{ "DEADLINE", "it reached its deadline in Slurm" },
		{ "UNKNOWN", "Slurm no longer knows it" },
	};
	size_t i;

	for (i = 0; i < sizeof(reasons) / sizeof(*reasons); i++)
		if (!strcmp(state, reasons[i].state))
			return reasons[i].why;
	return NULL;
}

/*
 * Whether a pending job waits for what will never come: Slurm keeps such
 * a job (a limit of its partition, an account it may not use) for good.
 */
static bool slurm_reason_hopeless(const char *reason)
{
	static const char *const hopeless[] = { "PartitionConfig", "PartitionNodeLimit",
						"BadConstraints", "InvalidAccount", "InvalidQOS",
						"AccountNotAllowed", "QOSNotAllowed",
						"DependencyNeverSatisfied" };
	size_t i;

	for (i = 0; i < sizeof(hopeless) / sizeof(*hopeless); i++)
		if (!strcmp(reason, hopeless[i]))
			return true;
	return false;
}

/* What the node has appended to the job's logs since *at, into the catalog. */
static int slurm_logs_tail(const char *path, off_t *at, struct job_output *out)
{
	char buf[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return 0;
	while (ret == 0 && (n = pread(fd, buf, sizeof(buf), *at)) > 0) {
		*at += n;
		ret = job_output_frames(out, STDOUT_FILENO, buf, (size_t)n);
	}
	close(fd);
	return ret < 0 ? out->err.code : 0;
}

/* FOLDER/NAME, written whole: 0 or an error naming it. */
static int slurm_file_write(const char *folder, const char *name, const struct strbuf *text,
			    struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	int ret;

	strbuf_addf(&path, "%s/%s", folder, name);
	ret = fs_write_file(path.buf, text->buf ? text->buf : "", text->len);
	if (ret < 0)
		error_errno(err, ret, "%s", path.buf);
	strbuf_release(&path);
	return ret;
}

/*
 * job.json, snapshot.manifest and deps.manifest: the job as the node
 * runs it, and where its inputs lie in the packs.
 */
static int slurm_ticket_write(struct store *store, const struct job_slot *slot,
			      const char *folder, struct error *err)
{
	const struct run_context *ctx = slot->ctx;
	const struct job_spec *spec = &ctx->jobs[slot->n];
	struct strbuf text = STRBUF_INIT;
	struct artifact_names ro = { .dir = "." };
	struct job_env env;
	size_t i;
	int ret;

	ret = store_manifest_tree(store, ctx->run->snapshot, &text, err);
	if (ret == 0)
		ret = slurm_file_write(folder, "snapshot.manifest", &text, err);
	strbuf_reset(&text);
	for (i = 0; i < ctx->deps->count && ret == 0; i++) {
		ret = store_manifest_run(store, ctx->deps->ids[i], &text, err);
		if (ret == 0)
			ret = store_run_entries(store, ctx->deps->ids[i], artifact_name_add, &ro, err);
	}
	if (ret == 0)
		ret = slurm_file_write(folder, "deps.manifest", &text, err);
	strbuf_reset(&text);
	job_env_build(&env, slot, false);
	if (spec->worker) {
		const struct job_slot *master = &slot->schedule_slots[spec->master];

		job_env_set(&env, "MASTER_JOB_HOSTNAME", master->node);
	}
	if (ret == 0 && spec->python_env)
		ret = runner_python_env(store, &env, err);
	strbuf_addstr(&text, "{\"run\":");
	json_add_string(&text, ctx->run->name);
	strbuf_addf(&text, ",\"job\":%d,\"script\":", slot->n);
	json_add_string(&text, spec->script);
	json_add_strings_field(&text, "env", env.vars, env.count);
	if (spec->working_dir) {
		strbuf_addstr(&text, ",\"working_dir\":");
		json_add_string(&text, spec->working_dir);
	}
	if (spec->image) {
		strbuf_addstr(&text, ",\"image\":");
		json_add_string(&text, spec->image);
	}
	strbuf_addstr(&text, ",\"artifacts\":[");
	for (i = 0; i < spec->artifact_count; i++) {
		strbuf_addstr(&text, i ? "," : "");
		json_add_string(&text, spec->artifacts[i].path);
	}
	strbuf_addstr(&text, "]");
	json_add_strings_field(&text, "read_only", ro.paths, ro.count);
	strbuf_addstr(&text, "}\n");
	if (ret == 0)
		ret = slurm_file_write(folder, "job.json", &text, err);
	job_env_release(&env);
	artifact_names_release(&ro);
	strbuf_release(&text);
	return ret;
}

/* request.json for dstack-slurm submit: job-exec on the folder, as Slurm asks. */
static int slurm_request_write(const struct job_slot *slot, const char *folder,
			       struct error *err)
{
	const struct run_context *ctx = slot->ctx;
	const struct job_spec *spec = &ctx->jobs[slot->n];
	const struct job_resources *res = &spec->resources;
	struct strbuf text = STRBUF_INIT, script = STRBUF_INIT, self = STRBUF_INIT;
	struct job_env env = { 0 };
	char **var;
	size_t i;
	int ret = provider_helper_path("dstack", &self, err);

	/* The node runs the same dstack (a shared install) on the same store. */
	strbuf_addstr(&script, "#!/bin/sh\nexec ");
	strbuf_add_shell_word(&script, self.buf);
	strbuf_addstr(&script, " job-exec ");
	strbuf_add_shell_word(&script, folder);
	strbuf_addstr(&script, "\n");
	/* As sbatch would by default: the submitter's environment. */
	for (var = environ; *var; var++)
		job_env_put(&env, *var);
	job_env_set(&env, "DSTACK_HOME", store_home(ctx->store));
	strbuf_addf(&text, "{\"name\":\"dstack-%s-%d\",\"script\":", ctx->run->name, slot->n);
	json_add_string(&text, script.buf);
	strbuf_addstr(&text, ",\"workdir\":");
	json_add_string(&text, folder);
	strbuf_addstr(&text, ",\"output\":");
	strbuf_reset(&script);
	strbuf_addf(&script, "%s/slurm.out", folder);
	json_add_string(&text, script.buf);
	json_add_strings_field(&text, "env", env.vars, env.count);
	strbuf_addf(&text, ",\"cpus\":%d,\"memory_mb\":%llu,\"gpus\":%d,\"gpu_name\":", res->cpu,
		    (unsigned long long)((res->memory + (1 << 20) - 1) >> 20), res->gpu_count);
	if (res->gpu_name)
		json_add_string(&text, res->gpu_name);
	else
		strbuf_addstr(&text, "null");
	strbuf_addstr(&text, ",\"after_ok\":[");
	for (i = 0; i < spec->depends_on_count; i++)
		strbuf_addf(&text, "%s%lld", i ? "," : "",
			    slot->schedule_slots[spec->depends_on[i]].slurm_id);
	strbuf_addstr(&text, "]}\n");
	if (ret == 0)
		ret = slurm_file_write(folder, "request.json", &text, err);
	job_env_release(&env);
	strbuf_release(&self);
	strbuf_release(&script);
	strbuf_release(&text);
	return ret;
}

/* What job-exec left in result.json. */
struct slurm_result {
	struct json *json;
	int code;
	bool stopped;
	const char *reason;
	const struct json *artifacts;
};

static int slurm_result_read(const char *folder, struct slurm_result *result,
			     struct error *err)
{
	struct strbuf path = STRBUF_INIT, text = STRBUF_INIT;
	const struct json *field;
	long long code = 1;
	int ret;

	memset(result, 0, sizeof(*result));
	strbuf_addf(&path, "%s/result.json", folder);
	ret = fs_read_file(path.buf, &text);
	if (ret == 0 && json_parse(text.buf, text.len, &result->json, err) < 0)
		ret = error_set(err, -EPROTO, "%s: %s", path.buf, err->message);
	if (ret == 0) {
		json_integer(json_get(result->json, "code"), &code);
		result->code = (int)code;
		field = json_get(result->json, "stopped");
		result->stopped = field && field->type == JSON_BOOL && field->boolean;
		field = json_get(result->json, "reason");
		result->reason = field && field->type == JSON_STRING ? field->string : "";
		field = json_get(result->json, "artifacts");
		result->artifacts = field && field->type == JSON_ARRAY ? field : NULL;
	}
	strbuf_release(&path);
	strbuf_release(&text);
	return ret;
}

/* Records what the node stored of each artifact; the first missing one into *missing. */
static int slurm_artifacts_import(struct store *store, struct store_ingest *ingest,
				  struct job_output *out, const char *folder,
				  const struct json *artifacts, struct strbuf *missing,
				  struct error *err)
{
	struct strbuf path = STRBUF_INIT, text = STRBUF_INIT;
	size_t i;
	int ret = 0;

	for (i = 0; artifacts && i < artifacts->count && ret == 0; i++) {
		const struct json *item = &artifacts->items[i];
		const struct json *name = json_get(item, "path");
		const struct json *manifest = json_get(item, "manifest");
		const struct json *why = json_get(item, "missing");
		int64_t tree;

		if (!name || name->type != JSON_STRING)
			return error_set(err, -EPROTO, "%s/result.json: artifacts[%zu]: no path",
					 folder, i);
		if (why && why->type == JSON_STRING) {
			if (!missing->len)
				strbuf_addf(missing, "job %d: %s", out->job, why->string);
			continue;
		}
		if (!manifest || manifest->type != JSON_STRING || strchr(manifest->string, '/'))
			return error_set(err, -EPROTO, "%s/result.json: artifacts[%zu]: no manifest",
					 folder, i);
		strbuf_reset(&path);
		strbuf_reset(&text);
		strbuf_addf(&path, "%s/%s", folder, manifest->string);
		ret = fs_read_file(path.buf, &text);
		if (ret < 0)
			error_errno(err, ret, "%s", path.buf);
		if (ret == 0)
			ret = store_stage_import(ingest, text.buf ? text.buf : "", text.len, &tree,
						 err);
		if (ret == 0)
			ret = store_artifact_add(store, out->run, out->job, name->string, tree, err);
	}
	strbuf_release(&path);
	strbuf_release(&text);
	return ret;
}

/*
 * Follows the Slurm job until it ends: its logs into the catalog, its
 * state into the job's status and reason, a stop into scancel.  *cancelled
 * when this process cancelled it for a stop; hopeless, Slurm's reason
 * when it was cancelled because it could never start.
 */
static int slurm_follow(struct store *store, struct job_slot *slot, const char *folder,
			const char *settings, struct job_output *out, struct slurm_state *st,
			bool *cancelled, char hopeless[64], struct error *err)
{
	const struct run_context *ctx = slot->ctx;
	struct run_ticker ticker = { .out = out, .stop = &ctx->stop };
	struct strbuf logs = STRBUF_INIT, line = STRBUF_INIT;
	struct timespec pause = { 0, SLURM_LOOK_NS };
	struct strbuf result = STRBUF_INIT;
	int64_t began = time_monotonic_ns(), next_state = 0;
	char shown[64] = "";
	bool running = false, ended = false;
	off_t at = 0;
	int ret = 0;

	strbuf_addf(&logs, "%s/logs", folder);
	strbuf_addf(&result, "%s/result.json", folder);
	for (;;) {
		ret = slurm_logs_tail(logs.buf, &at, out);
		if (ret == 0)
			ret = run_tick(&ticker);
		ended = ended || access(result.buf, F_OK) == 0;
		if ((!running && at) || ended)
			next_state = 0;
		if (ret < 0) {
			*err = out->err;
			break;
		}
		if (*ctx->stop.stopping && !*cancelled) {
			slurm_cancel(settings, slot->slurm_id);
			*cancelled = true;
			next_state = 0;
		}
		if (time_monotonic_ns() >= next_state) {
			int64_t every = time_monotonic_ns() - began < SLURM_STATE_SLOWER_AFTER_NS ?
					SLURM_STATE_FIRST_NS : SLURM_STATE_LATER_NS;

			/* What another job's ask heard will do, unless this one must know now. */
			ret = slurm_poll_state(ctx->slurm_poll, settings, slot->slurm_id,
					       next_state ? every / 2 : 0, st, err);
			next_state = time_monotonic_ns() + every;
			if (ret < 0)
				break;
			if (running && slurm_state_waiting(st->state)) {
				/* A node failure or an admin put it back in the queue. */
				running = false;
				*shown = '\0';
				job_output_say(out, "job %d was requeued by Slurm (job %lld)", slot->n,
					       slot->slurm_id);
				ret = store_job_set_status(store, out->run, slot->n, "submitted", -1,
							   err);
			}
			if (ret == 0 && slurm_state_waiting(st->state) && strcmp(shown, st->reason)) {
				snprintf(shown, sizeof(shown), "%s", st->reason);
				strbuf_reset(&line);
				strbuf_addf(&line, "pending in Slurm (job %lld)%s%s", slot->slurm_id,
					    *st->reason ? ": " : "", st->reason);
				job_output_say(out, "job %d is %s", slot->n, line.buf);
				ret = store_job_set_reason(store, out->run, slot->n, line.buf, err);
				if (slurm_reason_hopeless(st->reason) && !*hopeless) {
					snprintf(hopeless, 64, "%s", st->reason);
					slurm_cancel(settings, slot->slurm_id);
				}
			} else if (ret == 0 && !running && !slurm_state_waiting(st->state)) {
				running = true;
				snprintf(slot->node, sizeof(slot->node), "%s", st->node);
				ret = store_job_set_reason(store, out->run, slot->n, "", err);
				if (ret == 0)
					ret = store_job_set_status(store, out->run, slot->n, "running", -1,
								   err);
				if (ret == 0)
					ret = store_run_set_status(store, out->run, "running", -1, err);
				schedule_job_running(slot);
			}
			if (ret < 0 || slurm_state_final(st->state))
				break;
		}
		nanosleep(&pause, NULL);
	}
	/* Whatever went wrong here, the job must not run on unwatched. */
	if (ret < 0 && !*cancelled)
		slurm_cancel(settings, slot->slurm_id);
	if (ret == 0)
		ret = slurm_logs_tail(logs.buf, &at, out);
	if (ret < 0 && ret == out->err.code)
		*err = out->err;
	strbuf_release(&logs);
	strbuf_release(&line);
	strbuf_release(&result);
	return ret;
}

int slurm_job_run(struct store *store, struct job_slot *slot, struct error *err)
{
	const struct run_context *ctx = slot->ctx;
	const struct job_spec *spec = &ctx->jobs[slot->n];
	int64_t run = ctx->run->id;
	int n = slot->n;
	struct job_output out = { .store = store, .request = ctx->request, .run = run, .job = n };
	struct strbuf folder = STRBUF_INIT, settings = STRBUF_INIT, path = STRBUF_INIT;
	struct strbuf text = STRBUF_INIT, reason = STRBUF_INIT;
	struct store_ingest *ingest = NULL;
	struct slurm_result result = { 0 };
	struct slurm_state st = { 0 };
	struct error why = { 0 };
	bool cancelled = false;
	char hopeless[64] = "";
	char *args[1];
	const char *ended;
	int ret;

	strbuf_addf(&folder, "%s/work/%s-%d", store_home(store), ctx->run->name, n);
	ret = fs_mkdir_p(folder.buf, 0700);
	if (ret < 0) {
		error_errno(err, ret, "%s", folder.buf);
		goto out;
	}
	/* Holds gc off: the packs the node writes are the catalog's only once recorded. */
	ret = store_ingest_begin(store, &ingest, NULL, NULL, err);
	if (ret == 0 && spec->image)
		ret = store_job_set_image(store, run, n, spec->image, err);
	if (ret == 0)
		ret = slurm_ticket_write(store, slot, folder.buf, err);
	if (ret == 0)
		ret = slurm_request_write(slot, folder.buf, err);
	strbuf_addf(&settings, "%s/settings.json", folder.buf);
	strbuf_addstr(&text, ctx->slurm_settings);
	if (ret == 0)
		ret = slurm_file_write(folder.buf, "settings.json", &text, err);
	strbuf_reset(&text);
	/* Made here: a node's NFS client may cache that it did not exist. */
	if (ret == 0)
		ret = slurm_file_write(folder.buf, "logs", &text, err);
	strbuf_addf(&path, "%s/request.json", folder.buf);
	args[0] = path.buf;
	if (ret == 0)
		ret = slurm_call("submit", settings.buf, args, 1, &text, err);
	if (ret < 0)
		goto out;
	schedule_job_submitted(slot, strtoll(text.buf, NULL, 10));
	slurm_poll_add(ctx->slurm_poll, slot->slurm_id);
	job_output_say(&out, "job %d is Slurm job %lld", n, slot->slurm_id);
	/* Whoever finds this runner dead cancels the job by it. */
	if (slurm_file_write(folder.buf, "slurm.id", &text, err) < 0) {
		slurm_cancel(settings.buf, slot->slurm_id);
		ret = err->code;
		goto out;
	}
	ret = slurm_follow(store, slot, folder.buf, settings.buf, &out, &st, &cancelled, hopeless,
			   err);
	slurm_poll_remove(ctx->slurm_poll, slot->slurm_id);
	if (ret < 0)
		goto out;
	ended = slurm_state_reason(st.state);
	if (slurm_result_read(folder.buf, &result, &why) == 0) {
		const struct json *pinned = json_get(result.json, "image");

		if (pinned && pinned->type == JSON_STRING)
			ret = store_job_set_image(store, run, n, pinned->string, err);
		slot->code = result.code;
		slot->stopped = cancelled && result.stopped;
		if (*result.reason)
			strbuf_addf(&reason, "job %d: %s", n, result.reason);
	} else if (cancelled) {
		slot->stopped = true;
	} else if (*hopeless && strcmp(hopeless, "DependencyNeverSatisfied")) {
		slot->code = 1;
		strbuf_addf(&reason, "job %d can never start in Slurm (job %lld): %s", n,
			    slot->slurm_id, hopeless);
	} else if (!strcmp(st.state, "CANCELLED") && (*hopeless || strstr(st.reason, "Dependency"))) {
		slot->code = 1;
		slot->blocked = true;
		strbuf_addf(&reason, "job %d did not start: a job it depends on failed", n);
	} else if (!ended) {
		slot->code = st.exit_code ? st.exit_code : 1;
		strbuf_addf(&reason, "job %d: Slurm job %lld ended %s without a result from"
			    " dstack job-exec", n, slot->slurm_id, st.state);
	}
	/* Slurm's word on how it ended wins over what job-exec saw (a SIGTERM). */
	if (ended) {
		slot->code = slot->code ? slot->code : 1;
		slot->stopped = false;
		strbuf_reset(&reason);
		strbuf_addf(&reason, "job %d: %s (Slurm job %lld, %s)", n, ended, slot->slurm_id,
			    st.state);
	}
	if (!slot->stopped && reason.len)
		job_output_say(&out, "%s", reason.buf);
	if (ret == 0 && !*ctx->stop.aborting && result.artifacts) {
		ret = store_job_set_status(store, run, n, "uploading", -1, err);
		if (ret == 0)
			ret = slurm_artifacts_import(store, ingest, &out, folder.buf, result.artifacts,
						     &reason, err);
	}
	if (ret == 0)
		ret = job_record_end(store, slot, &out, &reason, err);
out:
	if (ingest)
		store_ingest_end(ingest);
	json_free(result.json);
	fs_remove_tree(folder.buf);
	job_output_release(&out);
	strbuf_release(&folder);
	strbuf_release(&settings);
	strbuf_release(&path);
	strbuf_release(&text);
	strbuf_release(&reason);
	return ret;
}

void slurm_job_cancel_left(const char *folder, struct strbuf *said)
{
	struct strbuf path = STRBUF_INIT, id = STRBUF_INIT;
	long long number;

	strbuf_addf(&path, "%s/slurm.id", folder);
	if (fs_read_file(path.buf, &id) == 0 && (number = strtoll(id.buf, NULL, 10)) > 0) {
		strbuf_reset(&path);
		strbuf_addf(&path, "%s/settings.json", folder);
		slurm_cancel(path.buf, number);
		strbuf_addf(said, "dstack: Slurm job %lld cancelled\n", number);
	}
	strbuf_release(&path);
	strbuf_release(&id);
}
