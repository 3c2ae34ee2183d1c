/*
 * json.c - strict JSON reading, string quoting and schema checks.  The text
 * comes from users and other tools, so the reader follows RFC 8259 to the
 * letter: whatever a lenient reader would guess at (trailing commas,
 * duplicate keys, broken UTF-8) is refused with its line and column, so a
 * mistake is reported where it was made rather than acted on.
 */
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/lib.h"

/*
 * The parser and the validator recurse once per level; the limit keeps a
 * hostile "[[[[..." from exhausting the stack, and no real document nests
 * anywhere near it.
 */
#define JSON_MAX_DEPTH 256

/*
 * Decodes one UTF-8 sequence at p (avail > 0 bytes): its length, or 0 when
 * it is malformed, truncated, overlong, a surrogate or past U+10FFFF - the
 * forms RFC 3629 forbids - so that every string handed out is valid UTF-8.
 */
static size_t utf8_decode(const unsigned char *p, size_t avail, uint32_t *cp)
{
	uint32_t c;
	size_t n, i;

	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if (p[0] < 0xc2) /* a continuation byte, or an overlong 2-byte lead */
		return 0;
	if (p[0] < 0xe0) {
		n = 2;
		c = p[0] & 0x1f;
	} else if (p[0] < 0xf0) {
		n = 3;
		c = p[0] & 0x0f;
	} else if (p[0] < 0xf5) {
		n = 4;
		c = p[0] & 0x07;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) || c > 0x10ffff ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

static void utf8_encode(struct strbuf *sb, uint32_t c)
{
	unsigned char b[4];
	size_t n;

	if (c < 0x80) {
		b[0] = (unsigned char)c;
		n = 1;
	} else if (c < 0x800) {
		b[0] = (unsigned char)(0xc0 | c >> 6);
		b[1] = (unsigned char)(0x80 | (c & 0x3f));
		n = 2;
	} else if (c < 0x10000) {
		b[0] = (unsigned char)(0xe0 | c >> 12);
		b[1] = (unsigned char)(0x80 | (c >> 6 & 0x3f));
		b[2] = (unsigned char)(0x80 | (c & 0x3f));
		n = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | c >> 18);
		b[1] = (unsigned char)(0x80 | (c >> 12 & 0x3f));
		b[2] = (unsigned char)(0x80 | (c >> 6 & 0x3f));
		b[3] = (unsigned char)(0x80 | (c & 0x3f));
		n = 4;
	}
	strbuf_add(sb, b, n);
}

/* Frees what value owns, leaving the struct itself to its owner. */
static void json_release(struct json *value)
{
	size_t i;

	switch (value->type) {
	case JSON_STRING:
		free(value->string);
		break;
	case JSON_OBJECT:
		for (i = 0; i < value->count; i++)
			free(value->keys[i]);
		free(value->keys);
		/* fall through */
	case JSON_ARRAY:
		for (i = 0; i < value->count; i++)
			json_release(&value->items[i]);
		free(value->items);
		break;
	default:
		break;
	}
	memset(value, 0, sizeof(*value));
}

void json_free(struct json *value)
{
	if (!value)
		return;
	json_release(value);
	free(value);
}

const struct json *json_get(const struct json *object, const char *key)
{
	size_t i;

	if (!object || object->type != JSON_OBJECT)
		return NULL;
	for (i = 0; i < object->count; i++)
		if (!strcmp(object->keys[i], key))
			return &object->items[i];
	return NULL;
}

int json_get_strings(const struct json *object, const char *key, char ***out, size_t *count,
		     struct error *err)
{
	const struct json *list = json_get(object, key);
	size_t i;

	*out = NULL;
	*count = 0;
	if (!list || list->type == JSON_NULL)
		return 0;
	if (list->type != JSON_ARRAY)
		return error_set(err, -EINVAL, "%s: expected a list of strings", key);
	for (i = 0; i < list->count; i++)
		if (list->items[i].type != JSON_STRING)
			return error_set(err, -EINVAL, "%s[%zu]: expected a string", key, i);
	*out = xcalloc(list->count + 1, sizeof(char *));
	for (i = 0; i < list->count; i++)
		(*out)[i] = list->items[i].string;
	*count = list->count;
	return 0;
}

