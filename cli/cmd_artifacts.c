/*
 * cmd_artifacts.c - `dstack artifacts list|download`.
 *
 * Download never follows a symlink it did not expect: every parent folder
 * is opened with O_NOFOLLOW from the output folder down, and every file is
 * created fresh (O_EXCL) after removing what stood there, so a stored
 * symlink cannot redirect a later write outside the output folder.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"

struct list_row {
	char *artifact, *path, *size;
	int job;
};

struct list_ctx {
	struct list_row *rows;
	size_t count;
};

static int list_entry(void *arg, const struct store_entry *entry)
{
	struct list_ctx *ctx = arg;
	struct list_row *row;
	struct strbuf size = STRBUF_INIT;
	char text[32];

	if (S_ISDIR(entry->mode))
		return 0;
	if (S_ISLNK(entry->mode)) {
		strbuf_addf(&size, "-> %s", entry->target ? entry->target : "");
	} else {
		size_format(entry->size, text);
		strbuf_addstr(&size, text);
	}
	ctx->rows = xrealloc(ctx->rows, (ctx->count + 1) * sizeof(*ctx->rows));
	row = &ctx->rows[ctx->count++];
	row->artifact = xstrdup(entry->artifact);
	row->path = xstrdup(entry->path);
	row->size = size.buf ? size.buf : xstrdup("");
	row->job = entry->job;
	return 0;
}

static int list_row_compare(const void *a, const void *b)
{
	const struct list_row *x = a, *y = b;
	int c = strcmp(x->artifact, y->artifact);

	if (!c)
		c = strcmp(x->path, y->path);
	return c ? c : x->job - y->job;
}

static int artifacts_list(const char *spec)
{
	struct list_ctx ctx = { 0 };
	struct cli_table table;
	struct store *store;
	struct store_run run;
	struct error err = { 0 };
	size_t i;
	int ret;

	if (cli_open_store(&store, false) < 0)
		return CLI_FAILED;
	ret = store_run_find(store, spec, &run, &err);
	if (ret == 0)
		ret = store_run_entries(store, run.id, list_entry, &ctx, &err);
	store_close(store);
	if (ret < 0)
		return cli_error("%s", err.message);
	if (ctx.count)
		qsort(ctx.rows, ctx.count, sizeof(*ctx.rows), list_row_compare);
	cli_table_init(&table, 3, "ARTIFACT", "FILE", "SIZE");
	for (i = 0; i < ctx.count; i++) {
		struct list_row *row = &ctx.rows[i];
		bool shadowed = i + 1 < ctx.count &&
				!strcmp(row->artifact, ctx.rows[i + 1].artifact) &&
				!strcmp(row->path, ctx.rows[i + 1].path);

		/* Several jobs wrote this path: the highest job's file shows. */
		if (!shadowed)
			cli_table_add(&table, row->artifact, row->path, row->size);
		free(row->artifact);
		free(row->path);
		free(row->size);
	}
	free(ctx.rows);
	cli_table_print(&table);
	return CLI_OK;
}

struct dir_mode {
	char *path;
	mode_t mode;
};

struct download_ctx {
	struct store *store;
	int out_fd;
	const char *out_name;
	struct strbuf rel;		/* artifact/path of the current entry */
	struct strbuf parent;		/* the folder parent_fd has open */
	int parent_fd;
	struct dir_mode *dirs;
	size_t dir_count;
	struct cli_progress progress;
	uint64_t done, total;
	struct error err;
};

static int sum_sizes(void *arg, const struct store_entry *entry)
{
	struct download_ctx *ctx = arg;

	if (S_ISREG(entry->mode))
		ctx->total += entry->size;
	return 0;
}

/* Opens the parent folder of rel (relative to the output) without following links. */
static int open_parent(struct download_ctx *ctx, const char *rel, const char **leaf)
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

