/*
 * check.h - the unit tests' harness: CHECK records a failure with its
 * place and goes on; each test binary exits non-zero if any check failed.
 */
#ifndef DSTACK_TEST_CHECK_H
#define DSTACK_TEST_CHECK_H

#include <stdio.h>

static int check_failures;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                            \
			check_failures++;                                    \
		}                                                            \
	} while (0)

#define RUN_TEST(fn)                                                         \
	do {                                                                 \
		int before = check_failures;                                 \
		fn();                                                        \
		printf("%s %s\n", check_failures == before ? "ok  " : "FAIL", #fn); \
	} while (0)

#endif
