/*
 * ops.c - the FUSE operations: what each node of the tree is, lists and
 * holds.  Live files (status, info, logs) are read afresh on every open
 * and stat and bypass the page cache; artifact files never change, so the
 * kernel keeps their pages and attributes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fs/internal.h"
#include "runner/runner.h"

/* How long the kernel may keep what never changes: artifacts of ended runs. */
#define FS_FOREVER 86400.0
/* The tree's folders change as runs come: a second, as the issue allows. */
#define FS_FOLDER_TIMEOUT 1.0

/* The daemon's fs, kept by INIT for fs_read_ahead_once (which takes no argument). */
static struct fs *daemon_fs;

static void fs_read_ahead_once(void)
{
	fs_read_ahead(daemon_fs->options.mountpoint);
}

static struct fs *req_fs(fuse_req_t req)
{
	struct fs *fs = fuse_req_userdata(req);

	/* Any request but INIT comes after the kernel took INIT's answer. */
	pthread_once(&fs->read_ahead_once, fs_read_ahead_once);
	return fs;
}

static void reply_error(fuse_req_t req, int ret)
{
	fuse_reply_err(req, ret < 0 ? -ret : EIO);
}

static void handle_track(struct fs *fs, struct fs_handle *handle,
			 void (*free_fn)(struct fs *fs, struct fs_handle *handle))
{
	handle->free = free_fn;
	pthread_mutex_lock(&fs->handles_lock);
	handle->prev = NULL;
	handle->next = fs->handles;
	if (fs->handles)
		fs->handles->prev = handle;
	fs->handles = handle;
	pthread_mutex_unlock(&fs->handles_lock);
}

/* Releases a handle the kernel is done with. */
static void handle_release(struct fs *fs, struct fs_handle *handle)
{
	pthread_mutex_lock(&fs->handles_lock);
	if (handle->prev)
		handle->prev->next = handle->next;
	else
		fs->handles = handle->next;
	if (handle->next)
		handle->next->prev = handle->prev;
	pthread_mutex_unlock(&fs->handles_lock);
	handle->free(fs, handle);
}

void fs_handles_release(struct fs *fs)
{
	while (fs->handles)
		handle_release(fs, fs->handles);
}

/* Lists of a folder, made at opendir so that readdir pages agree. */
struct listing_item {
	char *name;
	struct node proto;
	char *key;
};

struct listing {
	struct fs_handle handle;	/* first: fi->fh points at both */
	struct listing_item *items;
	size_t count;
	struct artifact_view *view;	/* artifact folders: the view listed */
};

static void listing_add(struct listing *list, const struct node *parent, const char *name,
			const struct node *proto)
{
	struct listing_item *item;
	struct strbuf key = STRBUF_INIT;

	list->items = xrealloc(list->items, (list->count + 1) * sizeof(*list->items));
	item = &list->items[list->count++];
	item->name = xstrdup(name);
	/* Its strings are the caller's, often gone once the listing is made. */
	item->proto = *proto;
	item->proto.name = proto->name ? xstrdup(proto->name) : NULL;
	item->proto.path = proto->path ? xstrdup(proto->path) : NULL;
	strbuf_addf(&key, "%s/%s", parent->key, name);
	item->key = key.buf;
}

static void listing_free(struct fs *fs, struct fs_handle *handle)
{
	struct listing *list = (struct listing *)handle;
	size_t i;

	view_put(fs, list->view);
	for (i = 0; i < list->count; i++) {
		free(list->items[i].name);
		free(list->items[i].proto.name);
		free(list->items[i].proto.path);
		free(list->items[i].key);
	}
	free(list->items);
	free(list);
}

/* --- what a name is, in a folder --- */

struct child_fixed {
	const char *name;
	enum node_kind kind;
	enum run_file file;
};

static const struct child_fixed root_children[] = {
	{ "ctl", NODE_CTL, 0 }, { "workflows", NODE_WORKFLOWS, 0 },
	{ "runs", NODE_RUNS, 0 }, { "tags", NODE_TAGS, 0 },
};

static const struct child_fixed run_children[] = {
	{ "status", NODE_RUN_FILE, FILE_STATUS }, { "info", NODE_RUN_FILE, FILE_INFO },
	{ "ctl", NODE_RUN_FILE, FILE_CTL }, { "logs", NODE_RUN_FILE, FILE_LOGS },
	{ "artifacts", NODE_ARTIFACT, 0 }, { "jobs", NODE_JOBS, 0 },
};

