/*
 * fetch.c - what the curl provider's jobs run (the dstack-curl helper):
 * a download with libcurl into a temporary file beside the output,
 * renamed into place once complete, with progress lines for the job's
 * log.  It is a helper of its own because libcurl and the TLS, LDAP and
 * Kerberos libraries it pulls in cost every start of dstack 13 ms.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "providers/providers.h"

#define NS_PER_S 1000000000ll

struct fetch {
	int fd;
	uint64_t written;	/* bytes */
	int write_error;	/* -errno of a failed write to the file */
	FILE *log;
	const volatile sig_atomic_t *stop;
	int64_t last_ns;	/* when progress was last shown */
};

static size_t fetch_write(char *data, size_t size, size_t count, void *ctx)
{
	struct fetch *fetch = ctx;
	int ret = fs_write_all(fetch->fd, data, size * count);

	if (ret < 0) {
		fetch->write_error = ret;
		return 0;	/* libcurl gives up with CURLE_WRITE_ERROR */
	}
	fetch->written += size * count;
	return size * count;
}

/* libcurl calls this often; a line a second is enough for a log. */
static int fetch_progress(void *ctx, curl_off_t total, curl_off_t done, curl_off_t up_total,
			  curl_off_t up_done)
{
	struct fetch *fetch = ctx;
	int64_t now = time_monotonic_ns();
	char done_text[32], total_text[32];

	(void)up_total;
	(void)up_done;
	if (*fetch->stop)
		return 1;	/* libcurl gives up with CURLE_ABORTED_BY_CALLBACK */
	if (now - fetch->last_ns < NS_PER_S)
		return 0;
	fetch->last_ns = now;
	size_format((uint64_t)done, done_text);
	if (total > 0) {
		size_format((uint64_t)total, total_text);
		fprintf(fetch->log, "dstack: curl: %s of %s (%d%%)\n", done_text, total_text,
			(int)(done * 100 / total));
	} else {
		fprintf(fetch->log, "dstack: curl: %s\n", done_text);
	}
	fflush(fetch->log);
	return 0;
}

/* Why libcurl failed, as one message naming url. */
static int fetch_error(CURL *curl, CURLcode code, const struct fetch *fetch,
		       const char *url, const char *reason, const char *tmp, struct error *err)
{
	long status = 0;

	if (code == CURLE_HTTP_RETURNED_ERROR &&
	    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK)
		return error_set(err, -EIO, "curl: %s: HTTP %ld", url, status);
	if (code == CURLE_WRITE_ERROR && fetch->write_error)
		return error_errno(err, fetch->write_error, "curl: %s", tmp);
	if (code == CURLE_ABORTED_BY_CALLBACK)
		return error_set(err, -EINTR, "curl: %s: stopped", url);
	return error_set(err, -EIO, "curl: %s: %s", url,
			 reason[0] ? reason : curl_easy_strerror(code));
}

/* Runs the transfer into fetch->fd; the file is left to the caller. */
static int fetch_perform(struct fetch *fetch, const char *url, const char *tmp,
			 struct error *err)
{
	char reason[CURL_ERROR_SIZE] = "";
	CURLcode code;
	CURL *curl;
	int ret = 0;

	curl = curl_easy_init();
	if (!curl)
		return error_set(err, -ENOMEM, "curl: cannot start libcurl");
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "dstack/" DSTACK_VERSION);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, reason);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, fetch_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, fetch);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, fetch_progress);
	curl_easy_setopt(curl, CURLOPT_XFERINFODATA, fetch);
	/* A server that stops sending fails the job rather than hang it. */
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 300L);
	code = curl_easy_perform(curl);
	if (code != CURLE_OK)
		ret = fetch_error(curl, code, fetch, url, reason, tmp, err);
	curl_easy_cleanup(curl);
	return ret;
}

int provider_curl_fetch(const char *url, const char *output, FILE *log,
			const volatile sig_atomic_t *stop, struct error *err)
{
	struct fetch fetch = { .fd = -1, .log = log, .stop = stop };
	struct strbuf tmp = STRBUF_INIT;
	const char *slash = strrchr(output, '/');
	int64_t start = time_monotonic_ns();
	char size_text[32];
	mode_t mask;
	int ret = 0;

	if (slash) {
		strbuf_add(&tmp, output, (size_t)(slash - output));
		ret = fs_mkdir_p(tmp.buf, 0755);
		if (ret < 0) {
			error_errno(err, ret, "curl: %s", tmp.buf);
			goto out;
		}
		strbuf_addstr(&tmp, "/");
	}
	/* Beside the output, so the rename stays on one file system. */
	strbuf_addf(&tmp, ".%s.dstack-XXXXXX", slash ? slash + 1 : output);
	fetch.fd = mkostemp(tmp.buf, O_CLOEXEC);
	if (fetch.fd < 0) {
		ret = error_errno(err, -errno, "curl: %s", tmp.buf);
		goto out;
	}
	/* mkstemp makes 0600; the output gets the mode any new file would. */
	mask = umask(0);
	umask(mask);
	if (fchmod(fetch.fd, 0666 & ~mask) < 0)
		ret = error_errno(err, -errno, "curl: %s", tmp.buf);
	fprintf(log, "dstack: curl: %s -> %s\n", url, output);
	fflush(log);
	fetch.last_ns = start;
	if (ret == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ret = error_set(err, -ENOMEM, "curl: cannot start libcurl");
	else if (ret == 0) {
		ret = fetch_perform(&fetch, url, tmp.buf, err);
		curl_global_cleanup();
	}
	if (close(fetch.fd) < 0 && ret == 0)
		ret = error_errno(err, -errno, "curl: %s", tmp.buf);
	if (ret == 0 && rename(tmp.buf, output) < 0)
		ret = error_errno(err, -errno, "curl: %s", output);
	if (ret < 0) {
		unlink(tmp.buf);
		goto out;
	}
	size_format(fetch.written, size_text);
	fprintf(log, "dstack: curl: %s: %s in %.1f s\n", output, size_text,
		(double)(time_monotonic_ns() - start) / NS_PER_S);
out:
	strbuf_release(&tmp);
	return ret;
}
