/*
 * curl.c - the built-in `curl` provider: one job that downloads `url`
 * into the file `output` and stores the folder holding it as an
 * artifact.  The job runs dstack-curl (fetch.c), which downloads with
 * libcurl: no curl or wget need be on the host or in an image, and
 * progress and errors read the same everywhere.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "providers/internal.h"

int provider_curl_jobs(const struct provider_input *in, struct job_spec **jobs,
		       size_t *count, struct error *err)
{
	const char *url = json_get(in->data, "url")->string;
	const char *output = json_get(in->data, "output")->string;
	struct provider_input with = *in;
	struct strbuf run = STRBUF_INIT, helper = STRBUF_INIT;
	struct job_artifact folder = { 0 };
	char *commands[1];
	const char *slash;

	/* As for artifacts, a leading "./" says nothing. */
	while (output[0] == '.' && output[1] == '/')
		output += 2;
	if (!path_is_contained(output))
		return error_set(err, -EINVAL,
				 "workflow '%s': 'output': '%s' must be a path inside the working directory",
				 in->workflow, output);
	slash = strrchr(output, '/');
	/* Artifacts are folders: the file is stored through the one holding it. */
	if (!slash && !in->artifact_count)
		return error_set(err, -EINVAL,
				 "workflow '%s': 'output': put '%s' in a folder (e.g. data/%s),"
				 " which is stored as the artifact, or give 'artifacts'",
				 in->workflow, output, output);
	if (provider_helper_path("dstack-curl", &helper, err) < 0)
		return err->code;
	if (!in->artifact_count) {
		folder.path = xstrdup(output);
		folder.path[slash - output] = '\0';
		with.artifacts = &folder;
		with.artifact_count = 1;
	}
	strbuf_add_shell_word(&run, helper.buf);
	strbuf_addstr(&run, " ");
	strbuf_add_shell_word(&run, url);
	strbuf_addstr(&run, " ");
	strbuf_add_shell_word(&run, output);
	commands[0] = run.buf;
	*jobs = provider_job(&with, commands, 1);
	*count = 1;
	strbuf_release(&run);
	strbuf_release(&helper);
	free(folder.path);
	return 0;
}
