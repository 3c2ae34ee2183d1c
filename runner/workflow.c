/*
 * workflow.c - reading .dstack/workflows.yaml and .dstack/workflows/NAME.yaml
 * into struct workflow, and expanding ${{ run.args }} in commands.
 *
 * The same loader reads .dstack/providers.yaml into struct provider_def,
 * and a provider's schema file into JSON.
 *
 * Files are loaded with libyaml's document API, so every node keeps the
 * line and column it was written at, and errors and warnings can name
 * them.  The files dstack 0.0.x read were loaded with PyYAML, so where
 * YAML versions differ (yes/no/on/off are booleans) PyYAML's reading wins.
 *
 * Each key of a workflow is looked up in workflow_keys, the one list of
 * what a workflow may say.  Keys not in it are parameters of custom
 * providers: they are kept in data_json without a word, unless they are a
 * near miss of a known key ("comands"), which draws a warning.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "runner/workflow.h"

#define WORKFLOW_FILE ".dstack/workflows.yaml"
#define WORKFLOW_DIR ".dstack/workflows"
#define PROVIDER_FILE ".dstack/providers.yaml"

/*
 * Anchors and aliases can make a document recursive ("&a [*a]") or
 * exponentially large; copying a value into JSON stops at these bounds.
 */
#define JSON_DEPTH_LIMIT 64
/* Deeper nesting is refused before libyaml builds the document: its
 * simple-key scan makes each level cost the whole file again. */
#define YAML_DEPTH_LIMIT (JSON_DEPTH_LIMIT + 8)
#define JSON_NODE_LIMIT 100000

/*
 * State of one workflow_set_load, provider_def_set_load or
 * workflow_yaml_file_to_json call.
 */
struct loader {
	struct workflow_set *set;		/* workflows being loaded... */
	struct provider_def_set *providers;	/* ...or providers */
	/* Where the names of the files read are kept, for positions to
	 * point into; NULL: the caller's path string is used as it is. */
	char ***files;
	size_t *file_count;
	/* Where each workflow's (or provider's) name was written, parallel
	 * to set->workflows (providers->defs): a duplicate's error names
	 * both places. */
	struct workflow_position *name_positions;
	workflow_warn_fn *warn;
	void *warn_ctx;
	struct error *err;
	const char *file;		/* the file being read, in set->files */
	yaml_document_t *document;
	const yaml_node_t *name_node;	/* the current item's name value */
	size_t json_nodes;		/* nodes copied into JSON, this item */
	struct strbuf *json;		/* workflow_yaml_file_to_json's output */
};

/* libyaml counts from 0; people and editors from 1. */
static struct workflow_position loader_position(const struct loader *ld,
						yaml_mark_t mark)
{
	struct workflow_position position = {
		ld->file, (int)mark.line + 1, (int)mark.column + 1
	};

	return position;
}

static int loader_vfail(struct loader *ld, yaml_mark_t mark, const char *fmt,
			va_list ap)
{
	struct workflow_position at = loader_position(ld, mark);
	char reason[768];

	vsnprintf(reason, sizeof(reason), fmt, ap);
	return error_set(ld->err, -EINVAL, "%s:%d:%d: %s", at.file, at.line,
			 at.column, reason);
}

