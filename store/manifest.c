/*
 * manifest.c - staging: how a node that must not open the catalog (it
 * sits on NFS, and SQLite must not) reads a job's inputs from the packs
 * and stores its outputs into packs of its own, told and telling where
 * each chunk lies by a manifest.
 *
 * A manifest is text, a section per tree:
 *
 *	dstack-manifest 1
 *	e MODE SIZE PATH [TARGET]		an entry (MODE octal, st_mode)
 *	c HASH SIZE PACK OFFSET STORED INNER BLOCK	a chunk of the file before
 *	end ENTRIES
 *
 * Fields are separated by one space; in PATH and TARGET a space, a
 * '%', a control byte or a byte above 0x7e is written %XX, so any name
 * survives (a newline, invalid UTF-8).  The end line tells a whole section from a truncated one;
 * sections may be concatenated, later entries replacing earlier ones.
 * A manifest is untrusted input: everything is checked before use, and
 * every chunk is verified against its SHA-256.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/hashset.h"
#include "store/internal.h"

#define MANIFEST_HEADER "dstack-manifest"
#define MANIFEST_VERSION 1

void manifest_begin(struct manifest_writer *writer, struct strbuf *out)
{
	writer->out = out;
	writer->entries = 0;
	strbuf_addf(out, "%s %d\n", MANIFEST_HEADER, MANIFEST_VERSION);
}

static void manifest_add_name(struct strbuf *out, const char *name)
{
	const unsigned char *p;

	for (p = (const unsigned char *)name; *p; p++) {
		if (*p <= ' ' || *p >= 0x7f || *p == '%')
			strbuf_addf(out, "%%%02X", *p);
		else
			strbuf_add(out, p, 1);
	}
}

void manifest_add_entry(struct manifest_writer *writer, const char *path, mode_t mode,
			uint64_t size, const char *target)
{
	strbuf_addf(writer->out, "e %o %" PRIu64 " ", (unsigned)mode, size);
	manifest_add_name(writer->out, path);
	if (S_ISLNK(mode)) {
		strbuf_addstr(writer->out, " ");
		manifest_add_name(writer->out, target ? target : "");
	}
	strbuf_addstr(writer->out, "\n");
	writer->entries++;
}

void manifest_add_chunk(struct manifest_writer *writer, const uint8_t *hash,
			const char *pack, const struct object_location *loc)
{
	char hex[65];

	hex_encode(hash, STORE_HASH_SIZE, hex);
	strbuf_addf(writer->out, "c %s %u %s %" PRIu64 " %u %u %u\n", hex, loc->raw, pack,
		    loc->offset, loc->stored, loc->inner, loc->block);
}

void manifest_end(struct manifest_writer *writer)
{
	strbuf_addf(writer->out, "end %zu\n", writer->entries);
}

/* A chunk as a manifest places it; loc.pack indexes manifest.packs. */
struct manifest_chunk {
	uint8_t hash[STORE_HASH_SIZE];
	struct object_location loc;
};

struct manifest_entry {
	char *path, *target;
	mode_t mode;
	uint64_t size;
	size_t first_chunk, chunk_count;
	uint8_t *records;	/* chunk records (hash, le32 size), for a tree */
};

struct manifest {
	struct manifest_entry *entries;
	size_t entry_count, entry_alloc;
	struct manifest_chunk *chunks;
	size_t chunk_count, chunk_alloc;
	char (*packs)[33];
	size_t pack_count;
};

static void manifest_release(struct manifest *m)
{
	size_t i;

	for (i = 0; i < m->entry_count; i++) {
		free(m->entries[i].path);
		free(m->entries[i].target);
		free(m->entries[i].records);
	}
	free(m->entries);
	free(m->chunks);
	free(m->packs);
	memset(m, 0, sizeof(*m));
}

