"""The answer matrix, derived from copier.yml itself.

Every question with `choices` contributes each of its choices (rendered from copier.yml's
tables where they are a template), in the order copier.yml asks them; a question whose
`when` is false for the answers so far is skipped, and a choice that its own `validator` or
the question's validator refuses is a combination the template rejects. Free-text and
numeric questions take their (rendered) defaults. Computed answers (`when: false`) are not
questions: their values come from Copier itself (launchpad_dev.common.computed).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from jinja2.sandbox import SandboxedEnvironment

ROOT = Path(__file__).resolve().parent.parent
COPIER_YML = ROOT / "copier.yml"


@dataclass(frozen=True)
class Rejected:
    answers: dict
    question: str
    reason: str


@cache
def questions() -> dict:
    spec = yaml.safe_load(COPIER_YML.read_text())
    return {k: v for k, v in spec.items() if not k.startswith("_")}


def _env() -> SandboxedEnvironment:
    # The filters Copier itself loads by default (regex_replace, regex_search, ...).
    return SandboxedEnvironment(extensions=["jinja2_ansible_filters.AnsibleCoreFiltersExtension"])


def _render(env: SandboxedEnvironment, text: object, context: dict) -> str:
    if not isinstance(text, str):
        return str(text)
    return env.from_string(text).render(**context)


def _is_computed(spec: dict) -> bool:
    return spec.get("when") is False


def _asked(env, spec: dict, context: dict) -> bool:
    when = spec.get("when", True)
    if isinstance(when, bool):
        return when
    return _render(env, when, context).strip().lower() in {"true", "1", "yes", "y", "on"}


def _choice_items(env, name: str, context: dict) -> list[tuple[str, object]]:
    """[(label, value or {value, validator})] of a choice question. Choices may be a template
    (rendered from one of copier.yml's tables), read as YAML once rendered, as Copier does."""
    raw = questions()[name]["choices"]
    if isinstance(raw, str):
        raw = yaml.safe_load(_render(env, raw, context))
    return list(raw.items()) if isinstance(raw, dict) else [(str(c), c) for c in raw]


def _choices(env, name: str, context: dict, validate: bool = True) -> list[tuple[object, str]]:
    """[(value, rejection reason or '')] of a choice question. A choice is rejected when its
    own validator, or the question's validator with that choice as the answer, renders a
    message."""
    validator = questions()[name].get("validator")
    out = []
    for _label, value in _choice_items(env, name, context):
        reason = ""
        if isinstance(value, dict):
            reason = _render(env, value.get("validator", ""), context).strip() if validate else ""
            value = value["value"]
        if validate and not reason and validator:
            reason = _render(env, validator, {**context, name: value}).strip()
        out.append((value, reason))
    return out


def _constants(env) -> dict:
    """Computed answers that do not depend on any question (validator constants)."""
    context: dict = {}
    for name, spec in questions().items():
        if _is_computed(spec) and "{{" not in str(spec.get("default", "")):
            context[name] = spec["default"]
    return context


def _expand(env, names: list[str], context: dict, answers: dict):
    """Yield (answers, rejection) for every path through the remaining questions."""
    if not names:
        yield dict(answers), None
        return
    name, rest = names[0], names[1:]
    spec = questions()[name]
    if _is_computed(spec) or not _asked(env, spec, context):
        yield from _expand(env, rest, context, answers)
        return
    if "choices" not in spec:
        value = spec.get("default")
        if isinstance(value, str):
            value = _render(env, value, context)
            if spec.get("type") == "int":
                value = int(value)
        yield from _expand(env, rest, {**context, name: value}, answers)
        return
    for value, reason in _choices(env, name, context):
        chosen = {**answers, name: value}
        if reason:
            yield chosen, Rejected(chosen, name, reason)
            continue
        yield from _expand(env, rest, {**context, name: value}, chosen)


@cache
def _all() -> tuple[list[dict], list[Rejected]]:
    env = _env()
    valid, rejected = [], []
    for answers, rejection in _expand(env, list(questions()), _constants(env), {}):
        (rejected if rejection else valid).append(rejection or answers)
    return valid, rejected


def combinations() -> list[dict]:
    """Every accepted combination of choice answers (other answers take defaults)."""
    return _all()[0]


def rejected_combinations() -> list[Rejected]:
    """Combinations a per-choice validator in copier.yml rejects, with the reason."""
    return _all()[1]


def choice_values(name: str) -> list:
    """Every value a choice question offers (rejected or not)."""
    env = _env()
    return [value for value, _ in _choices(env, name, _constants(env), validate=False)]


def choice_labels(name: str) -> list[str]:
    """Every label a choice question shows (the text of the prompt's menu)."""
    env = _env()
    return [label for label, _ in _choice_items(env, name, _constants(env))]


# The answers that choose the locked dependency set (copier.yml's computed `lock_set`).
LOCK_SET_KEYS = ("dagster_version", "compute_logs")


def lock_sets() -> dict[str, dict]:
    """Every lock set the template ships (copier.yml's `lock_set`, rendered for each combination
    of LOCK_SET_KEYS' choices) -> the answers that produce it."""
    import itertools

    env = _env()
    template = questions()["lock_set"]["default"]
    sets: dict[str, dict] = {}
    for values in itertools.product(*(choice_values(key) for key in LOCK_SET_KEYS)):
        answers = dict(zip(LOCK_SET_KEYS, values, strict=True))
        name = _render(env, template, {**_constants(env), **answers})
        assert name not in sets, f"lock_set {name!r} names two sets: {sets[name]} and {answers}"
        sets[name] = answers
    return sets


def choice_questions() -> list[str]:
    return [n for n, s in questions().items() if "choices" in s and not _is_computed(s)]


def combo_id(answers: dict) -> str:
    cid = "-".join(str(answers[k]) for k in choice_questions() if k in answers)
    if "code_locations" in answers:  # the multi-location renders (see multi_location_combinations)
        cid += "-locations=" + "+".join(map(str, answers["code_locations"]))
    return cid


# The answers that change what an image contains (the build tier builds one image set per
# distinct value of these; test_static checks that they partition the rendered images
# exactly as the images' build inputs do).
IMAGE_KEYS = (
    "container_engine",
    "base_image",
    "custom_package_manager",
    "python_version",
    "code_delivery",
    "dagster_version",
)


def image_key(answers: dict) -> tuple:
    return tuple(answers.get(k) for k in IMAGE_KEYS)


def image_sets() -> list[dict]:
    """One representative combination per distinct image set."""
    sets: dict[tuple, dict] = {}
    for answers in combinations():
        sets.setdefault(image_key(answers), answers)
    return list(sets.values())


def greedy_cover(candidates: list[dict], covers) -> list[dict]:
    """A small set of `candidates` that together cover everything any of them covers
    (`covers(a)`: a set): repeatedly take the candidate that covers the most not yet covered
    (ties: the earlier candidate, so the default-most combinations come first)."""
    wanted = set().union(*(covers(a) for a in candidates))
    chosen: list[dict] = []
    while wanted:
        best = max(candidates, key=lambda a: len(covers(a) & wanted))
        chosen.append(best)
        wanted -= covers(best)
    return chosen


def covering_set(candidates: list[dict], factors: list[str]) -> list[dict]:
    """A small set of `candidates` in which every pair of values of `factors` appears
    (greedy all-pairs)."""
    import itertools

    return greedy_cover(
        candidates,
        lambda a: {((f, a[f]), (g, a[g])) for f, g in itertools.combinations(factors, 2)},
    )


# The render tier renders every combination above with one code location (the default: the
# package), and a few with several: MULTI_LOCATIONS, in the combinations of
# multi_location_combinations(), so that every per-location file and entry is checked with
# more than one location too.
MULTI_LOCATIONS = ("data_platform", "sales", "ml_models")
# The answers whose files change with the number of code locations (compose services and
# their environment, volumes, images, workspace entries, the ignore file, the locks: each lock
# set, chosen by the Dagster version and compute_logs).
MULTI_LOCATION_FACTORS = (
    "container_engine",
    "code_delivery",
    "run_launcher",
    "storage",
    "dagster_version",
    "compute_logs",
)


def each_value_set(candidates: list[dict], factors: tuple[str, ...]) -> list[dict]:
    """A small set of `candidates` in which every value of each of `factors` appears (greedy:
    the candidate with the most values not yet seen; ties: the earlier, default-most one)."""
    return greedy_cover(candidates, lambda a: {(f, a[f]) for f in factors})


def code_location_limits() -> tuple[int, int]:
    """(most code locations, longest name), as code_locations' validator states them."""
    import re

    validator = questions()["code_locations"]["validator"]
    count = re.search(r"code_locations \| length > (\d+)", validator)
    length = re.search(r"name \| length > (\d+)", validator)
    assert count and length, "code_locations' validator no longer states its limits as the tests read them"
    return int(count[1]), int(length[1])


def multi_location_combinations() -> list[dict]:
    """A few accepted combinations, each answered with the code locations MULTI_LOCATIONS:
    every value of MULTI_LOCATION_FACTORS appears in one of them (both engines, both code
    deliveries, both run launchers, every storage, every Dagster version, both compute log
    stores)."""
    chosen = each_value_set(combinations(), MULTI_LOCATION_FACTORS)
    return [{**answers, "code_locations": list(MULTI_LOCATIONS)} for answers in chosen]


def parse_shard(spec: str) -> tuple[int, int]:
    """ "K/N" (1 <= K <= N) -> (K, N); anything else is refused with the expected form."""
    import re

    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f"shard {spec!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
    return int(match[1]), int(match[2])


def shard(items: list, spec: str | None) -> list:
    """Shard `spec` ("K/N") of `items`: every Nth item, from the Kth (1-based), in order, so the
    N shards together are `items` exactly, each once, and their sizes differ by one at most.
    No spec (None or ""): every item."""
    if not spec:
        return list(items)
    k, n = parse_shard(spec)
    return list(items[k - 1 :: n])
