/*
 * cache.c - the job result cache.  Before a job of a run with the cache
 * runs, its input key is made: the SHA-256 of a JSON document of
 * everything its results may depend on (docs/guide.md lists it).  A done
 * job with that key serves it: the job ends done at once, its artifacts
 * the same trees.  A job with the key that is running now is waited for.
 * What the key cannot see (a host's installed software, the network, the
 * time) is the user's to keep out of cached jobs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/json.h"
#include "runner/internal.h"

/* How often a job waiting for an identical one looks again. */
#define CACHE_WAIT_MS 250

/*
 * What runs the job's commands: "host", or the image's id from dockerd
 * (pulled first when missing, the pull's lines going to out), or on Slurm
 * an image pinned by digest.  1 with why when the image cannot be told
 * exactly: such a job runs.
 */
static int cache_image(const struct job_slot *slot, struct job_output *out, struct strbuf *image,
		       struct strbuf *why, struct error *err)
{
	const struct job_spec *spec = &slot->ctx->jobs[slot->n];
	struct strbuf helper = STRBUF_INIT, said = STRBUF_INIT;
	const char *last;
	int status = -1, ret;

	if (!spec->image || slot->ctx->backend == BACKEND_HOST) {
		strbuf_addstr(image, "host");
		return 0;
	}
	if (slot->ctx->backend == BACKEND_SLURM) {
		/* The node's dockerd is out of reach here, and may not be used at all. */
		if (!strstr(spec->image, "@sha256:")) {
			strbuf_addf(why, "on Slurm only an image pinned by digest (IMAGE@sha256:...)"
				    " is known exactly, not '%s'", spec->image);
			return 1;
		}
		strbuf_addf(image, "slurm %s", spec->image);
		return 0;
	}
	ret = provider_helper_path("dstack-docker", &helper, err);
	if (ret == 0) {
		char *const argv[] = { helper.buf, "image", (char *)spec->image, NULL };

		ret = host_exec(helper.buf, argv, &said, true, &status, err);
	}
	strbuf_trim_end(&said);
	/* Its last line: the id, or why there is none; before it, the pull. */
	last = said.len ? strrchr(said.buf, '\n') : NULL;
	if (ret == 0 && last)
		job_output_write(out, STDOUT_FILENO, said.buf, (size_t)(last - said.buf) + 1);
	last = last ? last + 1 : said.buf;
	if (ret == 0 && (status || !said.len)) {
		strbuf_addf(why, "the id of image '%s' is unknown: %s", spec->image,
			    said.len ? last : "dstack-docker said nothing");
		ret = 1;
	} else if (ret == 0) {
		strbuf_addstr(image, last);
	}
	strbuf_release(&helper);
	strbuf_release(&said);
	return ret;
}

static int env_var_compare(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	size_t nx = strcspn(x, "="), ny = strcspn(y, "=");
	int order = strncmp(x, y, nx < ny ? nx : ny);

	return order ? order : (nx > ny) - (nx < ny);
}

/* "K=V" strings, sorted by name, as one JSON list. */
static void cache_add_env(struct strbuf *doc, const struct job_spec *spec,
			  const struct workflow *workflow)
{
	struct job_env env = { 0 };

	job_env_set_all(&env, spec->env, spec->env_count);
	job_env_set_all(&env, workflow->env, workflow->env_count);
	if (env.count)
		qsort(env.vars, env.count, sizeof(*env.vars), env_var_compare);
	json_add_strings_field(doc, "env", env.vars, env.count);
	job_env_release(&env);
}

/* Whether the job runs together with others: a master, or a worker. */
static bool cache_job_is_distributed(const struct run_context *ctx, size_t n)
{
	size_t i;

	if (ctx->jobs[n].worker)
		return true;
	for (i = 0; i < ctx->count; i++)
		if (ctx->jobs[i].worker && ctx->jobs[i].master == n)
			return true;
	return false;
}

