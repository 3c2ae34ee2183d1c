/*
 * test_store.c - the store through its API: round trips, dedup, the stat
 * cache, corruption detection, gc, a damaged catalog, and crashes at
 * arbitrary points of an ingest (a child killed with SIGKILL).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/internal.h"
#include "tests/unit/check.h"
#include "tests/unit/store_check.h"

static char scratch[] = "/tmp/dstack-test-store-XXXXXX";

static void write_file(const char *dir, const char *name, size_t size,
		       uint64_t seed)
{
	struct strbuf path = STRBUF_INIT;
	uint8_t *data = xmalloc(size ? size : 1);
	int fd;

	test_fill_random(data, size, seed);
	strbuf_addf(&path, "%s/%s", dir, name);
	fd = open(path.buf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(fs_write_all(fd, data, size) == 0);
	close(fd);
	free(data);
	strbuf_release(&path);
}

/* Sets a file's times an hour back, so the stat cache may trust it. */
static void age_file(const char *dir, const char *name, int seconds_back)
{
	struct strbuf path = STRBUF_INIT;
	struct timeval times[2];

	gettimeofday(&times[0], NULL);
	times[0].tv_sec -= seconds_back;
	times[1] = times[0];
	strbuf_addf(&path, "%s/%s", dir, name);
	CHECK(utimes(path.buf, times) == 0);
	strbuf_release(&path);
}

static char *make_dir(const char *name)
{
	struct strbuf path = STRBUF_INIT;

	strbuf_addf(&path, "%s/%s", scratch, name);
	CHECK(fs_mkdir_p(path.buf, 0755) == 0);
	return path.buf;
}

static struct store *open_store(const char *name)
{
	struct store *store = NULL;
	struct error err = { 0 };
	struct strbuf home = STRBUF_INIT;

	strbuf_addf(&home, "%s/%s", scratch, name);
	if (store_open(&store, home.buf, STORE_READ_WRITE, &err) < 0)
		fprintf(stderr, "store_open: %s\n", err.message);
	strbuf_release(&home);
	return store;
}

static int ingest_as(struct store *store, const char *tag, const char *dir,
		     int64_t *tree_out)
{
	struct store_artifact_ref ref = { .path = "data" };
	struct store_ingest *ingest;
	struct store_run run;
	struct error err = { 0 };
	int ret;

	ret = store_ingest_begin(store, &ingest, NULL, NULL, &err);
	if (ret == 0)
		ret = store_ingest_folder(ingest, dir, &ref.tree, NULL, NULL, &err);
	if (ret == 0 && tag)
		ret = store_run_add_data(store, tag, &ref, 1, &run, &err);
	if (ret < 0)
		fprintf(stderr, "ingest %s: %s\n", dir, err.message);
	store_ingest_end(ingest);
	if (tree_out)
		*tree_out = ref.tree;
	return ret;
}

struct compare_ctx {
	struct store *store;
	const char *dir;
	int files;
	int mismatches;
};

/* Extracts each regular file and compares it with the original. */
static int compare_entry(void *arg, const struct store_entry *entry)
{
	struct compare_ctx *ctx = arg;
	struct strbuf path = STRBUF_INIT;
	struct error err = { 0 };
	char tmpl[] = "/tmp/dstack-test-extract-XXXXXX";
	struct stat st;
	uint8_t *a, *b;
	int fd, orig;

	if (!S_ISREG(entry->mode))
		return 0;
	ctx->files++;
	strbuf_addf(&path, "%s/%s", ctx->dir, entry->path);
	fd = mkstemp(tmpl);
	unlink(tmpl);
	if (store_entry_extract(ctx->store, entry, fd, NULL, NULL, &err) < 0) {
		fprintf(stderr, "extract %s: %s\n", entry->path, err.message);
		ctx->mismatches++;
		goto out;
	}
	orig = open(path.buf, O_RDONLY);
	if (orig < 0 || fstat(orig, &st) < 0 || (uint64_t)st.st_size != entry->size) {
		ctx->mismatches++;
		if (orig >= 0)
			close(orig);
		goto out;
	}
	a = xmalloc(entry->size + 1);
	b = xmalloc(entry->size + 1);
	if (fs_pread_all(orig, a, entry->size, 0) || fs_pread_all(fd, b, entry->size, 0) ||
	    memcmp(a, b, entry->size))
		ctx->mismatches++;
	free(a);
	free(b);
	close(orig);
out:
	close(fd);
	strbuf_release(&path);
	return 0;
}

static int compare_run(struct store *store, const char *tag, const char *dir,
		       int *files)
{
	struct compare_ctx ctx = { .store = store, .dir = dir };
	struct store_run run;
	struct error err = { 0 };
	struct strbuf spec = STRBUF_INIT;

	strbuf_addf(&spec, ":%s", tag);
	if (store_run_find(store, spec.buf, &run, &err) < 0 ||
	    store_run_entries(store, run.id, compare_entry, &ctx, &err) < 0) {
		fprintf(stderr, "compare %s: %s\n", tag, err.message);
		ctx.mismatches++;
	}
	strbuf_release(&spec);
	if (files)
		*files = ctx.files;
	return ctx.mismatches;
}

