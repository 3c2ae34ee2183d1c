/*
 * internal.h - what the slurm module's files share: the two ways to the
 * cluster (command.c: sbatch, squeue, scancel; rest.c: slurmrestd) and
 * how both fill a job's state (slurm.c).
 */
#ifndef DSTACK_SLURM_INTERNAL_H
#define DSTACK_SLURM_INTERNAL_H

#include "slurm/slurm.h"

int slurm_cmd_submit(const struct slurm_settings *settings, const struct slurm_request *request,
		     long long *id, struct error *err);
int slurm_cmd_state(const struct slurm_settings *settings, const long long *ids, size_t count,
		    struct slurm_job_state *states, struct error *err);
int slurm_cmd_cancel(const struct slurm_settings *settings, const long long *ids, size_t count,
		     struct error *err);

int slurm_rest_submit(const struct slurm_settings *settings, const struct slurm_request *request,
		      long long *id, struct error *err);
int slurm_rest_state(const struct slurm_settings *settings, const long long *ids, size_t count,
		     struct slurm_job_state *states, struct error *err);
int slurm_rest_cancel(const struct slurm_settings *settings, const long long *ids, size_t count,
		      struct error *err);

/*
 * Fills state from Slurm's words: "None" reasons become "", the node list
 * its first host, and status (a wait status, as Slurm keeps a job's exit)
 * exit_code and signal.
 */
void slurm_state_fill(struct slurm_job_state *state, const char *word, const char *reason,
		      const char *nodes, long long status);

/*
 * The file name as sbatch and slurmd take a pattern: "%" doubled, so that
 * "%j" in a path stays "%j".
 */
void slurm_output_pattern(const char *path, struct strbuf *out);

#endif
