/*
 * ctl.c - control files: a line written to /ctl starts a run, as `dstack
 * run` would, on a thread of the daemon; a line written to a run's ctl
 * stops, aborts, tags or removes it.  Lines are split like shell words.
 * The answer (run names, `ok`, `error: ...`) is read back on the same
 * descriptor.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/internal.h"
#include "runner/runner.h"

struct fs_run {
	struct fs *fs;
	char **words;		/* WORKFLOW ARGS... */
	size_t word_count;
	char *tag;
	char *backend;		/* --backend NAME, or NULL */
	enum runner_cache cache;	/* --cache, --no-cache */
	char *rerun;		/* --rerun RUN, or NULL (then words are empty) */
	pthread_t thread;
	bool created, done;
	char name[64];
	int ret;
	struct error err;
	struct fs_run *next;
};

static void run_created(void *ctx, const struct store_run *run)
{
	struct fs_run *fs_run = ctx;
	struct fs *fs = fs_run->fs;

	pthread_mutex_lock(&fs->runs_lock);
	snprintf(fs_run->name, sizeof(fs_run->name), "%s", run->name);
	fs_run->created = true;
	pthread_cond_broadcast(&fs->runs_changed);
	pthread_mutex_unlock(&fs->runs_lock);
}

static void *run_thread(void *arg)
{
	struct fs_run *fs_run = arg;
	struct fs *fs = fs_run->fs;
	struct runner_request request = {
		.cwd = fs->options.cwd, .backend = fs_run->backend, .rerun = fs_run->rerun,
		.cache = fs_run->cache,
		.created = run_created, .created_ctx = fs_run,
	};
	struct store_run run;
	struct store *store = fs_store(fs, &fs_run->err);
	int ret;

	if (fs_run->word_count) {
		request.workflow = fs_run->words[0];
		request.args = fs_run->words + 1;
		request.arg_count = fs_run->word_count - 1;
	}
	ret = store ? runner_run(store, &request, &run, &fs_run->err) : -EIO;

	/* -t moves the tag to the run once it has ended, as `dstack run -t` does. */
	if (ret == 0 && fs_run->tag)
		ret = store_tag_move(store, fs_run->tag, run.name, &fs_run->err);
	pthread_mutex_lock(&fs->runs_lock);
	fs_run->ret = ret;
	fs_run->done = true;
	pthread_cond_broadcast(&fs->runs_changed);
	pthread_mutex_unlock(&fs->runs_lock);
	return NULL;
}

static void fs_run_free(struct fs_run *fs_run)
{
	shell_words_free(fs_run->words, fs_run->word_count);
	free(fs_run->tag);
	free(fs_run->backend);
	free(fs_run->rerun);
	free(fs_run);
}

/* Joins the runs that have ended, so the list holds live ones. */
static void runs_prune(struct fs *fs)
{
	struct fs_run **link = &fs->runs, *ended;

	while (*link) {
		if (!(*link)->done) {
			link = &(*link)->next;
			continue;
		}
		ended = *link;
		*link = ended->next;
		pthread_join(ended->thread, NULL);
		fs_run_free(ended);
	}
}

