/*
 * cmd_providers.c - `dstack providers`, the providers a workflow of the
 * current repository can name.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "providers/providers.h"
#include "runner/runner.h"

struct custom_provider {
	char *name;
	char *file;
	bool replaces_builtin;
};

struct providers_list {
	struct cli_table table;
	struct custom_provider *customs;
	size_t custom_count;
};

static void providers_add_custom(void *ctx, const char *name, const char *file)
{
	struct providers_list *list = ctx;
	struct custom_provider *custom;

	list->customs = xrealloc(list->customs,
				 (list->custom_count + 1) * sizeof(*list->customs));
	custom = &list->customs[list->custom_count++];
	custom->name = xstrdup(name);
	custom->file = xstrdup(file);
	custom->replaces_builtin = false;
}

/* A built-in shows unless the repository defines a provider of its name. */
static void providers_add_builtin(void *ctx, const char *name, const char *help)
{
	struct providers_list *list = ctx;
	size_t i;

	for (i = 0; i < list->custom_count; i++) {
		if (!strcmp(list->customs[i].name, name)) {
			list->customs[i].replaces_builtin = true;
			return;
		}
	}
	cli_table_add(&list->table, name, "built-in", help);
}

int cmd_providers(int argc, char **argv)
{
	struct providers_list list = { 0 };
	struct error err = { 0 };
	char cwd[4096];
	size_t i;
	int ret;

	if (cli_wants_help("providers", argc, argv))
		return CLI_OK;
	if (argc != 1)
		return cli_usage_error("providers", "providers takes no arguments");
	if (!getcwd(cwd, sizeof(cwd)))
		return cli_error("cannot find the current directory: %s", strerror(errno));
	ret = runner_providers_each(cwd, providers_add_custom, cli_warn, &list, &err);
	if (ret == 0) {
		cli_table_init(&list.table, 3, "NAME", "SOURCE", "HELP");
		provider_builtin_list(providers_add_builtin, &list);
		for (i = 0; i < list.custom_count; i++)
			cli_table_add(&list.table, list.customs[i].name, list.customs[i].file,
				      list.customs[i].replaces_builtin ?
				      "custom provider, in place of the built-in" :
				      "custom provider");
		cli_table_print(&list.table);
	}
	for (i = 0; i < list.custom_count; i++) {
		free(list.customs[i].name);
		free(list.customs[i].file);
	}
	free(list.customs);
	return ret < 0 ? cli_error("%s", err.message) : CLI_OK;
}
