"""The Procfile is the one source of the three process commands: `make run` (honcho) and the
containers run the same ones, all with the production settings."""

import re
import shlex

import pytest

from .helpers import (
    DJANGO_SERVICES,
    PROCFILE,
    PROCFILE_SERVICES,
    PRODUCTION_SETTINGS,
    argv,
    build_context_files,
    dockerfile_instructions,
    environment,
    exec_form,
    mounts,
    under,
)

SHELLS = {"sh", "/bin/sh", "bash", "/bin/bash"}


def procfile() -> dict[str, str]:
    processes = {}
    for line in PROCFILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(.+)", line.strip())
        assert match, f"not a Procfile line: {line!r}"
        assert match.group(1) not in processes, f"{match.group(1)} is defined twice"
        processes[match.group(1)] = match.group(2).strip()
    return processes


def same_command(compose_command: list[str], procfile_command: str) -> bool:
    """The compose command runs the Procfile command: word for word, or verbatim under
    `sh -c` (optionally behind `exec`)."""
    if len(compose_command) == 3 and compose_command[0] in SHELLS and compose_command[1] == "-c":
        script = compose_command[2].strip()
        script = script.removeprefix("exec ").strip()
        return script == procfile_command
    return compose_command == shlex.split(procfile_command)


def test_the_procfile_has_the_three_processes():
    assert set(procfile()) == set(PROCFILE_SERVICES)


@pytest.mark.parametrize("process", sorted(PROCFILE_SERVICES))
def test_compose_runs_the_procfile_command(services, process):
    service = services[PROCFILE_SERVICES[process]]
    # An entrypoint would turn the command into its arguments.
    assert "entrypoint" not in service
    command = argv(service["command"])
    assert same_command(command, procfile()[process]), (command, procfile()[process])


def test_the_comparison_can_fail():
    web = procfile()["web"]
    assert same_command(shlex.split(web), web)
    assert same_command(["sh", "-c", f"exec {web}"], web)
    assert not same_command([*shlex.split(web), "--reload"], web)
    assert not same_command(["sh", "-c", f"{web} --workers 9"], web)


def test_the_image_has_no_entrypoint_and_runs_the_web_process_by_default():
    instructions = dockerfile_instructions()
    runtime = max(i.stage for i in instructions)
    assert not [i for i in instructions if i.stage == runtime and i.keyword == "ENTRYPOINT"]
    cmd = [i for i in instructions if i.stage == runtime and i.keyword == "CMD"]
    assert len(cmd) == 1
    assert exec_form(cmd[-1].arguments) == shlex.split(procfile()["web"])


@pytest.mark.parametrize("name", sorted(DJANGO_SERVICES))
def test_every_django_process_in_compose_uses_the_production_settings(services, name):
    assert environment(services[name])["DJANGO_SETTINGS_MODULE"] == PRODUCTION_SETTINGS


def test_the_image_defaults_to_the_production_settings():
    env = " ".join(i.arguments for i in dockerfile_instructions() if i.keyword == "ENV")
    assert f"DJANGO_SETTINGS_MODULE={PRODUCTION_SETTINGS}" in env.split()


def test_every_service_running_the_image_is_a_django_service(services):
    image = services["app"]["image"]
    assert {name for name, s in services.items() if s.get("image") == image} == DJANGO_SERVICES


def working_directory() -> str:
    instructions = dockerfile_instructions()
    runtime = max(i.stage for i in instructions)
    workdirs = [i.arguments for i in instructions if i.stage == runtime and i.keyword == "WORKDIR"]
    return workdirs[-1]


def test_the_files_the_commands_name_are_in_the_image():
    """The commands run from the repository root locally and from WORKDIR in the image."""
    context = set(build_context_files())
    for command in procfile().values():
        for word in shlex.split(command):
            if word.endswith(".py") and "/" in word:
                assert word in context, f"{word} is not in the build context"


def test_the_beat_schedule_is_kept_in_a_volume(services):
    words = shlex.split(procfile()["beat"])
    schedule = words[words.index("--schedule") + 1]
    path = schedule if schedule.startswith("/") else f"{working_directory()}/{schedule}"
    volumes = [m for m in mounts(services["beat"]) if m.kind == "volume"]
    assert any(under(path, m.target) and not m.read_only for m in volumes), (path, volumes)
