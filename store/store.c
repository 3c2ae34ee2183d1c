/*
 * store.c - opening and closing a store: the $DSTACK_HOME layout, the gc
 * lock that keeps collection and ingestion apart, and the removal of temp
 * files left by writers that died.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/internal.h"

/*
 * A temp file is an orphan when nobody holds its lock: writers keep an
 * exclusive flock on their temp packs until they rename or remove them.
 */
static void store_remove_orphan_temps(struct store *store)
{
	struct strbuf path = STRBUF_INIT;
	struct dirent *de;
	DIR *dir = opendir(store->tmp_dir);

	if (!dir)
		return;
	/*
	 * Writers hold tmp/ shared from creating a temp file until they
	 * lock it: one being born is not mistaken for an orphan.  If a
	 * writer is at it now, the next command will clean up instead.
	 */
	if (flock(dirfd(dir), LOCK_EX | LOCK_NB) < 0) {
		closedir(dir);
		return;
	}
	while ((de = readdir(dir))) {
		int fd;

		if (de->d_name[0] == '.')
			continue;
		strbuf_reset(&path);
		strbuf_addf(&path, "%s/%s", store->tmp_dir, de->d_name);
		fd = open(path.buf, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			unlink(path.buf);
		close(fd);
	}
	closedir(dir);
	strbuf_release(&path);
}

static int store_make_dirs(struct store *store, struct error *err)
{
	if (mkdir(store->home, 0700) < 0 && errno != EEXIST)
		return error_errno(err, -errno, "%s: cannot create DSTACK_HOME",
				   store->home);
	if (mkdir(store->packs_dir, 0700) < 0 && errno != EEXIST)
		return error_errno(err, -errno, "%s", store->packs_dir);
	if (mkdir(store->tmp_dir, 0700) < 0 && errno != EEXIST)
		return error_errno(err, -errno, "%s", store->tmp_dir);
	return 0;
}

/*
 * A handle on the store at home without its catalog: its folders named,
 * made when writable, and gc.lock open (a reader may see a read-only
 * store, where the lock helps nobody: it goes without).
 */
static int store_new(struct store **out, const char *home, bool writable, struct error *err)
{
	struct store *store = xcalloc(1, sizeof(*store));
	struct strbuf sb = STRBUF_INIT;
	int ret = 0;

	store->gc_lock_fd = -1;
	store->writable = writable;
	store->home = xstrdup(home);
	strbuf_addf(&sb, "%s/packs", home);
	store->packs_dir = xstrdup(sb.buf);
	strbuf_reset(&sb);
	strbuf_addf(&sb, "%s/tmp", home);
	store->tmp_dir = xstrdup(sb.buf);
	strbuf_reset(&sb);
	strbuf_addf(&sb, "%s/gc.lock", home);
	if (writable) {
		ret = store_make_dirs(store, err);
		if (ret == 0) {
			store->gc_lock_fd = open(sb.buf, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
			if (store->gc_lock_fd < 0)
				ret = error_errno(err, -errno, "%s", sb.buf);
		}
	}
	strbuf_release(&sb);
	if (ret < 0) {
		store_close(store);
		return ret;
	}
	*out = store;
	return 0;
}

int store_open(struct store **out, const char *home, enum store_open_mode mode,
	       struct error *err)
{
	struct store *store;
	char *canonical;
	struct stat st;
	int ret;

	if (mode != STORE_READ_WRITE && stat(home, &st) < 0)
		return error_errno(err, -errno, "%s: no dstack store", home);
	ret = store_new(&store, home, mode == STORE_READ_WRITE, err);
	if (ret < 0)
		return ret;
	/*
	 * One spelling of home for every process (the daemon finds a live
	 * job's folder by the path its runner recorded), and one that stays
	 * true after a chdir.
	 */
	canonical = realpath(home, NULL);
	if (canonical) {
		free(store->home);
		store->home = canonical;
	}
	ret = catalog_open(store, err);
	if (ret < 0) {
		store_close(store);
		return ret;
	}
	if (store->writable)
		store_remove_orphan_temps(store);
	*out = store;
	return 0;
}

int store_open_packs(struct store **out, const char *home, bool writable,
		     struct error *err)
{
	struct strbuf lock = STRBUF_INIT;
	int ret = store_new(out, home, writable, err);

	if (ret == 0 && !writable) {
		strbuf_addf(&lock, "%s/gc.lock", home);
		(*out)->gc_lock_fd = open(lock.buf, O_RDONLY | O_CLOEXEC);
		strbuf_release(&lock);
	}
	return ret;
}

void store_close(struct store *store)
{
	if (!store)
		return;
	catalog_finalize_all(store);
	block_cache_free(store->blocks);
	if (store->db)
		sqlite3_close(store->db);
	if (store->gc_lock_fd >= 0)
		close(store->gc_lock_fd);
	free(store->home);
	free(store->packs_dir);
	free(store->tmp_dir);
	free(store);
}

const char *store_home(const struct store *store)
{
	return store->home;
}

static int store_lock(struct store *store, int operation, struct error *err)
{
	if (store->gc_lock_fd < 0)
		return error_set(err, -EROFS, "%s: store is read-only", store->home);
	while (flock(store->gc_lock_fd, operation) < 0) {
		if (errno != EINTR)
			return error_errno(err, -errno, "%s/gc.lock", store->home);
	}
	return 0;
}

int store_lock_shared(struct store *store, struct error *err)
{
	return store_lock(store, LOCK_SH, err);
}

int store_lock_exclusive(struct store *store, struct error *err)
{
	return store_lock(store, LOCK_EX, err);
}

void store_unlock(struct store *store)
{
	if (store->gc_lock_fd >= 0)
		flock(store->gc_lock_fd, LOCK_UN);
}

static const char *const run_adjectives[] = {
	"able", "bold", "brave", "bright", "calm", "clever", "cool", "eager",
	"fair", "fast", "fine", "gentle", "glad", "grand", "happy", "keen",
	"kind", "lucky", "mighty", "neat", "nice", "proud", "quick", "quiet",
	"rapid", "sharp", "shy", "smart", "swift", "tidy", "warm", "wise",
};

static const char *const run_animals[] = {
	"ant", "badger", "bat", "bear", "bee", "cat", "crab", "crow", "deer",
	"dog", "eagle", "eel", "falcon", "fox", "frog", "goat", "hare", "hawk",
	"horse", "lion", "lizard", "lynx", "mole", "moose", "mouse", "otter",
	"owl", "panda", "seal", "shark", "tiger", "wolf",
};

void run_name_make(int64_t number, char out[64])
{
	static unsigned seed;
	unsigned r;

	if (!seed)
		seed = (unsigned)time_now_ns() ^ (unsigned)getpid();
	r = (unsigned)rand_r(&seed);
	snprintf(out, 64, "%s-%s-%lld",
		 run_adjectives[r % (sizeof(run_adjectives) / sizeof(run_adjectives[0]))],
		 run_animals[(r / 32) % (sizeof(run_animals) / sizeof(run_animals[0]))],
		 (long long)number);
}
