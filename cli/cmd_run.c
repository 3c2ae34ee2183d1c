/*
 * cmd_run.c - `dstack run`, `dstack ps` and `dstack logs`: runs of the
 * current repository's workflows, executed in this process or, with -d
 * and on a terminal, in a child this process can let go of.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "runner/runner.h"

static int run_output(void *ctx, int fd, const void *data, size_t len)
{
	FILE *stream = fd == STDERR_FILENO ? stderr : stdout;

	(void)ctx;
	/* A closed stdout must not stop the job: its logs are kept anyway. */
	if (fwrite(data, 1, len, stream) == len)
		fflush(stream);
	return 0;
}

/*
 * The process that runs the workflow when the one the user started must
 * be able to let go of it (run -d; Ctrl-C on a terminal), as the latter
 * sees it: the read ends of pipes from the child's stdout (job output;
 * none with -d), its stderr (errors and warnings) and one that carries
 * the run's name once the run exists, then ends.
 */
enum { CHILD_OUT, CHILD_ERR, CHILD_NAME, CHILD_PIPES };

/* Output held while the question is shown, at most; then the run waits. */
#define RUN_HOLD_MAX (4 << 20)

struct run_child {
	pid_t pid;
	int fds[CHILD_PIPES];
	sigset_t mask;		/* this process's signal mask before the fork */
	char name[64];
	size_t name_len;
	bool asking;		/* "Stop the run?" is on the terminal */
	bool stopping;
	struct strbuf held[CHILD_ERR + 1];	/* stdout and stderr that came while asking */
};

/* The child's end of the name pipe; with -d its stderr goes quiet then. */
struct run_report {
	int fd;
	bool quiet;
};

static void run_created(void *ctx, const struct store_run *run)
{
	struct run_report *report = ctx;
	int null;

	fs_write_all(report->fd, run->name, strlen(run->name));
	/* Detached, nobody reads stderr once the run exists. */
	if (report->quiet) {
		null = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, STDERR_FILENO);
			close(null);
		}
	}
	close(report->fd);
	report->fd = -1;
}

/* Blocked in the follower but while it waits in ppoll, so that none is missed. */
#define RUN_SIGNALS 4
static const int run_signals[RUN_SIGNALS] = { SIGINT, SIGTERM, SIGHUP, SIGCHLD };

/*
 * Forks the process that will run the workflow, in a session of its own:
 * out of the terminal's foreground group, the terminal's Ctrl-C and
 * hangup do not reach it.  Its stdin is /dev/null, so that its jobs
 * cannot take the user's answers, and so is its stdout with -d.  Returns
 * 0 in both processes (c->pid is 0 in the child, and *report its end of
 * the name pipe) or CLI_FAILED.
 */
static int run_fork(struct run_child *c, bool detach, int *report)
{
	int pipes[CHILD_PIPES][2], i, null;
	sigset_t block;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < CHILD_PIPES; i++) {
		pipes[i][0] = pipes[i][1] = -1;
		if ((i != CHILD_OUT || !detach) && pipe2(pipes[i], O_CLOEXEC) < 0)
			return cli_error("pipe: %s", strerror(errno));
	}
	sigemptyset(&block);
	for (i = 0; i < RUN_SIGNALS; i++)
		sigaddset(&block, run_signals[i]);
	sigprocmask(SIG_BLOCK, &block, &c->mask);
	c->pid = fork();
	if (c->pid < 0)
		return cli_error("fork: %s", strerror(errno));
	/* The child keeps no read end: once the parent is gone, its writes fail, not block. */
	for (i = 0; i < CHILD_PIPES; i++) {
		if (pipes[i][0] >= 0)
			close(pipes[i][c->pid ? 1 : 0]);
		c->fds[i] = pipes[i][c->pid ? 0 : 1];
	}
	if (c->pid > 0)
		return 0;
	sigprocmask(SIG_SETMASK, &c->mask, NULL);
	setsid();
	null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		if (detach)
			dup2(null, STDOUT_FILENO);
		close(null);
	}
	if (!detach) {
		dup2(c->fds[CHILD_OUT], STDOUT_FILENO);
		close(c->fds[CHILD_OUT]);
	}
	dup2(c->fds[CHILD_ERR], STDERR_FILENO);
	close(c->fds[CHILD_ERR]);
	*report = c->fds[CHILD_NAME];
	return 0;
}

