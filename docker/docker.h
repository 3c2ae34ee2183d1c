/*
 * docker.h - one job in a container, through the Docker Engine API on its
 * Unix socket (libcurl).  Only the dstack-docker helper links this: the
 * runner starts the helper as it starts a host job, so the job's process
 * group, logs, stop and exit status work the same on both backends.
 */
#ifndef DSTACK_DOCKER_H
#define DSTACK_DOCKER_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/lib.h"

/* Where dockerd listens unless DOCKER_HOST says unix://PATH. */
#define DOCKER_SOCKET "/var/run/docker.sock"

struct docker_job {
	const char *image;
	char *const *command;	/* argv, NULL-terminated */
	char *const *env;	/* "K=V", NULL-terminated */
	const char *workdir;	/* inside the container; NULL: the image's */
	char *const *binds;	/* "HOST:CONTAINER[:ro]", NULL-terminated */
	char *const *labels;	/* "K=V", NULL-terminated */
	const int *ports;	/* published on the same port of the host */
	size_t port_count;
	int64_t memory;		/* bytes, 0: no limit */
	int64_t nano_cpus;	/* 1e9 a CPU, 0: no limit */
	int64_t shm_size;	/* bytes, 0: the default */
	/* A user-defined network (made if missing, with the labels) the
	 * container joins as alias, so the run's jobs reach each other by
	 * name; NULL: the default bridge.  alias is its host name too. */
	const char *network;
	const char *alias;
	/* Gets "IMAGE@sha256:..." of the registry's manifest, when not NULL
	 * and the image came from a registry: what reproduces the run. */
	struct strbuf *pinned;
	/* GPUs to hand the container: their indexes as the host numbers them
	 * ("0", "1", ...), NULL-terminated; NULL: none. */
	char *const *gpus;
};

/*
 * Pulls the image if it is missing (progress on log), runs the command
 * in a new container with the job's settings, copies its stdout to out
 * and its stderr to errs as they come, removes the container and sets
 * *status to its exit status.  When the kernel killed it for memory,
 * *status is 137 and *reason says so.  *stop, set by a signal handler,
 * stops the container (SIGTERM, SIGKILL after grace_s seconds) and
 * *status is then 128 + SIGTERM.  Errors name the socket, the image or
 * the API's message.
 */
int docker_job_run(const char *socket, const struct docker_job *job, FILE *out, FILE *errs,
		   FILE *log, const volatile sig_atomic_t *stop, int grace_s, int *status,
		   struct strbuf *reason, struct error *err);

/*
 * The id of image (the digest of its configuration: what a container of
 * it runs), pulled first when dockerd does not have it (progress on log).
 */
int docker_image_id(const char *socket, const char *image, FILE *log, struct strbuf *id,
		    struct error *err);

/*
 * Removes every container, running or not, and every network that has
 * label ("K=V"): what a run's jobs leave, or a runner that died left.
 * *count gets how many containers went.
 */
int docker_remove_labelled(const char *socket, const char *label, int *count,
			   struct error *err);

/*
 * Makes the network name, labelled label ("K=V"), unless it exists: a
 * run's jobs share one, made before they start (two jobs making it at
 * once would make two of the same name).
 */
int docker_network_ensure(const char *socket, const char *name, const char *label,
			  struct error *err);

#endif
