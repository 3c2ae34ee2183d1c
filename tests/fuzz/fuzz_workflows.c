/*
 * fuzz_workflows.c - libFuzzer target for the loaders of
 * .dstack/workflows.yaml and .dstack/providers.yaml: the input is written
 * as each file in turn of a repository folder made once, and loaded.  A
 * workflow that loads must have a data_json that parses as an object (the
 * runner and the tree take that for granted) and commands that
 * ${{ run.args }} expands in.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/lib.h"
#include "runner/workflow.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_root[] = "/tmp/dstack-fuzz-workflows-XXXXXX";
static struct strbuf fuzz_workflows_file = STRBUF_INIT;
static struct strbuf fuzz_providers_file = STRBUF_INIT;

static void fuzz_root_remove(void)
{
	fs_remove_tree(fuzz_root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct strbuf dir = STRBUF_INIT;

	(void)argc;
	(void)argv;
	if (!mkdtemp(fuzz_root)) {
		perror("mkdtemp");
		exit(1);
	}
	atexit(fuzz_root_remove);
	strbuf_addf(&dir, "%s/.dstack", fuzz_root);
	if (fs_mkdir_p(dir.buf, 0755) < 0) {
		perror(dir.buf);
		exit(1);
	}
	strbuf_release(&dir);
	strbuf_addf(&fuzz_workflows_file, "%s/.dstack/workflows.yaml", fuzz_root);
	strbuf_addf(&fuzz_providers_file, "%s/.dstack/providers.yaml", fuzz_root);
	return 0;
}

/* Warnings are part of what is exercised, not of what is checked. */
static void fuzz_warn(void *ctx, const char *line)
{
	(void)ctx;
	(void)line;
}

static void fuzz_write(const char *path, const uint8_t *data, size_t size)
{
	if (fs_write_file(path, data, size) < 0) {
		perror(path);
		exit(1);
	}
}

static void fuzz_workflow_check(const struct workflow *wf)
{
	static char *const args[] = { "--epochs", "3", "it's a 'word'", "" };
	struct json *data = NULL;
	struct error err = { 0 };
	size_t i;

	if (json_parse(wf->data_json, strlen(wf->data_json), &data, &err) < 0 ||
	    data->type != JSON_OBJECT) {
		fprintf(stderr, "workflow '%s': data_json is no object: %s\n%s\n", wf->name,
			err.message, wf->data_json);
		abort();
	}
	json_free(data);
	for (i = 0; i < wf->command_count; i++)
		free(workflow_expand_args(wf->commands[i], args, 4));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct workflow_set workflows;
	struct provider_def_set providers;
	struct error err = { 0 };
	size_t i;

	fuzz_write(fuzz_workflows_file.buf, data, size);
	if (workflow_set_load(fuzz_root, &workflows, fuzz_warn, NULL, &err) == 0) {
		for (i = 0; i < workflows.count; i++)
			fuzz_workflow_check(&workflows.workflows[i]);
		workflow_set_release(&workflows);
	}
	fuzz_write(fuzz_providers_file.buf, data, size);
	error_clear(&err);
	if (provider_def_set_load(fuzz_root, &providers, fuzz_warn, NULL, &err) == 0)
		provider_def_set_release(&providers);
	return 0;
}
