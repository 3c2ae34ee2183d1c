/*
 * view.c - a run's artifacts as one tree of entries, sorted by path with
 * each folder's children listed, so lookups are a binary search and a
 * folder of 20,000 files lists in order without scanning its neighbours.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "fs/internal.h"

/* Views kept at most: the ones of ended runs never change. */
#define VIEW_CACHE_MAX 16
/*
 * A live run's view is kept this long: new files show within it, and
 * `ls -l` of a folder of thousands of live files walks it a few times,
 * not once per file.
 */
#define VIEW_LIVE_NS (100 * 1000000ll)

struct view_builder {
	struct artifact_view *view;
	size_t alloc;
	int job;		/* -1: every job's */
};

static struct view_entry *view_add(struct view_builder *builder, const char *path)
{
	struct artifact_view *view = builder->view;
	struct view_entry *entry;

	if (view->count == builder->alloc) {
		builder->alloc = builder->alloc ? builder->alloc * 2 : 64;
		view->entries = xrealloc(view->entries, builder->alloc * sizeof(*view->entries));
	}
	entry = &view->entries[view->count++];
	memset(entry, 0, sizeof(*entry));
	entry->path = xstrdup(path);
	return entry;
}

static int view_collect(void *ctx, const struct store_entry *from)
{
	struct view_builder *builder = ctx;
	struct strbuf path = STRBUF_INIT;
	struct view_entry *entry;

	if (builder->job >= 0 && from->job != builder->job)
		return 0;
	strbuf_addstr(&path, from->artifact);
	if (*from->path)
		strbuf_addf(&path, "/%s", from->path);
	entry = view_add(builder, path.buf);
	entry->mode = from->mode;
	entry->size = from->size;
	entry->job = from->job;
	entry->target = from->target ? xstrdup(from->target) : NULL;
	if (from->chunk_count) {
		entry->chunk_count = from->chunk_count;
		entry->chunks = xmalloc(from->chunk_count * STORE_CHUNK_RECORD_SIZE);
		memcpy(entry->chunks, from->chunks, from->chunk_count * STORE_CHUNK_RECORD_SIZE);
	}
	strbuf_release(&path);
	return 0;
}

static void view_entry_release(struct view_entry *entry)
{
	free(entry->path);
	free(entry->live);
	free(entry->target);
	free(entry->chunks);
}

/* Adds what the host folder at fd holds, as path/NAME, and below. */
static void view_walk_live(struct view_builder *builder, int fd, const char *host,
			   const char *path, int job)
{
	DIR *dir = fdopendir(fd);
	struct dirent *d;

	if (!dir) {
		close(fd);
		return;
	}
	/* Files come and go while the job runs: what is gone is left out. */
	while ((d = readdir(dir))) {
		struct strbuf name = STRBUF_INIT, where = STRBUF_INIT;
		struct view_entry *entry;	/* good until the walk below adds more */
		struct stat st;
		int child;

		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, "..") ||
		    fstatat(dirfd(dir), d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode)))
			continue;
		strbuf_addf(&name, "%s/%s", path, d->d_name);
		strbuf_addf(&where, "%s/%s", host, d->d_name);
		entry = view_add(builder, name.buf);
		entry->mode = st.st_mode;
		entry->size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
		entry->job = job;
		entry->mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
		entry->live = xstrdup(where.buf);
		if (S_ISLNK(st.st_mode)) {
			char target[4096];
			ssize_t len = readlinkat(dirfd(dir), d->d_name, target, sizeof(target) - 1);

			target[len > 0 ? len : 0] = '\0';
			entry->target = xstrdup(target);
		} else if (S_ISDIR(st.st_mode)) {
			child = openat(dirfd(dir), d->d_name,
				       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (child >= 0)
				view_walk_live(builder, child, where.buf, name.buf, job);
		}
		strbuf_release(&name);
		strbuf_release(&where);
	}
	closedir(dir);
}

struct live_walk {
	struct view_builder *builder;
	size_t stored;		/* entries before the live ones */
};

