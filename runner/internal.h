/*
 * internal.h - what the files of runner/ share: snapshots and host jobs.
 */
#ifndef DSTACK_RUNNER_INTERNAL_H
#define DSTACK_RUNNER_INTERNAL_H

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>

#include "providers/providers.h"
#include "runner/runner.h"
#include "runner/workflow.h"

struct json;
typedef struct git_config git_config;

struct snapshot_info {
	char *root;		/* the repository's working tree */
	char *repo;		/* remote URL (origin, else the first), else root */
	char commit[41];	/* HEAD, empty in a repository without commits */
	char *branch;		/* HEAD's branch, NULL when detached or unborn */
	bool dirty;		/* uncommitted changes or untracked files */
	/* What a snapshot holds, as git saw it at submission: tracked files
	 * (deleted ones are left out when stored) and untracked ones not
	 * ignored.  The runner stores them as the run's snapshot tree, which
	 * its jobs start from. */
	char **paths;
	size_t path_count;
	/* Submodules are not followed: "PATH COMMIT\n" for each, recorded. */
	struct strbuf submodules;
};

/* Finds the repository around cwd and describes it. */
int snapshot_describe(const char *cwd, struct snapshot_info *info,
		      struct error *err);
void snapshot_info_release(struct snapshot_info *info);
/*
 * url as git fetches from it: the longest url.BASE.insteadOf value of
 * config that starts it replaced by BASE; a copy.
 */
char *snapshot_url_rewrite(git_config *config, const char *url);

/*
 * How a run is told to stop: flags its scheduler and jobs look at.  A
 * run in the CLI points them at runner_stopping and runner_aborting (its
 * signals stop it); a run in the daemon has its own.  Either way
 * `dstack stop` asks through the catalog (run_stop_poll).
 */
struct run_stop {
	volatile sig_atomic_t *stopping;
	volatile sig_atomic_t *aborting;
};
/* Raises the flags when the catalog asks the run to stop. */
int run_stop_poll(const struct run_stop *stop, struct store *store, int64_t run,
		  struct error *err);

/* Runs a bash script on the host in dir with env, in its own process group. */
struct host_job {
	const char *dir;
	const char *script;
	char *const *env;	/* "K=V", NULL-terminated */
	/* Made read-only in the job's own mount namespace (where allowed). */
	char *const *read_only;
	size_t read_only_count;
	/* NULL, or for each read_only path the folder bound onto it (a must). */
	char *const *read_only_sources;
	/* NULL, or the store's folder: read-only to the job but for own_dir in it. */
	const char *store_dir;
	const char *own_dir;
	/* Each joined by the child before it runs the script. */
	const int *cgroup_procs;
	size_t cgroup_count;
	/* Hears the job's process (group) once it exists. */
	void (*started)(void *ctx, pid_t pid);
	void *started_ctx;
	/* Hears output as it comes: fd 1 (both streams unless split), or 2. */
	int (*output)(void *ctx, int fd, const void *data, size_t len);
	void *output_ctx;
	bool split_stderr;
	/* Called at least every HOST_TICK_MS, output or not. */
	int (*tick)(void *ctx);
	void *tick_ctx;
	const struct run_stop *stop;
};
#define HOST_TICK_MS 250
/* How long a stopped job has between SIGTERM and SIGKILL. */
#define HOST_STOP_GRACE_NS (10ll * 1000000000)
/*
 * *status: the exit code, or 128 + signal.  When the run is told to stop
 * meanwhile, the job's process group is stopped and *stopped set.
 */
int host_job_run(const struct host_job *job, int *status, bool *stopped,
		 struct error *err);
/*
 * Runs a tool the runner needs (program found on PATH) to its end: its
 * stdout (and its stderr with with_stderr) into out (NULL: discarded),
 * its exit code (or 128 + signal) into *status.
 */
int host_exec(const char *program, char *const *argv, struct strbuf *out, bool with_stderr,
	      int *status, struct error *err);