/* Reads what the child's pipe i has: relayed, held while asking, or the name. */
static ssize_t run_child_read(struct run_child *c, int i)
{
	char buf[65536];
	ssize_t n = read(c->fds[i], buf, sizeof(buf));
	size_t room = sizeof(c->name) - 1 - c->name_len;

	if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
		close(c->fds[i]);
		c->fds[i] = -1;
	} else if (n > 0 && i == CHILD_NAME) {
		memcpy(c->name + c->name_len, buf, (size_t)n < room ? (size_t)n : room);
		c->name_len += (size_t)n < room ? (size_t)n : room;
	} else if (n > 0 && c->asking) {
		strbuf_add(&c->held[i], buf, (size_t)n);
	} else if (n > 0) {
		/* A terminal gone (hung up) must not end the relay: the run's end still counts. */
		fs_write_all(i == CHILD_OUT ? STDOUT_FILENO : STDERR_FILENO, buf, (size_t)n);
	}
	return n;
}

/*
 * Waits for the child's pipes (and the terminal, while asking) or a
 * signal, and reads what came; returns whether an answer can be read.
 */
static bool run_child_wait(struct run_child *c)
{
	struct pollfd pfd[CHILD_PIPES + 1];
	int i;

	for (i = 0; i < CHILD_PIPES; i++)
		pfd[i] = (struct pollfd){ .fd = c->fds[i], .events = POLLIN };
	if (c->held[CHILD_OUT].len + c->held[CHILD_ERR].len > RUN_HOLD_MAX)
		pfd[CHILD_OUT].fd = pfd[CHILD_ERR].fd = -1;
	pfd[CHILD_PIPES] = (struct pollfd){ .fd = c->asking ? STDIN_FILENO : -1, .events = POLLIN };
	if (ppoll(pfd, CHILD_PIPES + 1, NULL, &c->mask) < 0)
		return false;
	for (i = 0; i < CHILD_PIPES; i++)
		if (pfd[i].revents)
			run_child_read(c, i);
	return pfd[CHILD_PIPES].revents != 0;
}

/* Relays what the child's stdout and stderr hold now, without waiting for more. */
static void run_child_drain(struct run_child *c)
{
	int i;

	for (i = CHILD_OUT; i <= CHILD_ERR; i++) {
		if (c->fds[i] >= 0)
			fcntl(c->fds[i], F_SETFL, O_NONBLOCK);
		while (c->fds[i] >= 0 && run_child_read(c, i) > 0)
			;
	}
}

static void run_child_release(struct run_child *c)
{
	int i;

	for (i = 0; i < CHILD_PIPES; i++)
		if (c->fds[i] >= 0)
			close(c->fds[i]);
	for (i = CHILD_OUT; i <= CHILD_ERR; i++)
		strbuf_release(&c->held[i]);
	sigprocmask(SIG_SETMASK, &c->mask, NULL);
}

/* -d: relays the child's errors until the run exists (or cannot), and prints its name. */
static int run_detached(struct run_child *c)
{
	while (c->fds[CHILD_NAME] >= 0)
		run_child_wait(c);
	run_child_drain(c);
	run_child_release(c);
	if (!c->name_len)
		return CLI_FAILED;
	printf("%s\n", c->name);
	return CLI_OK;
}

static volatile sig_atomic_t run_interrupted, run_stop_asked;

static void run_on_signal(int sig)
{
	/* SIGCHLD only wakes ppoll up: the child has ended. */
	if (sig == SIGINT)
		run_interrupted = 1;
	else if (sig != SIGCHLD)
		run_stop_asked = 1;
}

/* The question is gone: what waited for its answer goes out. */
static void run_child_resume(struct run_child *c)
{
	int i;

	c->asking = false;
	for (i = CHILD_OUT; i <= CHILD_ERR; i++) {
		fs_write_all(i == CHILD_OUT ? STDOUT_FILENO : STDERR_FILENO, c->held[i].buf,
			     c->held[i].len);
		strbuf_reset(&c->held[i]);
	}
}

/* Stops the run as `dstack stop` would: SIGTERM to its runner, the child. */
static void run_child_stop(struct run_child *c)
{
	kill(c->pid, SIGTERM);
	c->stopping = true;
	if (c->asking) {
		fputc('\n', stderr);
		run_child_resume(c);
	}
}

/*
 * Follows the run executing in the child: relays its output and errors,
 * and exits as the child does.  Ctrl-C asks whether to stop the run: "y"
 * stops it; anything else lets go of it, and it goes on to its end alone.
 * SIGTERM and SIGHUP stop it, as they do a run executing in this process.
 */