/* Decodes a %XX-escaped name; NULL when it is empty or malformed (a NUL, a raw control byte). */
static char *manifest_name(const char *field)
{
	struct strbuf out = STRBUF_INIT;
	const unsigned char *p;

	for (p = (const unsigned char *)field; *p; p++) {
		int hi, lo;

		if (*p <= ' ' || *p >= 0x7f)
			goto bad;
		if (*p != '%') {
			strbuf_add(&out, p, 1);
			continue;
		}
		hi = hex_value((char)p[1]);
		lo = hi < 0 ? -1 : hex_value((char)p[2]);
		if (lo < 0 || (hi == 0 && lo == 0))
			goto bad;
		strbuf_addf(&out, "%c", hi << 4 | lo);
		p += 2;
	}
	if (!out.len)
		goto bad;
	return out.buf;
bad:
	strbuf_release(&out);
	return NULL;
}

/* A decimal (base 10) or octal (base 8) number field, at most max. */
static bool manifest_number(const char *field, int base, uint64_t max, uint64_t *out)
{
	uint64_t value = 0;
	const char *p;

	if (!*field)
		return false;
	for (p = field; *p; p++) {
		uint64_t digit = (uint64_t)(*p - '0');

		if (*p < '0' || *p >= '0' + base || value > (max - digit) / (uint64_t)base)
			return false;
		value = value * (uint64_t)base + digit;
	}
	*out = value;
	return true;
}

static size_t manifest_pack_index(struct manifest *m, const char *name)
{
	size_t i;

	/* Chunks come in pack order mostly: the last pack first. */
	for (i = m->pack_count; i-- > 0;)
		if (!strcmp(m->packs[i], name))
			return i;
	m->packs = xrealloc(m->packs, (m->pack_count + 1) * sizeof(*m->packs));
	memcpy(m->packs[m->pack_count], name, 33);
	return m->pack_count++;
}

static int manifest_parse_entry(struct manifest *m, char **f, size_t n, struct error *err,
				size_t line)
{
	struct manifest_entry *entry;
	uint64_t mode, size;
	char *path, *target = NULL;

	if (n < 4 || n > 5 || !manifest_number(f[1], 8, 0177777, &mode) ||
	    !manifest_number(f[2], 10, INT64_MAX, &size))
		return error_set(err, -EINVAL, "manifest line %zu: malformed entry", line);
	path = manifest_name(f[3]);
	if (!path || !path_is_contained(path)) {
		free(path);
		return error_set(err, -EINVAL, "manifest line %zu: unsafe or malformed path '%s'",
				 line, f[3]);
	}
	if (S_ISLNK(mode) && n == 5)
		target = manifest_name(f[4]);
	if ((S_ISLNK(mode) && (!target || size != strlen(target))) ||
	    (S_ISDIR(mode) && (n != 4 || size)) || (S_ISREG(mode) && n != 4) ||
	    (!S_ISLNK(mode) && !S_ISDIR(mode) && !S_ISREG(mode))) {
		free(path);
		free(target);
		return error_set(err, -EINVAL, "manifest line %zu: %s: malformed entry", line, f[3]);
	}
	if (m->entry_count == m->entry_alloc) {
		m->entry_alloc = m->entry_alloc ? 2 * m->entry_alloc : 64;
		m->entries = xrealloc(m->entries, m->entry_alloc * sizeof(*m->entries));
	}
	entry = &m->entries[m->entry_count++];
	memset(entry, 0, sizeof(*entry));
	entry->path = path;
	entry->target = target;
	entry->mode = (mode_t)mode;
	entry->size = size;
	entry->first_chunk = m->chunk_count;
	return 0;
}

