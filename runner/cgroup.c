/*
 * cgroup.c - a job's CPU and memory limits, enforced by a cgroup of its
 * own under dstack/: cgroup v2 where its memory and cpu controllers are
 * there, else the v1 memory and cpu hierarchies (the hybrid layout of
 * Debian 12 machines).  The group also finds every process of the job,
 * even one that left its process group, so nothing outlives the job.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runner/internal.h"

#define CGROUP_ROOT "/sys/fs/cgroup"
#define CPU_PERIOD_US 100000

static bool cgroup_v2_has(const char *controller)
{
	char text[512];
	int fd = open(CGROUP_ROOT "/cgroup.controllers", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, text, sizeof(text) - 1) : -1;
	char *word, *save = NULL;
	bool found = false;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return false;
	text[n] = '\0';
	for (word = strtok_r(text, " \n", &save); word && !found; word = strtok_r(NULL, " \n", &save))
		found = !strcmp(word, controller);
	return found;
}

static int cgroup_write(const char *dir, const char *file, const char *value)
{
	struct strbuf path = STRBUF_INIT;
	int fd, ret = 0;

	strbuf_addf(&path, "%s/%s", dir, file);
	fd = open(path.buf, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, value, strlen(value)) < 0)
		ret = -errno;
	if (fd >= 0)
		close(fd);
	strbuf_release(&path);
	return ret;
}

/* Makes parent/dstack/name; the dstack level is shared by every job. */
static int cgroup_make(const char *parent, const char *name, bool v2, struct strbuf *dir)
{
	strbuf_addf(dir, "%s/dstack", parent);
	if (mkdir(dir->buf, 0755) < 0 && errno != EEXIST)
		return -errno;
	/* v2 hands controllers down level by level. */
	if (v2 && (cgroup_write(parent, "cgroup.subtree_control", "+memory +cpu") < 0 ||
		   cgroup_write(dir->buf, "cgroup.subtree_control", "+memory +cpu") < 0))
		return -EACCES;
	strbuf_addf(dir, "/%s", name);
	if (mkdir(dir->buf, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int cgroup_add(struct job_cgroup *cg, const char *parent, const char *name, bool v2)
{
	struct strbuf dir = STRBUF_INIT, procs = STRBUF_INIT;
	int ret = cgroup_make(parent, name, v2, &dir);

	if (ret == 0) {
		strbuf_addf(&procs, "%s/cgroup.procs", dir.buf);
		cg->procs[cg->count] = open(procs.buf, O_WRONLY | O_CLOEXEC);
		if (cg->procs[cg->count] < 0)
			ret = -errno;
	}
	strbuf_release(&procs);
	if (ret < 0) {
		if (dir.buf)
			rmdir(dir.buf);
		strbuf_release(&dir);
		return ret;
	}
	cg->dirs[cg->count++] = dir.buf;
	return 0;
}

int job_cgroup_create(const char *name, const struct job_resources *asked,
		      struct job_cgroup *cg, struct error *err)
{
	char value[64];
	int ret = 0;

	memset(cg, 0, sizeof(*cg));
	cg->procs[0] = cg->procs[1] = -1;
	cg->v2 = cgroup_v2_has("memory") && cgroup_v2_has("cpu");
	if (cg->v2) {
		ret = cgroup_add(cg, CGROUP_ROOT, name, true);
		if (ret == 0 && asked->memory) {
			snprintf(value, sizeof(value), "%llu", (unsigned long long)asked->memory);
			ret = cgroup_write(cg->dirs[0], "memory.max", value);
			/* Over the limit the job is killed, not swapped out. */
			cgroup_write(cg->dirs[0], "memory.swap.max", "0");
		}
		if (ret == 0 && asked->cpu) {
			snprintf(value, sizeof(value), "%d %d", asked->cpu * CPU_PERIOD_US,
				 CPU_PERIOD_US);
			ret = cgroup_write(cg->dirs[0], "cpu.max", value);
		}
	} else {
		if (asked->memory) {
			ret = cgroup_add(cg, CGROUP_ROOT "/memory", name, false);
			snprintf(value, sizeof(value), "%llu", (unsigned long long)asked->memory);
			if (ret == 0)
				ret = cgroup_write(cg->dirs[cg->count - 1], "memory.limit_in_bytes", value);
			if (ret == 0)
				cgroup_write(cg->dirs[cg->count - 1], "memory.memsw.limit_in_bytes", value);
			cg->memory_dir = ret == 0 ? cg->dirs[cg->count - 1] : NULL;
		}
		if (ret == 0 && asked->cpu) {
			ret = cgroup_add(cg, CGROUP_ROOT "/cpu", name, false);
			snprintf(value, sizeof(value), "%d", asked->cpu * CPU_PERIOD_US);
			if (ret == 0)
				ret = cgroup_write(cg->dirs[cg->count - 1], "cpu.cfs_quota_us", value);
		}
	}
	if (cg->v2 && ret == 0)
		cg->memory_dir = cg->dirs[0];
	if (ret < 0) {
		job_cgroup_destroy(cg);
		return error_errno(err, ret, "cannot make the job's cgroup under %s", CGROUP_ROOT);
	}
	return 0;
}

/* Reads "key N" from a flat-keyed cgroup file (memory.events, memory.oom_control). */
static long long cgroup_key(const char *dir, const char *file, const char *key)
{
	struct strbuf path = STRBUF_INIT;
	char line[256], name[64];
	long long value, found = 0;
	FILE *f;

	strbuf_addf(&path, "%s/%s", dir, file);
	f = fopen(path.buf, "re");
	strbuf_release(&path);
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s %lld", name, &value) == 2 && !strcmp(name, key))
			found = value;
	fclose(f);
	return found;
}

bool job_cgroup_oom_killed(const struct job_cgroup *cg)
{
	if (!cg->memory_dir)
		return false;
	return cgroup_key(cg->memory_dir, cg->v2 ? "memory.events" : "memory.oom_control",
			  "oom_kill") > 0;
}

/* Kills every process in dir until none is left, then removes it. */
static void cgroup_empty(const char *dir)
{
	struct timespec pause = { 0, 10 * 1000000 };
	struct strbuf path = STRBUF_INIT;
	int attempt;

	strbuf_addf(&path, "%s/cgroup.procs", dir);
	for (attempt = 0; attempt < 500 && rmdir(dir) < 0 && errno == EBUSY; attempt++) {
		FILE *procs = fopen(path.buf, "re");
		int pid;

		while (procs && fscanf(procs, "%d", &pid) == 1)
			kill(pid, SIGKILL);
		if (procs)
			fclose(procs);
		nanosleep(&pause, NULL);
	}
	strbuf_release(&path);
}

void job_cgroup_destroy(struct job_cgroup *cg)
{
	size_t i;

	for (i = 0; i < cg->count; i++) {
		if (cg->procs[i] >= 0)
			close(cg->procs[i]);
		cgroup_empty(cg->dirs[i]);
		free(cg->dirs[i]);
	}
	memset(cg, 0, sizeof(*cg));
	cg->procs[0] = cg->procs[1] = -1;
}

void job_cgroup_reap(const char *name)
{
	static const char *const parents[] = {
		CGROUP_ROOT, CGROUP_ROOT "/memory", CGROUP_ROOT "/cpu",
	};
	struct strbuf dir = STRBUF_INIT;
	size_t i;

	for (i = 0; i < sizeof(parents) / sizeof(parents[0]); i++) {
		strbuf_reset(&dir);
		strbuf_addf(&dir, "%s/dstack/%s", parents[i], name);
		if (access(dir.buf, F_OK) == 0)
			cgroup_empty(dir.buf);
	}
	strbuf_release(&dir);
}
