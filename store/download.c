/*
 * download.c - writing a run's artifacts, or a tree (a run's snapshot),
 * out as plain files.
 *
 * Nothing here follows a symlink it did not expect: every parent folder
 * is opened with O_NOFOLLOW from the output folder down, and every file is
 * created fresh (O_EXCL) after removing what stood there, so a stored
 * symlink cannot redirect a later write outside the output folder.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"

struct dir_mode {
	char *path;
	mode_t mode;
};

struct download {
	download_write_fn *write;
	void *write_ctx;
	int out_fd;
	const char *out_name;
	struct strbuf rel;		/* artifact/path of the current entry */
	struct strbuf parent;		/* the folder parent_fd has open */
	int parent_fd;
	struct dir_mode *dirs;
	size_t dir_count;
	struct error err;
};

/* Opens the parent folder of rel (relative to the output) without following links. */
static int open_parent(struct download *ctx, const char *rel, const char **leaf)
{
	const char *slash = strrchr(rel, '/');
	size_t parent_len = slash ? (size_t)(slash - rel) : 0;
	char component[4096];
	const char *p;
	int fd, next;

	*leaf = slash ? slash + 1 : rel;
	if (ctx->parent_fd >= 0 && ctx->parent.len == parent_len &&
	    !memcmp(ctx->parent.buf, rel, parent_len))
		return ctx->parent_fd;
	if (ctx->parent_fd >= 0 && ctx->parent_fd != ctx->out_fd)
		close(ctx->parent_fd);
	ctx->parent_fd = -1;
	fd = ctx->out_fd;
	for (p = rel; p < rel + parent_len;) {
		size_t len = strcspn(p, "/");

		if (len >= sizeof(component))
			len = sizeof(component) - 1;
		memcpy(component, p, len);
		component[len] = '\0';
		if (mkdirat(fd, component, 0700) < 0 && errno != EEXIST) {
			error_errno(&ctx->err, -errno, "%s/%.*s", ctx->out_name,
				    (int)(p + len - rel), rel);
			goto fail;
		}
		next = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			error_errno(&ctx->err, -errno, "%s/%.*s", ctx->out_name,
				    (int)(p + len - rel), rel);
			goto fail;
		}
		if (fd != ctx->out_fd)
			close(fd);
		fd = next;
		p += len;
		if (*p == '/')
			p++;
	}
	strbuf_reset(&ctx->parent);
	strbuf_add(&ctx->parent, rel, parent_len);
	ctx->parent_fd = fd;
	return fd;
fail:
	if (fd != ctx->out_fd)
		close(fd);
	return ctx->err.code;
}

/* Removes whatever stands at name, unless it is a folder (kept, merged). */
static int clear_path(int dirfd, const char *name, bool keep_dir)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode))
		return keep_dir ? 0 : -EISDIR;
	return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
}

