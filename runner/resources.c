/*
 * resources.c - what the host can give jobs: the CPUs this process may
 * use, its memory (MemTotal, or the cgroup limit when lower) and the
 * GPUs nvidia-smi lists; and whether a job's ask can ever fit.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/internal.h"

static int host_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		return CPU_COUNT(&set);
	return (int)sysconf(_SC_NPROCESSORS_ONLN);
}

static uint64_t meminfo_total(void)
{
	unsigned long long kib = 0;
	char line[256];
	FILE *file = fopen("/proc/meminfo", "re");

	if (!file)
		return 0;
	while (fgets(line, sizeof(line), file))
		if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
			break;
	fclose(file);
	return (uint64_t)kib * 1024;
}

/* The memory limit of this process's cgroup (v1 or v2), 0 when none. */
static uint64_t cgroup_memory_limit(void)
{
	char line[4096], path[4352];
	unsigned long long limit = 0, value;
	FILE *file = fopen("/proc/self/cgroup", "re");

	if (!file)
		return 0;
	while (fgets(line, sizeof(line), file)) {
		char *controllers = strchr(line, ':'), *group;
		FILE *limit_file;

		if (!controllers || !(group = strchr(++controllers, ':')))
			continue;
		*group++ = '\0';
		group[strcspn(group, "\n")] = '\0';
		if (!strcmp(controllers, "memory"))
			snprintf(path, sizeof(path), "/sys/fs/cgroup/memory%s/memory.limit_in_bytes",
				 group);
		else if (!*controllers)
			snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max", group);
		else
			continue;
		limit_file = fopen(path, "re");
		/* "max" (v2) does not scan: no limit. */
		if (limit_file && fscanf(limit_file, "%llu", &value) == 1 &&
		    (!limit || value < limit))
			limit = value;
		if (limit_file)
			fclose(limit_file);
	}
	fclose(file);
	return limit;
}

/* Whether program is on PATH: nvidia-smi is absent on most machines. */
static bool on_path(const char *program)
{
	const char *path = getenv("PATH"), *end;
	struct strbuf file = STRBUF_INIT;
	bool found = false;

	for (; path && *path && !found; path = *end ? end + 1 : end) {
		end = strchrnul(path, ':');
		strbuf_reset(&file);
		strbuf_addf(&file, "%.*s/%s", (int)(end - path), path, program);
		found = access(file.buf, X_OK) == 0;
	}
	strbuf_release(&file);
	return found;
}

bool host_has_gpus(void)
{
	return on_path("nvidia-smi");
}

/* The GPUs as nvidia-smi lists them: "NAME, MEMORY_MIB" per line. */
static int host_gpus(struct host_capacity *cap, struct error *err)
{
	char *const argv[] = { "nvidia-smi", "--query-gpu=name,memory.total",
			       "--format=csv,noheader,nounits", NULL };
	struct strbuf out = STRBUF_INIT;
	char *line, *save = NULL;
	int status, ret;

	if (!host_has_gpus())
		return 0;
	ret = host_exec("nvidia-smi", argv, &out, false, &status, err);
	if (ret == 0 && status)
		ret = error_set(err, -EIO, "nvidia-smi failed (status %d): cannot list the GPUs",
				status);
	for (line = out.buf ? strtok_r(out.buf, "\n", &save) : NULL; line && ret == 0;
	     line = strtok_r(NULL, "\n", &save)) {
		char *comma = strrchr(line, ',');
		struct host_gpu *gpu;

		if (cap->gpu_count == HOST_GPUS_MAX)
			break;
		cap->gpus = xrealloc(cap->gpus, (cap->gpu_count + 1) * sizeof(*cap->gpus));
		gpu = &cap->gpus[cap->gpu_count++];
		gpu->memory = comma ? strtoull(comma + 1, NULL, 10) * 1024 * 1024 : 0;
		if (comma)
			*comma = '\0';
		gpu->name = xstrdup(line);
	}
	strbuf_release(&out);
	return ret;
}

int host_capacity_read(bool with_gpus, struct host_capacity *cap, struct error *err)
{
	uint64_t limit = cgroup_memory_limit();

	memset(cap, 0, sizeof(*cap));
	cap->cpu = host_cpus();
	cap->memory = meminfo_total();
	if (limit && limit < cap->memory)
		cap->memory = limit;
	return with_gpus ? host_gpus(cap, err) : 0;
}

void host_capacity_release(struct host_capacity *cap)
{
	size_t i;

	for (i = 0; i < cap->gpu_count; i++)
		free(cap->gpus[i].name);
	free(cap->gpus);
	memset(cap, 0, sizeof(*cap));
}

void host_capacity_claim(const struct host_capacity *cap, struct store_claim *claim)
{
	claim->cpu = cap->cpu;
	claim->memory = cap->memory;
	claim->gpus = cap->gpu_count ? ~0ull >> (64 - cap->gpu_count) : 0;
}

static bool name_matches(const char *name, const char *wanted)
{
	return strcasestr(name, wanted) != NULL;
}

int host_capacity_fit(const struct host_capacity *cap, const struct job_resources *asked,
		      struct store_claim *want, struct error *err)
{
	char have[32], need[32];
	size_t i;
	int eligible = 0;

	memset(want, 0, sizeof(*want));
	if (asked->cpu > cap->cpu)
		return error_set(err, -E2BIG, "resources: %d CPUs asked, this host has %d",
				 asked->cpu, cap->cpu);
	if (asked->memory > cap->memory) {
		size_format(asked->memory, need);
		size_format(cap->memory, have);
		return error_set(err, -E2BIG, "resources: %s of memory asked, this host has %s",
				 need, have);
	}
	want->cpu = asked->cpu;
	want->memory = asked->memory;
	if (!asked->gpu_count)
		return 0;
	for (i = 0; i < cap->gpu_count; i++) {
		if (asked->gpu_name && !name_matches(cap->gpus[i].name, asked->gpu_name))
			continue;
		if (asked->gpu_memory > cap->gpus[i].memory)
			continue;
		want->gpus |= 1ull << i;
		eligible++;
	}
	if (eligible >= asked->gpu_count)
		return 0;
	if (!cap->gpu_count)
		return error_set(err, -E2BIG, "resources: %d GPUs asked, this host has none"
				 " (nvidia-smi lists none)", asked->gpu_count);
	size_format(asked->gpu_memory, need);
	return error_set(err, -E2BIG, "resources: %d GPUs%s%s%s%s asked, this host has %d such",
			 asked->gpu_count, asked->gpu_name ? " named " : "",
			 asked->gpu_name ? asked->gpu_name : "",
			 asked->gpu_memory ? " with " : "", asked->gpu_memory ? need : "",
			 eligible);
}
