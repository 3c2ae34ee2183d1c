/*
 * pack.c - pack files and the objects in them.
 *
 * Objects are appended to a temp pack while an ingest runs; the pack is
 * fsynced and renamed into packs/XX/NAME, and its directory fsynced, before
 * any catalog row names it.  A pack is self-describing (every record
 * carries its hash and sizes) so the catalog can be rebuilt from packs.
 * Each object is one lz4 frame with a content checksum: a read detects a
 * flipped bit without the cost of SHA-256; fsck re-hashes in full.
 */
#include <errno.h>
#include <fcntl.h>
#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"

/*
 * Linked 64 KiB blocks compress as well as one block (lz4's window is 64
 * KiB) and let a reader decode straight into its buffer: LZ4F stages a
 * block through its own buffers only when less than a block of room is
 * left, so big blocks would stage, and fault in, a whole chunk.
 */
static const LZ4F_preferences_t frame_preferences = {
	.frameInfo = {
		.blockSizeID = LZ4F_max64KB,
		.blockMode = LZ4F_blockLinked,
		.contentChecksumFlag = LZ4F_contentChecksumEnabled,
	},
	.compressionLevel = 0,	/* lz4 -1 */
};

size_t frame_bound(size_t raw_size)
{
	return LZ4F_compressFrameBound(raw_size, &frame_preferences);
}

int frame_compress(const void *raw, size_t raw_size, void *out,
		   size_t out_size, size_t *stored)
{
	size_t n = LZ4F_compressFrame(out, out_size, raw, raw_size,
				      &frame_preferences);

	if (LZ4F_isError(n))
		return -EIO;
	*stored = n;
	return 0;
}

void pack_path(struct store *store, const char *name, struct strbuf *out)
{
	strbuf_reset(out);
	strbuf_addf(out, "%s/%.2s/%s", store->packs_dir, name, name);
}

bool pack_name_valid(const char *name)
{
	size_t i;

	for (i = 0; i < 32; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return name[32] == '\0';
}

static void pack_name_random(char name[33])
{
	uint8_t bytes[16];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, bytes, sizeof(bytes)) : -1;

	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof(bytes)) {
		/* No urandom: time and pid still keep names apart. */
		int64_t now = time_now_ns();
		pid_t pid = getpid();

		memcpy(bytes, &now, 8);
		memset(bytes + 8, 0, 8);
		memcpy(bytes + 8, &pid, sizeof(pid));
	}
	hex_encode(bytes, sizeof(bytes), name);
}

