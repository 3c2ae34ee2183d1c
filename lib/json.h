/*
 * json.h - a small strict JSON reader, string quoting for JSON writers, and
 * a JSON Schema subset for checking workflow parameters.  Parsed values are
 * a plain tree the caller walks directly; nothing is shared or lazy.
 */
#ifndef DSTACK_JSON_H
#define DSTACK_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/lib.h"

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json {
	enum json_type type;
	bool boolean;
	double number;
	char *string;          /* JSON_STRING, UTF-8, NUL-terminated (\u0000 is refused) */
	struct json *items;    /* JSON_ARRAY elements, or JSON_OBJECT values */
	char **keys;           /* JSON_OBJECT keys, parallel to items */
	size_t count;
};

/*
 * Parses text (len bytes; RFC 8259, one value, whitespace around it) into a
 * new tree for json_free.  Errors: "line L, column C: REASON" (1-based;
 * columns count characters).  Depth limit 256.  Duplicate object keys,
 * invalid UTF-8, lone surrogates and numbers beyond double's range are
 * refused.
 */
int json_parse(const char *text, size_t len, struct json **out, struct error *err);
/* Frees a tree from json_parse; NULL is fine. */
void json_free(struct json *value);
/* The value of key in an object, or NULL (also for non-objects). */
const struct json *json_get(const struct json *object, const char *key);
/*
 * Appends s as a JSON string literal (quoted, escaped; control chars as
 * \u00XX).  Bytes of s that are not valid UTF-8 are written as U+FFFD, so
 * the output always parses.
 */
void json_add_string(struct strbuf *out, const char *s);
/* Appends value as compact JSON (numbers as short as reads back the same). */
void json_add_value(struct strbuf *out, const struct json *value);
/* Appends ,"key":[...] of count strings (an object's next field). */
void json_add_strings_field(struct strbuf *out, const char *key, char *const *items,
			    size_t count);
/*
 * Appends value as block-style YAML (strings double-quoted, so any text
 * survives), for files people read: a workflow's or a job's spec.yaml.
 */
void json_add_yaml(struct strbuf *out, const struct json *value);
/*
 * The strings of object's list key: *out gets count + 1 pointers
 * (NULL-terminated) into object, or NULL when key is absent or null;
 * -EINVAL saying "KEY: expected a list of strings" or "KEY[I]: expected
 * a string" otherwise.
 */
int json_get_strings(const struct json *object, const char *key, char ***out, size_t *count,
		     struct error *err);
/* True when number is an integer that fits in long long; *out gets it. */
bool json_integer(const struct json *value, long long *out);

/*
 * Validates value against a JSON Schema subset: type (string, number,
 * integer, boolean, object, array, null, or a list of these), properties,
 * required, additionalProperties (bool or schema), items (schema), enum;
 * boolean schemas too.  Unknown schema keywords are ignored.  On failure
 * -EINVAL with the failing path in dotted form, e.g. "url: expected a
 * string", "artifacts[1]: expected a string", "output: required", "unknown
 * parameter 'foo' (additionalProperties is false)", "mode: must be one of
 * \"a\", \"b\"".  A failure of the root itself has no path: "expected an
 * object".
 */
int json_schema_validate(const struct json *schema, const struct json *value,
			 struct error *err);

#endif