/* A live job's folder, unless the job stored it already. */
static int view_add_live(void *ctx, const struct store_live_artifact *live)
{
	struct live_walk *walk = ctx;
	struct view_builder *builder = walk->builder;
	struct view_entry *entry;
	struct stat st;
	size_t i;
	int fd;

	if (builder->job >= 0 && live->job != builder->job)
		return 0;
	for (i = 0; i < walk->stored; i++)
		if (builder->view->entries[i].job == live->job &&
		    !strcmp(builder->view->entries[i].path, live->path))
			return 0;
	fd = open(live->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	entry = view_add(builder, live->path);
	entry->mode = st.st_mode;
	entry->job = live->job;
	entry->mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	entry->live = xstrdup(live->dir);
	view_walk_live(builder, fd, live->dir, live->path, live->job);
	return 0;
}

/*
 * The job owns every folder between its folder (work/RUN-N, which the
 * runner made and the job cannot replace) and the file, and may swap one
 * for a symlink after the listing: an open by path would then follow it
 * anywhere the daemon may read.  openat2 keeps the whole walk beneath the
 * job's folder.
 */
int view_open_live(const char *home, const char *live)
{
	struct open_how how = { .flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
	struct strbuf root = STRBUF_INIT;
	const char *job_folder, *rest;
	size_t len = strlen(home);
	int dir, fd;

	if (strncmp(live, home, len) || strncmp(live + len, "/work/", 6))
		return -EXDEV;
	job_folder = live + len + 6;
	rest = strchr(job_folder, '/');
	if (!rest)
		return -EXDEV;
	strbuf_add(&root, live, (size_t)(rest - live));
	dir = open(root.buf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	strbuf_release(&root);
	if (dir < 0)
		return -errno;
	fd = (int)syscall(SYS_openat2, dir, rest + 1, &how, sizeof(how));
	if (fd < 0)
		fd = -errno;
	close(dir);
	return fd;
}

/* Path order with '/' first, so a folder's entries follow it together. */
static int path_compare(const char *a, const char *b)
{
	for (; *a && *a == *b; a++, b++)
		;
	if (*a == *b)
		return 0;
	if (*a == '/')
		return -1;
	if (*b == '/')
		return 1;
	return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
}

static int entry_compare(const void *a, const void *b)
{
	const struct view_entry *x = a, *y = b;
	int order = path_compare(x->path, y->path);

	/* The same path from two jobs: the higher job last, to win. */
	return order ? order : x->job - y->job;
}

const struct view_entry *view_find(const struct artifact_view *view, const char *path)
{
	size_t low = 0, high = view->count;

	while (low < high) {
		size_t mid = low + (high - low) / 2;
		int order = path_compare(view->entries[mid].path, path);

		if (!order)
			return &view->entries[mid];
		if (order < 0)
			low = mid + 1;
		else
			high = mid;
	}
	return NULL;
}

/* Makes the folders above every entry that no entry names. */
static void view_add_parents(struct view_builder *builder)
{
	size_t count = builder->view->count, i;

	for (i = 0; i < count; i++) {
		char *path = xstrdup(builder->view->entries[i].path), *slash;

		while ((slash = strrchr(path, '/'))) {
			struct view_entry *parent;

			*slash = '\0';
			parent = view_add(builder, path);
			parent->mode = S_IFDIR | 0755;
			parent->job = -1;
		}
		free(path);
	}
}

/* Sorts, keeps one entry a path (the higher job's), and links children. */
static void view_index(struct artifact_view *view)
{
	size_t i, kept = 1, *fill;

	qsort(view->entries + 1, view->count - 1, sizeof(*view->entries), entry_compare);
	for (i = 1; i < view->count; i++) {
		if (kept > 1 && !strcmp(view->entries[kept - 1].path, view->entries[i].path)) {
			/* A made-up folder never replaces a stored one. */
			if (view->entries[i].job < 0) {
				view_entry_release(&view->entries[i]);
				continue;
			}
			view_entry_release(&view->entries[kept - 1]);
			kept--;
		}
		view->entries[kept++] = view->entries[i];
	}
	view->count = kept;
	for (i = 1; i < view->count; i++) {
		const char *slash = strrchr(view->entries[i].path, '/');
		const struct view_entry *parent;

		if (slash) {
			char *dir = xstrdup(view->entries[i].path);

			dir[slash - view->entries[i].path] = '\0';
			parent = view_find(view, dir);
			free(dir);
		} else {
			parent = &view->entries[0];
		}
		view->entries[i].parent = (size_t)(parent - view->entries);
		view->entries[view->entries[i].parent].child_count++;
		if (S_ISDIR(view->entries[i].mode))
			view->entries[view->entries[i].parent].subdirs++;
	}
	view->children = xcalloc(view->count + 1, sizeof(*view->children));
	fill = xcalloc(view->count + 1, sizeof(*fill));
	for (i = 1, kept = 0; i < view->count + 1; i++) {
		view->entries[i - 1].first_child = kept;
		kept += view->entries[i - 1].child_count;
	}
	/* Entries are sorted, so each folder's children come in order. */
	for (i = 1; i < view->count; i++) {
		struct view_entry *parent = &view->entries[view->entries[i].parent];

		view->children[parent->first_child + fill[view->entries[i].parent]++] = i;
	}
	free(fill);
}

static void view_free(struct artifact_view *view)
{
	size_t i;

	for (i = 0; i < view->count; i++)
		view_entry_release(&view->entries[i]);
	free(view->entries);
	free(view->children);
	free(view);
}

static int view_build(struct store *store, const struct store_run *run, int job,
		      struct artifact_view **out, struct error *err)
{
	struct view_builder builder = { .job = job };
	struct view_entry *root;
	int ret;

	builder.view = xcalloc(1, sizeof(*builder.view));
	builder.view->run = run->id;
	snprintf(builder.view->name, sizeof(builder.view->name), "%s", run->name);
	builder.view->job = job;
	builder.view->final = run->finished != 0;
	builder.view->finished = run->finished;
	builder.view->refs = 1;
	builder.view->made = time_monotonic_ns();
	root = view_add(&builder, "");
	root->mode = S_IFDIR | 0755;
	root->job = -1;
	ret = store_run_entries(store, run->id, view_collect, &builder, err);
	if (ret == 0 && !run->finished) {
		struct live_walk walk = { .builder = &builder, .stored = builder.view->count };

		ret = store_run_live_artifacts(store, run->id, view_add_live, &walk, err);
	}
	if (ret < 0) {
		view_free(builder.view);
		return ret;
	}
	view_add_parents(&builder);
	view_index(builder.view);
	*out = builder.view;
	return 0;
}

int view_get(struct fs *fs, struct store *store, const char *run_name, int job,
	     struct artifact_view **view, struct error *err)
{
	struct store_run run;
	size_t i;
	int ret;

	/*
	 * A run's name is never given again: a kept view answers without
	 * asking the catalog (find, ls -lR and every open look up a view many
	 * times).  A live run's artifacts still come: its view is made afresh
	 * once it is VIEW_LIVE_NS old.
	 */
	pthread_mutex_lock(&fs->views_lock);
	for (i = 0; i < fs->view_count; i++) {
		struct artifact_view *kept = fs->views[i];

		if (strcmp(kept->name, run_name) || kept->job != job)
			continue;
		if (kept->final || time_monotonic_ns() - kept->made < VIEW_LIVE_NS) {
			*view = kept;
			kept->refs++;
			pthread_mutex_unlock(&fs->views_lock);
			return 0;
		}
		fs->view_count--;
		memmove(fs->views + i, fs->views + i + 1, (fs->view_count - i) * sizeof(*fs->views));
		if (--kept->refs == 0)
			view_free(kept);
		break;
	}
	pthread_mutex_unlock(&fs->views_lock);
	ret = store_run_find(store, run_name, &run, err);
	if (ret == 0)
		ret = view_build(store, &run, job, view, err);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&fs->views_lock);
	if (fs->view_count == VIEW_CACHE_MAX) {
		if (--fs->views[0]->refs == 0)
			view_free(fs->views[0]);
		memmove(fs->views, fs->views + 1, --fs->view_count * sizeof(*fs->views));
	}
	fs->views = xrealloc(fs->views, (fs->view_count + 1) * sizeof(*fs->views));
	fs->views[fs->view_count++] = *view;
	(*view)->refs++;
	pthread_mutex_unlock(&fs->views_lock);
	return 0;
}

void view_put(struct fs *fs, struct artifact_view *view)
{
	bool last;

	if (!view)
		return;
	pthread_mutex_lock(&fs->views_lock);
	last = --view->refs == 0;
	pthread_mutex_unlock(&fs->views_lock);
	if (last)
		view_free(view);
}

void view_cache_release(struct fs *fs)
{
	size_t i;

	for (i = 0; i < fs->view_count; i++)
		view_put(fs, fs->views[i]);
	free(fs->views);
	fs->views = NULL;
	fs->view_count = 0;
}
