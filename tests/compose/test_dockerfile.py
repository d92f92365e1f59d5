"""The Dockerfile and .dockerignore, checked without a Docker engine: the structure of the
file, the build context it gets, and its collectstatic step run on a copy of that context."""

import os
import re
import shlex
import subprocess
import sys

import pytest

from .helpers import (
    DOCKERIGNORE,
    ROOT,
    build_context_files,
    copy_build_context,
    dockerfile_instructions,
    dockerignored,
    exec_form,
)

SECRET_NAMES = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY\b|WEBHOOK|DATABASE_URL|REDIS_URL", re.I)


def stages():
    instructions = dockerfile_instructions()
    return instructions, max(i.stage for i in instructions)


def env_names(arguments: str) -> list[str]:
    """The variable names an ENV instruction sets (ENV A=1 B=2, or the legacy ENV A 1)."""
    words = shlex.split(arguments)
    if words and "=" not in words[0]:
        return [words[0]]
    return [word.split("=", 1)[0] for word in words]


def test_multi_stage_with_a_wheel_building_builder():
    instructions, runtime = stages()
    froms = [i.arguments for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2
    assert re.search(r"\bAS builder\b", froms[0], re.I), froms[0]
    builder_runs = " ".join(
        i.arguments for i in instructions if i.stage == 0 and i.keyword == "RUN"
    )
    assert "pip wheel" in builder_runs and "requirements.txt" in builder_runs
    copies = [i.arguments for i in instructions if i.stage == runtime and i.keyword == "COPY"]
    assert any(c.startswith("--from=builder") for c in copies), copies


def test_the_base_image_is_a_pinned_python_311_slim():
    instructions, _ = stages()
    args = {
        name: value
        for i in instructions
        if i.keyword == "ARG" and "=" in i.arguments
        for name, value in [i.arguments.split("=", 1)]
    }
    for source in (i.arguments.split()[0] for i in instructions if i.keyword == "FROM"):
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], source)
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", image), image


def test_the_runtime_user_is_not_root():
    instructions, runtime = stages()
    users = [i.arguments for i in instructions if i.stage == runtime and i.keyword == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]
    # Everything after USER is the process: nothing may switch back.
    last_user = max(n for n, i in enumerate(instructions) if i.keyword == "USER")
    assert not [i for i in instructions[last_user:] if i.keyword == "RUN"]


def test_no_secret_is_baked_into_the_image_environment():
    instructions, _ = stages()
    for i in instructions:
        if i.keyword in {"ENV", "ARG"}:
            names = env_names(i.arguments) if i.keyword == "ENV" else [i.arguments.split("=")[0]]
            for name in names:
                assert not SECRET_NAMES.search(name), f"{i.keyword} {i.arguments}"


def test_expose_healthcheck_and_bind():
    instructions, runtime = stages()
    final = [i for i in instructions if i.stage == runtime]
    assert [i.arguments for i in final if i.keyword == "EXPOSE"] == ["8000"]
    env = " ".join(i.arguments for i in final if i.keyword == "ENV").split()
    assert "GUNICORN_BIND=0.0.0.0:8000" in env
    healthchecks = [i.arguments for i in final if i.keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    command = exec_form(healthchecks[0].split(" CMD ", 1)[1])
    assert command and any("127.0.0.1:8000/healthz" in word for word in command), command


def test_the_build_imports_every_module_with_the_image_packages():
    """The same check the `make test` smoke runs in a requirements.txt-only virtualenv."""
    instructions, runtime = stages()
    runs = [i.arguments for i in instructions if i.stage == runtime and i.keyword == "RUN"]
    assert "python scripts/check_runtime_imports.py" in runs
    copy_index = next(
        n for n, i in enumerate(instructions) if i.stage == runtime and i.arguments == ". ."
    )
    check_index = next(
        n for n, i in enumerate(instructions) if "check_runtime_imports" in i.arguments
    )
    assert check_index > copy_index, "the check needs the application's files"


def collectstatic_step() -> tuple[dict[str, str], list[str]]:
    """The RUN step that collects the static files: its inline variables and its command."""
    instructions, runtime = stages()
    runs = [
        i.arguments
        for i in instructions
        if i.stage == runtime and i.keyword == "RUN" and "collectstatic" in i.arguments
    ]
    assert len(runs) == 1, runs
    first = runs[0].split("&&")[0]
    words = shlex.split(first)
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


def test_collectstatic_gets_throwaway_values_only_for_that_step():
    env, command = collectstatic_step()
    assert command[:3] == ["python", "manage.py", "collectstatic"]
    assert {"SECRET_KEY", "JWT_SIGNING_KEY", "ALLOWED_HOSTS"} <= set(env)
    for value in env.values():
        assert "build" in value, value  # plainly throwaway


@pytest.mark.slow
def test_collectstatic_as_the_dockerfile_runs_it_on_the_build_context(tmp_path):
    """No engine to build the image: run the Dockerfile's collectstatic line on a copy of the
    build context, with the image's ENV and nothing else from this machine."""
    context = copy_build_context(tmp_path / "app")
    instructions, runtime = stages()
    image_env = {}
    for i in instructions:
        if i.stage == runtime and i.keyword == "ENV":
            for word in shlex.split(i.arguments):
                name, _, value = word.partition("=")
                if name != "PATH":
                    image_env[name] = value
    step_env, command = collectstatic_step()
    result = subprocess.run(
        [sys.executable, *command[1:]],
        cwd=context,
        env={"PATH": os.environ["PATH"], **image_env, **step_env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    static = context / "staticfiles"
    assert (static / "admin" / "css" / "base.css").is_file()
    assert (static / "drf_spectacular_sidecar").is_dir()  # Swagger UI, served offline
    assert list(static.rglob("*.css.gz")), "whitenoise's compressed copies are missing"


# --- .dockerignore ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".local/services.env",
        ".git/HEAD",
        ".env",
        "accounts/__pycache__/models.cpython-311.pyc",
        ".pytest_cache/README.md",
        ".ruff_cache/CACHEDIR.TAG",
        "staticfiles/admin/css/base.css",
        "bench/results/latest.json",
        "artifacts/report.html",
        "tests/compose/test_dockerfile.py",
    ],
)
def test_dockerignore_keeps_local_state_and_artifacts_out(path):
    assert dockerignored(path), path


def test_the_build_context_holds_the_application():
    files = set(build_context_files())
    for needed in ["manage.py", "requirements.txt", "sessionhub/gunicorn.py", "sessionhub/wsgi.py"]:
        assert needed in files, needed
    from django.conf import settings

    for app in settings.INSTALLED_APPS:
        top = app.split(".")[0]
        if (ROOT / top).is_dir():
            assert f"{top}/__init__.py" in files, f"{top} is left out of the image"
    assert any(f.startswith("templates/") for f in files)
    assert not [f for f in files if f.startswith((".venv/", ".local/", ".git/"))]


def test_the_dockerignore_matcher_can_fail():
    assert not dockerignored("manage.py")
    assert not dockerignored("sessionhub/settings/production.py")
    assert DOCKERIGNORE.read_text().strip()
