"""Build stages: split a Dockerfile at FROM, name them, and find what a target needs."""

from __future__ import annotations

import csv

from pipeline.records import record
from runner.build.dockerfile import Dockerfile, Instruction
from runner.build.expansion import Expander, ExpansionError
from runner.errors import BuildError

__all__ = ["Stage", "StagePlan", "plan_stages"]


@record
class Stage:
    """One build stage: its index, optional name, FROM instruction and the instructions after it."""

    index: int
    name: str | None
    base: str
    platform: str | None
    from_inst: Instruction
    instructions: tuple[Instruction, ...]

    @property
    def label(self) -> str:
        """How messages name the stage."""
        return self.name or str(self.index)


@record
class StagePlan:
    """The stages to build, in order, and the global ARG instructions before the first FROM."""

    stages: tuple[Stage, ...]
    needed: tuple[int, ...]
    global_args: tuple[Instruction, ...]
    target: Stage

    def find(self, name: str) -> Stage | None:
        """The stage called `name` (or with that index), None when there is none."""
        lowered = name.lower()
        for stage in self.stages:
            if stage.name == lowered:
                return stage
        if name.isdigit() and int(name) < len(self.stages):
            return self.stages[int(name)]
        return None


def plan_stages(
    dockerfile: Dockerfile, global_values: dict[str, str], target: str | None
) -> StagePlan:
    """Split `dockerfile` into stages and pick those the `target` stage (default: last) needs.

    `global_values` are the values of the ARGs declared before the first FROM (already merged with
    --build-arg), used to expand FROM lines.
    """
    global_args: list[Instruction] = []
    groups: list[tuple[Instruction, list[Instruction]]] = []
    for inst in dockerfile.instructions:
        if inst.keyword == "FROM":
            groups.append((inst, []))
        elif not groups:
            if inst.keyword != "ARG":
                raise dockerfile.error(
                    inst, "only ARG may come before the first FROM; start the stage with FROM"
                )
            global_args.append(inst)
        else:
            groups[-1][1].append(inst)
    if not groups:
        raise dockerfile.error(
            dockerfile.instructions[0], "the Dockerfile has no FROM instruction; add one"
        )
    stages: list[Stage] = []
    names: set[str] = set()
    for index, (from_inst, body) in enumerate(groups):
        words = from_inst.args.split()
        expander = Expander(global_values, dockerfile.escape)
        try:
            base = expander.word(words[0])
            platform = from_inst.flag("platform")
            platform = expander.word(platform) if platform else None
        except ExpansionError as exc:
            raise dockerfile.error(from_inst, str(exc)) from None
        if not base:
            raise dockerfile.error(
                from_inst, f"the base image '{words[0]}' expands to nothing; pass --build-arg"
            )
        name = words[2].lower() if len(words) == 3 else None
        if name is not None:
            if name in names:
                raise dockerfile.error(from_inst, f"the stage name '{name}' is used twice")
            names.add(name)
        stages.append(Stage(index, name, base, platform, from_inst, tuple(body)))
    plan = StagePlan(tuple(stages), (), tuple(global_args), stages[-1])
    chosen = stages[-1]
    if target is not None:
        found = plan.find(target)
        if found is None:
            known = ", ".join(s.name for s in stages if s.name)
            hint = f"stages: {known}" if known else "no stage has a name; write FROM IMAGE AS NAME"
            raise BuildError(f"{dockerfile.path}: no stage named '{target}' for --target ({hint})")
        chosen = found
    needed: set[int] = set()
    _need(plan, chosen, needed, dockerfile)
    return StagePlan(plan.stages, tuple(sorted(needed)), plan.global_args, chosen)


def _need(plan: StagePlan, stage: Stage, needed: set[int], dockerfile: Dockerfile) -> None:
    if stage.index in needed:
        return
    needed.add(stage.index)
    base = plan.find(stage.base)
    if base is not None and base.index < stage.index:
        _need(plan, base, needed, dockerfile)
    for inst in stage.instructions:
        sources: list[str] = []
        if inst.keyword == "COPY" and inst.flag("from") is not None:
            sources.append(str(inst.flag("from")))
        if inst.keyword == "RUN":
            sources += [s for name, v in inst.flags if name == "mount" and (s := mount_from(v))]
        for source in sources:
            dep = plan.find(source)
            if dep is not None:
                if dep.index >= stage.index:
                    raise dockerfile.error(
                        inst,
                        f"{inst.keyword} names the stage {source}, this stage or a later one; "
                        "reorder stages",
                    )
                _need(plan, dep, needed, dockerfile)


def mount_from(value: str | None) -> str | None:
    """The `from=` of a `RUN --mount` value (None when absent or unreadable)."""
    try:
        fields = next(csv.reader([value or ""]), [])
    except csv.Error:
        return None
    for item in fields:
        key, _, val = item.partition("=")
        if key.strip().lower() == "from" and val:
            return val
    return None
