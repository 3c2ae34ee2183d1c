/*
 * control.c - reaching runs that execute in other processes: stopping or
 * aborting them through their runner, and noticing runners that died.
 *
 * A run records its runner's pid and start time; a signal to that process
 * stops the run as Ctrl-C would (SIGTERM) or aborts it (SIGUSR1).  Pids
 * are reused, so the start time must match too.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runner/internal.h"

/* How long stop waits for a run to end: the jobs' grace, and some. */
#define STOP_WAIT_NS (HOST_STOP_GRACE_NS + 20ll * 1000000000)

static bool runner_alive(const struct store_run *run)
{
	return run->runner_pid > 0 &&
	       proc_start_time(run->runner_pid) == run->runner_started;
}

struct orphan_jobs {
	const struct store_run *run;
	struct strbuf said;
	int *live;		/* jobs not ended when the runner died */
	size_t live_count;
	bool images;		/* a live job named an image: it may have a container */
	size_t job_count;	/* none: it died in its provider, which may have one */
};

/*
 * Ends what a job of a dead runner left running: its process group (if
 * its leader is still the process the catalog names) and its cgroups.
 */
static int orphan_job_end(void *arg, const struct store_job *job)
{
	struct orphan_jobs *orphans = arg;
	struct strbuf name = STRBUF_INIT;

	orphans->job_count++;
	if (!strcmp(job->status, "done") || !strcmp(job->status, "failed") ||
	    !strcmp(job->status, "stopped") || !strcmp(job->status, "aborted"))
		return 0;
	orphans->live = xrealloc(orphans->live, (orphans->live_count + 1) * sizeof(int));
	orphans->live[orphans->live_count++] = job->n;
	orphans->images |= job->image[0] != '\0';
	if (job->pid > 0 && proc_start_time(job->pid) == job->pid_started &&
	    kill(-job->pid, SIGKILL) == 0)
		strbuf_addf(&orphans->said, "dstack: job %d's processes (group %d) killed\n",
			    job->n, (int)job->pid);
	strbuf_addf(&name, "%s.%d.%d", orphans->run->name, job->n, (int)orphans->run->runner_pid);
	job_cgroup_reap(name.buf);
	strbuf_release(&name);
	return 0;
}

/*
 * Runs `dstack-docker COMMAND [NAME] dstack.run=RUN` (NAME when not NULL)
 * to its end: its stdout and stderr into out, its exit code into *status.
 */
static int run_docker_helper(const struct store_run *run, const char *command, const char *name,
			     struct strbuf *out, int *status, struct error *err)
{
	struct strbuf helper = STRBUF_INIT, label = STRBUF_INIT;
	int ret = provider_helper_path("dstack-docker", &helper, err);

	strbuf_addf(&label, "dstack.run=%s", run->name);
	if (ret == 0) {
		char *const with_name[] = { helper.buf, (char *)command, (char *)name, label.buf,
					    NULL };
		char *const without[] = { helper.buf, (char *)command, label.buf, NULL };

		ret = host_exec(helper.buf, name ? with_name : without, out, true, status, err);
	}
	strbuf_release(&helper);
	strbuf_release(&label);
	return ret;
}

int run_docker_network(const struct store_run *run, struct error *err)
{
	struct strbuf name = STRBUF_INIT, said = STRBUF_INIT;
	int status = -1, ret;

	strbuf_addf(&name, "dstack-%s", run->name);
	ret = run_docker_helper(run, "network", name.buf, &said, &status, err);
	/* Its error line, as dstack's own (dockerd out of reach, say). */
	strbuf_trim_end(&said);
	if (ret == 0 && status && said.len > strlen("dstack: "))
		ret = error_set(err, -EIO, "%s", said.buf + strlen("dstack: "));
	else if (ret == 0 && status)
		ret = error_set(err, -EIO, "cannot make the run's docker network %s (dstack-docker"
				" exited with %d)", name.buf, status);
	strbuf_release(&name);
	strbuf_release(&said);
	return ret;
}

/*
 * Removes what the run's docker jobs left (labelled with the run): its
 * network, and the containers of a dead runner's jobs, whose killed
 * helpers left them running.  Best effort: with no dockerd there are none.
 */
void run_docker_cleanup(const struct store_run *run, struct strbuf *said)
{
	struct strbuf out = STRBUF_INIT;
	struct error ignored = { 0 };
	int status = -1;

	if (run_docker_helper(run, "remove", NULL, &out, &status, &ignored) == 0 && status == 0 &&
	    out.buf && atoi(out.buf) > 0)
		strbuf_addf(said, "dstack: %d container(s) of the run removed\n", atoi(out.buf));
	strbuf_release(&out);
}

/*
 * Removes the folders the dead runner's jobs and provider worked in
 * (work/RUN-N, work/RUN-provider): a living runner removes each as its
 * job ends, a dead one left them to fill the disk.  A Slurm job of such
 * a folder is cancelled first: nobody would record what it stores.
 */
static void orphan_remove_folders(struct store *store, const struct store_run *run,
				  struct strbuf *said)
{
	struct strbuf work = STRBUF_INIT, path = STRBUF_INIT;
	size_t len = strlen(run->name);
	struct dirent *entry;
	DIR *dir;

	strbuf_addf(&work, "%s/work", store_home(store));
	dir = opendir(work.buf);
	while (dir && (entry = readdir(dir))) {
		if (strncmp(entry->d_name, run->name, len) || entry->d_name[len] != '-')
			continue;
		strbuf_reset(&path);
		strbuf_addf(&path, "%s/%s", work.buf, entry->d_name);
		slurm_job_cancel_left(path.buf, said);
		fs_remove_tree(path.buf);
	}
	if (dir)
		closedir(dir);
	strbuf_release(&work);
	strbuf_release(&path);
}

