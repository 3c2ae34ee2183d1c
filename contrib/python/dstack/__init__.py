"""dstack: the Python API of custom providers.

A custom provider is a program named in .dstack/providers.yaml.  The runner
starts it with two paths in its environment:

  DSTACK_WORKFLOW  a JSON file: {"data": {...}, "workflow": NAME,
                   "run_name": RUN, "args": [...], "tag": TAG or null,
                   "repo": {"url", "branch", "commit", "dirty"}};
                   "data" holds the parameters the user wrote for the workflow
  DSTACK_JOBS      where the provider writes its jobs, a JSON array

This module reads the first and writes the second:

    from typing import List
    from dstack import Provider, Job

    class CurlProvider(Provider):
        def __init__(self):
            super().__init__(schema="providers/curl/schema.yaml")
            self.url = self.workflow.data["url"]

        def create_jobs(self) -> List[Job]:
            return [Job(image="python:3.9", commands=[f"curl {self.url}"])]

    if __name__ == '__main__':
        CurlProvider().start()

It uses nothing but the standard library (Python 3.6 or later), and PyYAML
only to read a schema file when one is given.  Every error it reports is one
line on stderr starting with "dstack: ", and the process exits with status 2.
"""
import abc
import json
import os
import re
import sys
from typing import Any, Dict, List, Optional, Union

from . import _schema

__all__ = [
    "Provider", "Job", "ResourceRequirements", "GpuRequirements",
    "GpuResourceRequirements", "Workflow", "Repo", "ProviderError",
    "jobs_to_json",
]

EXIT_ERROR = 2


class ProviderError(Exception):
    """A provider's jobs or workflow file cannot be used; str() says why."""


def _die(message):
    """Prints "dstack: message" as one line on stderr and exits with 2."""
    line = " ".join(str(message).split("\n"))
    try:
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):
        pass
    sys.stderr.write("dstack: %s\n" % line)
    sys.stderr.flush()
    raise SystemExit(EXIT_ERROR)


