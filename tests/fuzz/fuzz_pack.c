/*
 * fuzz_pack.c - libFuzzer target for pack_record_next, the reader of the
 * record headers of pack files that fsck and gc walk (a pack may be
 * damaged on disk), with frame_decompress over each record's frame as
 * fsck does.  The input is the pack file, magic included.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "store/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Blocks beyond the largest chunk are not decompressed: no pack holds
 * one, and allocating what a damaged header says would slow the search.
 */
#define FUZZ_BLOCK_MAX CHUNK_MAX

/* One memory file for every input: the reader takes a descriptor. */
static int fuzz_pack_fd(void)
{
	static int fd = -1;

	if (fd < 0)
		fd = memfd_create("dstack-fuzz-pack", 0);
	if (fd < 0) {
		perror("memfd_create");
		exit(1);
	}
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pack_record record = { 0 };
	uint64_t pos = PACK_MAGIC_SIZE, end;
	uint8_t *frame, *block;
	int fd = fuzz_pack_fd();

	if (size < PACK_MAGIC_SIZE || memcmp(data, PACK_MAGIC, PACK_MAGIC_SIZE))
		return 0;
	if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0 || fs_write_all(fd, data, size) < 0)
		abort();
	while (pack_record_next(fd, size, &pos, &record) > 0) {
		end = record.offset + record.stored;
		if (record.offset < PACK_MAGIC_SIZE || end > size || end != pos)
			abort();
		if (record.block > FUZZ_BLOCK_MAX)
			continue;
		frame = xmalloc(record.stored);
		block = xmalloc(record.block);
		memcpy(frame, data + record.offset, record.stored);
		frame_decompress(frame, record.stored, block, record.block);
		free(block);
		free(frame);
	}
	free(record.members);
	return 0;
}