static int manifest_parse_chunk(struct manifest *m, char **f, size_t n, struct error *err,
				size_t line)
{
	struct manifest_entry *entry = m->entry_count ? &m->entries[m->entry_count - 1] : NULL;
	struct manifest_chunk *chunk;
	uint64_t raw, offset, stored, inner, block;
	size_t i;

	if (!entry || !S_ISREG(entry->mode))
		return error_set(err, -EINVAL, "manifest line %zu: a chunk of no file", line);
	if (n != 8 || strlen(f[1]) != 2 * STORE_HASH_SIZE || !pack_name_valid(f[3]) ||
	    !manifest_number(f[2], 10, PACK_BLOCK_MAX, &raw) ||
	    !manifest_number(f[4], 10, INT64_MAX, &offset) ||
	    !manifest_number(f[5], 10, UINT32_MAX, &stored) ||
	    !manifest_number(f[6], 10, PACK_BLOCK_MAX, &inner) ||
	    !manifest_number(f[7], 10, PACK_BLOCK_MAX, &block) ||
	    inner + raw > block || stored > frame_bound(block))
		return error_set(err, -EINVAL, "manifest line %zu: %s: malformed chunk",
				 line, entry->path);
	if (m->chunk_count == m->chunk_alloc) {
		m->chunk_alloc = m->chunk_alloc ? 2 * m->chunk_alloc : 256;
		m->chunks = xrealloc(m->chunks, m->chunk_alloc * sizeof(*m->chunks));
	}
	chunk = &m->chunks[m->chunk_count];
	for (i = 0; i < STORE_HASH_SIZE; i++) {
		int hi = hex_value(f[1][2 * i]), lo = hex_value(f[1][2 * i + 1]);

		if (hi < 0 || lo < 0)
			return error_set(err, -EINVAL, "manifest line %zu: malformed hash", line);
		chunk->hash[i] = (uint8_t)(hi << 4 | lo);
	}
	chunk->loc.pack = (int64_t)manifest_pack_index(m, f[3]);
	chunk->loc.offset = offset;
	chunk->loc.stored = (uint32_t)stored;
	chunk->loc.raw = (uint32_t)raw;
	chunk->loc.inner = (uint32_t)inner;
	chunk->loc.block = (uint32_t)block;
	m->chunk_count++;
	entry->chunk_count++;
	return 0;
}

/* The chunks of the entry before must hold its size. */
static int manifest_check_last(struct manifest *m, struct error *err, size_t line)
{
	struct manifest_entry *entry;
	uint64_t sum = 0;
	size_t i;

	if (!m->entry_count || !S_ISREG(m->entries[m->entry_count - 1].mode))
		return 0;
	entry = &m->entries[m->entry_count - 1];
	for (i = 0; i < entry->chunk_count; i++)
		sum += m->chunks[entry->first_chunk + i].loc.raw;
	if (sum != entry->size)
		return error_set(err, -EINVAL, "manifest line %zu: %s: chunks hold %" PRIu64
				 " bytes, entry says %" PRIu64, line, entry->path, sum, entry->size);
	return 0;
}

/* Reads every section of text into m, checking all but the packs. */
static int manifest_parse(const char *text, size_t len, struct manifest *m,
			  struct error *err)
{
	char *copy = xmalloc(len + 1), *line, *next, *f[9];
	size_t line_no = 0, section_start = 0, n;
	uint64_t count;
	bool in_section = false;
	int ret = 0;

	memset(m, 0, sizeof(*m));
	memcpy(copy, text, len);
	copy[len] = '\0';
	if (memchr(text, '\0', len)) {
		ret = error_set(err, -EINVAL, "manifest: holds a NUL byte");
		goto out;
	}
	for (line = copy; ret == 0 && line < copy + len; line = next) {
		next = strchr(line, '\n');
		if (!next) {
			ret = error_set(err, -EINVAL, "manifest line %zu: truncated", line_no + 1);
			break;
		}
		*next++ = '\0';
		line_no++;
		n = str_split_fields(line, ' ', f, 8);
		if (!in_section) {
			if (n != 2 || strcmp(f[0], MANIFEST_HEADER))
				ret = error_set(err, -EINVAL, "manifest line %zu: not a dstack manifest",
						line_no);
			else if (strcmp(f[1], "1"))
				ret = error_set(err, -EINVAL, "manifest line %zu: version %s is not supported (1 is)",
						line_no, f[1]);
			in_section = true;
			section_start = m->entry_count;
		} else if (!strcmp(f[0], "e")) {
			ret = manifest_check_last(m, err, line_no);
			if (ret == 0)
				ret = manifest_parse_entry(m, f, n, err, line_no);
		} else if (!strcmp(f[0], "c")) {
			ret = manifest_parse_chunk(m, f, n, err, line_no);
		} else if (!strcmp(f[0], "end") && n == 2) {
			ret = manifest_check_last(m, err, line_no);
			if (ret == 0 && (!manifest_number(f[1], 10, SIZE_MAX, &count) ||
					 count != m->entry_count - section_start))
				ret = error_set(err, -EINVAL, "manifest line %zu: %zu entries, end says %s",
						line_no, m->entry_count - section_start, f[1]);
			in_section = false;
		} else {
			ret = error_set(err, -EINVAL, "manifest line %zu: malformed", line_no);
		}
	}
	if (ret == 0 && (in_section || !line_no))
		ret = error_set(err, -EINVAL, "manifest: truncated (no end line)");
out:
	free(copy);
	if (ret < 0)
		manifest_release(m);
	return ret;
}

