/*
 * test_read.c - store_entry_pread: random ranges against the original
 * bytes, many threads with a handle each over a cache small enough to
 * evict, a damaged pack, and objects that gc moved after the entry was read.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"
#include "tests/unit/check.h"

#define THREADS 8
#define THREAD_RUNS 40
#define THREAD_RUN_READS 8

static char scratch[] = "/tmp/dstack-test-read-XXXXXX";

/* A file as written, and its entry as stored. */
struct file {
	const char *name;
	uint8_t *data;
	size_t size;
	struct store_entry entry;
	uint8_t *chunks;
};

static struct file files[] = {
	{ .name = "big.bin" },		/* 20 MiB, random */
	{ .name = "log.txt" },		/* 6 MiB, compressible */
	{ .name = "tail.bin" },		/* a few chunks, the last one short */
	{ .name = "medium.bin" },	/* one solo frame */
	{ .name = "sub/small.txt" },	/* bundle members */
	{ .name = "sub/one" },
	{ .name = "empty" },
};
#define FILE_COUNT (sizeof(files) / sizeof(files[0]))

static char *scratch_path(const char *name)
{
	struct strbuf path = STRBUF_INIT;

	strbuf_addf(&path, "%s/%s", scratch, name);
	return path.buf;
}

static void file_make(struct file *file, const char *dir, size_t size, uint64_t seed,
		      bool text)
{
	struct strbuf path = STRBUF_INIT;
	size_t i;

	file->size = size;
	file->data = xmalloc(size ? size : 1);
	if (text) {
		/* Varied enough to cut into chunks, repetitive enough to compress. */
		for (i = 0; i < size; i += 64)
			snprintf((char *)file->data + i, size - i < 64 ? size - i : 64,
				 "%-62zu\n", i / 64 * 7919 % 100003);
	} else {
		test_fill_random(file->data, size, seed);
	}
	strbuf_addf(&path, "%s/%s", dir, file->name);
	CHECK(fs_write_file(path.buf, file->data, size) == 0);
	strbuf_release(&path);
}

static struct store *store_open_or_report(const char *home, enum store_open_mode mode)
{
	struct store *store = NULL;
	struct error err = { 0 };

	if (store_open(&store, home, mode, &err) < 0)
		fprintf(stderr, "store_open: %s\n", err.message);
	return store;
}

/* Stores dir as the only artifact of a run tagged tag. */
static int ingest_as(struct store *store, const char *tag, const char *dir)
{
	struct store_artifact_ref ref = { .path = "data" };
	struct store_ingest *ingest;
	struct store_run run;
	struct error err = { 0 };
	int ret;

	ret = store_ingest_begin(store, &ingest, NULL, NULL, &err);
	if (ret == 0)
		ret = store_ingest_folder(ingest, dir, &ref.tree, NULL, NULL, &err);
	if (ret == 0)
		ret = store_run_add_data(store, tag, &ref, 1, &run, &err);
	if (ret < 0)
		fprintf(stderr, "ingest %s: %s\n", dir, err.message);
	store_ingest_end(ingest);
	return ret;
}

struct collect_ctx {
	struct file *files;
	size_t count;
};

/* Keeps a copy of each regular file's entry: the walk's own is gone after. */
static int collect_entry(void *arg, const struct store_entry *entry)
{
	struct collect_ctx *ctx = arg;
	size_t i;

	if (!S_ISREG(entry->mode))
		return 0;
	for (i = 0; i < ctx->count; i++) {
		struct file *file = &ctx->files[i];

		if (strcmp(file->name, entry->path))
			continue;
		file->entry = *entry;
		file->entry.artifact = "data";
		file->entry.path = file->name;
		file->entry.target = NULL;
		file->chunks = xmalloc(entry->chunk_count * STORE_CHUNK_RECORD_SIZE + 1);
		memcpy(file->chunks, entry->chunks, entry->chunk_count * STORE_CHUNK_RECORD_SIZE);
		file->entry.chunks = file->chunks;
	}
	return 0;
}

