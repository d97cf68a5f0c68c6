"""Check configurations in YAML: hardware, kernel, workload and check budgets.

Read and parsed by :mod:`~pagingcheck.checks.inputs` (safe, bounded YAML).
Every mistake (unknown key, wrong type, impossible size, program that does not assemble) raises
:class:`~pagingcheck.model.errors.ConfigError` naming the key and the fix.
The built-in default ships as package data (``default.yaml``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from pagingcheck.checks.coverage import SITUATIONS
from pagingcheck.checks.inputs import load_yaml, read_text
from pagingcheck.impl.config import KernelConfig
from pagingcheck.model.asm import assemble
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import ConfigError, UserError, quote
from pagingcheck.model.isa import MAX_PAGES_PER_INSTRUCTION
from pagingcheck.model.program import Program, SharedSegment, pages_for

#: The largest count a configuration may give (budgets, sizes, bounds).
MAX_COUNT = 1 << 31

#: Fair steps within which every live process must retire an instruction, by default.
DEFAULT_PROGRESS_BOUND = 300


@dataclass(frozen=True)
class Workload:
    """The programs a run may spawn, which start at boot, the driver's freedoms, and the
    bound of the progress property (fair steps within which each live process retires)."""

    programs: tuple[Program, ...]
    initial: tuple[int, ...] = (0,)
    max_spawns: int = 0
    timer: bool = True
    kills: bool = False
    progress_bound: int = DEFAULT_PROGRESS_BOUND
    console_input: tuple[int, ...] = ()  # the bytes typed at the console, for READ
    # The files on the disk, for MMAP: (name, words), by file number.
    files: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def file_pages(self, page_words: int) -> int:
        """The disk blocks the files take (each file a whole number of pages)."""
        return sum(pages_for(len(words), page_words) for _, words in self.files)


@dataclass(frozen=True)
class Budget:
    """How hard to look: Hypothesis runs, steps per run, seconds spent shrinking a failure."""

    examples: int = 30
    steps: int = 60
    shrink_seconds: int = 20

    def scaled(self, profile: str) -> Budget:
        """This budget under a settings profile: ``dev`` (quick), ``ci`` (as written) or
        ``thorough`` (a long campaign)."""
        runs, depth, shrink = PROFILES[profile]
        return Budget(
            max(1, int(self.examples * runs)),
            max(1, int(self.steps * depth)),
            max(1, int(self.shrink_seconds * shrink)),
        )


#: Multipliers of (examples, steps, shrink seconds) for each settings profile.
PROFILES: dict[str, tuple[float, float, float]] = {
    "dev": (0.3, 0.5, 0.5),
    "ci": (1.0, 1.0, 1.0),
    "thorough": (10.0, 2.0, 6.0),
}


@dataclass(frozen=True)
class Limits:
    """What a kernel may use: wall-clock seconds per call, and megabytes of memory (the
    memory limit binds kernels run contained, in a process of their own)."""

    call_seconds: float = 10.0
    memory_mb: int = 1024


@dataclass(frozen=True)
class CheckConfig:
    """A whole check configuration; ``variants`` are overrides run in turn."""

    hardware: HardwareConfig
    kernel: KernelConfig
    workload: Workload
    budget: Budget = field(default_factory=Budget)
    variants: tuple[dict[str, dict[str, Any]], ...] = ()
    coverage: tuple[str, ...] = ()
    coverage_each: tuple[str, ...] = ()  # situations every variant must reach on its own
    # Situations every page-table format must reach, in one of its variants at least.
    coverage_format: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    profile: str = "ci"  # the settings profile its budget was scaled by

    def with_profile(self, profile: str) -> CheckConfig:
        """This configuration with its budget scaled by ``profile``."""
        return dataclasses.replace(self, budget=self.budget.scaled(profile), profile=profile)

    def expand(self) -> list[tuple[str, CheckConfig]]:
        """The configurations to check: one per variant (or just this one), named."""
        if not self.variants:
            return [("base", self)]
        runs = []
        for variant in self.variants:
            name = str(variant.get("name", "variant"))
            hardware = self.hardware.replace(**variant.get("hardware", {}))
            kernel = self.kernel.replace(**variant.get("kernel", {}))
            workload = self.workload
            if "initial" in variant.get("workload", {}):
                workload = dataclasses.replace(workload, initial=variant["workload"]["initial"])
            runs.append(
                (
                    name,
                    dataclasses.replace(
                        self, hardware=hardware, kernel=kernel, workload=workload, variants=()
                    ),
                )
            )
        return runs


_TOP_KEYS = {"hardware", "kernel", "workload", "budget", "variants", "coverage", "limits"}


def mapping(value: Any, where: str) -> dict[str, Any]:
    """``value`` if it is a mapping; an absent section is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def known_keys(data: dict[str, Any], allowed: AbstractSet[str], where: str) -> None:
    """Refuse a key of ``data`` that is not ``allowed``, naming the ones that are."""
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {quote(unknown[0])}; "
            f"allowed keys are: {', '.join(sorted(allowed))}"
        )


