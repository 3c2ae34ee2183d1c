/*
 * test_workflow.c - loading .dstack/workflows.yaml and .dstack/workflows/:
 * a file written for dstack 0.0.x, the exact text and place of errors and
 * warnings, workflow.data as JSON, sizes, and ${{ run.args }}; then
 * .dstack/providers.yaml and provider schema files as JSON.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/lib.h"
#include "runner/workflow.h"
#include "tests/unit/check.h"

/* Every warning, one a line, so a test can compare them all at once. */
struct warnings {
	struct strbuf lines;
	int count;
};

static void collect_warning(void *ctx, const char *line)
{
	struct warnings *warnings = ctx;

	strbuf_addf(&warnings->lines, "%s\n", line);
	warnings->count++;
}

/* A fresh repository folder with an empty .dstack/. */
static char *repo_create(void)
{
	char *root = xstrdup("/tmp/dstack-test-workflow-XXXXXX");
	struct strbuf path = STRBUF_INIT;

	if (!mkdtemp(root)) {
		perror("mkdtemp");
		exit(1);
	}
	strbuf_addf(&path, "%s/.dstack/workflows", root);
	CHECK(fs_mkdir_p(path.buf, 0755) == 0);
	strbuf_release(&path);
	return root;
}

static void repo_write(const char *root, const char *relative, const char *text)
{
	struct strbuf path = STRBUF_INIT;
	FILE *f;

	strbuf_addf(&path, "%s/%s", root, relative);
	f = fopen(path.buf, "w");
	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	strbuf_release(&path);
}

