/*
 * docker_main.c - dstack-docker SPEC: one job of the docker backend in a
 * container (docker/engine.c), started by the runner as a host job is,
 * so its output, its stop and its exit status are the container's.
 * SPEC is a JSON file: {"image", "command": [...], "env": [...],
 * "workdir", "binds": [...], "labels": [...], "ports": [...], "memory",
 * "nano_cpus", "shm_size", "grace", "pinned", "reason", "network", "alias",
 * "gpus": [...], "frames": true}; only image and command are needed.  "pinned" names a
 * file that gets IMAGE@DIGEST when the image came from a registry;
 * "reason" one that gets why the job failed, in one line, when it was not
 * the command's own exit (an error, or out of memory).  The container's
 * stdout and stderr go to the helper's, and its own lines (pull progress,
 * errors) to stderr; with "frames", all go to stdout as docker's frames
 * (stream, size, bytes), in the order they came, its own lines as stdout:
 * the runner keeps the streams apart without losing their order.
 * `dstack-docker remove LABEL=VALUE` removes the containers and networks
 * so labelled (what a run left) and prints how many containers went;
 * `dstack-docker network NAME LABEL=VALUE` makes a run's network;
 * `dstack-docker image IMAGE` prints the image's id, pulling it when
 * dockerd does not have it (the job cache's key).  Errors are one
 * "dstack: ..." line, as dstack's.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "docker/docker.h"
#include "lib/json.h"

static volatile sig_atomic_t docker_stopping;

static void docker_stop(int sig)
{
	(void)sig;
	docker_stopping = 1;
}

/* Writes what a frame stream gets to stdout as one frame of its stream. */
static ssize_t frame_write(void *cookie, const char *data, size_t len)
{
	return fs_write_frame(STDOUT_FILENO, (int)(intptr_t)cookie, data, len) < 0 ? -1 :
	       (ssize_t)len;
}

/* A stream whose every flush is a frame of stream (1 or 2) on stdout. */
static FILE *frame_stream(int stream)
{
	cookie_io_functions_t io = { .write = frame_write };
	FILE *file = fopencookie((void *)(intptr_t)stream, "w", io);

	/* It fails only without memory, where xmalloc gives up too. */
	if (!file)
		abort();
	return file;
}

/* A NULL-terminated list of the strings of spec's key, or an error. */
static int spec_strings(const struct json *spec, const char *key, char ***out,
			struct error *err)
{
	size_t count;

	return json_get_strings(spec, key, out, &count, err);
}

static int spec_number(const struct json *spec, const char *key, long long *out,
		       struct error *err)
{
	const struct json *value = json_get(spec, key);

	*out = 0;
	if (!value || value->type == JSON_NULL)
		return 0;
	if (!json_integer(value, out) || *out < 0)
		return error_set(err, -EINVAL, "%s: expected a count", key);
	return 0;
}

struct spec {
	struct json *doc;
	struct docker_job job;
	char **command, **env, **binds, **labels, **gpus;
	int *ports;
	long long grace;
};

static int spec_read(const char *path, struct spec *spec, struct error *err)
{
	struct strbuf text = STRBUF_INIT;
	const struct json *value;
	long long number;
	size_t i;
	int ret = fs_read_file(path, &text);

	if (ret < 0)
		return error_errno(err, ret, "%s", path);
	ret = json_parse(text.buf, text.len, &spec->doc, err);
	strbuf_release(&text);
	if (ret < 0)
		return ret;
	value = json_get(spec->doc, "image");
	if (!value || value->type != JSON_STRING || !*value->string)
		return error_set(err, -EINVAL, "%s: image: expected an image name", path);
	spec->job.image = value->string;
	value = json_get(spec->doc, "workdir");
	spec->job.workdir = value && value->type == JSON_STRING ? value->string : NULL;
	value = json_get(spec->doc, "network");
	spec->job.network = value && value->type == JSON_STRING ? value->string : NULL;
	value = json_get(spec->doc, "alias");
	spec->job.alias = value && value->type == JSON_STRING ? value->string : NULL;
	if (spec_strings(spec->doc, "command", &spec->command, err) < 0 ||
	    spec_strings(spec->doc, "env", &spec->env, err) < 0 ||
	    spec_strings(spec->doc, "binds", &spec->binds, err) < 0 ||
	    spec_strings(spec->doc, "labels", &spec->labels, err) < 0 ||
	    spec_strings(spec->doc, "gpus", &spec->gpus, err) < 0 ||
	    spec_number(spec->doc, "memory", &number, err) < 0)
		return err->code;
	if (!spec->command || !spec->command[0])
		return error_set(err, -EINVAL, "%s: command: expected a command", path);
	spec->job.memory = number;
	if (spec_number(spec->doc, "nano_cpus", &number, err) < 0)
		return err->code;
	spec->job.nano_cpus = number;
	if (spec_number(spec->doc, "shm_size", &number, err) < 0 ||
	    spec_number(spec->doc, "grace", &spec->grace, err) < 0)
		return err->code;
	spec->job.shm_size = number;
	value = json_get(spec->doc, "ports");
	if (value && value->type == JSON_ARRAY) {
		spec->ports = xcalloc(value->count + 1, sizeof(int));
		for (i = 0; i < value->count; i++) {
			if (!json_integer(&value->items[i], &number) || number < 1 || number > 65535)
				return error_set(err, -EINVAL, "ports[%zu]: expected a port", i);
			spec->ports[i] = (int)number;
		}
		spec->job.port_count = value->count;
	}
	spec->job.command = spec->command;
	spec->job.env = spec->env;
	spec->job.binds = spec->binds;
	spec->job.labels = spec->labels;
	spec->job.gpus = spec->gpus;
	spec->job.ports = spec->ports;
	return 0;
}