static void collect_entries(struct store *store, const char *tag, struct file *list,
			    size_t count)
{
	struct collect_ctx ctx = { .files = list, .count = count };
	struct store_run run;
	struct error err = { 0 };
	size_t i;

	CHECK(store_run_find(store, tag, &run, &err) == 0);
	CHECK(store_run_entries(store, run.id, collect_entry, &ctx, &err) == 0);
	for (i = 0; i < count; i++)
		CHECK(list[i].entry.size == list[i].size && S_ISREG(list[i].entry.mode));
}

static void file_release(struct file *file)
{
	free(file->data);
	free(file->chunks);
	memset(file, 0, sizeof(*file));
}

/* Reads [offset, offset+size) of file; 0 when it matches the original. */
static int read_and_compare(struct store *store, const struct file *file, uint64_t offset,
			    size_t size, uint8_t *buf)
{
	struct error err = { 0 };
	size_t done = (size_t)-1, want = 0;
	int ret;

	if (offset < file->size)
		want = file->size - offset < size ? (size_t)(file->size - offset) : size;
	ret = store_entry_pread(store, &file->entry, buf, size, offset, &done, &err);
	if (ret < 0) {
		fprintf(stderr, "pread %s at %llu: %s\n", file->name,
			(unsigned long long)offset, err.message);
		return ret;
	}
	if (done != want || (want && memcmp(buf, file->data + offset, want))) {
		fprintf(stderr, "pread %s at %llu, %zu bytes: wrong bytes or count %zu\n",
			file->name, (unsigned long long)offset, size, done);
		return -1;
	}
	return 0;
}

/* Where chunk i of file starts. */
static uint64_t chunk_start(const struct file *file, size_t i)
{
	uint64_t start = 0;
	size_t j;

	for (j = 0; j < i; j++)
		start += le32_get(file->entry.chunks + j * STORE_CHUNK_RECORD_SIZE + STORE_HASH_SIZE);
	return start;
}

static uint64_t random_below(unsigned *seed, uint64_t limit)
{
	uint64_t r = (uint64_t)rand_r(seed) << 31 ^ (uint64_t)rand_r(seed);

	return limit ? r % limit : 0;
}

static struct store *store;
static char *home;

static void test_setup(void)
{
	char *dir = scratch_path("data"), *sub = scratch_path("data/sub");

	CHECK(fs_mkdir_p(sub, 0755) == 0);
	free(sub);
	file_make(&files[0], dir, 20 * 1024 * 1024, 1, false);
	file_make(&files[1], dir, 6 * 1024 * 1024, 0, true);
	file_make(&files[2], dir, 1024 * 1024 + 1000, 3, false);
	file_make(&files[3], dir, 200 * 1000, 4, false);
	file_make(&files[4], dir, 5000, 0, true);
	file_make(&files[5], dir, 1, 6, false);
	file_make(&files[6], dir, 0, 7, false);
	home = scratch_path("home");
	store = store_open_or_report(home, STORE_READ_WRITE);
	CHECK(store != NULL);
	CHECK(ingest_as(store, "t", dir) == 0);
	collect_entries(store, ":t", files, FILE_COUNT);
	CHECK(files[0].entry.chunk_count >= 5);
	CHECK(files[1].entry.chunk_count >= 2);
	free(dir);
}