static const struct child_fixed job_children[] = {
	{ "spec.yaml", NODE_RUN_FILE, FILE_SPEC },
	{ "status", NODE_RUN_FILE, FILE_STATUS }, { "info", NODE_RUN_FILE, FILE_INFO },
	{ "logs", NODE_RUN_FILE, FILE_LOGS }, { "artifacts", NODE_ARTIFACT, 0 },
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The names a folder of kind always holds, or NULL. */
static const struct child_fixed *fixed_children(enum node_kind kind, size_t *count)
{
	switch (kind) {
	case NODE_ROOT:
		*count = COUNT(root_children);
		return root_children;
	case NODE_RUN:
		*count = COUNT(run_children);
		return run_children;
	case NODE_JOB:
		*count = COUNT(job_children);
		return job_children;
	default:
		*count = 0;
		return NULL;
	}
}

struct workflow_find {
	const char *name;
	struct strbuf *spec;	/* the found one's spec, when not NULL */
	struct listing *list;	/* or every name */
	const struct node *parent;
	bool found;
};

static int workflow_visit(void *ctx, const char *name, const char *spec)
{
	struct workflow_find *find = ctx;
	struct node proto = { .kind = NODE_WORKFLOW, .name = (char *)name, .job = -1 };

	if (find->list) {
		listing_add(find->list, find->parent, name, &proto);
		return 0;
	}
	if (strcmp(name, find->name))
		return 0;
	find->found = true;
	if (find->spec)
		strbuf_addstr(find->spec, spec);
	return 1;
}

static int workflow_lookup(struct fs *fs, struct workflow_find *find)
{
	struct error err = { 0 };
	int ret = runner_workflows_each(fs->root, workflow_visit, find, &err);

	return ret < 0 ? ret : 0;
}

/* The name of the newest done run of workflow, if any. */
static int workflow_latest(struct fs *fs, struct store *store, const char *workflow,
			   struct store_run *run)
{
	struct error err = { 0 };

	return store_run_latest_done(store, fs->repo, workflow, run, &err);
}

static bool job_number(const char *name, int *job)
{
	char *end;
	long n = strtol(name, &end, 10);

	if (!*name || *end || n < 0 || n > 1000000 || (name[0] == '0' && name[1]))
		return false;
	*job = (int)n;
	return true;
}

struct job_find {
	int job;
	bool found;
	struct listing *list;
	const struct node *parent;
};

static int job_visit(void *ctx, const struct store_job *job)
{
	struct job_find *find = ctx;
	char name[16];
	struct node proto = { .kind = NODE_JOB, .name = find->parent ? find->parent->name : NULL,
			      .job = job->n };

	if (find->list) {
		snprintf(name, sizeof(name), "%d", job->n);
		listing_add(find->list, find->parent, name, &proto);
	}
	if (job->n == find->job)
		find->found = true;
	return 0;
}

/*
 * What name is in parent: *proto describes it.  -ENOENT when nothing of
 * that name is there now.
 */
static int child_resolve(struct fs *fs, struct store *store, const struct node *parent,
			 const char *name, struct node *proto, struct artifact_view **view)
{
	const struct child_fixed *fixed;
	size_t fixed_count, i;
	struct store_run run;
	struct strbuf path = STRBUF_INIT;
	struct error err = { 0 };
	int ret = 0;

	memset(proto, 0, sizeof(*proto));
	proto->job = -1;
	fixed = fixed_children(parent->kind, &fixed_count);
	switch (parent->kind) {
	case NODE_ROOT:
	case NODE_RUN:
	case NODE_JOB:
		break;
	case NODE_WORKFLOWS: {
		struct workflow_find find = { .name = name };

		ret = workflow_lookup(fs, &find);
		if (ret == 0 && !find.found)
			ret = -ENOENT;
		proto->kind = NODE_WORKFLOW;
		proto->name = (char *)name;
		return ret;
	}
	case NODE_WORKFLOW:
		proto->name = parent->name;
		proto->kind = NODE_RUN_FILE;
		if (!strcmp(name, "spec.yaml")) {
			proto->file = FILE_SPEC;
			return 0;
		}
		if (strcmp(name, "latest"))
			return -ENOENT;
		proto->file = FILE_LATEST;
		return workflow_latest(fs, store, parent->name, &run);
	case NODE_RUNS:
		if (name[0] == ':' || store_run_find(store, name, &run, &err) < 0)
			return -ENOENT;
		proto->kind = NODE_RUN;
		proto->name = (char *)name;
		return 0;
	case NODE_JOBS: {
		struct job_find find = { .job = -1 };

		if (!job_number(name, &find.job) ||
		    store_run_find(store, parent->name, &run, &err) < 0 ||
		    store_run_jobs(store, run.id, job_visit, &find, &err) < 0 || !find.found)
			return -ENOENT;
		proto->kind = NODE_JOB;
		proto->name = parent->name;
		proto->job = find.job;
		return 0;
	}
	case NODE_TAGS:
		strbuf_addf(&path, ":%s", name);
		ret = store_run_find(store, path.buf, &run, &err) < 0 ? -ENOENT : 0;
		strbuf_release(&path);
		proto->kind = NODE_TAG;
		proto->name = (char *)name;
		return ret;
	case NODE_ARTIFACT:
		ret = view_get(fs, store, parent->name, parent->job, view, &err);
		if (ret < 0)
			return -ENOENT;
		strbuf_addf(&path, "%s%s%s", parent->path, *parent->path ? "/" : "", name);
		if (!view_find(*view, path.buf))
			ret = -ENOENT;
		proto->kind = NODE_ARTIFACT;
		proto->name = parent->name;
		proto->job = parent->job;
		proto->path = ret == 0 ? path.buf : NULL;
		if (ret < 0)
			strbuf_release(&path);
		return ret;
	default:
		return -ENOTDIR;
	}
	for (i = 0; i < fixed_count; i++) {
		if (strcmp(fixed[i].name, name))
			continue;
		proto->kind = fixed[i].kind;
		proto->file = fixed[i].file;
		proto->name = parent->name;
		proto->job = parent->kind == NODE_JOB ? parent->job : -1;
		proto->path = fixed[i].kind == NODE_ARTIFACT ? "" : NULL;
		return 0;
	}
	return -ENOENT;
}

/* --- attributes and contents --- */

static void timespec_from_ns(struct timespec *ts, int64_t ns)
{
	ts->tv_sec = (time_t)(ns / 1000000000);
	ts->tv_nsec = (long)(ns % 1000000000);
}

static void run_info_time(struct strbuf *out, const char *key, int64_t ns)
{
	char when[32] = "";

	if (ns)
		time_format_iso(ns, when);
	strbuf_addf(out, "%s: %s\n", key, when);
}

struct job_status {
	int job;
	struct store_job found;
	bool ok;
};

static int job_status_visit(void *ctx, const struct store_job *job)
{
	struct job_status *status = ctx;

	if (job->n == status->job) {
		status->found = *job;
		status->ok = true;
	}
	return 0;
}

/* The text of status, info and spec.yaml files, as they are now. */
static int file_text(struct fs *fs, struct store *store, const struct node *node,
		     struct strbuf *out)
{
	struct store_run run;
	struct job_status job = { .job = node->job };
	struct error err = { 0 };
	int ret;

	if (node->file == FILE_SPEC && node->job < 0) {
		struct workflow_find find = { .name = node->name, .spec = out };

		ret = workflow_lookup(fs, &find);
		return ret < 0 ? ret : find.found ? 0 : -ENOENT;
	}
	ret = store_run_find(store, node->name, &run, &err);
	if (ret == 0 && node->file == FILE_SPEC)
		return store_job_spec(store, run.id, node->job, out, &err) < 0 ? -ENOENT : 0;
	if (ret == 0 && node->job >= 0) {
		ret = store_run_jobs(store, run.id, job_status_visit, &job, &err);
		if (ret == 0 && !job.ok)
			ret = -ENOENT;
	}
	if (ret < 0)
		return ret == -ENOENT ? ret : -EIO;
	if (node->file == FILE_STATUS) {
		strbuf_addf(out, "%s\n", node->job >= 0 ? job.found.status : run.status);
		return 0;
	}
	if (node->job >= 0) {
		strbuf_addf(out, "job: %d\nstatus: %s\nimage: %s\nexit: ", node->job,
			    job.found.status, job.found.image);
		if (job.found.exit_code >= 0)
			strbuf_addf(out, "%d", job.found.exit_code);
		strbuf_addf(out, "\nreason: %s\ncache_key: %s\ncached_from: %s\n",
			    job.found.reason, job.found.input_key, job.found.cached_from);
		return 0;
	}
	strbuf_addf(out, "workflow: %s\nprovider: %s\nargs: %s\ntag: %s\n", run.workflow,
		    run.provider, run.args, run.tag);
	run_info_time(out, "submitted", run.submitted);
	run_info_time(out, "started", run.started);
	run_info_time(out, "finished", run.finished);
	strbuf_addf(out, "repo: %s\ncommit: %s\nexit: ", run.repo, run.commit);
	/* Empty while live, and for a run stopped or aborted. */
	if (!strcmp(run.status, "done") || !strcmp(run.status, "failed"))
		strbuf_addf(out, "%d", run.exit_code < 0 ? 0 : run.exit_code);
	/* Why it failed, in one line; empty when it did not. */
	strbuf_addf(out, "\nreason: %s\ncached: %d of %d jobs\n", run.reason, run.jobs_cached,
		    run.job_count);
	return 0;
}

static int link_target(struct fs *fs, struct store *store, const struct node *node,
		       struct strbuf *out)
{
	struct store_run run;
	struct strbuf spec = STRBUF_INIT;
	struct error err = { 0 };
	int ret;

	if (node->kind == NODE_TAG) {
		strbuf_addf(&spec, ":%s", node->name);
		ret = store_run_find(store, spec.buf, &run, &err);
		strbuf_release(&spec);
		if (ret == 0)
			strbuf_addf(out, "../runs/%s", run.name);
		return ret < 0 ? -ENOENT : 0;
	}
	ret = workflow_latest(fs, store, node->name, &run);
	if (ret == 0)
		strbuf_addf(out, "../../runs/%s", run.name);
	return ret < 0 ? -ENOENT : 0;
}

/* What every node's attributes start from. */
static void stat_init(const struct fs *fs, const struct node *node, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = node->ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_nlink = 1;
	st->st_blksize = 65536;
	st->st_mtim = st->st_ctim = st->st_atim = fs->mounted;
}

/* The attributes of an artifact entry, over stat_init's. */
static void artifact_stat(const struct artifact_view *view, const struct view_entry *entry,
			  struct stat *st, double *timeout)
{
	/* Artifacts are read-only whatever mode they were stored with; a
	 * symlink is 0777 as on any Linux file system (rsync compares it). */
	st->st_mode = S_ISLNK(entry->mode) ? S_IFLNK | 0777 : entry->mode & ~(mode_t)0222;
	st->st_size = (off_t)(S_ISLNK(entry->mode) && entry->target ?
			      strlen(entry->target) : entry->size);
	st->st_nlink = S_ISDIR(entry->mode) ? 2 + entry->subdirs : 1;
	st->st_blocks = (blkcnt_t)((entry->size + 511) / 512);
	if (view->final) {
		timespec_from_ns(&st->st_mtim, view->finished);
		st->st_ctim = st->st_atim = st->st_mtim;
		*timeout = FS_FOREVER;
	} else if (entry->mtime) {
		timespec_from_ns(&st->st_mtim, entry->mtime);
		st->st_ctim = st->st_atim = st->st_mtim;
	}
}

/* *timeout: how long the kernel may trust the answer. */
static int node_stat(struct fs *fs, struct store *store, const struct node *node,
		     struct stat *st, double *timeout)
{
	struct strbuf text = STRBUF_INIT;
	struct artifact_view *view = NULL;
	const struct view_entry *entry;
	struct store_run run;
	struct error err = { 0 };
	uint64_t bytes = 0;
	int ret = 0;

	stat_init(fs, node, st);
	*timeout = 0;
	switch (node->kind) {
	case NODE_ROOT:
	case NODE_WORKFLOWS:
	case NODE_RUNS:
	case NODE_JOBS:
	case NODE_WORKFLOW:
	case NODE_RUN:
	case NODE_JOB:
		/* Link count 1: "not counted", so find does not skip subfolders. */
		st->st_mode = S_IFDIR | 0555;
		*timeout = FS_FOLDER_TIMEOUT;
		break;
	case NODE_TAGS:
		/* Writable: ln -s adds a tag, rm deletes one. */
		st->st_mode = S_IFDIR | 0755;
		break;
	case NODE_CTL:
		st->st_mode = S_IFREG | 0644;
		break;
	case NODE_TAG:
		ret = link_target(fs, store, node, &text);
		st->st_mode = S_IFLNK | 0777;
		st->st_size = (off_t)text.len;
		break;
	case NODE_RUN_FILE:
		if (node->file == FILE_CTL) {
			st->st_mode = S_IFREG | 0644;
			break;
		}
		if (node->file == FILE_LATEST) {
			ret = link_target(fs, store, node, &text);
			st->st_mode = S_IFLNK | 0777;
			st->st_size = (off_t)text.len;
			break;
		}
		st->st_mode = S_IFREG | 0444;
		if (node->file == FILE_LOGS) {
			ret = store_run_find(store, node->name, &run, &err);
			if (ret == 0)
				ret = store_run_logs_size(store, run.id, node->job < 0 ? -2 : node->job,
							  &bytes, &err);
			st->st_size = (off_t)bytes;
			break;
		}
		ret = file_text(fs, store, node, &text);
		st->st_size = (off_t)text.len;
		break;
	case NODE_ARTIFACT:
		ret = view_get(fs, store, node->name, node->job, &view, &err);
		entry = ret == 0 ? view_find(view, node->path) : NULL;
		if (entry)
			artifact_stat(view, entry, st, timeout);
		else
			ret = -ENOENT;
		break;
	}
	view_put(fs, view);
	strbuf_release(&text);
	return ret < 0 ? (ret == -ENOENT ? ret : -EIO) : 0;
}

/* --- operations --- */

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	daemon_fs = userdata;
	/* ls -l and find get names and attributes in one round trip. */
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (conn->capable & FUSE_CAP_READDIRPLUS_AUTO)
		conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
}

