/*
 * docker.c - the built-in `docker` provider: the workflow's commands in
 * the Docker image it names.  The job carries the image; a container
 * backend runs the commands in it, the host backend records it and runs
 * them on the host.
 */
#include "providers/internal.h"

int provider_docker_jobs(const struct provider_input *in, struct job_spec **jobs,
			 size_t *count, struct error *err)
{
	(void)err;
	/* Unlike bash, no pip: the image brings what its commands need. */
	*jobs = provider_job(in, in->commands, in->command_count);
	*count = 1;
	return 0;
}