int run_cache_prepare(struct store *store, struct run_context *ctx, struct error *err)
{
	const struct workflow *workflow = ctx->workflow;
	struct strbuf *part = &ctx->cache_run_part, artifacts = STRBUF_INIT;
	uint8_t hash[STORE_HASH_SIZE];
	char hex[2 * STORE_HASH_SIZE + 1];
	size_t i;
	int ret;

	ret = store_tree_digest(store, ctx->run->snapshot, workflow->inputs, workflow->input_count,
				hash, err);
	if (ret < 0)
		return ret;
	strbuf_addstr(part, ",\"provider\":");
	json_add_string(part, ctx->run->provider);
	strbuf_addstr(part, ",\"provider_repo\":");
	json_add_string(part, ctx->run->provider_repo);
	strbuf_addstr(part, ",\"provider_commit\":");
	json_add_string(part, ctx->run->provider_commit);
	json_add_strings_field(part, "inputs", workflow->inputs, workflow->input_count);
	hex_encode(hash, sizeof(hash), hex);
	strbuf_addf(part, ",\"snapshot\":\"%s\",\"deps\":[", hex);
	/* What the deps' runs stored, not which runs: equal artifacts serve alike. */
	for (i = 0; i < ctx->deps->count && ret == 0; i++) {
		strbuf_reset(&artifacts);
		ret = store_run_artifact_digests(store, ctx->deps->ids[i], -1, &artifacts, err);
		strbuf_addstr(part, i ? "," : "");
		json_add_string(part, artifacts.buf ? artifacts.buf : "");
	}
	strbuf_addstr(part, "]");
	strbuf_release(&artifacts);
	return ret;
}

/*
 * The document the key hashes, in doc: the run's part and the job's; 1
 * with why when the job cannot be cached.  Secret env values are in it:
 * it is hashed, never kept.
 */
static int cache_key_document(struct store *store, const struct job_slot *slot,
			      struct job_output *out, struct strbuf *doc, struct strbuf *why,
			      struct error *err)
{
	const struct run_context *ctx = slot->ctx;
	const struct job_spec *spec = &ctx->jobs[slot->n];
	static const char *const backends[] = { "host", "docker", "slurm" };
	struct strbuf part = STRBUF_INIT;
	size_t i;
	int ret;

	if (cache_job_is_distributed(ctx, (size_t)slot->n)) {
		strbuf_addstr(why, "it runs together with other jobs (master and workers)");
		return 1;
	}
	ret = cache_image(slot, out, &part, why, err);
	if (ret != 0)
		goto out;
	strbuf_addstr(doc, "{\"dstack_input_key\":1,\"backend\":");
	json_add_string(doc, backends[ctx->backend]);
	strbuf_addstr(doc, ",\"image\":");
	json_add_string(doc, part.buf);
	strbuf_add(doc, ctx->cache_run_part.buf, ctx->cache_run_part.len);
	strbuf_addstr(doc, ",\"commands\":");
	json_add_string(doc, spec->script);
	strbuf_addstr(doc, ",\"working_dir\":");
	json_add_string(doc, spec->working_dir ? spec->working_dir : "");
	strbuf_addf(doc, ",\"python_env\":%s", spec->python_env ? "true" : "false");
	cache_add_env(doc, spec, ctx->workflow);
	/* Results change with the kind and number of GPUs, not with CPUs or memory. */
	strbuf_addf(doc, ",\"gpu\":{\"count\":%d,\"name\":", spec->resources.gpu_count);
	json_add_string(doc, spec->resources.gpu_name ? spec->resources.gpu_name : "");
	strbuf_addstr(doc, "},\"artifacts\":[");
	for (i = 0; i < spec->artifact_count; i++) {
		strbuf_addstr(doc, i ? "," : "");
		json_add_string(doc, spec->artifacts[i].path);
	}
	strbuf_addstr(doc, "],\"after\":[");
	/* The jobs it comes after may have left it more than their artifacts;
	 * what they stored at least must be the same. */
	for (i = 0; i < spec->depends_on_count && ret == 0; i++) {
		strbuf_reset(&part);
		ret = store_run_artifact_digests(store, ctx->run->id, (int)spec->depends_on[i],
						 &part, err);
		strbuf_addstr(doc, i ? "," : "");
		json_add_string(doc, part.buf ? part.buf : "");
	}
	strbuf_addstr(doc, "]}");
out:
	strbuf_release(&part);
	return ret;
}