static int entry_of(struct fs *fs, struct store *store, const struct node *parent,
		    const char *name, struct fuse_entry_param *entry)
{
	struct artifact_view *view = NULL;
	struct node proto;
	struct strbuf key = STRBUF_INIT;
	const struct node *node;
	double timeout;
	int ret = child_resolve(fs, store, parent, name, &proto, &view);

	view_put(fs, view);
	if (ret < 0) {
		if (proto.kind == NODE_ARTIFACT)
			free(proto.path);
		return ret;
	}
	strbuf_addf(&key, "%s/%s", parent->key, name);
	node = node_get(&fs->nodes, key.buf, &proto);
	if (proto.kind == NODE_ARTIFACT && parent->kind == NODE_ARTIFACT)
		free(proto.path);
	strbuf_release(&key);
	memset(entry, 0, sizeof(*entry));
	ret = node_stat(fs, store, node, &entry->attr, &timeout);
	entry->ino = node->ino;
	entry->attr_timeout = timeout;
	entry->entry_timeout = node->kind == NODE_RUN_FILE || node->kind == NODE_TAG ? 0 :
			       timeout ? timeout : FS_FOLDER_TIMEOUT;
	return ret;
}

/*
 * What most operations start with: the node of ino and this thread's
 * store handle.  false, with the request answered, when either is missing.
 */