int download_add(struct download *ctx, const struct store_entry *entry)
{
	const char *leaf;
	int dirfd, fd, ret;

	if ((*entry->artifact && !path_is_contained(entry->artifact)) ||
	    (*entry->path && !path_is_contained(entry->path)))
		return error_set(&ctx->err, -EINVAL, "refusing unsafe artifact path '%s/%s'",
				 entry->artifact, entry->path);
	strbuf_reset(&ctx->rel);
	strbuf_addstr(&ctx->rel, entry->artifact);
	if (*entry->path)
		strbuf_addf(&ctx->rel, "%s%s", ctx->rel.len ? "/" : "", entry->path);
	dirfd = open_parent(ctx, ctx->rel.buf, &leaf);
	if (dirfd < 0)
		return dirfd;
	ret = clear_path(dirfd, leaf, S_ISDIR(entry->mode));
	if (ret < 0)
		return error_errno(&ctx->err, ret, "%s/%s", ctx->out_name, ctx->rel.buf);
	if (S_ISDIR(entry->mode)) {
		if (mkdirat(dirfd, leaf, 0700) < 0 && errno != EEXIST)
			return error_errno(&ctx->err, -errno, "%s/%s", ctx->out_name, ctx->rel.buf);
		/* Modes last: a read-only folder must first take its files. */
		ctx->dirs = xrealloc(ctx->dirs, (ctx->dir_count + 1) * sizeof(*ctx->dirs));
		ctx->dirs[ctx->dir_count].path = xstrdup(ctx->rel.buf);
		ctx->dirs[ctx->dir_count].mode = entry->mode & 07777;
		ctx->dir_count++;
		return 0;
	}
	if (S_ISLNK(entry->mode)) {
		if (symlinkat(entry->target ? entry->target : "", dirfd, leaf) < 0)
			return error_errno(&ctx->err, -errno, "%s/%s", ctx->out_name, ctx->rel.buf);
		return 0;
	}
	fd = openat(dirfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return error_errno(&ctx->err, -errno, "%s/%s", ctx->out_name, ctx->rel.buf);
	ret = ctx->write(ctx->write_ctx, entry, fd, &ctx->err);
	if (ret == 0 && fchmod(fd, entry->mode & 07777) < 0)
		ret = error_errno(&ctx->err, -errno, "%s/%s", ctx->out_name, ctx->rel.buf);
	if (close(fd) < 0 && ret == 0)
		ret = error_errno(&ctx->err, -errno, "%s/%s", ctx->out_name, ctx->rel.buf);
	if (ret < 0)
		unlinkat(dirfd, leaf, 0);
	return ret;
}

static int download_dir_modes(struct download *ctx)
{
	size_t i;

	/* Children before parents: a parent may be made read-only. */
	for (i = ctx->dir_count; i-- > 0;) {
		const char *leaf;
		int dirfd = open_parent(ctx, ctx->dirs[i].path, &leaf);

		if (dirfd < 0)
			return dirfd;
		if (fchmodat(dirfd, leaf, ctx->dirs[i].mode, 0) < 0)
			return error_errno(&ctx->err, -errno, "%s/%s", ctx->out_name,
					   ctx->dirs[i].path);
	}
	return 0;
}

int download_open(struct download **out, const char *dir, download_write_fn *write,
		  void *write_ctx, struct error *err)
{
	struct download *ctx;
	int ret, fd;

	ret = fs_mkdir_p(dir, 0755);
	if (ret < 0)
		return error_errno(err, ret, "%s", dir);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return error_errno(err, -errno, "%s", dir);
	ctx = xcalloc(1, sizeof(*ctx));
	ctx->write = write;
	ctx->write_ctx = write_ctx;
	ctx->out_fd = fd;
	ctx->out_name = dir;
	ctx->parent_fd = -1;
	*out = ctx;
	return 0;
}

int download_close(struct download *ctx, int ret, struct error *err)
{
	size_t i;

	if (ret == 0)
		ret = download_dir_modes(ctx);
	if (ctx->parent_fd >= 0 && ctx->parent_fd != ctx->out_fd)
		close(ctx->parent_fd);
	close(ctx->out_fd);
	for (i = 0; i < ctx->dir_count; i++)
		free(ctx->dirs[i].path);
	free(ctx->dirs);
	strbuf_release(&ctx->rel);
	strbuf_release(&ctx->parent);
	if (ret < 0 && ctx->err.code)
		*err = ctx->err;
	free(ctx);
	return ret;
}

/* A store download: files from the catalog's objects, with progress. */
struct store_download {
	struct store *store;
	struct download *download;
	store_progress_fn *progress;
	void *progress_ctx;
	uint64_t done, total;
};

static int sum_sizes(void *arg, const struct store_entry *entry)
{
	struct store_download *ctx = arg;

	if (S_ISREG(entry->mode))
		ctx->total += entry->size;
	return 0;
}

static int store_download_write(void *arg, const struct store_entry *entry, int fd,
				struct error *err)
{
	struct store_download *ctx = arg;
	int ret = store_entry_extract(ctx->store, entry, fd, NULL, NULL, err);

	if (ret == 0) {
		ctx->done += entry->size;
		if (ctx->progress)
			ctx->progress(ctx->progress_ctx, ctx->done, ctx->total);
	}
	return ret;
}

static int store_download_entry(void *arg, const struct store_entry *entry)
{
	struct store_download *ctx = arg;

	return download_add(ctx->download, entry);
}

typedef int entries_fn(struct store *store, int64_t id, store_entry_fn *fn, void *ctx,
		       struct error *err);

/* Writes what walk calls for id (a run's artifacts, or a tree) under out. */
static int download(struct store *store, entries_fn *walk, int64_t id, const char *out,
		    store_progress_fn *progress, void *progress_ctx, struct error *err)
{
	struct store_download ctx = { .store = store, .progress = progress,
				      .progress_ctx = progress_ctx };
	struct error walk_err = { 0 };
	int ret;

	ret = download_open(&ctx.download, out, store_download_write, &ctx, err);
	if (ret < 0)
		return ret;
	ret = progress ? walk(store, id, sum_sizes, &ctx, &walk_err) : 0;
	if (ret == 0)
		ret = walk(store, id, store_download_entry, &ctx, &walk_err);
	ret = download_close(ctx.download, ret, err);
	/* The walk's own failures (a damaged tree) come with their message here. */
	if (ret < 0 && walk_err.code)
		*err = walk_err;
	return ret;
}
int store_run_download(struct store *store, int64_t run, const char *out,
		       store_progress_fn *progress, void *progress_ctx,
		       struct error *err)
{
	return download(store, store_run_entries, run, out, progress, progress_ctx, err);
}

int store_tree_download(struct store *store, int64_t tree, const char *out,
			struct error *err)
{
	return download(store, tree_entries, tree, out, NULL, NULL, err);
}
