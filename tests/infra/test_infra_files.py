"""Static checks of infra/: files parse, commands name real code, env vars are read, Helm paths exist in values.

No Docker engine, no Helm, no cluster here: these checks are all that runs (see infra/README.md)."""

import json
import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
CHART = INFRA / "helm" / "hearth"
CODE_DIRS = ("platform", "billing", "gateway", "workers", "kernels", "hearth_cli", "contracts")
# Read by compose.yaml itself (interpolation), not by Hearth's code.
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "HEARTH_MODEL_DIR", "HEARTH_MODEL_FILE", "HEARTH_MODEL_SLUG"}


def _compose() -> dict:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


def test_plain_yaml_and_json_parse():
    for path in [INFRA / "compose.yaml", INFRA / "prometheus" / "prometheus.yml", CHART / "Chart.yaml",
                 CHART / "values.yaml"]:
        assert yaml.safe_load(path.read_text()), path
    dashboard = json.loads((INFRA / "grafana" / "hearth.json").read_text())
    assert dashboard["panels"]


def test_compose_services_and_commands_point_at_real_code():
    services = _compose()["services"]
    expected = {"postgres", "redis", "migrate", "control-plane", "celery-worker", "celery-beat", "billing-ingest",
                "gateway", "worker", "worker-cpu", "prometheus"}
    assert expected <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            assert (INFRA / build["context"] / build["dockerfile"]).is_file(), name
    commands = {n: " ".join(map(str, s.get("command", []))) for n, s in services.items()}
    for cmd in commands.values():
        for mgmt in re.findall(r"manage\.py (\w+)", cmd):
            if mgmt not in {"migrate", "collectstatic"}:  # Django's own
                assert list(ROOT.glob(f"*/management/commands/{mgmt}.py")) + list(
                    ROOT.glob(f"platform/*/management/commands/{mgmt}.py")), mgmt
        if "celery" in cmd:
            assert "-A hearth_platform" in cmd and (ROOT / "platform" / "hearth_platform" / "celery.py").exists()
    assert (ROOT / "gateway" / "__main__.py").is_file() and (ROOT / "workers" / "server" / "__main__.py").is_file()
    assert (ROOT / "platform" / "hearth_platform" / "asgi.py").is_file()
    dockerfiles = {p.name: p.read_text() for p in (INFRA / "docker").glob("Dockerfile.*") if p.suffix != ".dockerignore"}
    assert '"-m", "gateway"' in dockerfiles["Dockerfile.gateway"]
    assert '"-m", "workers.server"' in dockerfiles["Dockerfile.worker"]
    assert "hearth_platform.asgi:application" in dockerfiles["Dockerfile.platform"]
    for name, text in dockerfiles.items():
        assert re.search(r"^USER 10001", text, re.M) and "HEALTHCHECK" in text, name
        assert "SECRET_KEY=" not in text.replace("HEARTH_ENV=development", ""), name


def test_env_example_vars_are_read_by_the_code():
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", (INFRA / "env.example").read_text(), re.M)
    assert {"HEARTH_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "HEARTH_WORKER_SECRET", "HEARTH_STRIPE_API_KEY"} <= set(names)
    code = "\n".join(p.read_text(errors="ignore") for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))
    compose = (INFRA / "compose.yaml").read_text()
    gateway_fields = set(re.findall(r"^    (\w+): ", (ROOT / "gateway" / "settings.py").read_text(), re.M))
    for name in names:
        if name in COMPOSE_ONLY:
            assert "${" + name in compose, name
        elif name.startswith("HEARTH_GATEWAY_") and name[len("HEARTH_GATEWAY_"):].lower() in gateway_fields:
            continue  # pydantic-settings, env_prefix HEARTH_GATEWAY_
        else:
            assert name in code, f"{name} in env.example is read nowhere"


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))


def test_helm_templates_use_only_keys_in_values():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    known = set(_paths(values))
    pool_known = set(_paths(values["workerPools"][0]))
    for tpl in (CHART / "templates").glob("*"):
        text = tpl.read_text()
        for path in re.findall(r"\$?\.Values((?:\.\w+)+)", text):
            assert tuple(path.strip(".").split(".")) in known, f"{tpl.name}: .Values{path}"
        for path in re.findall(r"\$pool((?:\.\w+)+)", text):
            assert tuple(path.strip(".").split(".")) in pool_known, f"{tpl.name}: $pool{path}"
        assert "{{" not in re.sub(r"\{\{.*?\}\}", "", text, flags=re.S), f"{tpl.name}: unclosed action"
    for pool in values["workerPools"]:
        assert pool["resources"]["limits"]["nvidia.com/gpu"] == 1
    workers = (CHART / "templates" / "workers.yaml").read_text()
    assert "hearth_worker_num_waiting" in workers and "/health" in workers


def test_metric_names_exist_in_worker_metrics():
    defined = set(re.findall(r'"(hearth_worker_\w+)"', (ROOT / "workers" / "server" / "metrics.py").read_text()))
    dashboard = (INFRA / "grafana" / "hearth.json").read_text()
    used = {re.sub(r"_(bucket|total)$", "", m) for m in re.findall(r"hearth_worker_\w+", dashboard)}
    assert used and used <= defined, used - defined


def test_every_image_copies_the_setuptools_packages_before_installing():
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert "contracts" in packages  # every process imports it
    for path in (INFRA / "docker").glob("Dockerfile.*"):
        if path.suffix == ".dockerignore":
            continue
        text = path.read_text()
        install = re.search(r"^RUN .*pip install (\"?\.|\.\[)", text, re.M)
        assert install, path.name
        for package in packages:
            copy = re.search(rf"^COPY {package}/ {package}/$", text, re.M)
            assert copy and copy.start() < install.start(), (path.name, package)
        ignore = path.with_name(path.name + ".dockerignore")
        if ignore.exists():
            assert not set(packages) & set(ignore.read_text().split()), ignore.name


# The config.json of each model the chart's default values deploy (copied from its hub repository; no download here)
MODEL_CONFIGS = Path(__file__).parent / "model_configs"


def test_helm_default_models_load_and_workers_announce_their_catalog_slug():
    import torch

    from workers.model_config import ModelConfig
    from workers.models.registry import model_class

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    workers = (CHART / "templates" / "workers.yaml").read_text()
    assert re.search(r"- --served-model-name\n\s+- \{\{ \$pool\.slug \| quote \}\}", workers)
    for pool in values["workerPools"]:
        assert re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,99}", pool["slug"]), pool["name"]  # catalog_add's slug rule
        config_json = MODEL_CONFIGS / (pool["baseModel"].replace("/", "--") + ".json")
        assert config_json.is_file(), f"{pool['baseModel']}: keep its config.json in tests/infra/model_configs"
        config = ModelConfig.from_hf(json.loads(config_json.read_text()))  # raises on an architecture we can't run
        with torch.device("meta"):  # builds every layer of the real shapes, no memory
            names = model_class(config)(config).hf_state_names()
        assert f"model.layers.{config.num_layers - 1}.mlp.down_proj.weight" in names


def test_compose_workers_announce_the_catalog_slug():
    services = _compose()["services"]
    for name in ("worker", "worker-cpu"):
        command = services[name]["command"]
        assert command[command.index("--served-model-name") + 1] == "${HEARTH_MODEL_SLUG:-smollm2-135m-instruct}"
