/*
 * container.c - what the docker backend runs in a container (a job, or a
 * custom provider): its settings written for dstack-docker, and the
 * script that runs the helper in its place, so the process group, the
 * output, the stop and the exit status are those of a host job.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runner/internal.h"

/*
 * The container's grace is shorter than the helper's: dockerd must have
 * stopped it before the runner kills the helper.
 */
#define DOCKER_STOP_MARGIN_S 2

void container_files_init(struct container_files *files, const char *base)
{
	*files = (struct container_files){ STRBUF_INIT, STRBUF_INIT, STRBUF_INIT };
	strbuf_addf(&files->spec, "%s.docker.json", base);
	strbuf_addf(&files->pinned, "%s.pinned", base);
	strbuf_addf(&files->reason, "%s.reason", base);
}

void container_files_remove(struct container_files *files)
{
	if (files->spec.len) {
		unlink(files->spec.buf);
		unlink(files->pinned.buf);
		unlink(files->reason.buf);
	}
	strbuf_release(&files->spec);
	strbuf_release(&files->pinned);
	strbuf_release(&files->reason);
}

int container_script(const struct container_spec *c, const struct container_files *files,
		     struct strbuf *script, struct error *err)
{
	const struct job_resources *res = c->resources;
	struct strbuf json = STRBUF_INIT, helper = STRBUF_INIT;
	const char *sep = "";
	size_t i;
	int ret;

	/* bash where the image has it, as on the host; else its sh. */
	strbuf_addstr(&json, "{\"image\":");
	json_add_string(&json, c->image);
	strbuf_addstr(&json, ",\"command\":[\"sh\",\"-c\",");
	json_add_string(&json, "if command -v bash >/dev/null 2>&1; then exec bash -c \"$1\"; fi;"
			       " exec sh -c \"$1\"");
	strbuf_addstr(&json, ",\"sh\",");
	json_add_string(&json, c->script);
	strbuf_addstr(&json, "],\"workdir\":");
	json_add_string(&json, c->workdir);
	json_add_strings_field(&json, "env", c->env, c->env_count);
	json_add_strings_field(&json, "binds", c->binds, c->bind_count);
	json_add_strings_field(&json, "labels", c->labels, c->label_count);
	strbuf_addstr(&json, ",\"ports\":[");
	for (i = 0; i < c->port_count; i++)
		strbuf_addf(&json, "%s%d", i ? "," : "", c->ports[i]);
	strbuf_addstr(&json, "],\"gpus\":[");
	for (i = 0; i < 64; i++) {
		if (c->gpus & (1ull << i)) {
			strbuf_addf(&json, "%s\"%zu\"", sep, i);
			sep = ",";
		}
	}
	strbuf_addstr(&json, "],\"pinned\":");
	json_add_string(&json, files->pinned.buf);
	strbuf_addstr(&json, ",\"reason\":");
	json_add_string(&json, files->reason.buf);
	/* The container's streams apart yet in order, the helper's lines among stdout's. */
	strbuf_addstr(&json, ",\"frames\":true");
	if (c->network) {
		strbuf_addstr(&json, ",\"network\":");
		json_add_string(&json, c->network);
	}
	if (c->alias) {
		strbuf_addstr(&json, ",\"alias\":");
		json_add_string(&json, c->alias);
	}
	if (res)
		strbuf_addf(&json, ",\"memory\":%llu,\"nano_cpus\":%lld,\"shm_size\":%llu",
			    (unsigned long long)res->memory, (long long)res->cpu * 1000000000ll,
			    (unsigned long long)res->shm_size);
	strbuf_addf(&json, ",\"grace\":%lld}\n",
		    HOST_STOP_GRACE_NS / 1000000000ll - DOCKER_STOP_MARGIN_S);
	ret = fs_write_file(files->spec.buf, json.buf, json.len);
	if (ret < 0)
		error_errno(err, ret, "%s", files->spec.buf);
	if (ret == 0)
		ret = provider_helper_path("dstack-docker", &helper, err);
	if (ret == 0) {
		strbuf_addstr(script, "exec ");
		strbuf_add_shell_word(script, helper.buf);
		strbuf_addstr(script, " ");
		strbuf_add_shell_word(script, files->spec.buf);
		strbuf_addstr(script, "\n");
	}
	strbuf_release(&json);
	strbuf_release(&helper);
	return ret;
}

int container_job_script(struct container_spec *c, const char *root, const char *dir,
			 const char *working_dir, const struct artifact_names *ro,
			 const char *run, int n, const struct container_files *files,
			 struct strbuf *script, struct error *err)
{
	struct strbuf workdir = STRBUF_INIT, item = STRBUF_INIT;
	char **binds = xcalloc(ro->count + 1, sizeof(char *));
	char *labels[2];
	size_t i;
	int ret;

	strbuf_addf(&workdir, "/workflow%s%s", working_dir ? "/" : "",
		    working_dir ? working_dir : "");
	strbuf_addf(&item, "%s:/workflow", root);
	binds[0] = xstrdup(item.buf);
	for (i = 0; i < ro->count; i++) {
		strbuf_reset(&item);
		strbuf_addf(&item, "%s:%s%s:ro", ro->sources ? ro->sources[i] : ro->paths[i],
			    workdir.buf, ro->paths[i] + strlen(dir));
		binds[i + 1] = xstrdup(item.buf);
	}
	strbuf_reset(&item);
	strbuf_addf(&item, "dstack.run=%s", run);
	labels[0] = xstrdup(item.buf);
	strbuf_reset(&item);
	strbuf_addf(&item, "dstack.job=%d", n);
	labels[1] = xstrdup(item.buf);
	c->workdir = workdir.buf;
	c->binds = binds;
	c->bind_count = ro->count + 1;
	c->labels = labels;
	c->label_count = 2;
	ret = container_script(c, files, script, err);
	for (i = 0; i < ro->count + 1; i++)
		free(binds[i]);
	free(binds);
	free(labels[0]);
	free(labels[1]);
	strbuf_release(&workdir);
	strbuf_release(&item);
	return ret;
}