static int run_follow(struct run_child *c)
{
	struct sigaction action = { .sa_handler = run_on_signal };
	char answer[256];
	int status = 0, wait_errno, i;
	ssize_t n;
	pid_t ended;

	sigemptyset(&action.sa_mask);
	for (i = 0; i < RUN_SIGNALS; i++)
		sigaction(run_signals[i], &action, NULL);
	while (!(ended = waitpid(c->pid, &status, WNOHANG))) {
		if (run_stop_asked) {
			run_stop_asked = 0;
			run_child_stop(c);
		}
		/*
		 * Before the run exists there is nothing to let go of; a second
		 * Ctrl-C at the question insists, and one while stopping repeats
		 * the stop: all of these stop the run, as Ctrl-C does without a
		 * terminal.
		 */
		if (run_interrupted) {
			run_interrupted = 0;
			if (c->asking || c->stopping || c->fds[CHILD_NAME] >= 0 || !c->name_len) {
				run_child_stop(c);
			} else {
				fprintf(stderr, "\nStop the run %s? [y/N] ", c->name);
				c->asking = true;
			}
		}
		if (!run_child_wait(c))
			continue;
		n = read(STDIN_FILENO, answer, sizeof(answer));
		if (n < 0 && errno == EINTR)
			continue;
		/* A terminal that cannot answer has hung up: stop, as SIGHUP does. */
		if (n < 0 || answer[0] == 'y' || answer[0] == 'Y') {
			run_child_resume(c);
			run_child_stop(c);
			continue;
		}
		/* What it printed while asked is in its logs, which the user is pointed to. */
		fprintf(stderr, "run %s goes on; `dstack logs -f %s` follows it\n", c->name, c->name);
		run_child_release(c);
		return CLI_OK;
	}
	wait_errno = errno;
	/* It ended before an answer came. */
	if (c->asking) {
		fputc('\n', stderr);
		run_child_resume(c);
	}
	run_child_drain(c);
	run_child_release(c);
	if (ended < 0)
		return cli_error("waitpid: %s", strerror(wait_errno));
	if (WIFSIGNALED(status))
		return cli_error("the run's process (pid %d) was killed by signal %d", (int)c->pid,
				 WTERMSIG(status));
	return WEXITSTATUS(status);
}

static int logs_print(struct store *store, const char *name, bool follow,
		      struct store_run *run, struct error *err);

/*
 * Hands the run to the daemon serving this repository's tree, through its
 * ctl, then follows it (-d: prints its name).  Killing this process does
 * not stop the run: the daemon runs it.
 */
static int run_handoff(struct store *store, const struct store_daemon *daemon,
		       const char *tag, const struct runner_request *request, bool detach,
		       char **words, int count)
{
	struct strbuf line = STRBUF_INIT, answer = STRBUF_INIT, ctl = STRBUF_INIT;
	struct store_run run;
	struct error err = { 0 };
	char buf[4096], *end;
	ssize_t n;
	int fd, write_errno = 0, ret;

	if (tag)
		strbuf_addf(&line, "-t %s ", tag);
	if (request->backend) {
		strbuf_addstr(&line, "--backend ");
		strbuf_add_shell_line_word(&line, request->backend);
		strbuf_addstr(&line, " ");
	}
	if (request->cache != RUNNER_CACHE_WORKFLOW)
		strbuf_addstr(&line, request->cache == RUNNER_CACHE_ON ? "--cache " : "--no-cache ");
	if (request->rerun) {
		strbuf_addstr(&line, "--rerun ");
		strbuf_add_shell_line_word(&line, request->rerun);
	}
	/* One line, whatever the words hold: a newline in one is written as $'\n'. */
	strbuf_add_shell_line_words(&line, words, (size_t)count);
	strbuf_addstr(&line, "\n");
	strbuf_addf(&ctl, "%s/ctl", daemon->mountpoint);
	fd = open(ctl.buf, O_RDWR | O_CLOEXEC);
	if (fd < 0 || write(fd, line.buf, line.len) < 0)
		write_errno = errno;
	while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
		strbuf_add(&answer, buf, (size_t)n);
	if (fd >= 0)
		close(fd);
	end = answer.buf ? strchr(answer.buf, '\n') : NULL;
	if (end)
		*end = '\0';
	if (!answer.buf || !strncmp(answer.buf, "error: ", 7) || write_errno)
		ret = cli_error("%s", answer.buf && !strncmp(answer.buf, "error: ", 7) ?
				answer.buf + 7 : write_errno ? strerror(write_errno) :
				"the daemon did not answer");
	else if (detach)
		ret = printf("%s\n", answer.buf) < 0 ? CLI_FAILED : CLI_OK;
	else if (logs_print(store, answer.buf, true, &run, &err) < 0)
		ret = cli_error("%s", err.message);
	else
		ret = strcmp(run.status, "done") ? cli_error("run %s %s", run.name, run.status)
						 : CLI_OK;
	strbuf_release(&line);
	strbuf_release(&answer);
	strbuf_release(&ctl);
	return ret;
}

