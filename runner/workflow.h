/*
 * workflow.h - workflows as loaded from .dstack/workflows.yaml and
 * .dstack/workflows/NAME.yaml (internal to runner/).
 */
#ifndef DSTACK_RUNNER_WORKFLOW_H
#define DSTACK_RUNNER_WORKFLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/lib.h"

/* Where something was written: file relative to the repository root. */
struct workflow_position {
	const char *file;	/* points into workflow_set.files */
	int line, column;	/* 1-based */
};

struct workflow_artifact {
	char *path;		/* leading "./" dropped */
	bool mount;
	struct workflow_position position;
};

enum workflow_dep_kind {
	WORKFLOW_DEP_WORKFLOW,
	WORKFLOW_DEP_TAG,
};

struct workflow_dep {
	enum workflow_dep_kind kind;
	char *name;
	struct workflow_position position;
};

struct workflow_resources {
	int cpu;		/* 0: not given */
	uint64_t memory;	/* bytes, 0: not given */
	uint64_t shm_size;	/* bytes, 0: not given */
	int gpu_count;
	char *gpu_name;		/* NULL: any */
	uint64_t gpu_memory;	/* bytes, 0: not given */
	bool interruptible;
	bool local;
};

struct workflow {
	char *name;
	char *provider;		/* built-in or providers.yaml name */
	char *provider_repo;	/* provider: {repo: URL, name: N}, else NULL */
	char *provider_ref;	/* its ref: (branch, tag or commit), else NULL */
	char *help;
	char **commands;
	size_t command_count;
	struct workflow_artifact *artifacts;
	size_t artifact_count;
	char **env;		/* "K=V", or "K" to take from the submitter */
	size_t env_count;
	char *working_dir;	/* NULL: the repository root */
	char *image;
	char *python;
	int *ports;		/* a list of port numbers... */
	size_t port_count;
	int port_free_count;	/* ...or a count of free ports (ports: N) */
	struct workflow_dep *deps;
	size_t dep_count;
	struct workflow_resources resources;
	bool cache;		/* the job result cache: cache: true */
	/* The parts of the repository the jobs' results depend on (paths
	 * from its root); none: the whole snapshot. */
	char **inputs;
	size_t input_count;
	/* The keys the user wrote except name, provider, help and deps, as a
	 * JSON object: what a custom provider reads as workflow.data. */
	char *data_json;
	struct workflow_position position;	/* of the item's first key */
};

struct workflow_set {
	char **files;		/* loaded files, relative to the repository root */
	size_t file_count;
	struct workflow *workflows;
	size_t count;
};

/* Receives one warning line, "FILE:LINE:COL: ...", without "dstack: ". */
typedef void workflow_warn_fn(void *ctx, const char *line);

/*
 * Loads every workflow of the repository at root.  A missing .dstack/
 * folder or file is no error (an empty set).  Errors name the file
 * relative to root, line and column: "FILE:LINE:COL: REASON".
 */
int workflow_set_load(const char *root, struct workflow_set *set,
		      workflow_warn_fn *warn, void *warn_ctx, struct error *err);
void workflow_set_release(struct workflow_set *set);
const struct workflow *workflow_set_find(const struct workflow_set *set,
					 const char *name);

/* "512MB", "16GB", "1TB", "100" (bytes): MB/GB/TB are MiB/GiB/TiB. */
int workflow_parse_size(const char *text, uint64_t *bytes);

/*
 * Replaces each "${{ run.args }}" in text (spaces inside the braces
 * optional) with args, each shell-quoted, space-separated.
 */
char *workflow_expand_args(const char *text, char *const *args, size_t count);

/* A provider defined in .dstack/providers.yaml. */
struct provider_def {
	char *name;
	char *image;		/* NULL when not given */
	char **commands;	/* at least one */
	size_t command_count;
	char *schema;		/* path relative to the repository root (a
				 * leading "./" dropped), NULL when not given */
	struct workflow_position position;	/* of the item's first key */
};

struct provider_def_set {
	char **files;		/* loaded files (none or providers.yaml) */
	size_t file_count;
	struct provider_def *defs;
	size_t count;
};

/*
 * Loads .dstack/providers.yaml (missing: an empty set).  `providers:` is
 * a list of {name, image, commands, schema}.  Errors are
 * "FILE:LINE:COL: REASON": a missing name or commands, commands that are
 * not a list of strings (one string is a list of one), a name defined
 * twice (naming both places), values of the wrong type, a schema path
 * that is absolute or leaves the repository.  Unknown keys warn, with the
 * closest known key when there is one, as for workflows.
 */
int provider_def_set_load(const char *root, struct provider_def_set *set,
			  workflow_warn_fn *warn, void *warn_ctx,
			  struct error *err);
void provider_def_set_release(struct provider_def_set *set);
const struct provider_def *provider_def_set_find(const struct provider_def_set *set,
						 const char *name);

/*
 * Reads the YAML file at path (relative to root) and returns its single
 * document as JSON text (malloc'd) in *json, scalars converted as for
 * workflow.data_json.  For provider schema files.  Errors name the file,
 * line and column; an empty file, a second document or a missing file
 * is an error.
 */
int workflow_yaml_file_to_json(const char *root, const char *path, char **json,
			       struct error *err);

#endif
