/*
 * test_stage.c - staging for nodes without the catalog: manifests of
 * stored trees and runs extracted from the packs alone, folders staged
 * into packs and imported, forged manifests refused, and gc reclaiming
 * what a node stored twice.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"
#include "tests/unit/check.h"
#include "tests/unit/store_check.h"

static char scratch[] = "/tmp/dstack-test-stage-XXXXXX";

static char *path_in(const char *name)
{
	struct strbuf path = STRBUF_INIT;

	strbuf_addf(&path, "%s/%s", scratch, name);
	return path.buf;
}

static void write_file(const char *dir, const char *name, size_t size, uint64_t seed,
		       mode_t mode)
{
	struct strbuf path = STRBUF_INIT;
	uint8_t *data = xmalloc(size ? size : 1);
	int fd;

	test_fill_random(data, size, seed);
	strbuf_addf(&path, "%s/%s", dir, name);
	fd = open(path.buf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(fs_write_all(fd, data, size) == 0);
	CHECK(fchmod(fd, mode) == 0);
	close(fd);
	free(data);
	strbuf_release(&path);
}

/* A folder like a repository snapshot, with every kind of entry and name. */
static char *make_tree(const char *name, uint64_t seed)
{
	char *dir = path_in(name);
	struct strbuf path = STRBUF_INIT;

	CHECK(fs_mkdir_p(dir, 0755) == 0);
	write_file(dir, "big.bin", 10u * 1024 * 1024, seed, 0644);
	write_file(dir, "empty", 0, seed, 0644);
	write_file(dir, "run.sh", 300, seed + 1, 0755);
	write_file(dir, "secret", 5000, seed + 2, 0600);
	write_file(dir, "new\nline", 10, seed + 3, 0644);
	write_file(dir, "bad\xff\xfe utf8 %41", 20, seed + 4, 0644);
	strbuf_addf(&path, "%s/sub/deeper", dir);
	CHECK(fs_mkdir_p(path.buf, 0755) == 0);
	strbuf_reset(&path);
	strbuf_addf(&path, "%s/emptydir", dir);
	CHECK(mkdir(path.buf, 0700) == 0);
	strbuf_reset(&path);
	strbuf_addf(&path, "%s/sub", dir);
	write_file(path.buf, "a.txt", 100, seed + 5, 0644);
	write_file(path.buf, "deeper/b.txt", 70000, seed + 6, 0640);
	strbuf_reset(&path);
	strbuf_addf(&path, "%s/link", dir);
	CHECK(symlink("sub/a.txt", path.buf) == 0);
	strbuf_reset(&path);
	strbuf_addf(&path, "%s/sub/out link", dir);
	CHECK(symlink("../../../etc/passwd", path.buf) == 0);
	strbuf_reset(&path);
	strbuf_addf(&path, "%s/sub/deeper", dir);
	CHECK(chmod(path.buf, 0555) == 0);
	strbuf_release(&path);
	return dir;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in a folder; *count gets how many. */
static char **list_dir(const char *path, size_t *count)
{
	DIR *dir = opendir(path);
	struct dirent *de;
	char **names = NULL;

	*count = 0;
	if (!dir)
		return NULL;
	while ((de = readdir(dir))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		names = xrealloc(names, (*count + 1) * sizeof(*names));
		names[(*count)++] = xstrdup(de->d_name);
	}
	closedir(dir);
	if (*count)
		qsort(names, *count, sizeof(*names), compare_names);
	return names;
}

/* Differences between two folders: names, kinds, modes, bytes, links. */
static int compare_dirs(const char *a, const char *b, bool root)
{
	struct stat sa, sb;
	int diffs = 0;

	if (lstat(a, &sa) < 0 || lstat(b, &sb) < 0) {
		fprintf(stderr, "compare: %s or %s missing\n", a, b);
		return 1;
	}
	if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT) ||
	    (!root && sa.st_mode != sb.st_mode)) {
		fprintf(stderr, "compare: %s: mode %o, %o\n", b, sa.st_mode, sb.st_mode);
		return 1;
	}
	if (S_ISLNK(sa.st_mode)) {
		char ta[4096] = { 0 }, tb[4096] = { 0 };

		if (readlink(a, ta, sizeof(ta) - 1) < 0 || readlink(b, tb, sizeof(tb) - 1) < 0 ||
		    strcmp(ta, tb))
			diffs++;
	} else if (S_ISREG(sa.st_mode)) {
		struct strbuf da = STRBUF_INIT, db = STRBUF_INIT;

		if (fs_read_file(a, &da) < 0 || fs_read_file(b, &db) < 0 || da.len != db.len ||
		    (da.len && memcmp(da.buf, db.buf, da.len))) {
			fprintf(stderr, "compare: %s: content differs\n", b);
			diffs++;
		}
		strbuf_release(&da);
		strbuf_release(&db);
	} else {
		size_t na, nb, i;
		char **la = list_dir(a, &na), **lb = list_dir(b, &nb);

		if (na != nb) {
			fprintf(stderr, "compare: %s: %zu entries, %zu expected\n", b, nb, na);
			diffs++;
		}
		for (i = 0; i < na && i < nb; i++) {
			struct strbuf ca = STRBUF_INIT, cb = STRBUF_INIT;

			if (strcmp(la[i], lb[i])) {
				diffs++;
				continue;
			}
			strbuf_addf(&ca, "%s/%s", a, la[i]);
			strbuf_addf(&cb, "%s/%s", b, lb[i]);
			diffs += compare_dirs(ca.buf, cb.buf, false);
			strbuf_release(&ca);
			strbuf_release(&cb);
		}
		for (i = 0; i < na; i++)
			free(la[i]);
		for (i = 0; i < nb; i++)
			free(lb[i]);
		free(la);
		free(lb);
	}
	return diffs;
}

