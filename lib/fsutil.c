/*
 * fsutil.c - file system helpers: full reads and writes that survive
 * EINTR and short transfers, directory creation and directory fsync, and
 * the formatting of times and sizes for people.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/lib.h"

void hex_encode(const uint8_t *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * len] = '\0';
}

int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void base64_encode(const void *bytes, size_t len, bool url, struct strbuf *out)
{
	const char *digits = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
				 : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const uint8_t *p = bytes;
	size_t i;

	for (i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < len ? p[i + 2] : 0);
		char quad[4] = { digits[v >> 18], digits[(v >> 12) & 63],
				 i + 1 < len ? digits[(v >> 6) & 63] : '=',
				 i + 2 < len ? digits[v & 63] : '=' };

		strbuf_add(out, quad, 4);
	}
}

static int base64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

int base64_decode(const char *text, struct strbuf *out)
{
	uint32_t bits = 0;
	int count = 0, v;

	for (; *text && *text != '='; text++) {
		v = base64_value(*text);
		if (v < 0)
			return -EINVAL;
		bits = bits << 6 | (uint32_t)v;
		if (++count == 4) {
			char three[3] = { (char)(bits >> 16), (char)(bits >> 8), (char)bits };

			strbuf_add(out, three, 3);
			bits = 0;
			count = 0;
		}
	}
	if (count == 1)
		return -EINVAL;
	if (count == 2) {
		char one = (char)(bits >> 4);

		strbuf_add(out, &one, 1);
	} else if (count == 3) {
		char two[2] = { (char)(bits >> 10), (char)(bits >> 2) };

		strbuf_add(out, two, 2);
	}
	return 0;
}

int fs_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fs_write_frame(int fd, int stream, const void *data, size_t len)
{
	unsigned char header[8] = { (unsigned char)stream, 0, 0, 0, (unsigned char)(len >> 24),
				    (unsigned char)(len >> 16), (unsigned char)(len >> 8),
				    (unsigned char)len };
	int ret = fs_write_all(fd, header, sizeof(header));

	return ret < 0 ? ret : fs_write_all(fd, data, len);
}

int fs_pread_all(int fd, void *buf, size_t len, off_t offset)
{
	char *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, offset);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		offset += n;
	}
	return 0;
}

int fs_read_file(const char *path, struct strbuf *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n;

		strbuf_grow(out, 65536);
		n = read(fd, out->buf + out->len, out->alloc - out->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			ret = -errno;
		if (n <= 0)
			break;
		out->len += (size_t)n;
		out->buf[out->len] = '\0';
	}
	close(fd);
	return ret;
}

int fs_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), ret;

	if (fd < 0)
		return -errno;
	ret = fs_write_all(fd, data, len);
	if (close(fd) < 0 && ret == 0)
		ret = -errno;
	return ret;
}

bool path_is_contained(const char *path)
{
	const char *p = path;

	if (!*path || *path == '/')
		return false;
	while (*p) {
		size_t len = strcspn(p, "/");

		if (len == 0 || (len == 1 && p[0] == '.') ||
		    (len == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += len;
		if (*p == '/' && !*++p)
			return false;
	}
	return true;
}

int path_plain(const char *text, char **path)
{
	size_t len;

	while (text[0] == '.' && text[1] == '/') {
		text += 2;
		while (*text == '/')
			text++;
	}
	len = strlen(text);
	while (len > 1 && text[len - 1] == '/')
		len--;
	if (!len)
		return -EINVAL;
	if (len == 1 && text[0] == '.')
		return -EISDIR;
	*path = xmalloc(len + 1);
	memcpy(*path, text, len);
	(*path)[len] = '\0';
	return 0;
}

int fs_mkdir_p(const char *path, mode_t mode)
{
	char tmp[4096];
	size_t len = strlen(path);
	char *p;

	if (len >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, len + 1);
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int fs_remove_make_writable(const char *path, const struct stat *st, int flag,
				   struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_D && (st->st_mode & S_IRWXU) != S_IRWXU)
		chmod(path, (st->st_mode & 07777) | S_IRWXU);
	return 0;
}

static int fs_remove_entry(const char *path, const struct stat *st, int flag,
			   struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 ? -1 : 0;
}

int fs_remove_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	/* Read-only folders (stored modes, deps) must open up to be emptied. */
	nftw(path, fs_remove_make_writable, 16, FTW_PHYS);
	return nftw(path, fs_remove_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
}

int fs_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

int fs_path_within(const char *root, const char *path, char **resolved)
{
	char *real_root = realpath(root, NULL), *real = realpath(path, NULL);
	size_t len = real_root ? strlen(real_root) : 0;
	int ret;

	if (!real_root || !real)
		ret = -errno;
	else
		ret = !strncmp(real, real_root, len) &&
		      (real[len] == '\0' || real[len] == '/' || !strcmp(real_root, "/"));
	if (resolved && ret >= 0) {
		*resolved = real;
		real = NULL;
	}
	free(real_root);
	free(real);
	return ret;
}

int64_t proc_start_time(pid_t pid)
{
	char path[64], buf[1024], *p;
	long long start = -1;
	ssize_t n;
	int fd, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: skip past its end. */
	p = strrchr(buf, ')');
	if (!p || !p[1] || !p[2])
		return -1;
	/* A zombie has ended: it only waits for its parent to notice. */
	if (p[2] == 'Z' || p[2] == 'X')
		return -1;
	/* After ") " comes field 3; starttime is field 22. */
	for (field = 3, p += 2; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (p)
		sscanf(p, "%lld", &start);
	return start;
}

int64_t time_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t time_monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void time_format_iso(int64_t ns, char out[32])
{
	time_t secs = (time_t)(ns / 1000000000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void size_format(uint64_t bytes, char out[32])
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double value = (double)bytes;
	int unit = 0;

	while (value >= 1024 && unit < 4) {
		value /= 1024;
		unit++;
	}
	if (unit == 0)
		snprintf(out, 32, "%llu B", (unsigned long long)bytes);
	else
		snprintf(out, 32, "%.1f %s", value, units[unit]);
}
