/*
 * backend.c - where jobs run: on the host, or in their images through
 * dockerd.  A run's backend is the one asked for (`dstack run --backend`),
 * else `backend:` of $DSTACK_HOME/config.yaml, else the host.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "runner/internal.h"

static int backend_named(const char *name, enum run_backend *out)
{
	if (!strcmp(name, "host"))
		*out = BACKEND_HOST;
	else if (!strcmp(name, "docker"))
		*out = BACKEND_DOCKER;
	else
		return -EINVAL;
	return 0;
}

/* backend: of the config file at path; the host when it has none. */
static int backend_configured(const char *path, enum run_backend *out, struct error *err)
{
	FILE *file = fopen(path, "rb");
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root, *key, *value;
	yaml_node_pair_t *pair;
	int ret = 0;

	*out = BACKEND_HOST;
	if (!file)
		return errno == ENOENT ? 0 : error_errno(err, -errno, "%s", path);
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, file);
	if (!yaml_parser_load(&parser, &doc)) {
		ret = error_set(err, -EINVAL, "%s:%zu:%zu: %s", path, parser.problem_mark.line + 1,
				parser.problem_mark.column + 1, parser.problem ? parser.problem : "bad YAML");
		goto out;
	}
	root = yaml_document_get_root_node(&doc);
	if (root && root->type != YAML_MAPPING_NODE) {
		ret = error_set(err, -EINVAL, "%s:%zu:%zu: expected keys (backend: ...)", path,
				root->start_mark.line + 1, root->start_mark.column + 1);
	}
	for (pair = root && !ret ? root->data.mapping.pairs.start : NULL;
	     pair && pair < root->data.mapping.pairs.top && !ret; pair++) {
		key = yaml_document_get_node(&doc, pair->key);
		value = yaml_document_get_node(&doc, pair->value);
		if (key->type != YAML_SCALAR_NODE || strcmp((char *)key->data.scalar.value, "backend"))
			continue;
		if (value->type != YAML_SCALAR_NODE ||
		    backend_named((char *)value->data.scalar.value, out) < 0)
			ret = error_set(err, -EINVAL, "%s:%zu:%zu: backend: expected host or docker",
					path, value->start_mark.line + 1, value->start_mark.column + 1);
	}
	yaml_document_delete(&doc);
out:
	yaml_parser_delete(&parser);
	fclose(file);
	return ret;
}

int run_backend_resolve(struct store *store, const char *asked, enum run_backend *out,
			struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	int ret;

	if (asked) {
		if (backend_named(asked, out) < 0)
			return error_set(err, -EINVAL, "backend '%s': expected host or docker", asked);
		return 0;
	}
	strbuf_addf(&path, "%s/config.yaml", store_home(store));
	ret = backend_configured(path.buf, out, err);
	strbuf_release(&path);
	return ret;
}
