/*
 * test_json.c - the JSON reader, string quoting and the schema subset:
 * what parses to what, the exact messages (with line and column) for
 * malformed text, and the schema failures users will read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/lib.h"
#include "tests/unit/check.h"

static struct json *parse(const char *text)
{
	struct error err = { 0 };
	struct json *value = NULL;

	if (json_parse(text, strlen(text), &value, &err)) {
		fprintf(stderr, "parse of %s failed: %s\n", text, err.message);
		return NULL;
	}
	return value;
}

/* True when text fails to parse with exactly message. */
static bool parse_fails(const char *text, size_t len, const char *message)
{
	struct error err = { 0 };
	struct json *value = (struct json *)&err; /* must be reset to NULL */
	int ret;

	ret = json_parse(text, len, &value, &err);
	if (ret != -EINVAL || err.code != -EINVAL || value ||
	    strcmp(err.message, message)) {
		fprintf(stderr, "parse of '%.*s': ret %d, message '%s', expected '%s'\n",
			(int)len, text, ret, err.message, message);
		json_free(ret ? NULL : value);
		return false;
	}
	return true;
}

#define FAILS(text, message) parse_fails(text, strlen(text), message)

static void test_parse_types(void)
{
	struct json *v;

	v = parse(" null ");
	CHECK(v && v->type == JSON_NULL);
	json_free(v);
	v = parse("true");
	CHECK(v && v->type == JSON_BOOL && v->boolean);
	json_free(v);
	v = parse("\tfalse\r\n");
	CHECK(v && v->type == JSON_BOOL && !v->boolean);
	json_free(v);
	v = parse("-12.5e1");
	CHECK(v && v->type == JSON_NUMBER && v->number == -125.0);
	json_free(v);
	v = parse("0");
	CHECK(v && v->type == JSON_NUMBER && v->number == 0.0);
	json_free(v);
	v = parse("1E-2");
	CHECK(v && v->type == JSON_NUMBER && v->number == 0.01);
	json_free(v);
	v = parse("\"hi\"");
	CHECK(v && v->type == JSON_STRING && !strcmp(v->string, "hi"));
	json_free(v);
	v = parse("\"\"");
	CHECK(v && v->type == JSON_STRING && !strcmp(v->string, ""));
	json_free(v);
	v = parse("[]");
	CHECK(v && v->type == JSON_ARRAY && v->count == 0);
	json_free(v);
	v = parse("{ }");
	CHECK(v && v->type == JSON_OBJECT && v->count == 0);
	json_free(v);
	v = parse("[1, \"two\", true, null]");
	CHECK(v && v->type == JSON_ARRAY && v->count == 4);
	if (v && v->count == 4) {
		CHECK(v->items[0].type == JSON_NUMBER && v->items[0].number == 1);
		CHECK(v->items[1].type == JSON_STRING &&
		      !strcmp(v->items[1].string, "two"));
		CHECK(v->items[2].type == JSON_BOOL && v->items[2].boolean);
		CHECK(v->items[3].type == JSON_NULL);
	}
	json_free(v);
	json_free(NULL);
}

static void test_parse_nested(void)
{
	const struct json *a, *b, *c;
	struct json *v;

	v = parse("{\"a\": {\"b\": [1, {\"c\": [[], {}]}]}, \"d\": \"e\"}");
	CHECK(v && v->type == JSON_OBJECT && v->count == 2);
	a = json_get(v, "a");
	CHECK(a && a->type == JSON_OBJECT);
	b = json_get(a, "b");
	CHECK(b && b->type == JSON_ARRAY && b->count == 2);
	if (b && b->count == 2) {
		c = json_get(&b->items[1], "c");
		CHECK(c && c->type == JSON_ARRAY && c->count == 2);
		if (c && c->count == 2) {
			CHECK(c->items[0].type == JSON_ARRAY);
			CHECK(c->items[1].type == JSON_OBJECT);
		}
	}
	CHECK(v && !strcmp(v->keys[1], "d"));
	json_free(v);
}

