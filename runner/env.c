/*
 * env.c - environments for jobs and providers: "K=V" strings, later
 * settings of a name replacing earlier ones.
 */
#include <stdlib.h>
#include <string.h>

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
