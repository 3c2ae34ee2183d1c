/*
 * internal.h - what the files of fs/ share: the daemon's state, the
 * nodes of the tree, artifact views and control files.
 */
#ifndef DSTACK_FS_INTERNAL_H
#define DSTACK_FS_INTERNAL_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdint.h>

#include "fs/fs.h"
#include "store/store.h"

struct fs;

/* What a node of the tree is; its fields below say which one. */
enum node_kind {
	NODE_ROOT = 1,
	NODE_CTL,		/* /ctl */
	NODE_WORKFLOWS,
	NODE_WORKFLOW,		/* name */
	NODE_RUNS,
	NODE_RUN,		/* name */
	NODE_JOBS,		/* name */
	NODE_JOB,		/* name, job */
	NODE_RUN_FILE,		/* name, job (-1: the run's), file */
	NODE_ARTIFACT,		/* name, job (-1: the union), path ("" the folder) */
	NODE_TAGS,
	NODE_TAG,		/* name: the tag */
};

enum run_file {
	FILE_STATUS,
	FILE_INFO,
	FILE_LOGS,
	FILE_CTL,		/* a run's ctl */
	FILE_SPEC,		/* a workflow's spec.yaml */
	FILE_LATEST,		/* a workflow's latest (a symlink) */
};

struct node {
	fuse_ino_t ino;
	enum node_kind kind;
	enum run_file file;
	char *name;
	int job;
	char *path;
	char *key;		/* its path from the root: its identity */
};

/* The nodes met so far, by key and by inode number; they live until unmount. */
struct node_table {
	pthread_mutex_t lock;
	struct node **by_ino;	/* index ino - 1 */
	size_t count, alloc;
	struct node **slots;	/* open addressing on key */
	size_t slot_count;
};

void node_table_init(struct node_table *table);
void node_table_release(struct node_table *table);
/* The node of key, made from proto the first time it is met. */
const struct node *node_get(struct node_table *table, const char *key,
			    const struct node *proto);
const struct node *node_by_ino(struct node_table *table, fuse_ino_t ino);

/* One file, folder or symlink of an artifact view. */
struct view_entry {
	char *path;		/* "" for the view's root, else "ARTIFACT/PATH" */
	mode_t mode;
	uint64_t size;
	char *target;
	uint8_t *chunks;
	size_t chunk_count;
	int job;
	/* A live job's folder (mount: true): where the entry is on the host,
	 * and its modification time; NULL and 0 for stored ones. */
	char *live;
	int64_t mtime;
	size_t parent;		/* index of its folder */
	size_t first_child, child_count;	/* in view.children */
	size_t subdirs;		/* for its link count: find trusts it */
};

/*
 * The artifacts of a run as one tree: the union of its jobs' (the higher
 * job wins a path), or one job's.  Folders that only hold artifact paths
 * (out/ of out/models) are made up.  Views of ended runs never change and
 * are kept; those of live runs for a moment.  A view is reference-counted
 * so a reader keeps it while another replaces it.  A live run's view also
 * shows the folders its jobs mount (artifacts with mount: true) as they
 * are on the host, until the job stores them.
 */
struct artifact_view {
	int64_t run;
	char name[64];		/* the run's */
	int job;
	bool final;
	int64_t finished;	/* the run's end, the files' times */
	int64_t made;		/* CLOCK_MONOTONIC ns, for live runs' views */
	struct view_entry *entries;	/* sorted by path; [0] is the root */
	size_t count;
	size_t *children;
	int refs;
};

/* Gets the view (made or reused), or -ENOENT for a run that is gone. */
int view_get(struct fs *fs, struct store *store, const char *run_name, int job,
	     struct artifact_view **view, struct error *err);
void view_put(struct fs *fs, struct artifact_view *view);
/* The entry of path in view, or NULL. */
const struct view_entry *view_find(const struct artifact_view *view, const char *path);
/*
 * Opens a live entry's file (live, under home's work/JOBFOLDER/) for
 * reading, resolved beneath its job's folder: a fd, or -errno (-EXDEV
 * when the path leads out of it).
 */
int view_open_live(const char *home, const char *live);
void view_cache_release(struct fs *fs);

/* A run a ctl write started, run by a thread of the daemon. */
struct fs_run;

/*
 * What an open or opendir hands the kernel (fi->fh).  The kernel sends no
 * release for what is still open when the tree goes (SIGTERM, umount -l),
 * so the daemon keeps a list and frees what is left at teardown.
 */
struct fs_handle {
	struct fs_handle *prev, *next;
	void (*free)(struct fs *fs, struct fs_handle *handle);
};
/* Frees every handle the kernel did not release (at teardown). */
void fs_handles_release(struct fs *fs);

struct fs {
	struct fs_options options;
	char *repo;		/* the identity of the mounted repository's runs */
	char *root;		/* its working tree */
	uid_t uid;
	gid_t gid;
	struct timespec mounted;
	struct fuse_session *session;
	struct node_table nodes;
	pthread_mutex_t views_lock;
	struct artifact_view **views;
	size_t view_count;
	pthread_mutex_t runs_lock;
	pthread_cond_t runs_changed;
	struct fs_run *runs;	/* a list */
	pthread_mutex_t handles_lock;
	struct fs_handle *handles;	/* a list */
	bool stopping;
	pthread_once_t read_ahead_once;
};

/* Raises the tree's read-ahead where allowed; call after INIT (mount.c). */
void fs_read_ahead(const char *mountpoint);

/* The store handle of the calling thread (a handle is not thread-safe). */
struct store *fs_store(struct fs *fs, struct error *err);

/* The FUSE operations (ops.c). */
extern const struct fuse_lowlevel_ops fs_ops;

/* What a write to a ctl file did, for reads on the same descriptor (ctl.c). */
struct ctl_answer {
	struct strbuf text;
	size_t read;		/* how much of text was read back */
};
/*
 * Carries out the lines of one write to the root ctl (node name NULL) or a
 * run's ctl: 0 when all went well, else the errno of the first bad line
 * (ENOENT, EINVAL, ...).  answer gets a line for each line carried out.
 */
int ctl_write(struct fs *fs, const struct node *node, const char *data, size_t len,
	      struct ctl_answer *answer);
/* Takes no new runs and waits for those ctl writes started (at unmount). */
void ctl_runs_finish(struct fs *fs);

#endif