static struct store *open_store(const char *name)
{
	struct store *store = NULL;
	struct error err = { 0 };
	char *home = path_in(name);

	if (store_open(&store, home, STORE_READ_WRITE, &err) < 0)
		fprintf(stderr, "store_open: %s\n", err.message);
	free(home);
	return store;
}

static int ingest(struct store *store, const char *dir, int64_t *tree)
{
	struct store_ingest *ingest;
	struct error err = { 0 };
	int ret = store_ingest_begin(store, &ingest, NULL, NULL, &err);

	if (ret == 0)
		ret = store_ingest_folder(ingest, dir, tree, NULL, NULL, &err);
	if (ret < 0)
		fprintf(stderr, "ingest %s: %s\n", dir, err.message);
	store_ingest_end(ingest);
	return ret;
}

static int import(struct store *store, const struct strbuf *manifest, int64_t *tree,
		  struct error *err)
{
	struct store_ingest *ingest;
	int ret = store_ingest_begin(store, &ingest, NULL, NULL, err);

	if (ret == 0)
		ret = store_stage_import(ingest, manifest->buf, manifest->len, tree, err);
	store_ingest_end(ingest);
	return ret;
}

static int64_t add_run(struct store *store, const char *tag, const char *artifact,
		       int64_t tree)
{
	struct store_artifact_ref ref = { .path = artifact, .tree = tree };
	struct error err = { 0 };
	struct store_run run = { 0 };

	if (store_run_add_data(store, tag, &ref, 1, &run, &err) < 0)
		fprintf(stderr, "add run: %s\n", err.message);
	return run.id;
}

