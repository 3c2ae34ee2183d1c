/*
 * listing.c - what a repository defines, for those who show it: its
 * providers (`dstack providers`) and its workflows (the /dstack tree).
 */
#include <errno.h>
#include <string.h>

#include "lib/json.h"
#include "runner/internal.h"

int runner_providers_each(const char *cwd,
			  void (*fn)(void *ctx, const char *name, const char *file),
			  void (*warn)(void *ctx, const char *line), void *ctx,
			  struct error *err)
{
	struct strbuf root = STRBUF_INIT;
	struct provider_def_set defs = { 0 };
	size_t i;
	int ret = runner_repo_root(cwd, &root, err);

	/* Outside a repository there is no providers.yaml to read. */
	if (ret == -ENOENT) {
		error_clear(err);
		ret = 0;
	} else if (ret == 0) {
		ret = provider_def_set_load(root.buf, &defs, warn, ctx, err);
	}
	for (i = 0; ret == 0 && i < defs.count; i++)
		fn(ctx, defs.defs[i].name, defs.defs[i].position.file);
	provider_def_set_release(&defs);
	strbuf_release(&root);
	return ret;
}

/* A workflow as loaded, as YAML: name, provider, help, deps, then its parameters. */
static int workflow_spec_yaml(const struct workflow *workflow, struct strbuf *yaml,
			      struct error *err)
{
	struct strbuf json = STRBUF_INIT;
	struct json *value = NULL;
	size_t i;
	int ret;

	strbuf_addstr(&json, "{\"name\":");
	json_add_string(&json, workflow->name);
	strbuf_addstr(&json, ",\"provider\":");
	json_add_string(&json, workflow->provider);
	if (workflow->help) {
		strbuf_addstr(&json, ",\"help\":");
		json_add_string(&json, workflow->help);
	}
	if (workflow->dep_count)
		strbuf_addstr(&json, ",\"deps\":[");
	for (i = 0; i < workflow->dep_count; i++) {
		strbuf_addf(&json, "%s{\"%s\":", i ? "," : "",
			    workflow->deps[i].kind == WORKFLOW_DEP_TAG ? "tag" : "workflow");
		json_add_string(&json, workflow->deps[i].name);
		strbuf_addstr(&json, "}");
	}
	if (workflow->dep_count)
		strbuf_addstr(&json, "]");
	/* data_json is an object of the other keys: its members follow. */
	if (strcmp(workflow->data_json, "{}"))
		strbuf_addf(&json, ",%s", workflow->data_json + 1);
	else
		strbuf_addstr(&json, "}");
	ret = json_parse(json.buf, json.len, &value, err);
	if (ret == 0) {
		env_mask_spec(value);
		json_add_yaml(yaml, value);
	}
	json_free(value);
	strbuf_release(&json);
	return ret;
}

int runner_workflows_each(const char *root,
			  int (*fn)(void *ctx, const char *name, const char *spec_yaml),
			  void *ctx, struct error *err)
{
	struct workflow_set set = { 0 };
	struct strbuf yaml = STRBUF_INIT;
	size_t i;
	int ret = workflow_set_load(root, &set, NULL, NULL, err);

	for (i = 0; ret == 0 && i < set.count; i++) {
		strbuf_reset(&yaml);
		ret = workflow_spec_yaml(&set.workflows[i], &yaml, err);
		if (ret == 0)
			ret = fn(ctx, set.workflows[i].name, yaml.buf);
	}
	workflow_set_release(&set);
	strbuf_release(&yaml);
	return ret;
}