static int download_entry(void *arg, const struct store_entry *entry)
{
	struct download_ctx *ctx = arg;
	const char *leaf;
	int dirfd, fd, ret;

	if (!path_is_contained(entry->artifact) ||
	    (*entry->path && !path_is_contained(entry->path)))
		return error_set(&ctx->err, -EINVAL, "refusing unsafe artifact path '%s/%s'",
				 entry->artifact, entry->path);
	strbuf_reset(&ctx->rel);
	strbuf_addstr(&ctx->rel, entry->artifact);
	if (*entry->path)
		strbuf_addf(&ctx->rel, "/%s", entry->path);
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
	ret = store_entry_extract(ctx->store, entry, fd, NULL, NULL, &ctx->err);
	if (ret == 0 && fchmod(fd, entry->mode & 07777) < 0)
		ret = error_errno(&ctx->err, -errno, "%s/%s", ctx->out_name, ctx->rel.buf);
	if (close(fd) < 0 && ret == 0)
		ret = error_errno(&ctx->err, -errno, "%s/%s", ctx->out_name, ctx->rel.buf);
	if (ret < 0) {
		unlinkat(dirfd, leaf, 0);
		return ret;
	}
	ctx->done += entry->size;
	cli_progress_update(&ctx->progress, ctx->done, ctx->total);
	return 0;
}

static int apply_dir_modes(struct download_ctx *ctx)
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

static int artifacts_download(const char *spec, const char *out)
{
	struct download_ctx ctx = { .parent_fd = -1, .out_name = out };
	struct store_run run;
	size_t i;
	int ret;

	if (fs_mkdir_p(out, 0755) < 0)
		return cli_error("%s: %s", out, strerror(errno));
	ctx.out_fd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ctx.out_fd < 0)
		return cli_error("%s: %s", out, strerror(errno));
	if (cli_open_store(&ctx.store, false) < 0) {
		close(ctx.out_fd);
		return CLI_FAILED;
	}
	cli_progress_init(&ctx.progress, "download");
	ret = store_run_find(ctx.store, spec, &run, &ctx.err);
	if (ret == 0)
		ret = store_run_entries(ctx.store, run.id, sum_sizes, &ctx, &ctx.err);
	if (ret == 0)
		ret = store_run_entries(ctx.store, run.id, download_entry, &ctx, &ctx.err);
	if (ret == 0)
		ret = apply_dir_modes(&ctx);
	cli_progress_finish(&ctx.progress);
	if (ctx.parent_fd >= 0 && ctx.parent_fd != ctx.out_fd)
		close(ctx.parent_fd);
	close(ctx.out_fd);
	store_close(ctx.store);
	for (i = 0; i < ctx.dir_count; i++)
		free(ctx.dirs[i].path);
	free(ctx.dirs);
	strbuf_release(&ctx.rel);
	strbuf_release(&ctx.parent);
	if (ret < 0)
		return cli_error("%s", ctx.err.message);
	return CLI_OK;
}

int cmd_artifacts(int argc, char **argv)
{
	const char *out = ".";
	int opt;

	if (cli_wants_help("artifacts", argc, argv))
		return CLI_OK;
	if (argc < 2)
		return cli_usage_error("artifacts", "missing subcommand");
	if (!strcmp(argv[1], "list")) {
		if (argc != 3)
			return cli_usage_error("artifacts", "artifacts list takes one RUN or :TAG");
		return artifacts_list(argv[2]);
	}
	if (strcmp(argv[1], "download"))
		return cli_usage_error("artifacts", "unknown subcommand '%s'", argv[1]);
	optind = 2;
	opterr = 0;
	while ((opt = getopt(argc, argv, "+o:")) != -1) {
		if (opt == 'o')
			out = optarg;
		else
			return cli_usage_error("artifacts", "unknown option '%s'", argv[optind - 1]);
	}
	if (optind + 1 != argc) {
		/* Allow the option after the run, as users type it. */
		if (optind + 3 == argc && !strcmp(argv[optind + 1], "-o")) {
			out = argv[optind + 2];
		} else {
			return cli_usage_error("artifacts", "artifacts download takes one RUN or :TAG");
		}
	}
	return artifacts_download(argv[optind], out);
}