/* Files in a folder, "." and ".." aside. */
static int count_files(const char *path)
{
	struct strbuf cmd = STRBUF_INIT;
	FILE *p;
	int n = -1;

	strbuf_addf(&cmd, "ls -A %s | wc -l", path);
	p = popen(cmd.buf, "r");
	if (p && fscanf(p, "%d", &n) != 1)
		n = -1;
	if (p)
		pclose(p);
	strbuf_release(&cmd);
	return n;
}

static void test_round_trip_and_dedup(void)
{
	char *dir = make_dir("rt/data"), *copy = make_dir("rt2/data");
	struct store *store = open_store("home-rt");
	int64_t tree1, tree2, objects;
	int files = 0;

	write_file(dir, "big.bin", 9 * 1024 * 1024 + 17, 1);
	write_file(dir, "small.txt", 100, 2);
	write_file(dir, "empty", 0, 3);
	CHECK(fs_mkdir_p(copy, 0755) == 0);
	write_file(copy, "same-content-other-name", 100, 2);
	CHECK(ingest_as(store, "rt", dir, &tree1) == 0);
	CHECK(compare_run(store, "rt", dir, &files) == 0);
	CHECK(files == 3);
	objects = count_rows(store, "SELECT count(*) FROM objects");
	CHECK(objects > 3);

	/* The same folder again: the same tree, nothing new stored. */
	CHECK(ingest_as(store, "rt-again", dir, &tree2) == 0);
	CHECK(tree1 == tree2);
	CHECK(count_rows(store, "SELECT count(*) FROM objects") == objects);
	CHECK(ingest_as(store, "rt-copy", copy, NULL) == 0);
	CHECK(count_rows(store, "SELECT count(*) FROM objects") == objects);
	CHECK(fsck_problems(store) == 0);
	store_close(store);
	free(dir);
	free(copy);
}

static void test_stat_cache_sees_changes(void)
{
	char *dir = make_dir("sc/data");
	struct store *store = open_store("home-sc");

	write_file(dir, "a.bin", 300000, 10);
	write_file(dir, "b.bin", 5000, 11);
	age_file(dir, "a.bin", 3600);
	age_file(dir, "b.bin", 3600);
	CHECK(ingest_as(store, "one", dir, NULL) == 0);
	CHECK(count_rows(store, "SELECT count(*) FROM stat_cache") == 2);
	CHECK(ingest_as(store, "two", dir, NULL) == 0);
	/* Same size, new bytes, an old but different mtime. */
	write_file(dir, "b.bin", 5000, 12);
	age_file(dir, "b.bin", 7200);
	CHECK(ingest_as(store, "three", dir, NULL) == 0);
	CHECK(compare_run(store, "three", dir, NULL) == 0);
	CHECK(compare_run(store, "one", dir, NULL) == 1);
	store_close(store);
	free(dir);
}

/* Flips a byte in the middle of the only pack of a fresh store. */
static void corrupt_a_pack(const char *home)
{
	struct strbuf cmd = STRBUF_INIT;
	FILE *p;
	char path[4096];
	struct stat st;
	int fd;
	uint8_t byte;

	strbuf_addf(&cmd, "find %s/packs -type f | head -1", home);
	p = popen(cmd.buf, "r");
	CHECK(p && fgets(path, sizeof(path), p));
	pclose(p);
	path[strcspn(path, "\n")] = '\0';
	chmod(path, 0600);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0 && fstat(fd, &st) == 0);
	CHECK(pread(fd, &byte, 1, st.st_size / 2) == 1);
	byte ^= 0x40;
	CHECK(pwrite(fd, &byte, 1, st.st_size / 2) == 1);
	close(fd);
	strbuf_release(&cmd);
}

static void test_corruption_is_detected(void)
{
	char *dir = make_dir("co/data");
	struct store *store = open_store("home-co");
	struct strbuf home = STRBUF_INIT;

	write_file(dir, "big.bin", 3 * 1024 * 1024, 20);
	CHECK(ingest_as(store, "co", dir, NULL) == 0);
	CHECK(fsck_problems(store) == 0);
	strbuf_addf(&home, "%s/home-co", scratch);
	corrupt_a_pack(home.buf);
	CHECK(fsck_problems(store) >= 1);
	/* Reading the damaged file fails; it never yields wrong bytes. */
	CHECK(compare_run(store, "co", dir, NULL) == 1);
	store_close(store);
	strbuf_release(&home);
	free(dir);
}