static void test_manifest_round_trip(void)
{
	struct store *store = open_store("home-trip");
	char *src = make_tree("trip-src", 1), *out = path_in("trip-out");
	char *out2 = path_in("trip-out2"), *home = path_in("home-trip");
	struct strbuf manifest = STRBUF_INIT, sub = STRBUF_INIT;
	struct error err = { 0 };
	int64_t tree = 0, tree2 = 0, run;
	char *other;

	CHECK(store);
	if (!store)
		return;
	CHECK(ingest(store, src, &tree) == 0);
	CHECK(store_manifest_tree(store, tree, &manifest, &err) == 0);
	CHECK(!strncmp(manifest.buf, "dstack-manifest 1\n", 18));
	/* No catalog from here on: a store on NFS sees only packs. */
	if (store_manifest_extract(home, manifest.buf, manifest.len, out, &err) < 0)
		fprintf(stderr, "extract: %s\n", err.message);
	CHECK(compare_dirs(src, out, true) == 0);

	/* A snapshot, then a run's artifacts on top of it, in one go. */
	run = add_run(store, "trip", "results/data", tree);
	CHECK(run > 0);
	CHECK(store_manifest_run(store, run, &manifest, &err) == 0);
	if (store_manifest_extract(home, manifest.buf, manifest.len, out2, &err) < 0)
		fprintf(stderr, "extract: %s\n", err.message);
	strbuf_addf(&sub, "%s/results/data", out2);
	CHECK(compare_dirs(src, sub.buf, true) == 0);
	strbuf_reset(&sub);
	strbuf_addf(&sub, "%s/results", out2);
	CHECK(fs_remove_tree(sub.buf) == 0);
	CHECK(compare_dirs(src, out2, true) == 0);

	/* Later sections replace earlier entries at the same paths. */
	other = make_tree("trip-other", 9);
	CHECK(ingest(store, other, &tree2) == 0);
	strbuf_reset(&manifest);
	CHECK(store_manifest_tree(store, tree, &manifest, &err) == 0);
	CHECK(store_manifest_tree(store, tree2, &manifest, &err) == 0);
	CHECK(fs_remove_tree(out2) == 0);
	CHECK(store_manifest_extract(home, manifest.buf, manifest.len, out2, &err) == 0);
	CHECK(compare_dirs(other, out2, true) == 0);
	free(other);

	/* Whatever the manifest, extract never writes through a link out of out. */
	strbuf_reset(&sub);
	strbuf_addf(&sub, "%s/elsewhere", scratch);
	CHECK(mkdir(sub.buf, 0755) == 0);
	strbuf_reset(&manifest);
	strbuf_addf(&manifest, "dstack-manifest 1\ne 120777 %zu esc %s\ne 100644 0 esc/x\nend 2\n",
		    sub.len, sub.buf);
	CHECK(store_manifest_extract(home, manifest.buf, manifest.len, out, &err) < 0);
	strbuf_addstr(&sub, "/x");
	CHECK(access(sub.buf, F_OK) < 0);

	strbuf_release(&manifest);
	strbuf_release(&sub);
	store_close(store);
	free(src);
	free(out);
	free(out2);
	free(home);
}

static void test_stage_import(void)
{
	struct store *store = open_store("home-stage");
	char *src = make_tree("stage-src", 2), *home = path_in("home-stage");
	char *out = path_in("stage-out");
	struct strbuf manifest = STRBUF_INIT;
	struct error err = { 0 };
	int64_t staged = 0, ingested = 0, run, trees;

	CHECK(store);
	if (!store)
		return;
	if (store_stage_folder(home, src, &manifest, &err) < 0)
		fprintf(stderr, "stage: %s\n", err.message);
	CHECK(manifest.len > 0);
	/* Staging wrote packs but told the catalog nothing. */
	CHECK(count_rows(store, "SELECT count(*) FROM objects") == 0);
	if (import(store, &manifest, &staged, &err) < 0)
		fprintf(stderr, "import: %s\n", err.message);
	CHECK(staged > 0);
	trees = count_rows(store, "SELECT count(*) FROM trees");
	CHECK(ingest(store, src, &ingested) == 0);
	CHECK(ingested == staged);
	CHECK(count_rows(store, "SELECT count(*) FROM trees") == trees);
	/* Imported twice: the same tree, nothing new. */
	CHECK(import(store, &manifest, &ingested, &err) == 0 && ingested == staged);

	run = add_run(store, "staged", "out", staged);
	CHECK(store_run_download(store, run, out, NULL, NULL, &err) == 0);
	strbuf_reset(&manifest);
	strbuf_addf(&manifest, "%s/out", out);
	CHECK(compare_dirs(src, manifest.buf, true) == 0);
	CHECK(fsck_problems(store) == 0);

	strbuf_release(&manifest);
	store_close(store);
	free(src);
	free(home);
	free(out);
}

/* The first line of manifest starting with prefix, replaced by line. */
static void replace_line(struct strbuf *manifest, const char *prefix, const char *line)
{
	char *at = strstr(manifest->buf, prefix), *end;
	struct strbuf out = STRBUF_INIT;

	if (!at)
		return;
	end = strchr(at, '\n');
	strbuf_add(&out, manifest->buf, (size_t)(at - manifest->buf));
	strbuf_addstr(&out, line);
	strbuf_addstr(&out, end);
	strbuf_release(manifest);
	*manifest = out;
}

