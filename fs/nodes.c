/*
 * nodes.c - inode numbers for the tree: a node is made the first time a
 * path is looked up and keeps its number until unmount, so the kernel's
 * caches and a later lookup agree.  Nodes hold names, never descriptors.
 */
#include <stdlib.h>
#include <string.h>

#include "fs/internal.h"

#define NODE_SLOTS_FIRST 1024

static uint64_t key_hash(const char *key)
{
	uint64_t hash = 1469598103934665603ull;	/* FNV-1a */

	for (; *key; key++)
		hash = (hash ^ (unsigned char)*key) * 1099511628211ull;
	return hash;
}

void node_table_init(struct node_table *table)
{
	memset(table, 0, sizeof(*table));
	pthread_mutex_init(&table->lock, NULL);
	table->slot_count = NODE_SLOTS_FIRST;
	table->slots = xcalloc(table->slot_count, sizeof(*table->slots));
}

void node_table_release(struct node_table *table)
{
	size_t i;

	for (i = 0; i < table->count; i++) {
		free(table->by_ino[i]->name);
		free(table->by_ino[i]->path);
		free(table->by_ino[i]->key);
		free(table->by_ino[i]);
	}
	free(table->by_ino);
	free(table->slots);
	pthread_mutex_destroy(&table->lock);
}

static void slots_put(struct node **slots, size_t slot_count, struct node *node)
{
	size_t i = key_hash(node->key) & (slot_count - 1);

	while (slots[i])
		i = (i + 1) & (slot_count - 1);
	slots[i] = node;
}

/* Keeps the table at most half full. */
static void slots_grow(struct node_table *table)
{
	size_t count = table->slot_count * 2, i;
	struct node **slots = xcalloc(count, sizeof(*slots));

	for (i = 0; i < table->count; i++)
		slots_put(slots, count, table->by_ino[i]);
	free(table->slots);
	table->slots = slots;
	table->slot_count = count;
}

const struct node *node_get(struct node_table *table, const char *key,
			    const struct node *proto)
{
	struct node *node;
	size_t i;

	pthread_mutex_lock(&table->lock);
	for (i = key_hash(key) & (table->slot_count - 1); table->slots[i];
	     i = (i + 1) & (table->slot_count - 1)) {
		if (!strcmp(table->slots[i]->key, key)) {
			node = table->slots[i];
			pthread_mutex_unlock(&table->lock);
			return node;
		}
	}
	node = xcalloc(1, sizeof(*node));
	*node = *proto;
	node->name = proto->name ? xstrdup(proto->name) : NULL;
	node->path = proto->path ? xstrdup(proto->path) : NULL;
	node->key = xstrdup(key);
	if (table->count == table->alloc) {
		table->alloc = table->alloc ? table->alloc * 2 : 256;
		table->by_ino = xrealloc(table->by_ino, table->alloc * sizeof(*table->by_ino));
	}
	table->by_ino[table->count++] = node;
	/* FUSE_ROOT_ID (1) is the first node made. */
	node->ino = table->count;
	if (table->count * 2 > table->slot_count)
		slots_grow(table);
	else
		slots_put(table->slots, table->slot_count, node);
	pthread_mutex_unlock(&table->lock);
	return node;
}

const struct node *node_by_ino(struct node_table *table, fuse_ino_t ino)
{
	const struct node *node = NULL;

	pthread_mutex_lock(&table->lock);
	if (ino >= 1 && ino <= table->count)
		node = table->by_ino[ino - 1];
	pthread_mutex_unlock(&table->lock);
	return node;
}
