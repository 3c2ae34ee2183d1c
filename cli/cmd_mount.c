/*
 * cmd_mount.c - `dstack mount` and `dstack umount`: the /dstack tree of
 * the current repository's runs.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "fs/fs.h"
#include "runner/runner.h"

/* DIR, else /dstack for root and $XDG_RUNTIME_DIR/dstack for others. */
static int mount_dir(const char *given, struct strbuf *dir)
{
	const char *runtime = getenv("XDG_RUNTIME_DIR");

	if (given)
		strbuf_addstr(dir, given);
	else if (geteuid() == 0)
		strbuf_addstr(dir, "/dstack");
	else if (runtime && *runtime)
		strbuf_addf(dir, "%s/dstack", runtime);
	else
		return cli_error("give the folder to mount at: XDG_RUNTIME_DIR is not set");
	return CLI_OK;
}

int cmd_mount(int argc, char **argv)
{
	struct fs_options options = { 0 };
	struct strbuf dir = STRBUF_INIT, root = STRBUF_INIT;
	struct stat st;
	char cwd[PATH_MAX], home[PATH_MAX], mountpoint[PATH_MAX];
	struct store *store;
	struct error err = { 0 };
	const char *given = NULL;
	int i, ret;

	if (cli_wants_help("mount", argc, argv))
		return CLI_OK;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--foreground"))
			options.foreground = true;
		else if (!strcmp(argv[i], "-o") && i + 1 < argc && !strcmp(argv[i + 1], "allow_other"))
			options.allow_other = ++i > 0;
		else if (argv[i][0] != '-' && !given)
			given = argv[i];
		else
			return cli_usage_error("mount", "unexpected '%s'", argv[i]);
	}
	if (mount_dir(given, &dir) != CLI_OK)
		return CLI_FAILED;
	if (!getcwd(cwd, sizeof(cwd)))
		return cli_error("cannot find the current directory: %s", strerror(errno));
	/* Nothing is made before the repository and the store are known good. */
	if (runner_repo_root(cwd, &root, &err) < 0) {
		strbuf_release(&dir);
		return cli_error("%s", err.message);
	}
	strbuf_release(&root);
	/* The store made (or checked) here; the daemon opens its own handles. */
	if (cli_open_store(&store, true) < 0) {
		strbuf_release(&dir);
		return CLI_FAILED;
	}
	store_close(store);
	if (mkdir(dir.buf, 0755) < 0 && errno != EEXIST)
		ret = cli_error("%s: %s", dir.buf, strerror(errno));
	else if (!realpath(dir.buf, mountpoint) || !realpath(cli_home(), home))
		ret = cli_error("%s: %s", dir.buf, strerror(errno));
	else if (stat(mountpoint, &st) < 0 || !S_ISDIR(st.st_mode))
		ret = cli_error("%s: not a folder to mount the tree on", dir.buf);
	else
		ret = CLI_OK;
	strbuf_release(&dir);
	if (ret != CLI_OK)
		return ret;
	/* Paths are absolute: the daemon leaves the current directory. */
	options.mountpoint = mountpoint;
	options.home = home;
	options.cwd = cwd;
	if (fs_mount(&options, &err) < 0)
		return cli_error("%s", err.message);
	return CLI_OK;
}

int cmd_umount(int argc, char **argv)
{
	struct strbuf dir = STRBUF_INIT;
	struct error err = { 0 };
	int ret;

	if (cli_wants_help("umount", argc, argv))
		return CLI_OK;
	if (argc > 2 || (argc == 2 && argv[1][0] == '-'))
		return cli_usage_error("umount", "unexpected '%s'", argv[argc - 1]);
	if (mount_dir(argc == 2 ? argv[1] : NULL, &dir) != CLI_OK)
		return CLI_FAILED;
	ret = fs_unmount(dir.buf, &err) < 0 ? cli_error("%s", err.message) : CLI_OK;
	strbuf_release(&dir);
	return ret;
}
