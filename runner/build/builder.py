"""`Builder`: runs a parsed Dockerfile into an image in kapal's store.

Lifecycle: construct a `Builder` with the image store, the layer cache, a container backend (or a
factory for one, called on the first RUN that misses the cache) and a `BuildReporter`; call
`build(options)` once per build (a builder holds no per-build state between calls, so one instance
may serve several sequential builds). Each build: parse the Dockerfile, plan the stages the target
needs, then for each stage run its base's ONBUILD triggers first (the stage keeps none of them),
and for each instruction either update the config (metadata steps, recorded in history with
`empty_layer`) or produce a layer: RUN in a container over an overlay of the layers so far (the kept
upper dir becomes the layer; `--mount`s prepared by `runner.build.mounts`), COPY/ADD/WORKDIR
written directly into a layer tree (ADD of a git repository through `runner.build.gitsource`).
Layer-producing steps are cached by key (see `runner.build.cache`).
The target's layers and config are committed to the store under the requested tags; layers the build
produced are handed to the store as hard links to the cache's blob and unpacked tree, so a built
layer is kept on disk once.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import hashlib
import json
import os
import posixpath
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pipeline.records import record
from runner.build import copying
from runner.build.cache import CachedLayer, LayerCache, cache_key
from runner.build.dockerfile import (
    Dockerfile,
    Instruction,
    json_array,
    parse_dockerfile,
    parse_heredoc,
    read_dockerfile,
)
from runner.build.dockerfile_source import read_dockerfile_within
from runner.build.dockerignore import DockerIgnore
from runner.build.expansion import Expander, ExpansionError
from runner.build.imageconfig import DEFAULT_PATH, go_duration_ns, history_entry, rfc3339
from runner.build.layers import write_layer
from runner.build.stages import Stage, plan_stages
from runner.build.stepdisk import BuildDisk, StepDisk
from runner.build.treelinks import link_tree
from runner.build.trees import ContextTree, LayeredTree, SourceTree
from runner.build.users import resolve_chown
from runner.errors import (
    BuildError,
    BuildStepError,
    DockerfileError,
    ImageNotFoundError,
    RunnerError,
)
from runner.images.image import Image, LayerDescriptor
from runner.images.mediatypes import OCI_LAYER_GZIP, OCI_LAYER_ZSTD
from runner.images.platforms import SUPPORTED_PLATFORMS
from runner.images.reference import Reference
from runner.images.store import ImageStore

if TYPE_CHECKING:
    import httpx

    # imported where used: ADD of a git repository, RUN --mount (a warm build needs neither)
    from runner.build import mounts
    from runner.build.gitsource import GitSource
    from runner.runtime.backend import Backend, LogLine

__all__ = ["BuildOptions", "BuildReporter", "BuildResult", "Builder", "NullReporter"]

PROXY_ARGS = frozenset(
    [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
)
PLATFORM_ARGS = {
    "TARGETPLATFORM": "linux/amd64",
    "TARGETOS": "linux",
    "TARGETARCH": "amd64",
    "TARGETVARIANT": "",
    "BUILDPLATFORM": "linux/amd64",
    "BUILDOS": "linux",
    "BUILDARCH": "amd64",
    "BUILDVARIANT": "",
}
DEFAULT_SHELL = ("/bin/sh", "-c")
_TAIL_LINES = 20
# heredoc scripts with a shebang are bind-mounted here (on the container's /dev tmpfs, so they
# never land in the layer)
_SCRIPT_DIR = "/dev/pipes"


@record
class BuildOptions:
    """What to build: the context, the Dockerfile, tags, build args, target, cache and network."""

    context: Path
    dockerfile: Path | None = None
    tags: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    # set for pipelines: the Dockerfile must resolve inside this tree (the repository), symlinks
    # included, and is read through the in-root resolver
    dockerfile_root: Path | None = None
    no_cache: bool = False
    # what RUN steps and ADD <url> reach: "nat" the outside world but not the host (the default),
    # "none" nothing, "host" the host's network (only where the backend's policy allows it)
    network: Literal["host", "nat", "none"] = "nat"
    epoch: int = 0
    # build args holding secrets: RUN steps get them, the history (`|N NAME=value`) does not
    secret_args: frozenset[str] = frozenset()
    # RUN --mount=type=secret sources by id (`kapal build --secret`): in no layer, no history
    secrets: Mapping[str, bytes] = field(default_factory=dict)
    # how the layers this build makes are compressed (base image layers are kept as they are)
    compression: Literal["gzip", "zstd"] = "gzip"


@record
class BuildResult:
    """The committed image, the tags it got, and how many layer steps were cache hits."""

    image: Image
    tags: tuple[str, ...]
    cached_steps: int
    run_steps: int
    notes: tuple[str, ...]
    # what a build memo (runner.build.memo) needs to answer the same build again: the step
    # number of each layer step (one per layer), the cache entries they used (key, blob, tree),
    # the base image names looked up in the store, and whether ADD fetched from the network
    layer_steps: tuple[int, ...] = ()
    cache_entries: tuple[tuple[str, str, str], ...] = ()
    bases: tuple[str, ...] = ()
    remote_sources: bool = False


class BuildReporter(Protocol):
    """Receives progress: step starts, cache hits, RUN output lines, step ends, notes."""

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        """A step begins."""

    def cached(self) -> None:
        """The current step was a cache hit."""

    def line(self, line: LogLine) -> None:
        """A line of RUN output."""

    def done(self, seconds: float) -> None:
        """The current step finished."""

    def note(self, text: str) -> None:
        """A warning or note for the user."""


class NullReporter:
    """A reporter that discards everything."""

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        """Ignore."""

    def cached(self) -> None:
        """Ignore."""

    def line(self, line: LogLine) -> None:
        """Ignore."""

    def done(self, seconds: float) -> None:
        """Ignore."""

    def note(self, text: str) -> None:
        """Ignore."""


@dataclass
class _Layer:
    """A layer of the image being built: either already in the store, or held by the cache."""

    diff_id: str
    tree: Path
    descriptor: LayerDescriptor | None = None
    cached: CachedLayer | None = None


@dataclass
class _StageState:
    """The image a stage has built so far."""

    config: dict[str, Any]
    layers: list[_Layer]
    key: str
    args: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> dict[str, Any]:
        """The `config` object inside the image config."""
        value = self.config.setdefault("config", {})
        assert isinstance(value, dict)
        return value

    def env(self) -> dict[str, str]:
        """The image Env as a dict."""
        out: dict[str, str] = {}
        for entry in self.settings.get("Env") or []:
            key, _, value = str(entry).partition("=")
            out[key] = value
        return out

    def set_env(self, values: dict[str, str]) -> None:
        """Replace the image Env."""
        self.settings["Env"] = [f"{k}={v}" for k, v in values.items()]

    def tree(self) -> LayeredTree:
        """A read-only merged view of the stage's root filesystem."""
        return LayeredTree(tuple(layer.tree for layer in self.layers))