/* What the host offers jobs (resources.c). */
#define HOST_GPUS_MAX 64
struct host_gpu {
	char *name;
	uint64_t memory;	/* bytes */
};
struct host_capacity {
	int cpu;
	uint64_t memory;
	struct host_gpu *gpus;	/* index i is GPU i of CUDA_VISIBLE_DEVICES */
	size_t gpu_count;
};
/* Whether nvidia-smi is there to ask (cheap: no process started). */
bool host_has_gpus(void);
int host_capacity_read(bool with_gpus, struct host_capacity *cap, struct error *err);
void host_capacity_release(struct host_capacity *cap);
/* The whole capacity as a claim. */
void host_capacity_claim(const struct host_capacity *cap, struct store_claim *claim);
/*
 * What a job's ask claims: its cpu and memory, and in want->gpus every
 * GPU that suits it.  -E2BIG, saying what, when the host can never give it.
 */
int host_capacity_fit(const struct host_capacity *cap, const struct job_resources *asked,
		      struct store_claim *want, struct error *err);

/* A job's cgroups (cgroup.c): one on v2, the memory and cpu ones on v1. */
struct job_cgroup {
	char *dirs[2];
	int procs[2];		/* their cgroup.procs, for the child to join */
	size_t count;
	bool v2;
	const char *memory_dir;	/* the one with the memory limit, or NULL */
};
/* Makes dstack/NAME with the asked limits; fails where cgroups are not ours. */
int job_cgroup_create(const char *name, const struct job_resources *asked,
		      struct job_cgroup *cg, struct error *err);
/* Whether the kernel killed a process of the group for memory. */
bool job_cgroup_oom_killed(const struct job_cgroup *cg);
/* Kills what is left in the groups and removes them. */
void job_cgroup_destroy(struct job_cgroup *cg);
/* The same for the groups named NAME that a dead runner left. */
void job_cgroup_reap(const char *name);

/* An environment: "K=V" strings, NULL-terminated; a later name wins. */
struct job_env {
	char **vars;
	size_t count;
};
void job_env_set(struct job_env *env, const char *name, const char *value);
/* Sets "K=V" entries; a bare "K" takes K from this process's environment. */
void job_env_set_all(struct job_env *env, char *const *vars, size_t count);
void job_env_put(struct job_env *env, const char *var);	/* "K=V" */
void job_env_release(struct job_env *env);
/* Whether a variable's name (len bytes) says its value is a secret: KEY,
 * *_KEY, or a name holding TOKEN, SECRET, PASSWORD, AUTH and the like. */
bool env_name_is_secret(const char *name, size_t len);
/* What a secret's value shows as in a spec. */
#define ENV_MASK "***"
/*
 * Masks the values of secret variables in spec's "env" (an object of
 * values, or a list of "NAME=VALUE"), for the spec.yaml files anyone who
 * can read the tree sees.  The jobs themselves get the values.
 */
void env_mask_spec(struct json *spec);

/* Output of job (or -1: the provider) of a run, on its way to the logs. */
struct job_output {
	struct store *store;
	const struct runner_request *request;
	int64_t run;
	int job;
	struct strbuf pending;	/* bytes of one fd, pending_fd, wait to be logged */
	int pending_fd;
	struct strbuf frames;	/* the start of a frame of job_output_frames */
	struct strbuf line;	/* an unfinished line of line_fd, for the caller */
	int line_fd;
	int64_t line_since;	/* time_now_ns() when line began */
	struct error err;
};
/* Output of the job's stream fd (1 or 2). */
int job_output_write(void *ctx, int fd, const void *data, size_t len);
/*
 * Output of dstack-docker with "frames": on fd 1 the container's streams
 * in one, in order, as frames (docker's own: the stream in byte 0, the
 * size big-endian in bytes 4-7, then the bytes); on fd 2 the helper's
 * own stderr, as it is.
 */
