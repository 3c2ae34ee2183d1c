/*
 * test_lib.c - the shared helpers: path containment, hex, strbuf.
 */
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

int main(void)
{
	RUN_TEST(test_path_is_contained);
	RUN_TEST(test_hex_encode);
	RUN_TEST(test_strbuf_grows);
	return check_failures ? 1 : 0;
}
