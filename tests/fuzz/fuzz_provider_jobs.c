/*
 * fuzz_provider_jobs.c - libFuzzer target for custom_jobs_from_json, the
 * reader of the jobs a custom provider writes to DSTACK_JOBS: a program
 * of the repository's, so its output is untrusted.  Jobs it accepts must
 * hold what the scheduler indexes by: deps and masters among the jobs.
 */
#include <stdint.h>
#include <stdlib.h>

#include "runner/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct job_spec *jobs = NULL;
	struct error err = { 0 };
	size_t i, j, count = 0;

	if (custom_jobs_from_json((const char *)data, size, &jobs, &count, &err) < 0)
		return 0;
	for (i = 0; i < count; i++) {
		if (!jobs[i].script || (jobs[i].worker && jobs[i].master >= count))
			abort();
		for (j = 0; j < jobs[i].depends_on_count; j++)
			if (jobs[i].depends_on[j] >= count)
				abort();
	}
	job_specs_free(jobs, count);
	return 0;
}
