/*
 * test_lib.c - the shared helpers: path containment, hex, base64, strbuf.
 */
#include <errno.h>
#include <string.h>

#include "lib/lib.h"
#include "tests/unit/check.h"

static void test_path_is_contained(void)
{
	CHECK(path_is_contained("a"));
	CHECK(path_is_contained("a/b/c.txt"));
	CHECK(path_is_contained("..a/b.."));
	CHECK(!path_is_contained(""));
	CHECK(!path_is_contained("/etc"));
	CHECK(!path_is_contained(".."));
	CHECK(!path_is_contained("a/../b"));
	CHECK(!path_is_contained("a/.."));
	CHECK(!path_is_contained("a//b"));
	CHECK(!path_is_contained("./a"));
	CHECK(!path_is_contained("a/"));
}

static void test_hex_encode(void)
{
	uint8_t bytes[4] = { 0x00, 0x7f, 0xa5, 0xff };
	char hex[9];

	hex_encode(bytes, sizeof(bytes), hex);
	CHECK(!strcmp(hex, "007fa5ff"));
}

/* RFC 4648's test vectors, both ways, and what the decoder refuses. */
static void test_base64(void)
{
	static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const coded[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
					     "Zm9vYmFy" };
	struct strbuf sb = STRBUF_INIT;
	uint8_t high[2] = { 0xfb, 0xff };
	size_t i;

	for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		strbuf_reset(&sb);
		base64_encode(plain[i], strlen(plain[i]), false, &sb);
		CHECK(!strcmp(sb.buf ? sb.buf : "", coded[i]));
		strbuf_reset(&sb);
		CHECK(base64_decode(coded[i], &sb) == 0);
		CHECK(sb.len == strlen(plain[i]) && !memcmp(sb.buf ? sb.buf : "", plain[i], sb.len));
	}
	strbuf_reset(&sb);
	base64_encode(high, 2, true, &sb);
	CHECK(!strcmp(sb.buf, "-_8="));
	strbuf_reset(&sb);
	base64_encode(high, 2, false, &sb);
	CHECK(!strcmp(sb.buf, "+/8="));
	strbuf_reset(&sb);
	CHECK(base64_decode("-_8", &sb) == 0 && sb.len == 2 && !memcmp(sb.buf, high, 2));
	CHECK(base64_decode("Zm9v!", &sb) == -EINVAL);
	CHECK(base64_decode("Z", &sb) == -EINVAL);
	strbuf_release(&sb);
}

static void test_strbuf_grows(void)
{
	struct strbuf sb = STRBUF_INIT;
	int i;

	for (i = 0; i < 1000; i++)
		strbuf_addf(&sb, "%04d,", i);
	CHECK(sb.len == 5000);
	CHECK(!strncmp(sb.buf + 4995, "0999,", 5));
	strbuf_reset(&sb);
	CHECK(sb.len == 0 && sb.buf[0] == '\0');
	strbuf_release(&sb);
}

static void test_strbuf_trim_end(void)
{
	struct strbuf sb = STRBUF_INIT;

	strbuf_trim_end(&sb);
	CHECK(sb.len == 0);
	strbuf_addstr(&sb, " a line \t\n\n");
	strbuf_trim_end(&sb);
	CHECK(!strcmp(sb.buf, " a line") && sb.len == 7);
	strbuf_reset(&sb);
	strbuf_addstr(&sb, "\n \n");
	strbuf_trim_end(&sb);
	CHECK(sb.len == 0 && sb.buf[0] == '\0');
	strbuf_release(&sb);
}

/* line splits into exactly the n words. */
static void check_split_back(const char *line, const char *const *words, size_t n)
{
	char **back;
	size_t i, count;

	CHECK(shell_split(line, &back, &count) == 0);
	CHECK(count == n);
	for (i = 0; i < count && i < n; i++)
		CHECK(!strcmp(back[i], words[i]));
	shell_words_free(back, count);
}

/* What strbuf_add_shell_word writes, shell_split reads back word for word. */
static void test_shell_words(void)
{
	static const char *const words[] = { "a", "b c", "it's", "", "$HOME \"q\"\\" };
	struct strbuf line = STRBUF_INIT;
	char **back;
	size_t i, count;

	for (i = 0; i < 5; i++) {
		if (i)
			strbuf_addstr(&line, " ");
		strbuf_add_shell_word(&line, words[i]);
	}
	check_split_back(line.buf, words, 5);
	CHECK(shell_split("  x\t\"y z\"  'w' ", &back, &count) == 0);
	CHECK(count == 3 && !strcmp(back[1], "y z") && !strcmp(back[2], "w"));
	shell_words_free(back, count);
	CHECK(shell_split("a 'open", &back, &count) == -EINVAL);
	CHECK(back == NULL && count == 0);
	strbuf_release(&line);
}

/* A ctl line: words with newlines and other control bytes stay on one line. */
static void test_shell_line_words(void)
{
	static const char *const words[] = { "plain", "two\nlines", "tab\there 'q' \\", "\x01\x7f\r",
					     "caf\xc3\xa9" };
	static const char start[] = "plain $'two\\nlines' ";
	struct strbuf line = STRBUF_INIT;
	char **back;
	size_t count;

	strbuf_add_shell_line_words(&line, (char *const *)words, 5);
	CHECK(!strchr(line.buf, '\n') && !strchr(line.buf, '\t'));
	CHECK(!strncmp(line.buf, start, sizeof(start) - 1));
	check_split_back(line.buf, words, 5);
	/* bash's escapes, and an unknown one kept as written. */
	CHECK(shell_split("$'\\101\\x42\\e\\q' x$'\\''y", &back, &count) == 0);
	CHECK(count == 2 && !strcmp(back[0], "AB\033\\q") && !strcmp(back[1], "x'y"));
	shell_words_free(back, count);
	CHECK(shell_split("$'nul\\x00'", &back, &count) == -EINVAL);
	CHECK(shell_split("$'open", &back, &count) == -EINVAL);
	strbuf_release(&line);
}

int main(void)
{
	RUN_TEST(test_path_is_contained);
	RUN_TEST(test_shell_line_words);
	RUN_TEST(test_hex_encode);
	RUN_TEST(test_base64);
	RUN_TEST(test_strbuf_grows);
	RUN_TEST(test_strbuf_trim_end);
	RUN_TEST(test_shell_words);
	return check_failures ? 1 : 0;
}
