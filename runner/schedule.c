/*
 * schedule.c - the jobs of a run side by side: each starts, on a thread
 * of its own with a store handle of its own, once the jobs it depends on
 * are done, its master (for a worker) runs, and what it asks of the host
 * is free.  What jobs hold is claimed in the catalog, so every runner
 * sharing the store counts it; a job that must wait says so in its log.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runner/internal.h"

/* How often the scheduler looks again at jobs waiting for resources. */
#define SCHEDULE_POLL_MS 250
/* How often a waiting scheduler looks for runners that died holding some. */
#define SCHEDULE_REAP_NS (1000ll * 1000000)

struct schedule {
	struct run_context *ctx;
	struct job_slot *slots;
	size_t *order;
	pthread_t *threads;
	bool *joinable;
	bool *settled;		/* ended, and what it held given back */
	bool failing;		/* a job met an error: start no other */
	int64_t last_reap;
	pthread_mutex_t lock;
	pthread_cond_t changed;
};

static void schedule_set(struct job_slot *slot, enum job_state state)
{
	struct schedule *sched = slot->schedule;

	pthread_mutex_lock(&sched->lock);
	slot->state = state;
	pthread_cond_broadcast(&sched->changed);
	pthread_mutex_unlock(&sched->lock);
}

void schedule_job_running(struct job_slot *slot)
{
	schedule_set(slot, JOB_RUNNING);
}

void schedule_job_submitted(struct job_slot *slot, long long slurm_id)
{
	struct schedule *sched = slot->schedule;

	pthread_mutex_lock(&sched->lock);
	slot->slurm_id = slurm_id;
	pthread_cond_broadcast(&sched->changed);
	pthread_mutex_unlock(&sched->lock);
}

static bool job_asks_resources(const struct job_spec *job)
{
	return job->resources.cpu || job->resources.memory || job->resources.gpu_count;
}

int schedule_check(struct run_context *ctx, struct error *err)
{
	struct store_claim want;
	struct error why = { 0 };
	bool gpus = false, any = false;
	size_t i;
	int ret;

	/* Slurm knows its nodes: it refuses at submission what none can give. */
	if (ctx->backend == BACKEND_SLURM)
		return 0;
	for (i = 0; i < ctx->count; i++) {
		any = any || job_asks_resources(&ctx->jobs[i]);
		gpus = gpus || ctx->jobs[i].resources.gpu_count;
	}
	if (!any || ctx->capacity_read)
		return 0;
	ret = host_capacity_read(gpus, &ctx->capacity, err);
	if (ret < 0)
		return ret;
	ctx->capacity_read = true;
	for (i = 0; i < ctx->count; i++) {
		error_clear(&why);
		if (host_capacity_fit(&ctx->capacity, &ctx->jobs[i].resources, &want, &why) == 0)
			continue;
		if (ctx->count > 1)
			return error_set(err, -E2BIG, "jobs[%zu]: %s", i, why.message);
		return error_set(err, -E2BIG, "%s", why.message);
	}
	return 0;
}

/*
 * The order jobs are looked at in: each after the jobs it depends on and
 * after its master (Kahn's algorithm, lowest index first among the ready).
 */
static int jobs_order(const struct job_spec *jobs, size_t count, size_t *order,
		      struct error *err)
{
	bool *placed = xcalloc(count + 1, sizeof(bool));
	size_t done = 0, i, j;

	while (done < count) {
		for (i = 0; i < count; i++) {
			bool ready = !placed[i] && (!jobs[i].worker || placed[jobs[i].master]);

			for (j = 0; ready && j < jobs[i].depends_on_count; j++)
				ready = placed[jobs[i].depends_on[j]];
			if (ready)
				break;
		}
		if (i == count) {
			free(placed);
			return error_set(err, -EPROTO, "the jobs' depends_on and master make a cycle");
		}
		placed[i] = true;
		order[done++] = i;
	}
	free(placed);
	return 0;
}

