/*
 * cmd_tags.c - `dstack tags`: name runs, and bring local folders into the
 * store as tagged runs.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static int tags_list_row(void *ctx, const struct store_run *run)
{
	char when[32];

	time_format_iso(run->submitted, when);
	cli_table_add(ctx, run->tag, run->name, run->workflow[0] ? run->workflow : "-",
		      run->artifacts[0] ? run->artifacts : "-", when);
	return 0;
}

static int tags_list(void)
{
	struct store *store;
	struct cli_table table;
	struct error err = { 0 };
	int ret;

	if (cli_open_store(&store, false) < 0)
		return CLI_FAILED;
	cli_table_init(&table, 5, "TAG", "RUN", "WORKFLOW", "ARTIFACTS", "SUBMITTED");
	ret = store_tag_list(store, tags_list_row, &table, &err);
	if (ret < 0) {
		cli_table_print(&table);
		store_close(store);
		return cli_error("%s", err.message);
	}
	cli_table_print(&table);
	store_close(store);
	return CLI_OK;
}

/* The artifact path a folder is stored under: its last component. */
static int artifact_name(const char *dir, char **out)
{
	char *real = realpath(dir, NULL);
	char *base;

	if (!real)
		return cli_error("%s: %s", dir, strerror(errno));
	base = basename(real);
	if (!*base || !strcmp(base, "/")) {
		free(real);
		return cli_error("%s: the root folder has no name to store it under", dir);
	}
	*out = xstrdup(base);
	free(real);
	return 0;
}

static int tags_add_folders(const char *tag, char **dirs, int count)
{
	struct store_artifact_ref *refs = xcalloc((size_t)count, sizeof(*refs));
	char **names = xcalloc((size_t)count, sizeof(*names));
	struct store_ingest *ingest = NULL;
	struct store *store = NULL;
	struct cli_progress progress;
	struct store_run run;
	struct error err = { 0 };
	int i, j, ret = CLI_FAILED;

	for (i = 0; i < count; i++) {
		if (artifact_name(dirs[i], &names[i]))
			goto out;
		for (j = 0; j < i; j++)
			if (!strcmp(names[i], names[j])) {
				cli_error("%s and %s would both be stored as '%s'", dirs[j],
					  dirs[i], names[i]);
				goto out;
			}
		refs[i].path = names[i];
	}
	if (cli_open_store(&store, true) < 0)
		goto out;
	if (store_tag_check_free(store, tag, &err) < 0 ||
	    store_ingest_begin(store, &ingest, cli_warn, NULL, &err) < 0) {
		cli_error("%s", err.message);
		goto out;
	}
	for (i = 0; i < count; i++) {
		cli_progress_init(&progress, names[i]);
		ret = store_ingest_folder(ingest, dirs[i], &refs[i].tree,
					  cli_progress_update, &progress, &err);
		cli_progress_finish(&progress);
		if (ret < 0) {
			ret = cli_error("%s", err.message);
			goto out;
		}
	}
	if (store_run_add_data(store, tag, refs, (size_t)count, &run, &err) < 0) {
		ret = cli_error("%s", err.message);
		goto out;
	}
	printf("%s\n", run.name);
	ret = CLI_OK;
out:
	store_ingest_end(ingest);
	store_close(store);
	for (i = 0; i < count; i++)
		free(names[i]);
	free(names);
	free(refs);
	return ret;
}

static int tags_add(int argc, char **argv)
{
	char **dirs;
	struct store *store;
	struct error err = { 0 };
	int i, count = 0, ret;

	if (argc < 4)
		return cli_usage_error("tags", "tags add needs a TAG and a RUN or -a DIR...");
	if (argv[3][0] != '-' || !strcmp(argv[3], "-")) {
		if (argc > 4)
			return cli_usage_error("tags", "unexpected '%s'", argv[4]);
		if (cli_open_store(&store, true) < 0)
			return CLI_FAILED;
		ret = store_tag_add(store, argv[2], argv[3], &err);
		store_close(store);
		return ret < 0 ? cli_error("%s", err.message) : CLI_OK;
	}
	dirs = xcalloc((size_t)argc, sizeof(*dirs));
	for (i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "-a") || !strcmp(argv[i], "--artifact"))
			continue;
		if (argv[i][0] == '-' && argv[i][1]) {
			free(dirs);
			return cli_usage_error("tags", "unknown option '%s'", argv[i]);
		}
		dirs[count++] = argv[i];
	}
	if (!count) {
		free(dirs);
		return cli_usage_error("tags", "-a needs at least one DIR");
	}
	ret = tags_add_folders(argv[2], dirs, count);
	free(dirs);
	return ret;
}

static int tags_delete(int argc, char **argv)
{
	struct store *store;
	struct error err = { 0 };
	int ret;

	if (argc != 3)
		return cli_usage_error("tags", "tags delete takes one TAG");
	if (cli_open_store(&store, true) < 0)
		return CLI_FAILED;
	ret = store_tag_delete(store, argv[2], &err);
	store_close(store);
	return ret < 0 ? cli_error("%s", err.message) : CLI_OK;
}

int cmd_tags(int argc, char **argv)
{
	if (cli_wants_help("tags", argc, argv))
		return CLI_OK;
	if (argc < 2 || !strcmp(argv[1], "list")) {
		if (argc > 2)
			return cli_usage_error("tags", "tags list takes no arguments");
		return tags_list();
	}
	if (!strcmp(argv[1], "add"))
		return tags_add(argc, argv);
	if (!strcmp(argv[1], "delete") || !strcmp(argv[1], "rm"))
		return tags_delete(argc, argv);
	return cli_usage_error("tags", "unknown subcommand '%s'", argv[1]);
}