static bool req_begin(fuse_req_t req, fuse_ino_t ino, struct fs **fs, const struct node **node,
		      struct store **store)
{
	struct error err = { 0 };

	*fs = req_fs(req);
	*node = node_by_ino(&(*fs)->nodes, ino);
	*store = *node ? fs_store(*fs, &err) : NULL;
	if (!*node || !*store)
		reply_error(req, *node ? -EIO : -ENOENT);
	return *node && *store;
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent_ino, const char *name)
{
	struct fs *fs;
	const struct node *parent;
	struct store *store;
	struct fuse_entry_param entry;
	int ret;

	if (!req_begin(req, parent_ino, &fs, &parent, &store))
		return;
	ret = entry_of(fs, store, parent, name, &entry);
	if (ret < 0)
		reply_error(req, ret);
	else
		fuse_reply_entry(req, &entry);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs;
	const struct node *node;
	struct store *store;
	struct stat st;
	double timeout;
	int ret;

	(void)fi;
	if (!req_begin(req, ino, &fs, &node, &store))
		return;
	ret = node_stat(fs, store, node, &st, &timeout);
	if (ret < 0)
		reply_error(req, ret);
	else
		fuse_reply_attr(req, &st, timeout);
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs;
	const struct node *node;
	struct store *store;
	struct strbuf text = STRBUF_INIT;
	struct artifact_view *view = NULL;
	const struct view_entry *entry;
	struct error err = { 0 };
	int ret = -EINVAL;

	if (!req_begin(req, ino, &fs, &node, &store))
		return;
	if (node->kind == NODE_TAG || (node->kind == NODE_RUN_FILE && node->file == FILE_LATEST)) {
		ret = link_target(fs, store, node, &text);
	} else if (node->kind == NODE_ARTIFACT &&
		   view_get(fs, store, node->name, node->job, &view, &err) == 0) {
		entry = view_find(view, node->path);
		if (entry && S_ISLNK(entry->mode) && entry->target) {
			strbuf_addstr(&text, entry->target);
			ret = 0;
		}
	}
	view_put(fs, view);
	if (ret < 0)
		reply_error(req, ret);
	else
		fuse_reply_readlink(req, text.buf ? text.buf : "");
	strbuf_release(&text);
}

