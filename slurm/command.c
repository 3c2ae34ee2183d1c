/*
 * command.c - the cluster through Slurm's own commands on this host:
 * sbatch submits, squeue reads states (one call for every id), scancel
 * cancels.  Their input and output go through memory files, so nothing is
 * left in /tmp and no pipe can fill up.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slurm/internal.h"

extern char **environ;

/* The fd sbatch reads the job's environment from (--export-file=3). */
#define EXPORT_FD 3

static int memfd_with(const char *name, const struct strbuf *data, struct error *err)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0)
		return error_errno(err, -errno, "memfd_create");
	if (data && data->len && fs_write_all(fd, data->buf, data->len) < 0) {
		close(fd);
		return error_errno(err, -errno, "writing %s", name);
	}
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static int memfd_read(int fd, struct strbuf *out)
{
	struct stat st;
	size_t len;

	if (fstat(fd, &st) < 0)
		return -errno;
	len = (size_t)st.st_size;
	strbuf_grow(out, len);
	if (fs_pread_all(fd, out->buf + out->len, len, 0) < 0)
		return -errno;
	out->len += len;
	out->buf[out->len] = '\0';
	return 0;
}

/*
 * Runs argv (found on PATH) with input on its stdin and, when exported is
 * not NULL, that on EXPORT_FD; *status gets its exit status (128 + signal
 * when killed), out and errs what it wrote.  The command's environment is
 * ours without SBATCH_* variables: the settings alone choose its options.
 */
static int run_command(char *const *argv, const struct strbuf *input,
		       const struct strbuf *exported, struct strbuf *out, struct strbuf *errs,
		       int *status, struct error *err)
{
	int in_fd, out_fd = -1, err_fd = -1, export_fd = -1, wstatus, ret = 0;
	size_t count = 0, i;
	char **env;
	pid_t pid;

	for (i = 0; environ[i]; i++)
		count++;
	env = xcalloc(count + 1, sizeof(char *));
	for (i = 0, count = 0; environ[i]; i++)
		if (strncmp(environ[i], "SBATCH_", 7))
			env[count++] = environ[i];
	if ((in_fd = memfd_with("stdin", input, err)) < 0 ||
	    (out_fd = memfd_with("stdout", NULL, err)) < 0 ||
	    (err_fd = memfd_with("stderr", NULL, err)) < 0 ||
	    (exported && (export_fd = memfd_with("export", exported, err)) < 0)) {
		ret = err->code;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		ret = error_errno(err, -errno, "cannot run %s", argv[0]);
		goto out;
	}
	if (pid == 0) {
		if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
			_exit(127);
		if (export_fd >= 0) {
			if (export_fd == EXPORT_FD)
				fcntl(EXPORT_FD, F_SETFD, 0);
			else if (dup2(export_fd, EXPORT_FD) < 0)
				_exit(127);
		}
		execvpe(argv[0], argv, env);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &wstatus, 0) < 0) {
		if (errno != EINTR) {
			ret = error_errno(err, -errno, "waiting for %s", argv[0]);
			goto out;
		}
	}
	*status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
	if (memfd_read(out_fd, out) < 0 || memfd_read(err_fd, errs) < 0)
		ret = error_errno(err, -errno, "reading what %s wrote", argv[0]);
out:
	if (in_fd >= 0)
		close(in_fd);
	if (out_fd >= 0)
		close(out_fd);
	if (err_fd >= 0)
		close(err_fd);
	if (export_fd >= 0)
		close(export_fd);
	free(env);
	return ret;
}

/*
 * The lines a command wrote to stderr as one line: "sbatch: error: " and
 * the like dropped, joined with "; ".
 */
static void command_message(const char *name, const struct strbuf *errs, struct strbuf *out)
{
	const char *p = errs->buf ? errs->buf : "", *end;
	struct strbuf prefix = STRBUF_INIT;
	size_t len;

	strbuf_addf(&prefix, "%s: ", name);
	while (*p) {
		end = strchrnul(p, '\n');
		len = (size_t)(end - p);
		if (len > prefix.len && !strncmp(p, prefix.buf, prefix.len)) {
			p += prefix.len;
			len -= prefix.len;
		}
		if (len > 7 && !strncmp(p, "error: ", 7)) {
			p += 7;
			len -= 7;
		}
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\r'))
			len--;
		if (len) {
			if (out->len)
				strbuf_addstr(out, "; ");
			strbuf_add(out, p, len);
		}
		p = *end ? end + 1 : end;
	}
	strbuf_release(&prefix);
}

