/*
 * store_check.h - what the store's unit tests share beyond check.h: fsck
 * as a count of problems, each printed, and a count of catalog rows.
 */
#ifndef DSTACK_TEST_STORE_CHECK_H
#define DSTACK_TEST_STORE_CHECK_H

#include <stdio.h>

#include "store/internal.h"

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

/* The first column of sql's first row (a COUNT), or -1. */
static int64_t count_rows(struct store *store, const char *sql)
{
	sqlite3_stmt *stmt;
	int64_t n = -1;

	if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(stmt) == SQLITE_ROW)
		n = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return n;
}

#endif
