/*
 * output.c - what a job or a provider prints: passed on to the caller as
 * it comes and kept in the run's logs, flushed when 64 KiB pile up or the
 * output pauses (host_job_run ticks every HOST_TICK_MS), so a crash loses
 * under a second of it.  Each log piece is of one stream: a change of
 * stream flushes.  The caller hears whole lines, so that the lines of jobs
 * running side by side do not cut into each other (an unbuffered print
 * writes a line in pieces); a line left unfinished for LINE_WAIT_MS, a
 * prompt or a progress bar, goes out as it is at the next tick.
 */
#include <string.h>
#include <unistd.h>

#include "runner/internal.h"

/* Log bytes wait here until this many pile up or a tick passes. */
#define LOG_FLUSH_BYTES (64u * 1024)
/* An unfinished line goes to the caller once it has waited this long. */
#define LINE_WAIT_MS 1000

/* Hands the caller what waits for the end of its line. */
static void job_output_pass_line(struct job_output *out)
{
	if (out->line.len && out->request->output)
		out->request->output(out->request->output_ctx, out->line_fd, out->line.buf,
				     out->line.len);
	strbuf_reset(&out->line);
}

static int job_output_log(struct job_output *out)
{
	int ret;

	if (!out->pending.len)
		return 0;
	ret = store_log_append(out->store, out->run, out->job, out->pending_fd ? out->pending_fd : 1,
			       out->pending.buf, out->pending.len, &out->err);
	strbuf_reset(&out->pending);
	return ret;
}

int job_output_flush(struct job_output *out)
{
	job_output_pass_line(out);
	return job_output_log(out);
}

int job_output_tick(void *ctx)
{
	struct job_output *out = ctx;

	if (out->line.len && time_now_ns() - out->line_since >= LINE_WAIT_MS * 1000000ll)
		job_output_pass_line(out);
	return job_output_log(out);
}

int job_output_write(void *ctx, int fd, const void *data, size_t len)
{
	struct job_output *out = ctx;
	const char *end;

	if (out->request->output) {
		if (fd != out->line_fd)
			job_output_pass_line(out);
		if (!out->line.len)
			out->line_since = time_now_ns();
		out->line_fd = fd;
		strbuf_add(&out->line, data, len);
		end = memrchr(out->line.buf, '\n', out->line.len);
		if (end) {
			size_t whole = (size_t)(end - out->line.buf) + 1;

			out->request->output(out->request->output_ctx, fd, out->line.buf, whole);
			memmove(out->line.buf, out->line.buf + whole, out->line.len - whole);
			out->line.len -= whole;
			out->line.buf[out->line.len] = '\0';
			out->line_since = time_now_ns();
		}
		if (out->line.len >= LOG_FLUSH_BYTES)
			job_output_pass_line(out);
	}
	if (fd != out->pending_fd && job_output_log(out) < 0)
		return out->err.code;
	out->pending_fd = fd;
	strbuf_add(&out->pending, data, len);
	return out->pending.len >= LOG_FLUSH_BYTES ? job_output_log(out) : 0;
}

int job_output_frames(void *ctx, int fd, const void *data, size_t len)
{
	struct job_output *out = ctx;
	const unsigned char *p;
	size_t size, at = 0;
	int ret = 0;

	if (fd != STDOUT_FILENO)
		return job_output_write(out, fd, data, len);
	strbuf_add(&out->frames, data, len);
	while (ret == 0 && out->frames.len - at >= 8) {
		p = (const unsigned char *)out->frames.buf + at;
		size = (size_t)p[4] << 24 | (size_t)p[5] << 16 | (size_t)p[6] << 8 | p[7];
		if (out->frames.len - at < 8 + size)
			break;
		ret = job_output_write(out, p[0] == 2 ? STDERR_FILENO : STDOUT_FILENO, p + 8, size);
		at += 8 + size;
	}
	if (at) {
		memmove(out->frames.buf, out->frames.buf + at, out->frames.len - at);
		out->frames.len -= at;
	}
	return ret;
}

void job_output_release(struct job_output *out)
{
	strbuf_release(&out->line);
	strbuf_release(&out->pending);
	strbuf_release(&out->frames);
}

void job_line_vformat(struct strbuf *line, const char *fmt, va_list ap)
{
	strbuf_addstr(line, "dstack: ");
	strbuf_vaddf(line, fmt, ap);
	strbuf_addstr(line, "\n");
}

/* A line of dstack's own in the job's log (and on the caller's output). */
void job_output_say(struct job_output *out, const char *fmt, ...)
{
	struct strbuf line = STRBUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	job_line_vformat(&line, fmt, ap);
	va_end(ap);
	job_output_write(out, STDOUT_FILENO, line.buf, line.len);
	strbuf_release(&line);
}
