/*
 * cmd_store.c - commands that look after the store as a whole: `gc` and
 * `fsck`.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int cmd_gc(int argc, char **argv)
{
	struct store_gc_stats stats;
	struct store *store;
	struct error err = { 0 };
	char freed[32];
	int ret;

	if (cli_wants_help("gc", argc, argv))
		return CLI_OK;
	if (argc != 1)
		return cli_usage_error("gc", "gc takes no arguments");
	if (cli_open_store(&store, true) < 0)
		return CLI_FAILED;
	ret = store_gc(store, &stats, &err);
	store_close(store);
	if (ret < 0)
		return cli_error("%s", err.message);
	size_format(stats.bytes_freed, freed);
	printf("removed %llu objects, %llu trees, %llu packs; rewrote %llu packs; freed %s\n",
	       (unsigned long long)stats.objects_removed,
	       (unsigned long long)stats.trees_removed,
	       (unsigned long long)stats.packs_removed,
	       (unsigned long long)stats.packs_rewritten, freed);
	return CLI_OK;
}

static void fsck_report(void *ctx, const char *line)
{
	(void)ctx;
	printf("%s\n", line);
}

int cmd_fsck(int argc, char **argv)
{
	struct store *store;
	struct error err = { 0 };
	uint64_t problems = 0;
	int ret;

	if (cli_wants_help("fsck", argc, argv))
		return CLI_OK;
	if (argc != 1)
		return cli_usage_error("fsck", "fsck takes no arguments");
	if (cli_open_store(&store, false) < 0)
		return CLI_FAILED;
	ret = store_fsck(store, fsck_report, NULL, &problems, &err);
	store_close(store);
	if (ret < 0)
		return cli_error("%s", err.message);
	if (problems)
		return cli_error("fsck: %llu problem%s found", (unsigned long long)problems,
				 problems == 1 ? "" : "s");
	return CLI_OK;
}