def integer(value: Any, where: str, least: int = 0, most: int = MAX_COUNT) -> int:
    """``value`` if it is an integer (never a bool or a string) in ``least..most``."""
    if not isinstance(value, int) or isinstance(value, bool) or not least <= value <= most:
        raise ConfigError(f"{where}: expected an integer in {least}..{most}, got {quote(value)}")
    return value


def boolean(value: Any, where: str) -> bool:
    """``value`` if it is true or false (never a string such as 'false')."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {quote(value)}")
    return value


def words(value: Any, where: str) -> tuple[int, ...]:
    """A list of integers as 32-bit words."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ConfigError(f"{where}: expected a list of integers")
    return tuple(v & 0xFFFF_FFFF for v in value)


def parse_program(data: Any, where: str) -> Program:
    """A program from its YAML mapping (assembly text under ``text``)."""
    data = mapping(data, where)
    known_keys(
        data,
        {"name", "text", "data", "heap_pages", "stack_pages", "shared"} | set(GROWTH_KEYS),
        where,
    )
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name: every program needs a non-empty name")
    source = data.get("text")
    if not isinstance(source, str):
        raise ConfigError(f"{where}.text: expected the program's assembly text")
    try:
        text = tuple(assemble(source))
    except UserError as error:
        raise ConfigError(f"{where}.text: {error}") from error
    shared = parse_shared(data.get("shared"), f"{where}.shared")
    return Program(
        name,
        text,
        words(data.get("data"), f"{where}.data"),
        heap_pages=integer(data.get("heap_pages", 0), f"{where}.heap_pages"),
        stack_pages=integer(data.get("stack_pages", 1), f"{where}.stack_pages"),
        shared=shared,
        **growth(data, where),
    )


#: A program's keys for how its heap and stack may grow; a missing or null one keeps the
#: program's default (no growth; the default reach).
GROWTH_KEYS = ("max_heap_pages", "max_stack_pages", "stack_reach")


def growth(data: dict[str, Any], where: str) -> dict[str, Any]:
    """A program's growth settings (:data:`GROWTH_KEYS`), checked."""
    return {
        key: integer(data[key], f"{where}.{key}")
        for key in GROWTH_KEYS
        if data.get(key) is not None
    }