/* Writing a manifest's files: the packs alone, each chunk verified. */
struct manifest_extract {
	struct store *store;
	struct manifest *manifest;
	const struct manifest_entry *entry;	/* the one download_add writes */
	uint8_t *buf;
	size_t cap;
};

static int manifest_write_file(void *arg, const struct store_entry *entry, int fd,
			       struct error *err)
{
	struct manifest_extract *ctx = arg;
	size_t i;
	int ret;

	for (i = 0; i < ctx->entry->chunk_count; i++) {
		const struct manifest_chunk *chunk =
			&ctx->manifest->chunks[ctx->entry->first_chunk + i];
		struct object_location loc = chunk->loc;

		if (loc.raw > ctx->cap) {
			free(ctx->buf);
			ctx->cap = loc.raw;
			ctx->buf = xmalloc(ctx->cap);
		}
		/* Pack ids for the block cache: index + 1, never 0. */
		loc.pack = chunk->loc.pack + 1;
		ret = object_read_from(ctx->store, ctx->manifest->packs[chunk->loc.pack],
				       chunk->hash, &loc, ctx->buf, err);
		if (ret < 0)
			return ret;
		ret = fs_write_all(fd, ctx->buf, loc.raw);
		if (ret < 0)
			return error_errno(err, ret, "%s", entry->path);
	}
	return 0;
}

int store_manifest_extract(const char *home, const char *manifest, size_t len, const char *out,
			   struct error *err)
{
	struct manifest m;
	struct manifest_extract ctx = { .manifest = &m };
	struct download *download;
	struct store_entry entry;
	bool locked = false;
	size_t i;
	int ret;

	ret = manifest_parse(manifest, len, &m, err);
	if (ret < 0)
		return ret;
	ret = store_open_packs(&ctx.store, home, false, err);
	if (ret < 0)
		goto out;
	/* gc must not move what we read; without gc.lock there is no gc to fear. */
	if (ctx.store->gc_lock_fd >= 0) {
		ret = store_lock_shared(ctx.store, err);
		locked = ret == 0;
	}
	if (ret == 0)
		ret = download_open(&download, out, manifest_write_file, &ctx, err);
	if (ret < 0)
		goto out;
	for (i = 0; i < m.entry_count && ret == 0; i++) {
		memset(&entry, 0, sizeof(entry));
		entry.job = -1;
		entry.artifact = "";
		entry.path = m.entries[i].path;
		entry.mode = m.entries[i].mode;
		entry.size = m.entries[i].size;
		entry.target = m.entries[i].target;
		ctx.entry = &m.entries[i];
		ret = download_add(download, &entry);
	}
	ret = download_close(download, ret, err);
out:
	if (locked)
		store_unlock(ctx.store);
	store_close(ctx.store);
	free(ctx.buf);
	manifest_release(&m);
	return ret;
}

/* Describing a stored tree or run: every chunk found in the catalog. */
struct manifest_describe {
	struct store *store;
	struct manifest_writer writer;
	struct strbuf path;
	struct error *err;
};

