/*
 * internal.h - what the built-in providers share (internal to
 * providers/): the jobs function each one has, and the one job most of
 * them make.
 */
#ifndef DSTACK_PROVIDERS_INTERNAL_H
#define DSTACK_PROVIDERS_INTERNAL_H

#include "providers/providers.h"

/*
 * Turns a workflow into jobs.  Called once the workflow's parameters
 * match the provider's declaration in builtin.c: a required parameter is
 * there, with the declared type.
 */
typedef int provider_jobs_fn(const struct provider_input *in, struct job_spec **jobs,
			     size_t *count, struct error *err);

provider_jobs_fn provider_bash_jobs;
provider_jobs_fn provider_python_jobs;
provider_jobs_fn provider_docker_jobs;
provider_jobs_fn provider_curl_jobs;

/*
 * One job running commands with the workflow's working_dir, artifacts,
 * ports, image and resources.
 */
struct job_spec *provider_job(const struct provider_input *in, char *const *commands,
			      size_t count);

#endif