def _kind(value):
    """A short English name for the type of value, for messages."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a dict"
    if isinstance(value, (list, tuple)):
        return "a list"
    name = type(value).__name__
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


# --------------------------------------------------------------------------
# The workflow


class Repo:
    """The repository the run was submitted from: url, branch, commit and
    dirty (whether uncommitted changes were part of the snapshot).  Reads
    as attributes or as a dict (repo.url, repo["url"])."""

    def __init__(self, url=None, branch=None, commit=None, dirty=None, **extra):
        self.url = url
        self.branch = branch
        self.commit = commit
        self.dirty = dirty
        self.__dict__.update(extra)

    def __getitem__(self, key):
        try:
            return self.__dict__[key]
        except KeyError:
            raise KeyError(key) from None

    def get(self, key, default=None):
        return self.__dict__.get(key, default)

    def __repr__(self):
        return "Repo(%s)" % ", ".join("%s=%r" % kv for kv in self.__dict__.items())


class Workflow:
    """The workflow being run, as the runner describes it in DSTACK_WORKFLOW.

    data      the parameters the user wrote for the workflow (a dict)
    name      the workflow's name
    run_name  the run's name
    args      the arguments given to `dstack run WORKFLOW ...` (a list)
    tag       the tag given with `dstack run -t`, or None
    repo      a Repo
    raw       the whole JSON object; its other keys read as attributes too
    """

    def __init__(self, raw: Dict[str, Any]):
        self.raw = raw
        data = raw.get("data")
        self.data = {} if data is None else data  # type: Dict[str, Any]
        self.name = raw.get("workflow")  # type: Optional[str]
        self.run_name = raw.get("run_name")  # type: Optional[str]
        self.args = list(raw.get("args") or [])  # type: List[str]
        self.tag = raw.get("tag")  # type: Optional[str]
        repo = raw.get("repo") or {}
        self.repo = Repo(**{str(k): v for k, v in repo.items()})

    def __getattr__(self, name):
        raw = self.__dict__.get("raw")
        if raw is not None and name in raw:
            return raw[name]
        raise AttributeError(name)

    def __repr__(self):
        return "Workflow(name=%r, run_name=%r, data=%r)" % (
            self.name, self.run_name, self.data)

    @classmethod
    def load(cls, path: str) -> "Workflow":
        """Reads a DSTACK_WORKFLOW file; raises ProviderError."""
        try:
            with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
                raw = json.load(f)
        except OSError as e:
            raise ProviderError("cannot read it: %s" % (e.strerror or e)) from None
        except ValueError as e:
            raise ProviderError("not valid JSON: %s" % e) from None
        if not isinstance(raw, dict):
            raise ProviderError("expected a JSON object, found %s" % _kind(raw))
        if raw.get("data") is not None and not isinstance(raw["data"], dict):
            raise ProviderError("data: expected an object, found %s"
                                % _kind(raw["data"]))
        args = raw.get("args")
        if args is not None and not (isinstance(args, list) and
                                     all(isinstance(a, str) for a in args)):
            raise ProviderError("args: expected a list of strings")
        repo = raw.get("repo")
        if repo is not None and not isinstance(repo, dict):
            raise ProviderError("repo: expected an object, found %s" % _kind(repo))
        return cls(raw)


def _load_workflow() -> Workflow:
    path = os.environ.get("DSTACK_WORKFLOW")
    if not path:
        _die("provider: DSTACK_WORKFLOW is not set: a provider is started by "
             "`dstack run`, which names the workflow's JSON file in it")
    try:
        return Workflow.load(path)
    except ProviderError as e:
        _die("provider: DSTACK_WORKFLOW (%s): %s" % (path, e))


def _validate_parameters(schema_path: str, data) -> None:
    try:
        schema = _schema.load_schema(schema_path)
    except ImportError as e:
        _die(e)
    except _schema.InvalidSchema as e:
        _die("provider schema: %s: invalid schema: %s" % (schema_path, e))
    try:
        _schema.validate(data, schema)
    except _schema.SchemaError as e:
        _die("provider schema: %s: %s" % (schema_path, e))


# --------------------------------------------------------------------------
# Jobs


class GpuRequirements:
    """GPUs a job asks for: count, name (e.g. "A100") and memory per GPU
    ("16GB", or a number of bytes).  A name or memory alone asks for one."""

    def __init__(self, count: Optional[int] = None, name: Optional[str] = None,
                 memory: Optional[Union[str, int]] = None):
        self.count = count
        self.name = name
        self.memory = memory

    def __repr__(self):
        return "GpuRequirements(count=%r, name=%r, memory=%r)" % (
            self.count, self.name, self.memory)


# dstack 0.0.x's name for it
GpuResourceRequirements = GpuRequirements


class ResourceRequirements:
    """What a job needs: cpu (a count), memory and shm_size (a size such as
    "512MB" or "8GB", or a number of bytes), gpu (a count or a
    GpuRequirements)."""

    def __init__(self, cpu: Optional[int] = None,
                 memory: Optional[Union[str, int]] = None,
                 gpu: Optional[Union[int, GpuRequirements]] = None,
                 shm_size: Optional[Union[str, int]] = None):
        self.cpu = cpu
        self.memory = memory
        self.gpu = gpu
        self.shm_size = shm_size

    def __repr__(self):
        return "ResourceRequirements(cpu=%r, memory=%r, gpu=%r, shm_size=%r)" % (
            self.cpu, self.memory, self.gpu, self.shm_size)


class Job:
    """One job of a run.

    image        the Docker image (container backends)
    commands     the commands that start the job (a list of strings; required)
    ports        how many free ports the job needs, or the list of port
                 numbers it opens; they reach it as PORT_0, PORT_1, ...
    working_dir  the working directory, relative to the repository
    artifacts    folders stored as the job's output artifacts: a list of
                 paths, or of {"path": P, "mount": True} (shown live in
                 the /dstack tree while the job runs)
    resources    a ResourceRequirements
    depends_on   the Jobs (of the same create_jobs() list) that must finish
                 before this one starts
    master       the Job (of the same list) that this one talks to; it gets
                 MASTER_JOB_HOSTNAME and MASTER_JOB_PORT_N
    env          environment variables (a dict of strings)
    """

    def __init__(self, image: Optional[str] = None,
                 commands: Optional[List[str]] = None,
                 ports: Optional[Union[int, List[int]]] = None,
                 working_dir: Optional[str] = None,
                 artifacts: Optional[List[Union[str, Dict[str, Any]]]] = None,
                 resources: Optional[ResourceRequirements] = None,
                 depends_on: Optional[List["Job"]] = None,
                 master: Optional["Job"] = None,
                 env: Optional[Dict[str, str]] = None):
        self.image = image
        self.commands = commands
        self.ports = ports
        self.working_dir = working_dir
        self.artifacts = artifacts
        self.resources = resources
        self.depends_on = depends_on
        self.master = master
        self.env = env

    def __repr__(self):
        fields = ("image", "commands", "ports", "working_dir", "artifacts",
                  "resources", "env")
        shown = ["%s=%r" % (f, getattr(self, f)) for f in fields
                 if getattr(self, f) is not None]
        if self.depends_on is not None:
            shown.append("depends_on=[%d jobs]" % len(self.depends_on)
                         if isinstance(self.depends_on, (list, tuple))
                         else "depends_on=%s" % _kind(self.depends_on))
        if self.master is not None:
            shown.append("master=<%s>" % type(self.master).__name__)
        return "Job(%s)" % ", ".join(shown)


# A size as the runner reads it: bytes, or a number with a unit (MB = MiB).
_SIZE = re.compile(r"^([0-9]+)(\.[0-9]+)? *(b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)?$",
                   re.IGNORECASE)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value, field):
    if not _is_int(value) or value < 0:
        raise ProviderError("%s: expected a count (an integer, 0 or more), found %s"
                            % (field, _show(value)))
    return value


def _size(value, field):
    if _is_int(value) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m and not (m.group(2) and (m.group(3) or "b").lower() == "b"):
            return value
    raise ProviderError('%s: expected a size like "512MB" or a number of bytes, '
                        "found %s" % (field, _show(value)))


def _string(value, field, empty_ok=False):
    if not isinstance(value, str):
        raise ProviderError("%s: expected a string, found %s" % (field, _show(value)))
    if not value and not empty_ok:
        raise ProviderError("%s: expected a string, found an empty one" % field)
    return value


def _show(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return _kind(value)


def _string_list(value, field):
    """A list of strings, or one string standing for a list of one."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise ProviderError("%s: expected a list of strings, found %s"
                            % (field, _kind(value)))
    return [_string(v, "%s[%d]" % (field, i)) for i, v in enumerate(value)]