/* `[-t TAG] WORKFLOW [ARGS...]`: starts the run, answers its name. */
static int ctl_run(struct fs *fs, char **words, size_t count, struct ctl_answer *answer)
{
	struct fs_run *fs_run;
	struct error err = { 0 };
	const char *tag = NULL, *backend = NULL, *rerun = NULL;
	enum runner_cache cache = RUNNER_CACHE_WORKFLOW;
	size_t first = 0, i;
	int ret;

	/* Options as `dstack run` takes them, before WORKFLOW. */
	for (; first < count && words[first][0] == '-'; first++) {
		if (!strcmp(words[first], "--cache"))
			cache = RUNNER_CACHE_ON;
		else if (!strcmp(words[first], "--no-cache"))
			cache = RUNNER_CACHE_OFF;
		else if (first + 1 >= count)
			break;
		else if (!strcmp(words[first], "-t") || !strcmp(words[first], "--tag"))
			tag = words[++first];
		else if (!strcmp(words[first], "--backend"))
			backend = words[++first];
		else if (!strcmp(words[first], "--rerun"))
			rerun = words[++first];
		else
			break;
	}
	if (tag && store_tag_name_check(tag, &err) < 0) {
		strbuf_addf(&answer->text, "error: %s\n", err.message);
		return -EINVAL;
	}
	if (rerun ? first < count : first >= count || words[first][0] == '-') {
		strbuf_addstr(&answer->text, "error: expected [-t TAG] [--backend NAME]"
			      " [--cache|--no-cache] (WORKFLOW [ARGS...] | --rerun RUN)\n");
		return -EINVAL;
	}
	fs_run = xcalloc(1, sizeof(*fs_run));
	fs_run->fs = fs;
	fs_run->tag = tag ? xstrdup(tag) : NULL;
	fs_run->backend = backend ? xstrdup(backend) : NULL;
	fs_run->rerun = rerun ? xstrdup(rerun) : NULL;
	fs_run->cache = cache;
	fs_run->word_count = count - first;
	fs_run->words = xcalloc(fs_run->word_count + 1, sizeof(char *));
	for (i = 0; i < fs_run->word_count; i++)
		fs_run->words[i] = xstrdup(words[first + i]);
	pthread_mutex_lock(&fs->runs_lock);
	runs_prune(fs);
	ret = fs->stopping ? -ESHUTDOWN : -pthread_create(&fs_run->thread, NULL, run_thread, fs_run);
	if (ret < 0) {
		pthread_mutex_unlock(&fs->runs_lock);
		fs_run_free(fs_run);
		strbuf_addf(&answer->text, "error: %s\n", strerror(-ret));
		return ret;
	}
	fs_run->next = fs->runs;
	fs->runs = fs_run;
	/* The writer hears the name once the run exists, or why it could not. */
	while (!fs_run->created && !fs_run->done)
		pthread_cond_wait(&fs->runs_changed, &fs->runs_lock);
	if (fs_run->created) {
		strbuf_addf(&answer->text, "%s\n", fs_run->name);
		ret = 0;
	} else {
		strbuf_addf(&answer->text, "error: %s\n", fs_run->err.message);
		ret = fs_run->ret == -ENOENT ? -ENOENT : -EINVAL;
	}
	pthread_mutex_unlock(&fs->runs_lock);
	return ret;
}

/* stop, abort, `tag NAME`, rm: a run's ctl, as the CLI's commands. */
static int ctl_run_command(struct fs *fs, const char *run, char **words, size_t count,
			   struct ctl_answer *answer)
{
	struct store_run ended;
	struct error err = { 0 };
	struct store *store = fs_store(fs, &err);
	int ret;

	if (!store)
		ret = -EIO;
	else if (count == 1 && (!strcmp(words[0], "stop") || !strcmp(words[0], "abort")))
		ret = runner_stop(store, run, !strcmp(words[0], "abort"), &ended, &err);
	else if (count == 2 && !strcmp(words[0], "tag"))
		ret = store_tag_add(store, words[1], run, &err);
	else if (count == 1 && !strcmp(words[0], "rm"))
		ret = store_run_remove(store, run, &err);
	else
		ret = error_set(&err, -EINVAL, "expected stop, abort, tag NAME or rm");
	if (ret < 0)
		strbuf_addf(&answer->text, "error: %s\n", err.message);
	else
		strbuf_addstr(&answer->text, "ok\n");
	return ret;
}

int ctl_write(struct fs *fs, const struct node *node, const char *data, size_t len,
	      struct ctl_answer *answer)
{
	char *text, *line, *next;
	int ret = 0;

	if (memchr(data, '\0', len)) {
		strbuf_addstr(&answer->text, "error: a NUL byte in the line\n");
		return -EINVAL;
	}
	text = xmalloc(len + 1);
	memcpy(text, data, len);
	text[len] = '\0';
	/* Lines in order; the first bad one stops the rest. */
	for (line = text; ret == 0 && line && *line; line = next) {
		char **words;
		size_t count;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		ret = shell_split(line, &words, &count);
		if (ret < 0) {
			strbuf_addstr(&answer->text, "error: a quote is not closed\n");
			break;
		}
		if (count)
			ret = node ? ctl_run_command(fs, node->name, words, count, answer)
				   : ctl_run(fs, words, count, answer);
		shell_words_free(words, count);
	}
	free(text);
	return ret;
}

void ctl_runs_finish(struct fs *fs)
{
	struct fs_run *fs_run;

	pthread_mutex_lock(&fs->runs_lock);
	/* No new runs; the live ones are never killed by an unmount: they finish. */
	fs->stopping = true;
	while (fs->runs) {
		fs_run = fs->runs;
		fs->runs = fs_run->next;
		pthread_mutex_unlock(&fs->runs_lock);
		pthread_join(fs_run->thread, NULL);
		fs_run_free(fs_run);
		pthread_mutex_lock(&fs->runs_lock);
	}
	pthread_mutex_unlock(&fs->runs_lock);
}