/* Fails with "FILE:LINE:COL: REASON" at mark; returns -EINVAL. */
static int loader_fail_at(struct loader *ld, yaml_mark_t mark,
			  const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int loader_fail_at(struct loader *ld, yaml_mark_t mark,
			  const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = loader_vfail(ld, mark, fmt, ap);
	va_end(ap);
	return ret;
}

/* As loader_fail_at, at the place node was written. */
static int loader_fail(struct loader *ld, const yaml_node_t *node,
		       const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int loader_fail(struct loader *ld, const yaml_node_t *node,
		       const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = loader_vfail(ld, node->start_mark, fmt, ap);
	va_end(ap);
	return ret;
}

/* Hands "FILE:LINE:COL: REASON" at node to the caller's warning function. */
static void loader_warn(struct loader *ld, const yaml_node_t *node,
			const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void loader_warn(struct loader *ld, const yaml_node_t *node,
			const char *fmt, ...)
{
	struct workflow_position at = loader_position(ld, node->start_mark);
	struct strbuf line = STRBUF_INIT;
	va_list ap;

	if (!ld->warn)
		return;
	strbuf_addf(&line, "%s:%d:%d: ", at.file, at.line, at.column);
	va_start(ap, fmt);
	strbuf_vaddf(&line, fmt, ap);
	va_end(ap);
	ld->warn(ld->warn_ctx, line.buf);
	strbuf_release(&line);
}

static yaml_node_t *loader_node(const struct loader *ld, yaml_node_item_t index)
{
	return yaml_document_get_node(ld->document, index);
}

/* ": " after a field name in a message; nothing for the item itself. */
static const char *field_separator(const char *field)
{
	return *field ? ": " : "";
}

/* The text of a scalar node; NULL for a sequence or mapping. */
static const char *scalar_text(const yaml_node_t *node)
{
	if (node->type != YAML_SCALAR_NODE)
		return NULL;
	return (const char *)node->data.scalar.value;
}

static bool text_is_one_of(const char *text, const char *const *words)
{
	for (; *words; words++)
		if (!strcmp(text, *words))
			return true;
	return false;
}

static const char *const null_words[] = { "", "~", "null", "Null", "NULL", NULL };
static const char *const true_words[] = {
	"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", NULL
};
static const char *const false_words[] = {
	"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", NULL
};

/* Only unquoted scalars have a type: "true" in quotes is a string. */
static bool scalar_is_plain(const yaml_node_t *node)
{
	return node->type == YAML_SCALAR_NODE &&
	       node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* "key:" with nothing after it, or "~": as good as leaving the key out. */
static bool node_is_null(const yaml_node_t *node)
{
	return scalar_is_plain(node) && text_is_one_of(scalar_text(node), null_words);
}

/*
 * True for text JSON can carry as a number unchanged.  YAML's other
 * spellings of numbers (0x1f, .5, .inf) stay strings, never rewritten.
 */
static bool text_is_json_number(const char *s)
{
	if (*s == '-')
		s++;
	if (*s == '0')
		s++;
	else if (isdigit((unsigned char)*s))
		while (isdigit((unsigned char)*s))
			s++;
	else
		return false;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return false;
		while (isdigit((unsigned char)*s))
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!isdigit((unsigned char)*s))
			return false;
		while (isdigit((unsigned char)*s))
			s++;
	}
	return *s == '\0';
}

/* A decimal integer in [min, max], quoted or not. */
static bool scalar_integer(const yaml_node_t *node, long min, long max, long *out)
{
	const char *text = scalar_text(node);
	char *end;
	long value;

	/* strtol would skip leading blanks; a value with them is no number */
	if (!text || !(isdigit((unsigned char)text[0]) || text[0] == '-' ||
		       text[0] == '+'))
		return false;
	errno = 0;
	value = strtol(text, &end, 10);
	if (errno || *end || value < min || value > max)
		return false;
	*out = value;
	return true;
}

/* Optimal string alignment distance: swapping two letters is one edit. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	size_t d[24][24];

	/* No known key is this long: the distance is large either way. */
	if (la >= 24 || lb >= 24)
		return la > lb ? la : lb;
	for (i = 0; i <= la; i++)
		d[i][0] = i;
	for (j = 0; j <= lb; j++)
		d[0][j] = j;
	for (i = 1; i <= la; i++) {
		for (j = 1; j <= lb; j++) {
			size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);

			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
			    a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

/*
 * Keeps candidate in *best if key is a likely typo of it and closer than
 * the best so far.  Two edits turn most three-letter words into "env" or
 * "url", so keys of four letters or fewer allow one.
 */
static void suggestion_consider(const char *key, const char *candidate,
				const char **best, size_t *best_distance)
{
	size_t limit = strlen(candidate) <= 4 ? 1 : 2;
	size_t distance = edit_distance(key, candidate);

	if (distance > 0 && distance <= limit && distance < *best_distance) {
		*best = candidate;
		*best_distance = distance;
	}
}

/* Warns that key (in field, "" for a workflow) is not one of names. */
static void loader_warn_unknown(struct loader *ld, const yaml_node_t *key,
				const char *field, const char *const *names)
{
	const char *text = scalar_text(key), *best = NULL;
	size_t best_distance = SIZE_MAX;

	for (; *names; names++)
		suggestion_consider(text, *names, &best, &best_distance);
	if (best)
		loader_warn(ld, key, "%s%sunknown key '%s' (did you mean '%s'?)",
			    field, field_separator(field), text, best);
	else
		loader_warn(ld, key, "%s%sunknown key '%s'", field,
			    field_separator(field), text);
}

/*
 * Checks that every key of a mapping is a scalar and that none is written
 * twice: PyYAML kept the last silently, and a JSON object must not repeat
 * a name.
 */
static int mapping_check_keys(struct loader *ld, const yaml_node_t *mapping,
			      const char *field)
{
	const yaml_node_pair_t *pair, *earlier;

	for (pair = mapping->data.mapping.pairs.start;
	     pair < mapping->data.mapping.pairs.top; pair++) {
		const yaml_node_t *key = loader_node(ld, pair->key);

		if (!scalar_text(key))
			return loader_fail(ld, key, "%s%sexpected a name as key",
					   field, field_separator(field));
		for (earlier = mapping->data.mapping.pairs.start; earlier < pair;
		     earlier++) {
			const yaml_node_t *first = loader_node(ld, earlier->key);

			if (!strcmp(scalar_text(first), scalar_text(key)))
				return loader_fail(ld, key,
					"%s%skey '%s' is given twice (first at %d:%d)",
					field, field_separator(field), scalar_text(key),
					(int)first->start_mark.line + 1,
					(int)first->start_mark.column + 1);
		}
	}
	return 0;
}

/* A JSON string; bytes above 0x7f pass as they are (libyaml checked
 * that the file is UTF-8). */
static void json_add_string(struct strbuf *json, const char *s, size_t len)
{
	size_t i;

	strbuf_add(json, "\"", 1);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		switch (c) {
		case '"':
			strbuf_addstr(json, "\\\"");
			break;
		case '\\':
			strbuf_addstr(json, "\\\\");
			break;
		case '\n':
			strbuf_addstr(json, "\\n");
			break;
		case '\t':
			strbuf_addstr(json, "\\t");
			break;
		case '\r':
			strbuf_addstr(json, "\\r");
			break;
		default:
			if (c < 0x20)
				strbuf_addf(json, "\\u%04x", c);
			else
				strbuf_add(json, &s[i], 1);
		}
	}
	strbuf_add(json, "\"", 1);
}

/* Unquoted null, booleans and numbers keep their type, as PyYAML gave
 * them to dstack's providers; everything else is a string. */
static void json_add_scalar(struct strbuf *json, const yaml_node_t *node)
{
	const char *text = scalar_text(node);

	if (scalar_is_plain(node)) {
		if (text_is_one_of(text, null_words)) {
			strbuf_addstr(json, "null");
			return;
		}
		if (text_is_one_of(text, true_words)) {
			strbuf_addstr(json, "true");
			return;
		}
		if (text_is_one_of(text, false_words)) {
			strbuf_addstr(json, "false");
			return;
		}
		if (text_is_json_number(text)) {
			strbuf_addstr(json, text);
			return;
		}
	}
	/* the length, not strlen: "\0" is a valid escape in YAML */
	json_add_string(json, text, node->data.scalar.length);
}

/*
 * Appends node, written under the workflow's key top (named field in
 * messages; "" and the document's root node for a whole file), as JSON.
 * Past the bounds the error points at top: the node where the count ran
 * out may be anywhere an alias leads.
 */
static int json_add_node(struct loader *ld, struct strbuf *json,
			 const yaml_node_t *node, const char *field,
			 const yaml_node_t *top, int depth)
{
	const yaml_node_item_t *item;
	const yaml_node_pair_t *pair;
	int ret;

	if (depth > JSON_DEPTH_LIMIT || ++ld->json_nodes > JSON_NODE_LIMIT)
		return loader_fail(ld, top,
				   "%s%snested too deeply or too large (a recursive alias?)",
				   field, field_separator(field));
	switch (node->type) {
	case YAML_SCALAR_NODE:
		json_add_scalar(json, node);
		return 0;
	case YAML_SEQUENCE_NODE:
		strbuf_addstr(json, "[");
		for (item = node->data.sequence.items.start;
		     item < node->data.sequence.items.top; item++) {
			if (item != node->data.sequence.items.start)
				strbuf_addstr(json, ",");
			ret = json_add_node(ld, json, loader_node(ld, *item), field,
					    top, depth + 1);
			if (ret)
				return ret;
		}
		strbuf_addstr(json, "]");
		return 0;
	case YAML_MAPPING_NODE:
		ret = mapping_check_keys(ld, node, field);
		if (ret)
			return ret;
		strbuf_addstr(json, "{");
		for (pair = node->data.mapping.pairs.start;
		     pair < node->data.mapping.pairs.top; pair++) {
			const yaml_node_t *key = loader_node(ld, pair->key);

			if (pair != node->data.mapping.pairs.start)
				strbuf_addstr(json, ",");
			json_add_string(json, scalar_text(key), key->data.scalar.length);
			strbuf_addstr(json, ":");
			ret = json_add_node(ld, json, loader_node(ld, pair->value),
					    field, top, depth + 1);
			if (ret)
				return ret;
		}
		strbuf_addstr(json, "}");
		return 0;
	default:
		/* libyaml never hands out YAML_NO_NODE in a loaded document */
		strbuf_addstr(json, "null");
		return 0;
	}
}

/*
 * Copies a scalar's text to *out.  A null value leaves *out alone when
 * the key may be left out (!required), and fails otherwise.
 */
static int string_value(struct loader *ld, const yaml_node_t *node,
			const char *field, bool required, char **out)
{
	const char *text = scalar_text(node);

	if (node_is_null(node) && !required)
		return 0;
	if (!text || node_is_null(node))
		return loader_fail(ld, node, "%s: expected a string", field);
	if (strlen(text) != node->data.scalar.length)
		return loader_fail(ld, node, "%s: contains a NUL character", field);
	*out = xstrdup(text);
	return 0;
}

/* PyYAML's booleans (yes/no/on/off too), quoted or not. */
static int bool_value(struct loader *ld, const yaml_node_t *node,
		      const char *field, bool *out)
{
	const char *text = scalar_text(node);

	if (text && text_is_one_of(text, true_words))
		*out = true;
	else if (text && text_is_one_of(text, false_words))
		*out = false;
	else
		return loader_fail(ld, node, "%s: expected true or false", field);
	return 0;
}

/* A size as workflow_parse_size reads it, quoted or not. */
static int size_value(struct loader *ld, const yaml_node_t *node,
		      const char *field, uint64_t *out)
{
	const char *text = scalar_text(node);

	if (!text || workflow_parse_size(text, out))
		return loader_fail(ld, node, "%s: expected a size like 512MB", field);
	return 0;
}

/* A list of strings, or one string standing for a list of one. */
static int string_list_value(struct loader *ld, const yaml_node_t *node,
			     const char *field, char ***items, size_t *count)
{
	const yaml_node_item_t *item;
	char name[64];
	int ret;

	if (node_is_null(node))
		return 0;
	if (node->type == YAML_SCALAR_NODE) {
		*items = xcalloc(1, sizeof(**items));
		ret = string_value(ld, node, field, true, &(*items)[0]);
		if (!ret)
			*count = 1;
		return ret;
	}
	if (node->type != YAML_SEQUENCE_NODE)
		return loader_fail(ld, node, "%s: expected a list of strings", field);
	*items = xcalloc((size_t)(node->data.sequence.items.top -
				  node->data.sequence.items.start), sizeof(**items));
	for (item = node->data.sequence.items.start;
	     item < node->data.sequence.items.top; item++) {
		const yaml_node_t *value = loader_node(ld, *item);

		snprintf(name, sizeof(name), "%s[%zu]", field, *count);
		/* "- echo a: b" is a mapping to YAML; say how to write it */
		if (value->type == YAML_MAPPING_NODE)
			return loader_fail(ld, value,
					   "%s: expected a string (quote it if it contains \": \")",
					   name);
		ret = string_value(ld, value, name, true, &(*items)[*count]);
		if (ret)
			return ret;
		(*count)++;
	}
	return 0;
}

static int parse_name(struct loader *ld, struct workflow *wf,
		      const yaml_node_t *value)
{
	int ret = string_value(ld, value, "name", true, &wf->name);

	if (ret)
		return ret;
	ld->name_node = value;
	/* the name is a folder under /dstack/workflows/ */
	if (!*wf->name || strchr(wf->name, '/') || !strcmp(wf->name, ".") ||
	    !strcmp(wf->name, ".."))
		return loader_fail(ld, value,
				   "name: '%s' cannot name a workflow (empty, \".\", \"..\" or with \"/\")",
				   wf->name);
	return 0;
}

static const char *const provider_keys[] = { "repo", "name", "ref", NULL };

/* A provider's name, or {repo: URL, name: N} for one in another repository. */
static int parse_provider(struct loader *ld, struct workflow *wf,
			  const yaml_node_t *value)
{
	const yaml_node_t *repo = NULL, *name = NULL, *ref = NULL;
	const yaml_node_pair_t *pair;
	int ret;

	if (value->type == YAML_MAPPING_NODE) {
		ret = mapping_check_keys(ld, value, "provider");
		if (ret)
			return ret;
		for (pair = value->data.mapping.pairs.start;
		     pair < value->data.mapping.pairs.top; pair++) {
			const yaml_node_t *key = loader_node(ld, pair->key);

			if (!strcmp(scalar_text(key), "repo"))
				repo = loader_node(ld, pair->value);
			else if (!strcmp(scalar_text(key), "name"))
				name = loader_node(ld, pair->value);
			else if (!strcmp(scalar_text(key), "ref"))
				ref = loader_node(ld, pair->value);
			else
				loader_warn_unknown(ld, key, "provider", provider_keys);
		}
		if (!repo)
			return loader_fail(ld, value, "provider: missing key \"repo\"");
		if (!name)
			return loader_fail(ld, value, "provider: missing key \"name\"");
		ret = string_value(ld, repo, "provider.repo", true, &wf->provider_repo);
		if (!ret)
			ret = string_value(ld, name, "provider.name", true, &wf->provider);
		if (!ret && ref)
			ret = string_value(ld, ref, "provider.ref", true, &wf->provider_ref);
		return ret;
	}
	if (!scalar_text(value) || node_is_null(value) || !*scalar_text(value))
		return loader_fail(ld, value,
				   "provider: expected a name or {repo: URL, name: NAME}");
	return string_value(ld, value, "provider", true, &wf->provider);
}

static int parse_help(struct loader *ld, struct workflow *wf,
		      const yaml_node_t *value)
{
	return string_value(ld, value, "help", false, &wf->help);
}

static const char *const dep_keys[] = { "workflow", "tag", NULL };

static int parse_deps(struct loader *ld, struct workflow *wf,
		      const yaml_node_t *value)
{
	const yaml_node_item_t *item;
	char field[64];
	int ret;

	if (node_is_null(value))
		return 0;
	if (value->type != YAML_SEQUENCE_NODE)
		return loader_fail(ld, value,
				   "deps: expected a list of {workflow: NAME} or {tag: NAME}");
	wf->deps = xcalloc((size_t)(value->data.sequence.items.top -
				    value->data.sequence.items.start),
			   sizeof(*wf->deps));
	for (item = value->data.sequence.items.start;
	     item < value->data.sequence.items.top; item++) {
		const yaml_node_t *dep = loader_node(ld, *item), *key, *name;
		struct workflow_dep *out = &wf->deps[wf->dep_count];
		const yaml_node_pair_t *pairs, *pair;

		snprintf(field, sizeof(field), "deps[%zu]", wf->dep_count);
		if (dep->type != YAML_MAPPING_NODE ||
		    dep->data.mapping.pairs.top == dep->data.mapping.pairs.start)
			return loader_fail(ld, dep, "%s: expected \"workflow\" or \"tag\"",
					   field);
		pairs = dep->data.mapping.pairs.start;
		for (pair = pairs; pair < dep->data.mapping.pairs.top; pair++) {
			key = loader_node(ld, pair->key);
			if (!scalar_text(key) || !text_is_one_of(scalar_text(key), dep_keys))
				return loader_fail(ld, key,
						   "%s: expected \"workflow\" or \"tag\"",
						   field);
		}
		if (dep->data.mapping.pairs.top - pairs > 1)
			return loader_fail(ld, loader_node(ld, pairs[1].key),
					   "%s: expected \"workflow\" or \"tag\", not both",
					   field);
		key = loader_node(ld, pairs[0].key);
		out->kind = strcmp(scalar_text(key), "tag") ? WORKFLOW_DEP_WORKFLOW
							    : WORKFLOW_DEP_TAG;
		out->position = loader_position(ld, dep->start_mark);
		name = loader_node(ld, pairs[0].value);
		if (!scalar_text(name) || node_is_null(name) || !*scalar_text(name))
			return loader_fail(ld, name, "%s.%s: expected a name", field,
					   scalar_text(key));
		ret = string_value(ld, name, field, true, &out->name);
		if (ret)
			return ret;
		wf->dep_count++;
	}
	return 0;
}

static int parse_commands(struct loader *ld, struct workflow *wf,
			  const yaml_node_t *value)
{
	return string_list_value(ld, value, "commands", &wf->commands,
				 &wf->command_count);
}

/* An artifact path: a leading "./" and trailing "/" go; "." is refused. */
static int artifact_path(struct loader *ld, const yaml_node_t *node,
			 const char *field, char **out)
{
	const char *text = scalar_text(node);
	int ret;

	if (!text || node_is_null(node))
		return loader_fail(ld, node, "%s: expected a path", field);
	ret = path_plain(text, out);
	if (ret == 0)
		return 0;
	if (ret == -EINVAL)
		return loader_fail(ld, node, "%s: empty path", field);
	return loader_fail(ld, node,
			   "%s: \".\" is the whole working directory; name a folder in it",
			   field);
}

static const char *const artifact_keys[] = { "path", "mount", NULL };

/* A list of paths, or of {path: P, mount: true}. */
static int parse_artifacts(struct loader *ld, struct workflow *wf,
			   const yaml_node_t *value)
{
	const yaml_node_item_t *item;
	char field[64], path_field[80], mount_field[80];
	int ret;

	if (node_is_null(value))
		return 0;
	if (value->type != YAML_SEQUENCE_NODE)
		return loader_fail(ld, value, "artifacts: expected a list of paths");
	wf->artifacts = xcalloc((size_t)(value->data.sequence.items.top -
					 value->data.sequence.items.start),
				sizeof(*wf->artifacts));
	for (item = value->data.sequence.items.start;
	     item < value->data.sequence.items.top; item++) {
		const yaml_node_t *artifact = loader_node(ld, *item), *path = artifact;
		struct workflow_artifact *out = &wf->artifacts[wf->artifact_count];
		const yaml_node_pair_t *pair;

		snprintf(field, sizeof(field), "artifacts[%zu]", wf->artifact_count);
		snprintf(path_field, sizeof(path_field), "%s.path", field);
		snprintf(mount_field, sizeof(mount_field), "%s.mount", field);
		if (artifact->type == YAML_MAPPING_NODE) {
			ret = mapping_check_keys(ld, artifact, field);
			if (ret)
				return ret;
			path = NULL;
			for (pair = artifact->data.mapping.pairs.start;
			     pair < artifact->data.mapping.pairs.top; pair++) {
				const yaml_node_t *key = loader_node(ld, pair->key);
				const yaml_node_t *v = loader_node(ld, pair->value);

				if (!strcmp(scalar_text(key), "path"))
					path = v;
				else if (!strcmp(scalar_text(key), "mount"))
					ret = node_is_null(v) ? 0 :
					      bool_value(ld, v, mount_field, &out->mount);
				else
					loader_warn_unknown(ld, key, field, artifact_keys);
				if (ret)
					return ret;
			}
			if (!path)
				return loader_fail(ld, artifact, "%s: missing key \"path\"",
						   field);
		}
		out->position = loader_position(ld, path->start_mark);
		ret = artifact_path(ld, path, path == artifact ? field : path_field,
				    &out->path);
		if (ret)
			return ret;
		wf->artifact_count++;
	}
	return 0;
}

/* A list of "K=V" or "K", or a mapping K: V (a null V stands for "K"). */
static int parse_env(struct loader *ld, struct workflow *wf,
		     const yaml_node_t *value)
{
	const yaml_node_pair_t *pair;
	char field[64];
	size_t i;
	int ret;

	if (value->type == YAML_MAPPING_NODE) {
		ret = mapping_check_keys(ld, value, "env");
		if (ret)
			return ret;
		wf->env = xcalloc((size_t)(value->data.mapping.pairs.top -
					   value->data.mapping.pairs.start),
				  sizeof(*wf->env));
		for (pair = value->data.mapping.pairs.start;
		     pair < value->data.mapping.pairs.top; pair++) {
			const yaml_node_t *key = loader_node(ld, pair->key);
			const yaml_node_t *v = loader_node(ld, pair->value);
			struct strbuf entry = STRBUF_INIT;

			if (!*scalar_text(key) || strchr(scalar_text(key), '='))
				return loader_fail(ld, key, "env: '%s' is not a variable name",
						   scalar_text(key));
			if (!node_is_null(v) && !scalar_text(v))
				return loader_fail(ld, v, "env.%s: expected a string",
						   scalar_text(key));
			strbuf_addstr(&entry, scalar_text(key));
			if (!node_is_null(v))
				strbuf_addf(&entry, "=%s", scalar_text(v));
			wf->env[wf->env_count++] = entry.buf;
		}
		return 0;
	}
	ret = string_list_value(ld, value, "env", &wf->env, &wf->env_count);
	if (ret)
		return ret;
	for (i = 0; i < wf->env_count; i++) {
		const yaml_node_t *entry = value;

		if (value->type == YAML_SEQUENCE_NODE)
			entry = loader_node(ld, value->data.sequence.items.start[i]);
		snprintf(field, sizeof(field), "env[%zu]", i);
		if (wf->env[i][0] == '=' || !wf->env[i][0])
			return loader_fail(ld, entry, "%s: expected NAME=VALUE or NAME",
					   field);
	}
	return 0;
}

static int parse_working_dir(struct loader *ld, struct workflow *wf,
			     const yaml_node_t *value)
{
	return string_value(ld, value, "working_dir", false, &wf->working_dir);
}

static int parse_image(struct loader *ld, struct workflow *wf,
		       const yaml_node_t *value)
{
	return string_value(ld, value, "image", false, &wf->image);
}

/* "python: 3.10" is a float to YAML: the text as written is the version. */
static int parse_python(struct loader *ld, struct workflow *wf,
			const yaml_node_t *value)
{
	return string_value(ld, value, "python", false, &wf->python);
}

/* A count of free ports (ports: 2), or a list of port numbers. */
static int parse_ports(struct loader *ld, struct workflow *wf,
		       const yaml_node_t *value)
{
	const yaml_node_item_t *item;
	long number;

	if (node_is_null(value))
		return 0;
	if (value->type == YAML_SCALAR_NODE &&
	    scalar_integer(value, 0, 65535, &number)) {
		wf->port_free_count = (int)number;
		return 0;
	}
	if (value->type != YAML_SEQUENCE_NODE)
		return loader_fail(ld, value,
				   "ports: expected a count or a list of port numbers");
	wf->ports = xcalloc((size_t)(value->data.sequence.items.top -
				     value->data.sequence.items.start),
			    sizeof(*wf->ports));
	for (item = value->data.sequence.items.start;
	     item < value->data.sequence.items.top; item++) {
		const yaml_node_t *port = loader_node(ld, *item);

		if (!scalar_integer(port, 1, 65535, &number))
			return loader_fail(ld, port,
					   "ports[%zu]: expected a port number (1-65535)",
					   wf->port_count);
		wf->ports[wf->port_count++] = (int)number;
	}
	return 0;
}

static const char *const gpu_keys[] = { "count", "name", "memory", NULL };

/* gpu: a count, or {count, name, memory}; a name or memory alone asks for one. */
static int parse_gpu(struct loader *ld, struct workflow_resources *resources,
		     const yaml_node_t *value)
{
	const yaml_node_pair_t *pair;
	bool counted = false;
	long number;
	int ret = 0;

	if (value->type == YAML_SCALAR_NODE) {
		if (!scalar_integer(value, 0, INT_MAX, &number))
			return loader_fail(ld, value,
					   "resources.gpu: expected a count or {count, name, memory}");
		resources->gpu_count = (int)number;
		return 0;
	}
	if (value->type != YAML_MAPPING_NODE)
		return loader_fail(ld, value,
				   "resources.gpu: expected a count or {count, name, memory}");
	ret = mapping_check_keys(ld, value, "resources.gpu");
	for (pair = value->data.mapping.pairs.start;
	     !ret && pair < value->data.mapping.pairs.top; pair++) {
		const yaml_node_t *key = loader_node(ld, pair->key);
		const yaml_node_t *v = loader_node(ld, pair->value);
		const char *name = scalar_text(key);

		if (node_is_null(v))
			continue;
		if (!strcmp(name, "count")) {
			if (!scalar_integer(v, 0, INT_MAX, &number))
				return loader_fail(ld, v,
						   "resources.gpu.count: expected a whole number");
			resources->gpu_count = (int)number;
			counted = true;
		} else if (!strcmp(name, "name")) {
			ret = string_value(ld, v, "resources.gpu.name", true,
					   &resources->gpu_name);
		} else if (!strcmp(name, "memory")) {
			ret = size_value(ld, v, "resources.gpu.memory",
					 &resources->gpu_memory);
		} else {
			loader_warn_unknown(ld, key, "resources.gpu", gpu_keys);
		}
	}
	if (!ret && !counted && (resources->gpu_name || resources->gpu_memory))
		resources->gpu_count = 1;
	return ret;
}

static const char *const resource_keys[] = {
	"cpu", "memory", "shm_size", "gpu", "interruptible", "local", NULL
};

static int parse_resources(struct loader *ld, struct workflow *wf,
			   const yaml_node_t *value)
{
	struct workflow_resources *resources = &wf->resources;
	const yaml_node_pair_t *pair;
	long number;
	int ret;

	if (node_is_null(value))
		return 0;
	if (value->type != YAML_MAPPING_NODE)
		return loader_fail(ld, value, "resources: expected a mapping");
	ret = mapping_check_keys(ld, value, "resources");
	for (pair = value->data.mapping.pairs.start;
	     !ret && pair < value->data.mapping.pairs.top; pair++) {
		const yaml_node_t *key = loader_node(ld, pair->key);
		const yaml_node_t *v = loader_node(ld, pair->value);
		const char *name = scalar_text(key);

		if (node_is_null(v))
			continue;
		if (!strcmp(name, "cpu")) {
			if (!scalar_integer(v, 0, INT_MAX, &number))
				return loader_fail(ld, v,
						   "resources.cpu: expected a whole number");
			resources->cpu = (int)number;
		} else if (!strcmp(name, "memory")) {
			ret = size_value(ld, v, "resources.memory", &resources->memory);
		} else if (!strcmp(name, "shm_size")) {
			ret = size_value(ld, v, "resources.shm_size",
					 &resources->shm_size);
		} else if (!strcmp(name, "gpu")) {
			ret = parse_gpu(ld, resources, v);
		} else if (!strcmp(name, "interruptible")) {
			ret = bool_value(ld, v, "resources.interruptible",
					 &resources->interruptible);
		} else if (!strcmp(name, "local")) {
			ret = bool_value(ld, v, "resources.local", &resources->local);
		} else {
			loader_warn_unknown(ld, key, "resources", resource_keys);
		}
	}
	return ret;
}

/*
 * A path of the repository's snapshot, *path replaced by its plain form
 * (path_plain): relative to the repository root and inside it, as the
 * runner reads it from the snapshot; an absolute path, or one with a
 * "..", "." or empty component, is refused.
 */
static int repo_path_check(struct loader *ld, const yaml_node_t *node, const char *field,
			   char **path)
{
	char *plain = NULL;
	int ret = path_plain(*path, &plain);

	if (ret == -EINVAL)
		return loader_fail(ld, node, "%s: empty path", field);
	if (ret == -EISDIR)
		return loader_fail(ld, node, "%s: \".\" is the whole repository; name a part of it",
				   field);
	if (plain[0] == '/')
		ret = loader_fail(ld, node, "%s: '%s' is not relative to the repository root",
				  field, *path);
	else if (!path_is_contained(plain))
		ret = loader_fail(ld, node, "%s: '%s' leaves the repository", field, *path);
	if (ret) {
		free(plain);
		return ret;
	}
	free(*path);
	*path = plain;
	return 0;
}

/*
 * inputs: the parts of the repository a job's results depend on; the job
 * cache's key then holds those instead of the whole snapshot.
 */
static int parse_inputs(struct loader *ld, struct workflow *wf, const yaml_node_t *value)
{
	const yaml_node_item_t *item;
	char field[64];
	int ret;

	if (node_is_null(value))
		return 0;
	if (value->type != YAML_SEQUENCE_NODE)
		return loader_fail(ld, value, "inputs: expected a list of paths");
	wf->inputs = xcalloc((size_t)(value->data.sequence.items.top -
				      value->data.sequence.items.start), sizeof(*wf->inputs));
	for (item = value->data.sequence.items.start; item < value->data.sequence.items.top;
	     item++) {
		const yaml_node_t *path = loader_node(ld, *item);

		snprintf(field, sizeof(field), "inputs[%zu]", wf->input_count);
		ret = string_value(ld, path, field, true, &wf->inputs[wf->input_count]);
		if (ret)
			return ret;
		wf->input_count++;
		ret = repo_path_check(ld, path, field, &wf->inputs[wf->input_count - 1]);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * cache: true or false (the job result cache).  Later dstack releases
 * wrote a list of folders to keep between runs: that is another thing,
 * kept in data_json for a provider, and leaves the result cache off.
 */
static int parse_cache(struct loader *ld, struct workflow *wf,
		       const yaml_node_t *value)
{
	if (node_is_null(value) || value->type == YAML_SEQUENCE_NODE)
		return 0;
	if (value->type == YAML_SCALAR_NODE)
		return bool_value(ld, value, "cache", &wf->cache);
	return loader_fail(ld, value, "cache: expected true, false or a list of paths");
}

typedef int workflow_key_parse_fn(struct loader *ld, struct workflow *wf,
				  const yaml_node_t *value);

/* Everything a workflow item may say. */
static const struct workflow_key {
	const char *name;
	workflow_key_parse_fn *parse;	/* NULL: a provider's, only kept */
	bool in_data;			/* copied into data_json */
} workflow_keys[] = {
	{ "name", parse_name, false },
	{ "provider", parse_provider, false },
	{ "help", parse_help, false },
	{ "deps", parse_deps, false },
	{ "commands", parse_commands, true },
	{ "artifacts", parse_artifacts, true },
	{ "env", parse_env, true },
	{ "working_dir", parse_working_dir, true },
	{ "image", parse_image, true },
	{ "python", parse_python, true },
	{ "ports", parse_ports, true },
	{ "resources", parse_resources, true },
	{ "cache", parse_cache, true },
	/* read by the built-in providers and the seed's custom one */
	{ "requirements", NULL, true },
	{ "file", NULL, true },
	{ "script", NULL, true },
	{ "args", NULL, true },
	{ "url", NULL, true },
	{ "output", NULL, true },
	{ "schema", NULL, true },
	{ "inputs", parse_inputs, true },
};

#define WORKFLOW_KEY_COUNT (sizeof(workflow_keys) / sizeof(workflow_keys[0]))

static const struct workflow_key *workflow_key_find(const char *name)
{
	size_t i;

	for (i = 0; i < WORKFLOW_KEY_COUNT; i++)
		if (!strcmp(workflow_keys[i].name, name))
			return &workflow_keys[i];
	return NULL;
}

/* An unknown key is a provider's parameter unless it looks like a typo. */
static void workflow_key_unknown(struct loader *ld, const yaml_node_t *key)
{
	const char *best = NULL;
	size_t best_distance = SIZE_MAX, i;

	for (i = 0; i < WORKFLOW_KEY_COUNT; i++)
		suggestion_consider(scalar_text(key), workflow_keys[i].name, &best,
				    &best_distance);
	if (best)
		loader_warn(ld, key, "unknown key '%s' (did you mean '%s'?)",
			    scalar_text(key), best);
}

/* Frees what a workflow owns, parsed fully or only in part. */
static void workflow_release(struct workflow *wf)
{
	size_t i;

	free(wf->name);
	free(wf->provider);
	free(wf->provider_repo);
	free(wf->provider_ref);
	free(wf->help);
	for (i = 0; i < wf->command_count; i++)
		free(wf->commands[i]);
	free(wf->commands);
	for (i = 0; i < wf->artifact_count; i++)
		free(wf->artifacts[i].path);
	free(wf->artifacts);
	for (i = 0; i < wf->env_count; i++)
		free(wf->env[i]);
	free(wf->env);
	for (i = 0; i < wf->input_count; i++)
		free(wf->inputs[i]);
	free(wf->inputs);
	free(wf->working_dir);
	free(wf->image);
	free(wf->python);
	free(wf->ports);
	for (i = 0; i < wf->dep_count; i++)
		free(wf->deps[i].name);
	free(wf->deps);
	free(wf->resources.gpu_name);
	free(wf->data_json);
	memset(wf, 0, sizeof(*wf));
}

/* Fills wf from one item of the workflows list. */
static int workflow_item_parse(struct loader *ld, const yaml_node_t *item,
			       size_t index, struct workflow *wf)
{
	struct strbuf data = STRBUF_INIT;
	const yaml_node_pair_t *pair;
	int ret;

	if (item->type != YAML_MAPPING_NODE)
		return loader_fail(ld, item,
				   "workflows[%zu]: expected a mapping with \"name\" and \"provider\"",
				   index);
	/* the first key, as the header promises: a flow mapping's node
	 * starts at its "{" */
	pair = item->data.mapping.pairs.start;
	wf->position = loader_position(ld, pair < item->data.mapping.pairs.top ?
					   loader_node(ld, pair->key)->start_mark :
					   item->start_mark);
	ld->name_node = NULL;
	ld->json_nodes = 0;
	ret = mapping_check_keys(ld, item, "");
	if (ret)
		return ret;
	strbuf_addstr(&data, "{");
	for (pair = item->data.mapping.pairs.start;
	     pair < item->data.mapping.pairs.top; pair++) {
		const yaml_node_t *key = loader_node(ld, pair->key);
		const yaml_node_t *value = loader_node(ld, pair->value);
		const struct workflow_key *known = workflow_key_find(scalar_text(key));

		if (!known || known->in_data) {
			if (data.len > 1)
				strbuf_addstr(&data, ",");
			json_add_string(&data, scalar_text(key), key->data.scalar.length);
			strbuf_addstr(&data, ":");
			ret = json_add_node(ld, &data, value, scalar_text(key), key, 0);
			if (ret)
				goto out;
		}
		if (!known)
			workflow_key_unknown(ld, key);
		else if (known->parse)
			ret = known->parse(ld, wf, value);
		if (ret)
			goto out;
	}
	strbuf_addstr(&data, "}");
	if (!wf->name) {
		ret = loader_fail(ld, item, "missing key \"name\"");
		goto out;
	}
	if (!wf->provider) {
		ret = loader_fail(ld, item, "workflow '%s': missing key \"provider\"",
				  wf->name);
		goto out;
	}
	wf->data_json = data.buf;
	data.buf = NULL;
out:
	strbuf_release(&data);
	return ret;
}

/* Adds a parsed workflow to the set unless its name is taken. */
static int loader_add(struct loader *ld, struct workflow *wf)
{
	struct workflow_set *set = ld->set;
	size_t i;

	for (i = 0; i < set->count; i++) {
		const struct workflow_position *first = &ld->name_positions[i];

		if (!strcmp(set->workflows[i].name, wf->name))
			return loader_fail(ld, ld->name_node,
					   "workflow '%s' is defined twice (first at %s:%d:%d)",
					   wf->name, first->file, first->line,
					   first->column);
	}
	set->workflows = xrealloc(set->workflows,
				  (set->count + 1) * sizeof(*set->workflows));
	ld->name_positions = xrealloc(ld->name_positions,
				      (set->count + 1) * sizeof(*ld->name_positions));
	ld->name_positions[set->count] = loader_position(ld, ld->name_node->start_mark);
	set->workflows[set->count++] = *wf;
	return 0;
}

/* Parses and keeps one item of the document's list; index counts from 0. */
typedef int loader_item_fn(struct loader *ld, const yaml_node_t *item,
			   size_t index);

/*
 * The document of one file: {LIST_KEY: [...]}, or nothing at all.  Other
 * top-level keys warn; each item of the list goes to item_fn.
 */
static int loader_list_document(struct loader *ld, const yaml_node_t *root,
				const char *list_key, loader_item_fn *item_fn)
{
	const char *const top_keys[] = { list_key, NULL };
	const yaml_node_pair_t *pair;
	const yaml_node_item_t *item;
	int ret;

	if (!root || node_is_null(root))
		return 0;
	if (root->type != YAML_MAPPING_NODE)
		return loader_fail(ld, root, "expected a mapping with a \"%s\" list",
				   list_key);
	ret = mapping_check_keys(ld, root, "");
	if (ret)
		return ret;
	for (pair = root->data.mapping.pairs.start;
	     pair < root->data.mapping.pairs.top; pair++) {
		const yaml_node_t *key = loader_node(ld, pair->key);
		const yaml_node_t *list = loader_node(ld, pair->value);

		if (strcmp(scalar_text(key), list_key)) {
			loader_warn_unknown(ld, key, "", top_keys);
			continue;
		}
		if (node_is_null(list))
			continue;
		if (list->type != YAML_SEQUENCE_NODE)
			return loader_fail(ld, list, "%s: expected a list", list_key);
		for (item = list->data.sequence.items.start;
		     item < list->data.sequence.items.top; item++) {
			ret = item_fn(ld, loader_node(ld, *item),
				      (size_t)(item - list->data.sequence.items.start));
			if (ret)
				return ret;
		}
	}
	return 0;
}

static int workflow_item_load(struct loader *ld, const yaml_node_t *item,
			      size_t index)
{
	struct workflow wf;
	int ret;

	memset(&wf, 0, sizeof(wf));
	ret = workflow_item_parse(ld, item, index, &wf);
	if (!ret)
		ret = loader_add(ld, &wf);
	if (ret)
		workflow_release(&wf);
	return ret;
}

/* The document of a workflows file: {workflows: [...]}, or nothing at all. */
static int workflow_document_load(struct loader *ld, const yaml_node_t *root)
{
	return loader_list_document(ld, root, "workflows", workflow_item_load);
}

/* libyaml's own words for a syntax error, at its place in text. */
static int loader_syntax_error(struct loader *ld, const yaml_parser_t *parser,
			       const struct strbuf *text)
{
	yaml_mark_t mark = parser->problem_mark;
	size_t i;

	if (parser->error == YAML_MEMORY_ERROR)
		return error_errno(ld->err, -ENOMEM, "%s", ld->file);
	if (parser->error == YAML_READER_ERROR) {
		/* the reader knows only a byte offset: count lines and
		 * characters (UTF-8 lead bytes) up to it */
		memset(&mark, 0, sizeof(mark));
		for (i = 0; i < parser->problem_offset && i < text->len; i++) {
			if (text->buf[i] == '\n') {
				mark.line++;
				mark.column = 0;
			} else if (((unsigned char)text->buf[i] & 0xc0) != 0x80) {
				mark.column++;
			}
		}
	}
	if (parser->context)
		return loader_fail_at(ld, mark, "%s (%s at %d:%d)", parser->problem,
				      parser->context,
				      (int)parser->context_mark.line + 1,
				      (int)parser->context_mark.column + 1);
	return loader_fail_at(ld, mark, "%s", parser->problem);
}

/* Makes sense of the root node of a file's document (NULL: none). */
typedef int loader_document_fn(struct loader *ld, const yaml_node_t *root);

/*
 * Refuses text nested deeper than YAML_DEPTH_LIMIT, reading events only.
 * A syntax error is left to the load that follows, which reports it.
 */
static int loader_check_depth(struct loader *ld, const struct strbuf *text)
{
	yaml_parser_t parser;
	yaml_event_t event;
	int depth = 0, ret = 0;
	bool done = false;

	if (!yaml_parser_initialize(&parser))
		return error_errno(ld->err, -ENOMEM, "%s", ld->file);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text->buf, text->len);
	while (!done && ret == 0 && yaml_parser_parse(&parser, &event)) {
		if (event.type == YAML_SEQUENCE_START_EVENT || event.type == YAML_MAPPING_START_EVENT)
			depth++;
		else if (event.type == YAML_SEQUENCE_END_EVENT || event.type == YAML_MAPPING_END_EVENT)
			depth--;
		done = event.type == YAML_STREAM_END_EVENT;
		if (depth > YAML_DEPTH_LIMIT)
			ret = loader_fail_at(ld, event.start_mark, "nested more than %d deep",
					     YAML_DEPTH_LIMIT);
		yaml_event_delete(&event);
	}
	yaml_parser_delete(&parser);
	return ret;
}

/*
 * Loads the single document of the file at relative (to root) and hands
 * it to document_fn.  A file that is not there is nothing to load when
 * missing_ok, an error otherwise.
 */
static int loader_file_load(struct loader *ld, const char *root,
			    const char *relative, bool missing_ok,
			    loader_document_fn *document_fn)
{
	struct strbuf path = STRBUF_INIT, text = STRBUF_INIT;
	yaml_document_t document, extra;
	yaml_parser_t parser;
	int ret;

	strbuf_addf(&path, "%s/%s", root, relative);
	ret = fs_read_file(path.buf, &text);
	strbuf_release(&path);
	if (ret == -ENOENT && missing_ok) {
		ret = 0;
		goto out;
	}
	if (ret) {
		error_errno(ld->err, ret, "%s: cannot read", relative);
		goto out;
	}
	if (ld->files) {
		*ld->files = xrealloc(*ld->files,
				      (*ld->file_count + 1) * sizeof(**ld->files));
		(*ld->files)[*ld->file_count] = xstrdup(relative);
		ld->file = (*ld->files)[(*ld->file_count)++];
	} else {
		ld->file = relative;
	}

	if (!yaml_parser_initialize(&parser)) {
		ret = error_errno(ld->err, -ENOMEM, "%s", relative);
		goto out;
	}
	ret = loader_check_depth(ld, &text);
	if (ret)
		goto out_parser;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text.buf,
				     text.len);
	if (!yaml_parser_load(&parser, &document)) {
		ret = loader_syntax_error(ld, &parser, &text);
		goto out_parser;
	}
	ld->document = &document;
	ret = document_fn(ld, yaml_document_get_root_node(&document));
	yaml_document_delete(&document);
	ld->document = NULL;
	if (ret)
		goto out_parser;
	/* a second "---" document would be silently ignored otherwise */
	if (!yaml_parser_load(&parser, &extra)) {
		ret = loader_syntax_error(ld, &parser, &text);
		goto out_parser;
	}
	if (yaml_document_get_root_node(&extra))
		ret = loader_fail_at(ld, extra.start_mark,
				     "expected one YAML document, found a second");
	yaml_document_delete(&extra);
out_parser:
	yaml_parser_delete(&parser);
out:
	strbuf_release(&text);
	return ret;
}

/* Loads the workflows of one file; a file that is not there has none. */
static int workflow_file_load(struct loader *ld, const char *root,
			      const char *relative)
{
	return loader_file_load(ld, root, relative, true, workflow_document_load);
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The .yaml files of .dstack/workflows/ as paths relative to root, sorted
 * by bytes so that the order (and which duplicate is "first") does not
 * depend on the locale or the file system.
 */
static int workflow_dir_list(const char *root, char ***names, size_t *count,
			     struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	struct dirent *entry;
	struct stat st;
	DIR *dir;
	int ret = 0;

	strbuf_addf(&path, "%s/%s", root, WORKFLOW_DIR);
	dir = opendir(path.buf);
	strbuf_release(&path);
	if (!dir)
		return errno == ENOENT ? 0 :
		       error_errno(err, -errno, "%s: cannot list", WORKFLOW_DIR);
	for (;;) {
		size_t len;

		errno = 0;
		entry = readdir(dir);
		if (!entry) {
			if (errno)
				ret = error_errno(err, -errno, "%s: cannot list",
						  WORKFLOW_DIR);
			break;
		}
		len = strlen(entry->d_name);
		/* hidden files are editors' leftovers, not workflows */
		if (entry->d_name[0] == '.' || len <= 5 ||
		    strcmp(entry->d_name + len - 5, ".yaml"))
			continue;
		if (fstatat(dirfd(dir), entry->d_name, &st, 0) || !S_ISREG(st.st_mode))
			continue;
		strbuf_addf(&path, "%s/%s", WORKFLOW_DIR, entry->d_name);
		*names = xrealloc(*names, (*count + 1) * sizeof(**names));
		(*names)[(*count)++] = path.buf;
		path.buf = NULL;
		strbuf_release(&path);
	}
	closedir(dir);
	if (*count)
		qsort(*names, *count, sizeof(**names), compare_names);
	return ret;
}

int workflow_set_load(const char *root, struct workflow_set *set,
		      workflow_warn_fn *warn, void *warn_ctx, struct error *err)
{
	struct loader ld;
	char **names = NULL;
	size_t name_count = 0, i;
	int ret;

	memset(set, 0, sizeof(*set));
	memset(&ld, 0, sizeof(ld));
	ld.set = set;
	ld.files = &set->files;
	ld.file_count = &set->file_count;
	ld.warn = warn;
	ld.warn_ctx = warn_ctx;
	ld.err = err;
	ret = workflow_file_load(&ld, root, WORKFLOW_FILE);
	if (!ret)
		ret = workflow_dir_list(root, &names, &name_count, err);
	for (i = 0; !ret && i < name_count; i++)
		ret = workflow_file_load(&ld, root, names[i]);
	for (i = 0; i < name_count; i++)
		free(names[i]);
	free(names);
	free(ld.name_positions);
	if (ret)
		workflow_set_release(set);
	return ret;
}

void workflow_set_release(struct workflow_set *set)
{
	size_t i;

	for (i = 0; i < set->count; i++)
		workflow_release(&set->workflows[i]);
	free(set->workflows);
	for (i = 0; i < set->file_count; i++)
		free(set->files[i]);
	free(set->files);
	memset(set, 0, sizeof(*set));
}

const struct workflow *workflow_set_find(const struct workflow_set *set,
					 const char *name)
{
	size_t i;

	for (i = 0; i < set->count; i++)
		if (!strcmp(set->workflows[i].name, name))
			return &set->workflows[i];
	return NULL;
}

/* .dstack/providers.yaml */

static const char *const provider_def_keys[] = {
	"name", "image", "commands", "schema", NULL
};

/* Frees what a provider owns, parsed fully or only in part. */
static void provider_def_release(struct provider_def *def)
{
	size_t i;

	free(def->name);
	free(def->image);
	for (i = 0; i < def->command_count; i++)
		free(def->commands[i]);
	free(def->commands);
	free(def->schema);
	memset(def, 0, sizeof(*def));
}

/* A schema's path: relative to the repository root and inside it. */
static int schema_path(struct loader *ld, const yaml_node_t *node, char **out)
{
	int ret = string_value(ld, node, "schema", false, out);

	if (ret || !*out)
		return ret;
	return repo_path_check(ld, node, "schema", out);
}

/* Fills def from one item of the providers list. */
static int provider_item_parse(struct loader *ld, const yaml_node_t *item,
			       size_t index, struct provider_def *def)
{
	const yaml_node_t *commands = NULL;
	const yaml_node_pair_t *pair;
	int ret;

	if (item->type != YAML_MAPPING_NODE)
		return loader_fail(ld, item,
				   "providers[%zu]: expected a mapping with \"name\" and \"commands\"",
				   index);
	pair = item->data.mapping.pairs.start;
	def->position = loader_position(ld, pair < item->data.mapping.pairs.top ?
					    loader_node(ld, pair->key)->start_mark :
					    item->start_mark);
	ld->name_node = NULL;
	ret = mapping_check_keys(ld, item, "");
	if (ret)
		return ret;
	for (pair = item->data.mapping.pairs.start;
	     pair < item->data.mapping.pairs.top; pair++) {
		const yaml_node_t *key = loader_node(ld, pair->key);
		const yaml_node_t *value = loader_node(ld, pair->value);
		const char *name = scalar_text(key);

		if (!strcmp(name, "name")) {
			ret = string_value(ld, value, "name", true, &def->name);
			if (!ret && !*def->name)
				ret = loader_fail(ld, value, "name: expected a name");
			ld->name_node = value;
		} else if (!strcmp(name, "image")) {
			ret = string_value(ld, value, "image", false, &def->image);
		} else if (!strcmp(name, "commands")) {
			commands = value;
			ret = string_list_value(ld, value, "commands", &def->commands,
						&def->command_count);
			if (!ret && !def->command_count)
				ret = loader_fail(ld, value,
						  "commands: expected at least one command");
		} else if (!strcmp(name, "schema")) {
			ret = schema_path(ld, value, &def->schema);
		} else {
			loader_warn_unknown(ld, key, "", provider_def_keys);
		}
		if (ret)
			return ret;
	}
	if (!def->name)
		return loader_fail(ld, item, "missing key \"name\"");
	if (!commands)
		return loader_fail(ld, item, "provider '%s': missing key \"commands\"",
				   def->name);
	return 0;
}

/* Adds a parsed provider to the set unless its name is taken. */
static int provider_add(struct loader *ld, struct provider_def *def)
{
	struct provider_def_set *set = ld->providers;
	size_t i;

	for (i = 0; i < set->count; i++) {
		const struct workflow_position *first = &ld->name_positions[i];

		if (!strcmp(set->defs[i].name, def->name))
			return loader_fail(ld, ld->name_node,
					   "provider '%s' is defined twice (first at %s:%d:%d)",
					   def->name, first->file, first->line,
					   first->column);
	}
	set->defs = xrealloc(set->defs, (set->count + 1) * sizeof(*set->defs));
	ld->name_positions = xrealloc(ld->name_positions,
				      (set->count + 1) * sizeof(*ld->name_positions));
	ld->name_positions[set->count] = loader_position(ld, ld->name_node->start_mark);
	set->defs[set->count++] = *def;
	return 0;
}

static int provider_item_load(struct loader *ld, const yaml_node_t *item,
			      size_t index)
{
	struct provider_def def;
	int ret;

	memset(&def, 0, sizeof(def));
	ret = provider_item_parse(ld, item, index, &def);
	if (!ret)
		ret = provider_add(ld, &def);
	if (ret)
		provider_def_release(&def);
	return ret;
}

static int provider_document_load(struct loader *ld, const yaml_node_t *root)
{
	return loader_list_document(ld, root, "providers", provider_item_load);
}

int provider_def_set_load(const char *root, struct provider_def_set *set,
			  workflow_warn_fn *warn, void *warn_ctx,
			  struct error *err)
{
	struct loader ld;
	int ret;

	memset(set, 0, sizeof(*set));
	memset(&ld, 0, sizeof(ld));
	ld.providers = set;
	ld.files = &set->files;
	ld.file_count = &set->file_count;
	ld.warn = warn;
	ld.warn_ctx = warn_ctx;
	ld.err = err;
	ret = loader_file_load(&ld, root, PROVIDER_FILE, true,
			       provider_document_load);
	free(ld.name_positions);
	if (ret)
		provider_def_set_release(set);
	return ret;
}

void provider_def_set_release(struct provider_def_set *set)
{
	size_t i;

	for (i = 0; i < set->count; i++)
		provider_def_release(&set->defs[i]);
	free(set->defs);
	for (i = 0; i < set->file_count; i++)
		free(set->files[i]);
	free(set->files);
	memset(set, 0, sizeof(*set));
}

const struct provider_def *provider_def_set_find(const struct provider_def_set *set,
						 const char *name)
{
	size_t i;

	for (i = 0; i < set->count; i++)
		if (!strcmp(set->defs[i].name, name))
			return &set->defs[i];
	return NULL;
}

/* A schema file: any one YAML document, as JSON. */
static int json_document_load(struct loader *ld, const yaml_node_t *root)
{
	yaml_mark_t start;

	if (!root) {
		memset(&start, 0, sizeof(start));
		return loader_fail_at(ld, start, "expected a YAML document, found none");
	}
	ld->json_nodes = 0;
	return json_add_node(ld, ld->json, root, "", root, 0);
}

int workflow_yaml_file_to_json(const char *root, const char *path, char **json,
			       struct error *err)
{
	struct strbuf out = STRBUF_INIT;
	struct loader ld;
	int ret;

	memset(&ld, 0, sizeof(ld));
	ld.err = err;
	ld.json = &out;
	*json = NULL;
	ret = loader_file_load(&ld, root, path, false, json_document_load);
	if (!ret) {
		*json = out.buf;
		out.buf = NULL;
	}
	strbuf_release(&out);
	return ret;
}

/*
 * A plain integer is bytes; MB/GB/TB are MiB/GiB/TiB, as dstack read
 * them.  A fraction ("1.5GB") is allowed with a unit and rounded down.
 */
int workflow_parse_size(const char *text, uint64_t *bytes)
{
	static const struct {
		const char *unit;
		unsigned shift;
	} units[] = {
		{ "", 0 }, { "b", 0 },
		{ "k", 10 }, { "kb", 10 }, { "kib", 10 },
		{ "m", 20 }, { "mb", 20 }, { "mib", 20 },
		{ "g", 30 }, { "gb", 30 }, { "gib", 30 },
		{ "t", 40 }, { "tb", 40 }, { "tib", 40 },
	};
	uint64_t whole = 0, fraction = 0, scale = 1, result;
	const char *p = text;
	unsigned shift;
	size_t i;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (whole > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		/* six digits are finer than a byte of a TiB needs; later ones
		 * are read and dropped, which keeps fraction << 40 in range */
		for (; isdigit((unsigned char)*p); p++) {
			if (scale < 1000000) {
				fraction = fraction * 10 + (uint64_t)(*p - '0');
				scale *= 10;
			}
		}
	}
	while (*p == ' ')
		p++;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcasecmp(p, units[i].unit))
			break;
	if (i == sizeof(units) / sizeof(units[0]))
		return -EINVAL;
	shift = units[i].shift;
	if ((scale > 1 && !shift) || whole > (UINT64_MAX >> shift))
		return -EINVAL;
	result = whole << shift;
	if (result > UINT64_MAX - ((fraction << shift) / scale))
		return -EINVAL;
	*bytes = result + (fraction << shift) / scale;
	return 0;
}

/* After "${{" at p: the end of " run.args }}", or NULL if it is not that. */
static const char *args_placeholder_end(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncmp(p, "run.args", 8))
		return NULL;
	p += 8;
	while (*p == ' ' || *p == '\t')
		p++;
	return strncmp(p, "}}", 2) ? NULL : p + 2;
}

char *workflow_expand_args(const char *text, char *const *args, size_t count)
{
	struct strbuf out = STRBUF_INIT, quoted = STRBUF_INIT;
	const char *p = text, *hit, *end;
	size_t i;

	for (i = 0; i < count; i++) {
		if (i)
			strbuf_addstr(&quoted, " ");
		strbuf_add_shell_word(&quoted, args[i]);
	}
	strbuf_grow(&out, strlen(text));
	for (hit = strstr(p, "${{"); hit; hit = strstr(p, "${{")) {
		end = args_placeholder_end(hit + 3);
		if (!end) {
			strbuf_add(&out, p, (size_t)(hit + 3 - p));
			p = hit + 3;
			continue;
		}
		strbuf_add(&out, p, (size_t)(hit - p));
		if (quoted.len)
			strbuf_add(&out, quoted.buf, quoted.len);
		p = end;
	}
	strbuf_addstr(&out, p);
	strbuf_release(&quoted);
	return out.buf;
}
