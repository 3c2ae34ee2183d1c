/*
 * curl_main.c - dstack-curl URL OUTPUT: what the curl provider's jobs
 * run (providers/fetch.c), a program of its own so that dstack itself
 * does not load libcurl.  Errors are one "dstack: ..." line, as dstack's.
 */
#include <signal.h>
#include <stdio.h>

#include "providers/providers.h"

static volatile sig_atomic_t curl_stopping;

static void curl_stop(int sig)
{
	(void)sig;
	curl_stopping = 1;
}

int main(int argc, char **argv)
{
	static const int signals[] = { SIGINT, SIGTERM, SIGHUP };
	struct sigaction action = { .sa_handler = curl_stop };
	struct error err = { 0 };
	size_t i;

	if (argc != 3) {
		fprintf(stderr, "dstack: usage: dstack-curl URL OUTPUT\n");
		return 2;
	}
	/* A stopped job's download goes away instead of leaving a partial file. */
	sigemptyset(&action.sa_mask);
	for (i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		sigaction(signals[i], &action, NULL);
	if (provider_curl_fetch(argv[1], argv[2], stderr, &curl_stopping, &err) < 0) {
		fprintf(stderr, "dstack: %s\n", err.message);
		return 1;
	}
	return 0;
}