/*
 * Marks a run whose runner is gone failed, with its unfinished jobs, and
 * ends their processes, saying so in its logs.
 */
static int runner_mark_orphan(struct store *store, const struct store_run *run,
			      struct error *err)
{
	struct orphan_jobs orphans = { .run = run };
	size_t i;
	int ret;

	strbuf_addf(&orphans.said, "dstack: the runner of this run (pid %d) is gone; marked failed\n",
		    (int)run->runner_pid);
	ret = store_run_jobs(store, run->id, orphan_job_end, &orphans, err);
	if (ret == 0 && (orphans.images || !orphans.job_count))
		run_docker_cleanup(run, &orphans.said);
	if (ret == 0)
		orphan_remove_folders(store, run, &orphans.said);
	if (ret == 0)
		ret = store_log_append(store, run->id, -1, STDOUT_FILENO, orphans.said.buf, orphans.said.len, err);
	for (i = 0; i < orphans.live_count && ret == 0; i++)
		ret = store_job_set_status(store, run->id, orphans.live[i], "failed", -1, err);
	if (ret == 0) {
		strbuf_reset(&orphans.said);
		strbuf_addf(&orphans.said, "its runner (pid %d) is gone", (int)run->runner_pid);
		ret = store_run_set_reason(store, run->id, orphans.said.buf, err);
	}
	if (ret == 0)
		ret = store_run_set_status(store, run->id, "failed", -1, err);
	free(orphans.live);
	strbuf_release(&orphans.said);
	return ret;
}

struct orphans {
	struct store_run *runs;
	size_t count;
};

static int orphan_collect(void *ctx, const struct store_run *run)
{
	struct orphans *orphans = ctx;

	if (run->finished || runner_alive(run))
		return 0;
	orphans->runs = xrealloc(orphans->runs, (orphans->count + 1) * sizeof(*run));
	orphans->runs[orphans->count++] = *run;
	return 0;
}

int runner_reap_orphans(struct store *store, struct error *err)
{
	struct orphans orphans = { 0 };
	size_t i;
	int ret = store_run_list(store, NULL, orphan_collect, &orphans, err);

	for (i = 0; i < orphans.count && ret == 0; i++)
		ret = runner_mark_orphan(store, &orphans.runs[i], err);
	free(orphans.runs);
	return ret < 0 ? ret : (int)orphans.count;
}

struct daemon_find {
	const char *repo;
	struct store_daemon *found;
	bool ok;
};

static int daemon_visit(void *ctx, const struct store_daemon *daemon)
{
	struct daemon_find *find = ctx;

	if ((find->repo && strcmp(find->repo, daemon->repo)) ||
	    proc_start_time(daemon->pid) != daemon->started)
		return 0;
	*find->found = *daemon;
	find->ok = true;
	return 1;
}

int runner_daemon_find(struct store *store, const char *repo, struct store_daemon *daemon,
		       struct error *err)
{
	struct daemon_find find = { .repo = repo, .found = daemon };
	int ret = store_daemon_list(store, daemon_visit, &find, err);

	return ret < 0 ? ret : find.ok ? 0 : -ENOENT;
}

int run_stop_poll(const struct run_stop *stop, struct store *store, int64_t run,
		  struct error *err)
{
	enum store_stop_request request;
	int ret;

	if (*stop->aborting)
		return 0;
	ret = store_run_stop_request(store, run, &request, err);
	/* aborting first: a job loop that sees stopping alone sends SIGTERM. */
	if (ret == 0 && request == STORE_STOP_ABORT)
		*stop->aborting = 1;
	if (ret == 0 && request != STORE_STOP_NONE)
		*stop->stopping = 1;
	return ret;
}

int run_tick(void *arg)
{
	struct run_ticker *ticker = arg;
	int ret = job_output_tick(ticker->out);

	if (ret == 0)
		ret = run_stop_poll(ticker->stop, ticker->out->store, ticker->out->run,
				    &ticker->out->err);
	return ret;
}

int runner_stop(struct store *store, const char *name, bool abort,
		struct store_run *run, struct error *err)
{
	struct timespec pause = { 0, 100 * 1000000 };
	int64_t give_up = time_now_ns() + STOP_WAIT_NS;
	int ret = store_run_find(store, name, run, err);

	if (ret < 0)
		return ret;
	if (run->finished)
		return error_set(err, -EALREADY, "run '%s' has ended (%s)", name, run->status);
	if (!runner_alive(run)) {
		ret = runner_mark_orphan(store, run, err);
		return ret < 0 ? ret : error_set(err, -ESRCH,
						 "run '%s': its runner is gone; marked failed", name);
	}
	/* Through the catalog: the runner may be a daemon running many runs. */
	ret = store_run_request_stop(store, run->id, abort ? STORE_STOP_ABORT : STORE_STOP_STOP,
				     err);
	if (ret < 0)
		return ret;
	/* stop returns once the run has ended, as DESIGN.md has it. */
	while ((ret = store_run_find(store, name, run, err)) == 0 && !run->finished) {
		if (!runner_alive(run)) {
			ret = runner_mark_orphan(store, run, err);
			if (ret == 0)
				ret = store_run_find(store, name, run, err);
			break;
		}
		if (time_now_ns() > give_up)
			return error_set(err, -ETIMEDOUT, "run '%s' did not end after its stop", name);
		nanosleep(&pause, NULL);
	}
	return ret;
}
