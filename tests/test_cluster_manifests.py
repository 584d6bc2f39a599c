"""cluster/ stays usable: manifests parse, name real `rledit` commands and flags, and the
resources they ask for fit the resources they provide. No cluster is needed."""
import re
import shlex
from pathlib import Path

import pytest
import ray
import yaml

from rledit_ray.cli import _parser
from rledit_ray.config import load_config

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
ROOT = CLUSTER.parent
KUBERAY = sorted((CLUSTER / "kuberay").glob("*.yaml"))


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _subcommands() -> set[str]:
    sub = next(a for a in _parser()._actions if a.dest == "command")
    return set(sub.choices)


def _check_entrypoint(command: str) -> None:
    """An `rledit ...` command line must parse with the real CLI parser (flags included)."""
    argv = shlex.split(command)
    assert argv[0] == "rledit", command
    if argv[1] not in _subcommands():
        pytest.fail(f"'{argv[1]}' is not an rledit subcommand: {command}")
    args = _parser().parse_args(argv[1:])  # raises UserError on an unknown flag
    for name in ("config", "spec"):  # files the command reads ship with the repo (/app in the image)
        value = getattr(args, name, None)
        if value:
            assert (ROOT / str(value).removeprefix("/app/")).is_file(), f"{value} is not in the repository"


def _makefile_installs() -> list[str]:
    """The Makefile's pip lines, in order, as 'torch==..', '-e', and '--no-deps X==v' wheels."""
    text = (ROOT / "Makefile").read_text()
    torch_pin = re.search(r"pip install -q (torch==\S+)", text).group(1)
    wheels = [w for line in re.findall(r"--no-deps ([^\n]+)", text) for w in re.findall(r"\S+==\S+", line)]
    return [torch_pin, *wheels]


def _check_install_order(text: str) -> None:
    torch_pin, *wheels = _makefile_installs()
    assert torch_pin in text, "torch must be installed with the Makefile's pin"
    assert text.find(torch_pin) < text.find("-e ."), "torch before the package (else a huge CUDA build)"
    for wheel in wheels:
        assert re.search(rf"--no-deps [^\n]*{re.escape(wheel)}", text), f"{wheel} missing or without --no-deps"


def _cluster_run() -> dict:
    return load_config(CLUSTER / "cluster_run.yaml").agent.model_dump()


def _gpu_demand(agent: dict) -> float:
    return (agent["num_env_runners"] * agent["num_gpus_per_env_runner"]
            + max(1, agent["num_learners"]) * agent["num_gpus_per_learner"])


# ---------------------------------------------------------------------------- KubeRay
def _cluster_specs(doc: dict) -> list[dict]:
    if doc["kind"] == "RayCluster":
        return [doc["spec"]]
    return [doc["spec"]["rayClusterSpec"]] if "rayClusterSpec" in doc["spec"] else []


def _groups(spec: dict):
    yield "head", spec["headGroupSpec"], 1, 1
    for g in spec.get("workerGroupSpecs", []):
        yield g["groupName"], g, g.get("minReplicas", 0), g.get("maxReplicas", g.get("replicas", 0))


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kuberay_manifest_is_complete(path):
    doc = _load(path)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] in ("RayCluster", "RayJob")
    assert doc["metadata"]["name"]
    if doc["kind"] == "RayJob":
        spec = doc["spec"]
        assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec), "a RayJob needs exactly one cluster"
        if "clusterSelector" in spec:  # it must select a cluster defined here
            names = {_load(p)["metadata"]["name"] for p in KUBERAY if _load(p)["kind"] == "RayCluster"}
            assert spec["clusterSelector"]["ray.io/cluster"] in names
        yaml.safe_load(spec.get("runtimeEnvYAML", "{}"))
    for spec in _cluster_specs(doc):
        assert spec["rayVersion"] == ray.__version__  # the image's Ray must match the package's pin
        for name, group, _, _ in _groups(spec):
            containers = group["template"]["spec"]["containers"]
            assert containers[0]["image"], name
            limits = containers[0]["resources"]["limits"]
            params = group["rayStartParams"]
            # Ray must advertise what Kubernetes gives the pod, or it over/under-schedules.
            assert float(params["num-cpus"]) == float(limits["cpu"]), name
            assert float(params.get("num-gpus", 0)) == float(limits.get("nvidia.com/gpu", 0)), name


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_rayjob_entrypoint_is_a_real_command(path):
    doc = _load(path)
    if doc["kind"] != "RayJob":
        pytest.skip("not a RayJob")
    _check_entrypoint(doc["spec"]["entrypoint"])


def test_kuberay_clusters_fit_the_cluster_run():
    agent = _cluster_run()
    assert _gpu_demand(agent) > 0, "cluster_run.yaml is the GPU example"
    for path in KUBERAY:
        for spec in _cluster_specs(_load(path)):
            gpus = [(float(g["rayStartParams"].get("num-gpus", 0)), lo, hi) for _, g, lo, hi in _groups(spec)]
            assert sum(per * hi for per, _, hi in gpus) >= _gpu_demand(agent), path.name
            # Some GPU must be up when the driver starts, else it falls back to CPU.
            assert sum(per * lo for per, lo, _ in gpus) >= 1, path.name
            assert agent["num_gpus_per_env_runner"] <= max(per for per, _, _ in gpus), path.name
            assert agent["num_gpus_per_learner"] <= max(per for per, _, _ in gpus), path.name


# ---------------------------------------------------------------------------- cluster launcher
def test_cluster_launcher_config():
    cfg = _load(CLUSTER / "ray-cluster.yaml")
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type",
                "setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        assert key in cfg, key
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    assert sum(t["max_workers"] for t in types.values()) <= cfg["max_workers"]
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) > 0]
    assert gpu_types, "GPU workers"
    agent = _cluster_run()
    assert sum(t["resources"]["GPU"] * t["max_workers"] for t in gpu_types) >= _gpu_demand(agent)
    assert sum(t["resources"]["GPU"] * t["min_workers"] for t in gpu_types) >= 1
    assert any("--head" in c for c in cfg["head_start_ray_commands"])
    _check_install_order("\n".join(cfg["setup_commands"]))


def test_dockerfile_installs_like_the_makefile():
    text = (CLUSTER / "Dockerfile").read_text()
    assert re.search(rf"FROM rayproject/ray:{re.escape(ray.__version__)}\b", text)
    _check_install_order(text)


# ---------------------------------------------------------------------------- README commands
def _readme_commands(path=None) -> list[str]:
    """Every `rledit ...` command in a page's shell blocks (continuations joined); default
    cluster/README.md. Synopsis lines (`[--flag ...]`, `a|b`) are not commands."""
    text = (path or CLUSTER / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0]
            if " -- rledit " in line:
                commands.append(line.split(" -- ", 1)[1].strip())
            elif line.strip().startswith("rledit ") and not any(c in line for c in "[|"):
                commands.append(line.strip())
    return commands


def test_readme_commands_are_real():
    commands = _readme_commands()
    assert any(c.startswith("rledit train") for c in commands)
    for command in commands:
        _check_entrypoint(command)


def test_front_page_and_docs_commands_parse():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    commands = [c for page in pages for c in _readme_commands(page)]
    assert any("--model" in c for c in commands)
    for command in commands:
        _check_entrypoint(command)


def test_cluster_run_config_is_valid():
    agent = _cluster_run()  # load_config refuses unknown fields and bad values
    assert agent["num_env_runners"] > 0 and agent["num_learners"] >= 1