static void test_ranges_match(void)
{
	uint8_t *buf = xmalloc(files[0].size + 4096);
	unsigned seed = 1;
	size_t f, i;

	for (f = 0; f < FILE_COUNT; f++) {
		const struct file *file = &files[f];

		CHECK(read_and_compare(store, file, 0, file->size + 100, buf) == 0);
		CHECK(read_and_compare(store, file, 0, 0, buf) == 0);
		CHECK(read_and_compare(store, file, file->size / 2, 0, buf) == 0);
		CHECK(read_and_compare(store, file, file->size, 4096, buf) == 0);
		CHECK(read_and_compare(store, file, file->size + 12345, 10, buf) == 0);
		CHECK(read_and_compare(store, file, UINT64_MAX - 5, 10, buf) == 0);
		/* Around every chunk boundary, and spanning three chunks. */
		for (i = 1; i < file->entry.chunk_count; i++) {
			uint64_t boundary = chunk_start(file, i);

			CHECK(read_and_compare(store, file, boundary - 1, 2, buf) == 0);
			CHECK(read_and_compare(store, file, boundary - 100, 4096, buf) == 0);
			CHECK(read_and_compare(store, file, boundary, 1, buf) == 0);
			if (i + 1 < file->entry.chunk_count)
				CHECK(read_and_compare(store, file, boundary - 7,
						       (size_t)(chunk_start(file, i + 1) - boundary) + 14,
						       buf) == 0);
		}
		for (i = 0; i < 200; i++) {
			uint64_t offset = random_below(&seed, file->size + 1000);
			size_t size = (size_t)random_below(&seed, i % 10 ? 200000 : 5000000);

			CHECK(read_and_compare(store, file, offset, size, buf) == 0);
		}
	}
	free(buf);
}

struct reader {
	pthread_t thread;
	unsigned seed;
	int failures;
};

static void *reader_run(void *arg)
{
	struct reader *reader = arg;
	struct store *own = store_open_or_report(home, reader->seed % 2 ? STORE_READ_ONLY
							 : STORE_READ_WRITE);
	uint8_t *buf = xmalloc(256 * 1024);
	const struct file *file = NULL;
	uint64_t offset = 0;
	size_t size;
	int i;

	if (!own) {
		reader->failures++;
		free(buf);
		return NULL;
	}
	/*
	 * Runs of neighbouring reads, as the kernel's readahead sends them,
	 * mostly in the big files, whose chunks are evicted and reloaded.
	 */
	for (i = 0; i < THREAD_RUNS * THREAD_RUN_READS; i++) {
		if (i % THREAD_RUN_READS == 0) {
			file = &files[random_below(&reader->seed, 10) % FILE_COUNT % 4];
			offset = random_below(&reader->seed, file->size + 100);
		}
		size = (size_t)random_below(&reader->seed, 256 * 1024);
		if (read_and_compare(own, file, offset, size, buf) < 0)
			reader->failures++;
		offset += size;
	}
	store_close(own);
	free(buf);
	return NULL;
}

static void test_threads_with_own_handles(void)
{
	struct reader readers[THREADS];
	int i;

	/* Smaller than the files, so threads evict what others still read. */
	chunk_cache_set_capacity(8 * 1024 * 1024);
	for (i = 0; i < THREADS; i++) {
		readers[i].seed = 100 + (unsigned)i;
		readers[i].failures = 0;
		CHECK(pthread_create(&readers[i].thread, NULL, reader_run, &readers[i]) == 0);
	}
	for (i = 0; i < THREADS; i++) {
		pthread_join(readers[i].thread, NULL);
		CHECK(readers[i].failures == 0);
	}
	chunk_cache_set_capacity(64 * 1024 * 1024);
}

/* More chunks than the cache's first table has buckets: it grows. */
static void test_many_small_files(void)
{
	struct file many[600];
	char *dir = scratch_path("many");
	uint8_t buf[600];
	size_t i;

	CHECK(fs_mkdir_p(dir, 0755) == 0);
	memset(many, 0, sizeof(many));
	for (i = 0; i < 600; i++) {
		char *name = xmalloc(16);

		snprintf(name, 16, "f%zu", i);
		many[i].name = name;
		file_make(&many[i], dir, i + 1, 1000 + i, false);
	}
	CHECK(ingest_as(store, "many", dir) == 0);
	collect_entries(store, ":many", many, 600);
	for (i = 0; i < 600; i++) {
		CHECK(read_and_compare(store, &many[i], 0, sizeof(buf), buf) == 0);
		free((char *)many[i].name);
		file_release(&many[i]);
	}
	free(dir);
}