/* The words of the first chunk line, for forging it. */
static void first_chunk(const struct strbuf *manifest, char words[8][80])
{
	const char *at = strstr(manifest->buf, "\nc ");

	memset(words, 0, 8 * 80);
	if (at)
		sscanf(at + 1, "%79s %79s %79s %79s %79s %79s %79s %79s", words[0], words[1],
		       words[2], words[3], words[4], words[5], words[6], words[7]);
}

static void test_forged_manifest_is_refused(void)
{
	struct store *store = open_store("home-forge");
	char *home = path_in("home-forge"), *src = path_in("forge-src");
	struct strbuf good = STRBUF_INIT, bad = STRBUF_INIT, line = STRBUF_INIT;
	struct strbuf path = STRBUF_INIT;
	struct error err = { 0 };
	char w[8][80], prefix[100];
	int64_t tree = 0, objects, trees;
	size_t i;

	CHECK(store);
	if (!store)
		return;
	CHECK(fs_mkdir_p(src, 0755) == 0);
	write_file(src, "a", 3u * 1024 * 1024, 7, 0644);
	write_file(src, "b", 100, 8, 0644);
	CHECK(store_stage_folder(home, src, &good, &err) == 0);
	first_chunk(&good, w);
	snprintf(prefix, sizeof(prefix), "c %s", w[1]);
	objects = count_rows(store, "SELECT count(*) FROM objects");
	trees = count_rows(store, "SELECT count(*) FROM trees");

	for (i = 0; i < 8; i++) {
		strbuf_reset(&bad);
		strbuf_add(&bad, good.buf, good.len);
		strbuf_reset(&line);
		switch (i) {
		case 0:	/* wrong offset */
			strbuf_addf(&line, "c %s %s %s %llu %s %s %s", w[1], w[2], w[3],
				    strtoull(w[4], NULL, 10) + 1, w[5], w[6], w[7]);
			break;
		case 1:	/* wrong hash */
			w[1][0] = w[1][0] == '0' ? '1' : '0';
			strbuf_addf(&line, "c %s %s %s %s %s %s %s", w[1], w[2], w[3], w[4],
				    w[5], w[6], w[7]);
			w[1][0] = prefix[2];
			break;
		case 2:	/* missing pack */
			strbuf_addf(&line, "c %s %s %s %s %s %s %s", w[1], w[2],
				    "0123456789abcdef0123456789abcdef", w[4], w[5], w[6], w[7]);
			break;
		case 3:	/* a pack name that is a path */
			strbuf_addf(&line, "c %s %s %s %s %s %s %s", w[1], w[2], "../../x",
				    w[4], w[5], w[6], w[7]);
			break;
		case 4:	/* a path out of the folder */
			replace_line(&bad, "e 100644 100 b", "e 100644 100 ../b");
			break;
		case 5:	/* truncated */
			bad.len -= 4;
			bad.buf[bad.len] = '\0';
			break;
		case 6:	/* absolute, and an empty component */
			replace_line(&bad, "e 100644 100 b", "e 100644 100 /b");
			break;
		case 7:
			replace_line(&bad, "e 100644 100 b", "e 100644 100 x//b");
			break;
		}
		if (line.len)
			replace_line(&bad, prefix, line.buf);
		CHECK(bad.len != good.len || memcmp(bad.buf, good.buf, good.len));
		error_clear(&err);
		CHECK(import(store, &bad, &tree, &err) < 0);
		CHECK(err.message[0] != '\0');
		CHECK(count_rows(store, "SELECT count(*) FROM objects") == objects);
		CHECK(count_rows(store, "SELECT count(*) FROM trees") == trees);
		CHECK(count_rows(store, "SELECT count(*) FROM packs") == 0);
	}
	/* A version from the future is named as such. */
	error_clear(&err);
	strbuf_reset(&bad);
	strbuf_addstr(&bad, "dstack-manifest 2\nend 0\n");
	CHECK(import(store, &bad, &tree, &err) < 0 && strstr(err.message, "version"));

	/* A pack whose bytes lie about their hash. */
	strbuf_addf(&path, "%s/packs/%.2s/%s", home, w[3], w[3]);
	{
		uint8_t byte = 0;
		off_t at = (off_t)strtoull(w[4], NULL, 10) + 100;
		int fd = chmod(path.buf, 0600) == 0 ? open(path.buf, O_RDWR) : -1;

		CHECK(fd >= 0 && pread(fd, &byte, 1, at) == 1);
		byte ^= 0x55;
		CHECK(fd >= 0 && pwrite(fd, &byte, 1, at) == 1);
		if (fd >= 0)
			close(fd);
	}
	CHECK(import(store, &good, &tree, &err) < 0);
	CHECK(count_rows(store, "SELECT count(*) FROM objects") == objects);
	CHECK(count_rows(store, "SELECT count(*) FROM packs") == 0);
	CHECK(fsck_problems(store) == 0);

	strbuf_release(&good);
	strbuf_release(&bad);
	strbuf_release(&line);
	strbuf_release(&path);
	store_close(store);
	free(home);
	free(src);
}

