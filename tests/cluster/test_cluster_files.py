"""The cluster files users launch from, checked without a cloud account.

- cluster/aws.yaml, cluster/gcp.yaml: Ray's own launcher validator
  (`validate_config(prepare_config(cfg))`, what `ray up` runs), plus the node types, the
  torch wheels and the package install the pipeline needs.
- cluster/kuberay/*.yaml: the KubeRay CRD schema (tests/cluster/schemas/, source in its
  README), pod templates against the Kubernetes schemas of kubernetes-validate.
- cluster/serve.yaml and the RayService's serveConfigV2: Ray Serve's own deploy schema.
- Every entrypoint, preset, override, import path and copied file they name exists and
  loads (a renamed job or preset fails here, not on a cluster).
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from medbase_ray.config import PipelineConfig, load_config
from medbase_ray.serve.app import ServeAppArgs

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
LAUNCHERS = {"aws": "s3", "gcp": "gs"}  # launcher YAML -> scheme of its run root
MANIFESTS = sorted((CLUSTER / "kuberay").glob("*.yaml"))
K8S_SCHEMAS = "v1.33.0-local-strict"


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def torch_pin() -> str:
    """The torch release the Makefile installs (the one every node must get)."""
    return re.search(r"torch==([\d.]+)", (REPO / "Makefile").read_text()).group(1)


def image_workdir() -> str:
    """Where cluster/Dockerfile puts this repository inside the image."""
    return re.search(r"^WORKDIR\s+(\S+)", (CLUSTER / "Dockerfile").read_text(), re.M).group(1)


def check_entrypoint(command: str, repo_at: str | None = None) -> PipelineConfig:
    """`python jobs/X.py --preset P --set k=v ...`: the script exists (`repo_at`: the
    repository's path on the node) and its config loads; returns the config."""
    args = shlex.split(command)
    assert args[0] == "python", command
    script = args[1]
    if repo_at is not None:
        assert script.startswith(repo_at + "/"), f"{script} is not under {repo_at}"
        script = script[len(repo_at) + 1 :]
    assert re.fullmatch(r"jobs/\w+\.py", script) and (REPO / script).is_file(), command
    preset, config, overrides = None, None, []
    rest = iter(args[2:])
    for flag in rest:
        value = next(rest)
        if flag == "--preset":
            preset = value
        elif flag in ("--config", "-c"):
            config = str(REPO / value)
        elif flag in ("--set", "-s"):
            overrides.append(value)
        else:
            raise AssertionError(f"unknown option {flag} in {command!r}")
    return load_config(config, overrides, preset=None if config else preset)


def commands_in_header(path: Path, program: str) -> list[str]:
    """The commands a YAML file's header comment tells users to run after `program`."""
    found = []
    for line in path.read_text().splitlines():
        if line.startswith("#") and f" -- {program} " in line:
            found.append(program + " " + line.split(f" -- {program} ", 1)[1].split("  #")[0])
    return found


# -- launcher YAMLs (ray up) ---------------------------------------------------------------


def prepared(name: str, edit=None) -> dict[str, Any]:
    """`ray up`'s view of the file: merged with the provider's defaults, validated."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = load_yaml(CLUSTER / f"{name}.yaml")
    if edit is not None:
        edit(cfg)
    cfg = prepare_config(copy.deepcopy(cfg))
    validate_config(cfg)
    return cfg


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_passes_rays_validator(name: str) -> None:
    cfg = prepared(name)
    assert cfg["provider"]["type"] == name

    # ... and the validator does catch a typo (not a schema that accepts anything).
    def typo(c):
        c["available_node_types"]["gpu_worker"]["min_worker"] = 1

    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        prepared(name, typo)


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_node_types_fit_the_cluster_preset(name: str) -> None:
    cfg = prepared(name)
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # the head coordinates; tasks go to workers
    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    gpu = [v for v in workers.values() if v["resources"].get("GPU", 0) > 0]
    cpu = [v for v in workers.values() if v["resources"].get("GPU", 0) == 0]
    assert len(gpu) == 1 and len(cpu) == 1, workers
    for node_type in workers.values():  # scaled from zero on demand
        assert node_type["min_workers"] == 0 < node_type["max_workers"]
    # cluster-7b's train fits on the GPU type at its max_workers.
    train = load_config(preset="cluster-7b").train
    for resource, per_worker in train.resources_per_worker.items():
        available = gpu[0]["max_workers"] * gpu[0]["resources"][resource]
        assert train.num_workers * per_worker <= available, resource


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_installs_the_package_with_the_right_torch(name: str) -> None:
    cfg = prepared(name)
    home = f"/home/{cfg['auth']['ssh_user']}"
    (mount, source), *_ = cfg["file_mounts"].items()
    assert (REPO / source / "pyproject.toml").is_file()  # the repository is synced
    torch = f'"torch=={torch_pin()}"'
    gpu_type = next(v for v in cfg["available_node_types"].values() if v["resources"].get("GPU"))
    for commands, wheel in (
        (cfg["head_setup_commands"], "/whl/cpu"),
        (cfg["worker_setup_commands"], "/whl/cpu"),  # CPU worker type: the global list
        (gpu_type["worker_setup_commands"], "/whl/cu"),
    ):
        text = "\n".join(commands)
        assert torch in text and wheel in text, text
        installs = re.findall(r"pip install -q -e (\S+)", text)
        assert [p.replace("~", home) for p in installs] == [mount], text
        # torch first: the package's open `torch>=` range must find it installed.
        assert text.index(torch) < text.index("pip install -q -e")


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_commands_name_real_jobs_and_a_cloud_run_root(name: str) -> None:
    commands = commands_in_header(CLUSTER / f"{name}.yaml", "python")
    assert commands, "the header shows no `ray job submit ... -- python jobs/...`"
    for command in commands:
        cfg = check_entrypoint(command)
        assert cfg.run.root.startswith(f"{LAUNCHERS[name]}://"), command
    runtime_envs = re.findall(r"--runtime-env (\S+)", (CLUSTER / f"{name}.yaml").read_text())
    assert runtime_envs and all((REPO / path).is_file() for path in runtime_envs)


# -- KubeRay manifests ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def kuberay_validator():
    """A validator per kind: the KubeRay schema, Kubernetes types from kubernetes-validate."""
    from importlib.resources import files

    from referencing import Registry, Resource

    ours = json.loads((Path(__file__).parent / "schemas/kuberay-v1.schema.json").read_text())
    k8s_path = files("kubernetes_validate") / f"kubernetes-json-schema/{K8S_SCHEMAS}"
    k8s = json.loads((k8s_path / "_definitions.json").read_text())
    registry = Registry().with_resources(
        [(ours["$id"], Resource.from_contents(ours)), (k8s["$id"], Resource.from_contents(k8s))]
    )

    def validator(kind: str) -> jsonschema.Draft202012Validator:
        schema = {"$ref": f"{ours['$id']}#/$defs/{kind}"}
        return jsonschema.Draft202012Validator(schema, registry=registry)

    return validator


def test_every_kind_is_shipped() -> None:
    kinds = sorted(load_yaml(p)["kind"] for p in MANIFESTS)
    assert kinds == ["RayCluster", "RayJob", "RayService"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_the_kuberay_schema(path: Path, kuberay_validator) -> None:
    manifest = load_yaml(path)
    errors = list(kuberay_validator(manifest["kind"]).iter_errors(manifest))
    assert not errors, [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def cluster_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    return {"RayCluster": spec, "RayJob": spec.get("rayClusterSpec"),
            "RayService": spec.get("rayClusterConfig")}[manifest["kind"]]  # fmt: skip


def test_schema_rejects_what_kubectl_would(kuberay_validator) -> None:
    """The schema is a real check: a typo, a number where KubeRay wants a string, an
    unknown upscaling mode and a typo inside a pod template are each an error."""
    base = load_yaml(CLUSTER / "kuberay/raycluster.yaml")
    edits = {
        "minReplica": lambda s: s["workerGroupSpecs"][0].update(minReplica=0),
        "num-cpus": lambda s: s["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
        "Fast": lambda s: s["autoscalerOptions"].update(upscalingMode="Fast"),
        "imagePullPolicyy": lambda s: s["headGroupSpec"]["template"]["spec"]["containers"][
            0
        ].update(imagePullPolicyy="Always"),
    }
    for marker, edit in edits.items():
        bad = copy.deepcopy(base)
        edit(bad["spec"])
        errors = list(kuberay_validator("RayCluster").iter_errors(bad))
        found = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
        assert errors and marker in str(found), (marker, found)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_autoscales_from_zero_with_gpu_and_cpu_groups(path: Path) -> None:
    manifest = load_yaml(path)
    spec = cluster_spec(manifest)
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    for group in groups.values():  # KubeRay's webhook rule
        assert group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
    gpus = {
        name: c["resources"]["limits"].get("nvidia.com/gpu")
        for name, g in groups.items()
        for c in g["template"]["spec"]["containers"]
    }
    assert gpus["gpu"], gpus
    if manifest["kind"] != "RayService":  # serving needs no Ray Data workers
        assert gpus["cpu"] is None and groups["cpu"]["minReplicas"] == 0


def test_manifests_run_the_image_built_from_this_repository() -> None:
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    for source in re.findall(r"^COPY(?: --\S+)* (.+) \S+$", dockerfile, re.M):
        for name in source.split():
            assert (REPO / name).exists(), name
    assert f'"torch=={torch_pin()}"' in dockerfile
    images = set()
    for path in MANIFESTS:
        spec = cluster_spec(load_yaml(path))
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            images |= {c["image"] for c in group["template"]["spec"]["containers"]}
    assert images == {"YOUR-REGISTRY/medbase-ray:latest"}


def test_rayjob_runs_the_pipeline_on_a_cloud_run_root() -> None:
    manifest = load_yaml(CLUSTER / "kuberay/rayjob-pipeline.yaml")
    entrypoint = manifest["spec"]["entrypoint"]
    assert "/jobs/pipeline.py " in entrypoint
    cfg = check_entrypoint(entrypoint, repo_at=image_workdir())
    assert cfg.run.root.startswith("s3://")
    cluster = load_yaml(CLUSTER / "kuberay/raycluster.yaml")
    for command in commands_in_header(CLUSTER / "kuberay/raycluster.yaml", "python"):
        check_entrypoint(command, repo_at=image_workdir())
    assert cluster["metadata"]["name"] == "medbase"  # the port-forward's medbase-head-svc


def check_serve_config(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Ray Serve's own schema (what `serve deploy` validates), then each app's import
    path imports and its args build a pipeline config. Returns the applications."""
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(config)
    for app in config["applications"]:
        module, _, attr = app["import_path"].partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), app["import_path"]
        args = ServeAppArgs.model_validate(app["args"])
        load_config(args.config, args.overrides, preset=args.preset)
    return config["applications"]


def test_serve_configs_deploy_the_medbase_app() -> None:
    local = check_serve_config(load_yaml(CLUSTER / "serve.yaml"))
    service = load_yaml(CLUSTER / "kuberay/rayservice.yaml")
    served = check_serve_config(yaml.safe_load(service["spec"]["serveConfigV2"]))
    assert [a["import_path"] for a in served] == [a["import_path"] for a in local]
    assert local[0]["import_path"] == "medbase_ray.serve.app:app_builder"
    # The served checkpoint is on the volume both pod groups mount.
    checkpoint = served[0]["args"]["checkpoint"]
    spec = service["spec"]["rayClusterConfig"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        mounts = [
            m["mountPath"] for m in group["template"]["spec"]["containers"][0]["volumeMounts"]
        ]
        assert any(checkpoint.startswith(m + "/") for m in mounts), (checkpoint, mounts)
