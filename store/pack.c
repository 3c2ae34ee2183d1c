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
#include <sys/uio.h>
#include <unistd.h>

#include "store/internal.h"

static const LZ4F_preferences_t frame_preferences = {
	.frameInfo = {
		.blockSizeID = LZ4F_max4MB,
		.blockMode = LZ4F_blockIndependent,
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
	int ret;

	memset(writer, 0, sizeof(*writer));
	pack_name_random(writer->name);
	strbuf_addf(&path, "%s/pack-%s", store->tmp_dir, writer->name);
	writer->fd = open(path.buf, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
	if (writer->fd < 0) {
		ret = error_errno(err, -errno, "%s", path.buf);
		strbuf_release(&path);
		return ret;
	}
	writer->tmp_path = path.buf;
	/* Held until commit or discard: it tells store_open we are alive. */
	flock(writer->fd, LOCK_EX);
	ret = fs_write_all(writer->fd, PACK_MAGIC, PACK_MAGIC_SIZE);
	if (ret < 0) {
		error_errno(err, ret, "%s", writer->tmp_path);
		pack_writer_discard(writer);
		return ret;
	}
	writer->size = PACK_MAGIC_SIZE;
	return 0;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

int pack_writer_append(struct pack_writer *writer, const uint8_t *hash,
		       uint32_t raw_size, const void *frame, uint32_t stored,
		       uint64_t *offset, struct error *err)
{
	uint8_t header[PACK_RECORD_HEADER];
	struct iovec iov[2];
	size_t want = sizeof(header) + stored, done = 0;
	ssize_t n;

	memcpy(header, hash, STORE_HASH_SIZE);
	put_le32(header + STORE_HASH_SIZE, raw_size);
	put_le32(header + STORE_HASH_SIZE + 4, stored);
	iov[0].iov_base = header;
	iov[0].iov_len = sizeof(header);
	iov[1].iov_base = (void *)frame;
	iov[1].iov_len = stored;
	n = writev(writer->fd, iov, 2);
	if (n < 0 && errno != EINTR)
		return error_errno(err, -errno, "%s", writer->tmp_path);
	if (n > 0)
		done = (size_t)n;
	if (done < want) {
		/* Rare short write (signal, quota edge): finish it plainly. */
		int ret;

		if (done < sizeof(header)) {
			ret = fs_write_all(writer->fd, header + done, sizeof(header) - done);
			done = sizeof(header);
			if (ret == 0)
				ret = fs_write_all(writer->fd, frame, stored);
		} else {
			ret = fs_write_all(writer->fd,
					   (const uint8_t *)frame + (done - sizeof(header)),
					   want - done);
		}
		if (ret < 0)
			return error_errno(err, ret, "%s", writer->tmp_path);
	}
	*offset = writer->size + sizeof(header);
	writer->size += want;
	/* Start writeback now so the final fsync finds little left to do. */
	if (writer->size / PACK_TARGET_SIZE != (writer->size - want) / PACK_TARGET_SIZE)
		sync_file_range(writer->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	return 0;
}

int pack_writer_commit(struct store *store, struct pack_writer *writer,
		       struct error *err)
{
	struct strbuf path = STRBUF_INIT;
	struct strbuf dir = STRBUF_INIT;
	int ret;

	if (fsync(writer->fd) < 0) {
		ret = error_errno(err, -errno, "%s", writer->tmp_path);
		goto out;
	}
	strbuf_addf(&dir, "%s/%.2s", store->packs_dir, writer->name);
	if (mkdir(dir.buf, 0700) < 0 && errno != EEXIST) {
		ret = error_errno(err, -errno, "%s", dir.buf);
		goto out;
	}
	pack_path(store, writer->name, &path);
	if (rename(writer->tmp_path, path.buf) < 0) {
		ret = error_errno(err, -errno, "%s", path.buf);
		goto out;
	}
	ret = fs_fsync_dir(dir.buf);
	if (ret == 0)
		ret = fs_fsync_dir(store->packs_dir);
	if (ret < 0) {
		error_errno(err, ret, "%s", dir.buf);
		unlink(path.buf);
		goto out;
	}
	close(writer->fd);
	writer->fd = -1;
	free(writer->tmp_path);
	writer->tmp_path = NULL;
out:
	strbuf_release(&path);
	strbuf_release(&dir);
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
		"SELECT o.pack, o.offset, o.stored, o.raw, p.name"
		" FROM objects o JOIN packs p ON p.id = o.pack WHERE o.hash = ?", &err);
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
	snprintf(pack_name, 33, "%s", sqlite3_column_text(stmt, 4));
	sqlite3_reset(stmt);
	return 0;
}

int frame_decompress(const void *frame, size_t stored, void *out,
			    size_t raw_size)
{
	LZ4F_dctx *dctx;
	size_t src_size = stored, dst_size = raw_size, hint;
	int ret = 0;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
		return -ENOMEM;
	hint = LZ4F_decompress(dctx, out, &dst_size, frame, &src_size, NULL);
	if (LZ4F_isError(hint) || hint != 0 || dst_size != raw_size ||
	    src_size != stored)
		ret = -EIO;
	LZ4F_freeDecompressionContext(dctx);
	return ret;
}

int object_read(struct store *store, const uint8_t *hash, void *out,
		uint32_t raw_size, bool verify_hash, struct error *err)
{
	struct object_location loc;
	struct strbuf path = STRBUF_INIT;
	char name[33], hex[65];
	uint8_t *frame = NULL;
	uint8_t check[STORE_HASH_SIZE];
	int fd = -1, ret, attempt;

	hex_encode(hash, STORE_HASH_SIZE, hex);
	/*
	 * gc may move a live object to a new pack and delete the old one
	 * between our lookup and our open: look it up again then.
	 */
	for (attempt = 0; attempt < 3; attempt++) {
		ret = object_find(store, hash, &loc, name);
		if (ret == -ENOENT) {
			ret = error_set(err, -EIO, "object %s: missing from the catalog", hex);
			goto out;
		}
		if (ret < 0) {
			ret = error_errno(err, ret, "object %s", hex);
			goto out;
		}
		pack_path(store, name, &path);
		fd = open(path.buf, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT)
			break;
	}
	if (fd < 0) {
		ret = error_errno(err, -errno, "object %s: pack %s", hex, path.buf);
		if (ret == -ENOENT)
			ret = -EIO;
		goto out;
	}
	if (loc.raw != raw_size) {
		ret = error_set(err, -EIO, "object %s: size %u in catalog, %u expected",
				hex, loc.raw, raw_size);
		goto out;
	}
	frame = xmalloc(loc.stored);
	ret = fs_pread_all(fd, frame, loc.stored, (off_t)loc.offset);
	if (ret < 0) {
		error_errno(err, ret, "object %s: %s", hex, path.buf);
		ret = -EIO;
		goto out;
	}
	ret = frame_decompress(frame, loc.stored, out, raw_size);
	if (ret == 0 && verify_hash) {
		hash_bytes(out, raw_size, check);
		if (memcmp(check, hash, STORE_HASH_SIZE))
			ret = -EIO;
	}
	if (ret < 0)
		error_set(err, ret, "object %s: corrupt (in %s at offset %llu)", hex,
			  path.buf, (unsigned long long)loc.offset);
out:
	if (fd >= 0)
		close(fd);
	free(frame);
	strbuf_release(&path);
	return ret;
}
