/*
 * hashset.h - a set of SHA-256 hashes (open addressing on their first
 * bytes, which are uniform), for fsck and gc walks over every object.
 */
#ifndef DSTACK_STORE_HASHSET_H
#define DSTACK_STORE_HASHSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hashset {
	uint8_t (*keys)[32];
	uint8_t *used;
	size_t cap, count;
};

/* Returns true if hash was added, false if it was there already. */
bool hashset_add(struct hashset *set, const uint8_t *hash);
bool hashset_contains(const struct hashset *set, const uint8_t *hash);
void hashset_release(struct hashset *set);

#endif
