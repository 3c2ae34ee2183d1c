/*
 * backend.c - where jobs run: on the host, in their images through
 * dockerd, or on a Slurm cluster.  A run's backend is the one asked for
 * (`dstack run --backend`), else `backend:` of $DSTACK_HOME/config.yaml,
 * else the host.  The slurm backend's settings come from the config's
 * `slurm:` keys, whichever way it was asked for.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "lib/json.h"
#include "runner/internal.h"

static int backend_named(const char *name, enum run_backend *out)
{
	if (!strcmp(name, "host"))
		*out = BACKEND_HOST;
	else if (!strcmp(name, "docker"))
		*out = BACKEND_DOCKER;
	else if (!strcmp(name, "slurm"))
		*out = BACKEND_SLURM;
	else
		return -EINVAL;
	return 0;
}

static int config_error(struct error *err, const char *path, const yaml_node_t *node,
			const char *what)
{
	return error_set(err, -EINVAL, "%s:%zu:%zu: %s", path, node->start_mark.line + 1,
			 node->start_mark.column + 1, what);
}

/* The keys of `slurm:`, as the JSON object dstack-slurm reads. */
static int slurm_settings_read(const char *path, yaml_document_t *doc, yaml_node_t *map,
			       struct strbuf *json, struct error *err)
{
	static const char *const scalars[] = { "url", "token_file", "user", "partition",
					       "account" };
	yaml_node_pair_t *pair;
	yaml_node_item_t *item;
	char what[96];
	size_t i;

	if (map->type != YAML_MAPPING_NODE)
		return config_error(err, path, map, "slurm: expected keys (url, partition, ...)");
	strbuf_addstr(json, "{");
	for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *key = yaml_document_get_node(doc, pair->key);
		yaml_node_t *value = yaml_document_get_node(doc, pair->value);
		const char *name = key->type == YAML_SCALAR_NODE ?
				   (const char *)key->data.scalar.value : "";

		for (i = 0; i < sizeof(scalars) / sizeof(*scalars); i++)
			if (!strcmp(name, scalars[i]))
				break;
		strbuf_addstr(json, json->len > 1 ? "," : "");
		if (i < sizeof(scalars) / sizeof(*scalars)) {
			if (value->type != YAML_SCALAR_NODE) {
				snprintf(what, sizeof(what), "slurm.%s: expected a string", name);
				return config_error(err, path, value, what);
			}
			json_add_string(json, name);
			strbuf_addstr(json, ":");
			json_add_string(json, (const char *)value->data.scalar.value);
			continue;
		}
		if (strcmp(name, "options"))
			return config_error(err, path, key, "slurm: unknown key (expected url,"
					    " token_file, user, partition, account or options)");
		if (value->type != YAML_SEQUENCE_NODE)
			return config_error(err, path, value, "slurm.options: expected a list of"
					    " sbatch options");
		strbuf_addstr(json, "\"options\":[");
		for (item = value->data.sequence.items.start;
		     item < value->data.sequence.items.top; item++) {
			yaml_node_t *option = yaml_document_get_node(doc, *item);

			if (option->type != YAML_SCALAR_NODE)
				return config_error(err, path, option, "slurm.options: expected a"
						    " string");
			strbuf_addstr(json, item > value->data.sequence.items.start ? "," : "");
			json_add_string(json, (const char *)option->data.scalar.value);
		}
		strbuf_addstr(json, "]");
	}
	strbuf_addstr(json, "}");
	return 0;
}

/*
 * backend: of the config file at path (the host when it has none), and
 * slurm: as JSON into slurm (when not NULL).
 */
static int backend_configured(const char *path, enum run_backend *out, struct strbuf *slurm,
			      struct error *err)
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
	if (root && root->type != YAML_MAPPING_NODE)
		ret = config_error(err, path, root, "expected keys (backend: ...)");
	for (pair = root && !ret ? root->data.mapping.pairs.start : NULL;
	     pair && pair < root->data.mapping.pairs.top && !ret; pair++) {
		key = yaml_document_get_node(&doc, pair->key);
		value = yaml_document_get_node(&doc, pair->value);
		if (key->type != YAML_SCALAR_NODE)
			continue;
		if (!strcmp((char *)key->data.scalar.value, "slurm") && slurm)
			ret = slurm_settings_read(path, &doc, value, slurm, err);
		if (strcmp((char *)key->data.scalar.value, "backend"))
			continue;
		if (value->type != YAML_SCALAR_NODE ||
		    backend_named((char *)value->data.scalar.value, out) < 0)
			ret = config_error(err, path, value, "backend: expected host, docker or slurm");
	}
	yaml_document_delete(&doc);
out:
	yaml_parser_delete(&parser);
	fclose(file);
	return ret;
}

int run_backend_resolve(struct store *store, const char *asked, enum run_backend *out,
			struct strbuf *slurm, struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	enum run_backend configured;
	int ret;

	if (asked && backend_named(asked, out) < 0)
		return error_set(err, -EINVAL, "backend '%s': expected host, docker or slurm",
				 asked);
	strbuf_addf(&path, "%s/config.yaml", store_home(store));
	ret = backend_configured(path.buf, &configured, slurm, err);
	strbuf_release(&path);
	if (ret == 0 && !asked)
		*out = configured;
	/* Settings or none, dstack-slurm is given an object. */
	if (ret == 0 && !slurm->len)
		strbuf_addstr(slurm, "{}");
	return ret;
}
