/*
 * error.c - the error record: the first failure along a call chain names
 * what went wrong; callers further up only pass the code along.
 */
#include <stdio.h>
#include <string.h>

#include "lib/lib.h"

static int error_vset(struct error *err, int code, int with_errno,
		      const char *fmt, va_list ap)
{
	size_t len;

	if (!err || err->code)
		return code;
	err->code = code;
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	if (with_errno) {
		len = strlen(err->message);
		snprintf(err->message + len, sizeof(err->message) - len, ": %s",
			 strerror(-code));
	}
	return code;
}

int error_set(struct error *err, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_vset(err, code, 0, fmt, ap);
	va_end(ap);
	return code;
}

int error_errno(struct error *err, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_vset(err, code, 1, fmt, ap);
	va_end(ap);
	return code;
}

void error_clear(struct error *err)
{
	err->code = 0;
	err->message[0] = '\0';
}
