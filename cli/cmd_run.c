/*
 * cmd_run.c - `dstack run`, `dstack ps` and `dstack logs`: runs of the
 * current repository's workflows, executed in this process.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "runner/runner.h"

static int run_output(void *ctx, const void *data, size_t len)
{
	(void)ctx;
	/* A closed stdout must not stop the job: its logs are kept anyway. */
	if (fwrite(data, 1, len, stdout) == len)
		fflush(stdout);
	return 0;
}

int cmd_run(int argc, char **argv)
{
	struct runner_request request = { .output = run_output, .warn = cli_warn };
	const char *tag = NULL;
	struct store *store;
	struct store_run run;
	struct error err = { 0 };
	char cwd[4096];
	int i = 1, ret;

	/* Options come before WORKFLOW; everything after it is its arguments. */
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			cli_print_help(cli_command_find("run"));
			return CLI_OK;
		}
		if ((!strcmp(argv[i], "-t") || !strcmp(argv[i], "--tag")) && i + 1 < argc)
			tag = argv[++i];
		else
			return cli_usage_error("run", "unknown option '%s'", argv[i]);
	}
	if (i >= argc)
		return cli_usage_error("run", "missing WORKFLOW");
	if (tag && store_tag_name_check(tag, &err) < 0)
		return cli_usage_error("run", "%s", err.message);
	if (!getcwd(cwd, sizeof(cwd)))
		return cli_error("cannot find the current directory: %s", strerror(errno));
	if (cli_open_store(&store, true) < 0)
		return CLI_FAILED;
	request.cwd = cwd;
	request.workflow = argv[i];
	request.args = argv + i + 1;
	request.arg_count = (size_t)(argc - i - 1);
	ret = runner_run(store, &request, &run, &err);
	/* -t moves the tag to this run, as dstack did. */
	if (ret == 0 && tag)
		ret = store_tag_move(store, tag, run.name, &err);
	store_close(store);
	if (ret < 0)
		return cli_error("%s", err.message);
	if (strcmp(run.status, "done"))
		return cli_error("run %s %s", run.name, run.status);
	return CLI_OK;
}

struct ps_ctx {
	struct cli_table table;
	bool all;
	bool shown_finished;
};

static int ps_row(void *arg, const struct store_run *run)
{
	struct ps_ctx *ctx = arg;
	char when[32];

	/* Without -a: the live runs, or the newest finished one if none is live. */
	if (!ctx->all && run->finished) {
		if (ctx->shown_finished || ctx->table.rows > 1)
			return 0;
		ctx->shown_finished = true;
	}
	time_format_iso(run->submitted, when);
	cli_table_add(&ctx->table, run->name, run->workflow[0] ? run->workflow : "-",
		      run->status, when, run->tag[0] ? run->tag : "-",
		      run->artifacts[0] ? run->artifacts : "-");
	return 0;
}

static int ps_job_row(void *ctx, const struct store_job *job)
{
	char n[16], code[16];

	snprintf(n, sizeof(n), "%d", job->n);
	snprintf(code, sizeof(code), "%d", job->exit_code);
	cli_table_add(ctx, n, job->status, job->exit_code < 0 ? "-" : code);
	return 0;
}

/* `ps RUN`: the run, its jobs, and where it came from. */
static int ps_run(const char *name)
{
	struct ps_ctx ctx = { .all = true };
	struct cli_table jobs;
	struct store *store;
	struct store_run run;
	struct error err = { 0 };
	int ret;

	if (cli_open_store(&store, false) < 0)
		return CLI_FAILED;
	ret = store_run_find(store, name, &run, &err);
	if (ret < 0) {
		store_close(store);
		return cli_error("%s", err.message);
	}
	cli_table_init(&ctx.table, 6, "RUN", "WORKFLOW", "STATUS", "SUBMITTED", "TAG", "ARTIFACTS");
	ps_row(&ctx, &run);
	cli_table_init(&jobs, 3, "JOB", "STATUS", "EXIT");
	ret = store_run_jobs(store, run.id, ps_job_row, &jobs, &err);
	store_close(store);
	cli_table_print(&ctx.table);
	printf("\n");
	cli_table_print(&jobs);
	printf("\nprovider: %s\nargs: %s\nrepo: %s\ncommit: %s\n", run.provider, run.args,
	       run.repo, run.commit);
	return ret < 0 ? cli_error("%s", err.message) : CLI_OK;
}

int cmd_ps(int argc, char **argv)
{
	struct ps_ctx ctx = { 0 };
	struct strbuf repo = STRBUF_INIT;
	struct store *store;
	struct error err = { 0 }, ignored = { 0 };
	const char *name = NULL;
	char cwd[4096];
	int i, ret;

	if (cli_wants_help("ps", argc, argv))
		return CLI_OK;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-a") || !strcmp(argv[i], "--all"))
			ctx.all = true;
		else if (argv[i][0] != '-' && !name)
			name = argv[i];
		else
			return cli_usage_error("ps", "unexpected '%s'", argv[i]);
	}
	if (name)
		return ps_run(name);
	/* In a repository, its runs; elsewhere, every run of the store. */
	if (getcwd(cwd, sizeof(cwd)))
		runner_repo_id(cwd, &repo, &ignored);
	if (cli_open_store(&store, false) < 0) {
		strbuf_release(&repo);
		return CLI_FAILED;
	}
	cli_table_init(&ctx.table, 6, "RUN", "WORKFLOW", "STATUS", "SUBMITTED", "TAG", "ARTIFACTS");
	ret = store_run_list(store, repo.len ? repo.buf : NULL, ps_row, &ctx, &err);
	store_close(store);
	strbuf_release(&repo);
	cli_table_print(&ctx.table);
	return ret < 0 ? cli_error("%s", err.message) : CLI_OK;
}

static int logs_row(void *ctx, int job, const void *data, size_t len)
{
	(void)ctx;
	(void)job;
	return fwrite(data, 1, len, stdout) == len ? 0 : -EIO;
}

int cmd_logs(int argc, char **argv)
{
	struct store *store;
	struct store_run run;
	struct error err = { 0 };
	int64_t after = 0;
	int ret;

	if (cli_wants_help("logs", argc, argv))
		return CLI_OK;
	if (argc != 2 || argv[1][0] == '-')
		return cli_usage_error("logs", "logs takes one RUN");
	if (cli_open_store(&store, false) < 0)
		return CLI_FAILED;
	ret = store_run_find(store, argv[1], &run, &err);
	if (ret == 0)
		ret = store_run_logs(store, run.id, &after, logs_row, NULL, &err);
	store_close(store);
	if (ret == -EIO && !err.code)
		return cli_error("cannot write the logs: %s", strerror(EIO));
	return ret < 0 ? cli_error("%s", err.message) : CLI_OK;
}
