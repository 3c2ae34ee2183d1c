/*
 * providers_list.c - the providers a repository defines, for `dstack
 * providers`.
 */
#include <errno.h>

#include "runner/runner.h"
#include "runner/workflow.h"

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
