/*
 * cli.h - what the command implementations share: the command table,
 * opening the store named by $DSTACK_HOME, aligned tables and progress.
 */
#ifndef DSTACK_CLI_H
#define DSTACK_CLI_H

#include <stdbool.h>

#include "store/store.h"

/* Exit statuses: usage errors are 2, as with git and the shell. */
enum {
	CLI_OK = 0,
	CLI_FAILED = 1,
	CLI_USAGE = 2,
};

struct cli_command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;	/* "dstack NAME ..." lines */
	const char *summary;	/* one line for `dstack help` */
	const char *help;	/* options and details, may be NULL */
};

extern const struct cli_command cli_commands[];

/* Prints "dstack: MESSAGE" on stderr; returns CLI_FAILED. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints one line naming the command and where its usage is; returns CLI_USAGE. */
int cli_usage_error(const char *command, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* True (and help printed) when argv[1] is -h or --help. */
bool cli_wants_help(const char *command, int argc, char **argv);
void cli_print_help(const struct cli_command *command);
const struct cli_command *cli_command_find(const char *name);

/* $DSTACK_HOME, else ~/.dstack. */
const char *cli_home(void);
/*
 * Opens the store for writing, or for reading only when need_write is
 * false and the home cannot be written (read-only media).
 */
int cli_open_store(struct store **store, bool need_write);

/* A table printed with aligned columns once all rows are in. */
struct cli_table {
	int columns;
	char **cells;
	size_t rows;
};
void cli_table_init(struct cli_table *table, int columns, ...);
void cli_table_add(struct cli_table *table, ...);
void cli_table_print(struct cli_table *table);

/* A progress bar on stdout when it is a terminal; silent otherwise. */
struct cli_progress {
	bool enabled;
	const char *label;
	int64_t last_ns;
	bool drawn;
};
void cli_progress_init(struct cli_progress *progress, const char *label);
void cli_progress_update(void *ctx, uint64_t done, uint64_t total);
void cli_progress_finish(struct cli_progress *progress);

/* Prints a store warning as "dstack: warning: ...". */
void cli_warn(void *ctx, const char *line);

int cmd_run(int argc, char **argv);
int cmd_ps(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_tags(int argc, char **argv);
int cmd_artifacts(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_fsck(int argc, char **argv);
int cmd_job_exec(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_providers(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);

#endif
