/*
 * host.c - a job as a host process: bash runs the script in the job's
 * directory, in a process group of its own (so stop can signal all of
 * it), with stdout and stderr on one pipe (or two, when the caller keeps
 * them apart) whose bytes go to the caller as they come.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sched.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner/internal.h"

/*
 * Binds source onto path, read-only or not, keeping the flags the mount
 * had (nosuid, nodev, ...): a remount sets them all at once.  A bind
 * inside a read-only one starts read-only, hence the remount both ways.
 */
static int host_bind(const char *source, const char *path, bool read_only)
{
	static const struct { unsigned long st, ms; } kept[] = {
		{ ST_NOSUID, MS_NOSUID }, { ST_NODEV, MS_NODEV }, { ST_NOEXEC, MS_NOEXEC },
		{ ST_NOATIME, MS_NOATIME }, { ST_NODIRATIME, MS_NODIRATIME },
		{ ST_RELATIME, MS_RELATIME },
	};
	unsigned long flags = MS_BIND | MS_REMOUNT | (read_only ? MS_RDONLY : 0);
	struct statvfs st;
	size_t i;

	if (mount(source, path, NULL, MS_BIND | MS_REC, NULL) < 0 || statvfs(path, &st) < 0)
		return -1;
	for (i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		if (st.f_flag & kept[i].st)
			flags |= kept[i].ms;
	return mount(NULL, path, NULL, flags, NULL);
}

/* "ID ID 1" for a user namespace's uid_map and gid_map: the job stays who it is. */
struct host_id_maps {
	char uid[32], gid[32];
};

static int host_write_proc(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : write(fd, text, strlen(text));

	if (fd >= 0)
		close(fd);
	return n < 0 ? -1 : 0;
}

/*
 * A mount namespace of the job's own: as root straight away; otherwise
 * inside a user namespace where the job keeps its uid and gid, and its
 * capabilities last only until it execs bash.
 */
static int host_child_namespace(const struct host_id_maps *maps)
{
	if (unshare(CLONE_NEWNS) < 0 &&
	    (errno != EPERM || unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0 ||
	     host_write_proc("/proc/self/setgroups", "deny") < 0 ||
	     host_write_proc("/proc/self/uid_map", maps->uid) < 0 ||
	     host_write_proc("/proc/self/gid_map", maps->gid) < 0))
		return -1;
	return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

/*
 * The job's own mount namespace: the store's folder read-only but for
 * the job's own folder in it, and the deps' artifacts bound read-only
 * onto their paths.  The job then lacks the capabilities that would undo
 * it (mount, and reaching the runner's namespace through /proc/PID/root),
 * so not even root changes what is stored from inside a job.  Where no
 * namespace can be made (user namespaces turned off), the deps' artifacts
 * are plain files and the store is the user's own.
 */
static void host_child_confine(const struct host_job *job, const struct host_id_maps *maps)
{
	static const char message[] = "dstack: cannot make the job's read-only mounts\n";
	size_t i;

	if (host_child_namespace(maps) < 0) {
		/* Folders to bind stay empty without it: the job must not start. */
		if (job->read_only_sources)
			goto fail;
		return;
	}
	if (job->store_dir && (host_bind(job->store_dir, job->store_dir, true) < 0 ||
			       host_bind(job->own_dir, job->own_dir, false) < 0))
		goto fail;
	for (i = 0; i < job->read_only_count; i++) {
		const char *path = job->read_only[i];
		const char *source = job->read_only_sources ? job->read_only_sources[i] : path;

		if (host_bind(source, path, true) < 0 && job->read_only_sources)
			goto fail;
	}
	if (prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN) < 0 || prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE) < 0)
		goto fail;
	return;
fail:
	if (write(STDERR_FILENO, message, sizeof(message) - 1) < 0)
		_exit(126);
	_exit(126);
}

/*
 * In the child, between vfork and exec: only system calls, on the
 * parent's memory, which must not change.  Signals come in blocked (see
 * host_job_run); dispositions are reset before they are let in, and the
 * mask is left empty, since a caller's threads (the FUSE daemon's block
 * every signal) would otherwise leave the job deaf to SIGTERM.
 */