bool json_integer(const struct json *value, long long *out)
{
	long long n;

	/*
	 * [-2^63, 2^63) in doubles: LLONG_MAX itself rounds up to 2^63, which
	 * does not fit, hence the strict upper bound (NaN fails both).
	 */
	if (!value || value->type != JSON_NUMBER ||
	    !(value->number >= -9223372036854775808.0 &&
	      value->number < 9223372036854775808.0))
		return false;
	n = (long long)value->number;
	if ((double)n != value->number)
		return false;
	*out = n;
	return true;
}

void json_add_string(struct strbuf *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s), i = 0, run = 0, n;
	uint32_t cp;

	strbuf_add(out, "\"", 1);
	/* Plain bytes are copied in runs; only what needs escaping breaks one. */
	while (i < len) {
		if (p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\') {
			i++;
			continue;
		}
		if (p[i] >= 0x80 && (n = utf8_decode(p + i, len - i, &cp))) {
			i += n;
			continue;
		}
		strbuf_add(out, s + run, i - run);
		if (p[i] == '"' || p[i] == '\\')
			strbuf_addf(out, "\\%c", p[i]);
		else if (p[i] < 0x20)
			strbuf_addf(out, "\\u%04x", p[i]);
		else
			strbuf_add(out, "\xef\xbf\xbd", 3); /* U+FFFD */
		run = ++i;
	}
	strbuf_add(out, s + run, i - run);
	strbuf_add(out, "\"", 1);
}

void json_add_strings_field(struct strbuf *out, const char *key, char *const *items,
			    size_t count)
{
	size_t i;

	strbuf_addstr(out, ",");
	json_add_string(out, key);
	strbuf_addstr(out, ":[");
	for (i = 0; i < count; i++) {
		if (i)
			strbuf_addstr(out, ",");
		json_add_string(out, items[i]);
	}
	strbuf_addstr(out, "]");
}

/* Shortest "%.*g" that reads back as the same double. */
static void json_add_number(struct strbuf *out, double number)
{
	char buf[32];
	int precision;

	for (precision = 15; precision < 17; precision++) {
		snprintf(buf, sizeof(buf), "%.*g", precision, number);
		if (strtod(buf, NULL) == number)
			break;
	}
	if (precision == 17)
		snprintf(buf, sizeof(buf), "%.17g", number);
	strbuf_addstr(out, buf);
}

void json_add_value(struct strbuf *out, const struct json *value)
{
	size_t i;

	switch (value->type) {
	case JSON_NULL:
		strbuf_addstr(out, "null");
		break;
	case JSON_BOOL:
		strbuf_addstr(out, value->boolean ? "true" : "false");
		break;
	case JSON_NUMBER:
		json_add_number(out, value->number);
		break;
	case JSON_STRING:
		json_add_string(out, value->string);
		break;
	case JSON_ARRAY:
		strbuf_addstr(out, "[");
		for (i = 0; i < value->count; i++) {
			if (i)
				strbuf_addstr(out, ",");
			json_add_value(out, &value->items[i]);
		}
		strbuf_addstr(out, "]");
		break;
	case JSON_OBJECT:
		strbuf_addstr(out, "{");
		for (i = 0; i < value->count; i++) {
			if (i)
				strbuf_addstr(out, ",");
			json_add_string(out, value->keys[i]);
			strbuf_addstr(out, ":");
			json_add_value(out, &value->items[i]);
		}
		strbuf_addstr(out, "}");
		break;
	}
}

/* Parsing. */

struct parser {
	const char *text;
	size_t len;
	size_t pos;
	int depth;
	struct error *err;
};