/* A daemon serving this repository's tree, if any (cheap when none is). */
static int run_daemon(struct store *store, const char *cwd, struct store_daemon *daemon)
{
	struct strbuf repo = STRBUF_INIT;
	struct error err = { 0 };
	int ret = runner_daemon_find(store, NULL, daemon, &err);

	if (ret == 0)
		ret = runner_repo_id(cwd, &repo, &err);
	if (ret == 0)
		ret = runner_daemon_find(store, repo.buf, daemon, &err);
	strbuf_release(&repo);
	return ret;
}

int cmd_run(int argc, char **argv)
{
	struct runner_request request = { .output = run_output, .warn = cli_warn,
					  .stop_on_signals = true };
	struct run_report report = { .fd = -1 };
	struct run_child child;
	struct store_daemon daemon;
	const char *tag = NULL;
	bool detach = false;
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
		else if (!strcmp(argv[i], "--backend") && i + 1 < argc)
			request.backend = argv[++i];
		else if (!strcmp(argv[i], "--rerun") && i + 1 < argc)
			request.rerun = argv[++i];
		else if (!strcmp(argv[i], "--cache"))
			request.cache = RUNNER_CACHE_ON;
		else if (!strcmp(argv[i], "--no-cache"))
			request.cache = RUNNER_CACHE_OFF;
		else
			return cli_usage_error("run", "unknown option '%s'", argv[i]);
	}
	if (request.rerun && i < argc)
		return cli_usage_error("run", "--rerun runs RUN's workflow and args: unexpected '%s'",
				       argv[i]);
	if (i >= argc && !request.rerun)
		return cli_usage_error("run", "missing WORKFLOW");
	if (tag && store_tag_name_check(tag, &err) < 0)
		return cli_usage_error("run", "%s", err.message);
	if (!getcwd(cwd, sizeof(cwd)))
		return cli_error("cannot find the current directory: %s", strerror(errno));
	/* A reader that goes away (| head, or a follower let go of it) must not kill the run. */
	signal(SIGPIPE, SIG_IGN);
	if (cli_open_store(&store, true) < 0)
		return CLI_FAILED;
	if (run_daemon(store, cwd, &daemon) == 0) {
		ret = run_handoff(store, &daemon, tag, &request, detach, argv + i, argc - i);
		store_close(store);
		return ret;
	}
	/*
	 * With -d, and on a terminal (where Ctrl-C may let go of the run),
	 * the run executes in a child; otherwise here, with no fork to pay
	 * for.  Fork before the store is open: a SQLite handle must not
	 * cross fork.
	 */
	if (detach || (isatty(STDIN_FILENO) && isatty(STDERR_FILENO))) {
		store_close(store);
		if (run_fork(&child, detach, &report.fd) < 0)
			return CLI_FAILED;
		if (child.pid > 0)
			return detach ? run_detached(&child) : run_follow(&child);
		report.quiet = detach;
		request.created = run_created;
		request.created_ctx = &report;
		if (detach)
			request.output = NULL;
		if (cli_open_store(&store, true) < 0)
			return CLI_FAILED;
	}
	request.cwd = cwd;
	if (!request.rerun) {
		request.workflow = argv[i];
		request.args = argv + i + 1;
		request.arg_count = (size_t)(argc - i - 1);
	}
	ret = runner_run(store, &request, &run, &err);
	/* -t moves the tag to this run, as dstack did. */
	if (ret == 0 && tag)
		ret = store_tag_move(store, tag, run.name, &err);
	store_close(store);
	if (report.fd >= 0)
		close(report.fd);
	if (ret < 0)
		return cli_error("%s", err.message);
	/* Detached, the run's end is for ps and logs to tell. */
	if (report.quiet)
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

/* A run's status word, with how many of its jobs the cache served. */
static void ps_status(const struct store_run *run, char out[64])
{
	if (!run->jobs_cached)
		snprintf(out, 64, "%s", run->status);
	else if (run->jobs_cached == run->job_count)
		snprintf(out, 64, "%s (cached)", run->status);
	else
		snprintf(out, 64, "%s (%d/%d cached)", run->status, run->jobs_cached,
			 run->job_count);
}