def parse_shared(data: Any, where: str) -> tuple[SharedSegment, ...]:
    """A program's shared segments: a list of {name, vpn, pages, writable}."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(f"{where}: expected a list of shared segments")
    segments = []
    for index, seg in enumerate(data):
        at = f"{where}[{index}]"
        seg = mapping(seg, at)
        known_keys(seg, {"name", "vpn", "pages", "writable"}, at)
        if not isinstance(seg.get("name"), str):
            raise ConfigError(f"{at}.name: expected the segment's name")
        segments.append(
            SharedSegment(
                seg["name"],
                integer(seg.get("vpn"), f"{at}.vpn"),
                integer(seg.get("pages", 1), f"{at}.pages", 1),
                boolean(seg.get("writable", True), f"{at}.writable"),
            )
        )
    return tuple(segments)


def parse_workload(data: Any, hardware: HardwareConfig) -> Workload:
    """The workload section."""
    data = mapping(data, "workload")
    known_keys(
        data,
        WORKLOAD_KEYS,
        "workload",
    )
    raw_programs = data.get("programs")
    if not isinstance(raw_programs, list) or not raw_programs:
        raise ConfigError("workload.programs: expected a non-empty list of programs")
    programs = tuple(
        parse_program(p, f"workload.programs[{i}]") for i, p in enumerate(raw_programs)
    )
    for index, program in enumerate(programs):
        try:
            program.validate(hardware.page_words, hardware.va_pages)
        except UserError as error:
            raise ConfigError(f"workload.programs[{index}]: {error}") from error
    return Workload(programs, **parse_workload_options(data, len(programs)))


def parse_workload_options(data: dict[str, Any], programs: int) -> dict[str, Any]:
    """The workload's settings besides its programs (of which there are ``programs``)."""
    initial = initial_programs(data.get("initial", [0]), programs, "workload.initial")
    return {
        "initial": initial,
        "max_spawns": integer(data.get("max_spawns", 0), "workload.max_spawns"),
        "timer": boolean(data.get("timer", True), "workload.timer"),
        "kills": boolean(data.get("kills", False), "workload.kills"),
        "progress_bound": integer(
            data.get("progress_bound", DEFAULT_PROGRESS_BOUND), "workload.progress_bound", 1
        ),
        "console_input": console_input(data.get("input", ""), "workload.input"),
        "files": disk_files(data.get("files"), "workload.files"),
    }


#: The keys of a workload section.
WORKLOAD_KEYS = frozenset(
    {"programs", "initial", "max_spawns", "timer", "kills", "progress_bound", "input", "files"}
)