static bool slot_failed(const struct job_slot *slot)
{
	return slot->state == JOB_ENDED && (slot->code || slot->stopped || slot->ret < 0);
}

enum readiness { JOB_WAITS, JOB_READY, JOB_BLOCKED };

/*
 * Whether a pending job may start: what it depends on, and its master.
 * Blocked: *blocker is the job whose failure keeps it from starting.
 */
static enum readiness job_readiness(const struct schedule *sched, const struct job_slot *slot,
				    size_t *blocker)
{
	const struct job_spec *spec = &sched->ctx->jobs[slot->n];
	bool slurm = sched->ctx->backend == BACKEND_SLURM;
	const struct job_slot *master;
	size_t i;

	for (i = 0; i < spec->depends_on_count; i++) {
		const struct job_slot *dep = &sched->slots[spec->depends_on[i]];

		*blocker = spec->depends_on[i];
		if (slot_failed(dep))
			return JOB_BLOCKED;
		/* Slurm holds a job until the ones it depends on are done (afterok). */
		if (dep->state != JOB_ENDED && !(slurm && dep->slurm_id))
			return JOB_WAITS;
	}
	if (!spec->worker)
		return JOB_READY;
	/* A worker starts once its master runs (or has run well). */
	master = &sched->slots[spec->master];
	*blocker = spec->master;
	if (slot_failed(master))
		return JOB_BLOCKED;
	return master->state >= JOB_RUNNING ? JOB_READY : JOB_WAITS;
}

/*
 * Claims what the job asks, or says (once) in its log why it waits:
 * 0 claimed (or nothing asked), -EAGAIN to wait.
 */
static int job_claim(struct schedule *sched, struct job_slot *slot, struct error *err)
{
	struct run_context *ctx = sched->ctx;
	const struct job_resources *asked = &ctx->jobs[slot->n].resources;
	struct store_claim capacity, want, free_now;
	int ret;

	if (!job_asks_resources(&ctx->jobs[slot->n]) || ctx->backend == BACKEND_SLURM)
		return 0;
	host_capacity_claim(&ctx->capacity, &capacity);
	/* Checked at submission: it fits an idle host. */
	ret = host_capacity_fit(&ctx->capacity, asked, &want, err);
	if (ret == 0)
		ret = store_job_claim(ctx->store, ctx->run->id, slot->n, "host", &capacity, &want,
				      asked->gpu_count, &slot->claim, err);
	if (ret == 0) {
		slot->claimed = true;
		return 0;
	}
	if (ret != -EAGAIN)
		return ret;
	free_now = slot->claim;
	memset(&slot->claim, 0, sizeof(slot->claim));
	if (!slot->said_waiting) {
		struct job_output out = { .store = ctx->store, .request = ctx->request,
					  .run = ctx->run->id, .job = slot->n };
		char need[32], have[32];

		size_format(want.memory, need);
		size_format(free_now.memory, have);
		job_output_say(&out, "job %d waits for resources: it asks %d CPUs, %s of memory"
			       " and %d GPUs; free now: %d CPUs, %s, %d GPUs", slot->n, want.cpu,
			       need, asked->gpu_count, free_now.cpu, have,
			       __builtin_popcountll(free_now.gpus & want.gpus));
		ret = job_output_flush(&out);
		job_output_release(&out);
		if (ret < 0) {
			*err = out.err;
			return ret;
		}
		slot->said_waiting = true;
	}
	/* Claims of runners that died are given back when their runs are reaped. */
	if (time_now_ns() - sched->last_reap > SCHEDULE_REAP_NS) {
		sched->last_reap = time_now_ns();
		ret = runner_reap_orphans(ctx->store, err);
		if (ret < 0)
			return ret;
	}
	return -EAGAIN;
}

static void *job_thread(void *arg)
{
	struct job_slot *slot = arg;
	struct store *store;
	int ret = store_open(&store, store_home(slot->ctx->store), STORE_READ_WRITE, &slot->err);

	if (ret == 0) {
		ret = job_run(store, slot, &slot->err);
		store_close(store);
	}
	slot->ret = ret;
	schedule_set(slot, JOB_ENDED);
	return NULL;
}

