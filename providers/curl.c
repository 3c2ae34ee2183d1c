/*
 * curl.c - the built-in `curl` provider: one job that downloads `url`
 * into the file `output` and stores the folder holding it as an
 * artifact.  The job runs dstack-curl (fetch.c), which downloads with
 * libcurl: no curl or wget need be on the host or in an image, and
 * progress and errors read the same everywhere.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "providers/internal.h"

/*
 * dstack-curl: beside this executable (a build tree), else where it is
 * installed.
 */
static int curl_helper(struct strbuf *path, struct error *err)
{
	char self[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (len < 0)
		return error_errno(err, -errno, "/proc/self/exe");
	self[len] = '\0';
	slash = strrchr(self, '/');
	strbuf_addf(path, "%.*s/dstack-curl", slash ? (int)(slash - self) : 0, self);
	if (access(path->buf, X_OK) == 0)
		return 0;
	strbuf_reset(path);
	strbuf_addstr(path, DSTACK_LIBEXECDIR "/dstack-curl");
	return 0;
}

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
	if (curl_helper(&helper, err) < 0)
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