static int remove_entry(const char *path, const struct stat *st, int flag,
			struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void repo_remove(char *root)
{
	CHECK(nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
	free(root);
}

static const char realistic_yaml[] =
	"# written for dstack 0.0.x\n"
	"workflows:\n"
	"  - name: prepare\n"
	"    help: |\n"
	"      Downloads the data set.\n"
	"      Run it once.\n"
	"    provider: bash\n"
	"    python: 3.10\n"
	"    commands:\n"
	"      - pip install -r requirements.txt\n"
	"      - python prepare.py ${{ run.args }}\n"
	"    artifacts:\n"
	"      - ./data\n"
	"      - path: ./output\n"
	"        mount: true\n"
	"    env:\n"
	"      - WANDB_PROJECT=mnist\n"
	"      - WANDB_API_KEY\n"
	"    ports: 2\n"
	"\n"
	"  - name: train\n"
	"    provider: bash\n"
	"    deps:\n"
	"      - workflow: prepare\n"
	"      - tag: mnist-v1\n"
	"    working_dir: src\n"
	"    commands: python train.py\n"
	"    resources:\n"
	"      cpu: 4\n"
	"      memory: 16GB\n"
	"      shm_size: 512MB\n"
	"      gpu:\n"
	"        count: 1\n"
	"        name: V100\n"
	"      interruptible: true\n"
	"      local: false\n"
	"    cache: true\n";

/* Written before a.yaml, so the load order comes from sorting, not readdir. */
static const char extra_b_yaml[] =
	"workflows:\n"
	"  - name: serve\n"
	"    provider:\n"
	"      repo: https://github.com/dstackai/gpt-2\n"
	"      name: gpt-2-serve\n"
	"    image: python:3.11\n"
	"    ports: [8080, 8081]\n"
	"    env: {MODEL: gpt2, TOKEN: }\n"
	"    resources:\n"
	"      gpu: {name: A100, memory: 40GB}\n";

static const char extra_a_yaml[] =
	"workflows:\n"
	"  - {name: download, provider: curl, url: 'https://example.com/x', output: x}\n";

static void test_realistic_files(void)
{
	char *root = repo_create();
	struct warnings warnings = { STRBUF_INIT, 0 };
	struct error err = { 0 };
	struct workflow_set set;
	const struct workflow *wf;

	repo_write(root, ".dstack/workflows.yaml", realistic_yaml);
	repo_write(root, ".dstack/workflows/b.yaml", extra_b_yaml);
	repo_write(root, ".dstack/workflows/a.yaml", extra_a_yaml);
	repo_write(root, ".dstack/workflows/notes.txt", "not: yaml: at all\n");
	repo_write(root, ".dstack/workflows/.scratch.yaml", "{{{\n");

	CHECK(workflow_set_load(root, &set, collect_warning, &warnings, &err) == 0);
	CHECK(err.code == 0);
	CHECK(warnings.count == 0);
	CHECK(set.file_count == 3);
	CHECK(set.count == 4);
	if (set.file_count != 3 || set.count != 4) {
		fprintf(stderr, "load: %s\n", err.message);
		goto out;
	}
	CHECK(!strcmp(set.files[0], ".dstack/workflows.yaml"));
	CHECK(!strcmp(set.files[1], ".dstack/workflows/a.yaml"));
	CHECK(!strcmp(set.files[2], ".dstack/workflows/b.yaml"));
	CHECK(!strcmp(set.workflows[0].name, "prepare"));
	CHECK(!strcmp(set.workflows[1].name, "train"));
	CHECK(!strcmp(set.workflows[2].name, "download"));
	CHECK(!strcmp(set.workflows[3].name, "serve"));

	wf = workflow_set_find(&set, "prepare");
	CHECK(wf == &set.workflows[0]);
	CHECK(wf->position.file == set.files[0]);
	CHECK(wf->position.line == 3 && wf->position.column == 5);
	CHECK(!strcmp(wf->provider, "bash") && !wf->provider_repo);
	CHECK(!strcmp(wf->help, "Downloads the data set.\nRun it once.\n"));
	CHECK(!strcmp(wf->python, "3.10"));
	CHECK(wf->command_count == 2);
	CHECK(!strcmp(wf->commands[1], "python prepare.py ${{ run.args }}"));
	CHECK(wf->artifact_count == 2);
	CHECK(!strcmp(wf->artifacts[0].path, "data") && !wf->artifacts[0].mount);
	CHECK(!strcmp(wf->artifacts[1].path, "output") && wf->artifacts[1].mount);
	CHECK(wf->artifacts[1].position.line == 14);
	CHECK(wf->artifacts[1].position.column == 15);
	CHECK(wf->env_count == 2);
	CHECK(!strcmp(wf->env[0], "WANDB_PROJECT=mnist"));
	CHECK(!strcmp(wf->env[1], "WANDB_API_KEY"));
	CHECK(wf->port_free_count == 2 && wf->port_count == 0);
	CHECK(wf->dep_count == 0 && !wf->working_dir && !wf->cache);
	CHECK(!strcmp(wf->data_json,
		      "{\"python\":3.10,"
		      "\"commands\":[\"pip install -r requirements.txt\","
		      "\"python prepare.py ${{ run.args }}\"],"
		      "\"artifacts\":[\"./data\",{\"path\":\"./output\",\"mount\":true}],"
		      "\"env\":[\"WANDB_PROJECT=mnist\",\"WANDB_API_KEY\"],"
		      "\"ports\":2}"));

	wf = workflow_set_find(&set, "train");
	CHECK(wf->dep_count == 2);
	CHECK(wf->deps[0].kind == WORKFLOW_DEP_WORKFLOW);
	CHECK(!strcmp(wf->deps[0].name, "prepare"));
	CHECK(wf->deps[0].position.line == 24 && wf->deps[0].position.column == 9);
	CHECK(wf->deps[1].kind == WORKFLOW_DEP_TAG);
	CHECK(!strcmp(wf->deps[1].name, "mnist-v1"));
	CHECK(!strcmp(wf->working_dir, "src"));
	CHECK(wf->command_count == 1 && !strcmp(wf->commands[0], "python train.py"));
	CHECK(wf->resources.cpu == 4);
	CHECK(wf->resources.memory == 16ull << 30);
	CHECK(wf->resources.shm_size == 512ull << 20);
	CHECK(wf->resources.gpu_count == 1);
	CHECK(!strcmp(wf->resources.gpu_name, "V100"));
	CHECK(wf->resources.interruptible && !wf->resources.local);
	CHECK(wf->cache);
	CHECK(!wf->help && !wf->python && wf->artifact_count == 0);

	wf = workflow_set_find(&set, "download");
	CHECK(wf->position.file == set.files[1]);
	CHECK(wf->position.line == 2 && wf->position.column == 6);
	CHECK(!strcmp(wf->provider, "curl"));
	CHECK(!strcmp(wf->data_json,
		      "{\"url\":\"https://example.com/x\",\"output\":\"x\"}"));

	wf = workflow_set_find(&set, "serve");
	CHECK(!strcmp(wf->provider, "gpt-2-serve"));
	CHECK(!strcmp(wf->provider_repo, "https://github.com/dstackai/gpt-2"));
	CHECK(!strcmp(wf->image, "python:3.11"));
	CHECK(wf->port_count == 2 && wf->ports[0] == 8080 && wf->ports[1] == 8081);
	CHECK(wf->port_free_count == 0);
	CHECK(wf->env_count == 2 && !strcmp(wf->env[0], "MODEL=gpt2") &&
	      !strcmp(wf->env[1], "TOKEN"));
	CHECK(wf->resources.gpu_count == 1);
	CHECK(!strcmp(wf->resources.gpu_name, "A100"));
	CHECK(wf->resources.gpu_memory == 40ull << 30);

	CHECK(workflow_set_find(&set, "nope") == NULL);
out:
	workflow_set_release(&set);
	CHECK(set.count == 0 && set.workflows == NULL);
	strbuf_release(&warnings.lines);
	repo_remove(root);
}

static void test_no_files(void)
{
	char *root = repo_create();
	struct error err = { 0 };
	struct workflow_set set;

	CHECK(workflow_set_load(root, &set, NULL, NULL, &err) == 0);
	CHECK(set.count == 0 && set.file_count == 0);
	workflow_set_release(&set);
	repo_remove(root);

	/* no .dstack/ at all */
	root = xstrdup("/tmp/dstack-test-workflow-XXXXXX");
	CHECK(mkdtemp(root) != NULL);
	CHECK(workflow_set_load(root, &set, NULL, NULL, &err) == 0);
	CHECK(set.count == 0 && set.file_count == 0);
	workflow_set_release(&set);
	repo_remove(root);

	/* an empty file and one with an empty list */
	root = repo_create();
	repo_write(root, ".dstack/workflows.yaml", "# nothing yet\n");
	repo_write(root, ".dstack/workflows/x.yaml", "workflows:\n");
	CHECK(workflow_set_load(root, &set, NULL, NULL, &err) == 0);
	CHECK(set.count == 0 && set.file_count == 2);
	workflow_set_release(&set);
	repo_remove(root);
}

/*
 * Loads yaml as .dstack/workflows.yaml and compares the error, or with
 * error NULL checks that it loads; then compares all warnings.
 */
static void check_load(int line, const char *yaml, const char *error,
		       const char *warning_lines)
{
	char *root = repo_create();
	struct warnings warnings = { STRBUF_INIT, 0 };
	struct error err = { 0 };
	struct workflow_set set;
	int ret;

	repo_write(root, ".dstack/workflows.yaml", yaml);
	ret = workflow_set_load(root, &set, collect_warning, &warnings, &err);
	if (error ? ret != -EINVAL || strcmp(err.message, error) : ret != 0) {
		fprintf(stderr, "line %d: got %d \"%s\", want \"%s\"\n", line, ret,
			err.message, error ? error : "");
		check_failures++;
	}
	if (strcmp(warnings.lines.buf ? warnings.lines.buf : "", warning_lines)) {
		fprintf(stderr, "line %d: warnings \"%s\", want \"%s\"\n", line,
			warnings.lines.buf ? warnings.lines.buf : "", warning_lines);
		check_failures++;
	}
	if (error)
		CHECK(set.count == 0 && set.files == NULL);
	workflow_set_release(&set);
	strbuf_release(&warnings.lines);
	repo_remove(root);
}

#define HEAD "workflows:\n  - name: a\n    provider: bash\n"

static void test_errors(void)
{
	check_load(__LINE__, HEAD "   commands: [x]\n",
		   ".dstack/workflows.yaml:4:4: did not find expected '-' indicator"
		   " (while parsing a block collection at 2:3)", "");
	check_load(__LINE__, HEAD "    commands: \"echo\n",
		   ".dstack/workflows.yaml:5:1: found unexpected end of stream"
		   " (while scanning a quoted scalar at 4:15)", "");
	check_load(__LINE__, HEAD "    deps:\n      - run: b\n",
		   ".dstack/workflows.yaml:5:9: deps[0]: expected \"workflow\" or \"tag\"",
		   "");
	check_load(__LINE__, HEAD "    deps:\n      - b\n",
		   ".dstack/workflows.yaml:5:9: deps[0]: expected \"workflow\" or \"tag\"",
		   "");
	check_load(__LINE__, HEAD "    deps:\n      - workflow: b\n        repo: c\n",
		   ".dstack/workflows.yaml:6:9: deps[0]: expected \"workflow\" or \"tag\"",
		   "");
	check_load(__LINE__, HEAD "    deps:\n      - workflow: b\n        tag: c\n",
		   ".dstack/workflows.yaml:6:9: deps[0]: expected \"workflow\" or"
		   " \"tag\", not both", "");
	check_load(__LINE__, "workflows:\n  - provider: bash\n    commands: [true]\n",
		   ".dstack/workflows.yaml:2:5: missing key \"name\"", "");
	check_load(__LINE__, "workflows:\n  - name: a\n    commands: [true]\n",
		   ".dstack/workflows.yaml:2:5: workflow 'a': missing key \"provider\"",
		   "");
	check_load(__LINE__, HEAD "    resources:\n      memory: 16 gigs\n",
		   ".dstack/workflows.yaml:5:15: resources.memory: expected a size"
		   " like 512MB", "");
	check_load(__LINE__, HEAD "    resources:\n      gpu: {count: many}\n",
		   ".dstack/workflows.yaml:5:20: resources.gpu.count: expected a"
		   " whole number", "");
	check_load(__LINE__, HEAD "    artifacts: [out, .]\n",
		   ".dstack/workflows.yaml:4:22: artifacts[1]: \".\" is the whole"
		   " working directory; name a folder in it", "");
	check_load(__LINE__, HEAD "    artifacts:\n      - path: ''\n",
		   ".dstack/workflows.yaml:5:15: artifacts[0].path: empty path", "");
	check_load(__LINE__, HEAD "    artifacts:\n      - {path: x, mount: maybe}\n",
		   ".dstack/workflows.yaml:5:26: artifacts[0].mount: expected true"
		   " or false", "");
	check_load(__LINE__, HEAD "    artifacts:\n      - mount: true\n",
		   ".dstack/workflows.yaml:5:9: artifacts[0]: missing key \"path\"", "");
	check_load(__LINE__, HEAD "    commands:\n      - echo a: b\n",
		   ".dstack/workflows.yaml:5:9: commands[0]: expected a string"
		   " (quote it if it contains \": \")", "");
	check_load(__LINE__, HEAD "    ports: [80, 70000]\n",
		   ".dstack/workflows.yaml:4:17: ports[1]: expected a port number"
		   " (1-65535)", "");
	check_load(__LINE__, HEAD "    env: [=x]\n",
		   ".dstack/workflows.yaml:4:11: env[0]: expected NAME=VALUE or NAME",
		   "");
	check_load(__LINE__, HEAD "    cache: sometimes\n",
		   ".dstack/workflows.yaml:4:12: cache: expected true or false", "");
	check_load(__LINE__, HEAD "    commands: [a]\n    commands: [b]\n",
		   ".dstack/workflows.yaml:5:5: key 'commands' is given twice"
		   " (first at 4:5)", "");
	check_load(__LINE__, HEAD "    name: b\n",
		   ".dstack/workflows.yaml:4:5: key 'name' is given twice"
		   " (first at 2:5)", "");
	check_load(__LINE__, "workflows:\n  - name: a/b\n    provider: bash\n",
		   ".dstack/workflows.yaml:2:11: name: 'a/b' cannot name a workflow"
		   " (empty, \".\", \"..\" or with \"/\")", "");
	check_load(__LINE__, "workflows:\n  - name: a\n    provider: {repo: x}\n",
		   ".dstack/workflows.yaml:3:15: provider: missing key \"name\"", "");
	check_load(__LINE__, "workflows: {a: 1}\n",
		   ".dstack/workflows.yaml:1:12: workflows: expected a list", "");
	check_load(__LINE__, "workflows:\n  - just a string\n",
		   ".dstack/workflows.yaml:2:5: workflows[0]: expected a mapping"
		   " with \"name\" and \"provider\"", "");
	check_load(__LINE__, HEAD "---\nworkflows: []\n",
		   ".dstack/workflows.yaml:4:1: expected one YAML document, found a"
		   " second", "");
	/* a recursive alias must end in an error, not a crash */
	check_load(__LINE__, HEAD "    loop: &x [*x]\n",
		   ".dstack/workflows.yaml:4:5: loop: nested too deeply or too large"
		   " (a recursive alias?)", "");
	check_load(__LINE__, HEAD
		   "    a: &a [x, x, x, x, x, x, x, x, x, x]\n"
		   "    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
		   "    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
		   "    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
		   "    e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
		   ".dstack/workflows.yaml:8:5: e: nested too deeply or too large"
		   " (a recursive alias?)", "");
	check_load(__LINE__, HEAD "    bad: \"\\xff\"\n", NULL, "");
	check_load(__LINE__, "workflows:\n  - name: a\n    help: \"\xff\"\n",
		   ".dstack/workflows.yaml:3:12: invalid leading UTF-8 octet", "");
}

static void test_duplicate_across_files(void)
{
	char *root = repo_create();
	struct error err = { 0 };
	struct workflow_set set;

	repo_write(root, ".dstack/workflows.yaml",
		   "workflows:\n  - name: train\n    provider: bash\n");
	repo_write(root, ".dstack/workflows/more.yaml",
		   "workflows:\n  - name: test\n    provider: bash\n"
		   "  - provider: bash\n    name: train\n");
	CHECK(workflow_set_load(root, &set, NULL, NULL, &err) == -EINVAL);
	CHECK(!strcmp(err.message,
		      ".dstack/workflows/more.yaml:5:11: workflow 'train' is defined"
		      " twice (first at .dstack/workflows.yaml:2:11)"));
	CHECK(set.count == 0 && set.file_count == 0);
	workflow_set_release(&set);
	repo_remove(root);
}

static void test_warnings(void)
{
	/* a typo warns and the workflow still loads */
	check_load(__LINE__, HEAD "    comands:\n      - echo hi\n", NULL,
		   ".dstack/workflows.yaml:4:5: unknown key 'comands'"
		   " (did you mean 'commands'?)\n");
	check_load(__LINE__, HEAD "    evn: [A=1]\n    artifact: [x]\n", NULL,
		   ".dstack/workflows.yaml:4:5: unknown key 'evn' (did you mean 'env'?)\n"
		   ".dstack/workflows.yaml:5:5: unknown key 'artifact'"
		   " (did you mean 'artifacts'?)\n");
	/* provider parameters, known or not, are quiet */
	check_load(__LINE__, HEAD "    url: https://x\n    output: y\n"
		   "    epochs: 10\n    model: gpt2\n", NULL, "");
	check_load(__LINE__, HEAD "    resources:\n      gpus: 1\n      disk: 1TB\n",
		   NULL,
		   ".dstack/workflows.yaml:5:7: resources: unknown key 'gpus'"
		   " (did you mean 'gpu'?)\n"
		   ".dstack/workflows.yaml:6:7: resources: unknown key 'disk'\n");
	check_load(__LINE__, "version: 2\nworkflow:\n  - name: a\n", NULL,
		   ".dstack/workflows.yaml:1:1: unknown key 'version'\n"
		   ".dstack/workflows.yaml:2:1: unknown key 'workflow'"
		   " (did you mean 'workflows'?)\n");
}

static void test_data_json(void)
{
	char *root = repo_create();
	struct warnings warnings = { STRBUF_INIT, 0 };
	struct error err = { 0 };
	struct workflow_set set;

	repo_write(root, ".dstack/workflows.yaml",
		   "workflows:\n"
		   "  - name: tinyshakespeare\n"
		   "    provider: curl\n"
		   "    help: not in data\n"
		   "    url: https://example.com/input.txt\n"
		   "    output: data/input.txt\n"
		   "    artifacts: [data]\n"
		   "    deps: [{tag: x}]\n"
		   "    retries: 3\n"
		   "    ratio: -0.5e3\n"
		   "    quoted: \"42\"\n"
		   "    verbose: yes\n"
		   "    nothing:\n"
		   "    hex: 0x1f\n"
		   "    tricky: \"a \\\"b\\\"\\tc\\\\ \\0\"\n"
		   "    nested: {a: [1, two, null, ~], b: {c: false}}\n");
	CHECK(workflow_set_load(root, &set, collect_warning, &warnings, &err) == 0);
	CHECK(warnings.count == 0);
	CHECK(set.count == 1);
	if (set.count == 1)
		CHECK(!strcmp(set.workflows[0].data_json,
			      "{\"url\":\"https://example.com/input.txt\","
			      "\"output\":\"data/input.txt\","
			      "\"artifacts\":[\"data\"],"
			      "\"retries\":3,"
			      "\"ratio\":-0.5e3,"
			      "\"quoted\":\"42\","
			      "\"verbose\":true,"
			      "\"nothing\":null,"
			      "\"hex\":\"0x1f\","
			      "\"tricky\":\"a \\\"b\\\"\\tc\\\\ \\u0000\","
			      "\"nested\":{\"a\":[1,\"two\",null,null],\"b\":{\"c\":false}}}"));
	workflow_set_release(&set);
	strbuf_release(&warnings.lines);
	repo_remove(root);
}

static void test_parse_size(void)
{
	uint64_t bytes = 0;

	CHECK(workflow_parse_size("512MB", &bytes) == 0 && bytes == 512ull << 20);
	CHECK(workflow_parse_size("16GB", &bytes) == 0 && bytes == 16ull << 30);
	CHECK(workflow_parse_size("16gb", &bytes) == 0 && bytes == 16ull << 30);
	CHECK(workflow_parse_size("16 GiB", &bytes) == 0 && bytes == 16ull << 30);
	CHECK(workflow_parse_size("1T", &bytes) == 0 && bytes == 1ull << 40);
	CHECK(workflow_parse_size("2KB", &bytes) == 0 && bytes == 2048);
	CHECK(workflow_parse_size("1.5GB", &bytes) == 0 && bytes == 3ull << 29);
	CHECK(workflow_parse_size("100", &bytes) == 0 && bytes == 100);
	CHECK(workflow_parse_size("0", &bytes) == 0 && bytes == 0);
	bytes = 7;
	CHECK(workflow_parse_size("", &bytes) == -EINVAL);
	CHECK(workflow_parse_size("GB", &bytes) == -EINVAL);
	CHECK(workflow_parse_size("-1GB", &bytes) == -EINVAL);
	CHECK(workflow_parse_size("16 gigs", &bytes) == -EINVAL);
	CHECK(workflow_parse_size("1.5", &bytes) == -EINVAL);
	CHECK(workflow_parse_size("1.GB", &bytes) == -EINVAL);
	CHECK(workflow_parse_size("16777216TB", &bytes) == -EINVAL);
	CHECK(workflow_parse_size("99999999999999999999", &bytes) == -EINVAL);
	CHECK(bytes == 7);
}

static void check_expand(int line, const char *text, char *const *args,
			 size_t count, const char *want)
{
	char *got = workflow_expand_args(text, args, count);

	if (strcmp(got, want)) {
		fprintf(stderr, "line %d: expanded \"%s\", want \"%s\"\n", line, got,
			want);
		check_failures++;
	}
	free(got);
}

static void test_expand_args(void)
{
	char *hello[] = { "-l", "Hello, world!" };
	char *quotes[] = { "it's", "a\"b", "", "$HOME", "x=1,y=2" };

	check_expand(__LINE__, "python print.py ${{ run.args }}", hello, 2,
		     "python print.py -l 'Hello, world!'");
	check_expand(__LINE__, "echo ${{run.args}}; echo ${{ \trun.args  }}", hello, 1,
		     "echo -l; echo -l");
	check_expand(__LINE__, "echo ${{ run.args }}", quotes, 5,
		     "echo 'it'\\''s' 'a\"b' '' '$HOME' x=1,y=2");
	check_expand(__LINE__, "python x.py ${{ run.args }} --end", NULL, 0,
		     "python x.py  --end");
	check_expand(__LINE__, "${{ run.other }} ${{ run.args } ${{", hello, 2,
		     "${{ run.other }} ${{ run.args } ${{");
	check_expand(__LINE__, "", hello, 2, "");
}

/* The seed's providers.yaml, plus a provider with a schema. */
static const char providers_yaml[] =
	"providers:\n"
	"  - name: curl\n"
	"    image: python:3.9\n"
	"    commands:\n"
	"      - pip3 install -r providers/curl/requirements.txt\n"
	"      - PYTHONPATH=providers python3 providers/curl/main.py\n"
	"\n"
	"  - name: curl-checked\n"
	"    commands: PYTHONPATH=providers python3 providers/curl/main.py\n"
	"    schema: ./providers/curl/schema.yaml\n";

/* The seed's schema for the curl provider. */
static const char schema_yaml[] =
	"type: object\n"
	"additionalProperties: false\n"
	"properties:\n"
	"  url:\n"
	"    type: string\n"
	"  output:\n"
	"    type: string\n"
	"  artifacts:\n"
	"    type: array\n"
	"    items:\n"
	"      type: string\n"
	"required:\n"
	"  - url\n"
	"  - output\n";

static const char schema_json[] =
	"{\"type\":\"object\","
	"\"additionalProperties\":false,"
	"\"properties\":{"
	"\"url\":{\"type\":\"string\"},"
	"\"output\":{\"type\":\"string\"},"
	"\"artifacts\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
	"\"required\":[\"url\",\"output\"]}";

static void test_providers(void)
{
	char *root = repo_create();
	struct warnings warnings = { STRBUF_INIT, 0 };
	struct error err = { 0 };
	struct strbuf schema_dir = STRBUF_INIT;
	struct provider_def_set set;
	const struct provider_def *def;
	char *json = NULL;

	strbuf_addf(&schema_dir, "%s/providers/curl", root);
	/* no providers.yaml: an empty set */
	CHECK(provider_def_set_load(root, &set, collect_warning, &warnings, &err) == 0);
	CHECK(set.count == 0 && set.file_count == 0 && set.defs == NULL);
	provider_def_set_release(&set);

	repo_write(root, ".dstack/providers.yaml", providers_yaml);
	CHECK(provider_def_set_load(root, &set, collect_warning, &warnings, &err) == 0);
	CHECK(warnings.count == 0);
	CHECK(set.file_count == 1);
	CHECK(set.count == 2);
	if (set.file_count != 1 || set.count != 2) {
		fprintf(stderr, "load: %s\n", err.message);
		goto out;
	}
	CHECK(!strcmp(set.files[0], ".dstack/providers.yaml"));

	def = provider_def_set_find(&set, "curl");
	CHECK(def == &set.defs[0]);
	CHECK(!strcmp(def->name, "curl"));
	CHECK(!strcmp(def->image, "python:3.9"));
	CHECK(def->command_count == 2);
	CHECK(!strcmp(def->commands[0],
		      "pip3 install -r providers/curl/requirements.txt"));
	CHECK(!strcmp(def->commands[1],
		      "PYTHONPATH=providers python3 providers/curl/main.py"));
	CHECK(def->schema == NULL);
	CHECK(def->position.file == set.files[0]);
	CHECK(def->position.line == 2 && def->position.column == 5);

	def = provider_def_set_find(&set, "curl-checked");
	CHECK(def == &set.defs[1]);
	CHECK(def->image == NULL);
	CHECK(def->command_count == 1);
	CHECK(!strcmp(def->commands[0],
		      "PYTHONPATH=providers python3 providers/curl/main.py"));
	CHECK(!strcmp(def->schema, "providers/curl/schema.yaml"));
	CHECK(def->position.line == 8 && def->position.column == 5);
	/* the schema as the runner reads it, from the path given */
	CHECK(fs_mkdir_p(schema_dir.buf, 0755) == 0);
	repo_write(root, "providers/curl/schema.yaml", schema_yaml);
	CHECK(workflow_yaml_file_to_json(root, def->schema, &json, &err) == 0);
	CHECK(json && !strcmp(json, schema_json));
	free(json);

	CHECK(provider_def_set_find(&set, "bash") == NULL);
out:
	provider_def_set_release(&set);
	CHECK(set.count == 0 && set.defs == NULL && set.files == NULL);
	strbuf_release(&schema_dir);
	strbuf_release(&warnings.lines);
	repo_remove(root);
}

/* As check_load, for yaml as .dstack/providers.yaml. */
static void check_providers(int line, const char *yaml, const char *error,
			    const char *warning_lines)
{
	char *root = repo_create();
	struct warnings warnings = { STRBUF_INIT, 0 };
	struct error err = { 0 };
	struct provider_def_set set;
	int ret;

	repo_write(root, ".dstack/providers.yaml", yaml);
	ret = provider_def_set_load(root, &set, collect_warning, &warnings, &err);
	if (error ? ret != -EINVAL || strcmp(err.message, error) : ret != 0) {
		fprintf(stderr, "line %d: got %d \"%s\", want \"%s\"\n", line, ret,
			err.message, error ? error : "");
		check_failures++;
	}
	if (strcmp(warnings.lines.buf ? warnings.lines.buf : "", warning_lines)) {
		fprintf(stderr, "line %d: warnings \"%s\", want \"%s\"\n", line,
			warnings.lines.buf ? warnings.lines.buf : "", warning_lines);
		check_failures++;
	}
	if (error)
		CHECK(set.count == 0 && set.defs == NULL && set.files == NULL);
	provider_def_set_release(&set);
	strbuf_release(&warnings.lines);
	repo_remove(root);
}

#define PHEAD "providers:\n  - name: curl\n"

static void test_provider_errors(void)
{
	check_providers(__LINE__, PHEAD "    image: python:3.9\n",
			".dstack/providers.yaml:2:5: provider 'curl': missing key"
			" \"commands\"", "");
	check_providers(__LINE__, "providers:\n  - image: python:3.9\n"
			"    commands: [x]\n",
			".dstack/providers.yaml:2:5: missing key \"name\"", "");
	check_providers(__LINE__, PHEAD "    commands: [a]\n"
			"  - name: other\n    commands: [b]\n"
			"  - commands: [c]\n    name: curl\n",
			".dstack/providers.yaml:7:11: provider 'curl' is defined twice"
			" (first at .dstack/providers.yaml:2:11)", "");
	check_providers(__LINE__, PHEAD "    commands:\n      pip3: install\n",
			".dstack/providers.yaml:4:7: commands: expected a list of"
			" strings", "");
	check_providers(__LINE__, PHEAD "    commands:\n      - echo a: b\n",
			".dstack/providers.yaml:4:9: commands[0]: expected a string"
			" (quote it if it contains \": \")", "");
	check_providers(__LINE__, PHEAD "    commands:\n      - ok\n      - [x]\n",
			".dstack/providers.yaml:5:9: commands[1]: expected a string", "");
	check_providers(__LINE__, PHEAD "    commands: []\n",
			".dstack/providers.yaml:3:15: commands: expected at least one"
			" command", "");
	check_providers(__LINE__, PHEAD "    commands:\n",
			".dstack/providers.yaml:3:14: commands: expected at least one"
			" command", "");
	check_providers(__LINE__, "providers:\n  - name: [curl]\n    commands: [x]\n",
			".dstack/providers.yaml:2:11: name: expected a string", "");
	check_providers(__LINE__, "providers:\n  - name: ''\n    commands: [x]\n",
			".dstack/providers.yaml:2:11: name: expected a name", "");
	check_providers(__LINE__, PHEAD "    image: {name: python}\n    commands: [x]\n",
			".dstack/providers.yaml:3:12: image: expected a string", "");
	check_providers(__LINE__, PHEAD "    commands: [x]\n    schema: [a.yaml]\n",
			".dstack/providers.yaml:4:13: schema: expected a string", "");
	check_providers(__LINE__, PHEAD "    commands: [x]\n    schema: /etc/s.yaml\n",
			".dstack/providers.yaml:4:13: schema: '/etc/s.yaml' is not"
			" relative to the repository root", "");
	check_providers(__LINE__, PHEAD "    commands: [x]\n    schema: a/../../s.yaml\n",
			".dstack/providers.yaml:4:13: schema: 'a/../../s.yaml' leaves"
			" the repository", "");
	check_providers(__LINE__, PHEAD "    commands: [x]\n    schema: ./\n",
			".dstack/providers.yaml:4:13: schema: empty path", "");
	check_providers(__LINE__, PHEAD "    commands: [a]\n    commands: [b]\n",
			".dstack/providers.yaml:4:5: key 'commands' is given twice"
			" (first at 3:5)", "");
	check_providers(__LINE__, "providers: {name: curl}\n",
			".dstack/providers.yaml:1:12: providers: expected a list", "");
	check_providers(__LINE__, "providers:\n  - curl\n",
			".dstack/providers.yaml:2:5: providers[0]: expected a mapping"
			" with \"name\" and \"commands\"", "");
	check_providers(__LINE__, "- name: curl\n",
			".dstack/providers.yaml:1:1: expected a mapping with a"
			" \"providers\" list", "");
	check_providers(__LINE__, PHEAD "    commands: [x\n",
			".dstack/providers.yaml:4:1: did not find expected ',' or ']'"
			" (while parsing a flow sequence at 3:15)", "");
}

static void test_provider_warnings(void)
{
	check_providers(__LINE__, PHEAD "    imgae: python:3.9\n    commands: [x]\n"
			"    shema: s.yaml\n    url: https://x\n", NULL,
			".dstack/providers.yaml:3:5: unknown key 'imgae'"
			" (did you mean 'image'?)\n"
			".dstack/providers.yaml:5:5: unknown key 'shema'"
			" (did you mean 'schema'?)\n"
			".dstack/providers.yaml:6:5: unknown key 'url'\n");
	check_providers(__LINE__, "provider:\n  - name: curl\n", NULL,
			".dstack/providers.yaml:1:1: unknown key 'provider'"
			" (did you mean 'providers'?)\n");
	/* nothing at all, an empty list */
	check_providers(__LINE__, "# none yet\n", NULL, "");
	check_providers(__LINE__, "providers:\n", NULL, "");
}

/* Writes yaml at relative and compares workflow_yaml_file_to_json's
 * JSON, or with want_json NULL its error. */
static void check_to_json(int line, const char *relative, const char *yaml,
			  const char *want_json, const char *want_error)
{
	char *root = repo_create(), *json = (char *)"unset";
	struct error err = { 0 };
	int ret;

	if (yaml) {
		struct strbuf dir = STRBUF_INIT;

		strbuf_addf(&dir, "%s/%s", root, relative);
		*strrchr(dir.buf, '/') = '\0';
		CHECK(fs_mkdir_p(dir.buf, 0755) == 0);
		strbuf_release(&dir);
		repo_write(root, relative, yaml);
	}
	ret = workflow_yaml_file_to_json(root, relative, &json, &err);
	if (want_json ? ret != 0 || strcmp(json, want_json) :
			ret >= 0 || json != NULL || strcmp(err.message, want_error)) {
		fprintf(stderr, "line %d: got %d \"%s\" \"%s\", want \"%s\"\n", line,
			ret, ret ? "" : json, err.message,
			want_json ? want_json : want_error);
		check_failures++;
	}
	if (!ret)
		free(json);
	repo_remove(root);
}

static void test_yaml_file_to_json(void)
{
	check_to_json(__LINE__, "providers/curl/schema.yaml", schema_yaml,
		      schema_json, NULL);
	check_to_json(__LINE__, "s.yaml",
		      "- {minimum: 1, maximum: 1.5e3, enum: [\"1\", yes, ~]}\n"
		      "- 'text: \"quoted\"'\n",
		      "[{\"minimum\":1,\"maximum\":1.5e3,\"enum\":[\"1\",true,null]},"
		      "\"text: \\\"quoted\\\"\"]", NULL);
	check_to_json(__LINE__, "s.yaml", "true\n", "true", NULL);
	check_to_json(__LINE__, "missing.yaml", NULL, NULL,
		      "missing.yaml: cannot read: No such file or directory");
	check_to_json(__LINE__, "s.yaml", "", NULL,
		      "s.yaml:1:1: expected a YAML document, found none");
	check_to_json(__LINE__, "s.yaml", "type: object\ntype: array\n", NULL,
		      "s.yaml:2:1: key 'type' is given twice (first at 1:1)");
	check_to_json(__LINE__, "s.yaml", "type: object\nrequired: [a\n", NULL,
		      "s.yaml:3:1: did not find expected ',' or ']'"
		      " (while parsing a flow sequence at 2:11)");
	check_to_json(__LINE__, "s.yaml", "type: object\n---\ntype: array\n", NULL,
		      "s.yaml:2:1: expected one YAML document, found a second");
	check_to_json(__LINE__, "s.yaml", "a: &x [*x]\n", NULL,
		      "s.yaml:1:1: nested too deeply or too large (a recursive alias?)");
}

int main(void)
{
	RUN_TEST(test_realistic_files);
	RUN_TEST(test_no_files);
	RUN_TEST(test_errors);
	RUN_TEST(test_duplicate_across_files);
	RUN_TEST(test_warnings);
	RUN_TEST(test_data_json);
	RUN_TEST(test_parse_size);
	RUN_TEST(test_expand_args);
	RUN_TEST(test_providers);
	RUN_TEST(test_provider_errors);
	RUN_TEST(test_provider_warnings);
	RUN_TEST(test_yaml_file_to_json);
	return check_failures ? 1 : 0;
}
