/*
 * slurm.c - reading the helper's settings and requests, choosing the way
 * to the cluster, and what both ways share: host lists, time limits and a
 * job's exit status as Slurm keeps it.
 */
#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slurm/internal.h"

/* A string field: absent or null leaves *out NULL; empty is refused. */
static int field_string(const struct json *doc, const char *path, const char *key,
			const char **out, struct error *err)
{
	const struct json *value = json_get(doc, key);

	*out = NULL;
	if (!value || value->type == JSON_NULL)
		return 0;
	if (value->type != JSON_STRING || !*value->string)
		return error_set(err, -EINVAL, "%s: %s: expected a non-empty string", path, key);
	*out = value->string;
	return 0;
}

static int field_count(const struct json *doc, const char *path, const char *key,
		       long long *out, struct error *err)
{
	const struct json *value = json_get(doc, key);

	*out = 0;
	if (!value || value->type == JSON_NULL)
		return 0;
	if (!json_integer(value, out) || *out < 0)
		return error_set(err, -EINVAL, "%s: %s: expected a count", path, key);
	return 0;
}

/* A list of strings: *out gets count + 1 pointers (NULL-terminated) into doc. */
static int field_strings(const struct json *doc, const char *path, const char *key,
			 char ***out, size_t *count, struct error *err)
{
	int ret = json_get_strings(doc, key, out, count, err);

	return ret < 0 ? error_set(err, ret, "%s: %s", path, err->message) : 0;
}

static int read_json(const char *path, struct json **doc, struct error *err)
{
	struct strbuf text = STRBUF_INIT;
	struct error parse = { 0 };
	int ret = fs_read_file(path, &text);

	*doc = NULL;
	if (ret < 0)
		return error_errno(err, ret, "%s", path);
	ret = json_parse(text.buf ? text.buf : "", text.len, doc, &parse);
	strbuf_release(&text);
	if (ret < 0)
		return error_set(err, ret, "%s: %s", path, parse.message);
	if ((*doc)->type != JSON_OBJECT)
		return error_set(err, -EINVAL, "%s: expected an object", path);
	return 0;
}

int slurm_settings_read(const char *path, struct slurm_settings *settings, struct error *err)
{
	const char *token_file = NULL, *env;
	struct strbuf token = STRBUF_INIT;
	struct passwd *pw;
	size_t i;
	int ret;

	memset(settings, 0, sizeof(*settings));
	if ((ret = read_json(path, &settings->doc, err)) < 0)
		return ret;
	if (field_string(settings->doc, path, "url", &settings->url, err) < 0 ||
	    field_string(settings->doc, path, "token_file", &token_file, err) < 0 ||
	    field_string(settings->doc, path, "user", &settings->user, err) < 0 ||
	    field_string(settings->doc, path, "partition", &settings->partition, err) < 0 ||
	    field_string(settings->doc, path, "account", &settings->account, err) < 0 ||
	    field_strings(settings->doc, path, "options", &settings->options,
			  &settings->option_count, err) < 0)
		return err->code;
	for (i = 0; i < settings->option_count; i++)
		if (settings->options[i][0] != '-')
			return error_set(err, -EINVAL, "%s: options[%zu]: '%s' is not an option",
					 path, i, settings->options[i]);
	if (!settings->url)
		return 0;
	if (strncmp(settings->url, "http://", 7) && strncmp(settings->url, "https://", 8))
		return error_set(err, -EINVAL, "%s: url: '%s' is not an http:// or https:// URL",
				 path, settings->url);
	if (!settings->user) {
		pw = getpwuid(geteuid());
		if (!pw)
			return error_set(err, -ENOENT, "%s: user: no name for uid %d; name one",
					 path, (int)geteuid());
		settings->user = settings->own_user = xstrdup(pw->pw_name);
	}
	if (token_file) {
		ret = fs_read_file(token_file, &token);
		if (ret < 0) {
			strbuf_release(&token);
			return error_errno(err, ret, "%s: token_file %s", path, token_file);
		}
	} else if ((env = getenv("SLURM_JWT"))) {
		strbuf_addstr(&token, env);
	}
	strbuf_trim_end(&token);
	i = 0;
	while (i < token.len && isspace((unsigned char)token.buf[i]))
		i++;
	if (i == token.len) {
		strbuf_release(&token);
		return error_set(err, -EINVAL,
				 "%s: url %s needs a JWT: name a token_file or set SLURM_JWT%s%s",
				 path, settings->url, token_file ? " (" : "",
				 token_file ? "the token_file is empty)" : "");
	}
	settings->token = xstrdup(token.buf + i);
	strbuf_release(&token);
	return 0;
}

void slurm_settings_release(struct slurm_settings *settings)
{
	free(settings->options);
	free(settings->token);
	free(settings->own_user);
	json_free(settings->doc);
	memset(settings, 0, sizeof(*settings));
}