static int manifest_describe_entry(void *arg, const struct store_entry *entry)
{
	struct manifest_describe *ctx = arg;
	struct object_location loc;
	char pack[33], hex[65];
	size_t i;
	int ret;

	strbuf_reset(&ctx->path);
	strbuf_addstr(&ctx->path, entry->artifact);
	if (*entry->path)
		strbuf_addf(&ctx->path, "%s%s", ctx->path.len ? "/" : "", entry->path);
	/* The root of a tree is the output folder itself. */
	if (!ctx->path.len)
		return 0;
	manifest_add_entry(&ctx->writer, ctx->path.buf, entry->mode, entry->size, entry->target);
	for (i = 0; S_ISREG(entry->mode) && i < entry->chunk_count; i++) {
		const uint8_t *record = entry->chunks + i * STORE_CHUNK_RECORD_SIZE;

		ret = object_find(ctx->store, record, &loc, pack);
		if (ret == 0 && loc.raw != le32_get(record + STORE_HASH_SIZE))
			ret = -EIO;
		if (ret < 0) {
			hex_encode(record, STORE_HASH_SIZE, hex);
			return error_set(ctx->err, ret == -ENOENT ? -EIO : ret,
					 "%s: object %s: missing from the catalog or of the wrong size",
					 ctx->path.buf, hex);
		}
		manifest_add_chunk(&ctx->writer, record, pack, &loc);
	}
	return 0;
}

typedef int manifest_walk_fn(struct store *store, int64_t id, store_entry_fn *fn, void *ctx,
			     struct error *err);

static int manifest_describe(struct store *store, manifest_walk_fn *walk, int64_t id,
			     struct strbuf *manifest, struct error *err)
{
	struct manifest_describe ctx = { .store = store, .err = err };
	size_t start = manifest->len;
	int ret;

	manifest_begin(&ctx.writer, manifest);
	ret = walk(store, id, manifest_describe_entry, &ctx, err);
	if (ret == 0)
		manifest_end(&ctx.writer);
	else if (manifest->buf) {
		/* Half a manifest must not be mistaken for one. */
		manifest->len = start;
		manifest->buf[start] = '\0';
	}
	strbuf_release(&ctx.path);
	return ret;
}

int store_manifest_tree(struct store *store, int64_t tree, struct strbuf *manifest,
			struct error *err)
{
	return manifest_describe(store, tree_entries, tree, manifest, err);
}

int store_manifest_run(struct store *store, int64_t run, struct strbuf *manifest,
		       struct error *err)
{
	return manifest_describe(store, store_run_entries, run, manifest, err);
}

struct staged_member {
	uint64_t offset;
	uint32_t inner, raw, stored, block;
	uint8_t hash[STORE_HASH_SIZE];
};

/* Reads the member lists of a staged pack (not its frames). */
static int staged_pack_scan(struct store *store, const char *name, struct staged_member **out,
			    size_t *count, uint64_t *size, struct error *err)
{
	struct pack_record record = { 0 };
	struct strbuf path = STRBUF_INIT;
	struct staged_member *members = NULL;
	char magic[PACK_MAGIC_SIZE];
	uint64_t pos = PACK_MAGIC_SIZE;
	size_t n = 0, i;
	struct stat st;
	int fd, ret;

	pack_path(store, name, &path);
	fd = open(path.buf, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = error_errno(err, -errno, "manifest: pack %s", path.buf);
		goto out;
	}
	if (st.st_size < PACK_MAGIC_SIZE || fs_pread_all(fd, magic, sizeof(magic), 0) ||
	    memcmp(magic, PACK_MAGIC, PACK_MAGIC_SIZE)) {
		ret = error_set(err, -EIO, "manifest: %s: not a pack file", path.buf);
		goto out;
	}
	while ((ret = pack_record_next(fd, (uint64_t)st.st_size, &pos, &record)) > 0) {
		members = xrealloc(members, (n + record.count) * sizeof(*members));
		for (i = 0; i < record.count; i++, n++) {
			members[n].offset = record.offset;
			members[n].stored = record.stored;
			members[n].block = record.block;
			members[n].inner = record.members[i].inner;
			members[n].raw = record.members[i].raw;
			memcpy(members[n].hash, record.members[i].hash, STORE_HASH_SIZE);
		}
	}
	if (ret < 0)
		error_set(err, -EIO, "manifest: %s: malformed record at offset %" PRIu64,
			  path.buf, pos);
	*size = (uint64_t)st.st_size;
out:
	if (fd >= 0)
		close(fd);
	free(record.members);
	strbuf_release(&path);
	if (ret < 0) {
		free(members);
		return ret;
	}
	*out = members;
	*count = n;
	return 0;
}