static void test_gc_keeps_what_is_reachable(void)
{
	char *a = make_dir("gc/a/data"), *b = make_dir("gc/b/data");
	struct store *store = open_store("home-gc");
	struct store_gc_stats stats;
	struct store_run run;
	struct error err = { 0 };
	int64_t before;

	write_file(a, "only-a.bin", 2 * 1024 * 1024, 30);
	write_file(a, "shared.bin", 1024 * 1024, 31);
	write_file(b, "shared.bin", 1024 * 1024, 31);
	write_file(b, "only-b.bin", 700000, 32);
	CHECK(ingest_as(store, "a", a, NULL) == 0);
	CHECK(ingest_as(store, "b", b, NULL) == 0);
	before = count_rows(store, "SELECT count(*) FROM objects");
	CHECK(store_gc(store, &stats, &err) == 0);
	CHECK(stats.objects_removed == 0);

	CHECK(store_run_find(store, ":a", &run, &err) == 0);
	CHECK(store_run_remove(store, run.name, &err) == -EBUSY);	/* tagged */
	error_clear(&err);
	CHECK(store_tag_delete(store, "a", &err) == 0);
	CHECK(store_run_remove(store, run.name, &err) == 0);
	CHECK(store_gc(store, &stats, &err) == 0);
	CHECK(stats.objects_removed > 0);
	CHECK(count_rows(store, "SELECT count(*) FROM objects") < before);
	CHECK(count_rows(store, "SELECT count(*) FROM trees") == 1);
	CHECK(compare_run(store, "b", b, NULL) == 0);
	CHECK(fsck_problems(store) == 0);
	store_close(store);
	free(a);
	free(b);
}

static void test_damaged_catalog_is_refused(void)
{
	char *dir = make_dir("dc/data");
	struct store *store = open_store("home-dc");
	struct strbuf db = STRBUF_INIT, home = STRBUF_INIT;
	struct error err = { 0 };
	struct stat st;
	int i;

	write_file(dir, "f", 1000, 40);
	for (i = 0; i < 50; i++) {
		char tag[16];

		snprintf(tag, sizeof(tag), "t%d", i);
		CHECK(ingest_as(store, tag, dir, NULL) == 0);
	}
	store_close(store);
	strbuf_addf(&home, "%s/home-dc", scratch);
	strbuf_addf(&db, "%s/catalog.db", home.buf);
	CHECK(stat(db.buf, &st) == 0);
	CHECK(truncate(db.buf, st.st_size / 2) == 0);
	store = NULL;
	CHECK(store_open(&store, home.buf, STORE_READ_WRITE, &err) < 0);
	CHECK(strstr(err.message, "catalog.db") != NULL);
	CHECK(store == NULL);
	strbuf_release(&db);
	strbuf_release(&home);
	free(dir);
}

static void test_crash_at_any_point(void)
{
	char *keep = make_dir("cr/keep"), *big = make_dir("cr/big");
	struct store *store = open_store("home-cr");
	struct strbuf home = STRBUF_INIT, tmp = STRBUF_INIT;
	unsigned seed = (unsigned)time(NULL);
	int i, status;

	write_file(keep, "keep.bin", 2 * 1024 * 1024, 50);
	for (i = 0; i < 12; i++) {
		char name[32];

		snprintf(name, sizeof(name), "part-%d.bin", i);
		write_file(big, name, 8 * 1024 * 1024, 60 + (uint64_t)i);
	}
	CHECK(ingest_as(store, "keep", keep, NULL) == 0);
	store_close(store);
	strbuf_addf(&home, "%s/home-cr", scratch);
	strbuf_addf(&tmp, "%s/tmp", home.buf);
	for (i = 0; i < 8; i++) {
		useconds_t delay = (useconds_t)(rand_r(&seed) % 400000);
		pid_t pid = fork();

		if (pid == 0) {
			struct store *child = open_store("home-cr");
			char tag[16];

			snprintf(tag, sizeof(tag), "big%d", i);
			_exit(child && ingest_as(child, tag, big, NULL) == 0 ? 0 : 1);
		}
		usleep(delay);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);

		store = open_store("home-cr");
		CHECK(store != NULL);
		if (!store)
			break;
		CHECK(fsck_problems(store) == 0);
		CHECK(compare_run(store, "keep", keep, NULL) == 0);
		/* Opening for writing removed what the dead writer left. */
		CHECK(count_files(tmp.buf) == 0);
		store_close(store);
	}
	store = open_store("home-cr");
	CHECK(ingest_as(store, "big-final", big, NULL) == 0);
	CHECK(compare_run(store, "big-final", big, NULL) == 0);
	CHECK(fsck_problems(store) == 0);
	store_close(store);
	strbuf_release(&home);
	strbuf_release(&tmp);
	free(keep);
	free(big);
}

int main(void)
{
	struct strbuf cmd = STRBUF_INIT;

	if (!mkdtemp(scratch)) {
		perror("mkdtemp");
		return 1;
	}
	RUN_TEST(test_round_trip_and_dedup);
	RUN_TEST(test_stat_cache_sees_changes);
	RUN_TEST(test_corruption_is_detected);
	RUN_TEST(test_gc_keeps_what_is_reachable);
	RUN_TEST(test_damaged_catalog_is_refused);
	RUN_TEST(test_crash_at_any_point);
	strbuf_addf(&cmd, "rm -rf %s", scratch);
	if (system(cmd.buf) != 0)
		fprintf(stderr, "could not remove %s\n", scratch);
	strbuf_release(&cmd);
	return check_failures ? 1 : 0;
}
