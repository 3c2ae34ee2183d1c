/*
 * rest.c - the cluster through slurmrestd: openapi/v0.0.38, the version
 * Slurm 22.05 serves without slurmdbd.  Every call is one HTTP request
 * with libcurl (one connection kept for a run's calls), JSON in and out,
 * the user and the JWT in X-SLURM-USER-NAME and X-SLURM-USER-TOKEN.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/json.h"
#include "slurm/internal.h"

#define REST_API "/slurm/v0.0.38"

/* Slurm's errors a cancel does not mind: the job is gone, or ended. */
#define ESLURM_INVALID_JOB_ID 2017
#define ESLURM_ALREADY_DONE 2021

struct rest {
	CURL *curl;
	const struct slurm_settings *settings;
	struct curl_slist *headers;
	struct strbuf base;	/* the url without a trailing / */
};

static size_t rest_write(char *data, size_t size, size_t count, void *ctx)
{
	strbuf_add(ctx, data, size * count);
	return size * count;
}

static int rest_open(struct rest *rest, const struct slurm_settings *settings, struct error *err)
{
	struct strbuf header = STRBUF_INIT;

	memset(rest, 0, sizeof(*rest));
	rest->settings = settings;
	strbuf_addstr(&rest->base, settings->url);
	while (rest->base.len && rest->base.buf[rest->base.len - 1] == '/')
		rest->base.buf[--rest->base.len] = '\0';
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return error_set(err, -ENOMEM, "cannot start libcurl");
	rest->curl = curl_easy_init();
	if (!rest->curl) {
		curl_global_cleanup();
		return error_set(err, -ENOMEM, "cannot start libcurl");
	}
	strbuf_addf(&header, "X-SLURM-USER-NAME: %s", settings->user);
	rest->headers = curl_slist_append(rest->headers, header.buf);
	strbuf_reset(&header);
	strbuf_addf(&header, "X-SLURM-USER-TOKEN: %s", settings->token);
	rest->headers = curl_slist_append(rest->headers, header.buf);
	rest->headers = curl_slist_append(rest->headers, "Accept: application/json");
	rest->headers = curl_slist_append(rest->headers, "Content-Type: application/json");
	strbuf_release(&header);
	return 0;
}

static void rest_close(struct rest *rest)
{
	curl_slist_free_all(rest->headers);
	curl_easy_cleanup(rest->curl);
	curl_global_cleanup();
	strbuf_release(&rest->base);
}

/*
 * The API's errors in one line: each "error" with its "description"
 * where that says more; *code gets the first one's number.  0 when the
 * reply lists none.
 */
static size_t rest_errors(const struct json *doc, struct strbuf *out, long long *code)
{
	const struct json *errors = json_get(doc, "errors"), *item, *text, *description, *number;
	size_t i, count = 0;

	*code = 0;
	if (!errors || errors->type != JSON_ARRAY)
		return 0;
	for (i = 0; i < errors->count; i++) {
		item = &errors->items[i];
		text = json_get(item, "error");
		description = json_get(item, "description");
		number = json_get(item, "error_number");
		if (!number)
			number = json_get(item, "error_code");
		if (count++ == 0 && number)
			json_integer(number, code);
		if (out->len)
			strbuf_addstr(out, "; ");
		if (text && text->type == JSON_STRING && *text->string)
			strbuf_addstr(out, text->string);
		if (description && description->type == JSON_STRING && *description->string &&
		    (!text || text->type != JSON_STRING || strcmp(text->string, description->string)))
			strbuf_addf(out, "%s%s", text && text->type == JSON_STRING && *text->string
				    ? ": " : "", description->string);
	}
	return count;
}

/*
 * One request: method on path (below REST_API), with body when not NULL.
 * *http gets the status and *doc the reply parsed (NULL when it is not
 * JSON, the text then in raw).  Errors here are the transport's.
 */