static int parse_fail(struct parser *p, size_t at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Records "line L, column C: reason" for the byte at offset at.  The place
 * is worked out only here, on failure, so the happy path counts nothing;
 * columns count characters (not UTF-8 continuation bytes), as editors do.
 */
static int parse_fail(struct parser *p, size_t at, const char *fmt, ...)
{
	char reason[768];
	size_t line = 1, column = 1, i;
	va_list ap;

	for (i = 0; i < at && i < p->len; i++) {
		if (p->text[i] == '\n') {
			line++;
			column = 1;
		} else if (((unsigned char)p->text[i] & 0xc0) != 0x80) {
			column++;
		}
	}
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	return error_set(p->err, -EINVAL, "line %zu, column %zu: %s", line,
			 column, reason);
}

/* The byte at offset at as a message shows it: 'x', byte 0x01, end of input. */
static const char *describe(const struct parser *p, size_t at, char out[32])
{
	unsigned char c;

	if (at >= p->len) {
		snprintf(out, 32, "end of input");
		return out;
	}
	c = (unsigned char)p->text[at];
	if (c >= 0x20 && c < 0x7f)
		snprintf(out, 32, "'%c'", c);
	else
		snprintf(out, 32, "byte 0x%02x", c);
	return out;
}

static void skip_ws(struct parser *p)
{
	while (p->pos < p->len &&
	       (p->text[p->pos] == ' ' || p->text[p->pos] == '\t' ||
		p->text[p->pos] == '\n' || p->text[p->pos] == '\r'))
		p->pos++;
}

static bool at_char(const struct parser *p, char c)
{
	return p->pos < p->len && p->text[p->pos] == c;
}

static bool is_digit_at(const struct parser *p, size_t at)
{
	return at < p->len && p->text[at] >= '0' && p->text[at] <= '9';
}

static int parse_value(struct parser *p, struct json *value);

/* Four hex digits at offset at, or -1. */
static long parse_hex4(const struct parser *p, size_t at)
{
	long v = 0;
	size_t i;
	int digit;

	if (at > p->len || p->len - at < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		digit = hex_value(p->text[at + i]);
		if (digit < 0)
			return -1;
		v = v << 4 | digit;
	}
	return v;
}

/* A \uXXXX escape (two for a surrogate pair) at p->pos, appended as UTF-8. */
static int parse_unicode_escape(struct parser *p, struct strbuf *sb)
{
	size_t at = p->pos;
	long hi, lo;

	hi = parse_hex4(p, at + 2);
	if (hi < 0)
		return parse_fail(p, at, "invalid \\u escape (expected 4 hex digits)");
	if (hi >= 0xdc00 && hi <= 0xdfff)
		return parse_fail(p, at, "lone surrogate \\u%04lX in string", hi);
	if (hi >= 0xd800 && hi <= 0xdbff) {
		/* UTF-16 spells what lies past U+FFFF as a high-low pair. */
		lo = -1;
		if (at + 7 < p->len && p->text[at + 6] == '\\' &&
		    p->text[at + 7] == 'u')
			lo = parse_hex4(p, at + 8);
		if (lo < 0xdc00 || lo > 0xdfff)
			return parse_fail(p, at, "lone surrogate \\u%04lX in string",
					  hi);
		utf8_encode(sb, 0x10000 + (((uint32_t)hi - 0xd800) << 10) +
					((uint32_t)lo - 0xdc00));
		p->pos += 12;
		return 0;
	}
	if (hi == 0)
		/* Strings are handed out NUL-terminated: a NUL would cut them. */
		return parse_fail(p, at, "\\u0000 is not allowed in strings");
	utf8_encode(sb, (uint32_t)hi);
	p->pos += 6;
	return 0;
}

/* The string literal at p->pos (a '"'); *out gets a malloc'd copy. */
static int parse_string(struct parser *p, char **out)
{
	const unsigned char *text = (const unsigned char *)p->text;
	struct strbuf sb = STRBUF_INIT;
	size_t start = p->pos, run, n;
	char what[32];
	uint32_t cp;
	int ret;

	p->pos++;
	for (;;) {
		run = p->pos;
		while (p->pos < p->len && text[p->pos] >= 0x20 &&
		       text[p->pos] != '"' && text[p->pos] != '\\') {
			if (text[p->pos] < 0x80) {
				p->pos++;
				continue;
			}
			n = utf8_decode(text + p->pos, p->len - p->pos, &cp);
			if (!n) {
				ret = parse_fail(p, p->pos, "invalid UTF-8 in string");
				goto fail;
			}
			p->pos += n;
		}
		strbuf_add(&sb, p->text + run, p->pos - run);
		if (p->pos >= p->len) {
			/* The opening quote is where the fix usually goes. */
			ret = parse_fail(p, start, "unterminated string");
			goto fail;
		}
		if (text[p->pos] == '"')
			break;
		if (text[p->pos] < 0x20) {
			ret = parse_fail(p, p->pos,
					 "control character (byte 0x%02x) in string; it must be escaped",
					 text[p->pos]);
			goto fail;
		}
		/* A backslash. */
		if (p->pos + 1 >= p->len) {
			ret = parse_fail(p, start, "unterminated string");
			goto fail;
		}
		switch (p->text[p->pos + 1]) {
		case '"':  strbuf_add(&sb, "\"", 1); break;
		case '\\': strbuf_add(&sb, "\\", 1); break;
		case '/':  strbuf_add(&sb, "/", 1); break;
		case 'b':  strbuf_add(&sb, "\b", 1); break;
		case 'f':  strbuf_add(&sb, "\f", 1); break;
		case 'n':  strbuf_add(&sb, "\n", 1); break;
		case 'r':  strbuf_add(&sb, "\r", 1); break;
		case 't':  strbuf_add(&sb, "\t", 1); break;
		case 'u':
			ret = parse_unicode_escape(p, &sb);
			if (ret)
				goto fail;
			continue;
		default:
			ret = parse_fail(p, p->pos, "invalid escape: backslash before %s",
					 describe(p, p->pos + 1, what));
			goto fail;
		}
		p->pos += 2;
	}
	p->pos++;
	*out = sb.buf ? sb.buf : xstrdup("");
	return 0;
fail:
	strbuf_release(&sb);
	return ret;
}

static int parse_number(struct parser *p, struct json *value)
{
	size_t start = p->pos, n;
	char small[64], *buf, what[32];
	double d;

	if (at_char(p, '-'))
		p->pos++;
	if (!is_digit_at(p, p->pos))
		return parse_fail(p, p->pos, "expected a digit, found %s",
				  describe(p, p->pos, what));
	if (p->text[p->pos] == '0') {
		p->pos++;
		if (is_digit_at(p, p->pos))
			return parse_fail(p, start, "leading zero in number");
	} else {
		while (is_digit_at(p, p->pos))
			p->pos++;
	}
	if (at_char(p, '.')) {
		p->pos++;
		if (!is_digit_at(p, p->pos))
			return parse_fail(p, p->pos,
					  "expected a digit after the decimal point, found %s",
					  describe(p, p->pos, what));
		while (is_digit_at(p, p->pos))
			p->pos++;
	}
	if (at_char(p, 'e') || at_char(p, 'E')) {
		p->pos++;
		if (at_char(p, '+') || at_char(p, '-'))
			p->pos++;
		if (!is_digit_at(p, p->pos))
			return parse_fail(p, p->pos,
					  "expected a digit in the exponent, found %s",
					  describe(p, p->pos, what));
		while (is_digit_at(p, p->pos))
			p->pos++;
	}

	/*
	 * The grammar is checked above; strtod only converts, on a
	 * NUL-terminated copy because text need not be terminated.  dstack
	 * never calls setlocale, so strtod's decimal point is '.'.
	 */
	n = p->pos - start;
	buf = n < sizeof(small) ? small : xmalloc(n + 1);
	memcpy(buf, p->text + start, n);
	buf[n] = '\0';
	d = strtod(buf, NULL);
	if (buf != small)
		free(buf);
	if (d > DBL_MAX || d < -DBL_MAX)
		return parse_fail(p, start, "number out of range");
	value->type = JSON_NUMBER;
	value->number = d;
	return 0;
}

static int parse_literal(struct parser *p, struct json *value, const char *word)
{
	size_t n = strlen(word);
	char what[32];

	if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n))
		return parse_fail(p, p->pos, "expected a value, found %s",
				  describe(p, p->pos, what));
	p->pos += n;
	if (word[0] == 'n') {
		value->type = JSON_NULL;
	} else {
		value->type = JSON_BOOL;
		value->boolean = word[0] == 't';
	}
	return 0;
}

