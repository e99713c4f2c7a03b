"""docker-examples/build.py without an engine: every example can be built in every variant, and the table's
variants follow what this venvprune offers. Seconds; the builds themselves are in test_docker_examples.py."""

from __future__ import annotations

import subprocess
import sys

import build  # docker-examples/build.py, put on the path by conftest
import pytest

EXAMPLE_KEYS = [example.key for example in build.EXAMPLES]


@pytest.mark.parametrize("key", EXAMPLE_KEYS)
def test_every_example_is_complete(key: str) -> None:
    example = build.example(key)
    for name in (example.dockerfile, ".dockerignore", "README.md", "requirements.txt"):
        assert (example.directory / name).is_file(), f"{example.directory / name} is missing"
    assert example.source_of(example.smoke[0]).is_file(), f"{key}: no {example.smoke[0]} in {example.directory}"
    readme = (example.directory / "README.md").read_text()
    assert build.README_START in readme and build.README_END in readme, f"{key}/README.md has no table section"


@pytest.mark.parametrize("key", EXAMPLE_KEYS)
def test_every_example_derives_every_variant(key: str) -> None:
    example = build.example(key)
    original = (example.directory / example.dockerfile).read_text()
    has_check = bool(build.CHECK_LINE.search(original))
    if " AS builder" in original:
        assert has_check, f"{key}: a multi-stage example without check.py in its final stage"
    for variant in build.VARIANTS:
        derived = build.derive_dockerfile(original, variant, cache_suffix=variant.name)
        assert "venvprune ${VENVPRUNE_ARGS}" not in derived or variant.name == "venvprune"
        assert bool(build.CHECK_LINE.search(derived)) == (has_check and variant.final_check), (key, variant.name)
        if variant.name == "find-chain":
            assert '-name "*.so" -exec strip {} +' in derived
        if variant.name == "unpruned":
            assert "-exec strip" not in derived and "venvprune ${VENVPRUNE_ARGS}" not in derived
    ids = [build.cache_mount_ids(build.derive_dockerfile(original, v, cache_suffix=v.name)) for v in build.VARIANTS]
    assert all(id_ not in ids[0] for other in ids[1:] for id_ in other), f"{key}: variants share a cache mount"


def test_a_dockerfile_without_one_venvprune_command_is_refused() -> None:
    with pytest.raises(build.BuildError, match="has 0 `venvprune"):
        build.derive_dockerfile("FROM python:3.12-slim\nRUN pip install pandas\n", build.variant("venvprune"))


def test_the_max_profile_variant_follows_venvprune_help() -> None:
    without = "Options:\n  -n, --dry-run  Print the plan.\n  --keep GLOB  Never touch.\n"
    with_profile = without + "  --profile [default|max]  Which categories.\n"
    assert "venvprune-max" not in [v.name for v in build.available_variants(without)]
    assert "venvprune-max" in [v.name for v in build.available_variants(with_profile)]
    # This checkout's own help decides, whatever it says today.
    offered = (
        "--profile"
        in subprocess.run(
            [sys.executable, "-m", "venvprune", "--help"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert ("venvprune-max" in [v.name for v in build.available_variants(build.venvprune_help())]) == offered


def test_venv_layers_are_those_naming_the_venv() -> None:
    layers = [
        build.Layer("COPY /opt/venv /opt/venv # buildkit", 400),
        build.Layer("RUN /bin/sh -c python3 -m venv /opt/venvprune && ln -s /opt/venvprune/bin/venvprune", 30),
        build.Layer("COPY analyze.py /app/analyze.py # buildkit", 2),
        build.Layer("RUN /bin/sh -c venvprune /opt/venv", 5),
    ]
    assert build.venv_layer_bytes(layers) == 405