def _artifacts(value, field):
    """Paths, or {"path": P, "mount": True} as a workflow's artifacts are
    written, so a provider may pass workflow.data["artifacts"] on."""
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ProviderError("%s: expected a list of paths, found %s"
                            % (field, _kind(value)))
    items = []
    for i, item in enumerate(value):
        where = "%s[%d]" % (field, i)
        if not isinstance(item, dict):
            items.append(_string(item, where))
            continue
        unknown = sorted(set(item) - {"path", "mount"})
        if unknown:
            raise ProviderError("%s: unknown field '%s'" % (where, unknown[0]))
        entry = {"path": _string(item.get("path"), where + ".path")}
        mount = item.get("mount", False)
        if not isinstance(mount, bool):
            raise ProviderError("%s.mount: expected true or false, found %s"
                                % (where, _show(mount)))
        if mount:
            entry["mount"] = True
        items.append(entry)
    return items


def _env(value, field):
    if isinstance(value, (list, tuple)):
        pairs = {}
        for i, item in enumerate(value):
            item = _string(item, "%s[%d]" % (field, i))
            if "=" not in item or item.startswith("="):
                raise ProviderError("%s[%d]: expected NAME=VALUE, found %r"
                                    % (field, i, item))
            name, _, val = item.partition("=")
            pairs[name] = val
        value = pairs
    if not isinstance(value, dict):
        raise ProviderError("%s: expected a dict of strings, found %s"
                            % (field, _kind(value)))
    env = {}
    for name, val in value.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ProviderError("%s: %s is not a variable name" % (field, _show(name)))
        if isinstance(val, (int, float)) and not isinstance(val, bool):
            val = str(val)
        if not isinstance(val, str):
            raise ProviderError("%s.%s: expected a string, found %s"
                                % (field, name, _show(val)))
        env[name] = val
    return env


