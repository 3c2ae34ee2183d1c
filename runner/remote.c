/*
 * remote.c - providers from other repositories (the seed's "Use
 * providers"): provider: {repo: URL, name: NAME, ref: REF} fetches URL
 * through libgit2 into a bare mirror under $DSTACK_HOME/providers, one
 * fetch at a time per URL, and checks REF (a branch, a tag or a commit;
 * without one, the remote's default branch) out for the run.  A commit
 * already in the mirror serves when the remote cannot be reached.
 */
#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "runner/internal.h"

/* The mirror of url: $DSTACK_HOME/providers/HASH.git, HASH of the URL. */
static void remote_mirror_path(struct store *store, const char *url, struct strbuf *path)
{
	uint64_t hash = 14695981039346656037ull;	/* FNV-1a */
	const unsigned char *p;

	for (p = (const unsigned char *)url; *p; p++)
		hash = (hash ^ *p) * 1099511628211ull;
	strbuf_addf(path, "%s/providers/%016llx.git", store_home(store),
		    (unsigned long long)hash);
}

static int remote_git_error(struct error *err, const char *url, const char *what)
{
	const git_error *e = git_error_last();

	return error_set(err, -EIO, "provider repository %s: %s: %s", url, what,
			 e && e->message ? e->message : "libgit2 error");
}

/*
 * Fetches every branch and tag of url into the mirror; *head gets the
 * remote's default branch ("refs/heads/NAME"), when it has one.
 */
static int remote_fetch(git_repository *repo, const char *url, struct strbuf *head,
			struct error *err)
{
	static char *refspecs[] = { "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*" };
	git_strarray specs = { refspecs, 2 };
	git_remote_create_options create;
	git_fetch_options options;
	git_config *config = NULL;
	git_remote *remote = NULL;
	git_buf branch = { 0 };
	char *fetch_url = NULL;
	int ret = 0;

	/* The _INIT macros leave fields out, which -Wextra refuses. */
	git_fetch_options_init(&options, GIT_FETCH_OPTIONS_VERSION);
	options.prune = GIT_FETCH_PRUNE;
	/*
	 * libgit2 1.5.1 finds insteadOf rules with a regex whose match data
	 * it leaks (about 250 KiB a fetch, for ever in a daemon): the rules
	 * are applied here, as for the snapshot's remote, and its lookup
	 * skipped.
	 */
	git_remote_create_options_init(&create, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	create.repository = repo;
	create.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF;
	if (git_repository_config_snapshot(&config, repo) == 0)
		fetch_url = snapshot_url_rewrite(config, url);
	if (git_remote_create_with_opts(&remote, fetch_url ? fetch_url : url, &create) < 0 ||
	    git_remote_connect(remote, GIT_DIRECTION_FETCH, &options.callbacks, NULL, NULL) < 0) {
		ret = remote_git_error(err, url, "cannot reach it");
		goto out;
	}
	if (git_remote_default_branch(&branch, remote) == 0)
		strbuf_addstr(head, branch.ptr);
	if (git_remote_fetch(remote, &specs, &options, NULL) < 0)
		ret = remote_git_error(err, url, "cannot fetch");
out:
	git_buf_dispose(&branch);
	git_remote_free(remote);
	git_config_free(config);
	free(fetch_url);
	return ret;
}

/* REF as a branch, a tag or a commit (a full or an abbreviated id). */
static int remote_resolve(git_repository *repo, const char *url, const char *ref,
			  git_commit **commit, struct error *err)
{
	static const char *const forms[] = { "refs/heads/%s", "refs/tags/%s", "%s" };
	git_object *object = NULL;
	char spec[1024];
	size_t i;

	for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		snprintf(spec, sizeof(spec), forms[i], ref);
		if (git_revparse_single(&object, repo, spec) == 0)
			break;
	}
	if (!object)
		return error_set(err, -ENOENT, "provider repository %s: no branch, tag or commit"
				 " '%s'", url, ref);
	if (git_object_peel((git_object **)commit, object, GIT_OBJECT_COMMIT) < 0) {
		git_object_free(object);
		return error_set(err, -ENOENT, "provider repository %s: '%s' names no commit",
				 url, ref);
	}
	git_object_free(object);
	return 0;
}

/* Whether ref is written as a commit id: those never move, so a cached one serves offline. */
static bool remote_ref_is_commit(const char *ref)
{
	size_t len = strlen(ref);

	return len >= 7 && len <= GIT_OID_HEXSZ && strspn(ref, "0123456789abcdef") == len;
}

int remote_provider_checkout(struct store *store, const char *url, const char *ref,
			     const char *dest, char commit_id[41], struct strbuf *said,
			     struct error *err)
{
	struct strbuf mirror = STRBUF_INIT, lock_path = STRBUF_INIT, head = STRBUF_INIT;
	git_checkout_options checkout;
	git_repository *repo = NULL;
	git_commit *commit = NULL;
	struct error fetch_err = { 0 };
	int lock = -1, ret;

	remote_mirror_path(store, url, &mirror);
	strbuf_addf(&lock_path, "%s.lock", mirror.buf);
	ret = fs_mkdir_p(mirror.buf, 0700);
	if (ret == 0) {
		lock = open(lock_path.buf, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (lock < 0 || flock(lock, LOCK_EX) < 0)
			ret = -errno;
	}
	if (ret < 0) {
		error_errno(err, ret, "%s", lock < 0 ? mirror.buf : lock_path.buf);
		goto out;
	}
	git_libgit2_init();
	if (git_repository_init(&repo, mirror.buf, 1) < 0) {
		ret = remote_git_error(err, url, mirror.buf);
		goto shutdown;
	}
	/* Once per run: the run sees the provider as it is now. */
	ret = remote_fetch(repo, url, &head, &fetch_err);
	if (ret < 0 && !(ref && remote_ref_is_commit(ref))) {
		*err = fetch_err;
		goto shutdown;
	}
	if (ret < 0)
		strbuf_addf(said, "%s; using commit %s from the cache", fetch_err.message, ref);
	if (ref)
		ret = remote_resolve(repo, url, ref, &commit, err);
	else if (head.len)
		ret = remote_resolve(repo, url, head.buf, &commit, err);
	else
		ret = error_set(err, -ENOENT, "provider repository %s: it has no default branch"
				" (name one with ref:)", url);
	if (ret < 0)
		goto shutdown;
	git_oid_tostr(commit_id, GIT_OID_HEXSZ + 1, git_commit_id(commit));
	git_checkout_options_init(&checkout, GIT_CHECKOUT_OPTIONS_VERSION);
	checkout.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DONT_WRITE_INDEX;
	checkout.target_directory = dest;
	ret = fs_mkdir_p(dest, 0700);
	if (ret < 0)
		error_errno(err, ret, "%s", dest);
	else if (git_checkout_tree(repo, (const git_object *)commit, &checkout) < 0)
		ret = remote_git_error(err, url, "cannot check it out");
shutdown:
	git_commit_free(commit);
	git_repository_free(repo);
	git_libgit2_shutdown();
out:
	if (lock >= 0)
		close(lock);
	strbuf_release(&mirror);
	strbuf_release(&lock_path);
	strbuf_release(&head);
	return ret;
}
