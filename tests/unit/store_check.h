/*
 * store_check.h - what the store's unit tests share beyond check.h: fsck
 * as a count of problems, each printed.
 */
#ifndef DSTACK_TEST_STORE_CHECK_H
#define DSTACK_TEST_STORE_CHECK_H

#include <stdio.h>

#include "store/store.h"

static void print_problem(void *ctx, const char *line)
{
	(void)ctx;
	fprintf(stderr, "fsck: %s\n", line);
}

/* fsck's problems; an fsck that cannot run counts as many. */
static uint64_t fsck_problems(struct store *store)
{
	struct error err = { 0 };
	uint64_t problems = 0;

	if (store_fsck(store, print_problem, NULL, &problems, &err) < 0) {
		fprintf(stderr, "fsck: %s\n", err.message);
		return 1000;
	}
	return problems;
}

#endif
