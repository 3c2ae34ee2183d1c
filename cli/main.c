/*
 * main.c - the dstack command: the table of commands, help, version and
 * dispatch.  Every error leaves here as one "dstack: ..." line.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static int cmd_help(int argc, char **argv);

const struct cli_command cli_commands[] = {
	{ "help", cmd_help, "dstack help [COMMAND]",
	  "show the commands, or one command's usage", NULL },
	{ "run", cmd_run, "dstack run [-d] [-t TAG] [--backend host|docker|slurm] [--cache|--no-cache]\n"
	  "           (WORKFLOW [ARGS...] | --rerun RUN)",
	  "run a workflow of the current repository and follow its output",
	  "The workflow comes from .dstack/workflows.yaml (or .dstack/workflows/*.yaml)\n"
	  "of the git repository around the current directory.  Its jobs run on\n"
	  "this host in a snapshot of the repository: tracked files as they are now\n"
	  "and untracked files git does not ignore.  ARGS replace ${{ run.args }}.\n"
	  "The artifacts of the workflow's deps are put in place, read-only, first.\n"
	  "-t TAG tags the run (moving TAG if it exists).  Exits 0 when the run is\n"
	  "done, 1 otherwise.  -d prints the run's name and leaves it running in\n"
	  "the background.  On a terminal, Ctrl-C asks whether to stop the run;\n"
	  "any answer but y leaves it running (`dstack logs -f RUN` follows it).\n"
	  "Without one, Ctrl-C stops the run.  --backend docker runs each job that\n"
	  "names an image in it, through dockerd (the default: backend: in\n"
	  "$DSTACK_HOME/config.yaml, else host); --backend slurm submits each job\n"
	  "to Slurm, with the settings of config.yaml's slurm: keys.  --rerun RUN (or :TAG) runs\n"
	  "that run's workflow with its args again on its snapshot, wherever the\n"
	  "checkout has gone since.  --cache gives each job whose inputs a done job\n"
	  "had the same (docs/guide.md lists them) that job's artifacts instead of\n"
	  "running it, as the workflow's cache: true does; --no-cache runs every\n"
	  "job, recording its inputs for later runs." },
	{ "ps", cmd_ps, "dstack ps [-a] [RUN]",
	  "list the current repository's runs, newest first",
	  "Without -a: the unfinished runs, or the newest finished one if none is\n"
	  "live.  Outside a repository, the runs of every repository.  With RUN:\n"
	  "that run, its jobs, and its provider, arguments, repository and commit." },
	{ "logs", cmd_logs, "dstack logs [-f] RUN", "print the output of a run's jobs",
	  "-f follows a live run until it ends." },
	{ "stop", cmd_stop, "dstack stop [-x] (RUN|-a)",
	  "stop a run (SIGTERM to its jobs, SIGKILL after 10 s)",
	  "Returns once the run has ended; its status is then stopped.  -x aborts:\n"
	  "jobs are killed at once and nothing is stored.  -a stops the current\n"
	  "repository's live runs." },
	{ "tags", cmd_tags,
	  "dstack tags list\n"
	  "dstack tags add TAG RUN\n"
	  "dstack tags add TAG -a DIR...\n"
	  "dstack tags delete TAG",
	  "list, add and delete tags (names for runs)",
	  "`tags add TAG -a DIR...` stores each DIR as a finished run's artifact,\n"
	  "named by the DIR's last component, and tags that run TAG.\n"
	  "Adding a tag that exists fails: delete it first." },
	{ "artifacts", cmd_artifacts,
	  "dstack artifacts list (RUN|:TAG)\n"
	  "dstack artifacts download (RUN|:TAG) [-o DIR]",
	  "list or download a run's artifacts",
	  "download writes DIR/PATH for every artifact PATH (DIR defaults to the\n"
	  "current directory), byte for byte with modes and symlinks.  Where two\n"
	  "jobs wrote one path, the higher-numbered job's file wins." },
	{ "rm", cmd_rm, "dstack rm (RUN|-a)",
	  "delete a finished, untagged run (`gc` frees its storage)",
	  "-a deletes the current repository's runs, skipping live and tagged\n"
	  "ones with a line each (and exiting 1 if it skipped any)." },
	{ "init", cmd_init, "dstack init",
	  "write an example .dstack/workflows.yaml in this repository",
	  "Refuses to overwrite one that exists." },
	{ "providers", cmd_providers, "dstack providers",
	  "list the providers workflows can name",
	  "The built-in providers, then those of the current repository's\n"
	  ".dstack/providers.yaml; a provider of the repository takes the place\n"
	  "of a built-in of the same name." },
	{ "mount", cmd_mount, "dstack mount [-f] [-o allow_other] [DIR]",
	  "show runs, logs and artifacts as files, and run workflows through ctl",
	  "Mounts the /dstack tree of the current repository at DIR (default\n"
	  "/dstack as root, else $XDG_RUNTIME_DIR/dstack) and returns once it is\n"
	  "mounted, serving it in the background (-f: in the foreground).\n"
	  "`echo WORKFLOW > DIR/ctl` starts a run.  -o allow_other lets other\n"
	  "users in, with the files' permissions checked." },
	{ "umount", cmd_umount, "dstack umount [DIR]",
	  "unmount the tree; the daemon finishes its live runs, then exits", NULL },
	{ "gc", cmd_gc, "dstack gc",
	  "delete stored data that no run or tag reaches", NULL },
	{ "job-exec", cmd_job_exec, "dstack job-exec FOLDER",
	  "run a job of the slurm backend on this node (Slurm starts it)",
	  "FOLDER, under $DSTACK_HOME/work, is where the runner left the job:\n"
	  "its script, environment and the manifests of its inputs.  The node\n"
	  "never opens the catalog: it reads the packs, stores the artifacts in\n"
	  "new packs, and leaves their manifests and the result for the runner.\n"
	  "Exits with the job's status." },
	{ "fsck", cmd_fsck, "dstack fsck",
	  "re-hash every object and check every reference",
	  "Prints one line per problem and exits 1 if there is any." },
	{ NULL, NULL, NULL, NULL, NULL },
};

const struct cli_command *cli_command_find(const char *name)
{
	const struct cli_command *command;

	for (command = cli_commands; command->name; command++)
		if (!strcmp(command->name, name))
			return command;
	return NULL;
}

static void print_overview(FILE *out)
{
	const struct cli_command *command;

	fprintf(out, "usage: dstack [--version] COMMAND [ARGS...]\n\ncommands:\n");
	for (command = cli_commands; command->name; command++)
		fprintf(out, "  %-10s %s\n", command->name, command->summary);
	fprintf(out, "\nState lives in $DSTACK_HOME (default ~/.dstack).\n"
		     "`dstack help COMMAND` or `dstack COMMAND -h` shows a command's usage.\n");
}

static int cmd_help(int argc, char **argv)
{
	const struct cli_command *command;

	if (cli_wants_help("help", argc, argv))
		return CLI_OK;
	if (argc > 2)
		return cli_usage_error("help", "too many arguments");
	if (argc < 2) {
		print_overview(stdout);
		return CLI_OK;
	}
	command = cli_command_find(argv[1]);
	if (!command)
		return cli_usage_error("help", "unknown command '%s'", argv[1]);
	cli_print_help(command);
	return CLI_OK;
}

int main(int argc, char **argv)
{
	const struct cli_command *command;

	if (argc < 2) {
		print_overview(stderr);
		return CLI_USAGE;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("dstack %s\n", DSTACK_VERSION);
		return CLI_OK;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		print_overview(stdout);
		return CLI_OK;
	}
	command = cli_command_find(argv[1]);
	if (!command) {
		fprintf(stderr, "dstack: unknown command '%s' (see 'dstack help')\n", argv[1]);
		return CLI_USAGE;
	}
	return command->run(argc - 1, argv + 1);
}
