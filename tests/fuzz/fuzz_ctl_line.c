/*
 * fuzz_ctl_line.c - libFuzzer target for shell_split, the parser of lines
 * written to the tree's ctl files.  Besides memory errors it checks the
 * round trips the CLI and the daemon rely on: words quoted with
 * strbuf_add_shell_word, or with strbuf_add_shell_line_word (which must
 * also keep them on one line), and joined by spaces split back to the
 * same words.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(char **words, size_t count,
			     void (*quote)(struct strbuf *, const char *))
{
	struct strbuf joined = STRBUF_INIT;
	char **back;
	size_t i, back_count;

	for (i = 0; i < count; i++) {
		if (i)
			strbuf_addstr(&joined, " ");
		quote(&joined, words[i]);
	}
	if (quote == strbuf_add_shell_line_word && joined.buf && strchr(joined.buf, '\n'))
		abort();
	if (shell_split(joined.buf ? joined.buf : "", &back, &back_count) < 0)
		abort();
	if (back_count != count)
		abort();
	for (i = 0; i < count; i++)
		if (strcmp(words[i], back[i]))
			abort();
	shell_words_free(back, back_count);
	strbuf_release(&joined);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf line = STRBUF_INIT;
	char **words;
	size_t count;

	/* libFuzzer's bytes are not NUL-terminated; a ctl line never holds NUL. */
	strbuf_add(&line, data, size);
	if (shell_split(line.buf, &words, &count) < 0) {
		strbuf_release(&line);
		return 0;
	}
	check_round_trip(words, count, strbuf_add_shell_word);
	check_round_trip(words, count, strbuf_add_shell_line_word);
	shell_words_free(words, count);
	strbuf_release(&line);
	return 0;
}