static int enter(struct parser *p)
{
	if (++p->depth > JSON_MAX_DEPTH)
		return parse_fail(p, p->pos, "nesting deeper than %d levels",
				  JSON_MAX_DEPTH);
	return 0;
}

static int parse_array(struct parser *p, struct json *value)
{
	size_t alloc = 0, comma;
	char what[32];
	int ret;

	value->type = JSON_ARRAY;
	ret = enter(p);
	if (ret)
		return ret;
	p->pos++;
	skip_ws(p);
	if (at_char(p, ']'))
		goto done;
	for (;;) {
		if (value->count == alloc) {
			alloc = alloc ? 2 * alloc : 4;
			value->items = xrealloc(value->items, alloc * sizeof(*value->items));
		}
		/*
		 * Counted before it is filled, so that on failure json_release
		 * frees whatever the element got before it failed.
		 */
		memset(&value->items[value->count], 0, sizeof(*value->items));
		ret = parse_value(p, &value->items[value->count++]);
		if (ret)
			return ret;
		skip_ws(p);
		if (at_char(p, ']'))
			break;
		if (!at_char(p, ','))
			return parse_fail(p, p->pos, "expected ',' or ']' in array, found %s",
					  describe(p, p->pos, what));
		comma = p->pos++;
		skip_ws(p);
		if (at_char(p, ']'))
			return parse_fail(p, comma, "trailing comma in array");
	}
done:
	p->pos++;
	p->depth--;
	return 0;
}