struct list_runs {
	struct listing *list;
	const struct node *parent;
};

static int list_run(void *ctx, const struct store_run *run)
{
	struct list_runs *runs = ctx;
	struct node proto = { .kind = NODE_RUN, .name = (char *)run->name, .job = -1 };
	size_t i;

	/* A tagged run of another repository is listed once. */
	for (i = 0; i < runs->list->count; i++)
		if (!strcmp(runs->list->items[i].name, run->name))
			return 0;
	listing_add(runs->list, runs->parent, run->name, &proto);
	return 0;
}

static int list_tag(void *ctx, const struct store_run *run)
{
	struct list_runs *tags = ctx;
	struct node proto = { .kind = NODE_TAG, .name = (char *)run->tag, .job = -1 };

	listing_add(tags->list, tags->parent, run->tag, &proto);
	return 0;
}

static int listing_make(struct fs *fs, struct store *store, const struct node *node,
			struct listing *list)
{
	const struct child_fixed *fixed;
	struct list_runs runs = { .list = list, .parent = node };
	struct store_run run;
	struct error err = { 0 };
	size_t count = 0, i;
	int ret = 0;

	fixed = fixed_children(node->kind, &count);
	switch (node->kind) {
	case NODE_ROOT:
	case NODE_RUN:
	case NODE_JOB:
		break;
	case NODE_WORKFLOW: {
		struct node spec = { .kind = NODE_RUN_FILE, .file = FILE_SPEC, .name = node->name,
				     .job = -1 };
		struct node latest = spec;

		listing_add(list, node, "spec.yaml", &spec);
		latest.file = FILE_LATEST;
		if (workflow_latest(fs, store, node->name, &run) == 0)
			listing_add(list, node, "latest", &latest);
		return 0;
	}
	case NODE_WORKFLOWS: {
		struct workflow_find find = { .list = list, .parent = node };

		return workflow_lookup(fs, &find);
	}
	case NODE_RUNS:
		ret = store_run_list(store, fs->repo, list_run, &runs, &err);
		if (ret == 0)
			ret = store_tag_list(store, list_run, &runs, &err);
		return ret;
	case NODE_TAGS:
		return store_tag_list(store, list_tag, &runs, &err);
	case NODE_JOBS: {
		struct job_find find = { .job = -1, .list = list, .parent = node };

		ret = store_run_find(store, node->name, &run, &err);
		return ret < 0 ? ret : store_run_jobs(store, run.id, job_visit, &find, &err);
	}
	case NODE_ARTIFACT: {
		const struct view_entry *dir;

		ret = view_get(fs, store, node->name, node->job, &list->view, &err);
		dir = ret == 0 ? view_find(list->view, node->path) : NULL;
		if (!dir)
			return ret < 0 ? ret : -ENOENT;
		if (!S_ISDIR(dir->mode))
			return -ENOTDIR;
		return 0;
	}
	default:
		return -ENOTDIR;
	}
	for (i = 0; i < count; i++) {
		struct node proto = { .kind = fixed[i].kind, .file = fixed[i].file,
				      .name = node->name,
				      .job = node->kind == NODE_JOB ? node->job : -1,
				      .path = fixed[i].kind == NODE_ARTIFACT ? "" : NULL };

		listing_add(list, node, fixed[i].name, &proto);
	}
	return 0;
}

static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	const struct node *node = node_by_ino(&fs->nodes, ino);
	struct listing *list = xcalloc(1, sizeof(*list));
	struct error err = { 0 };
	struct store *store = fs_store(fs, &err);
	int ret = !node ? -ENOENT : !store ? -EIO : listing_make(fs, store, node, list);

	if (ret < 0) {
		listing_free(fs, &list->handle);
		reply_error(req, ret == -ENOENT || ret == -ENOTDIR ? ret : -EIO);
		return;
	}
	handle_track(fs, &list->handle, listing_free);
	fi->fh = (uint64_t)(uintptr_t)list;
	/* Artifact folders never change: the kernel may keep their listing. */
	fi->cache_readdir = list->view && list->view->final;
	fi->keep_cache = fi->cache_readdir;
	fuse_reply_open(req, fi);
}

static void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct listing *list = (struct listing *)(uintptr_t)fi->fh;

	(void)ino;
	handle_release(req_fs(req), &list->handle);
	fuse_reply_err(req, 0);
}

/*
 * The name and node of entry i of a listing (after "." and ".."), and in
 * an artifact folder its entry of the view listed.
 */