static int staged_member_compare(const void *a, const void *b)
{
	const struct staged_member *x = a, *y = b;

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return x->inner < y->inner ? -1 : x->inner > y->inner;
}

struct staged {
	struct staged_member *members;
	size_t count;
	uint64_t size;
	size_t recorded;	/* objects the import records in it */
	int64_t id;		/* its catalog id, once recorded */
};

/* Entries in tree order, for tree_record. */
struct import_order {
	struct manifest *manifest;
	size_t *order;
};

static void import_entry_at(void *arg, size_t i, struct store_entry *out,
			    struct strbuf *scratch)
{
	struct import_order *ctx = arg;
	struct manifest_entry *entry = &ctx->manifest->entries[ctx->order[i]];

	(void)scratch;
	out->path = entry->path;
	out->mode = entry->mode;
	out->size = entry->size;
	out->target = entry->target;
	out->chunks = entry->records;
	out->chunk_count = entry->chunk_count;
}

static int import_order_compare(const void *a, const void *b, void *arg)
{
	const struct manifest *m = arg;

	return tree_path_compare(m->entries[*(const size_t *)a].path,
				 m->entries[*(const size_t *)b].path);
}

/* Sorts the entries as a tree has them; refuses a path twice or a missing parent. */
static int import_sort(struct manifest *m, size_t **out, struct error *err)
{
	size_t *order = xmalloc((m->entry_count ? m->entry_count : 1) * sizeof(*order)), i;
	struct hashset dirs = { 0 };
	uint8_t key[STORE_HASH_SIZE];
	int ret = 0;

	for (i = 0; i < m->entry_count; i++)
		order[i] = i;
	qsort_r(order, m->entry_count, sizeof(*order), import_order_compare, m);
	for (i = 0; i < m->entry_count && ret == 0; i++) {
		struct manifest_entry *entry = &m->entries[order[i]];
		const char *slash = strrchr(entry->path, '/');

		/* Parents sort first: a folder is known before its children. */
		if (slash)
			hash_bytes(entry->path, (size_t)(slash - entry->path), key);
		if (i && !strcmp(entry->path, m->entries[order[i - 1]].path))
			ret = error_set(err, -EINVAL, "manifest: %s: listed twice", entry->path);
		else if (slash && !hashset_contains(&dirs, key))
			ret = error_set(err, -EINVAL, "manifest: %s: its folder is not listed",
					entry->path);
		if (ret == 0 && S_ISDIR(entry->mode)) {
			hash_bytes(entry->path, strlen(entry->path), key);
			hashset_add(&dirs, key);
		}
	}
	hashset_release(&dirs);
	if (ret < 0) {
		free(order);
		return ret;
	}
	*out = order;
	return 0;
}

/* What the catalog says of an object: -ENOENT when it has none. */
static int import_lookup(struct store *store, const uint8_t *hash, uint32_t *raw,
			 struct error *err)
{
	sqlite3_stmt *stmt = catalog_stmt(store, "SELECT raw FROM objects WHERE hash = ?", err);
	int rc;