class Builder:
    """Builds Dockerfiles into images (see the module docstring for the lifecycle)."""

    def __init__(
        self,
        *,
        store: ImageStore,
        cache: LayerCache,
        backend: Backend | Callable[[], Backend],
        reporter: BuildReporter | None = None,
        http: Callable[[], httpx.Client] | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        # a factory is called on the first RUN that misses the cache: a fully cached build never
        # loads the container runtime (`kapal build` start-up is most of a warm rebuild)
        self._backend = backend
        self.reporter: BuildReporter = reporter or NullReporter()
        self.http = http or _default_http_client

    @property
    def backend(self) -> Backend:
        """The container backend RUN steps execute in (created on first use from a factory)."""
        if callable(self._backend):
            self._backend = self._backend()
        return self._backend

    def build(self, options: BuildOptions) -> BuildResult:
        """Build `options` and commit the image; raises `BuildError`s the user can act on."""
        return _Build(self, options).run()


def _default_http_client() -> httpx.Client:
    """The client ADD downloads URLs with (httpx is imported only when a build downloads)."""
    import httpx

    return httpx.Client(follow_redirects=True, timeout=60.0)


class _Build:
    """The state of one build."""

    def __init__(self, builder: Builder, options: BuildOptions) -> None:
        self.b = builder
        self.o = options
        context = options.context
        if not context.is_dir():
            raise BuildError(f"the build context {context} is not a directory")
        path = options.dockerfile or context / "Dockerfile"
        if options.dockerfile_root is not None:
            self.df: Dockerfile = read_dockerfile_within(options.dockerfile_root, path)
        else:
            self.df = read_dockerfile(path)
        self.context = ContextTree(context, DockerIgnore.load(context))
        self.notes: list[str] = list(self.df.notes)
        self.cached_steps = 0
        self.run_steps = 0
        self.used_args: set[str] = set()
        self.stages: dict[int, _StageState] = {}
        # RUN --mount=type=secret: `--secret`s, and a pipeline's secret variables by name
        self.secrets: dict[str, bytes] = {
            name: value.encode()
            for name, value in options.build_args.items()
            if name in options.secret_args
        }
        self.secrets.update(options.secrets)
        # RUN steps that miss the cache write their layers there (made by the first one)
        self.disk = BuildDisk(builder.cache.tmp_dir)
        # for BuildResult: what a build memo records
        self.step_number = 0
        self.layer_steps: list[int] = []
        self.cache_entries: list[tuple[str, str, str]] = []
        self.bases: list[str] = []
        self.remote_sources = False

    # -- driving ---------------------------------------------------------------------------

    def run(self) -> BuildResult:
        try:
            return self.run_stages()
        finally:
            self.disk.close()  # failed or canceled too: no disk outlives its build

    def run_stages(self) -> BuildResult:
        global_values = self.global_args()
        plan = plan_stages(self.df, global_values, self.o.target)
        self.plan = plan
        self.global_values = global_values
        steps = [s for s in plan.stages if s.index in plan.needed]
        total = sum(1 + len(s.instructions) for s in steps)
        number = 0
        for stage in steps:
            number += 1
            self.step_number = number
            self.b.reporter.step(number, total, stage.label, stage.from_inst.source)
            started = time.monotonic()
            state = self.start_stage(stage)
            self.b.reporter.done(time.monotonic() - started)
            for inst in stage.instructions:
                number += 1
                self.step_number = number
                self.b.reporter.step(number, total, stage.label, _short(inst.source))
                started = time.monotonic()
                self.step(stage, state, inst)
                self.b.reporter.done(time.monotonic() - started)
            self.stages[stage.index] = state
        for name in sorted(set(self.o.build_args) - self.used_args - PROXY_ARGS):
            self.note(f"build arg {name} was not consumed by any ARG instruction")
        for note in self.notes:
            self.b.reporter.note(note)
        final = self.stages[plan.target.index]
        image = self.commit(final)
        return BuildResult(
            image,
            self.o.tags,
            self.cached_steps,
            self.run_steps,
            tuple(self.notes),
            layer_steps=tuple(self.layer_steps),
            cache_entries=tuple(self.cache_entries),
            bases=tuple(self.bases),
            remote_sources=self.remote_sources,
        )

    def note(self, text: str) -> None:
        self.notes.append(text)

    def global_args(self) -> dict[str, str]:
        values = dict(PLATFORM_ARGS)
        for inst in self.df.instructions:
            if inst.keyword == "FROM":
                break
            if inst.keyword == "ARG":
                for name, default in self.arg_pairs(inst, values):
                    if name in self.o.build_args:
                        self.used_args.add(name)
                        values[name] = self.o.build_args[name]
                    elif default is not None:
                        values[name] = default
        self.declared_globals = dict(values)
        return values

    def arg_pairs(self, inst: Instruction, env: dict[str, str]) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        for word in _split_keeping_quotes(inst.args, self.df.escape):
            name, eq, value = word.partition("=")
            if not name or not _valid_name(name):
                raise self.df.error(inst, f"'{name}' is not a valid ARG name")
            out.append((name, self.expand(inst, value, env) if eq else None))
        return out

    def expand(self, inst: Instruction, text: str, env: dict[str, str]) -> str:
        try:
            return Expander(env, self.df.escape).word(text)
        except ExpansionError as exc:
            raise self.df.error(inst, str(exc)) from None

    def expand_words(self, inst: Instruction, text: str, env: dict[str, str]) -> list[str]:
        try:
            return Expander(env, self.df.escape).words(text)
        except ExpansionError as exc:
            raise self.df.error(inst, str(exc)) from None

    # -- stages ----------------------------------------------------------------------------

    def start_stage(self, stage: Stage) -> _StageState:
        if stage.platform and stage.platform not in SUPPORTED_PLATFORMS:
            raise self.df.error(
                stage.from_inst,
                f"--platform={stage.platform} is not supported: kapal builds linux/amd64 only; "
                "remove the flag or set it to linux/amd64",
            )
        earlier = self.plan.find(stage.base)
        if earlier is not None and earlier.index < stage.index and earlier.index in self.stages:
            parent = self.stages[earlier.index]
            state = _StageState(
                copy.deepcopy(parent.config), list(parent.layers), cache_key(parent.key, "stage")
            )
            self.run_triggers(stage, state)
            return state
        if stage.base == "scratch":
            config: dict[str, Any] = {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Env": [DEFAULT_PATH]},
                "history": [],
            }
            return _StageState(config, [], cache_key("scratch"))
        image = self.resolve_image(stage.base, stage.from_inst)
        state = _StageState(self.base_config(image), self.image_layers(image), "")
        state.key = cache_key("image", image.config_digest)
        if not state.env().get("PATH"):
            state.set_env({**state.env(), "PATH": DEFAULT_PATH.partition("=")[2]})
        self.run_triggers(stage, state)
        return state

    def run_triggers(self, stage: Stage, state: _StageState) -> None:
        """Run the base's ONBUILD triggers as the stage's first steps; the stage keeps none."""
        triggers = state.settings.get("OnBuild") or []
        state.settings["OnBuild"] = None
        if not isinstance(triggers, list):
            triggers = []
        for text in triggers:
            inst = self.trigger(stage, str(text))
            try:
                self.step(stage, state, inst)
            except DockerfileError as exc:
                raise DockerfileError(f"{exc} (in an ONBUILD trigger of {stage.base})") from None

    def trigger(self, stage: Stage, text: str) -> Instruction:
        """Parse one ONBUILD trigger of the base (text its author wrote) as an instruction."""
        where = f"{self.df.path}:{stage.from_inst.line}: ONBUILD trigger of {stage.base}"
        try:
            parsed = parse_dockerfile(text, where).instructions
        except DockerfileError as exc:
            raise DockerfileError(f"{exc} ({_short(text)})") from None
        if len(parsed) != 1 or parsed[0].keyword in ("FROM", "ONBUILD", "MAINTAINER"):
            raise DockerfileError(
                f"{where}: '{_short(text)}' is not an instruction ONBUILD may run; "
                "rebuild the base image without it"
            )
        return dataclasses.replace(parsed[0], line=stage.from_inst.line)

    def resolve_image(self, name: str, inst: Instruction) -> Image:
        try:
            reference = Reference.parse(name)
            image = self.b.store.resolve(reference)
            self.bases.append(str(reference))
            return image
        except ImageNotFoundError as exc:
            raise self.df.error(inst, str(exc)) from None
        except BuildError:
            raise
        except RunnerError as exc:  # ImageReferenceError and friends carry their own message
            raise self.df.error(inst, str(exc)) from None

    def base_config(self, image: Image) -> dict[str, Any]:
        config = copy.deepcopy(image.config)
        config.pop("rootfs", None)
        config.setdefault("config", {})
        config.setdefault("history", [])
        for key in ("container", "container_config", "docker_version", "id", "parent"):
            config.pop(key, None)
        return config

    def image_layers(self, image: Image) -> list[_Layer]:
        trees = self.b.store.unpacked_layers(image)
        return [
            _Layer(desc.diff_id, tree, descriptor=desc)
            for desc, tree in zip(image.layers, trees, strict=True)
        ]

    # -- instructions ----------------------------------------------------------------------

    def step(self, stage: Stage, state: _StageState, inst: Instruction) -> None:
        env = {**state.args, **state.env()}
        kw = inst.keyword
        settings = state.settings
        if kw == "ARG":
            self.arg(state, inst, env)
            return self.history(state, f"ARG {inst.args}", empty=True)
        if kw == "ENV":
            values = state.env()
            for name, value in self.pairs(inst, env):
                values[name] = value
            state.set_env(values)
            shown = " ".join(f"{k}={v}" for k, v in self.pairs(inst, env))
            return self.history(state, f"ENV {shown}", empty=True)
        if kw == "LABEL":
            labels = dict(settings.get("Labels") or {})
            pairs = self.pairs(inst, env)
            labels.update(pairs)
            settings["Labels"] = labels
            shown = " ".join(f"{k}={v}" for k, v in pairs)
            return self.history(state, f"LABEL {shown}", empty=True)
        if kw == "MAINTAINER":
            state.config["author"] = inst.args.strip()
            return self.history(state, f"MAINTAINER {inst.args.strip()}", empty=True)
        if kw in ("CMD", "ENTRYPOINT"):
            argv = self.command(state, inst)
            if kw == "ENTRYPOINT":
                settings["Entrypoint"] = argv
                if not stage.instructions or not self.cmd_set_in_stage(stage, inst):
                    settings["Cmd"] = None
            else:
                settings["Cmd"] = argv
            return self.history(state, f"{kw} {json.dumps(argv)}", empty=True)
        if kw == "SHELL":
            assert inst.exec_form is not None
            if not inst.exec_form:
                raise self.df.error(inst, "SHELL needs at least one element, e.g. ['/bin/sh']")
            settings["Shell"] = list(inst.exec_form)
            return self.history(state, f"SHELL {json.dumps(list(inst.exec_form))}", empty=True)
        if kw == "USER":
            user = self.expand(inst, inst.args.strip(), env)
            settings["User"] = user
            return self.history(state, f"USER {user}", empty=True)
        if kw == "EXPOSE":
            ports = dict(settings.get("ExposedPorts") or {})
            for word in self.expand_words(inst, inst.args, env):
                for port in self.ports(inst, word):
                    ports[port] = {}
            settings["ExposedPorts"] = ports
            return self.history(state, f"EXPOSE map[{' '.join(sorted(ports))}:{{}}]", empty=True)
        if kw == "VOLUME":
            volumes = dict(settings.get("Volumes") or {})
            words = (
                [self.expand(inst, w, env) for w in inst.exec_form]
                if inst.exec_form is not None
                else self.expand_words(inst, inst.args, env)
            )
            for word in words:
                if not word.strip():
                    raise self.df.error(inst, "VOLUME paths may not be empty")
                volumes[word] = {}
            settings["Volumes"] = volumes
            return self.history(state, f"VOLUME {json.dumps(words)}", empty=True)
        if kw == "STOPSIGNAL":
            signal = self.expand(inst, inst.args.strip(), env)
            settings["StopSignal"] = signal
            return self.history(state, f"STOPSIGNAL {signal}", empty=True)
        if kw == "HEALTHCHECK":
            settings["Healthcheck"] = self.healthcheck(state, inst)
            return self.history(state, f"HEALTHCHECK {inst.args.strip()}", empty=True)
        if kw == "ONBUILD":
            triggers = list(settings.get("OnBuild") or [])
            # a heredoc trigger keeps its bodies, so the child build can parse it back whole
            triggers.append(
                "\n".join([inst.args.strip(), *(f"{d.content}{d.name}" for d in inst.heredocs)])
            )
            settings["OnBuild"] = triggers
            return self.history(state, f"ONBUILD {inst.args.strip()}", empty=True)
        if kw == "WORKDIR":
            return self.workdir(state, inst, env)
        if kw == "RUN":
            return self.run_step(state, inst, env)
        if kw in ("COPY", "ADD"):
            return self.copy_step(state, inst, env)
        raise self.df.error(inst, "FROM may only start a stage")  # pragma: no cover

    def cmd_set_in_stage(self, stage: Stage, inst: Instruction) -> bool:
        """Whether a CMD before `inst` in this stage set Cmd (kept when ENTRYPOINT comes after)."""
        for other in stage.instructions:
            if other is inst:
                return False
            if other.keyword == "CMD":
                return True
        return False

    def history(self, state: _StageState, created_by: str, *, empty: bool) -> None:
        history = state.config.setdefault("history", [])
        history.append(history_entry(self.o.epoch, created_by, empty=empty))

    def arg(self, state: _StageState, inst: Instruction, env: dict[str, str]) -> None:
        for name, default in self.arg_pairs(inst, env):
            if name in self.o.build_args:
                self.used_args.add(name)
                state.args[name] = self.o.build_args[name]
            elif default is not None:
                state.args[name] = default
            elif name in self.declared_globals:
                state.args[name] = self.declared_globals[name]
            # declared without a value and not given: stays unset, as in Docker

    def pairs(self, inst: Instruction, env: dict[str, str]) -> list[tuple[str, str]]:
        words = _split_keeping_quotes(inst.args, self.df.escape)
        if not words:
            raise self.df.error(inst, f"{inst.keyword} needs KEY=VALUE")
        if "=" not in words[0]:
            # legacy form: ENV/LABEL KEY the rest of the line (the parser noted it)
            name = words[0]
            value = inst.args.strip()[len(name) :].strip()
            if not value:
                raise self.df.error(inst, f"ENV {name} has no value: write ENV {name}=VALUE")
            return [(self.expand(inst, name, env), self.expand(inst, value, env))]
        out: list[tuple[str, str]] = []
        for word in words:
            name, eq, value = word.partition("=")
            if not eq:
                raise self.df.error(
                    inst, f"'{word}' is not KEY=VALUE; quote values that contain spaces"
                )
            key = self.expand(inst, name, env)
            if not key:
                raise self.df.error(inst, f"'{word}' has an empty key")
            out.append((key, self.expand(inst, value, env)))
        return out

    def ports(self, inst: Instruction, word: str) -> list[str]:
        port, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise self.df.error(inst, f"'{word}': the protocol must be tcp, udp or sctp")
        low, dash, high = port.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise self.df.error(inst, f"'{word}' is not a port (80, 80/udp, 8000-8010)")
        first, last = int(low), int(high) if dash else int(low)
        if first > last or last > 65535:
            raise self.df.error(inst, f"'{word}' is not a valid port range")
        return [f"{p}/{proto}" for p in range(first, last + 1)]

    def shell(self, state: _StageState) -> list[str]:
        return list(state.settings.get("Shell") or DEFAULT_SHELL)

    def command(self, state: _StageState, inst: Instruction) -> list[str]:
        if inst.exec_form is not None:
            return list(inst.exec_form)
        return [*self.shell(state), inst.args.strip()]

    def healthcheck(self, state: _StageState, inst: Instruction) -> dict[str, Any]:
        args = inst.args.strip()
        head, _, rest = args.partition(" ")
        if head.upper() == "NONE":
            if rest.strip():
                raise self.df.error(inst, "HEALTHCHECK NONE takes no arguments")
            return {"Test": ["NONE"]}
        rest = rest.strip()
        if not rest:
            raise self.df.error(inst, "HEALTHCHECK CMD needs a command")
        parsed = json_array(rest)
        test = ["CMD", *parsed] if parsed is not None else ["CMD-SHELL", rest]
        check: dict[str, Any] = {"Test": test}
        names = {
            "interval": "Interval",
            "timeout": "Timeout",
            "start-period": "StartPeriod",
            "start-interval": "StartInterval",
        }
        for flag, key in names.items():
            value = inst.flag(flag)
            if value is not None:
                try:
                    check[key] = go_duration_ns(value)
                except ValueError as exc:
                    raise self.df.error(inst, f"--{flag}: {exc}") from None
        retries = inst.flag("retries")
        if retries is not None:
            if not retries.isdigit():
                raise self.df.error(inst, f"--retries={retries} must be a whole number")
            check["Retries"] = int(retries)
        return check

    # -- filesystem steps ------------------------------------------------------------------

    def workdir(self, state: _StageState, inst: Instruction, env: dict[str, str]) -> None:
        path = self.expand(inst, inst.args.strip(), env)
        current = state.settings.get("WorkingDir") or "/"
        full = posixpath.normpath(posixpath.join(current, path))
        state.settings["WorkingDir"] = full
        tree = state.tree()
        if full == "/" or tree.locate(tree.resolve(full)) is not None:
            return self.history(state, f"WORKDIR {full}", empty=True)
        item = copying.CopyItem("dir", "/" + tree.resolve(full), 0o755, 0, 0)
        key = cache_key(state.key, "WORKDIR", full)
        self.layer_step(state, key, [item], f"WORKDIR {full}")

    def copy_step(self, state: _StageState, inst: Instruction, env: dict[str, str]) -> None:
        is_add = inst.keyword == "ADD"
        if inst.exec_form is not None:
            words = [self.expand(inst, w, env) for w in inst.exec_form]
        else:
            words = self.expand_words(inst, inst.args, env)
        heredocs: dict[str, bytes] = {}
        if inst.heredocs:
            words = _split_keeping_quotes(inst.args, self.df.escape)
            names = iter(inst.heredocs)
            out: list[str] = []
            for word in words:
                if word.startswith("<<"):
                    doc = next(names)
                    content = self.expand(inst, doc.content, env) if doc.expand else doc.content
                    heredocs[doc.name] = content.encode()
                    out.append(doc.name)
                else:
                    out.append(self.expand(inst, word, env))
            words = out
        if len(words) < 2:
            raise self.df.error(inst, f"{inst.keyword} needs at least a source and a destination")
        *sources, dest = words
        workdir = state.settings.get("WorkingDir") or "/"
        if not dest.startswith("/"):
            dest = posixpath.join(workdir, dest) + (
                "/" if dest.endswith("/") or dest == "." else ""
            )
        tree: SourceTree = self.context
        source_from = inst.flag("from")
        if source_from is not None:
            tree = self.source_tree(inst, self.expand(inst, source_from, env))
        owner = copying.Ownership()
        image = state.tree()
        chown = inst.flag("chown")
        if chown is not None:
            try:
                uid, gid = resolve_chown(self.expand(inst, chown, env), image)
            except ValueError as exc:
                raise self.df.error(inst, f"--chown: {exc}") from None
            owner = copying.Ownership(uid, gid)
        chmod = inst.flag("chmod")
        if chmod is not None:
            if not chmod or any(c not in "01234567" for c in chmod) or len(chmod) > 4:
                raise self.df.error(inst, f"--chmod={chmod}: give an octal mode such as 0755")
            owner = copying.Ownership(owner.uid, owner.gid, int(chmod, 8))
        parents = inst.keyword == "COPY" and (inst.flag("parents") or "false") != "false"
        patterns = [self.expand(inst, v, env) for k, v in inst.flags if k == "exclude" and v]
        exclude = DockerIgnore.parse("\n".join(patterns)) if patterns else None
        checksum = inst.flag("checksum") if is_add else None
        if checksum is not None:
            checksum = self.expand(inst, checksum, env)
            remote = [s for s in sources if s.startswith(("http://", "https://"))]
            if len(sources) != 1 or not remote:
                raise self.df.error(
                    inst, "--checksum verifies one http(s) source: ADD --checksum=sha256:… URL DEST"
                )
        with self.b.cache.tmp_dir() as work:
            downloads: dict[str, Path] = {}
            repositories: list[tuple[Path, str]] = []
            if is_add:
                for source in sources:
                    repository = self.git_source(inst, source)
                    if repository is not None:
                        if checksum is not None:
                            raise self.df.error(inst, "--checksum is not supported for git sources")
                        repositories.append(self.clone(inst, repository, work))
                    elif source.startswith(("http://", "https://")):
                        downloads[source] = self.download(inst, source, work)
                        if checksum is not None:
                            self.verify_checksum(inst, source, downloads[source], checksum)
            elif inst.has_flag("keep-git-dir"):
                raise self.df.error(inst, "--keep-git-dir belongs to ADD of a git repository")
            local = [s for s in sources if not (is_add and self.git_source(inst, s))]
            try:
                items = (
                    copying.plan_copy(
                        tree=tree,
                        sources=local,
                        dest=dest,
                        image=image,
                        owner=owner,
                        extract_archives=is_add,
                        heredocs=heredocs,
                        downloads=downloads,
                        parents=parents,
                        exclude=exclude,
                    )
                    if local
                    else []
                )
                for checkout, subdir in repositories:
                    items += copying.plan_copy(
                        tree=ContextTree(checkout, DockerIgnore.parse("")),
                        sources=[subdir or "."],
                        dest=dest if dest.endswith("/") else dest + "/",
                        image=image,
                        owner=owner,
                        exclude=exclude,
                    )
                items.sort(key=lambda item: item.dest)
            except copying.CopyPlanError as exc:
                raise self.df.error(inst, str(exc)) from None
            digest = copying.fingerprint(items)
            created_by = f"{inst.keyword} {' '.join(words)} # buildkit"
            key = cache_key(state.key, inst.keyword, words, dest, digest)
            try:
                self.layer_step(state, key, items, created_by)
            except copying.ArchiveExtractError as exc:
                raise self.df.error(inst, str(exc)) from None

    def git_source(self, inst: Instruction, source: str) -> GitSource | None:
        """The git repository an ADD source names (None: not one)."""
        from runner.build.gitsource import GitSourceError, parse_git_source

        try:
            return parse_git_source(source)
        except GitSourceError as exc:
            raise self.df.error(inst, str(exc)) from None

    def clone(self, inst: Instruction, source: GitSource, work: Path) -> tuple[Path, str]:
        """Fetch an ADD git source through the build's network: (checkout, subdirectory)."""
        from runner.build.gitsource import GitSourceError, fetch_repository

        if self.o.network == "none":
            raise self.df.error(
                inst,
                f"ADD {source.url}: this build has no network (`network: none`); vendor the "
                "repository into the build context, or drop `network: none`",
            )
        keep = (inst.flag("keep-git-dir") or "false") != "false"
        dest = work / "git" / str(len(list(work.glob("git/*"))))
        checkout: list[Path] = []

        def fetch() -> None:
            checkout.append(fetch_repository(source, dest, keep_git_dir=keep))

        try:
            self.fetch_in_build_network(inst, fetch, work)
        except GitSourceError as exc:
            raise self.df.error(inst, str(exc)) from None
        return checkout[0], source.subdir

    def verify_checksum(self, inst: Instruction, url: str, path: Path, checksum: str) -> None:
        """ADD --checksum: the download must have the digest given (sha256, sha384 or sha512)."""
        algorithm, _, expected = checksum.partition(":")
        if algorithm not in ("sha256", "sha384", "sha512") or not expected:
            raise self.df.error(
                inst, f"--checksum={checksum}: write sha256:HEX (or sha384:, sha512:)"
            )
        digest = hashlib.new(algorithm)
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != expected.lower():
            raise self.df.error(
                inst,
                f"{url}: checksum mismatch: expected {checksum}, got "
                f"{algorithm}:{digest.hexdigest()}; the file changed, or the checksum is wrong",
            )

    def source_tree(self, inst: Instruction, name: str) -> LayeredTree:
        stage = self.plan.find(name)
        if stage is not None:
            if stage.index not in self.stages:
                raise self.df.error(inst, f"--from={name}: that stage has not been built yet")
            return self.stages[stage.index].tree()
        image = self.resolve_image(name, inst)
        return LayeredTree(tuple(self.b.store.unpacked_layers(image)))

    def download(self, inst: Instruction, url: str, work: Path) -> Path:
        """Fetch `url` for ADD through the build's network, as a RUN step would reach it."""
        import httpx  # only builds that ADD a URL pay for it

        if self.o.network == "none":
            raise self.df.error(
                inst,
                f"ADD {url}: this build has no network (`network: none`); put the file in the "
                "build context and ADD it from there, or drop `network: none`",
            )
        name = posixpath.basename(httpx.URL(url).path) or "index.html"
        target = work / "downloads" / str(len(list(work.glob("downloads/*")))) / name
        target.parent.mkdir(parents=True, exist_ok=True)

        def fetch() -> None:
            with self.b.http() as client, client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise self.df.error(
                        inst, f"downloading {url} failed: HTTP {response.status_code}"
                    )
                with target.open("wb") as f:
                    for chunk in response.iter_bytes():
                        f.write(chunk)

        try:
            self.fetch_in_build_network(inst, fetch, work)
        except httpx.HTTPError as exc:
            raise self.df.error(inst, f"downloading {url} failed: {exc}") from None
        return target

    def fetch_in_build_network(
        self, inst: Instruction, fetch: Callable[[], None], work: Path
    ) -> None:
        """Run `fetch` where the build's network puts it: a NAT namespace, or the host's."""
        self.remote_sources = True  # what it fetches may change: no build memo can answer
        from runner.runtime.backend import SandboxSpec
        from runner.runtime.netns import create_netns, remove_netns
        from runner.runtime.policy import PolicyError
        from runner.runtime.usernet import UserNetwork, run_in_network

        if self.o.network == "host":
            # the backend's policy decides whether the host's network may be used, for ADD too
            try:
                self.b.backend.teardown(
                    self.b.backend.setup(SandboxSpec(name="ADD", network="host"))
                )
            except PolicyError as exc:
                raise self.df.error(inst, str(exc)) from None
            fetch()
            return
        pin = work / "add-netns"
        create_netns(pin)
        try:
            # the backend's policy holds the operator's holes in the firewall (allowed networks)
            policy = getattr(self.b.backend, "policy", None)
            network = UserNetwork.start(pin, getattr(policy, "allowed_networks", ()))
            try:
                run_in_network(pin, fetch)
            finally:
                network.stop()
        finally:
            remove_netns(pin)

    def layer_step(
        self, state: _StageState, key: str, items: list[copying.CopyItem], created_by: str
    ) -> None:
        def produce(work: Path) -> Path:
            tree = work / "tree"
            tree.mkdir()
            copying.materialize(items, tree, state.tree(), self.o.epoch)
            return tree

        self.cached_layer(state, key, produce)
        self.history(state, created_by, empty=False)

    def cached_layer(self, state: _StageState, key: str, produce: Callable[[Path], Path]) -> None:
        cache = self.b.cache
        if self.o.compression == "zstd":  # a blob of its own, so a key of its own
            key = cache_key(key, "zstd")
        hit = None if self.o.no_cache else cache.lookup(key)
        if hit is None:
            with cache.lock(key):
                hit = None if self.o.no_cache else cache.lookup(key)
                if hit is None:
                    with cache.tmp_dir() as work:
                        tree = produce(work)
                        layer = write_layer(
                            tree,
                            work / "layer.tar.gz",
                            epoch=self.o.epoch,
                            whiteouts=True,
                            compression=self.o.compression,
                        )
                        hit = cache.store(key, layer, tree)
                    self.run_steps += 1
                else:
                    self.cached_steps += 1
                    self.b.reporter.cached()
        else:
            self.cached_steps += 1
            self.b.reporter.cached()
        state.layers.append(_Layer(hit.diff_id, hit.tree, cached=hit))
        state.key = key
        self.layer_steps.append(self.step_number)
        self.cache_entries.append((key, str(hit.blob), str(hit.tree)))

    def run_step(self, state: _StageState, inst: Instruction, env: dict[str, str]) -> None:
        network: Literal["host", "nat", "none"] = self.o.network
        asked = inst.flag("network") or "default"
        if asked in ("host", "none"):
            network = "host" if asked == "host" else "none"
        elif asked != "default":
            raise self.df.error(inst, f"RUN --network={asked}: use host, none or default")
        argv, created = self.run_argv(state, inst)
        run_env = state.env()
        arg_env = {k: v for k, v in state.args.items() if k not in run_env}
        for name in PROXY_ARGS:
            if name in self.o.build_args:
                arg_env.setdefault(name, self.o.build_args[name])
        # an ARG whose default copies a secret one (`ARG B=$TOKEN`) carries the secret too
        secrets = [v for k, v in self.o.build_args.items() if k in self.o.secret_args and v]
        shown_args = {
            k: v
            for k, v in sorted(arg_env.items())
            if k not in PROXY_ARGS and not any(secret in v for secret in secrets)
        }
        prefix = (
            f"|{len(shown_args)} {' '.join(f'{k}={v}' for k, v in shown_args.items())} "
            if shown_args
            else ""
        )
        user = state.settings.get("User") or None
        cwd = state.settings.get("WorkingDir") or "/"
        planned = self.plan_mounts(state, inst, env, cwd)
        key = cache_key(
            state.key,
            "RUN",
            argv,
            sorted({**run_env, **arg_env}.items()),
            user,
            cwd,
            network,
            *([_mount_key(planned)] if planned else []),
        )

        def produce(work: Path, disk: StepDisk | None) -> Path:
            # the runtime is loaded by the first RUN that misses the cache, not by every build
            from runner.build import mounts
            from runner.runtime.backend import ContainerSpec, Mount
            from runner.runtime.oneshot import run_container
            from runner.runtime.policy import PolicyError

            upper = work / "upper"
            tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)

            def on_line(line: LogLine) -> None:
                tail.append(line.text)
                self.b.reporter.line(line)

            script_mounts: list[Mount] = []
            if argv and argv[0].startswith(f"{_SCRIPT_DIR}/") and inst.heredocs:
                script = work / "script"
                script.write_text(inst.heredocs[0].content)
                script.chmod(0o755)
                script_mounts.append(Mount(script, argv[0], read_only=True))
            try:
                with mounts.mounted(
                    planned,
                    work=work,
                    cache_root=self.b.cache.root / "mounts",
                    owner=self.b.store.owner,
                    secrets=self.secrets,
                ) as (step_mounts, secret_env):
                    spec = ContainerSpec(
                        name="kapal-build",
                        mounts=(*script_mounts, *step_mounts),
                        layers=tuple(self.b.cache.short_path(layer.tree) for layer in state.layers),
                        command=tuple(argv),
                        entrypoint=(),
                        env={**run_env, **arg_env, **secret_env},
                        cwd=cwd,
                        user=user,
                        upper_dir=upper if disk is None else disk.upper,
                        work_dir=None if disk is None else disk.work,
                    )
                    status = run_container(self.b.backend, spec, on_line=on_line, network=network)
            except PolicyError as exc:  # RUN --network=host where the operator forbids it
                raise self.df.error(inst, str(exc)) from None
            except mounts.MountError as exc:
                raise self.df.error(inst, str(exc)) from None
            if disk is not None:
                status = disk.explain(status)
            if not status.ok:
                last = "\n".join(f"  {line}" for line in tail) or "  (no output)"
                raise BuildStepError(
                    f"{self.df.path}:{inst.line}: {_short(inst.source)}: {status.describe()}\n"
                    f"last lines of its output:\n{last}"
                )
            if disk is not None:
                disk.keep(upper)  # a rename cannot leave the disk
            upper.mkdir(exist_ok=True)
            _drop_mountpoints(upper, state.tree())
            mounts.drop_mount_stubs(upper, state.tree(), [p.spec.target for p in planned])
            return upper

        def produce_on_disk(work: Path) -> Path:
            with self.disk.step(self.b.backend) as disk:
                return produce(work, disk)

        self.cached_layer(state, key, produce_on_disk)
        self.history(state, f"RUN {prefix}{created} # buildkit", empty=False)

    def plan_mounts(
        self, state: _StageState, inst: Instruction, env: dict[str, str], cwd: str
    ) -> list[mounts.PlannedMount]:
        """The step's `--mount`s parsed, their targets resolved in the image, sources planned."""
        if not any(flag == "mount" and value is not None for flag, value in inst.flags):
            return []
        from runner.build import mounts

        image = state.tree()
        out: list[mounts.PlannedMount] = []

        def tree_for(name: str | None) -> SourceTree:
            return self.context if name is None else self.source_tree(inst, name)

        for flag, value in inst.flags:
            if flag != "mount" or value is None:
                continue
            try:
                spec = mounts.parse_mount(self.expand(inst, value, env), cwd)
                if spec.target:
                    target = "/" + image.resolve(spec.target, follow_last=True)
                    spec = dataclasses.replace(spec, target=target)
                if spec.kind == "secret" and spec.required and spec.id not in self.secrets:
                    raise mounts.MountError(
                        f"--mount=type=secret,id={spec.id} is required but no secret "
                        f"'{spec.id}' was given: pass kapal build --secret id={spec.id},src=FILE "
                        "(or define a secret variable of that name)"
                    )
                out.append(mounts.plan_mount(spec, tree_for))
            except mounts.MountError as exc:
                raise self.df.error(inst, str(exc)) from None
        return out

    def run_argv(self, state: _StageState, inst: Instruction) -> tuple[list[str], str]:
        if inst.exec_form is not None:
            argv = list(inst.exec_form)
            return argv, json.dumps(argv)
        shell = self.shell(state)
        text = inst.args.strip()
        if inst.heredocs:
            only = len(inst.heredocs) == 1 and text.split() and _is_marker(text)
            if only:
                body = inst.heredocs[0].content
                if body.startswith("#!"):
                    # a script with its own interpreter runs as a file, as in BuildKit
                    script = f"{_SCRIPT_DIR}/{inst.heredocs[0].name}"
                    return [script], f"{script} <<{inst.heredocs[0].name}\n{body}"
                return [*shell, body], " ".join([*shell, body])
            full = text + "\n" + "".join(f"{doc.content}{doc.name}\n" for doc in inst.heredocs)
            return [*shell, full], " ".join([*shell, full])
        return [*shell, text], " ".join([*shell, text])

    # -- commit ----------------------------------------------------------------------------

    def commit(self, state: _StageState) -> Image:
        store = self.b.store
        config = copy.deepcopy(state.config)
        config["created"] = rfc3339(self.o.epoch)
        config["architecture"] = "amd64"
        config["os"] = "linux"
        settings = config.get("config") or {}
        config["config"] = {k: v for k, v in settings.items() if v not in (None, {}, [], "")}
        if "Cmd" in settings and settings["Cmd"] is None:
            config["config"].pop("Cmd", None)
        zstd = self.o.compression == "zstd"
        with store.session():
            descriptors: list[LayerDescriptor] = []
            for layer in state.layers:
                if layer.descriptor is not None:
                    descriptors.append(layer.descriptor)
                else:
                    cached = layer.cached
                    assert cached is not None
                    if _link_blob(store, cached):  # no need to rescan or copy it
                        media_type = OCI_LAYER_ZSTD if zstd else OCI_LAYER_GZIP
                        descriptors.append(
                            LayerDescriptor(cached.digest, cached.diff_id, cached.size, media_type)
                        )
                    else:
                        compressed = self.o.compression
                        descriptors.append(store.add_layer(cached.blob, compressed=compressed))
                    _link_unpacked(store, cached)
            return store.commit(config, descriptors, [Reference.parse(t) for t in self.o.tags])


