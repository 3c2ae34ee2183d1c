/*
 * mount.c - the daemon: mounts the tree with libfuse's low-level API,
 * serves it with the multithreaded loop (each thread with a store handle
 * of its own), and on unmount or SIGTERM takes no new runs and finishes
 * the ones it started, so none is lost.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs/internal.h"
#include "runner/runner.h"

#define FS_READ_AHEAD_KB "4096"

static pthread_key_t store_key;
static pthread_once_t store_key_once = PTHREAD_ONCE_INIT;
static const char *store_home_path;

static void store_key_close(void *store)
{
	store_close(store);
}

static void store_key_make(void)
{
	pthread_key_create(&store_key, store_key_close);
}

struct store *fs_store(struct fs *fs, struct error *err)
{
	struct store *store;

	(void)fs;
	pthread_once(&store_key_once, store_key_make);
	store = pthread_getspecific(store_key);
	if (store)
		return store;
	if (store_open(&store, store_home_path, STORE_READ_WRITE, err) < 0)
		return NULL;
	pthread_setspecific(store_key, store);
	return store;
}

static int fs_setup(struct fs *fs, const struct fs_options *options, struct error *err)
{
	struct strbuf repo = STRBUF_INIT, root = STRBUF_INIT;
	int ret;

	memset(fs, 0, sizeof(*fs));
	fs->options = *options;
	ret = runner_repo_id(options->cwd, &repo, err);
	if (ret == 0)
		ret = runner_repo_root(options->cwd, &root, err);
	if (ret < 0) {
		strbuf_release(&repo);
		strbuf_release(&root);
		return ret;
	}
	fs->repo = repo.buf;
	fs->root = root.buf;
	fs->uid = getuid();
	fs->gid = getgid();
	clock_gettime(CLOCK_REALTIME, &fs->mounted);
	node_table_init(&fs->nodes);
	pthread_mutex_init(&fs->views_lock, NULL);
	pthread_mutex_init(&fs->runs_lock, NULL);
	pthread_mutex_init(&fs->handles_lock, NULL);
	pthread_cond_init(&fs->runs_changed, NULL);
	fs->read_ahead_once = (pthread_once_t)PTHREAD_ONCE_INIT;
	/* The root is node 1, FUSE_ROOT_ID. */
	node_get(&fs->nodes, "", &(struct node){ .kind = NODE_ROOT, .job = -1 });
	return 0;
}

static void fs_teardown(struct fs *fs)
{
	fs_handles_release(fs);
	view_cache_release(fs);
	node_table_release(&fs->nodes);
	pthread_mutex_destroy(&fs->views_lock);
	pthread_mutex_destroy(&fs->runs_lock);
	pthread_mutex_destroy(&fs->handles_lock);
	pthread_cond_destroy(&fs->runs_changed);
	free(fs->repo);
	free(fs->root);
}

/*
 * Tells the store this daemon serves the repository's tree, or no longer:
 * `dstack run` then hands it runs, and jobs bind deps from the tree.
 * Best effort: without it everything works as without a daemon.
 */
static void fs_register(struct fs *fs, bool serving)
{
	struct store_daemon daemon = { .pid = getpid() };
	struct error err = { 0 };
	struct store *store = fs_store(fs, &err);

	if (!store)
		return;
	if (!serving) {
		store_daemon_remove(store, fs->repo, daemon.pid, &err);
		return;
	}
	snprintf(daemon.repo, sizeof(daemon.repo), "%s", fs->repo);
	snprintf(daemon.mountpoint, sizeof(daemon.mountpoint), "%s", fs->options.mountpoint);
	daemon.started = proc_start_time(daemon.pid);
	store_daemon_add(store, &daemon, &err);
}

/*
 * A FUSE mount reads ahead 128 KiB, and the daemon cannot ask for more at
 * INIT: one request in flight makes cold sequential reads wait on each
 * chunk in turn.  Where this process may (root), the tree's read-ahead is
 * raised so several chunks load at once on the loop's threads; only once
 * INIT is answered, which sets it to the smaller of what each side said.
 * The mount's device comes from mountinfo: a stat of the tree from the
 * daemon could wait for the daemon.
 */