static void test_parse_escapes(void)
{
	struct json *v;

	v = parse("\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"");
	CHECK(v && !strcmp(v->string, "a\"b\\c/d\be\ff\ng\rh\ti"));
	json_free(v);
	/* \u escapes: 1, 2 and 3 UTF-8 bytes, upper and lower case hex. */
	v = parse("\"\\u0041\\u00e9\\u20AC\"");
	CHECK(v && !strcmp(v->string, "A\xc3\xa9\xe2\x82\xac"));
	json_free(v);
	/* A surrogate pair: U+1F600 and U+10FFFF. */
	v = parse("\"x\\uD83D\\uDE00y\\udbff\\udfff\"");
	CHECK(v && !strcmp(v->string, "x\xf0\x9f\x98\x80y\xf4\x8f\xbf\xbf"));
	json_free(v);
	/* Raw UTF-8 passes through. */
	v = parse("\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
	CHECK(v && !strcmp(v->string, "caf\xc3\xa9 \xf0\x9f\x98\x80"));
	json_free(v);
}

static void test_parse_errors(void)
{
	CHECK(FAILS("", "line 1, column 1: expected a value, found end of input"));
	CHECK(FAILS("  \n ", "line 2, column 2: expected a value, found end of input"));
	CHECK(FAILS("[1, 2,]", "line 1, column 6: trailing comma in array"));
	CHECK(FAILS("{\n  \"a\": 1,\n}", "line 2, column 9: trailing comma in object"));
	CHECK(FAILS("{\"a\" 1}",
		    "line 1, column 6: expected ':' after object key, found '1'"));
	CHECK(FAILS("{\"a\": 1 \"b\": 2}",
		    "line 1, column 9: expected ',' or '}' in object, found '\"'"));
	CHECK(FAILS("[1 2]", "line 1, column 4: expected ',' or ']' in array, found '2'"));
	CHECK(FAILS("{a: 1}", "line 1, column 2: expected a string key, found 'a'"));
	CHECK(FAILS("[\"ok\",\n \"bad \\x\"]",
		    "line 2, column 7: invalid escape: backslash before 'x'"));
	CHECK(FAILS("\"\\u12G4\"",
		    "line 1, column 2: invalid \\u escape (expected 4 hex digits)"));
	CHECK(FAILS("{\"a\":\n  \"never closed}",
		    "line 2, column 3: unterminated string"));
	CHECK(FAILS("\"ends in a backslash\\",
		    "line 1, column 1: unterminated string"));
	CHECK(FAILS("\"tab\there\"",
		    "line 1, column 5: control character (byte 0x09) in string; it must be escaped"));
	CHECK(FAILS("[01]", "line 1, column 2: leading zero in number"));
	CHECK(FAILS("-00", "line 1, column 1: leading zero in number"));
	CHECK(FAILS("1.", "line 1, column 3: expected a digit after the decimal point, found end of input"));
	CHECK(FAILS(".5", "line 1, column 1: expected a value, found '.'"));
	CHECK(FAILS("-", "line 1, column 2: expected a digit, found end of input"));
	CHECK(FAILS("1e+", "line 1, column 4: expected a digit in the exponent, found end of input"));
	CHECK(FAILS("+1", "line 1, column 1: expected a value, found '+'"));
	CHECK(FAILS("1e999", "line 1, column 1: number out of range"));
	CHECK(FAILS("{} x", "line 1, column 4: unexpected 'x' after the value"));
	CHECK(FAILS("1 2", "line 1, column 3: unexpected '2' after the value"));
	CHECK(FAILS("truex", "line 1, column 5: unexpected 'x' after the value"));
	CHECK(FAILS("tru", "line 1, column 1: expected a value, found 't'"));
	CHECK(FAILS("nul", "line 1, column 1: expected a value, found 'n'"));
	CHECK(FAILS("[1,\n\n   NaN]", "line 3, column 4: expected a value, found 'N'"));
	CHECK(FAILS("\xef\xbb\xbf{}", "line 1, column 1: expected a value, found byte 0xef"));
	CHECK(parse_fails("[1]\0", 4, "line 1, column 4: unexpected byte 0x00 after the value"));
	/* Columns count characters: "é" is one column, not two. */
	CHECK(FAILS("[\"\xc3\xa9\", ]", "line 1, column 5: trailing comma in array"));
}

static void test_parse_unicode_errors(void)
{
	CHECK(FAILS("\"\\uD83D\"", "line 1, column 2: lone surrogate \\uD83D in string"));
	CHECK(FAILS("\"\\uD83Dx\"", "line 1, column 2: lone surrogate \\uD83D in string"));
	CHECK(FAILS("\"\\uD83D\\u0041\"", "line 1, column 2: lone surrogate \\uD83D in string"));
	CHECK(FAILS("\"\\uDE00\"", "line 1, column 2: lone surrogate \\uDE00 in string"));
	CHECK(FAILS("\"a\\u0000b\"", "line 1, column 3: \\u0000 is not allowed in strings"));
	/* Invalid UTF-8: stray continuation, overlong, encoded surrogate,
	 * past U+10FFFF, truncated. */
	CHECK(FAILS("\"a\x80\"", "line 1, column 3: invalid UTF-8 in string"));
	CHECK(FAILS("\"\xc0\xaf\"", "line 1, column 2: invalid UTF-8 in string"));
	CHECK(FAILS("\"\xe0\x80\xaf\"", "line 1, column 2: invalid UTF-8 in string"));
	CHECK(FAILS("\"\xed\xa0\x80\"", "line 1, column 2: invalid UTF-8 in string"));
	CHECK(FAILS("\"\xf4\x90\x80\x80\"", "line 1, column 2: invalid UTF-8 in string"));
	CHECK(FAILS("\"\xe2\x82\"", "line 1, column 2: invalid UTF-8 in string"));
	CHECK(FAILS("\"\xe2\x82", "line 1, column 2: invalid UTF-8 in string"));
}

static void test_parse_depth(void)
{
	char text[2 * 257 + 1];
	struct json *v;
	int i;

	for (i = 0; i < 256; i++) {
		text[i] = '[';
		text[256 + i] = ']';
	}
	text[512] = '\0';
	v = parse(text);
	CHECK(v != NULL);
	json_free(v);

	for (i = 0; i < 257; i++) {
		text[i] = '[';
		text[257 + i] = ']';
	}
	text[514] = '\0';
	CHECK(FAILS(text, "line 1, column 257: nesting deeper than 256 levels"));
	/* Objects count too; the failure frees the levels already built. */
	CHECK(FAILS("[{\"a\":[{\"b\":[1,2,{\"c\":tru}]}]}]",
		    "line 1, column 23: expected a value, found 't'"));
}

static void test_parse_duplicate_keys(void)
{
	struct json *v;

	CHECK(FAILS("{\"a\": 1, \"b\": 2, \"a\": 3}", "line 1, column 18: duplicate key \"a\""));
	CHECK(FAILS("{\"x\": {\"k\": 1,\n \"k\": 2}}", "line 2, column 2: duplicate key \"k\""));
	/* The first repeat in document order is named. */
	CHECK(FAILS("{\"z\":1,\"y\":1,\"y\":1,\"z\":1}", "line 1, column 14: duplicate key \"y\""));
	/* Keys that differ only after an escape are distinct. */
	v = parse("{\"a\": 1, \"\\u0061b\": 2, \"A\": 3}");
	CHECK(v && v->count == 3);
	json_free(v);
}

static void test_json_get(void)
{
	struct json *v;
	const struct json *x;

	v = parse("{\"url\": \"https://example.com\", \"n\": 3, \"\": null}");
	x = json_get(v, "url");
	CHECK(x && x->type == JSON_STRING && !strcmp(x->string, "https://example.com"));
	x = json_get(v, "n");
	CHECK(x && x->type == JSON_NUMBER && x->number == 3);
	x = json_get(v, "");
	CHECK(x && x->type == JSON_NULL);
	CHECK(!json_get(v, "missing"));
	CHECK(!json_get(v, "URL"));
	CHECK(!json_get(NULL, "url"));
	CHECK(!json_get(json_get(v, "n"), "url"));
	json_free(v);
	v = parse("[\"url\"]");
	CHECK(!json_get(v, "url"));
	json_free(v);
}

static void test_add_string_round_trip(void)
{
	static const char *const tricky[] = {
		"",
		"plain",
		"quote \" and backslash \\ and slash /",
		"\x01\x02\x1f control \b\f\n\r\t",
		"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
		"\\u0041 is not an escape here",
		"\x7f del",
		"trailing backslash \\",
	};
	struct strbuf sb = STRBUF_INIT;
	struct json *v;
	size_t i;

	for (i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
		strbuf_reset(&sb);
		json_add_string(&sb, tricky[i]);
		v = parse(sb.buf);
		CHECK(v && v->type == JSON_STRING && !strcmp(v->string, tricky[i]));
		json_free(v);
	}

	strbuf_reset(&sb);
	json_add_string(&sb, "a\"b\\c\n\x01");
	CHECK(!strcmp(sb.buf, "\"a\\\"b\\\\c\\u000a\\u0001\""));

	/* Invalid UTF-8 becomes U+FFFD, so what is written always parses. */
	strbuf_reset(&sb);
	json_add_string(&sb, "x\xff" "y\xc3");
	CHECK(!strcmp(sb.buf, "\"x\xef\xbf\xbdy\xef\xbf\xbd\""));
	v = parse(sb.buf);
	CHECK(v != NULL);
	json_free(v);

	/* Appends, not overwrites. */
	strbuf_reset(&sb);
	strbuf_addstr(&sb, "[");
	json_add_string(&sb, "a");
	strbuf_addstr(&sb, ",");
	json_add_string(&sb, "b");
	strbuf_addstr(&sb, "]");
	CHECK(!strcmp(sb.buf, "[\"a\",\"b\"]"));
	strbuf_release(&sb);
}

static void test_json_integer(void)
{
	static const struct {
		const char *text;
		bool ok;
		long long value;
	} cases[] = {
		{ "0", true, 0 },
		{ "-0", true, 0 },
		{ "42", true, 42 },
		{ "-7", true, -7 },
		{ "1.0", true, 1 },
		{ "1e3", true, 1000 },
		{ "9007199254740993", true, 9007199254740992LL }, /* rounded by double */
		{ "-9223372036854775808", true, (-9223372036854775807LL - 1) },
		{ "9223372036854775807", false, 0 }, /* is 2^63 as a double */
		{ "1e19", false, 0 },
		{ "-1e19", false, 0 },
		{ "1.5", false, 0 },
		{ "1e-3", false, 0 },
		{ "\"1\"", false, 0 },
		{ "true", false, 0 },
		{ "null", false, 0 },
	};
	struct json *v;
	long long n;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		v = parse(cases[i].text);
		n = 12345;
		CHECK(v && json_integer(v, &n) == cases[i].ok);
		if (cases[i].ok)
			CHECK(n == cases[i].value);
		else
			CHECK(n == 12345);
		json_free(v);
	}
	CHECK(!json_integer(NULL, &n));
}

static const char seed_schema[] =
	"{\n"
	"  \"type\": \"object\",\n"
	"  \"additionalProperties\": false,\n"
	"  \"properties\": {\n"
	"    \"url\": {\"type\": \"string\"},\n"
	"    \"output\": {\"type\": \"string\"},\n"
	"    \"artifacts\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}\n"
	"  },\n"
	"  \"required\": [\"url\", \"output\"]\n"
	"}\n";

/* Validates data against schema: 0, or -EINVAL with exactly message. */
static bool validates(const char *schema_text, const char *data, const char *message)
{
	struct json *schema = parse(schema_text), *value = parse(data);
	struct error err = { 0 };
	bool ok;
	int ret;

	if (!schema || !value) {
		json_free(schema);
		json_free(value);
		return false;
	}
	ret = json_schema_validate(schema, value, &err);
	if (!message)
		ok = ret == 0 && err.code == 0;
	else
		ok = ret == -EINVAL && err.code == -EINVAL && !strcmp(err.message, message);
	if (!ok)
		fprintf(stderr, "validate %s: ret %d, message '%s', expected '%s'\n",
			data, ret, err.message, message ? message : "(success)");
	json_free(schema);
	json_free(value);
	return ok;
}

static void test_schema_seed(void)
{
	const char *s = seed_schema;

	CHECK(validates(s, "{\"url\": \"https://x\", \"output\": \"out\"}", NULL));
	CHECK(validates(s, "{\"url\": \"u\", \"output\": \"o\", \"artifacts\": []}", NULL));
	CHECK(validates(s, "{\"url\": \"u\", \"output\": \"o\", \"artifacts\": [\"a\", \"b\"]}", NULL));
	CHECK(validates(s, "{\"output\": \"o\"}", "url: required"));
	CHECK(validates(s, "{\"url\": \"u\"}", "output: required"));
	CHECK(validates(s, "{\"url\": 5, \"output\": \"o\"}", "url: expected a string"));
	CHECK(validates(s, "{\"url\": null, \"output\": \"o\"}", "url: expected a string"));
	CHECK(validates(s, "{\"url\": \"u\", \"output\": \"o\", \"foo\": 1}",
			"unknown parameter 'foo' (additionalProperties is false)"));
	/* A misspelt key is named before the "required" it causes. */
	CHECK(validates(s, "{\"ulr\": \"u\", \"output\": \"o\"}",
			"unknown parameter 'ulr' (additionalProperties is false)"));
	CHECK(validates(s, "{\"url\": \"u\", \"output\": \"o\", \"artifacts\": [\"a\", 2]}",
			"artifacts[1]: expected a string"));
	CHECK(validates(s, "{\"url\": \"u\", \"output\": \"o\", \"artifacts\": \"a\"}",
			"artifacts: expected an array"));
	CHECK(validates(s, "[]", "expected an object"));
	CHECK(validates(s, "\"url\"", "expected an object"));
}

static void test_schema_keywords(void)
{
	const char *mode = "{\"properties\": {\"mode\": {\"enum\": [\"a\", \"b\"]}}}";
	const char *nested =
		"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"object\","
		" \"additionalProperties\": false, \"required\": [\"need\"],"
		" \"properties\": {\"b\": {\"type\": \"array\", \"items\":"
		" {\"type\": \"object\", \"properties\": {\"n\": {\"type\": \"integer\"}}}},"
		" \"need\": true}}}}";
	const char *extra = "{\"additionalProperties\": {\"type\": \"number\"},"
			    " \"properties\": {\"name\": {\"type\": \"string\"}}}";

	CHECK(validates(mode, "{\"mode\": \"a\"}", NULL));
	CHECK(validates(mode, "{\"mode\": \"c\"}", "mode: must be one of \"a\", \"b\""));
	CHECK(validates(mode, "{\"mode\": 1}", "mode: must be one of \"a\", \"b\""));
	CHECK(validates("{\"enum\": [1, 2.5, null, true, [1], {\"k\": \"v\"}]}", "{\"k\": \"v\"}", NULL));
	CHECK(validates("{\"enum\": [1, 2.5, null, true, [1], {\"k\": \"v\"}]}", "[1]", NULL));
	CHECK(validates("{\"enum\": [1, 2.5, null, true, [1], {\"k\": \"v\"}]}", "0.1",
			"must be one of 1, 2.5, null, true, [1], {\"k\":\"v\"}"));

	CHECK(validates("{\"type\": [\"string\", \"null\"]}", "null", NULL));
	CHECK(validates("{\"type\": [\"string\", \"null\"]}", "\"s\"", NULL));
	CHECK(validates("{\"type\": [\"string\", \"null\"]}", "1", "expected a string or null"));
	CHECK(validates("{\"type\": [\"string\", \"integer\", \"boolean\"]}", "1.5",
			"expected a string, an integer or a boolean"));
	CHECK(validates("{\"type\": \"integer\"}", "3", NULL));
	CHECK(validates("{\"type\": \"integer\"}", "3.0", NULL));
	CHECK(validates("{\"type\": \"integer\"}", "1e300", NULL));
	CHECK(validates("{\"type\": \"integer\"}", "3.5", "expected an integer"));
	CHECK(validates("{\"type\": \"number\"}", "3.5", NULL));
	CHECK(validates("{\"type\": \"boolean\"}", "0", "expected a boolean"));
	CHECK(validates("{\"type\": \"null\"}", "false", "expected null"));

	CHECK(validates(nested, "{\"a\": {\"need\": 1, \"b\": [{\"n\": 1}, {\"n\": 2}]}}", NULL));
	CHECK(validates(nested, "{\"a\": {\"need\": 1, \"b\": [{\"n\": 1}, {\"n\": 2.5}]}}",
			"a.b[1].n: expected an integer"));
	CHECK(validates(nested, "{\"a\": {\"b\": []}}", "a.need: required"));
	CHECK(validates(nested, "{\"a\": {\"need\": 1, \"c\": 0}}",
			"unknown parameter 'a.c' (additionalProperties is false)"));
	CHECK(validates(nested, "{\"a\": []}", "a: expected an object"));

	CHECK(validates(extra, "{\"name\": \"n\", \"x\": 1, \"y\": 2}", NULL));
	CHECK(validates(extra, "{\"name\": \"n\", \"x\": \"1\"}", "x: expected a number"));
	CHECK(validates("{\"properties\": {\"a\": false}}", "{\"a\": 1}", "a: not allowed"));
	CHECK(validates("true", "{\"anything\": [1]}", NULL));

	/* Unknown keywords are ignored; malformed known ones are reported. */
	CHECK(validates("{\"type\": \"string\", \"minLength\": 99, \"description\": \"d\"}",
			"\"s\"", NULL));
	CHECK(validates("{\"type\": \"text\"}", "\"s\"",
			"invalid schema: 'type' must be a type name or a list of them"));
	CHECK(validates("{\"required\": \"url\"}", "{}",
			"invalid schema: 'required' must be an array of names"));
	CHECK(validates("{\"enum\": \"a\"}", "\"a\"", "invalid schema: 'enum' must be an array"));
	CHECK(validates("[]", "1", "invalid schema: expected an object or a boolean"));
}

int main(void)
{
	RUN_TEST(test_parse_types);
	RUN_TEST(test_parse_nested);
	RUN_TEST(test_parse_escapes);
	RUN_TEST(test_parse_errors);
	RUN_TEST(test_parse_unicode_errors);
	RUN_TEST(test_parse_depth);
	RUN_TEST(test_parse_duplicate_keys);
	RUN_TEST(test_json_get);
	RUN_TEST(test_add_string_round_trip);
	RUN_TEST(test_json_integer);
	RUN_TEST(test_schema_seed);
	RUN_TEST(test_schema_keywords);
	return check_failures ? 1 : 0;
}