static uint64_t packs_bytes(const char *home)
{
	struct strbuf cmd = STRBUF_INIT;
	unsigned long long n = 0;
	FILE *p;

	strbuf_addf(&cmd, "find %s/packs -type f -printf '%%s\\n' | awk '{s+=$1} END {print s+0}'",
		    home);
	p = popen(cmd.buf, "r");
	if (p && fscanf(p, "%llu", &n) != 1)
		n = 0;
	if (p)
		pclose(p);
	strbuf_release(&cmd);
	return n;
}

static void test_gc_reclaims_duplicates(void)
{
	struct store *store = open_store("home-gc");
	char *home = path_in("home-gc"), *src = path_in("gc-src"), *out = path_in("gc-out");
	struct strbuf manifest = STRBUF_INIT, sub = STRBUF_INIT;
	struct store_gc_stats stats;
	struct error err = { 0 };
	int64_t tree = 0, staged = 0, run;
	uint64_t before;
	char name[16];
	int i;

	CHECK(store);
	if (!store)
		return;
	CHECK(fs_mkdir_p(src, 0755) == 0);
	write_file(src, "big", 6u * 1024 * 1024, 11, 0644);
	for (i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "s%02d", i);
		write_file(src, name, 1000, 100 + (uint64_t)i, 0644);
	}
	CHECK(ingest(store, src, &tree) == 0);
	CHECK(add_run(store, "first", "data", tree) > 0);
	before = packs_bytes(home);

	/* All of it stored already: the node's packs are all duplicates. */
	CHECK(store_stage_folder(home, src, &manifest, &err) == 0);
	CHECK(import(store, &manifest, &staged, &err) == 0 && staged == tree);
	CHECK(packs_bytes(home) > before);
	CHECK(store_gc(store, &stats, &err) == 0);
	CHECK(stats.packs_removed >= 1);
	CHECK(packs_bytes(home) == before);

	/*
	 * One new small file amid old ones: it shares a bundle with them, so
	 * its pack is recorded with members no row names, and gc rewrites it.
	 */
	write_file(src, "s10x", 1000, 13, 0644);
	strbuf_reset(&manifest);
	CHECK(store_stage_folder(home, src, &manifest, &err) == 0);
	CHECK(import(store, &manifest, &staged, &err) == 0);
	CHECK(count_rows(store, "SELECT sum(unnamed) FROM packs") > 0);
	run = add_run(store, "second", "data", staged);
	CHECK(run > 0);
	CHECK(store_gc(store, &stats, &err) == 0);
	CHECK(stats.packs_rewritten >= 1);
	CHECK(stats.bytes_freed >= 6u * 1024 * 1024);
	CHECK(count_rows(store, "SELECT sum(unnamed) FROM packs") == 0);
	CHECK(packs_bytes(home) < before + 4096);
	CHECK(fsck_problems(store) == 0);
	CHECK(store_run_download(store, run, out, NULL, NULL, &err) == 0);
	strbuf_addf(&sub, "%s/data", out);
	CHECK(compare_dirs(src, sub.buf, true) == 0);

	strbuf_release(&manifest);
	strbuf_release(&sub);
	store_close(store);
	free(home);
	free(src);
	free(out);
}

int main(void)
{
	if (!mkdtemp(scratch)) {
		perror("mkdtemp");
		return 1;
	}
	RUN_TEST(test_manifest_round_trip);
	RUN_TEST(test_stage_import);
	RUN_TEST(test_forged_manifest_is_refused);
	RUN_TEST(test_gc_reclaims_duplicates);
	CHECK(fs_remove_tree(scratch) == 0);
	return check_failures ? 1 : 0;
}
