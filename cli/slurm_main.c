/*
 * slurm_main.c - dstack-slurm: the runner's way to a Slurm cluster
 * (slurm/), one short call at a time, so that only this helper links
 * libcurl.
 *
 *   dstack-slurm submit SETTINGS.json REQUEST.json   prints the job's id
 *   dstack-slurm state SETTINGS.json ID...           one JSON line an id:
 *     {"id":42,"state":"PENDING","reason":"Resources","node":"",
 *      "exit_code":0,"signal":0}  (state UNKNOWN: Slurm forgot the job)
 *   dstack-slurm cancel SETTINGS.json ID...          ended jobs are fine
 *
 * SETTINGS.json: {"url", "token_file", "user", "partition", "account",
 * "options": [...]}, all optional; without url it runs sbatch, squeue and
 * scancel, with it it talks to slurmrestd (the JWT from token_file, else
 * $SLURM_JWT).  REQUEST.json: {"name", "script", "workdir", "output",
 * "env": [...], "cpus", "memory_mb", "gpus", "gpu_name", "after_ok": [...]}.
 * Errors are one "dstack: slurm: ..." line and exit 1; usage errors exit 2.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "slurm/slurm.h"

static int usage(void)
{
	fprintf(stderr, "dstack: slurm: usage: dstack-slurm submit SETTINGS.json REQUEST.json"
		" | dstack-slurm state SETTINGS.json ID... | dstack-slurm cancel SETTINGS.json"
		" ID...\n");
	return 2;
}

/* The error on one line, whatever the message carries. */
static int fail(const struct error *err)
{
	char line[sizeof(err->message)];
	size_t i;

	snprintf(line, sizeof(line), "%s", err->message);
	for (i = 0; line[i]; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	fprintf(stderr, "dstack: slurm: %s\n", line);
	return 1;
}

static int parse_ids(char **args, size_t count, long long *ids)
{
	char *end;
	size_t i;

	for (i = 0; i < count; i++) {
		errno = 0;
		ids[i] = strtoll(args[i], &end, 10);
		if (errno || end == args[i] || *end || ids[i] <= 0) {
			fprintf(stderr, "dstack: slurm: '%s' is not a job id\n", args[i]);
			return -EINVAL;
		}
	}
	return 0;
}

static void print_state(const struct slurm_job_state *state, struct strbuf *out)
{
	strbuf_addf(out, "{\"id\":%lld,\"state\":", state->id);
	json_add_string(out, state->state);
	strbuf_addstr(out, ",\"reason\":");
	json_add_string(out, state->reason);
	strbuf_addstr(out, ",\"node\":");
	json_add_string(out, state->node);
	strbuf_addf(out, ",\"exit_code\":%d,\"signal\":%d}\n", state->exit_code, state->signal);
}

int main(int argc, char **argv)
{
	struct slurm_settings settings;
	struct slurm_request request;
	struct slurm_job_state *states = NULL;
	struct strbuf out = STRBUF_INIT;
	struct error err = { 0 };
	long long id, *ids = NULL;
	size_t count = 0, i;
	int ret = 0;

	if (argc < 4 || (strcmp(argv[1], "submit") && strcmp(argv[1], "state") &&
			 strcmp(argv[1], "cancel")) ||
	    (!strcmp(argv[1], "submit") && argc != 4))
		return usage();
	if (strcmp(argv[1], "submit")) {
		count = (size_t)argc - 3;
		ids = xcalloc(count, sizeof(long long));
		if (parse_ids(argv + 3, count, ids) < 0) {
			free(ids);
			return 2;
		}
	}
	if (slurm_settings_read(argv[2], &settings, &err) < 0) {
		slurm_settings_release(&settings);
		free(ids);
		return fail(&err);
	}
	if (!strcmp(argv[1], "submit")) {
		ret = slurm_request_read(argv[3], &request, &err);
		if (ret == 0)
			ret = slurm_submit(&settings, &request, &id, &err);
		if (ret == 0)
			printf("%lld\n", id);
		slurm_request_release(&request);
	} else if (!strcmp(argv[1], "state")) {
		states = xcalloc(count, sizeof(*states));
		ret = slurm_state(&settings, ids, count, states, &err);
		for (i = 0; ret == 0 && i < count; i++)
			print_state(&states[i], &out);
		if (ret == 0)
			fwrite(out.buf ? out.buf : "", 1, out.len, stdout);
	} else {
		ret = slurm_cancel(&settings, ids, count, &err);
	}
	slurm_settings_release(&settings);
	strbuf_release(&out);
	free(states);
	free(ids);
	if (ret < 0)
		return fail(&err);
	if (fflush(stdout) != 0) {
		error_errno(&err, -errno, "writing to stdout");
		return fail(&err);
	}
	return 0;
}
