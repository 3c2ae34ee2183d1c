/*
 * output.c - what a job or a provider prints: passed on to the caller as
 * it comes and kept in the run's logs, flushed when 64 KiB pile up or the
 * output pauses (host_job_run ticks every HOST_TICK_MS), so a crash loses
 * under a second of it.
 */
#include <string.h>

#include "runner/internal.h"

/* Log bytes wait here until this many pile up or a tick passes. */
#define LOG_FLUSH_BYTES (64u * 1024)

int job_output_flush(struct job_output *out)
{
	int ret;

	if (!out->pending.len)
		return 0;
	ret = store_log_append(out->store, out->run, out->job, out->pending.buf,
			       out->pending.len, &out->err);
	strbuf_reset(&out->pending);
	return ret;
}

int job_output_tick(void *ctx)
{
	return job_output_flush(ctx);
}

int job_output_write(void *ctx, const void *data, size_t len)
{
	struct job_output *out = ctx;

	if (out->request->output)
		out->request->output(out->request->output_ctx, data, len);
	strbuf_add(&out->pending, data, len);
	return out->pending.len >= LOG_FLUSH_BYTES ? job_output_flush(out) : 0;
}

/* A line of dstack's own in the job's log (and on the caller's output). */
void job_output_say(struct job_output *out, const char *fmt, ...)
{
	struct strbuf line = STRBUF_INIT;
	va_list ap;

	strbuf_addstr(&line, "dstack: ");
	va_start(ap, fmt);
	strbuf_vaddf(&line, fmt, ap);
	va_end(ap);
	strbuf_addstr(&line, "\n");
	job_output_write(out, line.buf, line.len);
	strbuf_release(&line);
}
