/*
 * util.c - the edge where messages meet people: errors, usage, tables,
 * progress bars, and finding $DSTACK_HOME.
 */
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/cli.h"

int cli_error(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("dstack: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return CLI_FAILED;
}

void cli_print_help(const struct cli_command *command)
{
	printf("usage: %s\n\n%s\n", command->usage, command->summary);
	if (command->help)
		printf("\n%s\n", command->help);
}

int cli_usage_error(const char *name, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "dstack: %s: ", name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'dstack help %s')\n", name);
	return CLI_USAGE;
}

bool cli_wants_help(const char *name, int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			cli_print_help(cli_command_find(name));
			return true;
		}
	}
	return false;
}

const char *cli_home(void)
{
	static char home[4096];
	const char *env = getenv("DSTACK_HOME");
	struct passwd *pw;

	if (env && *env)
		return env;
	env = getenv("HOME");
	if (!env || !*env) {
		pw = getpwuid(getuid());
		env = pw ? pw->pw_dir : "/";
	}
	snprintf(home, sizeof(home), "%s/.dstack", env);
	return home;
}

int cli_open_store(struct store **store, bool need_write)
{
	struct error err = { 0 };
	int ret = store_open(store, cli_home(), STORE_READ_WRITE, &err);

	if (ret == -EROFS && !need_write) {
		error_clear(&err);
		ret = store_open(store, cli_home(), STORE_READ_ONLY, &err);
	}
	if (ret < 0) {
		cli_error("%s", err.message);
		return ret;
	}
	return 0;
}

void cli_table_init(struct cli_table *table, int columns, ...)
{
	va_list ap;
	int i;

	table->columns = columns;
	table->rows = 1;
	table->cells = xcalloc((size_t)columns, sizeof(char *));
	va_start(ap, columns);
	for (i = 0; i < columns; i++)
		table->cells[i] = xstrdup(va_arg(ap, const char *));
	va_end(ap);
}

void cli_table_add(struct cli_table *table, ...)
{
	size_t base = table->rows * (size_t)table->columns;
	va_list ap;
	int i;

	table->cells = xrealloc(table->cells, (base + (size_t)table->columns) * sizeof(char *));
	va_start(ap, table);
	for (i = 0; i < table->columns; i++) {
		const char *cell = va_arg(ap, const char *);

		table->cells[base + (size_t)i] = xstrdup(cell ? cell : "");
	}
	va_end(ap);
	table->rows++;
}

void cli_table_print(struct cli_table *table)
{
	size_t *width = xcalloc((size_t)table->columns, sizeof(size_t));
	size_t r;
	int c;

	for (r = 0; r < table->rows; r++)
		for (c = 0; c < table->columns; c++) {
			size_t len = strlen(table->cells[r * (size_t)table->columns + (size_t)c]);

			if (len > width[c])
				width[c] = len;
		}
	for (r = 0; r < table->rows; r++) {
		for (c = 0; c < table->columns; c++) {
			const char *cell = table->cells[r * (size_t)table->columns + (size_t)c];

			if (c == table->columns - 1)
				printf("%s\n", cell);
			else
				printf("%-*s  ", (int)width[c], cell);
			free((char *)cell);
		}
	}
	free(table->cells);
	free(width);
	table->cells = NULL;
	table->rows = 0;
}

void cli_progress_init(struct cli_progress *progress, const char *label)
{
	memset(progress, 0, sizeof(*progress));
	progress->enabled = isatty(STDOUT_FILENO);
	progress->label = label;
}

void cli_progress_update(void *ctx, uint64_t done, uint64_t total)
{
	struct cli_progress *progress = ctx;
	int64_t now = time_now_ns();
	struct winsize ws;
	char done_text[32], total_text[32];
	int bar, filled, i;

	if (!progress->enabled || now - progress->last_ns < 100000000)
		return;
	progress->last_ns = now;
	bar = 30;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_col < 80)
		bar = ws.ws_col > 50 ? ws.ws_col - 50 : 0;
	size_format(done, done_text);
	size_format(total, total_text);
	filled = total ? (int)((double)bar * (double)done / (double)total) : 0;
	printf("\r\033[K%s [", progress->label);
	for (i = 0; i < bar; i++)
		putchar(i < filled ? '#' : '.');
	printf("] %s / %s", done_text, total_text);
	fflush(stdout);
	progress->drawn = true;
}

void cli_progress_finish(struct cli_progress *progress)
{
	if (progress->drawn) {
		printf("\r\033[K");
		fflush(stdout);
	}
	progress->drawn = false;
}

void cli_warn(void *ctx, const char *line)
{
	(void)ctx;
	fprintf(stderr, "dstack: warning: %s\n", line);
}