def _ports(value, field):
    if _is_int(value):
        return _count(value, field)
    if not isinstance(value, (list, tuple)):
        raise ProviderError("%s: expected a count or a list of port numbers, found %s"
                            % (field, _show(value)))
    ports = []
    for i, port in enumerate(value):
        if not _is_int(port) or not 1 <= port <= 65535:
            raise ProviderError("%s[%d]: expected a port number (1-65535), found %s"
                                % (field, i, _show(port)))
        if port in ports:
            raise ProviderError("%s[%d]: port %d is listed twice" % (field, i, port))
        ports.append(port)
    return ports


_GPU_KEYS = ("count", "name", "memory")
_RESOURCE_KEYS = ("cpu", "memory", "gpu", "shm_size")


def _gpu(value, field):
    if _is_int(value):
        return _count(value, field)
    if isinstance(value, dict):
        unknown = [k for k in value if k not in _GPU_KEYS]
        if unknown:
            raise ProviderError("%s: unknown key %s (expected count, name, memory)"
                                % (field, _show(unknown[0])))
        value = GpuRequirements(**value)
    if not isinstance(value, GpuRequirements):
        raise ProviderError("%s: expected a count or a GpuRequirements, found %s"
                            % (field, _show(value)))
    gpu = {}
    if value.count is not None:
        gpu["count"] = _count(value.count, field + ".count")
    if value.name is not None:
        gpu["name"] = _string(value.name, field + ".name")
    if value.memory is not None:
        gpu["memory"] = _size(value.memory, field + ".memory")
    return gpu


def _resources(value, field):
    if isinstance(value, dict):
        unknown = [k for k in value if k not in _RESOURCE_KEYS]
        if unknown:
            raise ProviderError("%s: unknown key %s (expected %s)"
                                % (field, _show(unknown[0]), ", ".join(_RESOURCE_KEYS)))
        value = ResourceRequirements(**value)
    if not isinstance(value, ResourceRequirements):
        raise ProviderError("%s: expected a ResourceRequirements, found %s"
                            % (field, _show(value)))
    res = {}
    if value.cpu is not None:
        res["cpu"] = _count(value.cpu, field + ".cpu")
    if value.memory is not None:
        res["memory"] = _size(value.memory, field + ".memory")
    if value.gpu is not None:
        res["gpu"] = _gpu(value.gpu, field + ".gpu")
    if value.shm_size is not None:
        res["shm_size"] = _size(value.shm_size, field + ".shm_size")
    return res


def _job_index(ref, field, indexes, count):
    """The index of a referenced job: a Job of the list, or an index."""
    if isinstance(ref, Job):
        index = indexes.get(id(ref))
        if index is None:
            raise ProviderError("%s: that Job is not among the jobs create_jobs() "
                                "returned; return it in the list too" % field)
    elif _is_int(ref):
        if not 0 <= ref < count:
            raise ProviderError("%s: there is no job %d (create_jobs() returned %d)"
                                % (field, ref, count))
        index = ref
    else:
        raise ProviderError("%s: expected a Job, found %s" % (field, _show(ref)))
    return index