	if (!stmt)
		return err->code;
	sqlite3_bind_blob(stmt, 1, hash, STORE_HASH_SIZE, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		*raw = (uint32_t)sqlite3_column_int64(stmt, 0);
	sqlite3_reset(stmt);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : catalog_error(store, rc, "look up object", err);
}

static int import_step(struct store *store, sqlite3_stmt *stmt, const char *what,
		       struct error *err)
{
	int rc = sqlite3_step(stmt);

	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? 0 : catalog_error(store, rc, what, err);
}

/* Records the new objects, and the packs holding them, in the open transaction. */
static int import_record(struct store *store, struct manifest *m, struct staged *packs,
			 const bool *record, struct error *err)
{
	sqlite3_stmt *stmt;
	size_t i;
	int rc, ret = 0;

	for (i = 0; i < m->pack_count && ret == 0; i++) {
		if (!packs[i].recorded)
			continue;
		stmt = catalog_stmt(store, "INSERT INTO packs(name, size, unnamed) VALUES (?, ?, ?)",
				    err);
		if (!stmt)
			return err->code;
		sqlite3_bind_text(stmt, 1, m->packs[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, (int64_t)packs[i].size);
		sqlite3_bind_int64(stmt, 3, (int64_t)(packs[i].count - packs[i].recorded));
		rc = sqlite3_step(stmt);
		sqlite3_reset(stmt);
		if ((rc & 0xff) == SQLITE_CONSTRAINT)
			ret = error_set(err, -EEXIST, "manifest: pack %s: already in the catalog",
					m->packs[i]);
		else if (rc != SQLITE_DONE)
			ret = catalog_error(store, rc, "record pack", err);
		packs[i].id = sqlite3_last_insert_rowid(store->db);
	}
	for (i = 0; i < m->chunk_count && ret == 0; i++) {
		const struct manifest_chunk *chunk = &m->chunks[i];
		struct staged *pack = &packs[chunk->loc.pack];

		if (!record[i])
			continue;
		/* Another writer may have stored the same chunk meanwhile. */
		stmt = catalog_stmt(store,
				    "INSERT OR IGNORE INTO objects(hash, pack, offset, stored, raw, inner, block)"
				    " VALUES (?, ?, ?, ?, ?, ?, ?)", err);
		if (!stmt)
			return err->code;
		sqlite3_bind_blob(stmt, 1, chunk->hash, STORE_HASH_SIZE, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, pack->id);
		sqlite3_bind_int64(stmt, 3, (int64_t)chunk->loc.offset);
		sqlite3_bind_int64(stmt, 4, chunk->loc.stored);
		sqlite3_bind_int64(stmt, 5, chunk->loc.raw);
		sqlite3_bind_int64(stmt, 6, chunk->loc.inner);
		sqlite3_bind_int64(stmt, 7, chunk->loc.block);
		ret = import_step(store, stmt, "record object", err);
		if (ret == 0 && !sqlite3_changes(store->db)) {
			/* Then that member is one more no row names: gc reclaims it. */
			stmt = catalog_stmt(store, "UPDATE packs SET unnamed = unnamed + 1 WHERE id = ?",
					    err);
			if (!stmt)
				return err->code;
			sqlite3_bind_int64(stmt, 1, pack->id);
			ret = import_step(store, stmt, "record pack", err);
		}
	}
	return ret;
}

/*
 * Checks every chunk against its pack's records and decides which to
 * record: each new object once, its bytes verified; one the catalog has
 * keeps its place, and must have the size the manifest says.
 */
static int import_check(struct store *store, struct manifest *m, struct staged *packs,
			bool *record, struct error *err)
{
	/* Block cache keys of their own, so a bundle is decompressed once. */
	static int64_t next_key = -1;
	int64_t key_base = __atomic_fetch_sub(&next_key, (int64_t)m->pack_count,
					      __ATOMIC_RELAXED);
	struct hashset seen = { 0 };
	uint8_t *buf = xmalloc(PACK_BLOCK_MAX);
	char hex[65];
	size_t i;
	int ret = 0;

	for (i = 0; i < m->pack_count && ret == 0; i++) {
		ret = staged_pack_scan(store, m->packs[i], &packs[i].members, &packs[i].count,
				       &packs[i].size, err);
		if (ret == 0)
			qsort(packs[i].members, packs[i].count, sizeof(*packs[i].members),
			      staged_member_compare);
	}
	for (i = 0; i < m->chunk_count && ret == 0; i++) {
		const struct manifest_chunk *chunk = &m->chunks[i];
		struct staged *pack = &packs[chunk->loc.pack];
		struct staged_member key = { .offset = chunk->loc.offset, .inner = chunk->loc.inner };
		const struct staged_member *member;
		struct object_location loc = chunk->loc;
		uint32_t raw = 0;

		hex_encode(chunk->hash, STORE_HASH_SIZE, hex);
		member = bsearch(&key, pack->members, pack->count, sizeof(key), staged_member_compare);
		if (!member || memcmp(member->hash, chunk->hash, STORE_HASH_SIZE) ||
		    member->raw != loc.raw || member->stored != loc.stored ||
		    member->block != loc.block) {
			ret = error_set(err, -EINVAL, "manifest: object %s: not in pack %s at offset %" PRIu64,
					hex, m->packs[chunk->loc.pack], loc.offset);
			break;
		}
		if (!hashset_add(&seen, chunk->hash))
			continue;
		ret = import_lookup(store, chunk->hash, &raw, err);
		if (ret == 0) {
			if (raw != loc.raw)
				ret = error_set(err, -EINVAL, "manifest: object %s: size %u, the catalog has %u",
						hex, loc.raw, raw);
			continue;
		}
		if (ret != -ENOENT)
			break;
		/* New to the catalog: its bytes must be what its name says. */
		loc.pack = key_base - chunk->loc.pack;
		ret = object_read_from(store, m->packs[chunk->loc.pack], chunk->hash, &loc, buf, err);
		if (ret < 0)
			break;
		record[i] = true;
		pack->recorded++;
	}
	hashset_release(&seen);
	free(buf);
	return ret;
}

int store_stage_import(struct store_ingest *ingest, const char *manifest, size_t len,
		       int64_t *tree, struct error *err)
{
	struct store *store = ingest_store(ingest);
	struct import_order order = { 0 };
	struct staged *packs = NULL;
	bool *record = NULL;
	struct manifest m;
	size_t i, j;
	int ret;

	ret = manifest_parse(manifest, len, &m, err);
	if (ret < 0)
		return ret;
	order.manifest = &m;
	ret = import_sort(&m, &order.order, err);
	if (ret < 0)
		goto out;
	for (i = 0; i < m.entry_count; i++) {
		struct manifest_entry *entry = &m.entries[i];

		entry->records = xmalloc(entry->chunk_count * STORE_CHUNK_RECORD_SIZE + 1);
		for (j = 0; j < entry->chunk_count; j++) {
			uint8_t *r = entry->records + j * STORE_CHUNK_RECORD_SIZE;

			memcpy(r, m.chunks[entry->first_chunk + j].hash, STORE_HASH_SIZE);
			le32_put(r + STORE_HASH_SIZE, m.chunks[entry->first_chunk + j].loc.raw);
		}
	}
	packs = xcalloc(m.pack_count + 1, sizeof(*packs));
	record = xcalloc(m.chunk_count + 1, sizeof(*record));
	/* Reading packs outside the transaction: other writers go on meanwhile. */
	ret = import_check(store, &m, packs, record, err);
	if (ret < 0)
		goto out;
	ret = catalog_begin(store, err);
	if (ret < 0)
		goto out;
	ret = import_record(store, &m, packs, record, err);
	if (ret == 0)
		ret = tree_record(store, import_entry_at, &order, m.entry_count, tree, err);
	if (ret == 0)
		ret = catalog_commit(store, err);
	else
		catalog_rollback(store);
out:
	for (i = 0; packs && i < m.pack_count; i++)
		free(packs[i].members);
	free(packs);
	free(record);
	free(order.order);
	manifest_release(&m);
	return ret;
}
