/*
 * cmd_artifacts.c - `dstack artifacts list|download`.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

struct list_row {
	char *artifact, *path, *size;
	int job;
};

struct list_ctx {
	struct list_row *rows;
	size_t count;
};

static int list_entry(void *arg, const struct store_entry *entry)
{
	struct list_ctx *ctx = arg;
	struct list_row *row;
	struct strbuf size = STRBUF_INIT;
	char text[32];

	if (S_ISDIR(entry->mode))
		return 0;
	if (S_ISLNK(entry->mode)) {
		strbuf_addf(&size, "-> %s", entry->target ? entry->target : "");
	} else {
		size_format(entry->size, text);
		strbuf_addstr(&size, text);
	}
	ctx->rows = xrealloc(ctx->rows, (ctx->count + 1) * sizeof(*ctx->rows));
	row = &ctx->rows[ctx->count++];
	row->artifact = xstrdup(entry->artifact);
	row->path = xstrdup(entry->path);
	row->size = size.buf ? size.buf : xstrdup("");
	row->job = entry->job;
	return 0;
}

static int list_row_compare(const void *a, const void *b)
{
	const struct list_row *x = a, *y = b;
	int c = strcmp(x->artifact, y->artifact);

	if (!c)
		c = strcmp(x->path, y->path);
	return c ? c : x->job - y->job;
}

static int artifacts_list(const char *spec)
{
	struct list_ctx ctx = { 0 };
	struct cli_table table;
	struct store *store;
	struct store_run run;
	struct error err = { 0 };
	size_t i;
	int ret;

	if (cli_open_store(&store, false) < 0)
		return CLI_FAILED;
	ret = store_run_find(store, spec, &run, &err);
	if (ret == 0)
		ret = store_run_entries(store, run.id, list_entry, &ctx, &err);
	store_close(store);
	if (ret < 0)
		return cli_error("%s", err.message);
	if (ctx.count)
		qsort(ctx.rows, ctx.count, sizeof(*ctx.rows), list_row_compare);
	cli_table_init(&table, 3, "ARTIFACT", "FILE", "SIZE");
	for (i = 0; i < ctx.count; i++) {
		struct list_row *row = &ctx.rows[i];
		bool shadowed = i + 1 < ctx.count &&
				!strcmp(row->artifact, ctx.rows[i + 1].artifact) &&
				!strcmp(row->path, ctx.rows[i + 1].path);

		/* Several jobs wrote this path: the highest job's file shows. */
		if (!shadowed)
			cli_table_add(&table, row->artifact, row->path, row->size);
		free(row->artifact);
		free(row->path);
		free(row->size);
	}
	free(ctx.rows);
	cli_table_print(&table);
	return CLI_OK;
}

static int artifacts_download(const char *spec, const char *out)
{
	struct cli_progress progress;
	struct store *store;
	struct store_run run;
	struct error err = { 0 };
	int ret;

	if (cli_open_store(&store, false) < 0)
		return CLI_FAILED;
	cli_progress_init(&progress, "download");
	ret = store_run_find(store, spec, &run, &err);
	if (ret == 0)
		ret = store_run_download(store, run.id, out, cli_progress_update, &progress, &err);
	cli_progress_finish(&progress);
	store_close(store);
	return ret < 0 ? cli_error("%s", err.message) : CLI_OK;
}

int cmd_artifacts(int argc, char **argv)
{
	const char *out = ".";
	int opt;

	if (cli_wants_help("artifacts", argc, argv))
		return CLI_OK;
	if (argc < 2)
		return cli_usage_error("artifacts", "missing subcommand");
	if (!strcmp(argv[1], "list")) {
		if (argc != 3)
			return cli_usage_error("artifacts", "artifacts list takes one RUN or :TAG");
		return artifacts_list(argv[2]);
	}
	if (strcmp(argv[1], "download"))
		return cli_usage_error("artifacts", "unknown subcommand '%s'", argv[1]);
	optind = 2;
	opterr = 0;
	while ((opt = getopt(argc, argv, "+o:")) != -1) {
		if (opt == 'o')
			out = optarg;
		else
			return cli_usage_error("artifacts", "unknown option '%s'", argv[optind - 1]);
	}
	if (optind + 1 != argc) {
		/* Allow the option after the run, as users type it. */
		if (optind + 3 == argc && !strcmp(argv[optind + 1], "-o")) {
			out = argv[optind + 2];
		} else {
			return cli_usage_error("artifacts", "artifacts download takes one RUN or :TAG");
		}
	}
	return artifacts_download(argv[optind], out);
}