/* Whether the runner of a run another job waits for is gone. */
static bool cache_source_is_orphan(const struct store_cache_source *source)
{
	return source->runner_pid <= 0 ||
	       proc_start_time(source->runner_pid) != source->runner_started;
}

static void cache_sleep(void)
{
	struct timespec pause = { 0, CACHE_WAIT_MS * 1000000l };

	nanosleep(&pause, NULL);
}

int job_cache_serve(struct store *store, struct job_slot *slot, struct error *err)
{
	const struct run_context *ctx = slot->ctx;
	int64_t run = ctx->run->id;
	int n = slot->n;
	struct job_output out = { .store = store, .request = ctx->request, .run = run, .job = n };
	struct run_ticker ticker = { .out = &out, .stop = &ctx->stop };
	struct strbuf doc = STRBUF_INIT, why = STRBUF_INIT, none = STRBUF_INIT;
	struct store_cache_source source;
	char key[2 * STORE_HASH_SIZE + 1];
	bool waited = false, quiet = ctx->cache == RUN_CACHE_OFF;
	int answer, ret;

	/*
	 * Without the cache every job's key is still recorded, so that it
	 * can serve later runs, and says nothing; but an image's id would
	 * cost a call to dockerd (and the pull) before the job: those jobs
	 * get a key only when the cache is on.
	 */
	if (quiet && ctx->backend == BACKEND_DOCKER && ctx->jobs[n].image)
		return 0;
	ret = cache_key_document(store, slot, &out, &doc, &why, err);
	if (ret == 1 && !quiet)
		job_output_say(&out, "job %d is not cached: %s", n, why.buf);
	if (ret == 1)
		ret = 0;
	if (ret < 0 || why.len)
		goto out;
	store_hash_hex(doc.buf, doc.len, key);
	for (;;) {
		answer = store_job_cache(store, run, n, key, ctx->cache == RUN_CACHE_ON, &source,
					 err);
		if (answer < 0) {
			ret = answer;
			break;
		}
		if (answer == STORE_CACHE_HIT) {
			job_output_say(&out, "job %d is cached from %s/%d (input key %s)", n,
				       source.run, source.job, key);
			slot->code = 0;
			ret = job_record_end(store, slot, &out, &none, err);
			ret = ret < 0 ? ret : 1;
			break;
		}
		if (answer == STORE_CACHE_MISS) {
			if (!quiet)
				job_output_say(&out, "job %d runs (input key %s)", n, key);
			break;
		}
		if (!waited) {
			job_output_say(&out, "job %d waits for %s/%d, which runs with the same inputs",
				       n, source.run, source.job);
			waited = true;
		}
		/* Its output so far logged, and `dstack stop` heard (through the catalog). */
		ret = run_tick(&ticker);
		if (ret < 0) {
			*err = out.err;
			break;
		}
		if (*ctx->stop.stopping) {
			slot->stopped = true;
			ret = job_record_end(store, slot, &out, &none, err);
			ret = ret < 0 ? ret : 1;
			break;
		}
		/* A dead runner's run is marked failed: its job no longer counts. */
		if (cache_source_is_orphan(&source)) {
			ret = runner_reap_orphans(store, err);
			if (ret < 0)
				break;
			ret = 0;
		}
		cache_sleep();
	}
out:
	if (ret != 1 && job_output_flush(&out) < 0 && ret == 0) {
		*err = out.err;
		ret = err->code;
	}
	job_output_release(&out);
	strbuf_release(&doc);
	strbuf_release(&why);
	return ret;
}
