"""The container deployment: docker-compose.yml, Dockerfile, .env.example, .dockerignore.

No container engine is needed: ``docker-compose config`` (Debian's ``docker-compose``
package) validates and resolves the file offline. The resolved configuration is then checked
against what the rest of Anxin expects (CLI subcommands, replica client ids, the Mosquitto
config, TimescaleDB). Every run is hermetic: the inherited ``ANXIN_*``/``COMPOSE_*``
variables are dropped and an explicit env file replaces any developer's ``.env``.

Without docker-compose the tests skip, except under CI (``CI`` set), where they fail: CI's
``.ci/run`` installs it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
MOSQUITTO_CONF = ROOT / "deploy" / "mosquitto.conf"

# What the test puts in the environment: dummies, never real secrets.
TEST_ENV = {
    "POSTGRES_PASSWORD": "test-only-db-password",
    "ANXIN_API_TOKEN": "test-only-api-token",
    "ANXIN_AUTH_SECRET": "test-only-auth-secret",
    "ANXIN_BROKER_INGESTOR_PASSWORD": "test-only-ingestor-password",
    "ANXIN_BROKER_COMMANDS_PASSWORD": "test-only-commands-password",
    "ANXIN_BROKER_OPS_PASSWORD": "test-only-ops-password",
    "ANXIN_INGESTOR_GROUP": "test-only-group",
}
REQUIRED_VARS = tuple(TEST_ENV)

# The `anxin` CLI's subcommands (services/cli.py) and the options each may be given here.
SUBCOMMANDS: dict[tuple[str, ...], set[str]] = {
    ("db", "migrate"): set(),
    ("db", "seed-demo"): {"--devices"},
    ("ingest",): set(),
    ("notify",): set(),
    ("api",): set(),
    ("sim",): {"--devices", "--rate", "--credentials"},
    ("demo",): set(),
    ("devices", "broker-files"): {"--out", "--owner"},
    ("devices", "issue-demo"): {"--devices", "--out", "--owner"},
}
# Options whose value is not a number: a path in the container, or a uid:gid.
PATH_OPTIONS = {"--out", "--credentials"}
OWNER_OPTIONS = {"--owner"}
ANXIN_SERVICES = {
    "migrate", "ingestor-1", "ingestor-2", "notifier", "api", "seed", "sim",
    "broker-files", "sim-credentials",
}  # fmt: skip
BROKER_AUTH_DIR = "/mosquitto/auth"  # where deploy/mosquitto.conf reads its login files


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose_bin() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        reason = "docker-compose is not installed (Debian: apt-get install -y docker-compose)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so this is a failure: .ci/run must install it")
        pytest.skip(f"{reason}; set CI=1 to turn this skip into a failure")
    return exe


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without anything that could change how the file resolves."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("ANXIN_", "COMPOSE_")) or k == "POSTGRES_PASSWORD")
    }
    env.update(extra or {})
    return env


def run_compose(
    exe: str,
    *args: str,
    env: dict[str, str] | None = None,
    env_file: Path,
) -> subprocess.CompletedProcess[str]:
    cmd = [
        exe,
        "--project-directory",
        str(ROOT),
        "-f",
        str(COMPOSE_FILE),
        "--env-file",
        str(env_file),
        *args,
    ]
    return subprocess.run(
        cmd,
        cwd=ROOT,
        env=_clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stands in for .env so a developer's own .env cannot influence the result."""
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


