"""What one job of the GitHub matrix selects: a shard of the render tier, the images, the bases
and engines of the engine tiers (launchpad_dev/selection.py, launchpad_dev/engines.py;
docs/testing.md, "Choosing images, shards, bases and engines"). No rendering, no engine: the
selection itself."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from launchpad_dev import engines, matrix, selection

MULTI = [matrix.combo_id(a) for a in matrix.multi_location_combinations()]


def cover_problems(whole: list[str], shards: list[list[str]]) -> list[str]:
    """What is wrong with `shards` as a split of `whole`: a combination in no shard or in two,
    one that is not in the matrix, shard sizes that differ by more than one."""
    seen = [cid for part in shards for cid in part]
    problems = [f"{cid} is in no shard" for cid in whole if cid not in seen]
    problems += [f"{cid} is in {seen.count(cid)} shards" for cid in set(seen) if seen.count(cid) > 1]
    problems += [f"{cid} is not in the matrix" for cid in set(seen) - set(whole)]
    sizes = [len(part) for part in shards]
    if sizes and max(sizes) - min(sizes) > 1:
        problems.append(f"shard sizes {sizes}")
    return problems


def rendered_shard(spec: str | None) -> list[str]:
    """The single-location combinations that conftest renders for LAUNCHPAD_SHARD=spec."""
    ids = [matrix.combo_id(a) for a in selection.combinations_to_render(spec)]
    assert ids[len(ids) - len(MULTI) :] == MULTI, "every shard renders the multi-location combinations"
    return ids[: len(ids) - len(MULTI)]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_together_render_the_whole_matrix_once(count):
    whole = [matrix.combo_id(a) for a in matrix.combinations()]
    assert rendered_shard(None) == rendered_shard("") == whole
    shards = [rendered_shard(f"{k}/{count}") for k in range(1, count + 1)]
    assert not cover_problems(whole, shards)


def test_the_cover_check_finds_a_broken_split():
    """The check above fails on a split that loses, repeats or adds a combination."""
    whole = [matrix.combo_id(a) for a in matrix.combinations()]
    halves = [whole[0::2], whole[1::2]]
    assert not cover_problems(whole, halves)
    assert cover_problems(whole, [halves[0][1:], halves[1]]) == [f"{whole[0]} is in no shard"]
    assert cover_problems(whole, [halves[0], halves[1] + whole[:1]])
    assert cover_problems(whole, [halves[0] + ["not-a-combination"], halves[1]])
    assert cover_problems(whole, [whole[:10], whole[10:]])  # sizes


@pytest.mark.parametrize("spec", ["0/4", "5/4", "2", "a/b", "1/0", "-1/4"])
def test_a_bad_shard_is_refused_with_the_expected_form(spec):
    with pytest.raises(ValueError, match="expected K/N with 1 <= K <= N"):
        matrix.shard([1, 2, 3], spec)


def item(engine: str | None = None, answers: dict | None = None):
    """A collected test as selection.selected sees it."""
    params = {"answers": answers} if answers else {}
    return SimpleNamespace(
        get_closest_marker=lambda name: SimpleNamespace(args=(engine,)) if engine else None,
        callspec=SimpleNamespace(params=params) if params else None,
    )


def test_engines_and_bases_select_the_engine_tiers_tests(monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_ENGINES", "docker")
    monkeypatch.setenv("LAUNCHPAD_BASES", "ubi, alpine")
    engines_, bases = selection.selection("LAUNCHPAD_ENGINES"), selection.selection("LAUNCHPAD_BASES")
    assert (engines_, bases) == ({"docker"}, {"ubi", "alpine"})
    ubi_docker = {"base_image": "ubi", "container_engine": "docker"}
    assert selection.selected(item(answers=ubi_docker), engines_, bases)
    assert not selection.selected(item(answers={**ubi_docker, "container_engine": "podman"}), engines_, bases)
    assert not selection.selected(item(answers={**ubi_docker, "base_image": "debian"}), engines_, bases)
    assert not selection.selected(item(engine="podman"), engines_, bases)
    assert selection.selected(item(), engines_, bases)  # no engine, no base: the other tiers
    monkeypatch.setenv("LAUNCHPAD_BASES", "debian,fedora")
    with pytest.raises(pytest.UsageError, match="fedora"):
        selection.selection("LAUNCHPAD_BASES")
    monkeypatch.delenv("LAUNCHPAD_BASES")
    assert selection.selection("LAUNCHPAD_BASES") is None


def test_stand_ins_skip_what_cannot_be_made_here_with_the_reason(monkeypatch):
    monkeypatch.setattr(engines, "UPSTREAM", False)
    reasons = {matrix.combo_id(a): engines.unbuildable_reason(a) for a in matrix.combinations()}
    built = [a for a in matrix.combinations() if engines.unbuildable_reason(a) is None]
    assert {a["base_image"] for a in built} == {"debian"}
    assert {a["python_version"] for a in built} == engines.DEBIAN_PYTHONS
    assert all(reason is None or reason.strip() for reason in reasons.values())
    custom = next(a for a in matrix.combinations() if a["base_image"] == "custom")
    assert engines.buildable_answers(custom) is custom  # the placeholder is never replaced


def test_upstream_builds_every_base_with_a_valid_public_custom_base(monkeypatch):
    monkeypatch.setattr(engines, "UPSTREAM", True)
    env, constants = matrix._env(), matrix._constants(matrix._env())
    validator = matrix.questions()["custom_base_image"]["validator"]
    for answers in matrix.combinations():
        reason = engines.unbuildable_reason(answers)
        if answers["base_image"] != "custom":
            assert reason is None, answers
            continue
        key = (answers["custom_package_manager"], answers["python_version"])
        assert (reason is None) == (key in engines.UPSTREAM_CUSTOM_BASES), (key, reason)
        if reason is None:
            image = engines.buildable_answers(answers)["custom_base_image"]
            python = answers["python_version"]
            assert python in image or f"python-{python.replace('.', '')}" in image, (python, image)
    bases = {engines.buildable_answers(a).get("custom_base_image") for a in matrix.combinations()}
    assert set(engines.UPSTREAM_CUSTOM_BASES.values()) <= bases
    for image in engines.UPSTREAM_CUSTOM_BASES.values():  # copier.yml's validator accepts each
        assert not matrix._render(env, validator, {**constants, "custom_base_image": image}).strip()


def test_an_unknown_image_source_is_refused(monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_IMAGES", "mirror")
    with pytest.raises(ValueError, match="standins, upstream"):
        engines.image_source()
    monkeypatch.setenv("LAUNCHPAD_IMAGES", "upstream")
    assert engines.image_source() == "upstream"
