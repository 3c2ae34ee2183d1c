/*
 * hashset.c - the set of hashes behind ingest's "seen" table, fsck and gc.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/lib.h"
#include "store/hashset.h"

static size_t hashset_index(const uint8_t *hash, size_t cap)
{
	uint64_t h;

	memcpy(&h, hash, sizeof(h));
	return (size_t)h & (cap - 1);
}

bool hashset_contains(const struct hashset *set, const uint8_t *hash)
{
	size_t i;

	if (!set->cap)
		return false;
	i = hashset_index(hash, set->cap);
	while (set->used[i]) {
		if (!memcmp(set->keys[i], hash, 32))
			return true;
		i = (i + 1) & (set->cap - 1);
	}
	return false;
}

static void hashset_grow(struct hashset *set)
{
	struct hashset bigger = { 0 };
	size_t i;

	bigger.cap = set->cap ? 2 * set->cap : 1024;
	bigger.keys = xmalloc(bigger.cap * 32);
	bigger.used = xcalloc(bigger.cap, 1);
	for (i = 0; i < set->cap; i++)
		if (set->used[i])
			hashset_add(&bigger, set->keys[i]);
	hashset_release(set);
	*set = bigger;
}

bool hashset_add(struct hashset *set, const uint8_t *hash)
{
	size_t i;

	if (2 * (set->count + 1) > set->cap)
		hashset_grow(set);
	i = hashset_index(hash, set->cap);
	while (set->used[i]) {
		if (!memcmp(set->keys[i], hash, 32))
			return false;
		i = (i + 1) & (set->cap - 1);
	}
	memcpy(set->keys[i], hash, 32);
	set->used[i] = 1;
	set->count++;
	return true;
}

void hashset_release(struct hashset *set)
{
	free(set->keys);
	free(set->used);
	memset(set, 0, sizeof(*set));
}