void fs_read_ahead(const char *mountpoint)
{
	struct strbuf path = STRBUF_INIT;
	char line[8192], where[4096];
	unsigned int major, minor;
	bool found = false;
	FILE *mounts = fopen("/proc/self/mountinfo", "re");
	int fd;

	while (mounts && !found && fgets(line, sizeof(line), mounts))
		found = sscanf(line, "%*d %*d %u:%u %*s %4095s", &major, &minor, where) == 3 &&
			!strcmp(where, mountpoint);
	if (mounts)
		fclose(mounts);
	if (!found)
		return;
	strbuf_addf(&path, "/sys/class/bdi/%u:%u/read_ahead_kb", major, minor);
	/* Best effort: without it reads are right, only slower. */
	fd = open(path.buf, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		fs_write_all(fd, FS_READ_AHEAD_KB, strlen(FS_READ_AHEAD_KB));
		close(fd);
	}
	strbuf_release(&path);
}

/* The session, with -o allow_other,default_permissions when asked. */
static struct fuse_session *fs_session(struct fs *fs, struct error *err)
{
	char *argv[] = { "dstack", "-o", "fsname=dstack,subtype=dstack", NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	struct fuse_session *session;

	if (fs->options.allow_other) {
		argv[2] = "fsname=dstack,subtype=dstack,allow_other,default_permissions";
	}
	session = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), fs);
	fuse_opt_free_args(&args);
	if (!session)
		error_set(err, -EINVAL, "cannot start a FUSE session");
	return session;
}

int fs_mount(const struct fs_options *options, struct error *err)
{
	struct fuse_loop_config *config;
	struct fs fs;
	int ret = fs_setup(&fs, options, err);

	if (ret < 0)
		return ret;
	store_home_path = options->home;
	fs.session = fs_session(&fs, err);
	if (!fs.session) {
		fs_teardown(&fs);
		return err->code;
	}
	if (fuse_session_mount(fs.session, options->mountpoint) != 0) {
		fuse_session_destroy(fs.session);
		fs_teardown(&fs);
		return error_set(err, -EIO, "%s: cannot mount the tree there (see above)",
				 options->mountpoint);
	}
	/*
	 * Without foreground the calling process exits 0 here, once the tree
	 * is mounted, and a child serves it.
	 */
	if (fuse_daemonize(options->foreground) != 0) {
		fuse_session_unmount(fs.session);
		fuse_session_destroy(fs.session);
		fs_teardown(&fs);
		return error_set(err, -EIO, "cannot go to the background");
	}
	fs_register(&fs, true);
	runner_git_hold();
	/*
	 * Reads allocate and free buffers of a chunk's size (about 1 MiB) all
	 * the time; above glibc's mmap threshold each is a fresh mapping whose
	 * pages fault in, zeroed, on first touch.  Kept in the heap (chunks
	 * are 4 MiB at most) they are reused, and in one arena, since a chunk
	 * loaded by one thread is freed by whichever evicts it.
	 */
	mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
	mallopt(M_ARENA_MAX, 1);
	if (fuse_set_signal_handlers(fs.session) != 0) {
		ret = error_set(err, -EIO, "cannot catch signals");
	} else {
		config = fuse_loop_cfg_create();
		fuse_loop_cfg_set_max_threads(config, 16);
		ret = fuse_session_loop_mt(fs.session, config);
		fuse_loop_cfg_destroy(config);
		fuse_remove_signal_handlers(fs.session);
		ret = ret < 0 ? error_set(err, ret, "the FUSE session failed") : 0;
	}
	fs_register(&fs, false);
	fuse_session_unmount(fs.session);
	ctl_runs_finish(&fs);
	runner_git_release();
	fuse_session_destroy(fs.session);
	fs_teardown(&fs);
	return ret;
}

int fs_unmount(const char *mountpoint, struct error *err)
{
	char *const argv[] = { "fusermount3", "-u", (char *)mountpoint, NULL };
	int status;
	pid_t pid;

	if (umount2(mountpoint, 0) == 0)
		return 0;
	if (errno == EBUSY && umount2(mountpoint, MNT_DETACH) == 0)
		return 0;
	if (errno != EPERM)
		return error_errno(err, -errno, "%s", mountpoint);
	/* Not root: the setuid helper unmounts what this user mounted. */
	pid = fork();
	if (pid < 0)
		return error_errno(err, -errno, "fork");
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return error_errno(err, -errno, "waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return error_set(err, -EIO, "%s: fusermount3 -u failed", mountpoint);
	return 0;
}