struct key_place {
	const char *key;
	size_t index;
};

static int key_place_cmp(const void *a, const void *b)
{
	const struct key_place *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

/*
 * Refuses a key that appears twice: RFC 8259 leaves the meaning open and
 * readers disagree (first wins, last wins), so a duplicate is almost always
 * a mistake.  Sorting keeps large objects from going quadratic; the error
 * names the first repeat in document order, at its own place (places[i] is
 * the offset of key i).
 */
static int check_duplicate_keys(struct parser *p, const struct json *object,
				const size_t *places)
{
	struct key_place *sorted;
	struct strbuf quoted = STRBUF_INIT;
	size_t i, first = SIZE_MAX;
	int ret = 0;

	if (object->count < 2)
		return 0;
	sorted = xmalloc(object->count * sizeof(*sorted));
	for (i = 0; i < object->count; i++) {
		sorted[i].key = object->keys[i];
		sorted[i].index = i;
	}
	qsort(sorted, object->count, sizeof(*sorted), key_place_cmp);
	for (i = 1; i < object->count; i++)
		if (!strcmp(sorted[i - 1].key, sorted[i].key) &&
		    sorted[i].index < first)
			first = sorted[i].index;
	free(sorted);
	if (first != SIZE_MAX) {
		json_add_string(&quoted, object->keys[first]);
		ret = parse_fail(p, places[first], "duplicate key %s", quoted.buf);
		strbuf_release(&quoted);
	}
	return ret;
}

static int parse_object(struct parser *p, struct json *value)
{
	size_t alloc = 0, comma, *places = NULL;
	char what[32], *key;
	int ret;

	value->type = JSON_OBJECT;
	ret = enter(p);
	if (ret)
		return ret;
	p->pos++;
	skip_ws(p);
	if (at_char(p, '}'))
		goto done;
	for (;;) {
		if (!at_char(p, '"')) {
			ret = parse_fail(p, p->pos, "expected a string key, found %s",
					 describe(p, p->pos, what));
			goto out;
		}
		if (value->count == alloc) {
			alloc = alloc ? 2 * alloc : 4;
			value->items = xrealloc(value->items, alloc * sizeof(*value->items));
			value->keys = xrealloc(value->keys, alloc * sizeof(*value->keys));
			places = xrealloc(places, alloc * sizeof(*places));
		}
		places[value->count] = p->pos;
		ret = parse_string(p, &key);
		if (ret)
			goto out;
		/* Counted at once, as in parse_array, so failures free it all. */
		value->keys[value->count] = key;
		memset(&value->items[value->count], 0, sizeof(*value->items));
		value->count++;
		skip_ws(p);
		if (!at_char(p, ':')) {
			ret = parse_fail(p, p->pos, "expected ':' after object key, found %s",
					 describe(p, p->pos, what));
			goto out;
		}
		p->pos++;
		ret = parse_value(p, &value->items[value->count - 1]);
		if (ret)
			goto out;
		skip_ws(p);
		if (at_char(p, '}'))
			break;
		if (!at_char(p, ',')) {
			ret = parse_fail(p, p->pos, "expected ',' or '}' in object, found %s",
					 describe(p, p->pos, what));
			goto out;
		}
		comma = p->pos++;
		skip_ws(p);
		if (at_char(p, '}')) {
			ret = parse_fail(p, comma, "trailing comma in object");
			goto out;
		}
	}
	ret = check_duplicate_keys(p, value, places);
	if (ret)
		goto out;
done:
	p->pos++;
	p->depth--;
out:
	free(places);
	return ret;
}

static int parse_value(struct parser *p, struct json *value)
{
	char what[32];

	skip_ws(p);
	if (p->pos >= p->len)
		return parse_fail(p, p->pos, "expected a value, found end of input");
	switch (p->text[p->pos]) {
	case '{':
		return parse_object(p, value);
	case '[':
		return parse_array(p, value);
	case '"':
		value->type = JSON_STRING;
		return parse_string(p, &value->string);
	case 't':
		return parse_literal(p, value, "true");
	case 'f':
		return parse_literal(p, value, "false");
	case 'n':
		return parse_literal(p, value, "null");
	case '-':
	case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		return parse_number(p, value);
	default:
		return parse_fail(p, p->pos, "expected a value, found %s",
				  describe(p, p->pos, what));
	}
}

int json_parse(const char *text, size_t len, struct json **out, struct error *err)
{
	struct parser p = { text, len, 0, 0, err };
	struct json *value = xcalloc(1, sizeof(*value));
	char what[32];
	int ret;

	*out = NULL;
	ret = parse_value(&p, value);
	if (!ret) {
		skip_ws(&p);
		if (p.pos < len)
			ret = parse_fail(&p, p.pos, "unexpected %s after the value",
					 describe(&p, p.pos, what));
	}
	if (ret) {
		json_free(value);
		return ret;
	}
	*out = value;
	return 0;
}

/* Schema validation. */

struct validator {
	struct strbuf path;	/* where in the value we are: "a.b[2]" */
	struct error *err;
};

static int validate_fail(struct validator *vd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Records "path: reason", or just the reason at the root. */
static int validate_fail(struct validator *vd, const char *fmt, ...)
{
	struct strbuf reason = STRBUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	strbuf_vaddf(&reason, fmt, ap);
	va_end(ap);
	if (vd->path.len)
		error_set(vd->err, -EINVAL, "%s: %s", vd->path.buf, reason.buf);
	else
		error_set(vd->err, -EINVAL, "%s", reason.buf);
	strbuf_release(&reason);
	return -EINVAL;
}

/*
 * Appends key to the path; returns the old length for path_pop.  Control
 * characters are spelled \xNN, so the message stays on one line.
 */
static size_t path_push_key(struct validator *vd, const char *key)
{
	size_t old = vd->path.len;
	const unsigned char *k = (const unsigned char *)key;

	strbuf_grow(&vd->path, 0); /* path.buf is printed even when "" */
	if (old)
		strbuf_add(&vd->path, ".", 1);
	if (!*k)
		strbuf_addstr(&vd->path, "\"\"");
	for (; *k; k++) {
		if (*k < 0x20 || *k == 0x7f)
			strbuf_addf(&vd->path, "\\x%02x", *k);
		else
			strbuf_add(&vd->path, k, 1);
	}
	return old;
}

static size_t path_push_index(struct validator *vd, size_t index)
{
	size_t old = vd->path.len;

	strbuf_addf(&vd->path, "[%zu]", index);
	return old;
}

static void path_pop(struct validator *vd, size_t old)
{
	vd->path.len = old;
	if (vd->path.buf)
		vd->path.buf[old] = '\0';
}

static const struct {
	const char *name;
	const char *phrase;	/* as in "expected a string" */
} schema_types[] = {
	{ "null", "null" },
	{ "boolean", "a boolean" },
	{ "number", "a number" },
	{ "integer", "an integer" },
	{ "string", "a string" },
	{ "array", "an array" },
	{ "object", "an object" },
};

/* The index of name in schema_types, or -1. */
static int schema_type_index(const struct json *name)
{
	size_t i;

	if (name->type != JSON_STRING)
		return -1;
	for (i = 0; i < sizeof(schema_types) / sizeof(schema_types[0]); i++)
		if (!strcmp(schema_types[i].name, name->string))
			return (int)i;
	return -1;
}

static bool type_matches(int type, const struct json *value)
{
	switch (type) {
	case 0:
		return value->type == JSON_NULL;
	case 1:
		return value->type == JSON_BOOL;
	case 2:
		return value->type == JSON_NUMBER;
	case 3:
		/*
		 * JSON Schema's integer is any number without a fraction, 1.0
		 * included; past 2^53 every double is one, and nearer zero the
		 * round trip through long long is exact.
		 */
		return value->type == JSON_NUMBER &&
		       (value->number >= 9007199254740992.0 ||
			value->number <= -9007199254740992.0 ||
			(double)(long long)value->number == value->number);
	case 4:
		return value->type == JSON_STRING;
	case 5:
		return value->type == JSON_ARRAY;
	default:
		return value->type == JSON_OBJECT;
	}
}

static int check_type(struct validator *vd, const struct json *type,
		      const struct json *value)
{
	struct strbuf phrases = STRBUF_INIT;
	const struct json *names = type;
	size_t count = 1, i;
	int index, ret;

	if (type->type == JSON_ARRAY) {
		names = type->items;
		count = type->count;
	}
	for (i = 0; i < count; i++) {
		index = schema_type_index(&names[i]);
		if (index < 0)
			return validate_fail(vd, "invalid schema: 'type' must be a type name or a list of them");
		if (type_matches(index, value))
			return 0;
	}
	/* "a string", "a string or null", "a string, a number or null". */
	for (i = 0; i < count; i++) {
		if (i)
			strbuf_addstr(&phrases, i + 1 == count ? " or " : ", ");
		strbuf_addstr(&phrases, schema_types[schema_type_index(&names[i])].phrase);
	}
	ret = validate_fail(vd, "expected %s", count ? phrases.buf : "nothing (empty type list)");
	strbuf_release(&phrases);
	return ret;
}

static bool json_equal(const struct json *a, const struct json *b)
{
	const struct json *other;
	size_t i;

	if (a->type != b->type)
		return false;
	switch (a->type) {
	case JSON_NULL:
		return true;
	case JSON_BOOL:
		return a->boolean == b->boolean;
	case JSON_NUMBER:
		return a->number == b->number;
	case JSON_STRING:
		return !strcmp(a->string, b->string);
	case JSON_ARRAY:
		if (a->count != b->count)
			return false;
		for (i = 0; i < a->count; i++)
			if (!json_equal(&a->items[i], &b->items[i]))
				return false;
		return true;
	case JSON_OBJECT:
		/* Keys are unique, so same count and a within b is equality. */
		if (a->count != b->count)
			return false;
		for (i = 0; i < a->count; i++) {
			other = json_get(b, a->keys[i]);
			if (!other || !json_equal(&a->items[i], other))
				return false;
		}
		return true;
	}
	return false;
}

static int check_enum(struct validator *vd, const struct json *choices,
		      const struct json *value)
{
	struct strbuf list = STRBUF_INIT;
	size_t i;
	int ret;

	if (choices->type != JSON_ARRAY)
		return validate_fail(vd, "invalid schema: 'enum' must be an array");
	for (i = 0; i < choices->count; i++)
		if (json_equal(&choices->items[i], value))
			return 0;
	for (i = 0; i < choices->count; i++) {
		if (i)
			strbuf_addstr(&list, ", ");
		json_add_value(&list, &choices->items[i]);
	}
	ret = validate_fail(vd, "must be one of %s",
			    choices->count ? list.buf : "nothing (empty enum)");
	strbuf_release(&list);
	return ret;
}

static int validate(struct validator *vd, const struct json *schema,
		    const struct json *value);

static int check_object(struct validator *vd, const struct json *schema,
			const struct json *value)
{
	const struct json *properties = json_get(schema, "properties");
	const struct json *additional = json_get(schema, "additionalProperties");
	const struct json *required = json_get(schema, "required");
	const struct json *sub;
	size_t i, old;
	int ret = 0;

	if (properties && properties->type != JSON_OBJECT)
		return validate_fail(vd, "invalid schema: 'properties' must be an object");
	if (additional && additional->type != JSON_BOOL &&
	    additional->type != JSON_OBJECT)
		return validate_fail(vd, "invalid schema: 'additionalProperties' must be a boolean or a schema");
	if (required && required->type != JSON_ARRAY)
		return validate_fail(vd, "invalid schema: 'required' must be an array of names");

	/*
	 * The keys given come first, in document order: a misspelt key then
	 * reads as "unknown parameter" before the "required" it causes.
	 */
	for (i = 0; i < value->count && !ret; i++) {
		sub = json_get(properties, value->keys[i]);
		if (!sub && additional && additional->type == JSON_OBJECT)
			sub = additional;
		old = path_push_key(vd, value->keys[i]);
		if (sub) {
			ret = validate(vd, sub, &value->items[i]);
		} else if (additional && additional->type == JSON_BOOL &&
			   !additional->boolean) {
			ret = error_set(vd->err, -EINVAL,
					"unknown parameter '%s' (additionalProperties is false)",
					vd->path.buf);
		}
		path_pop(vd, old);
	}
	for (i = 0; required && i < required->count && !ret; i++) {
		if (required->items[i].type != JSON_STRING)
			return validate_fail(vd, "invalid schema: 'required' must be an array of names");
		if (json_get(value, required->items[i].string))
			continue;
		old = path_push_key(vd, required->items[i].string);
		ret = validate_fail(vd, "required");
		path_pop(vd, old);
	}
	return ret;
}

static int validate(struct validator *vd, const struct json *schema,
		    const struct json *value)
{
	const struct json *keyword;
	size_t i, old;
	int ret;

	/* Boolean schemas: true allows anything, false nothing. */
	if (schema->type == JSON_BOOL)
		return schema->boolean ? 0 : validate_fail(vd, "not allowed");
	if (schema->type != JSON_OBJECT)
		return validate_fail(vd, "invalid schema: expected an object or a boolean");

	keyword = json_get(schema, "type");
	if (keyword) {
		ret = check_type(vd, keyword, value);
		if (ret)
			return ret;
	}
	keyword = json_get(schema, "enum");
	if (keyword) {
		ret = check_enum(vd, keyword, value);
		if (ret)
			return ret;
	}
	if (value->type == JSON_OBJECT) {
		ret = check_object(vd, schema, value);
		if (ret)
			return ret;
	}
	keyword = json_get(schema, "items");
	if (keyword && value->type == JSON_ARRAY) {
		if (keyword->type != JSON_OBJECT && keyword->type != JSON_BOOL)
			return validate_fail(vd, "invalid schema: 'items' must be a schema");
		for (i = 0; i < value->count; i++) {
			old = path_push_index(vd, i);
			ret = validate(vd, keyword, &value->items[i]);
			path_pop(vd, old);
			if (ret)
				return ret;
		}
	}
	return 0;
}

int json_schema_validate(const struct json *schema, const struct json *value,
			 struct error *err)
{
	struct validator vd = { STRBUF_INIT, err };
	int ret;

	ret = validate(&vd, schema, value);
	strbuf_release(&vd.path);
	return ret;
}

/* Scalars and empty containers are written as JSON, which YAML reads. */
static bool yaml_is_scalar(const struct json *value)
{
	return (value->type != JSON_ARRAY && value->type != JSON_OBJECT) || !value->count;
}

static void yaml_add_key(struct strbuf *out, const char *key)
{
	const char *p;

	for (p = key; *p && (isalnum((unsigned char)*p) || *p == '_' || *p == '-'); p++)
		;
	if (*key && !*p)
		strbuf_addstr(out, key);
	else
		json_add_string(out, key);
}

/* The entries of a container, each line starting at column indent. */
static void yaml_add_block(struct strbuf *out, const struct json *value, int indent,
			   bool first_indented)
{
	size_t i;

	for (i = 0; i < value->count; i++) {
		const struct json *item = &value->items[i];

		if (i || first_indented)
			strbuf_addf(out, "%*s", indent, "");
		if (value->type == JSON_ARRAY) {
			strbuf_addstr(out, "- ");
			if (yaml_is_scalar(item)) {
				json_add_value(out, item);
				strbuf_addstr(out, "\n");
			} else {
				/* The item's first line follows its dash. */
				yaml_add_block(out, item, indent + 2, false);
			}
			continue;
		}
		yaml_add_key(out, value->keys[i]);
		if (yaml_is_scalar(item)) {
			strbuf_addstr(out, ": ");
			json_add_value(out, item);
			strbuf_addstr(out, "\n");
		} else {
			strbuf_addstr(out, ":\n");
			yaml_add_block(out, item, indent + 2, true);
		}
	}
}

void json_add_yaml(struct strbuf *out, const struct json *value)
{
	if (yaml_is_scalar(value)) {
		json_add_value(out, value);
		strbuf_addstr(out, "\n");
		return;
	}
	yaml_add_block(out, value, 0, true);
}