def _link_blob(store: ImageStore, cached: CachedLayer) -> bool:
    """Give the store the cache's layer blob as a hard link; False when it must copy it instead.

    The cache wrote and hashed the blob itself and never modifies it, so the store can share it
    (one copy on disk) without hashing it again; its own unpack still verifies the digest.
    """
    if store.blobs.has(cached.digest):
        return True
    target = store.blobs.path(cached.digest)
    link = store.tmp / f"build-blob-{os.urandom(16).hex()}"
    try:
        os.link(cached.blob, link)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(link, target)
    except OSError:  # another filesystem (EXDEV), a filesystem without hard links
        return False
    finally:
        link.unlink(missing_ok=True)
    return True


def _link_unpacked(store: ImageStore, cached: CachedLayer) -> None:
    """Let the store use the cache's unpacked tree of a built layer rather than unpack it again.

    Best effort: when linking is impossible the store unpacks the blob on first use, as before.
    """
    final = store.layer_path(cached.diff_id)
    if final.exists():
        return
    work = store.tmp / f"build-layer-{os.urandom(16).hex()}"
    try:
        link_tree(cached.tree, work)
        os.rename(work, final)  # fails harmlessly when a concurrent unpack got there first
    except OSError:
        pass
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


# Files and directories the runtime mounts over; when they appear empty in the upper dir and the
# image did not have them, they are mount points runc created, not something the step wrote.
_MOUNTPOINTS = ("etc/hosts", "etc/resolv.conf", "etc/hostname", "dev", "proc", "sys")


