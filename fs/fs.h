/*
 * fs.h - the /dstack tree: runs, logs, artifacts and control files as a
 * FUSE file system (libfuse3 low-level API), served by a daemon that
 * also runs the runs its `ctl` files start.
 */
#ifndef DSTACK_FS_H
#define DSTACK_FS_H

#include <stdbool.h>

#include "lib/lib.h"

struct fs_options {
	const char *mountpoint;
	const char *home;	/* $DSTACK_HOME */
	const char *cwd;	/* inside the repository the tree shows */
	bool foreground;	/* else return once mounted, serving in the background */
	bool allow_other;	/* else only the mounting user may use the tree */
};

/*
 * Mounts the tree and serves it until it is unmounted (umount, SIGTERM,
 * SIGINT); runs it started and still going are finished, never killed,
 * before it returns.  Without foreground, the calling process exits 0
 * once the tree is mounted, and a child serves it.
 */
int fs_mount(const struct fs_options *options, struct error *err);

/* Unmounts the tree at mountpoint; its daemon then ends. */
int fs_unmount(const char *mountpoint, struct error *err);

#endif