static const struct node *listing_node(struct fs *fs, const struct node *dir,
				       struct listing *list, size_t i, const char **name,
				       const struct view_entry **artifact)
{
	if (list->view) {
		const struct view_entry *parent = view_find(list->view, dir->path);
		const struct view_entry *entry =
			&list->view->entries[list->view->children[parent->first_child + i]];
		struct strbuf key = STRBUF_INIT;
		struct node proto = { .kind = NODE_ARTIFACT, .name = dir->name, .job = dir->job,
				      .path = entry->path };
		const struct node *node;

		*name = strrchr(entry->path, '/') ? strrchr(entry->path, '/') + 1 : entry->path;
		strbuf_addf(&key, "%s/%s", dir->key, *name);
		node = node_get(&fs->nodes, key.buf, &proto);
		strbuf_release(&key);
		*artifact = entry;
		return node;
	}
	*artifact = NULL;
	*name = list->items[i].name;
	return node_get(&fs->nodes, list->items[i].key, &list->items[i].proto);
}

static size_t listing_count(const struct node *dir, const struct listing *list)
{
	if (list->view)
		return view_find(list->view, dir->path)->child_count;
	return list->count;
}

static void fs_readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
			      struct fuse_file_info *fi, bool plus)
{
	struct fs *fs = req_fs(req);
	const struct node *dir = node_by_ino(&fs->nodes, ino);
	struct listing *list = (struct listing *)(uintptr_t)fi->fh;
	struct error err = { 0 };
	struct store *store = fs_store(fs, &err);
	char *buf = xmalloc(size);
	size_t used = 0, count = listing_count(dir, list), i;

	/* Offsets: 1 and 2 are "." and "..", then the entries. */
	for (i = (size_t)offset; i < count + 2; i++) {
		struct fuse_entry_param entry = { 0 };
		const struct node *node;
		const char *name;
		double timeout = 0;
		size_t len;

		if (i < 2) {
			name = i ? ".." : ".";
			node = dir;
			entry.attr.st_mode = S_IFDIR;
			entry.attr.st_ino = dir->ino;
		} else {
			const struct view_entry *artifact;

			node = listing_node(fs, dir, list, i - 2, &name, &artifact);
			/* An artifact as the view listed; any other name gone since
			 * opendir is left out. */
			if (artifact) {
				stat_init(fs, node, &entry.attr);
				artifact_stat(list->view, artifact, &entry.attr, &timeout);
			} else if (node_stat(fs, store, node, &entry.attr, &timeout) < 0) {
				continue;
			}
		}
		entry.ino = node->ino;
		entry.attr_timeout = timeout;
		entry.entry_timeout = timeout ? timeout : FS_FOLDER_TIMEOUT;
		/* readdirplus counts lookups; nodes here live until unmount anyway. */
		if (plus)
			len = fuse_add_direntry_plus(req, buf + used, size - used, name, &entry,
						     (off_t)i + 1);
		else
			len = fuse_add_direntry(req, buf + used, size - used, name, &entry.attr,
						(off_t)i + 1);
		if (len > size - used)
			break;
		used += len;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
		       struct fuse_file_info *fi)
{
	fs_readdir_common(req, ino, size, offset, fi, false);
}

static void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
			   struct fuse_file_info *fi)
{
	fs_readdir_common(req, ino, size, offset, fi, true);
}

/* What an open file reads from. */
struct open_file {
	struct fs_handle handle;	/* first: fi->fh points at both */
	const struct node *node;
	struct strbuf text;		/* status, info, spec: as at open */
	struct artifact_view *view;	/* artifacts */
	const struct view_entry *entry;
	struct ctl_answer answer;	/* ctl files */
	pthread_mutex_t answer_lock;	/* the kernel may read and write at once */
	int64_t run;			/* logs */
	int live_fd;			/* a file of a live job's folder, or -1 */
};

static void open_file_free(struct fs *fs, struct fs_handle *handle)
{
	struct open_file *file = (struct open_file *)handle;

	if (file->live_fd >= 0)
		close(file->live_fd);
	view_put(fs, file->view);
	strbuf_release(&file->text);
	strbuf_release(&file->answer.text);
	pthread_mutex_destroy(&file->answer_lock);
	free(file);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs;
	const struct node *node;
	struct store *store;
	struct open_file *file;
	struct store_run run;
	struct error err = { 0 };
	bool writing = (fi->flags & O_ACCMODE) != O_RDONLY;
	int ret = 0;

	if (!req_begin(req, ino, &fs, &node, &store))
		return;
	file = xcalloc(1, sizeof(*file));
	file->node = node;
	file->live_fd = -1;
	pthread_mutex_init(&file->answer_lock, NULL);
	if (node->kind == NODE_CTL || (node->kind == NODE_RUN_FILE && node->file == FILE_CTL)) {
		/* The answer is for this descriptor alone: reads come to us. */
		fi->direct_io = 1;
		fi->nonseekable = 1;
	} else if (writing) {
		ret = node->kind == NODE_ARTIFACT ? -EROFS : -EACCES;
	} else if (node->kind == NODE_ARTIFACT) {
		ret = view_get(fs, store, node->name, node->job, &file->view, &err);
		file->entry = ret == 0 ? view_find(file->view, node->path) : NULL;
		/* Gone from a fresh view: the run was removed since lookup. */
		if (ret == 0 && !file->entry)
			ret = -ENOENT;
		else if (ret == 0 && !S_ISREG(file->entry->mode))
			ret = -EISDIR;
		if (ret == 0 && file->entry->live) {
			/* Still being written by its job: every read comes to us. */
			file->live_fd = view_open_live(store_home(store), file->entry->live);
			ret = file->live_fd == -ENOENT ? -ENOENT : file->live_fd < 0 ? -EIO : 0;
			fi->direct_io = 1;
		} else {
			/* Stored bytes never change: the page cache may keep them. */
			fi->keep_cache = 1;
		}
	} else if (node->kind == NODE_RUN_FILE && node->file == FILE_LOGS) {
		ret = store_run_find(store, node->name, &run, &err);
		file->run = run.id;
		fi->direct_io = 1;
	} else if (node->kind == NODE_RUN_FILE) {
		ret = file_text(fs, store, node, &file->text);
		fi->direct_io = 1;
	} else {
		ret = -EISDIR;
	}
	if (ret < 0) {
		open_file_free(fs, &file->handle);
		reply_error(req, ret == -ENOENT || ret == -EROFS || ret == -EACCES ||
				 ret == -EISDIR ? ret : -EIO);
		return;
	}
	handle_track(fs, &file->handle, open_file_free);
	fi->fh = (uint64_t)(uintptr_t)file;
	fuse_reply_open(req, fi);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct open_file *file = (struct open_file *)(uintptr_t)fi->fh;

	(void)ino;
	handle_release(req_fs(req), &file->handle);
	fuse_reply_err(req, 0);
}

