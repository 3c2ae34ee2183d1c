/*
 * env.c - environments for jobs and providers: "K=V" strings, later
 * settings of a name replacing earlier ones; and their values masked
 * where a spec is shown.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "runner/internal.h"

void job_env_set(struct job_env *env, const char *name, const char *value)
{
	struct strbuf var = STRBUF_INIT;
	size_t len = strlen(name), i;

	strbuf_addf(&var, "%s=%s", name, value);
	for (i = 0; i < env->count; i++) {
		if (!strncmp(env->vars[i], name, len) && env->vars[i][len] == '=') {
			free(env->vars[i]);
			env->vars[i] = var.buf;
			return;
		}
	}
	env->vars = xrealloc(env->vars, (env->count + 2) * sizeof(char *));
	env->vars[env->count++] = var.buf;
	env->vars[env->count] = NULL;
}

void job_env_put(struct job_env *env, const char *var)
{
	const char *eq = strchr(var, '=');
	char *name;

	if (!eq)
		return;
	name = xstrdup(var);
	name[eq - var] = '\0';
	job_env_set(env, name, eq + 1);
	free(name);
}

void job_env_release(struct job_env *env)
{
	size_t i;

	for (i = 0; i < env->count; i++)
		free(env->vars[i]);
	free(env->vars);
	memset(env, 0, sizeof(*env));
}

/* Words in a variable's name that say its value is a secret. */
static const char *const env_secret_words[] = {
	"SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "PRIVATE", "APIKEY", "API_KEY",
	"ACCESS_KEY", "AUTH",
};

bool env_name_is_secret(const char *name, size_t len)
{
	char upper[256];
	size_t i;

	if (len >= sizeof(upper))
		len = sizeof(upper) - 1;
	for (i = 0; i < len; i++)
		upper[i] = (char)toupper((unsigned char)name[i]);
	upper[len] = '\0';
	/* KEY, or a name ending in _KEY (SSH_KEY, AWS_SECRET_ACCESS_KEY). */
	if (!strcmp(upper, "KEY") || (len > 4 && !strcmp(upper + len - 4, "_KEY")))
		return true;
	for (i = 0; i < sizeof(env_secret_words) / sizeof(env_secret_words[0]); i++)
		if (strstr(upper, env_secret_words[i]))
			return true;
	return false;
}

static void env_value_mask(struct json *value)
{
	if (value->type != JSON_STRING)
		return;
	free(value->string);
	value->string = xstrdup(ENV_MASK);
}

void env_mask_spec(struct json *spec)
{
	struct json *env = NULL;
	size_t i;

	for (i = 0; spec->type == JSON_OBJECT && i < spec->count; i++)
		if (!strcmp(spec->keys[i], "env"))
			env = &spec->items[i];
	if (!env)
		return;
	/* {NAME: VALUE} as a workflow writes it, or ["NAME=VALUE"] as jobs hold it. */
	for (i = 0; env->type == JSON_OBJECT && i < env->count; i++)
		if (env_name_is_secret(env->keys[i], strlen(env->keys[i])))
			env_value_mask(&env->items[i]);
	for (i = 0; env->type == JSON_ARRAY && i < env->count; i++) {
		struct json *item = &env->items[i];
		const char *eq = item->type == JSON_STRING ? strchr(item->string, '=') : NULL;
		struct strbuf masked = STRBUF_INIT;

		if (!eq || !env_name_is_secret(item->string, (size_t)(eq - item->string)))
			continue;
		strbuf_add(&masked, item->string, (size_t)(eq - item->string) + 1);
		strbuf_addstr(&masked, ENV_MASK);
		free(item->string);
		item->string = masked.buf;
	}
}