/* Starts a ready job: on its own thread, or on this one when it is alone. */
static int job_start(struct schedule *sched, struct job_slot *slot, struct error *err)
{
	struct run_context *ctx = sched->ctx;
	const struct job_spec *spec = &ctx->jobs[slot->n];
	int ret = job_ports_pick(spec, &slot->ports, err);

	if (ret < 0)
		return ret;
	if (spec->worker) {
		slot->master_ports = sched->slots[spec->master].ports;
		slot->master_port_count = ctx->jobs[spec->master].port_count;
	}
	slot->state = JOB_STARTING;
	/* One job needs no thread, nor a second store handle. */
	if (ctx->count == 1) {
		pthread_mutex_unlock(&sched->lock);
		slot->ret = job_run(ctx->store, slot, &slot->err);
		pthread_mutex_lock(&sched->lock);
		slot->state = JOB_ENDED;
		return 0;
	}
	ret = -pthread_create(&sched->threads[slot->n], NULL, job_thread, slot);
	if (ret < 0) {
		slot->state = JOB_PENDING;
		return error_errno(err, ret, "cannot start a thread for job %d", slot->n);
	}
	sched->joinable[slot->n] = true;
	return 0;
}

/*
 * Gives back what an ended job held.  A job that could not be run (its
 * snapshot unreadable, say) is marked failed with that error as its
 * reason, best effort: the run fails with the same error anyway.
 */
static int job_settle(struct schedule *sched, struct job_slot *slot, struct error *err)
{
	struct store *store = sched->ctx->store;
	int64_t run = sched->ctx->run->id;
	struct error ignored = { 0 };
	int ret = 0;

	if (sched->joinable[slot->n]) {
		pthread_join(sched->threads[slot->n], NULL);
		sched->joinable[slot->n] = false;
	}
	if (slot->ret < 0 && store_job_set_status(store, run, slot->n, "failed", -1, &ignored) == 0)
		store_job_set_reason(store, run, slot->n, slot->err.message, &ignored);
	if (slot->claimed)
		ret = store_job_release(store, run, slot->n, err);
	slot->claimed = false;
	sched->settled[slot->n] = true;
	return ret;
}

/* Ends a job that never started: stopped with the run, or blocked. */
static int job_end_unstarted(struct schedule *sched, struct job_slot *slot,
			     const char *status, struct error *err)
{
	slot->state = JOB_ENDED;
	sched->settled[slot->n] = true;
	return store_job_set_status(sched->ctx->store, sched->ctx->run->id, slot->n, status, -1,
				    err);
}

/*
 * One look at every job: *busy when some have not ended, *poll when one
 * waits for resources, *moved when a job started or ended (look again
 * at once: that may free another).  After an error the look goes on, to
 * settle ended jobs and to see the ones still running (the caller must
 * wait for those), but starts or ends nothing more.
 */