int slurm_request_read(const char *path, struct slurm_request *request, struct error *err)
{
	const struct json *list;
	size_t i;
	int ret;

	memset(request, 0, sizeof(*request));
	if ((ret = read_json(path, &request->doc, err)) < 0)
		return ret;
	if (field_string(request->doc, path, "name", &request->name, err) < 0 ||
	    field_string(request->doc, path, "script", &request->script, err) < 0 ||
	    field_string(request->doc, path, "workdir", &request->workdir, err) < 0 ||
	    field_string(request->doc, path, "output", &request->output, err) < 0 ||
	    field_string(request->doc, path, "gpu_name", &request->gpu_name, err) < 0 ||
	    field_strings(request->doc, path, "env", &request->env, &request->env_count, err) < 0 ||
	    field_count(request->doc, path, "cpus", &request->cpus, err) < 0 ||
	    field_count(request->doc, path, "memory_mb", &request->memory_mb, err) < 0 ||
	    field_count(request->doc, path, "gpus", &request->gpus, err) < 0)
		return err->code;
	if (!request->name)
		return error_set(err, -EINVAL, "%s: name: required", path);
	if (!request->script)
		return error_set(err, -EINVAL, "%s: script: required", path);
	if (strncmp(request->script, "#!", 2))
		return error_set(err, -EINVAL, "%s: script: must start with #!", path);
	for (i = 0; i < request->env_count; i++)
		if (!strchr(request->env[i], '=') || request->env[i][0] == '=')
			return error_set(err, -EINVAL, "%s: env[%zu]: expected NAME=VALUE", path, i);
	list = json_get(request->doc, "after_ok");
	if (list && list->type != JSON_NULL) {
		if (list->type != JSON_ARRAY)
			return error_set(err, -EINVAL, "%s: after_ok: expected a list of job ids",
					 path);
		request->after_ok = xcalloc(list->count + 1, sizeof(long long));
		for (i = 0; i < list->count; i++)
			if (!json_integer(&list->items[i], &request->after_ok[i]) ||
			    request->after_ok[i] <= 0)
				return error_set(err, -EINVAL, "%s: after_ok[%zu]: expected a job id",
						 path, i);
		request->after_ok_count = list->count;
	}
	return 0;
}

void slurm_request_release(struct slurm_request *request)
{
	free(request->env);
	free(request->after_ok);
	json_free(request->doc);
	memset(request, 0, sizeof(*request));
}

int slurm_submit(const struct slurm_settings *settings, const struct slurm_request *request,
		 long long *id, struct error *err)
{
	return settings->url ? slurm_rest_submit(settings, request, id, err)
			     : slurm_cmd_submit(settings, request, id, err);
}

int slurm_state(const struct slurm_settings *settings, const long long *ids, size_t count,
		struct slurm_job_state *states, struct error *err)
{
	return settings->url ? slurm_rest_state(settings, ids, count, states, err)
			     : slurm_cmd_state(settings, ids, count, states, err);
}

int slurm_cancel(const struct slurm_settings *settings, const long long *ids, size_t count,
		 struct error *err)
{
	return settings->url ? slurm_rest_cancel(settings, ids, count, err)
			     : slurm_cmd_cancel(settings, ids, count, err);
}

void slurm_first_host(const char *list, char *out, size_t size)
{
	struct strbuf host = STRBUF_INIT;
	const char *p = list, *open, *close, *end;

	/* The first name ends at a comma outside brackets. */
	end = p;
	while (*end && *end != ',' && *end != '[')
		end++;
	strbuf_add(&host, p, (size_t)(end - p));
	if (*end == '[') {
		open = end + 1;
		close = strchr(open, ']');
		/* "gpu[07-09,12]-ib": the range's first value, then what follows. */
		end = open;
		while (end < (close ? close : open + strlen(open)) && *end != '-' && *end != ',')
			end++;
		strbuf_add(&host, open, (size_t)(end - open));
		if (close) {
			for (p = close + 1; *p && *p != ',' && *p != '['; p++)
				strbuf_add(&host, p, 1);
		}
	}
	snprintf(out, size, "%s", host.buf ? host.buf : "");
	strbuf_release(&host);
}

void slurm_state_fill(struct slurm_job_state *state, const char *word, const char *reason,
		      const char *nodes, long long status)
{
	snprintf(state->state, sizeof(state->state), "%s", word && *word ? word : "UNKNOWN");
	snprintf(state->reason, sizeof(state->reason), "%s",
		 reason && strcmp(reason, "None") && strcmp(reason, "(null)") ? reason : "");
	slurm_first_host(nodes && strcmp(nodes, "(null)") ? nodes : "", state->node,
			 sizeof(state->node));
	/* Slurm keeps the batch script's wait status: ExitCode=C:S. */
	state->exit_code = (int)((status >> 8) & 0xff);
	state->signal = (int)(status & 0x7f);
}

void slurm_output_pattern(const char *path, struct strbuf *out)
{
	for (; *path; path++) {
		if (*path == '%')
			strbuf_addstr(out, "%");
		strbuf_add(out, path, 1);
	}
}

static int parse_number(const char **p, long long *out)
{
	char *end;

	if (!isdigit((unsigned char)**p))
		return -EINVAL;
	errno = 0;
	*out = strtoll(*p, &end, 10);
	if (errno || *out > 100000000)
		return -EINVAL;
	*p = end;
	return 0;
}

int slurm_parse_minutes(const char *text, long long *minutes)
{
	long long parts[3] = { 0 }, days = 0, seconds;
	const char *p = text;
	size_t n = 0;
	bool has_days = false;

	if (!strcasecmp(text, "INFINITE") || !strcasecmp(text, "UNLIMITED")) {
		*minutes = -1;
		return 0;
	}
	if (strchr(text, '-')) {
		if (parse_number(&p, &days) < 0 || *p++ != '-')
			return -EINVAL;
		has_days = true;
	}
	for (;;) {
		if (n == 3 || parse_number(&p, &parts[n]) < 0)
			return -EINVAL;
		n++;
		if (!*p)
			break;
		if (*p++ != ':')
			return -EINVAL;
	}
	if (has_days)	/* D-H, D-H:M, D-H:M:S */
		seconds = days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2];
	else if (n == 1)	/* M */
		seconds = parts[0] * 60;
	else if (n == 2)	/* M:S */
		seconds = parts[0] * 60 + parts[1];
	else	/* H:M:S */
		seconds = parts[0] * 3600 + parts[1] * 60 + parts[2];
	*minutes = (seconds + 59) / 60;
	return 0;
}
