/*
 * fuzz_json.c - libFuzzer target for json_parse, which reads what
 * providers write (DSTACK_JOBS) and what schemas turn into.  A parsed
 * tree is written back as JSON (json_add_value, the writer that quotes
 * schema values in messages) and must parse to the same tree; it is also written as YAML (spec.yaml) and used as a schema for
 * itself, since provider schemas are user input too.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/lib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool fuzz_json_equal(const struct json *a, const struct json *b)
{
	size_t i;

	if (a->type != b->type)
		return false;
	switch (a->type) {
	case JSON_NULL:
		return true;
	case JSON_BOOL:
		return a->boolean == b->boolean;
	case JSON_NUMBER:
		return a->number == b->number && !signbit(a->number) == !signbit(b->number);
	case JSON_STRING:
		return !strcmp(a->string, b->string);
	case JSON_ARRAY:
	case JSON_OBJECT:
		if (a->count != b->count)
			return false;
		for (i = 0; i < a->count; i++)
			if ((a->type == JSON_OBJECT && strcmp(a->keys[i], b->keys[i])) ||
			    !fuzz_json_equal(&a->items[i], &b->items[i]))
				return false;
		return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf text = STRBUF_INIT, yaml = STRBUF_INIT;
	struct json *value = NULL, *back = NULL;
	struct error err = { 0 };

	if (json_parse((const char *)data, size, &value, &err) < 0)
		return 0;
	json_add_value(&text, value);
	if (json_parse(text.buf, text.len, &back, &err) < 0) {
		fprintf(stderr, "written back, it does not parse: %s\n%s\n", err.message, text.buf);
		abort();
	}
	if (!fuzz_json_equal(value, back)) {
		fprintf(stderr, "written back, it parses differently:\n%s\n", text.buf);
		abort();
	}
	json_add_yaml(&yaml, value);
	error_clear(&err);
	json_schema_validate(value, value, &err);
	json_free(back);
	json_free(value);
	strbuf_release(&yaml);
	strbuf_release(&text);
	return 0;
}
