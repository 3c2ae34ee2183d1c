/*
 * snapshot.c - the repository as a job sees it, through libgit2: tracked
 * files as they are in the working tree (uncommitted edits in, deleted
 * files out) plus untracked files git does not ignore.  The user's
 * checkout is only read.
 */
#include <errno.h>
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runner/internal.h"

static int snapshot_git_error(struct error *err, const char *what)
{
	const git_error *e = git_error_last();

	return error_set(err, -EIO, "%s: %s", what, e && e->message ? e->message : "libgit2 error");
}

/*
 * The remote NAME of a config entry remote.NAME.url or remote.NAME.pushurl
 * (the names git_remote_list finds), as a copy; else NULL.
 */
static char *snapshot_remote_name(const char *key)
{
	struct strbuf name = STRBUF_INIT;
	size_t len = strlen(key);
	const char *end = NULL;

	if (strncmp(key, "remote.", 7))
		return NULL;
	if (len > 7 + 4 && !strcmp(key + len - 4, ".url"))
		end = key + len - 4;
	else if (len > 7 + 8 && !strcmp(key + len - 8, ".pushurl"))
		end = key + len - 8;
	if (!end)
		return NULL;
	strbuf_add(&name, key + 7, (size_t)(end - key - 7));
	return name.buf;
}

char *snapshot_url_rewrite(git_config *config, const char *url)
{
	struct strbuf out = STRBUF_INIT;
	git_config_iterator *iter = NULL;
	git_config_entry *entry;
	size_t best = 0, len, prefix;

	if (git_config_iterator_new(&iter, config) == 0) {
		while (git_config_next(&entry, iter) == 0) {
			len = strlen(entry->name);
			prefix = entry->value ? strlen(entry->value) : 0;
			if (strncmp(entry->name, "url.", 4) || len <= 4 + 10 ||
			    strcmp(entry->name + len - 10, ".insteadof") || prefix <= best ||
			    strncmp(url, entry->value, prefix))
				continue;
			best = prefix;
			strbuf_reset(&out);
			strbuf_add(&out, entry->name + 4, len - 4 - 10);
		}
		git_config_iterator_free(iter);
	}
	strbuf_addstr(&out, url + best);
	return out.buf;
}

/*
 * origin's URL, else the first remote's by name, else NULL.  The config
 * is walked by hand, not with git_remote_list and git_remote_lookup: they
 * match every config name with a regex, and libgit2 1.5.1 leaks PCRE2's
 * match data (about 20 KiB) for each name that does not match, which the
 * daemon, starting run after run, would never get back.
 */
static char *snapshot_remote_url(git_repository *repo)
{
	git_config *config = NULL;
	git_config_iterator *iter = NULL;
	git_config_entry *entry = NULL;
	struct strbuf key = STRBUF_INIT;
	char *pick = NULL, *name, *url = NULL;

	if (git_repository_config_snapshot(&config, repo) < 0)
		return NULL;
	if (git_config_iterator_new(&iter, config) == 0) {
		while (git_config_next(&entry, iter) == 0) {
			name = snapshot_remote_name(entry->name);
			if (name && (!pick || (strcmp(pick, "origin") &&
					       (!strcmp(name, "origin") || strcmp(name, pick) < 0)))) {
				free(pick);
				pick = name;
			} else {
				free(name);
			}
		}
		git_config_iterator_free(iter);
		entry = NULL;
	}
	if (pick) {
		strbuf_addf(&key, "remote.%s.url", pick);
		if (git_config_get_entry(&entry, config, key.buf) == 0 && entry->value &&
		    *entry->value)
			url = snapshot_url_rewrite(config, entry->value);
		git_config_entry_free(entry);
	}
	strbuf_release(&key);
	free(pick);
	git_config_free(config);
	return url;
}

void runner_git_hold(void)
{
	git_libgit2_init();
}

void runner_git_release(void)
{
	git_libgit2_shutdown();
}

/*
 * Opens the repository around cwd.  libgit2 is started here and stopped
 * in snapshot_close (it counts), so its global state is freed each time.
 */
static int snapshot_open(const char *cwd, git_repository **repo, struct error *err)
{
	int ret = 0;

	git_libgit2_init();
	if (git_repository_open_ext(repo, cwd, 0, NULL) < 0) {
		ret = error_set(err, -ENOENT, "%s: not in a git repository", cwd);
	} else if (git_repository_is_bare(*repo)) {
		git_repository_free(*repo);
		ret = error_set(err, -EINVAL, "%s: a bare repository has no files to run", cwd);
	}
	if (ret < 0)
		git_libgit2_shutdown();
	return ret;
}

