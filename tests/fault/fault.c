/*
 * fault.c - an LD_PRELOAD library that makes a dstack process meet the
 * failures of machines and disks, for the crash and fault tests:
 *
 *   DSTACK_FAULT_KILL_AT=N   SIGKILL the process at its Nth change to a
 *                            file (write, sync, rename, unlink, truncate,
 *                            mkdir, link), before the change is made
 *   DSTACK_FAULT_COUNT=FILE  at exit, write how many changes were made
 *   DSTACK_FAULT_EIO=TEXT    reads from files whose path holds TEXT fail
 *                            with EIO
 *   DSTACK_FAULT_CPUS=N      the machine seems to have N processors online,
 *                            so that work split among threads falls the
 *                            same way on every run
 *
 * Only a process whose executable is named dstack is touched, and the
 * kill and the count only in the process that loaded the library (not in
 * what it forks): jobs, shells and helpers inherit the variables, and a
 * count that moved with them would name no point of the runner.  Writes
 * count only on regular files, where the store and the catalog live, so
 * that output to a terminal or a pipe does not thin the points out.
 */

/* Both pread and pread64 are symbols to stand in front of: keep them apart. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static bool fault_active;
static pid_t fault_pid;
static unsigned long fault_kill_at;
static unsigned long fault_changes;
static const char *fault_count_file;
static const char *fault_eio_text;
static long fault_cpus;

/* The next definition of name (libc's, or a sanitizer's in front of it), looked up once. */
#define REAL(name) ({ \
	static __typeof__(&name) next; \
	if (!next) \
		next = (__typeof__(&name))fault_real(#name); \
	next; \
})

static void *fault_real(const char *name)
{
	void *fn = dlsym(RTLD_NEXT, name);

	if (!fn)
		abort();
	return fn;
}

__attribute__((constructor))
static void fault_init(void)
{
	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *base, *kill_at = getenv("DSTACK_FAULT_KILL_AT");
	const char *cpus = getenv("DSTACK_FAULT_CPUS");

	if (len <= 0)
		return;
	exe[len] = '\0';
	base = strrchr(exe, '/');
	if (strcmp(base ? base + 1 : exe, "dstack"))
		return;
	fault_active = true;
	fault_pid = getpid();
	fault_kill_at = kill_at ? strtoul(kill_at, NULL, 10) : 0;
	fault_count_file = getenv("DSTACK_FAULT_COUNT");
	fault_eio_text = getenv("DSTACK_FAULT_EIO");
	fault_cpus = cpus ? atol(cpus) : 0;
	if (fault_eio_text && !*fault_eio_text)
		fault_eio_text = NULL;
}

__attribute__((destructor))
static void fault_fini(void)
{
	FILE *f;

	if (!fault_active || !fault_count_file || getpid() != fault_pid)
		return;
	f = fopen(fault_count_file, "w");
	if (f) {
		fprintf(f, "%lu\n", __atomic_load_n(&fault_changes, __ATOMIC_SEQ_CST));
		fclose(f);
	}
}

/* One change to a file is about to be made: count it, and die at the chosen one. */
static void fault_change(void)
{
	unsigned long n;

	if (!fault_active || getpid() != fault_pid)
		return;
	n = __atomic_add_fetch(&fault_changes, 1, __ATOMIC_SEQ_CST);
	if (n == fault_kill_at)
		kill(fault_pid, SIGKILL);
}

static void fault_write_to(int fd)
{
	struct stat st;

	if (fault_active && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		fault_change();
}

static bool fault_eio(int fd)
{
	char link[64], path[PATH_MAX];
	ssize_t len;

	if (!fault_active || !fault_eio_text)
		return false;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	len = readlink(link, path, sizeof(path) - 1);
	if (len <= 0)
		return false;
	path[len] = '\0';
	if (!strstr(path, fault_eio_text))
		return false;
	errno = EIO;
	return true;
}

ssize_t write(int fd, const void *buf, size_t count)
{
	fault_write_to(fd);
	return REAL(write)(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
	fault_write_to(fd);
	return REAL(pwrite)(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset)
{
	fault_write_to(fd);
	return REAL(pwrite64)(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	fault_write_to(fd);
	return REAL(writev)(fd, iov, iovcnt);
}

int fsync(int fd)
{
	fault_change();
	return REAL(fsync)(fd);
}

int fdatasync(int fd)
{
	fault_change();
	return REAL(fdatasync)(fd);
}

int ftruncate(int fd, off_t length)
{
	fault_change();
	return REAL(ftruncate)(fd, length);
}

int rename(const char *from, const char *to)
{
	fault_change();
	return REAL(rename)(from, to);
}

int renameat(int fromdir, const char *from, int todir, const char *to)
{
	fault_change();
	return REAL(renameat)(fromdir, from, todir, to);
}

int renameat2(int fromdir, const char *from, int todir, const char *to, unsigned flags)
{
	fault_change();
	return REAL(renameat2)(fromdir, from, todir, to, flags);
}

int unlink(const char *path)
{
	fault_change();
	return REAL(unlink)(path);
}

int unlinkat(int dir, const char *path, int flags)
{
	fault_change();
	return REAL(unlinkat)(dir, path, flags);
}

int linkat(int fromdir, const char *from, int todir, const char *to, int flags)
{
	fault_change();
	return REAL(linkat)(fromdir, from, todir, to, flags);
}

int mkdir(const char *path, mode_t mode)
{
	fault_change();
	return REAL(mkdir)(path, mode);
}

int mkdirat(int dir, const char *path, mode_t mode)
{
	fault_change();
	return REAL(mkdirat)(dir, path, mode);
}

ssize_t read(int fd, void *buf, size_t count)
{
	if (fault_eio(fd))
		return -1;
	return REAL(read)(fd, buf, count);
}

ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
	if (fault_eio(fd))
		return -1;
	return REAL(pread)(fd, buf, count, offset);
}

ssize_t pread64(int fd, void *buf, size_t count, off64_t offset)
{
	if (fault_eio(fd))
		return -1;
	return REAL(pread64)(fd, buf, count, offset);
}

ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	if (fault_eio(fd))
		return -1;
	return REAL(readv)(fd, iov, iovcnt);
}

long sysconf(int name)
{
	if (fault_active && fault_cpus > 0 && name == _SC_NPROCESSORS_ONLN)
		return fault_cpus;
	return REAL(sysconf)(name);
}