/* Writes text to the file the spec names at key; false if it names none. */
static bool spec_write_file(const struct json *doc, const char *key, const struct strbuf *text)
{
	const struct json *path = json_get(doc, key);

	if (!path || path->type != JSON_STRING)
		return false;
	fs_write_file(path->string, text->buf, text->len);
	return true;
}

static void spec_release(struct spec *spec)
{
	free(spec->command);
	free(spec->env);
	free(spec->binds);
	free(spec->labels);
	free(spec->gpus);
	free(spec->ports);
	json_free(spec->doc);
}

int main(int argc, char **argv)
{
	static const int signals[] = { SIGINT, SIGTERM, SIGHUP };
	struct sigaction action = { .sa_handler = docker_stop };
	const char *host = getenv("DOCKER_HOST");
	struct spec spec = { 0 };
	struct strbuf pinned = STRBUF_INIT, reason = STRBUF_INIT;
	const struct json *frames;
	FILE *out = stdout, *errs = stderr, *log = stderr;
	struct error err = { 0 };
	int status = 0, ret;
	size_t i;

	if (argc != 2 && !(argc == 3 && !strcmp(argv[1], "remove") && strchr(argv[2], '=')) &&
	    !(argc == 3 && !strcmp(argv[1], "image")) &&
	    !(argc == 4 && !strcmp(argv[1], "network") && strchr(argv[3], '='))) {
		fprintf(stderr, "dstack: usage: dstack-docker SPEC.json | dstack-docker remove"
			" LABEL=VALUE | dstack-docker network NAME LABEL=VALUE |"
			" dstack-docker image IMAGE\n");
		return 2;
	}
	if (host && strncmp(host, "unix://", 7)) {
		fprintf(stderr, "dstack: DOCKER_HOST=%s: only unix:// sockets are supported\n", host);
		return 2;
	}
	if (argc == 4) {
		if (docker_network_ensure(host ? host + 7 : DOCKER_SOCKET, argv[2], argv[3], &err) < 0) {
			fprintf(stderr, "dstack: %s\n", err.message);
			return 1;
		}
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "image")) {
		struct strbuf id = STRBUF_INIT;

		if (docker_image_id(host ? host + 7 : DOCKER_SOCKET, argv[2], stderr, &id,
				    &err) < 0) {
			fprintf(stderr, "dstack: %s\n", err.message);
			return 1;
		}
		printf("%s\n", id.buf);
		strbuf_release(&id);
		return 0;
	}
	if (argc == 3) {
		int count;

		if (docker_remove_labelled(host ? host + 7 : DOCKER_SOCKET, argv[2], &count, &err) < 0) {
			fprintf(stderr, "dstack: %s\n", err.message);
			return 1;
		}
		printf("%d\n", count);
		return 0;
	}
	/* A stopped job stops its container instead of leaving it running. */
	sigemptyset(&action.sa_mask);
	for (i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		sigaction(signals[i], &action, NULL);
	ret = spec_read(argv[1], &spec, &err);
	frames = json_get(spec.doc, "frames");
	if (frames && frames->type == JSON_BOOL && frames->boolean) {
		out = log = frame_stream(STDOUT_FILENO);
		errs = frame_stream(STDERR_FILENO);
	}
	if (ret == 0) {
		spec.job.pinned = &pinned;
		ret = docker_job_run(host ? host + 7 : DOCKER_SOCKET, &spec.job, out, errs, log,
				     &docker_stopping, spec.grace ? (int)spec.grace : 10, &status,
				     &reason, &err);
	}
	if (ret < 0) {
		strbuf_addstr(&reason, err.message);
		status = 125;
	}
	if (pinned.len)
		spec_write_file(spec.doc, "pinned", &pinned);
	/* The runner says it, once, where a reason file is named. */
	if (reason.len && !spec_write_file(spec.doc, "reason", &reason))
		fprintf(log, "dstack: %s%s\n", ret < 0 ? "" : "docker: ", reason.buf);
	if (out != stdout)
		fclose(out);
	if (errs != stderr)
		fclose(errs);
	strbuf_release(&pinned);
	strbuf_release(&reason);
	spec_release(&spec);
	return status;
}
