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
int runner_python_user_base(struct store *store, struct strbuf *base, struct error *err)
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

/* pip and pip3 in the environment's bin/: the system's pip, run by it. */
static int python_pip_commands(const char *bin, struct error *err)
{
	static const char script[] = "#!/bin/sh\n"
				     "exec \"$(dirname \"$0\")/python3\" -m pip \"$@\"\n";
	static const char *const names[] = { "pip", "pip3" };
	struct strbuf path = STRBUF_INIT;
	size_t i;
	int ret = 0;

	for (i = 0; i < sizeof(names) / sizeof(names[0]) && ret == 0; i++) {
		strbuf_reset(&path);
		strbuf_addf(&path, "%s/%s", bin, names[i]);
		ret = fs_write_file(path.buf, script, strlen(script));
		if (ret == 0 && chmod(path.buf, 0755) < 0)
			ret = -errno;
		if (ret < 0)
			error_errno(err, ret, "%s", path.buf);
	}
	strbuf_release(&path);
	return ret;
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
		/* Without its own pip (seconds to install): the system's pip
		 * (python3-pip), run by the environment's Python, installs into it. */
		char *const argv[] = { "python3", "-m", "venv", "--system-site-packages",
				       "--without-pip", dir.buf, NULL };
		int status = 0;

		ret = host_exec("/usr/bin/python3", argv, NULL, false, &status, err);
		if (ret == 0 && status)
			ret = error_set(err, -ENOEXEC,
					"cannot make a Python environment for providers in %s"
					" (Debian: python3-venv)", dir.buf);
		if (ret == 0)
			ret = python_pip_commands(bin->buf, err);
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
	int ret = runner_python_user_base(store, &base, err);

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