def disk_files(value: Any, where: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The workload's files: a mapping from each file's name to its words (at least one),
    in the order that numbers them for MMAP."""
    files = []
    for name, contents in mapping(value, where).items():
        if not isinstance(name, str) or not name or ":" in name:
            raise ConfigError(f"{where}: {quote(name)} is not a file name (no ':', not empty)")
        data = words(contents, f"{where}.{name}")
        if not data:
            raise ConfigError(f"{where}.{name}: a file needs at least one word")
        files.append((name, data))
    return tuple(files)


def console_input(value: Any, where: str) -> tuple[int, ...]:
    """What is typed at the console: a string of characters ``\\x00 .. \\xff`` (one byte
    each), or a list of bytes ``0 .. 255``."""
    if isinstance(value, str):
        if any(ord(char) > 255 for char in value):
            raise ConfigError(
                f"{where}: only characters \\x00 to \\xff can be typed (one byte each)"
            )
        return tuple(ord(char) for char in value)
    if isinstance(value, list):
        return tuple(
            integer(item, f"{where}[{index}] (a byte)", 0, 255) for index, item in enumerate(value)
        )
    raise ConfigError(f"{where}: expected a string, or a list of bytes 0 .. 255")


def parse_budget(data: Any) -> Budget:
    """The budget section."""
    data = mapping(data, "budget")
    fields = {f.name for f in dataclasses.fields(Budget)}
    known_keys(data, fields, "budget")
    return Budget(**{k: integer(v, f"budget.{k}", 1) for k, v in data.items()})


def initial_programs(value: Any, programs: int, where: str) -> tuple[int, ...]:
    """A list of program indices (the processes spawned at boot), checked."""
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of program indices")
    for index, item in enumerate(value):
        integer(item, f"{where}[{index}] (a program index)", 0, programs - 1)
    return tuple(value)


def parse_variants(data: Any, programs: int) -> tuple[dict[str, dict[str, Any]], ...]:
    """The variants section: a list of {name, hardware: {...}, kernel: {...}, workload:
    {initial: [...]}} overrides (a variant may boot other of the ``programs`` programs,
    nothing else of the workload changes). The parsed YAML is left as it was."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError("variants: expected a list of overrides")
    variants: list[dict[str, Any]] = []
    for index, variant in enumerate(data):
        where = f"variants[{index}]"
        variant = mapping(variant, where)
        known_keys(variant, {"name", "hardware", "kernel", "workload"}, where)
        hardware = mapping(variant.get("hardware"), f"{where}.hardware")
        kernel = mapping(variant.get("kernel"), f"{where}.kernel")
        workload = mapping(variant.get("workload"), f"{where}.workload")
        known_keys(workload, {"initial"}, f"{where}.workload")
        known_keys(
            hardware, {f.name for f in dataclasses.fields(HardwareConfig)}, f"{where}.hardware"
        )
        known_keys(kernel, {f.name for f in dataclasses.fields(KernelConfig)}, f"{where}.kernel")
        if "initial" in workload:
            where = f"{where}.workload.initial"
            workload = {"initial": initial_programs(workload["initial"], programs, where)}
        variants.append(
            {
                "name": str(variant.get("name", f"variant{index}")),
                "hardware": hardware,
                "kernel": kernel,
                "workload": workload,
            }
        )
    return tuple(variants)


def _situations(data: Any, where: str) -> tuple[str, ...]:
    """``all`` or a list of situation names, checked."""
    if data is None:
        return ()
    if data == "all":
        return SITUATIONS
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise ConfigError(f"{where}: expected 'all' or a list of situation names")
    for name in data:
        if name not in SITUATIONS:
            raise ConfigError(
                f"{where}: unknown situation {name!r}; known: {', '.join(SITUATIONS)}"
            )
    return tuple(data)


def parse_coverage(data: Any) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The coverage section: the paging situations the runs must reach.

    ``all`` or a list: situations the variants must reach together. A
    mapping says it in up to three parts: ``together`` (as before),
    ``every_variant``, situations each variant must reach on its own, and
    ``every_format``, situations each page-table format the variants use
    must reach in one of its variants at least. Absent, none is required
    (the table is still reported).
    """
    if isinstance(data, dict):
        known_keys(data, {"together", "every_variant", "every_format"}, "coverage")
        return (
            _situations(data.get("together"), "coverage.together"),
            _situations(data.get("every_variant"), "coverage.every_variant"),
            _situations(data.get("every_format"), "coverage.every_format"),
        )
    return _situations(data, "coverage"), (), ()


def parse_limits(data: Any) -> Limits:
    """The limits section: ``call_seconds`` (more than 0, at most an hour) and
    ``memory_mb`` (192 to 1,048,576: a contained kernel's process needs about 150
    megabytes to start)."""
    data = mapping(data, "limits")
    known_keys(data, {"call_seconds", "memory_mb"}, "limits")
    seconds = data.get("call_seconds", Limits.call_seconds)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 3600:
        raise ConfigError(
            f"limits.call_seconds: {seconds!r} is not a number of seconds in (0, 3600]"
        )
    memory = data.get("memory_mb", Limits.memory_mb)
    if isinstance(memory, bool) or not isinstance(memory, int) or not 192 <= memory <= 1 << 20:
        raise ConfigError(f"limits.memory_mb: {memory!r} is not an integer in 192..1048576")
    return Limits(float(seconds), memory)


def parse_config(data: Any) -> CheckConfig:
    """A whole configuration from its parsed YAML."""
    data = mapping(data, "configuration")
    known_keys(data, _TOP_KEYS, "configuration")
    hardware = HardwareConfig.from_mapping(data.get("hardware"))
    kernel = KernelConfig.from_mapping(data.get("kernel"))
    workload = parse_workload(data.get("workload"), hardware)
    config = CheckConfig(
        hardware,
        kernel,
        workload,
        parse_budget(data.get("budget")),
        parse_variants(data.get("variants"), len(workload.programs)),
        *parse_coverage(data.get("coverage")),
        parse_limits(data.get("limits")),
        raw=data,
    )
    for name, run in config.expand():
        where = "" if name == "base" else f"variant {name}: "
        try:
            for program in run.workload.programs:
                program.validate(run.hardware.page_words, run.hardware.va_pages)
        except UserError as error:
            raise ConfigError(f"{where}{error}") from error
        check_capacity(run, where)
    return config


def pages_needed(workload: Workload, hardware: HardwareConfig) -> int:
    """The most distinct pages one instruction of the workload can touch at once.

    An instruction touches at most :data:`~pagingcheck.model.isa.MAX_PAGES_PER_INSTRUCTION`
    pages, and never more than its program has; random programs (spawned
    when ``max_spawns`` allows) may need the most.
    """
    if workload.max_spawns:
        return MAX_PAGES_PER_INSTRUCTION
    sizes = [
        len(program.layout(hardware.page_words, hardware.va_pages)) for program in workload.programs
    ]
    return min(MAX_PAGES_PER_INSTRUCTION, max(sizes, default=1))


def check_capacity(config: CheckConfig, where: str = "") -> None:
    """Refuse hardware on which the workload could never finish: too few user frames or
    software TLB entries for one instruction, too few image blocks for the programs."""
    hardware, workload = config.hardware, config.workload
    needed = pages_needed(workload, hardware)
    if hardware.user_frames < needed:
        raise ConfigError(
            f"{where}hardware.user_frames: {hardware.user_frames} user frames cannot hold the "
            f"{needed} pages one instruction of this workload can touch at once; "
            f"use at least {needed}"
        )
    if hardware.tlb_refill == "software" and hardware.tlb_entries < needed:
        raise ConfigError(
            f"{where}hardware.tlb_entries: a software-refilled TLB of {hardware.tlb_entries} "
            f"entries cannot hold the {needed} translations one instruction of this workload "
            f"can need at once, so it could never finish; use at least {needed}"
        )
    images = sum(
        program.text_pages(hardware.page_words) + program.data_pages(hardware.page_words)
        for program in workload.programs
    ) + workload.file_pages(hardware.page_words)
    if images > hardware.image_blocks:
        raise ConfigError(
            f"{where}hardware.image_blocks: the workload's program images and files take "
            f"{images} blocks, more than the {hardware.image_blocks} image blocks; "
            f"use at least {images}"
        )


def load_text(text: str, source: str = "<config>") -> CheckConfig:
    """Parse YAML text safely and build a configuration."""
    data = load_yaml(text, source)
    try:
        return parse_config(data)
    except TypeError as error:
        raise ConfigError(f"{source}: {error}") from error


def load(path: Path | None) -> CheckConfig:
    """The configuration in ``path``, or the built-in default when None."""
    if path is None:
        return load_text(default_text(), "built-in default")
    return load_text(read_text(path, "the configuration"), str(path))


def references() -> list[str]:
    """The names of the reference configurations shipped for ``pagingcheck explore``."""
    folder = files("pagingcheck.checks").joinpath("configs")
    return sorted(
        f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml")
    )


def load_reference(name: str) -> CheckConfig:
    """The shipped reference configuration ``name`` (UserError naming the choices if none)."""
    return load_text(reference_text(name), f"reference configuration {name}")


def reference_text(name: str) -> str:
    """The YAML text of the shipped reference configuration ``name``."""
    if name not in references():
        raise UserError(
            f"--reference {name!r}: no such reference configuration; choose one of: "
            f"{', '.join(references())}"
        )
    return files("pagingcheck.checks").joinpath("configs", f"{name}.yaml").read_text()


def default_text() -> str:
    """The built-in default configuration's YAML text."""
    return files("pagingcheck.checks").joinpath("default.yaml").read_text()