/* Flips a byte in the middle of the frame of an object. */
static void corrupt_object(struct store *owner, const uint8_t *hash)
{
	struct object_location loc;
	struct strbuf path = STRBUF_INIT;
	char name[33];
	uint8_t byte;
	off_t at;
	int fd;

	CHECK(object_find(owner, hash, &loc, name) == 0);
	pack_path(owner, name, &path);
	at = (off_t)(loc.offset + loc.stored / 2);
	CHECK(chmod(path.buf, 0600) == 0);
	fd = open(path.buf, O_RDWR);
	CHECK(fd >= 0);
	CHECK(pread(fd, &byte, 1, at) == 1);
	byte ^= 0x40;
	CHECK(pwrite(fd, &byte, 1, at) == 1);
	close(fd);
	strbuf_release(&path);
}

struct damaged_reader {
	pthread_t thread;
	const char *home;
	const struct file *file;
	uint64_t offset;
	struct error err;
	int ret;
};

static void *damaged_reader_run(void *arg)
{
	struct damaged_reader *reader = arg;
	struct store *own = store_open_or_report(reader->home, STORE_READ_ONLY);
	uint8_t buf[100];
	size_t done;

	reader->ret = own ? store_entry_pread(own, &reader->file->entry, buf, sizeof(buf),
					      reader->offset, &done, &reader->err) : -1;
	store_close(own);
	return NULL;
}