int pack_writer_open(struct store *store, struct pack_writer *writer,
		     struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	int dir_fd, ret;

	memset(writer, 0, sizeof(*writer));
	pack_name_random(writer->name);
	/* See store_remove_orphan_temps: no cleaner runs while we hold this. */
	dir_fd = open(store->tmp_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0 || flock(dir_fd, LOCK_SH) < 0) {
		ret = error_errno(err, -errno, "%s", store->tmp_dir);
		if (dir_fd >= 0)
			close(dir_fd);
		strbuf_release(&path);
		return ret;
	}
	strbuf_addf(&path, "%s/pack-%s", store->tmp_dir, writer->name);
	writer->fd = open(path.buf, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
	if (writer->fd < 0) {
		ret = error_errno(err, -errno, "%s", path.buf);
		close(dir_fd);
		strbuf_release(&path);
		return ret;
	}
	writer->tmp_path = path.buf;
	/* Held until commit or discard: it tells store_open we are alive. */
	flock(writer->fd, LOCK_EX);
	close(dir_fd);
	ret = fs_write_all(writer->fd, PACK_MAGIC, PACK_MAGIC_SIZE);
	if (ret < 0) {
		error_errno(err, ret, "%s", writer->tmp_path);
		pack_writer_discard(writer);
		return ret;
	}
	writer->size = PACK_MAGIC_SIZE;
	return 0;
}

int pack_writer_append(struct pack_writer *writer,
		       const struct pack_member *members, size_t count,
		       uint32_t block, const void *frame, uint32_t stored,
		       uint64_t *offset, struct error *err)
{
	size_t header_size = PACK_RECORD_HEADER + count * PACK_MEMBER_SIZE, i;
	uint8_t *header = xmalloc(header_size), *p;
	int ret;

	le32_put(header, (uint32_t)count);
	le32_put(header + 4, stored);
	le32_put(header + 8, block);
	for (i = 0, p = header + PACK_RECORD_HEADER; i < count; i++, p += PACK_MEMBER_SIZE) {
		memcpy(p, members[i].hash, STORE_HASH_SIZE);
		le32_put(p + STORE_HASH_SIZE, members[i].inner);
		le32_put(p + STORE_HASH_SIZE + 4, members[i].raw);
	}
	ret = fs_write_all(writer->fd, header, header_size);
	if (ret == 0)
		ret = fs_write_all(writer->fd, frame, stored);
	free(header);
	if (ret < 0)
		return error_errno(err, ret, "%s", writer->tmp_path);
	*offset = writer->size + header_size;
	writer->size += header_size + stored;
	return 0;
}

int pack_record_next(int fd, uint64_t size, uint64_t *pos,
		     struct pack_record *record)
{
	uint8_t header[PACK_RECORD_HEADER], *list;
	size_t i, list_size;
	int ret;

	if (*pos == size)
		return 0;
	if (size - *pos < PACK_RECORD_HEADER)
		return -EIO;
	ret = fs_pread_all(fd, header, sizeof(header), (off_t)*pos);
	if (ret < 0)
		return ret;
	record->count = le32_get(header);
	record->stored = le32_get(header + 4);
	record->block = le32_get(header + 8);
	list_size = record->count * PACK_MEMBER_SIZE;
	if (!record->count || record->count > BUNDLE_MEMBERS_MAX || record->block > PACK_BLOCK_MAX ||
	    size - *pos - PACK_RECORD_HEADER < list_size + record->stored)
		return -EIO;
	list = xmalloc(list_size);
	ret = fs_pread_all(fd, list, list_size, (off_t)(*pos + PACK_RECORD_HEADER));
	if (ret < 0) {
		free(list);
		return ret;
	}
	record->members = xrealloc(record->members, record->count * sizeof(*record->members));
	for (i = 0; i < record->count; i++) {
		const uint8_t *p = list + i * PACK_MEMBER_SIZE;

		memcpy(record->members[i].hash, p, STORE_HASH_SIZE);
		record->members[i].inner = le32_get(p + STORE_HASH_SIZE);
		record->members[i].raw = le32_get(p + STORE_HASH_SIZE + 4);
	}
	free(list);
	record->offset = *pos + PACK_RECORD_HEADER + list_size;
	*pos = record->offset + record->stored;
	return 1;
}

int pack_writer_sync(struct pack_writer *writer, struct error *err)
{
	if (fsync(writer->fd) < 0)
		return error_errno(err, -errno, "%s", writer->tmp_path);
	return 0;
}

int pack_writer_rename(struct store *store, struct pack_writer *writer,
		       struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	int ret = 0;

	strbuf_addf(&path, "%s/%.2s", store->packs_dir, writer->name);
	if (mkdir(path.buf, 0700) < 0 && errno != EEXIST) {
		ret = error_errno(err, -errno, "%s", path.buf);
		goto out;
	}
	pack_path(store, writer->name, &path);
	if (rename(writer->tmp_path, path.buf) < 0) {
		ret = error_errno(err, -errno, "%s", path.buf);
		goto out;
	}
	close(writer->fd);
	writer->fd = -1;
	free(writer->tmp_path);
	writer->tmp_path = NULL;
out:
	strbuf_release(&path);
	return ret;
}

int pack_dir_sync(struct store *store, const char *name, struct error *err)
{
	struct strbuf dir = STRBUF_INIT;
	int ret;

	strbuf_addf(&dir, "%s/%.2s", store->packs_dir, name);
	ret = fs_fsync_dir(dir.buf);
	if (ret < 0)
		error_errno(err, ret, "%s", dir.buf);
	strbuf_release(&dir);
	return ret;
}

int pack_writer_commit(struct store *store, struct pack_writer *writer,
		       struct error *err)
{
	char name[33];
	int ret;

	memcpy(name, writer->name, sizeof(name));
	ret = pack_writer_sync(writer, err);
	if (ret == 0)
		ret = pack_writer_rename(store, writer, err);
	if (ret == 0)
		ret = pack_dir_sync(store, name, err);
	if (ret == 0 && (ret = fs_fsync_dir(store->packs_dir)) < 0)
		error_errno(err, ret, "%s", store->packs_dir);
	return ret;
}

void pack_writer_discard(struct pack_writer *writer)
{
	if (writer->tmp_path)
		unlink(writer->tmp_path);
	if (writer->fd >= 0)
		close(writer->fd);
	writer->fd = -1;
	free(writer->tmp_path);
	writer->tmp_path = NULL;
}

int object_find(struct store *store, const uint8_t *hash,
		struct object_location *loc, char pack_name[33])
{
	struct error err = { 0 };
	sqlite3_stmt *stmt = catalog_stmt(store,
		"SELECT o.pack, o.offset, o.stored, o.raw, o.inner, o.block, p.name"
		" FROM objects o JOIN packs p ON p.id = o.pack WHERE o.hash = ?", &err);
	const char *name;
	bool valid;
	int rc;

	if (!stmt)
		return err.code;
	sqlite3_bind_blob(stmt, 1, hash, STORE_HASH_SIZE, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(stmt);
		return rc == SQLITE_DONE ? -ENOENT : -EIO;
	}
	loc->pack = sqlite3_column_int64(stmt, 0);
	loc->offset = (uint64_t)sqlite3_column_int64(stmt, 1);
	loc->stored = (uint32_t)sqlite3_column_int64(stmt, 2);
	loc->raw = (uint32_t)sqlite3_column_int64(stmt, 3);
	loc->inner = (uint32_t)sqlite3_column_int64(stmt, 4);
	loc->block = (uint32_t)sqlite3_column_int64(stmt, 5);
	name = (const char *)sqlite3_column_text(stmt, 6);
	valid = name && pack_name_valid(name);
	if (valid)
		memcpy(pack_name, name, 33);
	sqlite3_reset(stmt);
	return valid ? 0 : -EIO;
}

/* Decodes one frame into exactly raw_size bytes; -EIO on any mismatch. */
int frame_decompress(const void *frame, size_t stored, void *out,
			    size_t raw_size)
{
	/* out holds the whole object: earlier blocks stay put for later ones. */
	static const LZ4F_decompressOptions_t options = { .stableDst = 1 };
	LZ4F_dctx *dctx;
	size_t src_size = stored, dst_size = raw_size, hint;
	int ret = 0;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
		return -ENOMEM;
	hint = LZ4F_decompress(dctx, out, &dst_size, frame, &src_size, &options);
	if (LZ4F_isError(hint) || hint != 0 || dst_size != raw_size ||
	    src_size != stored)
		ret = -EIO;
	LZ4F_freeDecompressionContext(dctx);
	return ret;
}

#define BLOCK_CACHE_SLOTS 4

struct block_cache {
	pthread_mutex_t lock;
	struct {
		int64_t pack;
		uint64_t offset;
		uint32_t size;
		uint8_t *data;
	} slots[BLOCK_CACHE_SLOTS];
	unsigned next;
};

void block_cache_free(struct block_cache *cache)
{
	int i;

	if (!cache)
		return;
	for (i = 0; i < BLOCK_CACHE_SLOTS; i++)
		free(cache->slots[i].data);
	pthread_mutex_destroy(&cache->lock);
	free(cache);
}

/* Copies the object out of a cached block; false when not cached. */
static bool block_cache_get(struct block_cache *cache,
			    const struct object_location *loc, void *out)
{
	bool found = false;
	int i;

	pthread_mutex_lock(&cache->lock);
	for (i = 0; i < BLOCK_CACHE_SLOTS && !found; i++) {
		if (cache->slots[i].data && cache->slots[i].pack == loc->pack &&
		    cache->slots[i].offset == loc->offset &&
		    cache->slots[i].size == loc->block) {
			memcpy(out, cache->slots[i].data + loc->inner, loc->raw);
			found = true;
		}
	}
	pthread_mutex_unlock(&cache->lock);
	return found;
}

static void block_cache_put(struct block_cache *cache,
			    const struct object_location *loc, uint8_t *data)
{
	unsigned slot;

	pthread_mutex_lock(&cache->lock);
	slot = cache->next++ % BLOCK_CACHE_SLOTS;
	free(cache->slots[slot].data);
	cache->slots[slot].pack = loc->pack;
	cache->slots[slot].offset = loc->offset;
	cache->slots[slot].size = loc->block;
	cache->slots[slot].data = data;
	pthread_mutex_unlock(&cache->lock);
}

static struct block_cache *block_cache_of(struct store *store)
{
	if (!store->blocks) {
		store->blocks = xcalloc(1, sizeof(*store->blocks));
		pthread_mutex_init(&store->blocks->lock, NULL);
	}
	return store->blocks;
}

/*
 * Reads the object at loc of pack name into out through the block cache
 * (keyed by loc->pack; 0: not cached).  -ENOENT, err untouched, when the pack is
 * gone: gc may have moved the object, and the caller may look again.
 */
static int object_read_at(struct store *store, const char *name, const uint8_t *hash,
			  const struct object_location *loc, void *out, struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	uint8_t *frame = NULL, *block = NULL;
	char hex[65];
	int fd = -1, ret;
	bool solo;

	hex_encode(hash, STORE_HASH_SIZE, hex);
	/* Before the cache: a cached block is copied from at inner. */
	if ((uint64_t)loc->inner + loc->raw > loc->block || loc->block > PACK_BLOCK_MAX ||
	    loc->stored > frame_bound(loc->block))
		return error_set(err, -EIO, "object %s: impossible location", hex);
	if (loc->pack && block_cache_get(block_cache_of(store), loc, out))
		return 0;
	pack_path(store, name, &path);
	fd = open(path.buf, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		if (ret != -ENOENT)
			error_errno(err, ret, "object %s: pack %s", hex, path.buf);
		goto out;
	}
	frame = xmalloc(loc->stored ? loc->stored : 1);
	ret = fs_pread_all(fd, frame, loc->stored, (off_t)loc->offset);
	if (ret < 0) {
		error_errno(err, ret, "object %s: %s", hex, path.buf);
		ret = -EIO;
		goto out;
	}
	solo = loc->inner == 0 && loc->raw == loc->block;
	block = solo ? out : xmalloc(loc->block ? loc->block : 1);
	ret = frame_decompress(frame, loc->stored, block, loc->block);
	if (ret < 0) {
		error_set(err, ret, "object %s: corrupt (in %s at offset %llu)", hex,
			  path.buf, (unsigned long long)loc->offset);
		goto out;
	}
	if (!solo) {
		memcpy(out, block + loc->inner, loc->raw);
		if (loc->pack) {
			block_cache_put(block_cache_of(store), loc, block);
			block = NULL;
		}
	}
out:
	if (fd >= 0)
		close(fd);
	free(frame);
	if (block != out)
		free(block);
	strbuf_release(&path);
	return ret;
}

/* Reads the block holding the object the catalog places, into out. */
static int object_read_block(struct store *store, const uint8_t *hash,
			     uint32_t raw_size, struct object_location *loc,
			     void *out, struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	char name[33], hex[65];
	int ret, attempt;

	hex_encode(hash, STORE_HASH_SIZE, hex);
	/*
	 * gc may move a live object to a new pack and delete the old one
	 * between our lookup and our open: look it up again then.
	 */
	for (attempt = 0; attempt < 3; attempt++) {
		ret = object_find(store, hash, loc, name);
		if (ret == -ENOENT)
			return error_set(err, -EIO, "object %s: missing from the catalog", hex);
		if (ret < 0)
			return error_errno(err, ret, "object %s", hex);
		if (loc->raw != raw_size)
			return error_set(err, -EIO, "object %s: size %u in catalog, %u expected",
					 hex, loc->raw, raw_size);
		ret = object_read_at(store, name, hash, loc, out, err);
		if (ret != -ENOENT)
			return ret;
	}
	pack_path(store, name, &path);
	error_errno(err, -ENOENT, "object %s: pack %s", hex, path.buf);
	strbuf_release(&path);
	return -EIO;
}

static int object_verify(const uint8_t *hash, const void *data, uint32_t size,
			 struct error *err)
{
	uint8_t check[STORE_HASH_SIZE];
	char hex[65];

	hash_bytes(data, size, check);
	if (!memcmp(check, hash, STORE_HASH_SIZE))
		return 0;
	hex_encode(hash, STORE_HASH_SIZE, hex);
	return error_set(err, -EIO, "object %s: corrupt (content hashes to something else)", hex);
}

int object_read_from(struct store *store, const char *name, const uint8_t *hash,
		     const struct object_location *loc, void *out, struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	char hex[65];
	int ret = object_read_at(store, name, hash, loc, out, err);

	if (ret == -ENOENT) {
		hex_encode(hash, STORE_HASH_SIZE, hex);
		pack_path(store, name, &path);
		error_errno(err, ret, "object %s: pack %s", hex, path.buf);
		strbuf_release(&path);
		return -EIO;
	}
	return ret < 0 ? ret : object_verify(hash, out, loc->raw, err);
}

int object_read(struct store *store, const uint8_t *hash, void *out,
		uint32_t raw_size, bool verify_hash, struct error *err)
{
	struct object_location loc;
	int ret = object_read_block(store, hash, raw_size, &loc, out, err);

	if (ret < 0 || !verify_hash)
		return ret;
	return object_verify(hash, out, raw_size, err);
}