def jobs_to_json(jobs) -> List[Dict[str, Any]]:
    """The JSON form of the jobs create_jobs() returned, as written to
    DSTACK_JOBS; raises ProviderError naming the job and field at fault."""
    if jobs is None:
        raise ProviderError("create_jobs() returned None; it must return a list "
                            "of dstack.Job (a missing return?)")
    if isinstance(jobs, Job):
        jobs = [jobs]
    elif isinstance(jobs, (str, bytes, dict)) or not hasattr(jobs, "__iter__"):
        raise ProviderError("create_jobs() returned %s; it must return a list of "
                            "dstack.Job" % _kind(jobs))
    jobs = list(jobs)
    if not jobs:
        raise ProviderError("create_jobs() returned no jobs; a run needs at least one")
    indexes = {}
    for i, job in enumerate(jobs):
        if not isinstance(job, Job):
            raise ProviderError("create_jobs() returned %s as job %d; expected a "
                                "dstack.Job" % (_show(job), i))
        if id(job) in indexes:
            raise ProviderError("create_jobs() returned the same Job twice, as "
                                "jobs %d and %d" % (indexes[id(job)], i))
        indexes[id(job)] = i

    out = []
    for i, job in enumerate(jobs):
        where = "job %d: " % i
        doc = {}
        if job.image is not None:
            doc["image"] = _string(job.image, where + "image")
        if job.commands is None:
            raise ProviderError(where + "commands: required (a list of strings)")
        doc["commands"] = _string_list(job.commands, where + "commands")
        if not doc["commands"]:
            raise ProviderError(where + "commands: expected at least one command")
        if job.env is not None:
            doc["env"] = _env(job.env, where + "env")
        if job.ports is not None:
            doc["ports"] = _ports(job.ports, where + "ports")
        if job.working_dir is not None:
            doc["working_dir"] = _string(job.working_dir, where + "working_dir")
        if job.artifacts is not None:
            doc["artifacts"] = _artifacts(job.artifacts, where + "artifacts")
        if job.resources is not None:
            resources = _resources(job.resources, where + "resources")
            if resources:
                doc["resources"] = resources
        if job.depends_on is not None:
            refs = job.depends_on
            if isinstance(refs, Job) or _is_int(refs):
                refs = [refs]
            if not isinstance(refs, (list, tuple, set, frozenset)):
                raise ProviderError(where + "depends_on: expected a list of Jobs, "
                                    "found %s" % _show(refs))
            deps = []
            for k, ref in enumerate(refs):
                field = "%sdepends_on[%d]" % (where, k)
                index = _job_index(ref, field, indexes, len(jobs))
                if index == i:
                    raise ProviderError(field + ": a job cannot depend on itself")
                if index not in deps:
                    deps.append(index)
            doc["depends_on"] = deps
        if job.master is not None:
            index = _job_index(job.master, where + "master", indexes, len(jobs))
            if index == i:
                raise ProviderError(where + "master: a job cannot be its own master")
            doc["master"] = index
        out.append(doc)
    _check_cycles(out)
    return out


def _check_cycles(docs):
    WHITE, GREY, BLACK = 0, 1, 2
    state = [WHITE] * len(docs)
    for start in range(len(docs)):
        if state[start] != WHITE:
            continue
        stack = [(start, iter(docs[start].get("depends_on", ())))]
        path = [start]
        state[start] = GREY
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = BLACK
                stack.pop()
                path.pop()
            elif state[nxt] == GREY:
                cycle = path[path.index(nxt):] + [nxt]
                raise ProviderError("depends_on: jobs %s wait for each other"
                                    % " -> ".join(str(n) for n in cycle))
            elif state[nxt] == WHITE:
                state[nxt] = GREY
                path.append(nxt)
                stack.append((nxt, iter(docs[nxt].get("depends_on", ()))))


# --------------------------------------------------------------------------
# The provider


class Provider(abc.ABC):
    """The base class of a custom provider.

    Provider(schema=PATH) reads the workflow from DSTACK_WORKFLOW into
    self.workflow and, given a schema (a YAML file, its path relative to the
    current directory), checks self.workflow.data against it: a mismatch is
    reported as one line and the provider exits with status 2.  A subclass
    implements create_jobs(); start() calls it and writes DSTACK_JOBS.
    """

    def __init__(self, schema: Optional[str] = None):
        self.schema = schema
        self.workflow = _load_workflow()
        if schema is not None:
            _validate_parameters(schema, self.workflow.data)

    @abc.abstractmethod
    def create_jobs(self) -> List[Job]:
        """Returns the run's jobs, a list of Job."""

    def start(self) -> None:
        """Creates the jobs and writes them to DSTACK_JOBS."""
        path = os.environ.get("DSTACK_JOBS")
        if not path:
            _die("provider: DSTACK_JOBS is not set: a provider is started by "
                 "`dstack run`, which names the file for the jobs in it")
        jobs = self.create_jobs()
        try:
            docs = jobs_to_json(jobs)
        except ProviderError as e:
            _die("provider %s: %s" % (type(self).__name__, e))
        try:
            text = json.dumps(docs, indent=2, ensure_ascii=False, allow_nan=False)
            data = (text + "\n").encode("utf-8", "surrogateescape")
        except (ValueError, UnicodeError) as e:
            _die("provider %s: cannot write the jobs as JSON: %s"
                 % (type(self).__name__, e))
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as e:
            _die("provider: cannot write DSTACK_JOBS (%s): %s"
                 % (path, e.strerror or e))
