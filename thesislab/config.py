"""params.yaml, read once into a typed, validated Config.

Every key has a rule; a wrong type, an out-of-range value or an unknown name raises UserError with one line
naming the key and what is allowed, before any work starts. The defaults here are the defaults of
params.yaml (a test keeps the two equal).

Names that belong to a registry (`model`, the entries of `schedules`) are checked against that registry by
the code that owns it (thesislab.train.models, thesislab.train.schedules), first thing in the stages that
use them: the registry is the one list of names, and the data stages need not import torch to read params.

params.yaml is read as YAML 1.2 (what DVC writes for `-S`): only true/false are booleans (`yes` stays the
word yes, and is refused where a boolean is expected), `1:30` is text rather than the base-60 number 90, and
`1e-3` is a number.
"""

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from thesislab.errors import UserError

DATASETS = ("speedsigns", "cifar10", "folder")
MONITORS = ("val", "test")
DEVICES = ("auto", "cpu", "cuda", "mps")
COMPILE_MODES = (False, "default", "reduce-overhead", "max-autotune")


# --- YAML 1.2 scalars ---------------------------------------------------------------------------------


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.2 core schema's booleans, integers and floats."""


def _yaml12_resolvers():
    resolvers = {
        "tag:yaml.org,2002:bool": (r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
        "tag:yaml.org,2002:int": (r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
        "tag:yaml.org,2002:float": (
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
            "-+.0123456789",
        ),
    }
    table = {first: [(tag, rx) for tag, rx in entries if tag not in resolvers]
             for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Yaml12Loader.yaml_implicit_resolvers = table
    for tag, (pattern, first) in resolvers.items():
        Yaml12Loader.add_implicit_resolver(tag, re.compile(pattern), list(first))


def _yaml12_int(loader, node):
    text = loader.construct_scalar(node)
    base = 8 if text.startswith("0o") else 16 if text.startswith("0x") else 10  # 010 is ten, as in YAML 1.2
    return int(text[2:] if base != 10 else text, base)


_yaml12_resolvers()
Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _yaml12_int)


# --- rules: each returns None when the value is fine, or text saying what is allowed -----------------


def _integer(lo=None, hi=None):
    allowed = "an integer" + _range_text(lo, hi, "[", "]")

    def rule(v):
        ok = isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo) and (hi is None or v <= hi)
        return None if ok else allowed

    return rule


def _number(lo=None, hi=None, lo_open=False, hi_open=False):
    allowed = "a number" + _range_text(lo, hi, "(" if lo_open else "[", ")" if hi_open else "]")

    def rule(v):
        if not _is_number(v):
            return allowed
        v = float(v)
        below = lo is not None and (v <= lo if lo_open else v < lo)
        above = hi is not None and (v >= hi if hi_open else v > hi)
        return allowed if below or above else None

    return rule


def _is_number(v):
    if isinstance(v, bool):
        return False
    return isinstance(v, (int, float)) and math.isfinite(v)


def _range_text(lo, hi, left, right):
    if lo is None and hi is None:
        return ""
    if hi is None:
        return f" {'>' if left == '(' else '>='} {lo}"
    if lo is None:
        return f" {'<' if right == ')' else '<='} {hi}"
    return f" in {left}{lo}, {hi}{right}"


def _boolean(v):
    return None if isinstance(v, bool) else "true or false"


def _choice(options):
    def rule(v):
        # Compare types too, so that YAML's `true` is not taken for 1 or a name.
        ok = any(v == o and type(v) is type(o) for o in options)
        return None if ok else "one of: " + ", ".join(str(o).lower() for o in options)

    return rule


def _optional_text(v):
    return None if v is None or (isinstance(v, str) and v.strip()) else "null or a path/URL string"


def _freeze(v):
    return None if v is None or v == "backbone" else "null or backbone"


def _name(v):
    ok = isinstance(v, str) and v.strip() == v and v
    return None if ok else "a name (see docs/reference.md: The experiment's knobs)"


def _distinct_list(item_rule, what):
    def rule(v):
        ok = isinstance(v, list) and v and all(item_rule(x) is None for x in v) and len(set(v)) == len(v)
        return None if ok else f"a non-empty list of distinct {what}"

    return rule


SEED_MAX = 2**32 - 1  # numpy and torch both take seeds this large
def _schedule_name(v):
    # The name becomes part of a stage name and its shell command (dvc.yaml's matrix): letters, digits, _ only.
    ok = isinstance(v, str) and re.fullmatch(r"[a-z0-9_]+", v)
    return None if ok else "a schedule name"


_schedule_names = _distinct_list(_schedule_name, "schedule names (a-z, 0-9, _), e.g. [static, dynamic]")
_seed_list = _distinct_list(_integer(0, SEED_MAX), f"integers in [0, {SEED_MAX}], e.g. [0, 1, 2]")


def param(default, rule):
    return field(default=default, metadata={"rule": rule})


def group(cls):
    return field(default_factory=cls, metadata={"group": cls})


# --- the config ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeedSigns:
    """The offline speed-limit-sign generator (dataset: speedsigns)."""

    train_per_class: int = param(400, _integer(1, 100_000))
    test_per_class: int = param(100, _integer(1, 100_000))
    size: int = param(32, _integer(16, 512))
    seed: int = param(0, _integer(0, SEED_MAX))


@dataclass(frozen=True)
class Dynamic:
    """The thesis's dynamic learning rate (docs/design.md pins it down)."""

    window: int = param(8, _integer(2, 1000))
    slope: float = param(0.03, _number())
    factor: float = param(0.1, _number(0, 1, lo_open=True, hi_open=True))
    max_reductions: int = param(3, _integer(0, 100))


@dataclass(frozen=True)
class NoKnobs:
    """A schedule with nothing to set (static; cosine, which anneals over `epochs`)."""


@dataclass(frozen=True)
class StepOptions:
    step_size: int = param(10, _integer(1))
    gamma: float = param(0.1, _number(0, 1, lo_open=True))


@dataclass(frozen=True)
class ExpOptions:
    gamma: float = param(0.9, _number(0, 1, lo_open=True))


@dataclass(frozen=True)
class PlateauOptions:
    factor: float = param(0.1, _number(0, 1, lo_open=True, hi_open=True))
    patience: int = param(3, _integer(0))


@dataclass(frozen=True)
class OneCycleOptions:
    pct_start: float = param(0.25, _number(0, 1, lo_open=True, hi_open=True))


@dataclass(frozen=True)
class Augmentation:
    """What `augment: true` does: random translation by up to crop_padding pixels, and mirror flips."""

    crop_padding: int = param(2, _integer(0, 64))
    flip: bool = param(False, _boolean)


SEQUENTIAL_FIRST_LOOK = 5  # seeds at least at a sequential design's first look (a t interval from 4 df up)
SEQUENTIAL_MAX_LOOKS = 20  # more looks gain little power, and each one's alpha gets too small to calibrate
SPENDING = ("obrien_fleming", "pocock")


def _optional_integer(lo, hi):
    rule = _integer(lo, hi)
    return lambda v: None if v is None else (rule(v) and f"null or {rule(v)}")


@dataclass(frozen=True)
class Sequential:
    """A sequential design (thesislab.comparison.sequential): seeds in batches until the comparison decides."""

    max_seeds: object = param(None, _optional_integer(SEQUENTIAL_FIRST_LOOK, 1000))  # null: off
    every: int = param(5, _integer(1, 10_000))
    alpha: float = param(0.05, _number(0, 0.5, lo_open=True, hi_open=True))
    spending: str = param("obrien_fleming", _choice(SPENDING))
    futility: bool = param(False, _boolean)


@dataclass(frozen=True)
class Compare:
    """How the comparison of schedules over seeds decides (thesislab.comparison)."""

    baseline: str = param("static", _name)
    min_effect: float = param(0.5, _number(0, 100, lo_open=True))  # accuracy points worth detecting
    target_acc: float = param(90.0, _number(0, 100, lo_open=True))  # for "epochs to reach it"
    sequential: Sequential = group(Sequential)


@dataclass(frozen=True)
class Engine:
    """Where and how fast. device, bf16, compile, nproc, threads and portable change the arithmetic (other kernels, other
    rounding, BatchNorm over each process's share of a batch, CPU reductions split another way), so they are part
    of what a checkpoint must match;
    eval_batch_size and resident only change speed and memory (tests/test_training.py checks that)."""

    device: str = param("auto", _choice(DEVICES))
    compile: object = param(False, _choice(COMPILE_MODES))
    bf16: bool = param(True, _boolean)
    nproc: int = param(1, _integer(1, 1024))
    threads: int = param(1, _integer(1, 1024))
    # Portable CPU arithmetic (thesislab.arithmetic): the same bits on every x86-64 CPU with AVX2; on CUDA,
    # deterministic algorithms. false: the host's fastest kernels, numbers of its own.
    portable: bool = param(True, _boolean)
    resident: object = param("auto", _choice(("auto", True, False)))
    eval_batch_size: int = param(1024, _integer(1))


@dataclass(frozen=True)
class Config:
    dataset: str = param("speedsigns", _choice(DATASETS))
    source: object = param(None, _optional_text)
    image_size: int = param(32, _integer(8, 1024))
    speedsigns: SpeedSigns = group(SpeedSigns)
    model: str = param("signnet", _name)
    weights: object = param(None, _optional_text)
    freeze: object = param(None, _freeze)
    schedules: list = param(("static", "dynamic"), _schedule_names)
    lr: float = param(0.01, _number(0, 1000, lo_open=True))
    momentum: float = param(0.9, _number(0, 1, hi_open=True))
    weight_decay: float = param(0.0005, _number(0))
    batch_size: int = param(32, _integer(1, 1_000_000))
    epochs: int = param(40, _integer(1, 100_000))
    dropout: float = param(0.5, _number(0, 1, hi_open=True))
    normalize: bool = param(True, _boolean)
    augment: bool = param(False, _boolean)
    loss_stop: float = param(0.08, _number(0))
    monitor: str = param("val", _choice(MONITORS))
    val_fraction: float = param(0.1, _number(0, 0.9))
    seeds: list = param((0, 1, 2), _seed_list)
    checkpoint_every: int = param(16, _integer(0))
    # Each schedule's knobs under its own name: a train stage depends on its schedule's key alone (dvc.yaml), so
    # changing dynamic.window retrains the dynamic runs and not the static ones.
    static: NoKnobs = group(NoKnobs)
    dynamic: Dynamic = group(Dynamic)
    step: StepOptions = group(StepOptions)
    exp: ExpOptions = group(ExpOptions)
    cosine: NoKnobs = group(NoKnobs)
    onecycle: OneCycleOptions = group(OneCycleOptions)
    plateau: PlateauOptions = group(PlateauOptions)
    augmentation: Augmentation = group(Augmentation)
    compare: Compare = group(Compare)
    engine: Engine = group(Engine)

    def to_dict(self):
        return _to_plain(dataclasses.asdict(self))


def _to_plain(v):
    if isinstance(v, dict):
        return {k: _to_plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_to_plain(x) for x in v]
    return v


def _build(cls, raw, prefix=""):
    if not isinstance(raw, dict):
        raise UserError(f"params.yaml: {prefix.rstrip('.') or 'top level'}: must be a mapping of keys")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise UserError(
            f"params.yaml: unknown key '{prefix}{unknown[0]}' (known keys here: {', '.join(sorted(names))})"
        )
    values = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if f.name not in raw:
            continue
        v = raw[f.name]
        if "group" in f.metadata:
            values[f.name] = _build(f.metadata["group"], v, key + ".")
            continue
        allowed = f.metadata["rule"](v)
        if allowed:
            raise UserError(f"params.yaml: {key}: must be {allowed} (got {v!r})")
        if f.type is float:
            v = float(v)
        values[f.name] = v
    return cls(**values)


def _check_together(cfg):
    if cfg.compare.baseline not in cfg.schedules:
        raise UserError(f"params.yaml: compare.baseline: must be one of schedules ({', '.join(cfg.schedules)}) "
                        f"(got {cfg.compare.baseline!r})")
    _check_sequential(cfg)
    if cfg.freeze and not cfg.weights:
        raise UserError("params.yaml: freeze: backbone needs weights (a trained backbone to keep); set weights too")
    if cfg.monitor == "val" and cfg.val_fraction <= 0:
        raise UserError("params.yaml: val_fraction: must be > 0 when monitor is val (got 0)")
    if cfg.dataset in ("folder",) and not cfg.source:
        raise UserError("params.yaml: source: must name a folder with train/<class>/ and test/<class>/ "
                        "when dataset is folder")


def _check_sequential(cfg):
    design = cfg.compare.sequential
    if design.max_seeds is None:
        return
    if len(cfg.schedules) < 2:
        raise UserError(f"params.yaml: compare.sequential.max_seeds: a sequential design compares schedules, and "
                        f"schedules has one ({cfg.schedules[0]}); add another, or set max_seeds: null")
    if len(cfg.seeds) < SEQUENTIAL_FIRST_LOOK:
        raise UserError(f"params.yaml: seeds: a sequential design's first look needs at least {SEQUENTIAL_FIRST_LOOK} "
                        f"seeds (got {len(cfg.seeds)}), e.g. -S 'seeds=[0,1,2,3,4]'")
    if design.max_seeds < len(cfg.seeds):
        raise UserError(f"params.yaml: compare.sequential.max_seeds: must be at least the {len(cfg.seeds)} seeds of "
                        f"seeds (got {design.max_seeds})")
    looks = len(range(len(cfg.seeds), design.max_seeds, design.every)) + 1
    if looks > SEQUENTIAL_MAX_LOOKS:
        raise UserError(f"params.yaml: compare.sequential.every: a design takes at most {SEQUENTIAL_MAX_LOOKS} looks, and "
                        f"{len(cfg.seeds)} seeds then {design.every} a look up to {design.max_seeds} make {looks}; "
                        f"raise every to {math.ceil((design.max_seeds - len(cfg.seeds)) / (SEQUENTIAL_MAX_LOOKS - 1))}")
    # The design's last seed, whichever look this is: the seeds after max(seeds) up to max_seeds in all.
    last = max(cfg.seeds) + design.max_seeds - len(cfg.seeds)
    if last > SEED_MAX:
        raise UserError(f"params.yaml: seeds: a sequential design adds seeds after max(seeds), up to max_seeds in all; "
                        f"its last would be {last}, over {SEED_MAX}: start it at {SEED_MAX - design.max_seeds + 1} "
                        "or below")


def from_dict(raw) -> Config:
    cfg = _build(Config, raw or {})
    cfg = dataclasses.replace(cfg, schedules=tuple(cfg.schedules), seeds=tuple(cfg.seeds))
    _check_together(cfg)
    return cfg


def load(path="params.yaml") -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    try:
        raw = yaml.load(text, Loader=Yaml12Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML") from None
    return from_dict(raw)