/* Replies from a copy: file may be released as soon as the reply is out. */
static void reply_range(fuse_req_t req, const char *data, size_t len, size_t size, off_t offset)
{
	struct strbuf part = STRBUF_INIT;

	if ((size_t)offset < len)
		strbuf_add(&part, data + offset, len - (size_t)offset < size ?
						  len - (size_t)offset : size);
	fuse_reply_buf(req, part.buf, part.len);
	strbuf_release(&part);
}

struct log_range {
	int job;		/* -2: every job's */
	uint64_t at, from, until;
	struct strbuf out;
};

static int log_collect(void *ctx, int job, int fd, const void *data, size_t len)
{
	struct log_range *range = ctx;
	uint64_t start = range->at, end = range->at + len;

	/* The tree's logs hold both streams, as a terminal shows them. */
	(void)fd;
	if (range->job != -2 && job != range->job)
		return 0;
	range->at = end;
	if (end <= range->from)
		return 0;
	if (start >= range->until)
		return 1;
	start = start > range->from ? start : range->from;
	end = end < range->until ? end : range->until;
	strbuf_add(&range->out, (const char *)data + (start - (range->at - len)), end - start);
	return 0;
}

/* 0 while the run whose logs file reads is still there, else -ENOENT. */
static int log_run_check(struct store *store, const struct open_file *file)
{
	struct store_run run;
	struct error err = { 0 };
	int ret = store_run_find(store, file->node->name, &run, &err);

	return ret == 0 && run.id != file->run ? -ENOENT : ret;
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
		    struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct open_file *file = (struct open_file *)(uintptr_t)fi->fh;
	struct error err = { 0 };
	struct store *store = fs_store(fs, &err);
	int ret;

	(void)ino;
	if (!store) {
		reply_error(req, -EIO);
		return;
	}
	if (file->node->kind == NODE_CTL || file->node->file == FILE_CTL) {
		/* The answer from its start, whatever the offset; then end of file. */
		struct ctl_answer *answer = &file->answer;
		struct strbuf part = STRBUF_INIT;
		size_t left;

		/*
		 * Once the reply is sent the reader may close, and file be
		 * released on another thread: reply from a copy, after.
		 */
		pthread_mutex_lock(&file->answer_lock);
		left = answer->text.len - answer->read;
		left = left < size ? left : size;
		strbuf_add(&part, answer->text.buf ? answer->text.buf + answer->read : "", left);
		answer->read += left;
		pthread_mutex_unlock(&file->answer_lock);
		fuse_reply_buf(req, part.buf, part.len);
		strbuf_release(&part);
		return;
	}
	if (file->live_fd >= 0) {
		char *buf = xmalloc(size ? size : 1);
		ssize_t got = pread(file->live_fd, buf, size, offset);

		if (got < 0)
			reply_error(req, -EIO);
		else
			fuse_reply_buf(req, buf, (size_t)got);
		free(buf);
		return;
	}
	if (file->entry) {
		struct store_entry entry = {
			.job = file->entry->job, .path = file->entry->path,
			.mode = file->entry->mode, .size = file->entry->size,
			.chunks = file->entry->chunks, .chunk_count = file->entry->chunk_count,
		};
		char *buf = xmalloc(size ? size : 1);
		size_t done = 0;

		ret = store_entry_pread(store, &entry, buf, size, (uint64_t)offset, &done, &err);
		if (ret < 0)
			reply_error(req, -EIO);
		else
			fuse_reply_buf(req, buf, done);
		free(buf);
		return;
	}
	if (file->node->file == FILE_LOGS) {
		struct log_range range = { .job = file->node->job < 0 ? -2 : file->node->job,
					   .from = (uint64_t)offset,
					   .until = (uint64_t)offset + size };
		int64_t after = 0;

		ret = store_run_logs(store, file->run, &after, log_collect, &range, &err);
		/*
		 * A run removed since open takes its logs with it: nothing read
		 * may mean that, and the reader hears the run is gone rather
		 * than an early end of the file.
		 */
		if (ret == 0 && !range.out.len)
			ret = log_run_check(store, file);
		if (ret == -ENOENT)
			reply_error(req, ret);
		else if (ret < 0)
			reply_error(req, -EIO);
		else
			fuse_reply_buf(req, range.out.buf, range.out.len);
		strbuf_release(&range.out);
		return;
	}
	reply_range(req, file->text.buf, file->text.len, size, offset);
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size,
		     off_t offset, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct open_file *file = (struct open_file *)(uintptr_t)fi->fh;
	int ret;

	(void)ino;
	(void)offset;
	if (file->node->kind != NODE_CTL && file->node->file != FILE_CTL) {
		reply_error(req, -EACCES);
		return;
	}
	/* A new write replaces the answer of the one before. */
	pthread_mutex_lock(&file->answer_lock);
	strbuf_reset(&file->answer.text);
	file->answer.read = 0;
	ret = ctl_write(fs, file->node->kind == NODE_CTL ? NULL : file->node, data, size,
			&file->answer);
	pthread_mutex_unlock(&file->answer_lock);
	if (ret < 0)
		reply_error(req, ret);
	else
		fuse_reply_write(req, size);
}

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs *fs;
	const struct node *node;
	struct store *store;
	struct stat st;
	double timeout;
	bool ctl;

	(void)fi;
	if (!req_begin(req, ino, &fs, &node, &store))
		return;
	ctl = node->kind == NODE_CTL || (node->kind == NODE_RUN_FILE && node->file == FILE_CTL);
	/* `echo x > ctl` truncates first: a ctl file is always empty. */
	if (!ctl || (to_set & ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME |
				FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_ATIME_NOW |
				FUSE_SET_ATTR_CTIME)) ||
	    ((to_set & FUSE_SET_ATTR_SIZE) && attr->st_size)) {
		reply_error(req, node->kind == NODE_ARTIFACT ? -EROFS : -EACCES);
		return;
	}
	if (node_stat(fs, store, node, &st, &timeout) < 0)
		reply_error(req, -EIO);
	else
		fuse_reply_attr(req, &st, timeout);
}