def _drop_mountpoints(upper: Path, image: LayeredTree) -> None:
    """Remove mount points the runtime created in `upper` (Docker keeps them out of layers too)."""
    for rel in _MOUNTPOINTS:
        host = upper / rel
        if image.locate(rel) is not None or host.is_symlink() or host.parent.is_symlink():
            continue
        if host.is_file() and host.stat().st_size == 0:
            host.unlink()
        elif host.is_dir() and not any(host.iterdir()):
            host.rmdir()
    etc, lower = upper / "etc", image.locate("etc")
    if etc.is_dir() and not etc.is_symlink() and not any(etc.iterdir()):
        mine = etc.stat()
        theirs = lower.stat() if lower is not None else None
        same = theirs is not None and (mine.st_mode, mine.st_uid, mine.st_gid) == (
            theirs.st_mode,
            theirs.st_uid,
            theirs.st_gid,
        )
        if lower is None or same:
            etc.rmdir()


def _short(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _is_marker(text: str) -> bool:
    return parse_heredoc(text.strip()) is not None


def _valid_name(name: str) -> bool:
    return name.replace("_", "a").isalnum() and not name[0].isdigit()


def _split_keeping_quotes(text: str, escape: str) -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes for later expansion."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == escape and i + 1 < len(text) and quote != "'":
            cur.append(ch + text[i + 1])
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
            cur.append(ch)
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch.isspace():
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
        i += 1
    if cur:
        words.append("".join(cur))
    return words


def _mount_key(planned: list[mounts.PlannedMount]) -> object:
    """The part of a RUN step's cache key its `--mount`s make."""
    from runner.build import mounts

    return mounts.mount_key(planned)