static int schedule_pass(struct schedule *sched, bool *busy, bool *poll, bool *moved,
			 bool *stopped, struct error *err)
{
	struct run_context *ctx = sched->ctx;
	struct error later = { 0 };
	char reason[96];
	size_t k, blocker;
	int ret = 0;

	*busy = *poll = *moved = false;
	for (k = 0; k < ctx->count; k++) {
		struct job_slot *slot = &sched->slots[sched->order[k]];

		if (slot->state == JOB_ENDED) {
			if (!sched->settled[slot->n]) {
				int settled = job_settle(sched, slot, ret < 0 ? &later : err);

				if (ret == 0)
					ret = settled;
				*moved = true;
			}
			if (slot->ret < 0 && !sched->failing) {
				sched->failing = true;
				if (ret == 0) {
					*err = slot->err;
					ret = slot->ret;
				}
			}
			continue;
		}
		*busy = true;
		if (ret < 0 || slot->state != JOB_PENDING)
			continue;
		if (*ctx->stop.stopping || sched->failing) {
			*moved = true;
			*stopped = *stopped || *ctx->stop.stopping;
			ret = job_end_unstarted(sched, slot, sched->failing ? "failed" :
						*ctx->stop.aborting ? "aborted" : "stopped", err);
			continue;
		}
		switch (job_readiness(sched, slot, &blocker)) {
		case JOB_WAITS:
			continue;
		case JOB_BLOCKED:
			*moved = true;
			slot->blocked = true;
			slot->code = 1;
			ret = job_end_unstarted(sched, slot, "failed", err);
			if (ret == 0) {
				snprintf(reason, sizeof(reason), "job %d did not start: job %zu failed",
					 slot->n, blocker);
				ret = store_job_set_reason(ctx->store, ctx->run->id, slot->n, reason, err);
			}
			continue;
		case JOB_READY:
			break;
		}
		ret = job_claim(sched, slot, err);
		if (ret == -EAGAIN) {
			*poll = true;
			ret = 0;
			continue;
		}
		if (ret == 0)
			ret = job_start(sched, slot, err);
		*moved = true;
	}
	return ret;
}

int run_schedule(struct run_context *ctx, int *first_failure, bool *stopped,
		 struct error *err)
{
	struct schedule sched = { .ctx = ctx };
	struct error later = { 0 };
	bool busy = true, poll, moved;
	size_t i;
	int ret;

	*first_failure = 0;
	*stopped = false;
	sched.order = xcalloc(ctx->count + 1, sizeof(*sched.order));
	ret = jobs_order(ctx->jobs, ctx->count, sched.order, err);
	if (ret < 0) {
		free(sched.order);
		return ret;
	}
	sched.slots = xcalloc(ctx->count + 1, sizeof(*sched.slots));
	sched.threads = xcalloc(ctx->count + 1, sizeof(*sched.threads));
	sched.joinable = xcalloc(ctx->count + 1, sizeof(*sched.joinable));
	sched.settled = xcalloc(ctx->count + 1, sizeof(*sched.settled));
	for (i = 0; i < ctx->count; i++) {
		sched.slots[i].ctx = ctx;
		sched.slots[i].schedule = &sched;
		sched.slots[i].n = (int)i;
		sched.slots[i].schedule_slots = sched.slots;
	}
	pthread_mutex_init(&sched.lock, NULL);
	pthread_cond_init(&sched.changed, NULL);
	pthread_mutex_lock(&sched.lock);
	while (busy) {
		struct timespec until;
		int pass = schedule_pass(&sched, &busy, &poll, &moved, stopped,
					 ret < 0 ? &later : err);

		/* After an error, the jobs already running still end properly. */
		if (pass < 0 && ret == 0) {
			ret = pass;
			sched.failing = true;
		}
		if (!busy)
			break;
		if (moved)
			continue;
		/* Jobs waiting to start hear of `dstack stop` too. */
		if (ret == 0)
			ret = run_stop_poll(&ctx->stop, ctx->store, ctx->run->id, err);
		/* Signals do not wake the condition: look again at least this often. */
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += (poll ? SCHEDULE_POLL_MS : HOST_TICK_MS) * 1000000l;
		until.tv_sec += until.tv_nsec / 1000000000l;
		until.tv_nsec %= 1000000000l;
		pthread_cond_timedwait(&sched.changed, &sched.lock, &until);
	}
	pthread_mutex_unlock(&sched.lock);
	for (i = 0; i < ctx->count; i++) {
		const struct job_slot *slot = &sched.slots[sched.order[i]];

		*stopped = *stopped || slot->stopped;
		if (!*first_failure && slot->code && !slot->stopped && !slot->blocked)
			*first_failure = slot->code;
		free(sched.slots[i].ports);
	}
	pthread_cond_destroy(&sched.changed);
	pthread_mutex_destroy(&sched.lock);
	free(sched.order);
	free(sched.slots);
	free(sched.threads);
	free(sched.joinable);
	free(sched.settled);
	return ret;
}
