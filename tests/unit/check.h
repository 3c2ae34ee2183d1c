/*
 * check.h - the unit tests' harness: CHECK records a failure with its
 * place and goes on; each test binary exits non-zero if any check failed.
 */
#ifndef DSTACK_TEST_CHECK_H
#define DSTACK_TEST_CHECK_H

#include <stddef.h>
#include <stdint.h>
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

/* Deterministic pseudo-random bytes (xorshift): incompressible test data. */
static inline void test_fill_random(uint8_t *data, size_t size, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 7;
	size_t i;

	for (i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		data[i] = (uint8_t)(x >> 24);
	}
}

#endif
