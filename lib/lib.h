/*
 * lib.h - small helpers shared by every dstack module: an error record that
 * carries the user-facing reason from where a failure happens to the edge
 * that prints it, a growable string buffer, and file system helpers that
 * retry short I/O and report errno.
 */
#ifndef DSTACK_LIB_H
#define DSTACK_LIB_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The reason a call failed: a negative errno in code, and a one-line
 * message naming the file, object or field at fault.  Functions that fail
 * return the same negative errno they store here.
 */
struct error {
	int code;
	char message[1024];
};

/* Records code and the formatted message (first failure wins); returns code. */
int error_set(struct error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* As error_set, appending ": strerror(-code)". */
int error_errno(struct error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void error_clear(struct error *err);

/* A growable NUL-terminated byte buffer, in the manner of git's strbuf. */
struct strbuf {
	char *buf;
	size_t len;
	size_t alloc;
};
#define STRBUF_INIT { NULL, 0, 0 }
void strbuf_grow(struct strbuf *sb, size_t extra);
void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_addstr(struct strbuf *sb, const char *s);
/* arg as one shell word: as it is when that is safe, else in '...'. */
void strbuf_add_shell_word(struct strbuf *sb, const char *arg);
/*
 * arg as one shell word on one line: as strbuf_add_shell_word, but with
 * control characters (a newline) written as $'\n' escapes, as bash has
 * them.  What a ctl line carries.
 */
void strbuf_add_shell_line_word(struct strbuf *sb, const char *arg);
/* words so, space-separated: one line that shell_split reads back. */
void strbuf_add_shell_line_words(struct strbuf *sb, char *const *words, size_t count);
/*
 * Splits line as a shell splits words: 'single' and "double" quotes,
 * backslash escapes, and bash's $'...' with its escapes (\n, \t, \xHH,
 * \NNN, ...).  -EINVAL for an unterminated quote or an escaped NUL.  The
 * words go with shell_words_free.
 */
int shell_split(const char *line, char ***words, size_t *count);
void shell_words_free(char **words, size_t count);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
void strbuf_reset(struct strbuf *sb);
/* Drops trailing white space (a line's newline, say). */
void strbuf_trim_end(struct strbuf *sb);
/*
 * Cuts line (modified) at each sep into at most max fields, the last
 * keeping the rest; returns how many.
 */
size_t str_split_fields(char *line, char sep, char **fields, size_t max);
void strbuf_release(struct strbuf *sb);

/* Allocation that aborts on exhaustion: callers never see NULL. */
void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);

/* Little-endian 32-bit fields of the on-disk formats. */
static inline uint32_t le32_get(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline void le32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* Lowercase hex of len bytes into out (2*len+1 bytes). */
void hex_encode(const uint8_t *bytes, size_t len, char *out);
/* The value of a hex digit (either case), or -1. */
int hex_value(char c);
/* RFC 4648 base64 of bytes, appended to out; url: the URL-safe alphabet. */
void base64_encode(const void *bytes, size_t len, bool url, struct strbuf *out);
/* Appends the bytes of base64 text (either alphabet, padding optional); -EINVAL if it is not. */
int base64_decode(const char *text, struct strbuf *out);

/* Write or pread exactly len bytes, retrying short transfers: 0 or -errno. */
int fs_write_all(int fd, const void *buf, size_t len);
/*
 * Writes len bytes to fd as one frame of docker's stream format (the
 * stream, 1 or 2, in byte 0, the size big-endian in bytes 4-7, then the
 * bytes), which keeps a job's two streams apart in one file or pipe.
 */
int fs_write_frame(int fd, int stream, const void *data, size_t len);
int fs_pread_all(int fd, void *buf, size_t len, off_t offset);
/*
 * True for a relative path that stays below where it starts: not empty,
 * not absolute, no "..", "." or empty component.
 */
bool path_is_contained(const char *path);
/*
 * A folder's path as written (./out/, out) made plain (out) in *path, a
 * new string; -EINVAL when it is empty, -EISDIR when it is "." (the
 * folder it starts from).
 */
int path_plain(const char *text, char **path);
/* Appends the whole file at path to out: 0 or -errno. */
int fs_read_file(const char *path, struct strbuf *out);
/* Writes len bytes to a new (or truncated) file at path: 0 or -errno. */
int fs_write_file(const char *path, const void *data, size_t len);
/* mkdir -p with mode for new components: 0 or -errno. */
int fs_mkdir_p(const char *path, mode_t mode);
/* rm -rf path, opening up read-only folders on the way; 0 or -errno. */
int fs_remove_tree(const char *path);
/* fsync the directory at path, so renames and creations in it are durable. */
int fs_fsync_dir(const char *path);
/*
 * Whether path, its symlinks followed, is root or lies under it: 1 or 0,
 * *resolved (when not NULL) getting where it leads; -errno when either
 * cannot be resolved.
 */
int fs_path_within(const char *root, const char *path, char **resolved);
/*
 * When process pid started (clock ticks since boot), -1 if there is no
 * such process (or only its zombie): with its pid this names a process
 * even after pid reuse.
 */
int64_t proc_start_time(pid_t pid);
/* Nanoseconds since the epoch (CLOCK_REALTIME). */
int64_t time_now_ns(void);
/* Nanoseconds on CLOCK_MONOTONIC: for intervals, whatever the wall clock does. */
int64_t time_monotonic_ns(void);
/* Format ns since the epoch as ISO 8601 UTC "2026-11-28T09:15:36Z". */
void time_format_iso(int64_t ns, char out[32]);
/* Human size, "1.5 MiB". */
void size_format(uint64_t bytes, char out[32]);

#endif
