/*
 * auth.c - registry credentials as the docker client keeps them: in
 * $DOCKER_CONFIG/config.json (else ~/.docker/config.json), either inline
 * under "auths" or behind a credential helper, a program
 * docker-credential-NAME named by "credHelpers" (per registry) or
 * "credsStore" (for all), asked as the docker client asks it: `get`, the
 * registry on stdin, {"Username", "Secret"} on stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "docker/internal.h"
#include "lib/json.h"

extern char **environ;

/* The registry an image name starts with, as config.json keys it. */
static void image_registry(const char *image, struct strbuf *registry)
{
	const char *slash = strchr(image, '/');

	/* A first component with a dot, a port or "localhost" names the registry. */
	if (slash && (memchr(image, '.', (size_t)(slash - image)) ||
		      memchr(image, ':', (size_t)(slash - image)) ||
		      !strncmp(image, "localhost/", 10)))
		strbuf_add(registry, image, (size_t)(slash - image));
	else
		strbuf_addstr(registry, "https://index.docker.io/v1/");
}

/* Runs docker-credential-NAME get for registry: its stdout into out. */
static int helper_get(const char *name, const char *registry, struct strbuf *out)
{
	struct strbuf program = STRBUF_INIT;
	posix_spawn_file_actions_t actions;
	int in[2] = { -1, -1 }, from[2] = { -1, -1 }, status = 0, ret = 0, i;
	char buf[4096], *argv[3];
	ssize_t n;
	pid_t pid;

	strbuf_addf(&program, "docker-credential-%s", name);
	argv[0] = program.buf;
	argv[1] = "get";
	argv[2] = NULL;
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0) {
		ret = -errno;
		goto out;
	}
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
	posix_spawn_file_actions_adddup2(&actions, from[1], STDOUT_FILENO);
	ret = -posix_spawnp(&pid, program.buf, &actions, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&actions);
	close(in[0]);
	close(from[1]);
	in[0] = from[1] = -1;
	if (ret < 0)
		goto out;
	/* A registry name is far smaller than a pipe's buffer: no deadlock. */
	if (fs_write_all(in[1], registry, strlen(registry)) < 0)
		ret = -EIO;
	close(in[1]);
	in[1] = -1;
	while ((n = read(from[0], buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		strbuf_add(out, buf, (size_t)n);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			break;
	if (ret == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		ret = -ENOENT;
out:
	for (i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (from[i] >= 0)
			close(from[i]);
	}
	strbuf_release(&program);
	return ret;
}

/*
 * The user and secret for registry: from its credential helper when the
 * config names one, else from "auths".  0, or -ENOENT when there are none.
 */
static int registry_credentials(const struct json *config, const char *registry,
				struct strbuf *user, struct strbuf *secret)
{
	const struct json *helper = json_get(json_get(config, "credHelpers"), registry);
	const struct json *auth, *field;
	struct strbuf text = STRBUF_INIT, pair = STRBUF_INIT;
	struct error ignored = { 0 };
	struct json *reply = NULL;
	char *colon;
	int ret = -ENOENT;

	if (!helper || helper->type != JSON_STRING)
		helper = json_get(config, "credsStore");
	if (helper && helper->type == JSON_STRING && *helper->string) {
		if (helper_get(helper->string, registry, &text) == 0 &&
		    json_parse(text.buf, text.len, &reply, &ignored) == 0 &&
		    (field = json_get(reply, "Username")) && field->type == JSON_STRING) {
			strbuf_addstr(user, field->string);
			field = json_get(reply, "Secret");
			strbuf_addstr(secret, field && field->type == JSON_STRING ? field->string : "");
			ret = 0;
		}
	} else if ((auth = json_get(json_get(json_get(config, "auths"), registry), "auth")) &&
		   auth->type == JSON_STRING && base64_decode(auth->string, &pair) == 0 &&
		   pair.len && (colon = memchr(pair.buf, ':', pair.len))) {
		strbuf_add(user, pair.buf, (size_t)(colon - pair.buf));
		strbuf_add(secret, colon + 1, pair.len - (size_t)(colon - pair.buf) - 1);
		ret = 0;
	}
	json_free(reply);
	strbuf_release(&text);
	strbuf_release(&pair);
	return ret;
}

void docker_registry_auth(const char *image, struct strbuf *header)
{
	const char *dir = getenv("DOCKER_CONFIG"), *home = getenv("HOME");
	struct strbuf path = STRBUF_INIT, text = STRBUF_INIT, registry = STRBUF_INIT;
	struct strbuf user = STRBUF_INIT, secret = STRBUF_INIT, doc = STRBUF_INIT;
	struct error ignored = { 0 };
	struct json *config = NULL;

	image_registry(image, &registry);
	if (dir)
		strbuf_addf(&path, "%s/config.json", dir);
	else
		strbuf_addf(&path, "%s/.docker/config.json", home ? home : "");
	if (fs_read_file(path.buf, &text) == 0 &&
	    json_parse(text.buf, text.len, &config, &ignored) == 0 &&
	    registry_credentials(config, registry.buf, &user, &secret) == 0) {
		const char *name = user.buf ? user.buf : "", *word = secret.buf ? secret.buf : "";

		/* A helper's "<token>" user hands an identity token, not a password. */
		if (!strcmp(name, "<token>")) {
			strbuf_addstr(&doc, "{\"identitytoken\":");
			json_add_string(&doc, word);
		} else {
			strbuf_addstr(&doc, "{\"username\":");
			json_add_string(&doc, name);
			strbuf_addstr(&doc, ",\"password\":");
			json_add_string(&doc, word);
		}
		strbuf_addstr(&doc, ",\"serveraddress\":");
		json_add_string(&doc, registry.buf);
		strbuf_addstr(&doc, "}");
		strbuf_addstr(header, "X-Registry-Auth: ");
		base64_encode(doc.buf, doc.len, true, header);
	}
	json_free(config);
	strbuf_release(&path);
	strbuf_release(&text);
	strbuf_release(&registry);
	strbuf_release(&user);
	strbuf_release(&secret);
	strbuf_release(&doc);
}