static void test_corruption_is_eio(void)
{
	struct file damaged = { .name = "damaged.bin" };
	char *dir = scratch_path("co/data"), *co_home = scratch_path("co/home");
	struct store *co = NULL, *other;
	struct damaged_reader readers[4];
	struct error err = { 0 };
	const uint8_t *chunk1;
	uint64_t start1, start2;
	uint8_t *buf;
	char hex[65];
	size_t done = 0, i;
	bool untouched = true;

	CHECK(fs_mkdir_p(dir, 0755) == 0);
	file_make(&damaged, dir, 6 * 1024 * 1024, 99, false);
	co = store_open_or_report(co_home, STORE_READ_WRITE);
	CHECK(co && ingest_as(co, "co", dir) == 0);
	collect_entries(co, ":co", &damaged, 1);
	CHECK(damaged.entry.chunk_count >= 2);
	if (damaged.entry.chunk_count < 2)
		goto out;
	buf = xmalloc(damaged.size);
	start1 = chunk_start(&damaged, 1);
	start2 = chunk_start(&damaged, 2);
	chunk1 = damaged.entry.chunks + STORE_CHUNK_RECORD_SIZE;
	hex_encode(chunk1, STORE_HASH_SIZE, hex);

	/* Chunk 0 is read (and so cached) before the damage. */
	CHECK(read_and_compare(co, &damaged, 10, 1000, buf) == 0);
	corrupt_object(co, damaged.entry.chunks);
	corrupt_object(co, chunk1);

	memset(buf, 0xa5, damaged.size);
	CHECK(store_entry_pread(co, &damaged.entry, buf, 1000, start1 + 10, &done, &err) == -EIO);
	CHECK(done == 0);
	CHECK(strstr(err.message, hex) != NULL);
	for (i = 0; i < damaged.size; i++)
		untouched &= buf[i] == 0xa5;
	CHECK(untouched);
	error_clear(&err);
	CHECK(store_entry_pread(co, &damaged.entry, buf, (size_t)(start2 - 5), 5, &done,
				&err) == -EIO);
	CHECK(strstr(err.message, hex) != NULL);
	/* A failed load caches nothing: another handle fails the same way. */
	other = store_open_or_report(co_home, STORE_READ_ONLY);
	error_clear(&err);
	CHECK(other && store_entry_pread(other, &damaged.entry, buf, 1, start1, &done,
					 &err) == -EIO);
	store_close(other);
	/* Threads waiting for a load that fails each get the failure too. */
	for (i = 0; i < 4; i++) {
		readers[i] = (struct damaged_reader){ .home = co_home, .file = &damaged,
						      .offset = start1 + i };
		CHECK(pthread_create(&readers[i].thread, NULL, damaged_reader_run,
				     &readers[i]) == 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(readers[i].thread, NULL);
		CHECK(readers[i].ret == -EIO && strstr(readers[i].err.message, hex));
	}
	/* What was verified before the damage is still right. */
	CHECK(read_and_compare(co, &damaged, 0, (size_t)start1, buf) == 0);
	free(buf);
out:
	store_close(co);
	file_release(&damaged);
	free(dir);
	free(co_home);
}

/*
 * Entries read before gc name objects gc then moved: a bundle that lost
 * a member is rewritten.  Reading them afterwards finds the new place.
 */
static void test_gc_moved_objects(void)
{
	struct file a[3] = { { .name = "keep.bin" }, { .name = "keep.txt" },
			     { .name = "drop.txt" } };
	struct file b[2] = { { .name = "keep.bin" }, { .name = "keep.txt" } };
	char *dir_a = scratch_path("gc/a"), *dir_b = scratch_path("gc/b");
	char *gc_home = scratch_path("gc/home");
	struct object_location before, after;
	struct store *gc, *reader;
	struct store_gc_stats stats;
	struct store_run run;
	struct error err = { 0 };
	char name[33];
	uint8_t *buf;
	size_t i;

	CHECK(fs_mkdir_p(dir_a, 0755) == 0 && fs_mkdir_p(dir_b, 0755) == 0);
	file_make(&a[0], dir_a, 3 * 1024 * 1024, 200, false);
	file_make(&a[1], dir_a, 5000, 201, false);
	file_make(&a[2], dir_a, 5000, 202, false);
	file_make(&b[0], dir_b, 3 * 1024 * 1024, 200, false);
	file_make(&b[1], dir_b, 5000, 201, false);
	gc = store_open_or_report(gc_home, STORE_READ_WRITE);
	CHECK(gc && ingest_as(gc, "a", dir_a) == 0 && ingest_as(gc, "b", dir_b) == 0);
	reader = store_open_or_report(gc_home, STORE_READ_ONLY);
	CHECK(reader != NULL);
	collect_entries(reader, ":b", b, 2);
	CHECK(object_find(gc, b[1].entry.chunks, &before, name) == 0);

	CHECK(store_run_find(gc, ":a", &run, &err) == 0);
	CHECK(store_tag_delete(gc, "a", &err) == 0);
	CHECK(store_run_remove(gc, run.name, &err) == 0);
	CHECK(store_gc(gc, &stats, &err) == 0);
	CHECK(stats.packs_rewritten > 0);
	CHECK(object_find(gc, b[1].entry.chunks, &after, name) == 0);
	CHECK(after.pack != before.pack || after.offset != before.offset);
	buf = xmalloc(b[0].size);
	for (i = 0; i < 2; i++)
		CHECK(read_and_compare(reader, &b[i], 0, b[i].size, buf) == 0);
	free(buf);
	store_close(reader);
	store_close(gc);
	for (i = 0; i < 3; i++)
		file_release(&a[i]);
	for (i = 0; i < 2; i++)
		file_release(&b[i]);
	free(dir_a);
	free(dir_b);
	free(gc_home);
}

int main(void)
{
	struct strbuf cmd = STRBUF_INIT;
	size_t i;

	if (!mkdtemp(scratch)) {
		perror("mkdtemp");
		return 1;
	}
	RUN_TEST(test_setup);
	RUN_TEST(test_ranges_match);
	RUN_TEST(test_threads_with_own_handles);
	RUN_TEST(test_many_small_files);
	RUN_TEST(test_corruption_is_eio);
	RUN_TEST(test_gc_moved_objects);
	store_close(store);
	free(home);
	for (i = 0; i < FILE_COUNT; i++)
		file_release(&files[i]);
	strbuf_addf(&cmd, "rm -rf %s", scratch);
	if (system(cmd.buf) != 0)
		fprintf(stderr, "could not remove %s\n", scratch);
	strbuf_release(&cmd);
	return check_failures ? 1 : 0;
}