/* `ln -s ../runs/RUN tags/T` tags RUN. */
static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent_ino,
		       const char *name)
{
	struct fs *fs = req_fs(req);
	const struct node *parent = node_by_ino(&fs->nodes, parent_ino);
	struct fuse_entry_param entry;
	struct error err = { 0 };
	struct store *store = fs_store(fs, &err);
	const char *run = link;
	int ret;

	if (!parent || !store || parent->kind != NODE_TAGS) {
		reply_error(req, !parent ? -ENOENT : !store ? -EIO :
				 parent->kind == NODE_ARTIFACT ? -EROFS : -EACCES);
		return;
	}
	if (!strncmp(run, "../runs/", 8))
		run += 8;
	if (!*run || strchr(run, '/') || run[0] == ':') {
		reply_error(req, -EINVAL);
		return;
	}
	ret = store_tag_add(store, name, run, &err);
	if (ret == 0)
		ret = entry_of(fs, store, parent, name, &entry);
	if (ret < 0)
		reply_error(req, ret == -EEXIST || ret == -ENOENT || ret == -EINVAL ? ret : -EIO);
	else
		fuse_reply_entry(req, &entry);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent_ino, const char *name)
{
	struct fs *fs = req_fs(req);
	const struct node *parent = node_by_ino(&fs->nodes, parent_ino);
	struct error err = { 0 };
	struct store *store = fs_store(fs, &err);
	int ret;

	if (!parent || !store || parent->kind != NODE_TAGS) {
		reply_error(req, !parent ? -ENOENT : !store ? -EIO :
				 parent->kind == NODE_ARTIFACT ? -EROFS : -EACCES);
		return;
	}
	ret = store_tag_delete(store, name, &err);
	fuse_reply_err(req, ret == 0 ? 0 : ret == -ENOENT ? ENOENT : EIO);
}

/* Nothing else is made or changed in the tree. */
static int refusal(struct fs *fs, fuse_ino_t ino)
{
	const struct node *node = node_by_ino(&fs->nodes, ino);

	return node && node->kind == NODE_ARTIFACT ? EROFS : EACCES;
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)name;
	(void)mode;
	fuse_reply_err(req, refusal(req_fs(req), parent));
}

static void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)name;
	fuse_reply_err(req, refusal(req_fs(req), parent));
}

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	(void)name;
	(void)mode;
	(void)fi;
	fuse_reply_err(req, refusal(req_fs(req), parent));
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	(void)name;
	(void)newparent;
	(void)newname;
	(void)flags;
	fuse_reply_err(req, refusal(req_fs(req), parent));
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = req_fs(req);
	struct statvfs vfs;

	(void)ino;
	/* The store's file system: what df and du -s see is its room. */
	if (statvfs(fs->options.home, &vfs) < 0)
		memset(&vfs, 0, sizeof(vfs));
	vfs.f_namemax = 255;
	fuse_reply_statfs(req, &vfs);
}

const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_init,
	.lookup = fs_lookup,
	.getattr = fs_getattr,
	.setattr = fs_setattr,
	.readlink = fs_readlink,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.readdirplus = fs_readdirplus,
	.releasedir = fs_releasedir,
	.open = fs_open,
	.read = fs_read,
	.write = fs_write,
	.release = fs_release,
	.symlink = fs_symlink,
	.unlink = fs_unlink,
	.mkdir = fs_mkdir,
	.rmdir = fs_rmdir,
	.create = fs_create,
	.rename = fs_rename,
	.statfs = fs_statfs,
};
