/*
 * engine.c - the Docker Engine API over its Unix socket: pull an image,
 * create, start, follow, wait for and remove a container.  API 1.41
 * (Debian 12's docker.io 20.10); every call is one HTTP request with
 * libcurl, JSON in and out.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "docker/docker.h"
#include "docker/internal.h"
#include "lib/json.h"

#define ENGINE_API "http://docker/v1.41"

struct engine {
	CURL *curl;
	const char *auth;	/* an X-Registry-Auth header for this call, or NULL */
	CURL *stopper;		/* stops the container while curl follows it */
	const char *socket;
	const volatile sig_atomic_t *stop;
	const char *container;	/* followed now: a stop stops it */
	int grace_s;
	bool stop_sent;
};

/* Where a response goes: all of it into body, or piece by piece to fn. */
struct engine_reply {
	struct strbuf body;
	int (*fn)(void *ctx, const char *data, size_t len);
	void *ctx;
	bool abortable;		/* a stop request ends the call */
	struct engine *engine;
};

static size_t engine_write(char *data, size_t size, size_t count, void *ctx)
{
	struct engine_reply *reply = ctx;

	if (reply->fn)
		return reply->fn(reply->ctx, data, size * count) < 0 ? 0 : size * count;
	strbuf_add(&reply->body, data, size * count);
	return size * count;
}

static int container_call(struct engine *engine, const char *method, const char *id,
			  const char *action, long want, struct strbuf *out, struct error *err);

/*
 * Stops the followed container on the second handle: dockerd sends it
 * SIGTERM and SIGKILL after grace_s, and its last words still come down
 * the stream being followed, which then ends.
 */
static void engine_stop_container(struct engine *engine)
{
	struct engine other = { .socket = engine->socket, .stop = engine->stop };
	struct strbuf action = STRBUF_INIT;
	struct error ignored = { 0 };

	engine->stop_sent = true;
	if (!engine->stopper)
		engine->stopper = curl_easy_init();
	if (!engine->stopper)
		return;
	other.curl = engine->stopper;
	strbuf_addf(&action, "/stop?t=%d", engine->grace_s);
	container_call(&other, "POST", engine->container, action.buf, 204, NULL, &ignored);
	strbuf_release(&action);
}

static int engine_progress(void *ctx, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	struct engine_reply *reply = ctx;
	struct engine *engine = reply->engine;

	(void)a, (void)b, (void)c, (void)d;
	if (!reply->abortable || !*engine->stop)
		return 0;
	if (!engine->container)
		return 1;	/* nothing runs yet: give up the call */
	if (!engine->stop_sent)
		engine_stop_container(engine);
	return 0;
}

/* The API's own reason for a failed call: its "message", else the body. */
static void engine_reason(const struct strbuf *body, struct strbuf *out)
{
	struct json *doc = NULL;
	struct error ignored = { 0 };
	const struct json *message;

	if (body->len && json_parse(body->buf, body->len, &doc, &ignored) == 0 &&
	    (message = json_get(doc, "message")) && message->type == JSON_STRING)
		strbuf_addstr(out, message->string);
	else
		strbuf_add(out, body->buf ? body->buf : "", body->len);
	strbuf_trim_end(out);
	json_free(doc);
}

/*
 * One request: method on path (below the API version), with a JSON body
 * when body is not NULL.  *http gets the status; a reply the caller does
 * not stream is left in reply->body.  -ECANCELED when a stop ended it,
 * -ECONNREFUSED (naming the socket) when dockerd does not answer.
 */
static int engine_call(struct engine *engine, const char *method, const char *path,
		       const char *body, struct engine_reply *reply, long *http,
		       struct error *err)
{
	struct curl_slist *headers = NULL;
	struct strbuf url = STRBUF_INIT;
	CURLcode code;

