/*
 * strbuf.c - growable strings and the allocation wrappers under them.
 * Out of memory is fatal here, as in git: no caller can do better.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lib.h"

static void die_oom(size_t size)
{
	fprintf(stderr, "dstack: out of memory allocating %zu bytes\n", size);
	abort();
}

void *xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (!p)
		die_oom(size);
	return p;
}

void *xcalloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);

	if (!p)
		die_oom(count * size);
	return p;
}

void *xrealloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size ? size : 1);

	if (!p)
		die_oom(size);
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		die_oom(strlen(s));
	return p;
}

void strbuf_grow(struct strbuf *sb, size_t extra)
{
	size_t want = sb->len + extra + 1;

	if (want <= sb->alloc)
		return;
	sb->alloc = sb->alloc ? sb->alloc : 64;
	while (sb->alloc < want)
		sb->alloc *= 2;
	sb->buf = xrealloc(sb->buf, sb->alloc);
}

void strbuf_add(struct strbuf *sb, const void *data, size_t len)
{
	strbuf_grow(sb, len);
	memcpy(sb->buf + sb->len, data, len);
	sb->len += len;
	sb->buf[sb->len] = '\0';
}

void strbuf_addstr(struct strbuf *sb, const char *s)
{
	strbuf_add(sb, s, strlen(s));
}

void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap)
{
	va_list again;
	int n;

	strbuf_grow(sb, 64);
	va_copy(again, ap);
	n = vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, ap);
	if (n >= 0 && (size_t)n >= sb->alloc - sb->len) {
		strbuf_grow(sb, (size_t)n);
		vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, again);
	}
	va_end(again);
	if (n > 0)
		sb->len += (size_t)n;
}

void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	strbuf_vaddf(sb, fmt, ap);
	va_end(ap);
}

void strbuf_reset(struct strbuf *sb)
{
	sb->len = 0;
	if (sb->buf)
		sb->buf[0] = '\0';
}

void strbuf_trim_end(struct strbuf *sb)
{
	while (sb->len && isspace((unsigned char)sb->buf[sb->len - 1]))
		sb->buf[--sb->len] = '\0';
}

void strbuf_release(struct strbuf *sb)
{
	free(sb->buf);
	sb->buf = NULL;
	sb->len = sb->alloc = 0;
}

/* Characters a POSIX shell takes literally anywhere in an argument. */
static bool shell_char_is_safe(char c)
{
	return isalnum((unsigned char)c) || strchr("_./=:,@%+-", c);
}

void strbuf_add_shell_word(struct strbuf *out, const char *arg)
{
	const char *p;

	for (p = arg; *p && shell_char_is_safe(*p); p++)
		;
	if (*arg && !*p) {
		strbuf_addstr(out, arg);
		return;
	}
	strbuf_addstr(out, "'");
	for (p = arg; *p; p++) {
		if (*p == '\'')
			strbuf_addstr(out, "'\\''");
		else
			strbuf_add(out, p, 1);
	}
	strbuf_addstr(out, "'");
}

void strbuf_add_shell_line_word(struct strbuf *out, const char *arg)
{
	static const char escapes[] = "\n\\n\t\\t\r\\r";
	const char *p, *named;

	for (p = arg; *p && !iscntrl((unsigned char)*p); p++)
		;
	if (!*p) {
		strbuf_add_shell_word(out, arg);
		return;
	}
	strbuf_addstr(out, "$'");
	for (p = arg; *p; p++) {
		named = iscntrl((unsigned char)*p) ? memchr(escapes, *p, sizeof(escapes) - 1) : NULL;
		if (*p == '\'' || *p == '\\')
			strbuf_addf(out, "\\%c", *p);
		else if (named)
			strbuf_add(out, named + 1, 2);
		else if (iscntrl((unsigned char)*p))
			strbuf_addf(out, "\\x%02x", (unsigned char)*p);
		else
			strbuf_add(out, p, 1);
	}
	strbuf_addstr(out, "'");
}

void strbuf_add_shell_line_words(struct strbuf *out, char *const *words, size_t count)
{
	size_t i;

	for (i = 0; i < count; i++) {
		if (i)
			strbuf_addstr(out, " ");
		strbuf_add_shell_line_word(out, words[i]);
	}
}

/* The byte a \ escape in $'...' stands for; *p moves past what it used. */
static int shell_ansi_escape(const char **p)
{
	static const char named[] = "n\nt\tr\ra\ab\be\033f\fv\v\\\\''\"\"";
	const char *c = *p, *hit;
	int value = 0, digits;

	if (*c == 'x') {
		for (digits = 0; digits < 2 && hex_value(c[1]) >= 0; digits++, c++)
			value = value * 16 + hex_value(c[1]);
		*p = c;
		return digits ? value : -1;
	}
	if (*c >= '0' && *c <= '7') {
		for (digits = 0; digits < 3 && c[0] >= '0' && c[0] <= '7'; digits++, c++)
			value = value * 8 + (c[0] - '0');
		*p = c - 1;
		return value & 0xff;
	}
	for (hit = named; *hit; hit += 2)
		if (*hit == *c)
			return (unsigned char)hit[1];
	return -1;
}

void shell_words_free(char **words, size_t count)
{
	size_t i;

	for (i = 0; i < count; i++)
		free(words[i]);
	free(words);
}

int shell_split(const char *line, char ***words, size_t *count)
{
	struct strbuf word = STRBUF_INIT;
	const char *p = line;
	bool in_word = false;
	char quote = 0, c;
	int byte;

	*words = NULL;
	*count = 0;
	for (;; p++) {
		if (!quote && (!*p || *p == ' ' || *p == '\t')) {
			if (in_word) {
				*words = xrealloc(*words, (*count + 1) * sizeof(char *));
				(*words)[(*count)++] = word.buf ? word.buf : xstrdup("");
				word = (struct strbuf)STRBUF_INIT;
				in_word = false;
			}
			if (!*p)
				return 0;
			continue;
		}
		if (!*p)
			goto invalid;
		in_word = true;
		if (quote == '$' && *p == '\\' && p[1]) {
			/* Unknown escapes stay as written; a word cannot hold a NUL. */
			p++;
			byte = shell_ansi_escape(&p);
			if (byte == 0)
				goto invalid;
			if (byte < 0) {
				strbuf_add(&word, p - 1, 2);
			} else {
				c = (char)byte;
				strbuf_add(&word, &c, 1);
			}
		} else if (quote == '\'' || quote == '$') {
			if (*p == '\'')
				quote = 0;
			else
				strbuf_add(&word, p, 1);
		} else if (*p == '\\' && p[1] &&
			   (!quote || strchr("\"\\$`", p[1]))) {
			strbuf_add(&word, ++p, 1);
		} else if (quote == '"' && *p == '"') {
			quote = 0;
		} else if (!quote && *p == '$' && p[1] == '\'') {
			quote = '$';
			p++;
		} else if (!quote && (*p == '\'' || *p == '"')) {
			quote = *p;
		} else {
			strbuf_add(&word, p, 1);
		}
	}
invalid:
	strbuf_release(&word);
	shell_words_free(*words, *count);
	*words = NULL;
	*count = 0;
	return -EINVAL;
}

size_t str_split_fields(char *line, char sep, char **fields, size_t max)
{
	size_t n = 0;

	while (n < max) {
		fields[n++] = line;
		line = strchr(line, sep);
		if (!line)
			break;
		*line++ = '\0';
	}
	return n;
}