static int ps_row(void *arg, const struct store_run *run)
{
	struct ps_ctx *ctx = arg;
	char when[32], status[64];

	/* Without -a: the live runs, or the newest finished one if none is live. */
	if (!ctx->all && run->finished) {
		if (ctx->shown_finished || ctx->table.rows > 1)
			return 0;
		ctx->shown_finished = true;
	}
	time_format_iso(run->submitted, when);
	ps_status(run, status);
	cli_table_add(&ctx->table, run->name, run->workflow[0] ? run->workflow : "-",
		      status, when, run->tag[0] ? run->tag : "-",
		      run->artifacts[0] ? run->artifacts : "-");
	return 0;
}

static int ps_job_row(void *ctx, const struct store_job *job)
{
	char n[16], code[16], status[128];

	snprintf(n, sizeof(n), "%d", job->n);
	snprintf(code, sizeof(code), "%d", job->exit_code);
	snprintf(status, sizeof(status), "%s%s%s%s", job->status,
		 *job->cached_from ? " (cached from " : "", job->cached_from,
		 *job->cached_from ? ")" : "");
	cli_table_add(ctx, n, status, job->exit_code < 0 ? "-" : code,
		      *job->reason ? job->reason : "-");
	return 0;
}

/* `ps RUN`: the run, its jobs, and where it came from. */
static int ps_run(const char *name)
{
	struct ps_ctx ctx = { .all = true };
	struct strbuf submodules = STRBUF_INIT;
	char *line, *end;
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
	cli_table_init(&jobs, 4, "JOB", "STATUS", "EXIT", "REASON");
	ret = store_run_jobs(store, run.id, ps_job_row, &jobs, &err);
	if (ret == 0)
		ret = store_run_submodules(store, run.id, &submodules, &err);
	store_close(store);
	cli_table_print(&ctx.table);
	printf("\n");
	cli_table_print(&jobs);
	printf("\nprovider: %s", run.provider);
	if (*run.provider_repo)
		printf(" (%s at %s)", run.provider_repo, run.provider_commit);
	printf("\nargs: %s\nrepo: %s\nbranch: %s\ncommit: %s\n", run.args, run.repo, run.branch,
	       run.commit);
	/* Each "PATH COMMIT" line: recorded, not in the snapshot. */
	for (line = submodules.buf; line && *line; line = *end ? end + 1 : end) {
		end = strchrnul(line, '\n');
		printf("submodule: %.*s\n", (int)(end - line), line);
	}
	strbuf_release(&submodules);
	if (*run.reason)
		printf("reason: %s\n", run.reason);
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

/* What a job wrote to stderr, where it was kept apart, goes to stderr. */
static int logs_row(void *ctx, int job, int fd, const void *data, size_t len)
{
	FILE *stream = fd == STDERR_FILENO ? stderr : stdout;

	(void)ctx;
	(void)job;
	if (fwrite(data, 1, len, stream) != len)
		return -EIO;
	/* In the order they were written, whichever two files they go to. */
	return fflush(stream) == 0 ? 0 : -EIO;
}

/* A run's logs; with follow, what comes too, until the run has ended. */
static int logs_print(struct store *store, const char *name, bool follow,
		      struct store_run *run, struct error *err)
{
	struct timespec pause = { 0, 200 * 1000000 };
	int64_t after = 0;
	int ret = store_run_find(store, name, run, err);

	while (ret == 0) {
		bool ended = run->finished != 0;

		ret = store_run_logs(store, run->id, &after, logs_row, NULL, err);
		fflush(stdout);
		if (ret < 0 || !follow || ended)
			break;
		nanosleep(&pause, NULL);
		runner_reap_orphans(store, err);
		error_clear(err);
		ret = store_run_find(store, name, run, err);
	}
	return ret;
}

int cmd_logs(int argc, char **argv)
{
	struct store *store;
	struct store_run run;
	struct error err = { 0 };
	const char *name = NULL;
	bool follow = false;
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
	ret = logs_print(store, name, follow, &run, &err);
	store_close(store);
	if (ret == -EIO && !err.code)
		return cli_error("cannot write the logs: %s", strerror(EIO));
	return ret < 0 ? cli_error("%s", err.message) : CLI_OK;
}

int cmd_job_exec(int argc, char **argv)
{
	struct error err = { 0 };
	int code;

	if (cli_wants_help("job-exec", argc, argv))
		return CLI_OK;
	if (argc != 2)
		return cli_usage_error("job-exec", "give the job's FOLDER");
	if (runner_job_exec(argv[1], &code, &err) < 0)
		return cli_error("%s", err.message);
	return code;
}
