/*
 * python.c - Python for providers and jobs on the host: a virtual
 * environment made once per store, and a user site holding the dstack
 * module.
 *
 * The seed's providers run `pip3 install`, which Debian's system Python
 * refuses (PEP 668), as a container's Python would not: they run in
 * $DSTACK_HOME/python/venv, which sees the system's packages (PyYAML)
 * and, through a .pth file, the dstack module.  PYTHONUSERBASE points at
 * a user site with the module too, so `import dstack` also works for a
 * Python outside the environment, even when a command replaces
 * PYTHONPATH as the seed's does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner/internal.h"

/* Python versions whose site directories get the dstack module. */
#define PYTHON_MINOR_FIRST 6
#define PYTHON_MINOR_LAST 14

/* The user site: lib/python3.N/site-packages/dstack for every N. */
static int python_user_base(struct store *store, struct strbuf *base, struct error *err)
{
	struct strbuf dir = STRBUF_INIT, link = STRBUF_INIT;
	int minor, ret = 0;

	strbuf_addf(base, "%s/python", store_home(store));
	for (minor = PYTHON_MINOR_FIRST; minor <= PYTHON_MINOR_LAST && ret == 0; minor++) {
		strbuf_reset(&dir);
		strbuf_addf(&dir, "%s/lib/python3.%d/site-packages", base->buf, minor);
		ret = fs_mkdir_p(dir.buf, 0755);
		if (ret < 0) {
			error_errno(err, ret, "%s", dir.buf);
			break;
		}
		strbuf_reset(&link);
		strbuf_addf(&link, "%s/dstack", dir.buf);
		if (symlink(DSTACK_PYTHON_DIR "/dstack", link.buf) < 0 && errno != EEXIST)
			ret = error_errno(err, -errno, "%s", link.buf);
	}
	strbuf_release(&dir);
	strbuf_release(&link);
	return ret;
}

/* Runs argv (output discarded), for tools the runner itself needs. */
static int run_quietly(const char *program, char *const *argv, int *status,
		       struct error *err)
{
	pid_t pid = fork();
	int wstatus;

	if (pid < 0)
		return error_errno(err, -errno, "fork");
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
		}
		execv(program, argv);
		_exit(127);
	}
	while (waitpid(pid, &wstatus, 0) < 0)
		if (errno != EINTR)
			return error_errno(err, -errno, "waitpid");
	*status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
	return 0;
}

/* The environment, made under a lock the first time; *bin gets its bin/. */
static int python_venv(struct store *store, struct strbuf *bin, struct error *err)
{
	struct strbuf dir = STRBUF_INIT, path = STRBUF_INIT;
	struct stat st;
	int lock = -1, ret = 0, minor;

	strbuf_addf(&dir, "%s/python/venv", store_home(store));
	strbuf_addf(bin, "%s/bin", dir.buf);
	strbuf_addf(&path, "%s/python/venv.lock", store_home(store));
	lock = open(path.buf, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock < 0 || flock(lock, LOCK_EX) < 0) {
		ret = error_errno(err, -errno, "%s", path.buf);
		goto out;
	}
	strbuf_reset(&path);
	strbuf_addf(&path, "%s/bin/python3", dir.buf);
	if (stat(path.buf, &st) < 0) {
		char *const argv[] = { "python3", "-m", "venv", "--system-site-packages",
				       dir.buf, NULL };
		int status = 0;

		ret = run_quietly("/usr/bin/python3", argv, &status, err);
		if (ret == 0 && status)
			ret = error_set(err, -ENOEXEC,
					"cannot make a Python environment for providers in %s"
					" (Debian: python3-venv)", dir.buf);
		if (ret < 0)
			goto out;
	}
	for (minor = PYTHON_MINOR_FIRST; minor <= PYTHON_MINOR_LAST; minor++) {
		strbuf_reset(&path);
		strbuf_addf(&path, "%s/lib/python3.%d/site-packages", dir.buf, minor);
		if (stat(path.buf, &st) == 0) {
			strbuf_addstr(&path, "/dstack.pth");
			ret = fs_write_file(path.buf, DSTACK_PYTHON_DIR "\n",
					    strlen(DSTACK_PYTHON_DIR "\n"));
			if (ret < 0)
				error_errno(err, ret, "%s", path.buf);
			break;
		}
	}
out:
	if (lock >= 0)
		close(lock);
	strbuf_release(&dir);
	strbuf_release(&path);
	return ret;
}

int runner_python_env(struct store *store, struct job_env *env, struct error *err)
{
	struct strbuf base = STRBUF_INIT, bin = STRBUF_INIT, path = STRBUF_INIT;
	const char *old_path = getenv("PATH");
	int ret = python_user_base(store, &base, err);

	if (ret == 0)
		ret = python_venv(store, &bin, err);
	if (ret == 0) {
		strbuf_addf(&path, "%s:%s", bin.buf, old_path ? old_path : "/usr/bin:/bin");
		job_env_set(env, "PATH", path.buf);
		/* bin/.. is the environment itself. */
		bin.len -= strlen("/bin");
		bin.buf[bin.len] = '\0';
		job_env_set(env, "VIRTUAL_ENV", bin.buf);
		job_env_set(env, "PYTHONUSERBASE", base.buf);
	}
	strbuf_release(&base);
	strbuf_release(&bin);
	strbuf_release(&path);
	return ret;
}