	curl_easy_reset(engine->curl);
	strbuf_addf(&url, "%s%s", ENGINE_API, path);
	curl_easy_setopt(engine->curl, CURLOPT_UNIX_SOCKET_PATH, engine->socket);
	curl_easy_setopt(engine->curl, CURLOPT_URL, url.buf);
	curl_easy_setopt(engine->curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(engine->curl, CURLOPT_WRITEFUNCTION, engine_write);
	curl_easy_setopt(engine->curl, CURLOPT_WRITEDATA, reply);
	curl_easy_setopt(engine->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(engine->curl, CURLOPT_XFERINFOFUNCTION, engine_progress);
	curl_easy_setopt(engine->curl, CURLOPT_XFERINFODATA, reply);
	reply->engine = engine;
	if (engine->auth)
		headers = curl_slist_append(headers, engine->auth);
	if (body) {
		headers = curl_slist_append(headers, "Content-Type: application/json");
		curl_easy_setopt(engine->curl, CURLOPT_POSTFIELDS, body);
	}
	curl_easy_setopt(engine->curl, CURLOPT_HTTPHEADER, headers);
	code = curl_easy_perform(engine->curl);
	curl_slist_free_all(headers);
	strbuf_release(&url);
	*http = 0;
	curl_easy_getinfo(engine->curl, CURLINFO_RESPONSE_CODE, http);
	if (code == CURLE_ABORTED_BY_CALLBACK)
		return -ECANCELED;
	if (code == CURLE_COULDNT_CONNECT)
		return error_set(err, -ECONNREFUSED, "cannot reach dockerd at %s (is it running?)",
				 engine->socket);
	if (code != CURLE_OK)
		return error_set(err, -EIO, "dockerd at %s: %s %s: %s", engine->socket, method, path,
				 curl_easy_strerror(code));
	return 0;
}

static const volatile sig_atomic_t engine_never;

/* Starts libcurl for calls to the socket; stop NULL: nothing stops them. */
static int engine_open(struct engine *engine, const char *socket,
		       const volatile sig_atomic_t *stop, struct error *err)
{
	memset(engine, 0, sizeof(*engine));
	engine->socket = socket;
	engine->stop = stop ? stop : &engine_never;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return error_set(err, -ENOMEM, "cannot start libcurl");
	engine->curl = curl_easy_init();
	if (!engine->curl) {
		curl_global_cleanup();
		return error_set(err, -ENOMEM, "cannot start libcurl");
	}
	return 0;
}

static void engine_close(struct engine *engine)
{
	if (engine->stopper)
		curl_easy_cleanup(engine->stopper);
	curl_easy_cleanup(engine->curl);
	curl_global_cleanup();
}

/* A call whose reply is small: *http, and reply->body holds the reply. */
static int engine_simple(struct engine *engine, const char *method, const char *path,
			 const char *body, struct strbuf *out, long *http, struct error *err)
{
	struct engine_reply reply = { .body = STRBUF_INIT };
	int ret = engine_call(engine, method, path, body, &reply, http, err);

	strbuf_add(out, reply.body.buf ? reply.body.buf : "", reply.body.len);
	strbuf_release(&reply.body);
	return ret;
}

/* Pull progress: JSON lines; an "error" ends the pull. */
struct pull {
	struct strbuf pending;
	FILE *log;
	struct strbuf error;
	int64_t last_ns;
};

static void pull_line(struct pull *pull, const char *line, size_t len)
{
	struct json *doc = NULL;
	struct error ignored = { 0 };
	const struct json *status, *id, *error;
	bool busy;

	if (json_parse(line, len, &doc, &ignored) < 0)
		return;
	error = json_get(doc, "error");
	/* A pull refused at once answers with the API's usual message. */
	if (!error)
		error = json_get(doc, "message");
	status = json_get(doc, "status");
	id = json_get(doc, "id");
	if (error && error->type == JSON_STRING && !pull->error.len) {
		strbuf_addstr(&pull->error, error->string);
	} else if (status && status->type == JSON_STRING) {
		/* Byte counts come many times a second: a line a second of them. */
		busy = !strncmp(status->string, "Downloading", 11) ||
		       !strncmp(status->string, "Extracting", 10);
		if (!busy || time_monotonic_ns() - pull->last_ns >= 1000000000ll) {
			fprintf(pull->log, "dstack: docker: %s%s%s\n", status->string,
				id && id->type == JSON_STRING ? " " : "",
				id && id->type == JSON_STRING ? id->string : "");
			fflush(pull->log);
			if (busy)
				pull->last_ns = time_monotonic_ns();
		}
	}
	json_free(doc);
}

static int pull_data(void *ctx, const char *data, size_t len)
{
	struct pull *pull = ctx;
	char *newline;

	strbuf_add(&pull->pending, data, len);
	while ((newline = memchr(pull->pending.buf, '\n', pull->pending.len))) {
		size_t line = (size_t)(newline - pull->pending.buf);

		pull_line(pull, pull->pending.buf, line);
		memmove(pull->pending.buf, newline + 1, pull->pending.len - line - 1);
		pull->pending.len -= line + 1;
		pull->pending.buf[pull->pending.len] = '\0';
	}
	return 0;
}

static int image_pull(struct engine *engine, const char *image, FILE *log, struct error *err)
{
	struct pull pull = { .pending = STRBUF_INIT, .log = log, .error = STRBUF_INIT };
	struct engine_reply reply = { .body = STRBUF_INIT, .fn = pull_data, .ctx = &pull,
				      .abortable = true };
	struct strbuf path = STRBUF_INIT, reason = STRBUF_INIT, auth = STRBUF_INIT;
	char *escaped = curl_easy_escape(engine->curl, image, 0);
	long http;
	int ret;

	fprintf(log, "dstack: docker: pulling %s\n", image);
	fflush(log);
	strbuf_addf(&path, "/images/create?fromImage=%s", escaped);
	curl_free(escaped);
	docker_registry_auth(image, &auth);
	engine->auth = auth.len ? auth.buf : NULL;
	ret = engine_call(engine, "POST", path.buf, NULL, &reply, &http, err);
	engine->auth = NULL;
	if (ret == 0 && http != 200) {
		/* The stream did not start: the reply is one JSON message. */
		engine_reason(pull.error.len ? &pull.error : &pull.pending, &reason);
		ret = error_set(err, http == 404 ? -ENOENT : -EIO, "image %s: %s", image, reason.buf);
	} else if (ret == 0 && pull.error.len) {
		ret = error_set(err, -ENOENT, "image %s: %s", image, pull.error.buf);
	}
	strbuf_release(&pull.pending);
	strbuf_release(&pull.error);
	strbuf_release(&reply.body);
	strbuf_release(&path);
	strbuf_release(&reason);
	strbuf_release(&auth);
	return ret;
}

/* IMAGE@DIGEST from an image's RepoDigests ("REPO@sha256:..."), if any. */
static void image_pin(const char *image, const struct strbuf *body, struct strbuf *pinned)
{
	struct json *doc = NULL;
	struct error ignored = { 0 };
	const struct json *digests;
	const char *at;

	if (json_parse(body->buf, body->len, &doc, &ignored) == 0 &&
	    (digests = json_get(doc, "RepoDigests")) && digests->type == JSON_ARRAY &&
	    digests->count && digests->items[0].type == JSON_STRING &&
	    (at = strchr(digests->items[0].string, '@')))
		strbuf_addf(pinned, "%s%s", image, at);
	json_free(doc);
}

/* The "Id" of an image's inspection: the digest of its configuration. */
static int image_id(const char *image, const struct strbuf *body, struct strbuf *id,
		    struct error *err)
{
	struct json *doc = NULL;
	const struct json *value;
	int ret = json_parse(body->buf, body->len, &doc, err);

	if (ret == 0 && (value = json_get(doc, "Id")) && value->type == JSON_STRING)
		strbuf_addstr(id, value->string);
	else if (ret == 0)
		ret = error_set(err, -EPROTO, "image %s: dockerd did not say its id", image);
	json_free(doc);
	return ret;
}

/*
 * The image, pulled first when dockerd does not have it; pinned (when not
 * NULL) gets IMAGE@DIGEST, id (when not NULL) the image's own id.
 */
static int image_ensure(struct engine *engine, const char *image, FILE *log,
			struct strbuf *pinned, struct strbuf *id, struct error *err)
{
	struct strbuf path = STRBUF_INIT, body = STRBUF_INIT, reason = STRBUF_INIT;
	long http;
	int ret;

	strbuf_addf(&path, "/images/%s/json", image);
	ret = engine_simple(engine, "GET", path.buf, NULL, &body, &http, err);
	if (ret == 0 && http == 404) {
		ret = image_pull(engine, image, log, err);
		strbuf_reset(&body);
		if (ret == 0)
			ret = engine_simple(engine, "GET", path.buf, NULL, &body, &http, err);
	}
	if (ret == 0 && http != 200) {
		engine_reason(&body, &reason);
		ret = error_set(err, -EIO, "image %s: %s", image, reason.buf);
	}
	if (ret == 0 && pinned)
		image_pin(image, &body, pinned);
	if (ret == 0 && id)
		ret = image_id(image, &body, id, err);
	strbuf_release(&path);
	strbuf_release(&body);
	strbuf_release(&reason);
	return ret;
}

static void add_strings(struct strbuf *json, char *const *items)
{
	size_t i;

	strbuf_addstr(json, "[");
	for (i = 0; items && items[i]; i++) {
		strbuf_addstr(json, i ? "," : "");
		json_add_string(json, items[i]);
	}
	strbuf_addstr(json, "]");
}

/* ,"key":"value" */
static void add_field(struct strbuf *json, const char *key, const char *value)
{
	strbuf_addf(json, ",\"%s\":", key);
	json_add_string(json, value);
}

/* "K=V" labels as the API's object of them. */
static void add_labels(struct strbuf *json, char *const *labels)
{
	size_t i;

	strbuf_addstr(json, "{");
	for (i = 0; labels && labels[i]; i++) {
		const char *eq = strchr(labels[i], '=');
		size_t key = eq ? (size_t)(eq - labels[i]) : strlen(labels[i]);
		char *name = xmalloc(key + 1);

		memcpy(name, labels[i], key);
		name[key] = '\0';
		strbuf_addstr(json, i ? "," : "");
		json_add_string(json, name);
		strbuf_addstr(json, ":");
		json_add_string(json, eq ? eq + 1 : "");
		free(name);
	}
	strbuf_addstr(json, "}");
}

/* The body of POST /containers/create. */
static void container_config(const struct docker_job *job, struct strbuf *json)
{
	size_t i;

	strbuf_addstr(json, "{\"Image\":");
	json_add_string(json, job->image);
	strbuf_addstr(json, ",\"Cmd\":");
	add_strings(json, job->command);
	strbuf_addstr(json, ",\"Env\":");
	add_strings(json, job->env);
	if (job->workdir)
		add_field(json, "WorkingDir", job->workdir);
	strbuf_addstr(json, ",\"Labels\":");
	add_labels(json, job->labels);
	strbuf_addstr(json, ",\"ExposedPorts\":{");
	for (i = 0; i < job->port_count; i++)
		strbuf_addf(json, "%s\"%d/tcp\":{}", i ? "," : "", job->ports[i]);
	strbuf_addstr(json, "},\"HostConfig\":{\"Binds\":");
	add_strings(json, job->binds);
	strbuf_addstr(json, ",\"PortBindings\":{");
	for (i = 0; i < job->port_count; i++)
		strbuf_addf(json, "%s\"%d/tcp\":[{\"HostPort\":\"%d\"}]", i ? "," : "",
			    job->ports[i], job->ports[i]);
	strbuf_addf(json, "},\"Memory\":%lld,\"NanoCpus\":%lld", (long long)job->memory,
		    (long long)job->nano_cpus);
	if (job->shm_size)
		strbuf_addf(json, ",\"ShmSize\":%lld", (long long)job->shm_size);
	if (job->network)
		add_field(json, "NetworkMode", job->network);
	/* The GPUs the runner claimed for the job, through the NVIDIA runtime. */
	if (job->gpus && job->gpus[0]) {
		strbuf_addstr(json, ",\"DeviceRequests\":[{\"Driver\":\"nvidia\",\"DeviceIDs\":");
		add_strings(json, job->gpus);
		strbuf_addstr(json, ",\"Capabilities\":[[\"gpu\"]]}]");
	}
	strbuf_addstr(json, "}");
	if (job->alias)
		add_field(json, "Hostname", job->alias);
	if (job->network && job->alias) {
		strbuf_addstr(json, ",\"NetworkingConfig\":{\"EndpointsConfig\":{");
		json_add_string(json, job->network);
		strbuf_addstr(json, ":{\"Aliases\":[");
		json_add_string(json, job->alias);
		strbuf_addstr(json, "]}}}");
	}
	strbuf_addstr(json, "}");
}

/* A network, made unless it exists. */
static int network_ensure(struct engine *engine, const char *name, char *const *labels,
			  struct error *err)
{
	struct strbuf body = STRBUF_INIT, reply = STRBUF_INIT, reason = STRBUF_INIT;
	long http;
	int ret;

	strbuf_addstr(&body, "{\"Name\":");
	json_add_string(&body, name);
	strbuf_addstr(&body, ",\"CheckDuplicate\":true,\"Labels\":");
	add_labels(&body, labels);
	strbuf_addstr(&body, "}");
	ret = engine_simple(engine, "POST", "/networks/create", body.buf, &reply, &http, err);
	if (ret == 0 && http != 201 && http != 409) {
		engine_reason(&reply, &reason);
		ret = error_set(err, -EIO, "network %s: %s", name, reason.buf);
	}
	strbuf_release(&body);
	strbuf_release(&reply);
	strbuf_release(&reason);
	return ret;
}

static int container_create(struct engine *engine, const struct docker_job *job,
			    struct strbuf *id, struct error *err)
{
	struct strbuf config = STRBUF_INIT, body = STRBUF_INIT, reason = STRBUF_INIT;
	struct json *doc = NULL;
	const struct json *value;
	long http;
	int ret;

	container_config(job, &config);
	ret = engine_simple(engine, "POST", "/containers/create", config.buf, &body, &http, err);
	if (ret == 0 && http != 201) {
		engine_reason(&body, &reason);
		ret = error_set(err, -EIO, "cannot create a container of %s: %s", job->image,
				reason.buf);
	} else if (ret == 0 && (json_parse(body.buf, body.len, &doc, err) < 0 ||
				!(value = json_get(doc, "Id")) || value->type != JSON_STRING)) {
		ret = error_set(err, -EIO, "dockerd: no container id in its reply");
	} else if (ret == 0) {
		strbuf_addstr(id, value->string);
	}
	json_free(doc);
	strbuf_release(&config);
	strbuf_release(&body);
	strbuf_release(&reason);
	return ret;
}

/* A call on the container: 0 when the status is one of want (or 304). */
static int container_call(struct engine *engine, const char *method, const char *id,
			  const char *action, long want, struct strbuf *out, struct error *err)
{
	struct strbuf path = STRBUF_INIT, body = STRBUF_INIT, reason = STRBUF_INIT;
	long http;
	int ret;

	strbuf_addf(&path, "/containers/%s%s", id, action);
	ret = engine_simple(engine, method, path.buf, NULL, &body, &http, err);
	if (ret == 0 && http != want && http != 304) {
		engine_reason(&body, &reason);
		ret = error_set(err, -EIO, "container %.12s: %s %s: %s", id, method, action,
				reason.buf);
	}
	if (out)
		strbuf_add(out, body.buf ? body.buf : "", body.len);
	strbuf_release(&path);
	strbuf_release(&body);
	strbuf_release(&reason);
	return ret;
}

/*
 * The logs stream without a terminal: frames of an 8-byte header (the
 * stream, 1 stdout or 2 stderr, and the size, big-endian, in bytes 4-7)
 * and the bytes.
 */
struct logs {
	struct strbuf pending;
	FILE *out, *errs;
};

static int logs_data(void *ctx, const char *data, size_t len)
{
	struct logs *logs = ctx;
	const unsigned char *p;
	size_t size;

	strbuf_add(&logs->pending, data, len);
	while (logs->pending.len >= 8) {
		p = (const unsigned char *)logs->pending.buf;
		size = (size_t)p[4] << 24 | (size_t)p[5] << 16 | (size_t)p[6] << 8 | p[7];
		if (logs->pending.len < 8 + size)
			break;
		fwrite(p + 8, 1, size, p[0] == 2 ? logs->errs : logs->out);
		fflush(p[0] == 2 ? logs->errs : logs->out);
		memmove(logs->pending.buf, logs->pending.buf + 8 + size, logs->pending.len - 8 - size);
		logs->pending.len -= 8 + size;
	}
	return 0;
}

static int container_follow(struct engine *engine, const char *id, FILE *out, FILE *errs,
			    struct error *err)
{
	struct logs logs = { .pending = STRBUF_INIT, .out = out, .errs = errs };
	struct engine_reply reply = { .body = STRBUF_INIT, .fn = logs_data, .ctx = &logs,
				      .abortable = true };
	struct strbuf path = STRBUF_INIT;
	long http;
	int ret;

	strbuf_addf(&path, "/containers/%s/logs?follow=1&stdout=1&stderr=1", id);
	ret = engine_call(engine, "GET", path.buf, NULL, &reply, &http, err);
	if (ret == 0 && http != 200)
		ret = error_set(err, -EIO, "container %.12s: cannot follow its output (HTTP %ld)",
				id, http);
	strbuf_release(&logs.pending);
	strbuf_release(&reply.body);
	strbuf_release(&path);
	return ret;
}

/* Waits for the container's end: its exit status, and whether it ran out of memory. */
static int container_wait(struct engine *engine, const char *id, int *status, bool *oom,
			  struct error *err)
{
	struct strbuf body = STRBUF_INIT;
	struct json *doc = NULL;
	const struct json *code, *state, *killed;
	long long number;
	int ret;

	ret = container_call(engine, "POST", id, "/wait", 200, &body, err);
	if (ret == 0 && (json_parse(body.buf, body.len, &doc, err) < 0 ||
			 !(code = json_get(doc, "StatusCode")) || !json_integer(code, &number)))
		ret = error_set(err, -EIO, "container %.12s: no exit status from dockerd", id);
	if (ret == 0)
		*status = (int)number;
	json_free(doc);
	doc = NULL;
	strbuf_reset(&body);
	*oom = false;
	if (ret == 0 && container_call(engine, "GET", id, "/json", 200, &body, err) == 0 &&
	    json_parse(body.buf, body.len, &doc, err) == 0 && (state = json_get(doc, "State")) &&
	    (killed = json_get(state, "OOMKilled")) && killed->type == JSON_BOOL)
		*oom = killed->boolean;
	json_free(doc);
	strbuf_release(&body);
	return ret;
}

int docker_job_run(const char *socket, const struct docker_job *job, FILE *out, FILE *errs,
		   FILE *log, const volatile sig_atomic_t *stop, int grace_s, int *status,
		   struct strbuf *reason, struct error *err)
{
	struct engine engine;
	struct strbuf id = STRBUF_INIT;
	struct error ignored = { 0 };
	bool oom = false;
	int ret = engine_open(&engine, socket, stop, err);

	if (ret < 0)
		return ret;
	engine.grace_s = grace_s;
	ret = image_ensure(&engine, job->image, log, job->pinned, NULL, err);
	if (ret == 0 && job->network)
		ret = network_ensure(&engine, job->network, job->labels, err);
	if (ret == 0)
		ret = container_create(&engine, job, &id, err);
	if (ret == 0)
		ret = container_call(&engine, "POST", id.buf, "/start", 204, NULL, err);
	if (ret < 0 && job->gpus && job->gpus[0] && strstr(err->message, "device driver")) {
		struct error why = *err;

		error_clear(err);
		ret = error_set(err, ret, "%s (the job asks for GPUs: dockerd hands them to"
				" containers through the NVIDIA Container Toolkit)", why.message);
	}
	if (ret == 0) {
		engine.container = id.buf;
		ret = container_follow(&engine, id.buf, out, errs, err);
	}
	/* A stop that came between the calls: the same as during the follow. */
	if (ret == 0 && *stop && !engine.stop_sent)
		engine_stop_container(&engine);
	if (ret == 0)
		ret = container_wait(&engine, id.buf, status, &oom, err);
	if (ret == 0 && engine.stop_sent)
		ret = -ECANCELED;
	if (ret == 0 && oom) {
		strbuf_addf(reason, "the container ran out of memory (its limit is %lld bytes)",
			    (long long)job->memory);
		*status = 137;
	}
	if (ret == -ECANCELED) {
		*status = 128 + SIGTERM;
		ret = 0;
	}
	/* The container goes whatever happened; it never outlives its job. */
	if (id.len)
		container_call(&engine, "DELETE", id.buf, "?force=1&v=1", 204, NULL, &ignored);
	strbuf_release(&id);
	engine_close(&engine);
	return ret;
}

/*
 * Deletes each object listing (GET, filtered by filter) names: DELETE
 * /KIND/ID with query.  *count gets how many went.
 */
static int engine_delete_listed(struct engine *engine, const char *listing, const char *filter,
				const char *kind, const char *query, int *count, struct error *err)
{
	struct strbuf path = STRBUF_INIT, body = STRBUF_INIT;
	struct error ignored = { 0 };
	struct json *list = NULL;
	const struct json *id;
	char *escaped = curl_easy_escape(engine->curl, filter, 0);
	long http;
	size_t i;
	int ret;

	strbuf_addf(&path, "%sfilters=%s", listing, escaped);
	curl_free(escaped);
	ret = engine_simple(engine, "GET", path.buf, NULL, &body, &http, err);
	if (ret == 0 && (http != 200 || json_parse(body.buf, body.len, &list, err) < 0 ||
			 list->type != JSON_ARRAY))
		ret = error_set(err, -EIO, "dockerd: cannot list the %s (%s)", kind, filter);
	for (i = 0; ret == 0 && i < list->count; i++) {
		id = json_get(&list->items[i], "Id");
		if (!id || id->type != JSON_STRING)
			continue;
		strbuf_reset(&path);
		strbuf_reset(&body);
		strbuf_addf(&path, "/%s/%s%s", kind, id->string, query);
		if (engine_simple(engine, "DELETE", path.buf, NULL, &body, &http, &ignored) == 0 &&
		    http == 204)
			(*count)++;
	}
	json_free(list);
	strbuf_release(&path);
	strbuf_release(&body);
	return ret;
}

int docker_remove_labelled(const char *socket, const char *label, int *count,
			   struct error *err)
{
	struct engine engine;
	struct strbuf filter = STRBUF_INIT;
	int networks = 0, ret = engine_open(&engine, socket, NULL, err);

	*count = 0;
	if (ret < 0)
		return ret;
	strbuf_addstr(&filter, "{\"label\":[");
	json_add_string(&filter, label);
	strbuf_addstr(&filter, "]}");
	ret = engine_delete_listed(&engine, "/containers/json?all=1&", filter.buf, "containers",
				   "?force=1&v=1", count, err);
	/* Then the run's network, which no container uses any more. */
	if (ret == 0)
		ret = engine_delete_listed(&engine, "/networks?", filter.buf, "networks", "",
					   &networks, err);
	strbuf_release(&filter);
	engine_close(&engine);
	return ret;
}

int docker_image_id(const char *socket, const char *image, FILE *log, struct strbuf *id,
		    struct error *err)
{
	struct engine engine;
	int ret = engine_open(&engine, socket, NULL, err);

	if (ret < 0)
		return ret;
	ret = image_ensure(&engine, image, log, NULL, id, err);
	engine_close(&engine);
	return ret;
}

int docker_network_ensure(const char *socket, const char *name, const char *label,
			  struct error *err)
{
	struct engine engine;
	char *labels[2] = { (char *)label, NULL };
	int ret = engine_open(&engine, socket, NULL, err);

	if (ret < 0)
		return ret;
	ret = network_ensure(&engine, name, labels, err);
	engine_close(&engine);
	return ret;
}