static void host_child(const struct host_job *job, const struct host_id_maps *maps, int out,
		       int err_out)
{
	static const char message[] = "dstack: cannot start bash\n";
	static const char no_dir[] = "dstack: cannot enter the working directory\n";
	char *const argv[] = { "bash", "-c", (char *)job->script, NULL };
	sigset_t none;
	size_t i;
	int sig;

	setpgid(0, 0);
	/* "0" moves the writer; then everything the job starts is in the group. */
	for (i = 0; i < job->cgroup_count; i++)
		if (write(job->cgroup_procs[i], "0", 1) < 0)
			_exit(126);
	if (dup2(out, STDOUT_FILENO) < 0 || dup2(err_out, STDERR_FILENO) < 0)
		_exit(127);
	/*
	 * Nothing else of the runner's before the binds: a bind from the
	 * tree asks the daemon, and a child still holding /dev/fuse when the
	 * daemon dies keeps that question open for ever.
	 */
	close_range(3, ~0U, 0);
	host_child_confine(job, maps);
	for (sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (chdir(job->dir) < 0) {
		if (write(STDERR_FILENO, no_dir, sizeof(no_dir) - 1) < 0)
			_exit(127);
		_exit(127);
	}
	execve("/bin/bash", argv, job->env);
	if (write(STDERR_FILENO, message, sizeof(message) - 1) < 0)
		_exit(127);
	_exit(127);
}

/*
 * vfork: no copy of the runner's memory to make, and then to fault back
 * page by page, while the job starts.  No handler of ours may run in the
 * child, which shares that memory: signals wait until it has reset them.
 */
static pid_t host_spawn(const struct host_job *job, int out, int err_out)
{
	struct host_id_maps maps;
	sigset_t all, old;
	pid_t pid;

	/* Made here: the child runs on this memory and must not call into stdio. */
	snprintf(maps.uid, sizeof(maps.uid), "%u %u 1", (unsigned)getuid(), (unsigned)getuid());
	snprintf(maps.gid, sizeof(maps.gid), "%u %u 1", (unsigned)getgid(), (unsigned)getgid());
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	/* The pipes are close-on-exec: the job keeps only its dup2'ed copies. */
	pid = vfork();
	if (pid == 0)
		host_child(job, &maps, out, err_out);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return pid;
}

int host_job_run(const struct host_job *job, int *status, bool *stopped,
		 struct error *err)
{
	char buf[65536];
	/* [0]: stdout's pipe (and stderr's unless split), [1]: stderr's. */
	int out_fds[2], err_fds[2] = { -1, -1 }, wstatus, ret = 0, open_count, i;
	struct pollfd pfds[2];
	int64_t term_sent = 0, last_tick = time_now_ns();
	bool kill_sent = false;
	pid_t pid;

	*stopped = false;
	if (pipe2(out_fds, O_CLOEXEC) < 0)
		return error_errno(err, -errno, "pipe");
	if (job->split_stderr && pipe2(err_fds, O_CLOEXEC) < 0) {
		ret = error_errno(err, -errno, "pipe");
		close(out_fds[0]);
		close(out_fds[1]);
		return ret;
	}
	pid = host_spawn(job, out_fds[1], job->split_stderr ? err_fds[1] : out_fds[1]);
	if (pid < 0)
		ret = error_errno(err, -errno, "vfork");
	close(out_fds[1]);
	if (err_fds[1] >= 0)
		close(err_fds[1]);
	pfds[0] = (struct pollfd){ .fd = out_fds[0], .events = POLLIN };
	pfds[1] = (struct pollfd){ .fd = err_fds[0], .events = POLLIN };
	open_count = job->split_stderr ? 2 : 1;
	if (pid < 0) {
		for (i = 0; i < open_count; i++)
			close(pfds[i].fd);
		return ret;
	}
	/* Both sides set the group: a stop may come before the child runs. */
	setpgid(pid, pid);
	if (job->started)
		job->started(job->started_ctx, pid);
	while (pfds[0].fd >= 0 || pfds[1].fd >= 0) {
		int ready;

		/* SIGTERM to the whole group, SIGKILL if it lingers or at once to abort. */
		if (*job->stop->aborting && !kill_sent) {
			kill(-pid, SIGKILL);
			kill_sent = true;
			*stopped = true;
		} else if (*job->stop->stopping && !term_sent) {
			kill(-pid, SIGTERM);
			term_sent = time_now_ns();
			*stopped = true;
		} else if (term_sent && !kill_sent &&
			   time_now_ns() - term_sent > HOST_STOP_GRACE_NS) {
			kill(-pid, SIGKILL);
			kill_sent = true;
		}
		ready = poll(pfds, 2, HOST_TICK_MS);
		/* A chatty job must not keep the tick (flushes, stop requests) away. */
		if (ready >= 0 && time_now_ns() - last_tick >= HOST_TICK_MS * 1000000ll) {
			last_tick = time_now_ns();
			if (job->tick && ret == 0)
				ret = job->tick(job->tick_ctx);
		}
		if (ready <= 0)
			continue;
		for (i = 0; i < 2; i++) {
			ssize_t n;

			if (pfds[i].fd < 0 || !pfds[i].revents)
				continue;
			n = read(pfds[i].fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close(pfds[i].fd);
				pfds[i].fd = -1;
				continue;
			}
			/* Keep reading after a failed output: the job must not block. */
			if (job->output && ret == 0)
				ret = job->output(job->output_ctx, i ? STDERR_FILENO : STDOUT_FILENO,
						  buf, (size_t)n);
		}
	}
	while (waitpid(pid, &wstatus, 0) < 0) {
		if (errno != EINTR)
			return error_errno(err, -errno, "waitpid");
	}
	*status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
	return ret < 0 ? ret : 0;
}

int host_exec(const char *program, char *const *argv, struct strbuf *out, bool with_stderr,
	      int *status, struct error *err)
{
	char buf[4096];
	int fds[2], wstatus;
	pid_t pid;
	ssize_t n;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return error_errno(err, -errno, "pipe");
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return error_errno(err, -errno, "fork");
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(out ? fds[1] : null, STDOUT_FILENO);
			dup2(out && with_stderr ? fds[1] : null, STDERR_FILENO);
		}
		execvp(program, argv);
		_exit(127);
	}
	close(fds[1]);
	while ((n = read(fds[0], buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (out)
			strbuf_add(out, buf, (size_t)n);
	}
	close(fds[0]);
	while (waitpid(pid, &wstatus, 0) < 0)
		if (errno != EINTR)
			return error_errno(err, -errno, "waitpid");
	*status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
	return 0;
}