static int rest_call(struct rest *rest, const char *method, const char *path, const char *body,
		     long *http, struct json **doc, struct strbuf *raw, struct strbuf *url,
		     struct error *err)
{
	struct error ignored = { 0 };
	CURLcode code;

	strbuf_reset(url);
	strbuf_addf(url, "%s%s%s", rest->base.buf, REST_API, path);
	*doc = NULL;
	*http = 0;
	strbuf_reset(raw);
	curl_easy_reset(rest->curl);
	curl_easy_setopt(rest->curl, CURLOPT_URL, url->buf);
	curl_easy_setopt(rest->curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(rest->curl, CURLOPT_HTTPHEADER, rest->headers);
	curl_easy_setopt(rest->curl, CURLOPT_WRITEFUNCTION, rest_write);
	curl_easy_setopt(rest->curl, CURLOPT_WRITEDATA, raw);
	curl_easy_setopt(rest->curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(rest->curl, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(rest->curl, CURLOPT_NOSIGNAL, 1L);
	if (body)
		curl_easy_setopt(rest->curl, CURLOPT_POSTFIELDS, body);
	code = curl_easy_perform(rest->curl);
	if (code == CURLE_COULDNT_CONNECT)
		return error_set(err, -ECONNREFUSED, "cannot reach slurmrestd at %s (is it running?)",
				 rest->base.buf);
	if (code != CURLE_OK)
		return error_set(err, -EIO, "%s %s: %s", method, url->buf, curl_easy_strerror(code));
	curl_easy_getinfo(rest->curl, CURLINFO_RESPONSE_CODE, http);
	if (raw->len && json_parse(raw->buf, raw->len, doc, &ignored) < 0)
		*doc = NULL;
	return 0;
}

/* The error for a reply that failed: the URL, the status, the API's words. */
static int rest_failed(const struct rest *rest, const char *method, const struct strbuf *url,
		       long http, const struct json *doc, const struct strbuf *raw,
		       struct error *err)
{
	struct strbuf message = STRBUF_INIT;
	long long code;
	size_t i;
	int ret;

	if (doc)
		rest_errors(doc, &message, &code);
	if (!message.len && raw->len) {
		/* Not the API's JSON (a proxy, "Authentication failure"): its text, on one line. */
		for (i = 0; i < raw->len && message.len < 300; i++)
			strbuf_add(&message, raw->buf[i] == '\n' || raw->buf[i] == '\r' ? " " : &raw->buf[i], 1);
		strbuf_trim_end(&message);
	}
	/* slurmctld drops a connection whose token it refuses, and says no more. */
	if (strstr(message.buf ? message.buf : "", "Zero Bytes were transmitted") ||
	    !strncmp(message.buf ? message.buf : "", "Unspecified error", 17))
		strbuf_addf(&message, " (is the token one for user %s, and still valid?)",
			    rest->settings->user);
	ret = error_set(err, http == 401 || http == 403 ? -EACCES : -EIO, "%s %s: HTTP %ld: %s",
			method, url->buf, http, message.len ? message.buf : "no error text");
	strbuf_release(&message);
	return ret;
}

/* A job's properties as the REST API names them; a later value replaces an earlier. */
struct fields {
	char **keys;
	struct strbuf *values;	/* JSON text */
	size_t count;
};

static struct strbuf *field_set(struct fields *fields, const char *key)
{
	size_t i;

	for (i = 0; i < fields->count; i++)
		if (!strcmp(fields->keys[i], key)) {
			strbuf_reset(&fields->values[i]);
			return &fields->values[i];
		}
	fields->keys = xrealloc(fields->keys, (fields->count + 1) * sizeof(char *));
	fields->values = xrealloc(fields->values, (fields->count + 1) * sizeof(struct strbuf));
	fields->keys[fields->count] = xstrdup(key);
	fields->values[fields->count] = (struct strbuf)STRBUF_INIT;
	return &fields->values[fields->count++];
}

static void field_string(struct fields *fields, const char *key, const char *value)
{
	json_add_string(field_set(fields, key), value);
}

static void field_number(struct fields *fields, const char *key, long long value)
{
	strbuf_addf(field_set(fields, key), "%lld", value);
}

static void fields_release(struct fields *fields)
{
	size_t i;

	for (i = 0; i < fields->count; i++) {
		free(fields->keys[i]);
		strbuf_release(&fields->values[i]);
	}
	free(fields->keys);
	free(fields->values);
}

/* sbatch options with a field of their own in v0.0.38's job properties. */
static const struct {
	const char *option;
	const char *field;
	enum { OPT_STRING, OPT_MINUTES, OPT_NUMBER } kind;
} rest_options[] = {
	{ "--time", "time_limit", OPT_MINUTES },
	{ "--time-min", "time_minimum", OPT_MINUTES },
	{ "--partition", "partition", OPT_STRING },
	{ "--account", "account", OPT_STRING },
	{ "--qos", "qos", OPT_STRING },
	{ "--constraint", "constraints", OPT_STRING },
	{ "--reservation", "reservation", OPT_STRING },
	{ "--comment", "comment", OPT_STRING },
	{ "--wckey", "wckey", OPT_STRING },
	{ "--licenses", "licenses", OPT_STRING },
	{ "--nice", "nice", OPT_NUMBER },
};

/* Maps one of the settings' options onto fields, or refuses it by name. */
static int rest_option(const char *option, struct fields *fields, struct error *err)
{
	const char *eq = strchr(option, '=');
	size_t name_len = eq ? (size_t)(eq - option) : strlen(option), i;
	long long number;
	char *end;

	if (!strcmp(option, "--requeue") || !strcmp(option, "--no-requeue")) {
		strbuf_addstr(field_set(fields, "requeue"), option[2] == 'r' ? "true" : "false");
		return 0;
	}
	for (i = 0; eq && i < sizeof(rest_options) / sizeof(rest_options[0]); i++) {
		if (strlen(rest_options[i].option) != name_len ||
		    strncmp(option, rest_options[i].option, name_len))
			continue;
		switch (rest_options[i].kind) {
		case OPT_STRING:
			field_string(fields, rest_options[i].field, eq + 1);
			return 0;
		case OPT_MINUTES:
			if (slurm_parse_minutes(eq + 1, &number) < 0 || number < 0)
				return error_set(err, -EINVAL,
						 "option %s: expected minutes, MM:SS, HH:MM:SS or"
						 " D-HH[:MM[:SS]]", option);
			field_number(fields, rest_options[i].field, number);
			return 0;
		case OPT_NUMBER:
			errno = 0;
			number = strtoll(eq + 1, &end, 10);
			if (errno || end == eq + 1 || *end)
				return error_set(err, -EINVAL, "option %s: expected a number", option);
			field_number(fields, rest_options[i].field, number);
			return 0;
		}
	}
	return error_set(err, -EINVAL,
			 "option %s cannot go through slurmrestd (openapi/v0.0.38 takes --time,"
			 " --time-min, --partition, --account, --qos, --constraint, --reservation,"
			 " --comment, --wckey, --licenses, --nice and --[no-]requeue, each as"
			 " --NAME=VALUE); drop it or leave \"url\" out to use sbatch", option);
}

/* The environment as v0.0.38 takes it: an object; a later NAME wins. */
static void rest_environment(const struct slurm_request *request, struct strbuf *out)
{
	struct strbuf name = STRBUF_INIT;
	size_t i, j, len;
	bool later;

	strbuf_addstr(out, "{");
	for (i = 0; i < request->env_count; i++) {
		len = (size_t)(strchr(request->env[i], '=') - request->env[i]);
		later = false;
		for (j = i + 1; j < request->env_count && !later; j++)
			later = !strncmp(request->env[j], request->env[i], len + 1);
		if (later)
			continue;
		if (out->len > 1)
			strbuf_addstr(out, ",");
		strbuf_reset(&name);
		strbuf_add(&name, request->env[i], len);
		json_add_string(out, name.buf);
		strbuf_addstr(out, ":");
		json_add_string(out, request->env[i] + len + 1);
	}
	/* v0.0.38 wants one; slurmd sets this one for every batch job anyway. */
	if (out->len == 1)
		strbuf_addstr(out, "\"ENVIRONMENT\":\"BATCH\"");
	strbuf_addstr(out, "}");
	strbuf_release(&name);
}

static int rest_job_body(const struct slurm_settings *settings,
			 const struct slurm_request *request, struct strbuf *body,
			 struct error *err)
{
	struct fields fields = { 0 };
	struct strbuf text = STRBUF_INIT;
	char *cwd = NULL;
	size_t i;
	int ret = 0;

	field_string(&fields, "name", request->name);
	if (!request->workdir)
		cwd = getcwd(NULL, 0);	/* where sbatch would run it */
	field_string(&fields, "current_working_directory",
		     request->workdir ? request->workdir : cwd ? cwd : "/");
	free(cwd);
	if (request->output) {
		/* stderr follows stdout when only stdout is named, as with sbatch. */
		slurm_output_pattern(request->output, &text);
		field_string(&fields, "standard_output", text.buf);
		strbuf_reset(&text);
	}
	rest_environment(request, field_set(&fields, "environment"));
	if (request->cpus)
		field_number(&fields, "cpus_per_task", request->cpus);
	if (request->memory_mb)
		field_number(&fields, "memory_per_node", request->memory_mb);
	if (request->gpus) {
		strbuf_addf(&text, "gpu:%s%s%lld", request->gpu_name ? request->gpu_name : "",
			    request->gpu_name ? ":" : "", request->gpus);
		field_string(&fields, "gres", text.buf);
		strbuf_reset(&text);
	}
	if (request->after_ok_count) {
		strbuf_addstr(&text, "afterok");
		for (i = 0; i < request->after_ok_count; i++)
			strbuf_addf(&text, ":%lld", request->after_ok[i]);
		field_string(&fields, "dependency", text.buf);
		strbuf_reset(&text);
		strbuf_addstr(field_set(&fields, "kill_on_invalid_dependency"), "true");
	}
	if (settings->partition)
		field_string(&fields, "partition", settings->partition);
	if (settings->account)
		field_string(&fields, "account", settings->account);
	for (i = 0; i < settings->option_count && ret == 0; i++)
		ret = rest_option(settings->options[i], &fields, err);
	if (ret == 0) {
		strbuf_addstr(body, "{\"script\":");
		json_add_string(body, request->script);
		strbuf_addstr(body, ",\"job\":{");
		for (i = 0; i < fields.count; i++) {
			if (i)
				strbuf_addstr(body, ",");
			json_add_string(body, fields.keys[i]);
			strbuf_addf(body, ":%s", fields.values[i].buf ? fields.values[i].buf : "null");
		}
		strbuf_addstr(body, "}}");
	}
	fields_release(&fields);
	strbuf_release(&text);
	return ret;
}

int slurm_rest_submit(const struct slurm_settings *settings, const struct slurm_request *request,
		      long long *id, struct error *err)
{
	struct strbuf body = STRBUF_INIT, raw = STRBUF_INIT, url = STRBUF_INIT;
	struct json *doc = NULL;
	struct rest rest;
	long http;
	int ret;

	ret = rest_job_body(settings, request, &body, err);
	if (ret < 0)
		goto out;
	if ((ret = rest_open(&rest, settings, err)) < 0)
		goto out;
	ret = rest_call(&rest, "POST", "/job/submit", body.buf, &http, &doc, &raw, &url, err);
	/* A job id is a job, even with errors beside it (the job then waits:
	 * sbatch takes it as well). */
	if (ret == 0 && (http / 100 != 2 || !json_integer(json_get(doc, "job_id"), id) || *id <= 0))
		ret = rest_failed(&rest, "POST", &url, http, doc, &raw, err);
	rest_close(&rest);
out:
	json_free(doc);
	strbuf_release(&body);
	strbuf_release(&raw);
	strbuf_release(&url);
	return ret;
}

static const char *json_text(const struct json *object, const char *key)
{
	const struct json *value = json_get(object, key);

	return value && value->type == JSON_STRING ? value->string : "";
}

int slurm_rest_state(const struct slurm_settings *settings, const long long *ids, size_t count,
		     struct slurm_job_state *states, struct error *err)
{
	struct strbuf path = STRBUF_INIT, raw = STRBUF_INIT, url = STRBUF_INIT,
		      message = STRBUF_INIT;
	const struct json *jobs, *job;
	struct json *doc = NULL;
	long long code, status, job_id;
	struct rest rest;
	size_t i, j;
	long http;
	int ret;

	if ((ret = rest_open(&rest, settings, err)) < 0)
		return ret;
	for (i = 0; i < count && ret == 0; i++) {
		states[i].id = ids[i];
		slurm_state_fill(&states[i], "UNKNOWN", "", "", 0);
		strbuf_reset(&path);
		strbuf_addf(&path, "/job/%lld", ids[i]);
		json_free(doc);
		ret = rest_call(&rest, "GET", path.buf, NULL, &http, &doc, &raw, &url, err);
		if (ret < 0)
			break;
		strbuf_reset(&message);
		if (rest_errors(doc, &message, &code) && code == ESLURM_INVALID_JOB_ID)
			continue;	/* forgotten: UNKNOWN */
		jobs = json_get(doc, "jobs");
		if (http / 100 != 2 || !jobs || jobs->type != JSON_ARRAY) {
			ret = rest_failed(&rest, "GET", &url, http, doc, &raw, err);
			break;
		}
		for (j = 0; j < jobs->count; j++) {
			job = &jobs->items[j];
			if (!json_integer(json_get(job, "job_id"), &job_id) || job_id != ids[i])
				continue;
			if (!json_integer(json_get(job, "exit_code"), &status))
				status = 0;
			slurm_state_fill(&states[i], json_text(job, "job_state"),
					 json_text(job, "state_reason"), json_text(job, "nodes"),
					 status);
		}
	}
	rest_close(&rest);
	json_free(doc);
	strbuf_release(&path);
	strbuf_release(&raw);
	strbuf_release(&url);
	strbuf_release(&message);
	return ret;
}

int slurm_rest_cancel(const struct slurm_settings *settings, const long long *ids, size_t count,
		      struct error *err)
{
	struct strbuf path = STRBUF_INIT, raw = STRBUF_INIT, url = STRBUF_INIT,
		      message = STRBUF_INIT;
	struct json *doc = NULL;
	struct rest rest;
	long long code;
	size_t i;
	long http;
	int ret;

	if ((ret = rest_open(&rest, settings, err)) < 0)
		return ret;
	for (i = 0; i < count && ret == 0; i++) {
		strbuf_reset(&path);
		strbuf_addf(&path, "/job/%lld", ids[i]);
		json_free(doc);
		ret = rest_call(&rest, "DELETE", path.buf, NULL, &http, &doc, &raw, &url, err);
		if (ret < 0)
			break;
		strbuf_reset(&message);
		if (!rest_errors(doc, &message, &code) && http / 100 == 2)
			continue;
		if (code == ESLURM_INVALID_JOB_ID || code == ESLURM_ALREADY_DONE)
			continue;
		ret = rest_failed(&rest, "DELETE", &url, http, doc, &raw, err);
	}
	rest_close(&rest);
	json_free(doc);
	strbuf_release(&path);
	strbuf_release(&raw);
	strbuf_release(&url);
	strbuf_release(&message);
	return ret;
}