static void snapshot_close(git_repository *repo)
{
	git_repository_free(repo);
	git_libgit2_shutdown();
}

static int snapshot_status(git_repository *repo, git_status_list **list,
			   struct error *err)
{
	git_status_options options;

	git_status_options_init(&options, GIT_STATUS_OPTIONS_VERSION);
	options.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
	options.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED |
			GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS |
			GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
	if (git_status_list_new(list, repo, &options) < 0)
		return snapshot_git_error(err, "git status");
	return 0;
}

static void snapshot_path_add(struct snapshot_info *info, const char *path)
{
	info->paths = xrealloc(info->paths, (info->path_count + 1) * sizeof(char *));
	info->paths[info->path_count++] = xstrdup(path);
}

/* The index's files (not submodules) and the untracked files not ignored. */
static int snapshot_paths(git_repository *repo, git_status_list *status,
			  struct snapshot_info *info, struct error *err)
{
	git_index *index;
	size_t i, count;

	if (git_repository_index(&index, repo) < 0)
		return snapshot_git_error(err, "git index");
	count = git_index_entrycount(index);
	for (i = 0; i < count; i++) {
		const git_index_entry *entry = git_index_get_byindex(index, i);

		char commit[GIT_OID_HEXSZ + 1];

		if (!entry)
			continue;
		if ((entry->mode & S_IFMT) != GIT_FILEMODE_COMMIT) {
			snapshot_path_add(info, entry->path);
			continue;
		}
		git_oid_tostr(commit, sizeof(commit), &entry->id);
		strbuf_addf(&info->submodules, "%s %s\n", entry->path, commit);
	}
	git_index_free(index);
	count = git_status_list_entrycount(status);
	for (i = 0; i < count; i++) {
		const git_status_entry *entry = git_status_byindex(status, i);

		if ((entry->status & GIT_STATUS_WT_NEW) && entry->index_to_workdir)
			snapshot_path_add(info, entry->index_to_workdir->new_file.path);
	}
	return 0;
}

int snapshot_describe(const char *cwd, struct snapshot_info *info,
		      struct error *err)
{
	git_repository *repo;
	git_status_list *status = NULL;
	git_reference *ref = NULL;
	git_oid head;
	size_t len;
	int ret;

	memset(info, 0, sizeof(*info));
	ret = snapshot_open(cwd, &repo, err);
	if (ret < 0)
		return ret;
	info->root = xstrdup(git_repository_workdir(repo));
	len = strlen(info->root);
	if (len > 1 && info->root[len - 1] == '/')
		info->root[len - 1] = '\0';
	info->repo = snapshot_remote_url(repo);
	if (!info->repo)
		info->repo = xstrdup(info->root);
	if (git_reference_name_to_id(&head, repo, "HEAD") == 0)
		git_oid_tostr(info->commit, sizeof(info->commit), &head);
	if (git_repository_head(&ref, repo) == 0 && git_reference_is_branch(ref))
		info->branch = xstrdup(git_reference_shorthand(ref));
	git_reference_free(ref);
	ref = NULL;
	/* No commit yet: HEAD still names the branch the first will be on. */
	if (!info->branch && git_repository_head_unborn(repo) == 1 &&
	    git_reference_lookup(&ref, repo, "HEAD") == 0 &&
	    git_reference_type(ref) == GIT_REFERENCE_SYMBOLIC &&
	    !strncmp(git_reference_symbolic_target(ref), "refs/heads/", 11))
		info->branch = xstrdup(git_reference_symbolic_target(ref) + 11);
	git_reference_free(ref);
	ret = snapshot_status(repo, &status, err);
	if (ret == 0)
		info->dirty = git_status_list_entrycount(status) > 0;
	if (ret == 0)
		ret = snapshot_paths(repo, status, info, err);
	git_status_list_free(status);
	snapshot_close(repo);
	if (ret < 0)
		snapshot_info_release(info);
	return ret;
}

void snapshot_info_release(struct snapshot_info *info)
{
	size_t i;

	for (i = 0; i < info->path_count; i++)
		free(info->paths[i]);
	free(info->paths);
	free(info->root);
	free(info->repo);
	free(info->branch);
	strbuf_release(&info->submodules);
	memset(info, 0, sizeof(*info));
}