int job_output_frames(void *ctx, int fd, const void *data, size_t len);
void job_output_release(struct job_output *out);
int job_output_tick(void *ctx);
int job_output_flush(struct job_output *out);
/* A host job's tick: flushes its output and hears whether `dstack stop` asked. */
struct run_ticker {
	struct job_output *out;
	const struct run_stop *stop;
};
int run_tick(void *ticker);
/* "dstack: ...\n": a line of dstack's own in a job's log. */
void job_line_vformat(struct strbuf *line, const char *fmt, va_list ap);
/* A "dstack: ..." line of our own in the job's output. */
void job_output_say(struct job_output *out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Puts the store's Python environment (made on first use) and the dstack
 * module within reach of env: PATH, VIRTUAL_ENV, PYTHONUSERBASE.
 */
int runner_python_env(struct store *store, struct job_env *env, struct error *err);
/*
 * The user site holding the dstack module (lib/python3.N/site-packages
 * for each N): *base gets what PYTHONUSERBASE names.  Its links point
 * into DSTACK_PYTHON_DIR.
 */
int runner_python_user_base(struct store *store, struct strbuf *base, struct error *err);

/* The runs whose artifacts a workflow's jobs get: its deps, resolved. */
struct dep_runs {
	int64_t *ids;
	char (*names)[64];
	size_t count;
};


/* What the jobs of one run share while it executes (schedule.c, job.c). */
/* The files beside a container's work that dstack-docker reads and writes. */
struct container_files {
	struct strbuf spec;	/* the container's settings */
	struct strbuf pinned;	/* IMAGE@DIGEST, for the job's record */
	struct strbuf reason;	/* why it failed, when not by its own exit */
};
/* BASE.docker.json, BASE.pinned, BASE.reason. */
void container_files_init(struct container_files *files, const char *base);
/* Removes the files and releases their names. */
void container_files_remove(struct container_files *files);
/* What runs in a container, for dstack-docker (container.c). */
struct container_spec {
	const char *image;
	const char *script;	/* run by bash where the image has it, else sh */
	const char *workdir;
	char *const *env;	/* the whole environment: the host's is not passed */
	size_t env_count;
	char *const *binds;	/* "HOST:CONTAINER[:ro]" */
	size_t bind_count;
	char *const *labels;	/* "K=V": dstack.run=RUN, so the run's are found */
	size_t label_count;
	const int *ports;	/* published on the same host port */
	size_t port_count;
	uint64_t gpus;		/* a bit per GPU index of the host */
	const char *network;	/* NULL: dockerd's default bridge */
	const char *alias;	/* its host name, and its name on network */
	const struct job_resources *resources;	/* NULL: no limits */
};
/*
 * Writes c's settings to files->spec and appends to script the line that
 * runs dstack-docker on them in the container's place.
 */
int container_script(const struct container_spec *c, const struct container_files *files,
		     struct strbuf *script, struct error *err);
struct artifact_names;
/*
 * container_script for job n of run, c's binds, labels and workdir set:
 * the snapshot at root is the container's /workflow (working_dir under
 * it, as dir is under root), and each of ro's folders is bound read-only
 * at its place.
 */
int container_job_script(struct container_spec *c, const char *root, const char *dir,
			 const char *working_dir, const struct artifact_names *ro,
			 const char *run, int n, const struct container_files *files,
			 struct strbuf *script, struct error *err);

/*
 * Fetches url (once per call, one process at a time per URL) into its
 * mirror under $DSTACK_HOME/providers and checks ref out into dest (NULL:
 * the remote's default branch); commit_id gets the commit.  A commit id
 * already mirrored serves when url cannot be reached: *said says so
 * (remote.c).
 */
int remote_provider_checkout(struct store *store, const char *url, const char *ref,
			     const char *dest, char commit_id[41], struct strbuf *said,
			     struct error *err);

/* Where a run's jobs run (backend.c). */
enum run_backend {
	BACKEND_HOST,
	BACKEND_DOCKER,		/* jobs with an image run in it, through dockerd */
	BACKEND_SLURM,		/* each job a Slurm job, run by `dstack job-exec` */
};
/* Makes the network a run's docker jobs share, before they start (control.c). */
int run_docker_network(const struct store_run *run, struct error *err);
/* Removes the run's containers and network; says on said what went (control.c). */
void run_docker_cleanup(const struct store_run *run, struct strbuf *said);
/*
 * The backend asked for (NULL: $DSTACK_HOME/config.yaml's, else the
 * host); slurm gets the config's slurm: settings as dstack-slurm reads
 * them (a JSON object, "{}" when there are none).
 */
int run_backend_resolve(struct store *store, const char *asked, enum run_backend *out,
			struct strbuf *slurm, struct error *err);

/* What the job result cache does for a run's jobs (cache.c). */
enum run_cache {
	RUN_CACHE_OFF,		/* every job runs, its key recorded quietly */
	RUN_CACHE_ON,		/* a done job with the same key serves */
	RUN_CACHE_REFRESH,	/* --no-cache: every job runs, saying its key */
};

struct run_context {
	struct store *store;	/* the runner's handle: the scheduler's thread only */
	enum run_backend backend;
	enum run_cache cache;
	/* What every job's input key holds of the run (cache.c). */
	struct strbuf cache_run_part;
	const char *slurm_settings;	/* the slurm backend's, as JSON */
	struct slurm_poll *slurm_poll;	/* what Slurm said of the run's jobs */
	bool docker_network;	/* its containers share the network dstack-RUN */
	/* A provider from another repository: its checkout (moved into the
	 * provider's folder when it runs); NULL: the run's snapshot. */
	const char *provider_dir;
	const struct runner_request *request;
	const struct snapshot_info *info;
	const struct workflow *workflow;
	const struct dep_runs *deps;
	const struct store_run *run;
	const struct job_spec *jobs;
	size_t count;
	/* Read once, when some job asks for resources. */
	struct host_capacity capacity;
	bool capacity_read;
	struct run_stop stop;
};

/* Where a job is, as the scheduler sees it. */
enum job_state {
	JOB_PENDING,
	JOB_STARTING,		/* its thread prepares the working directory */
	JOB_RUNNING,		/* its process exists: its workers may start */
	JOB_ENDED,
};

struct schedule;

struct job_slot {
	struct run_context *ctx;
	struct schedule *schedule;
	int n;
	const struct job_slot *schedule_slots;	/* every job's of the run, by number */
	enum job_state state;	/* under the scheduler's lock */
	int *ports;		/* the job's ports, free ones picked */
	const int *master_ports;	/* a worker's master's, or NULL */
	size_t master_port_count;
	/* On the slurm backend: its Slurm job once submitted (its dependents
	 * may then be submitted after it), and its node once placed. */
	long long slurm_id;
	char node[256];
	struct store_claim claim;	/* what it holds, while claimed */
	bool claimed;
	bool said_waiting;
	/* Its end: exit code (0: done), stopped by a signal, never started
	 * because a job it needs failed, or an error. */
	int code;
	bool stopped;
	bool blocked;
	int ret;
	struct error err;
};

/*
 * DESIGN.md's job environment, the provider's env, then the workflow's;
 * over this process's own environment on the host.
 */
void job_env_build(struct job_env *env, const struct job_slot *slot, bool host);
/*
 * Records how a job ended (slot's code and stopped; reason, when not
 * empty, failing it and, first, its run): its log flushed, its status.
 */
int job_record_end(struct store *store, struct job_slot *slot, struct job_output *out,
		   const struct strbuf *reason, struct error *err);
/*
 * 1 when the job's artifact folder dir/artifact can be stored; else 0,
 * with the line to say in said and, shorter, why.
 */
int job_artifact_check(const char *dir, const char *artifact, struct strbuf *said,
		       struct strbuf *why);
/* The folders a run's artifacts go to under dir (its root entries). */
struct artifact_names {
	const char *dir;
	char **paths;
	size_t count;
	/* When the tree is mounted: its folder of the run's artifacts, and
	 * for each path the folder to bind onto it. */
	const char *tree;
	char **sources;
};
/* A store_entry_fn: collects DIR/PATH for each artifact path of a run. */
int artifact_name_add(void *ctx, const struct store_entry *entry);
void artifact_names_release(struct artifact_names *names);

/* Records each job's spec, as YAML, for the tree's jobs/N/spec.yaml. */
int job_specs_record(struct store *store, int64_t run, const struct job_spec *jobs,
		     size_t count, struct error *err);
/* The job's ports: its own numbers, and a free port for each 0. */
int job_ports_pick(const struct job_spec *spec, int **ports, struct error *err);
/* Tells the scheduler a job's process exists (its workers may start). */
void schedule_job_running(struct job_slot *slot);
/* Tells the scheduler a job is a Slurm job (its dependents may be submitted). */
void schedule_job_submitted(struct job_slot *slot, long long slurm_id);
/*
 * Reads the host's capacity if a job asks for resources and checks that
 * each ask can ever be met: -E2BIG naming the job and what otherwise.
 */
int schedule_check(struct run_context *ctx, struct error *err);

/*
 * The part of the job keys that is the run's (provider, the snapshot or
 * its inputs:, the deps' artifacts) into ctx->cache_run_part, made once:
 * with inputs: it walks the whole snapshot.
 */
int run_cache_prepare(struct store *store, struct run_context *ctx, struct error *err);
/*
 * The job result cache, before a job runs: its input key made and looked
 * up.  1 when the job has ended without running (served by a done job
 * with its key, or stopped while it waited for a live one); 0 when it
 * must run (its key recorded, so that an identical job waits for it).
 */
int job_cache_serve(struct store *store, struct job_slot *slot, struct error *err);

/*
 * Runs one job to its end with a store handle of its thread's own:
 * snapshot, deps, the process, its artifacts; slot->code, slot->stopped.
 */
int job_run(struct store *store, struct job_slot *slot, struct error *err);

/*
 * The job as a Slurm job (slurm.c): its inputs described for `dstack
 * job-exec` in its folder, submitted, followed until Slurm ends it (its
 * logs and state into the catalog as they come), then what the node
 * stored recorded as its artifacts.
 */
int slurm_job_run(struct store *store, struct job_slot *slot, struct error *err);
/* What Slurm last said of a run's jobs, shared by their threads. */
struct slurm_poll *slurm_poll_new(void);
void slurm_poll_free(struct slurm_poll *poll);
/* Cancels the Slurm job of a job folder a dead runner left, saying so on said. */
void slurm_job_cancel_left(const char *folder, struct strbuf *said);

/*
 * Runs every job of a run, side by side as depends_on, master and the
 * resources free allow; *first_failure gets the first failed job's code.
 */
int run_schedule(struct run_context *ctx, int *first_failure, bool *stopped,
		 struct error *err);

/* Custom providers (custom.c). */
/* Checks the workflow's parameters against the provider's schema, if any. */
int custom_provider_validate(const char *root, const struct provider_def *def,
			     const struct workflow *workflow, struct error *err);
/*
 * Runs the provider for a run that exists (on the docker backend, in its
 * image when it names one); its output goes to the run's logs.  -EPROTO
 * when the provider fails or writes bad jobs: the message names the
 * provider and the field.
 */
int custom_provider_jobs(const struct run_context *ctx, const struct provider_def *def,
			 struct job_spec **jobs, size_t *count, struct error *err);
/* The jobs of a provider's DSTACK_JOBS text (len bytes); errors name the field. */
int custom_jobs_from_json(const char *text, size_t len, struct job_spec **jobs,
			  size_t *count, struct error *err);

#endif