/* The error for a command that failed: its name, and its words or status. */
static int command_failed(const char *name, int status, const struct strbuf *errs,
			  struct error *err)
{
	struct strbuf message = STRBUF_INIT;
	int ret;

	command_message(name, errs, &message);
	if (status == 127 && !strncmp(message.buf ? message.buf : "", "cannot run ", 11))
		ret = error_set(err, -ENOENT, "%s (are Slurm's commands installed?)", message.buf);
	else if (message.len)
		ret = error_set(err, -EIO, "%s: %s", name, message.buf);
	else
		ret = error_set(err, -EIO, "%s failed with exit status %d", name, status);
	strbuf_release(&message);
	return ret;
}

static void add_arg(char ***argv, size_t *count, char *arg)
{
	*argv = xrealloc(*argv, (*count + 2) * sizeof(char *));
	(*argv)[(*count)++] = arg;
	(*argv)[*count] = NULL;
}

static void add_argf(char ***argv, size_t *count, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void add_argf(char ***argv, size_t *count, const char *fmt, ...)
{
	struct strbuf arg = STRBUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	strbuf_vaddf(&arg, fmt, ap);
	va_end(ap);
	add_arg(argv, count, arg.buf);
}

static void free_args(char **argv, size_t count, size_t fixed)
{
	size_t i;

	/* The first fixed are literals; the rest were made by add_argf. */
	for (i = fixed; i < count; i++)
		free(argv[i]);
	free(argv);
}

int slurm_cmd_submit(const struct slurm_settings *settings, const struct slurm_request *request,
		     long long *id, struct error *err)
{
	struct strbuf script = STRBUF_INIT, exported = STRBUF_INIT, out = STRBUF_INIT,
		      errs = STRBUF_INIT, arg = STRBUF_INIT;
	char **argv = NULL, *end;
	size_t count = 0, i, fixed;
	int status = 0, ret;

	add_arg(&argv, &count, "sbatch");
	add_arg(&argv, &count, "--parsable");
	/* The whole environment, NUL-separated: no quoting to get wrong, and
	 * sbatch adds nothing of its own (--export=NONE would add the
	 * user's login environment). */
	add_arg(&argv, &count, "--export-file=3");
	fixed = count;
	add_argf(&argv, &count, "--job-name=%s", request->name);
	if (request->workdir)
		add_argf(&argv, &count, "--chdir=%s", request->workdir);
	if (request->output) {
		slurm_output_pattern(request->output, &arg);
		add_argf(&argv, &count, "--output=%s", arg.buf);
		strbuf_reset(&arg);
	}
	if (request->cpus)
		add_argf(&argv, &count, "--cpus-per-task=%lld", request->cpus);
	if (request->memory_mb)
		add_argf(&argv, &count, "--mem=%lldM", request->memory_mb);
	if (request->gpus)
		add_argf(&argv, &count, "--gres=gpu:%s%s%lld", request->gpu_name ? request->gpu_name : "",
			 request->gpu_name ? ":" : "", request->gpus);
	if (request->after_ok_count) {
		strbuf_addstr(&arg, "--dependency=afterok");
		for (i = 0; i < request->after_ok_count; i++)
			strbuf_addf(&arg, ":%lld", request->after_ok[i]);
		add_argf(&argv, &count, "%s", arg.buf);
		strbuf_reset(&arg);
		add_argf(&argv, &count, "--kill-on-invalid-dep=yes");
	}
	if (settings->partition)
		add_argf(&argv, &count, "--partition=%s", settings->partition);
	if (settings->account)
		add_argf(&argv, &count, "--account=%s", settings->account);
	/* Last, so that they win over the request's. */
	for (i = 0; i < settings->option_count; i++)
		add_argf(&argv, &count, "%s", settings->options[i]);
	strbuf_addstr(&script, request->script);
	for (i = 0; i < request->env_count; i++)
		strbuf_add(&exported, request->env[i], strlen(request->env[i]) + 1);
	ret = run_command(argv, &script, &exported, &out, &errs, &status, err);
	if (ret == 0 && status != 0)
		ret = command_failed("sbatch", status, &errs, err);
	if (ret == 0) {
		/* --parsable: "ID" or "ID;CLUSTER". */
		errno = 0;
		*id = strtoll(out.buf ? out.buf : "", &end, 10);
		if (errno || *id <= 0 || (*end && *end != ';' && *end != '\n')) {
			strbuf_trim_end(&out);
			ret = error_set(err, -EIO, "sbatch: expected a job id, got '%s'",
					out.buf ? out.buf : "");
		}
	}
	free_args(argv, count, fixed);
	strbuf_release(&script);
	strbuf_release(&exported);
	strbuf_release(&out);
	strbuf_release(&errs);
	strbuf_release(&arg);
	return ret;
}

static void ids_list(const long long *ids, size_t count, struct strbuf *out)
{
	size_t i;

	for (i = 0; i < count; i++)
		strbuf_addf(out, "%s%lld", i ? "," : "", ids[i]);
}

int slurm_cmd_state(const struct slurm_settings *settings, const long long *ids, size_t count,
		    struct slurm_job_state *states, struct error *err)
{
	struct strbuf list = STRBUF_INIT, out = STRBUF_INIT, errs = STRBUF_INIT;
	char *argv[] = { "squeue", "--noheader", "--states=all", NULL,
			 "--Format=JobID:|,State:|,Reason:|,NodeList:|,exit_code:|", NULL };
	char *line, *next, *fields[6], *end;
	long long id, status;
	int exit_status = 0, ret;
	size_t i;

	(void)settings;
	strbuf_addstr(&list, "--jobs=");
	ids_list(ids, count, &list);
	argv[3] = list.buf;
	for (i = 0; i < count; i++) {
		states[i].id = ids[i];
		slurm_state_fill(&states[i], "UNKNOWN", "", "", 0);
	}
	ret = run_command(argv, NULL, NULL, &out, &errs, &exit_status, err);
	/* Not one of the ids known: squeue says so and fails. */
	if (ret == 0 && exit_status != 0 &&
	    !strstr(errs.buf ? errs.buf : "", "Invalid job id specified"))
		ret = command_failed("squeue", exit_status, &errs, err);
	for (line = out.buf; ret == 0 && exit_status == 0 && line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (!*line)
			continue;
		if (str_split_fields(line, '|', fields, 6) < 5) {
			ret = error_set(err, -EIO, "squeue: cannot read '%s'", line);
			break;
		}
		errno = 0;
		id = strtoll(fields[0], &end, 10);
		if (errno || *end)
			continue;	/* an array's or a het job's parts: not ours */
		status = strtoll(fields[4], NULL, 10);
		for (i = 0; i < count; i++)
			if (ids[i] == id)
				slurm_state_fill(&states[i], fields[1], fields[2], fields[3], status);
	}
	strbuf_release(&list);
	strbuf_release(&out);
	strbuf_release(&errs);
	return ret;
}

int slurm_cmd_cancel(const struct slurm_settings *settings, const long long *ids, size_t count,
		     struct error *err)
{
	struct strbuf out = STRBUF_INIT, errs = STRBUF_INIT;
	char **argv = NULL, *line, *next;
	size_t argc = 0, i;
	int status = 0, ret;
	bool real = false;

	(void)settings;
	add_arg(&argv, &argc, "scancel");
	for (i = 0; i < count; i++)
		add_argf(&argv, &argc, "%lld", ids[i]);
	ret = run_command(argv, NULL, NULL, &out, &errs, &status, err);
	if (ret == 0 && status != 0) {
		/* Jobs that ended, or that Slurm forgot, are no failure. */
		for (line = errs.buf; line && *line; line = next) {
			next = strchrnul(line, '\n');
			if (next > line && !memmem(line, (size_t)(next - line), "Invalid job id", 14) &&
			    !memmem(line, (size_t)(next - line), "already completing or completed", 31))
				real = true;
			next = *next ? next + 1 : next;
		}
		if (real || !errs.len)
			ret = command_failed("scancel", status, &errs, err);
	}
	free_args(argv, argc, 1);
	strbuf_release(&out);
	strbuf_release(&errs);
	return ret;
}
