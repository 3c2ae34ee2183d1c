/*
 * cmd_run.c - `dstack run`, `dstack ps` and `dstack logs`: runs of the
 * current repository's workflows, executed in this process.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

/*
 * run -d: the detached child's stderr is a pipe to its parent until the
 * run exists; then the run's name goes down the pipe and the child lets
 * go of the terminal's descendants entirely.
 */
static void run_created(void *ctx, const struct store_run *run)
{
	int *fd = ctx, null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	struct strbuf line = STRBUF_INIT;

	strbuf_addf(&line, "%s\n", run->name);
	fs_write_all(*fd, line.buf, line.len);
	strbuf_release(&line);
	if (null >= 0) {
		dup2(null, STDERR_FILENO);
		close(null);
	}
	close(*fd);
	*fd = -1;
}

/*
 * Forks the process that will run the workflow, detached from the
 * terminal; returns in the child (0) or in the parent once the child
 * has the run's name (printed) or an error (1).
 */
static int run_detach(int *report_fd, bool *child)
{
	char buf[4096], *line, *save = NULL;
	bool named = false;
	size_t len = 0;
	int fds[2];
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return cli_error("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		return cli_error("fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		close(fds[0]);
		setsid();
		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			close(null);
		}
		dup2(fds[1], STDERR_FILENO);
		*report_fd = fds[1];
		*child = true;
		return 0;
	}
	close(fds[1]);
	for (;;) {
		ssize_t n = read(fds[0], buf + len, sizeof(buf) - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || (len += (size_t)n) == sizeof(buf) - 1)
			break;
	}
	close(fds[0]);
	buf[len] = '\0';
	/* "dstack: ..." lines are the child's errors and warnings; the rest, the name. */
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "dstack: ", 8)) {
			fprintf(stderr, "%s\n", line);
		} else {
			printf("%s\n", line);
			named = true;
		}
	}
	return named ? CLI_OK : CLI_FAILED;
}

int cmd_run(int argc, char **argv)
{
	struct runner_request request = { .output = run_output, .warn = cli_warn };
	const char *tag = NULL;
	bool detach = false, child = false;
	int report_fd = -1;
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
		else if (!strcmp(argv[i], "-d") || !strcmp(argv[i], "--detach"))
			detach = true;
		else
			return cli_usage_error("run", "unknown option '%s'", argv[i]);
	}
	if (i >= argc)
		return cli_usage_error("run", "missing WORKFLOW");
	if (tag && store_tag_name_check(tag, &err) < 0)
		return cli_usage_error("run", "%s", err.message);
	if (!getcwd(cwd, sizeof(cwd)))
		return cli_error("cannot find the current directory: %s", strerror(errno));
	/* A reader that goes away (| head) must not kill the run with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	/* Fork before the store is open: a SQLite handle must not cross fork. */
	if (detach) {
		ret = run_detach(&report_fd, &child);
		if (!child)
			return ret;
		request.output = NULL;
		request.created = run_created;
		request.created_ctx = &report_fd;
	}
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
	if (report_fd >= 0)
		close(report_fd);
	if (ret < 0)
		return cli_error("%s", err.message);
	/* Detached, the run's end is for ps and logs to tell. */
	if (child)
		return strcmp(run.status, "done") ? CLI_FAILED : CLI_OK;
	if (strcmp(run.status, "done"))
		return cli_error("run %s %s", run.name, run.status);
	return CLI_OK;
}

static int stop_one(struct store *store, const char *name, bool abort, bool quiet_if_ended)
{
	struct store_run run;
	struct error err = { 0 };
	int ret = runner_stop(store, name, abort, &run, &err);

	if (ret == -EALREADY && quiet_if_ended)
		return CLI_OK;
	return ret < 0 ? cli_error("%s", err.message) : CLI_OK;
}

/* Names of the current repository's runs (only the live ones if asked). */
struct run_names {
	char (*names)[64];
	size_t count;
	bool live_only;
};

static int run_name_add(void *ctx, const struct store_run *run)
{
	struct run_names *list = ctx;

	if (!list->live_only || !run->finished) {
		list->names = xrealloc(list->names, (list->count + 1) * sizeof(*list->names));
		snprintf(list->names[list->count++], 64, "%s", run->name);
	}
	return 0;
}

static int repo_runs(struct store *store, struct run_names *list, struct error *err)
{
	struct strbuf repo = STRBUF_INIT;
	char cwd[4096];
	int ret;

	if (!getcwd(cwd, sizeof(cwd)))
		return error_errno(err, -errno, "cannot find the current directory");
	ret = runner_repo_id(cwd, &repo, err);
	if (ret == 0)
		ret = store_run_list(store, repo.buf, run_name_add, list, err);
	strbuf_release(&repo);
	return ret;
}

int cmd_stop(int argc, char **argv)
{
	struct run_names live = { .live_only = true };
	struct store *store;
	struct error err = { 0 };
	const char *name = NULL;
	bool abort = false, all = false;
	size_t i;
	int n, ret = CLI_OK;

	if (cli_wants_help("stop", argc, argv))
		return CLI_OK;
	for (n = 1; n < argc; n++) {
		if (!strcmp(argv[n], "-x") || !strcmp(argv[n], "--abort"))
			abort = true;
		else if (!strcmp(argv[n], "-a") || !strcmp(argv[n], "--all"))
			all = true;
		else if (argv[n][0] != '-' && !name)
			name = argv[n];
		else
			return cli_usage_error("stop", "unexpected '%s'", argv[n]);
	}
	if (!name == !all)
		return cli_usage_error("stop", "give one RUN or -a");
	if (cli_open_store(&store, true) < 0)
		return CLI_FAILED;
	if (name) {
		ret = stop_one(store, name, abort, false);
		store_close(store);
		return ret;
	}
	/* -a: the current repository's live runs. */
	if (repo_runs(store, &live, &err) < 0)
		ret = cli_error("%s", err.message);
	for (i = 0; i < live.count; i++)
		if (stop_one(store, live.names[i], abort, true) != CLI_OK)
			ret = CLI_FAILED;
	free(live.names);
	store_close(store);
	return ret;
}