def _yaml_to_obj(text: str, compose_exe: str) -> Any:
    """Parse YAML with PyYAML if the project has it, else with docker-compose's own Python.

    docker-compose 1.29 has no ``--format json``; it is itself a Python program that
    depends on PyYAML, so the interpreter named in its shebang can always parse its output.
    """
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        return yaml.safe_load(text)

    first = Path(compose_exe).read_text(errors="replace").splitlines()[0]
    if not first.startswith("#!"):
        pytest.fail(f"cannot find the Python behind {compose_exe} (no shebang) to parse YAML")
    interpreter = shlex.split(first[2:])
    proc = subprocess.run(
        [
            *interpreter,
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"YAML -> JSON via {interpreter} failed:\n{proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def config(compose_bin: str, empty_env_file: Path) -> dict[str, Any]:
    proc = run_compose(compose_bin, "config", env=TEST_ENV, env_file=empty_env_file)
    assert proc.returncode == 0, proc.stderr
    data = _yaml_to_obj(proc.stdout, compose_bin)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), data
    return data


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    if cmd is None:
        return []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _volumes(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume, for the short (1.x) and long (v2) syntaxes."""
    out = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            parts = vol.split(":")
            out.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
        else:
            out.append((str(vol.get("source", "")), str(vol["target"])))
    return out


def _published_ports(service: dict[str, Any]) -> set[tuple[str, str]]:
    """(published, target) pairs, for the short and long port syntaxes."""
    out = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.add((str(port.get("published", "")), str(port["target"])))
        else:
            *_, published, target = str(port).split(":")
            out.add((published, target.split("/")[0]))
    return out


def _is_anxin(service: dict[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith("anxin")


# --------------------------------------------------------------------------- validation


def test_config_is_valid_with_only_the_test_environment(compose_bin, empty_env_file):
    """A clean checkout (no .env) validates given just the required variables."""
    proc = run_compose(compose_bin, "config", "-q", env=TEST_ENV, env_file=empty_env_file)
    assert proc.returncode == 0, proc.stderr


def test_config_is_valid_with_env_example_as_dot_env(compose_bin):
    """`cp .env.example .env` is enough to get a valid configuration."""
    assert ENV_EXAMPLE.is_file()
    proc = run_compose(compose_bin, "config", "-q", env_file=ENV_EXAMPLE)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("missing", REQUIRED_VARS)
def test_secrets_are_required_not_hard_coded(compose_bin, empty_env_file, missing):
    env = {k: v for k, v in TEST_ENV.items() if k != missing}
    proc = run_compose(compose_bin, "config", "-q", env=env, env_file=empty_env_file)
    assert proc.returncode != 0, f"config passed without {missing}: is it hard-coded?"
    assert missing in proc.stderr, proc.stderr


def test_env_example_holds_placeholders_only():
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.lstrip().startswith("#")
    )
    assert set(REQUIRED_VARS) <= set(values)
    for name in REQUIRED_VARS:
        assert "change-me" in values[name], f"{name} in .env.example must be a placeholder"
    assert "to .env" in ENV_EXAMPLE.read_text(), ".env.example must say to copy it to .env"


def test_dot_env_is_ignored_by_git_and_docker():
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".env", ".git", ".venv", "var/", "artifacts/"):
        assert entry in dockerignore, f".dockerignore lacks {entry}"


# --------------------------------------------------------------------------- resolved content


def test_expected_services(config):
    assert {"mosquitto", "db", *ANXIN_SERVICES} <= set(config["services"])
    anxin = {name for name, svc in config["services"].items() if _is_anxin(svc)}
    assert anxin == ANXIN_SERVICES


def test_every_anxin_command_is_a_cli_subcommand(config):
    for name, svc in config["services"].items():
        if not _is_anxin(svc):
            continue
        cmd = _command(svc)
        assert cmd, f"{name}: no command (the image's default is only --help)"
        words = [w for w in cmd if not w.startswith("-")]
        prefix = next(
            (p for p in sorted(SUBCOMMANDS, key=len, reverse=True) if tuple(words[: len(p)]) == p),
            None,
        )
        assert prefix is not None, f"{name}: {cmd} is not one of {sorted(SUBCOMMANDS)}"
        rest = cmd[len(prefix) :]
        assert len(rest) % 2 == 0, f"{name}: options must be --name value pairs: {rest}"
        for opt, value in zip(rest[::2], rest[1::2], strict=True):
            assert opt in SUBCOMMANDS[prefix], f"{name}: {opt} is not an option of {prefix}"
            if opt in PATH_OPTIONS:
                assert value.startswith("/"), f"{name}: {opt} {value} is not an absolute path"
            elif opt in OWNER_OPTIONS:
                assert re.fullmatch(r"\d+:\d+", value), f"{name}: {opt} {value} is not uid:gid"
            else:
                float(value)  # every other option used here is numeric


def test_two_ingestor_replicas_with_distinct_stable_client_ids(config):
    services = config["services"]
    ingestors = {n: s for n, s in services.items() if _is_anxin(s) and _command(s) == ["ingest"]}
    assert set(ingestors) == {"ingestor-1", "ingestor-2"}
    ids = {n: _environment(s).get("ANXIN_INGESTOR_CLIENT_ID", "") for n, s in ingestors.items()}
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", v) for v in ids.values()), ids
    assert len(set(ids.values())) == 2, f"client ids must differ per replica: {ids}"
    # One shared group, a secret from the environment (a watch that knew it could join it).
    groups = {_environment(s).get("ANXIN_INGESTOR_GROUP") for s in ingestors.values()}
    assert groups == {TEST_ENV["ANXIN_INGESTOR_GROUP"]}, groups
    for name, svc in ingestors.items():
        deps = svc.get("depends_on") or {}
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["mosquitto"]["condition"] == "service_healthy", name
        assert svc.get("restart") == "unless-stopped", name


def test_anxin_services_share_one_environment(config):
    def account_url(user: str, var: str) -> str:
        return f"mqtt://{user}:{TEST_ENV[var]}@mosquitto:1883"

    # The ingestors and the notifier (its command dispatcher) log in with their service
    # accounts; the simulated watches with their own (--credentials); the rest use no broker.
    urls = {
        "ingestor-1": account_url("anxin.ingestor", "ANXIN_BROKER_INGESTOR_PASSWORD"),
        "ingestor-2": account_url("anxin.ingestor", "ANXIN_BROKER_INGESTOR_PASSWORD"),
        "notifier": account_url("anxin.commands", "ANXIN_BROKER_COMMANDS_PASSWORD"),
    }
    for name in ANXIN_SERVICES:
        env = _environment(config["services"][name])
        assert env["ANXIN_MQTT_URL"] == urls.get(name, "mqtt://mosquitto:1883"), name
        assert env["ANXIN_DATABASE_URL"] == (
            f"postgresql://postgres:{TEST_ENV['POSTGRES_PASSWORD']}@db:5432/anxin"
        ), name
        assert env["ANXIN_TOPIC_PREFIX"] == "anxin", name
    # The API's secret goes to the API only.
    holders = {n for n, s in config["services"].items() if "ANXIN_API_TOKEN" in _environment(s)}
    assert holders == {"api"}


def test_mosquitto_uses_the_project_config_and_keeps_its_data(config):
    svc = config["services"]["mosquitto"]
    assert str(svc["image"]).startswith("eclipse-mosquitto:2")
    volumes = {target: source for source, target in _volumes(svc)}
    conf_source = volumes.get("/mosquitto/config/mosquitto.conf", "")
    assert conf_source.replace("\\", "/").endswith("deploy/mosquitto.conf"), volumes
    assert Path(conf_source).resolve() == MOSQUITTO_CONF.resolve()
    # The mounted data directory is where the config persists to, and it is a named volume.
    persist = re.search(r"^persistence_location\s+(\S+)", MOSQUITTO_CONF.read_text(), re.M)
    assert persist, "deploy/mosquitto.conf sets no persistence_location"
    data_target = persist.group(1).rstrip("/")
    assert data_target in volumes, f"{data_target} is not mounted: {volumes}"
    assert volumes[data_target] in config.get("volumes", {}), "broker data needs a named volume"
    assert "mosquitto_sub" in str(svc["healthcheck"]["test"]) or "mosquitto_pub" in str(
        svc["healthcheck"]["test"]
    )


def _mount(service: dict[str, Any], target: str) -> tuple[str, bool]:
    """(volume name, read-only) of what is mounted at ``target``."""
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            parts = vol.split(":")
            if len(parts) > 1 and parts[1] == target:
                return parts[0], len(parts) > 2 and "ro" in parts[2].split(",")
        elif str(vol["target"]) == target:
            return str(vol.get("source", "")), bool(vol.get("read_only"))
    raise AssertionError(f"nothing is mounted at {target}: {service.get('volumes')}")


def test_the_broker_requires_logins_from_files_generated_before_it_starts(config):
    conf = MOSQUITTO_CONF.read_text()
    assert re.search(r"^allow_anonymous false$", conf, re.M)
    files = dict(re.findall(r"^(password_file|acl_file)\s+(\S+)$", conf, re.M))
    assert files == {
        "password_file": f"{BROKER_AUTH_DIR}/password_file",
        "acl_file": f"{BROKER_AUTH_DIR}/acl_file",
    }
    services = config["services"]
    broker, writer = services["mosquitto"], services["broker-files"]
    volume, read_only = _mount(broker, BROKER_AUTH_DIR)
    assert volume in config.get("volumes", {}) and read_only
    cmd = _command(writer)
    out = cmd[cmd.index("--out") + 1]
    assert _mount(writer, out) == (volume, False), "broker-files must write where the broker reads"
    assert cmd[cmd.index("--owner") + 1] == "1883:1883"  # eclipse-mosquitto's mosquitto user
    assert broker["depends_on"]["broker-files"]["condition"] == "service_completed_successfully"
    deps = writer["depends_on"]
    assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert deps["sim-credentials"]["condition"] == "service_completed_successfully"
    assert writer.get("restart") == "no"


def test_broker_passwords_go_only_where_they_are_needed(config):
    def holders(var: str) -> set[str]:
        return {
            name
            for name, svc in config["services"].items()
            if any(TEST_ENV[var] in value for value in _environment(svc).values())
        }

    assert holders("ANXIN_BROKER_INGESTOR_PASSWORD") == {"broker-files", "ingestor-1", "ingestor-2"}
    assert holders("ANXIN_BROKER_COMMANDS_PASSWORD") == {"broker-files", "notifier"}
    assert holders("ANXIN_BROKER_OPS_PASSWORD") == {"broker-files", "mosquitto"}
    assert "ANXIN_BROKER_OPS_PASSWORD" in " ".join(
        map(str, config["services"]["mosquitto"]["healthcheck"]["test"])
    )


def test_db_is_timescale_with_a_healthcheck_and_volume(config):
    svc = config["services"]["db"]
    assert str(svc["image"]).startswith("timescale/timescaledb:"), svc["image"]
    assert "pg_isready" in str(svc["healthcheck"]["test"])
    assert _environment(svc)["POSTGRES_PASSWORD"] == TEST_ENV["POSTGRES_PASSWORD"]
    assert any(t == "/var/lib/postgresql/data" for _, t in _volumes(svc))
    assert config["services"]["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"


def test_api_listens_publicly_in_its_container_and_checks_healthz(config):
    svc = config["services"]["api"]
    env = _environment(svc)
    assert env["ANXIN_API_HOST"] == "0.0.0.0"
    assert env["ANXIN_API_TOKEN"] == TEST_ENV["ANXIN_API_TOKEN"]
    assert ("8000", "8000") in _published_ports(svc)
    test = " ".join(map(str, svc["healthcheck"]["test"]))
    assert "/healthz" in test and "urllib" in test


def test_sim_runs_after_seed_with_the_seeded_devices(config):
    services = config["services"]

    def devices(name: str) -> str:
        cmd = _command(services[name])
        return cmd[cmd.index("--devices") + 1]

    assert devices("sim") == devices("seed") == devices("sim-credentials")
    deps = services["sim"]["depends_on"]
    assert deps["seed"]["condition"] == "service_completed_successfully"
    assert deps["sim-credentials"]["condition"] == "service_completed_successfully"
    assert deps["mosquitto"]["condition"] == "service_healthy"
    creds_deps = services["sim-credentials"]["depends_on"]
    assert creds_deps["seed"]["condition"] == "service_completed_successfully"
    # The simulator reads its watches' passwords from the file sim-credentials writes.
    sim_cmd, writer_cmd = _command(services["sim"]), _command(services["sim-credentials"])
    path = sim_cmd[sim_cmd.index("--credentials") + 1]
    assert writer_cmd[writer_cmd.index("--out") + 1] == path
    folder = path.rsplit("/", 1)[0]
    volume, read_only = _mount(services["sim"], folder)
    assert read_only and _mount(services["sim-credentials"], folder) == (volume, False)
    assert volume in config.get("volumes", {})
    seed_deps = services["seed"]["depends_on"]
    assert seed_deps["migrate"]["condition"] == "service_completed_successfully"


# --------------------------------------------------------------------------- image


def test_dockerfile_builds_the_locked_project_with_anxin_as_entrypoint():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "uv sync --frozen --no-dev" in text
    assert re.search(r'^ENTRYPOINT \["anxin"\]', text, re.M)