int cmd_rm(int argc, char **argv)
{
	struct run_names list = { 0 };
	struct store *store;
	struct error err = { 0 };
	bool all = argc == 2 && (!strcmp(argv[1], "-a") || !strcmp(argv[1], "--all"));
	size_t i;
	int ret = CLI_OK;

	if (cli_wants_help("rm", argc, argv))
		return CLI_OK;
	if (argc != 2 || (!all && argv[1][0] == '-'))
		return cli_usage_error("rm", "rm takes one RUN or -a");
	if (cli_open_store(&store, true) < 0)
		return CLI_FAILED;
	if (!all) {
		ret = store_run_remove(store, argv[1], &err) < 0 ? cli_error("%s", err.message)
								 : CLI_OK;
		store_close(store);
		return ret;
	}
	/* -a: every run of the repository; the refused ones, a line each. */
	if (repo_runs(store, &list, &err) < 0)
		ret = cli_error("%s", err.message);
	for (i = 0; i < list.count; i++) {
		error_clear(&err);
		if (store_run_remove(store, list.names[i], &err) < 0)
			ret = cli_error("%s", err.message);
	}
	free(list.names);
	store_close(store);
	return ret;
}

static const char init_template[] =
	"# Workflows of this repository: `dstack run NAME [ARGS...]` runs one.\n"
	"# Every key is described in dstack's docs/guide.md.\n"
	"workflows:\n"
	"  - name: hello\n"
	"    help: Says hello and leaves a file behind.\n"
	"    provider: bash\n"
	"    commands:\n"
	"      - echo \"Hello from $RUN_NAME\" ${{ run.args }}\n"
	"      - echo hello > output/hello.txt\n"
	"    artifacts:\n"
	"      - output\n"
	"\n"
	"  # - name: train\n"
	"  #   provider: python\n"
	"  #   file: train.py\n"
	"  #   requirements: requirements.txt\n"
	"  #   deps:\n"
	"  #     - workflow: hello\n"
	"  #   artifacts:\n"
	"  #     - model\n";

int cmd_init(int argc, char **argv)
{
	struct strbuf root = STRBUF_INIT, path = STRBUF_INIT;
	struct error err = { 0 };
	char cwd[4096];
	int fd, ret;

	if (cli_wants_help("init", argc, argv))
		return CLI_OK;
	if (argc != 1)
		return cli_usage_error("init", "init takes no arguments");
	if (!getcwd(cwd, sizeof(cwd)))
		return cli_error("cannot find the current directory: %s", strerror(errno));
	ret = runner_repo_root(cwd, &root, &err);
	if (ret == 0) {
		strbuf_addf(&path, "%s/.dstack", root.buf);
		ret = fs_mkdir_p(path.buf, 0755);
		strbuf_addstr(&path, "/workflows.yaml");
		if (ret < 0)
			error_errno(&err, ret, "%s", path.buf);
	}
	if (ret == 0) {
		fd = open(path.buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			ret = error_errno(&err, -errno, "%s", path.buf);
		else if ((ret = fs_write_all(fd, init_template, strlen(init_template))) < 0)
			error_errno(&err, ret, "%s", path.buf);
		if (fd >= 0)
			close(fd);
	}
	if (ret == 0)
		printf("wrote %s\n", path.buf);
	strbuf_release(&root);
	strbuf_release(&path);
	return ret < 0 ? cli_error("%s", err.message) : CLI_OK;
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
	/* A run whose runner died shows failed, not running forever. */
	runner_reap_orphans(store, &ignored);
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
	struct timespec pause = { 0, 200 * 1000000 };
	struct store *store;
	struct store_run run;
	struct error err = { 0 };
	const char *name = NULL;
	bool follow = false;
	int64_t after = 0;
	int i, ret;

	if (cli_wants_help("logs", argc, argv))
		return CLI_OK;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--follow"))
			follow = true;
		else if (argv[i][0] != '-' && !name)
			name = argv[i];
		else
			return cli_usage_error("logs", "unexpected '%s'", argv[i]);
	}
	if (!name)
		return cli_usage_error("logs", "logs takes one RUN");
	if (cli_open_store(&store, false) < 0)
		return CLI_FAILED;
	ret = store_run_find(store, name, &run, &err);
	/* -f: what is there, then what comes, until the run has ended. */
	while (ret == 0) {
		bool ended = run.finished != 0;

		ret = store_run_logs(store, run.id, &after, logs_row, NULL, &err);
		fflush(stdout);
		if (ret < 0 || !follow || ended)
			break;
		nanosleep(&pause, NULL);
		runner_reap_orphans(store, &err);
		error_clear(&err);
		ret = store_run_find(store, name, &run, &err);
	}
	store_close(store);
	if (ret == -EIO && !err.code)
		return cli_error("cannot write the logs: %s", strerror(EIO));
	return ret < 0 ? cli_error("%s", err.message) : CLI_OK;
}
