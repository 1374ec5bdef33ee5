"""Every overlay renders offline, validates against Kubernetes schemas, and keeps our invariants."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from percept.runtime.settings import SERVICE_NAMES, Settings

K8S = Path(__file__).resolve().parents[2] / "k8s"
OVERLAYS = ("cpu", "gpu", "dev")
KUBERNETES_VERSIONS = ("1.35.0", "1.37.0")
GPU_SERVICES = {"speech", "vision", "nlp"}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
# Created by the operator in cpu/gpu clusters (docs/deploy.md); generated in dev.
EXTERNAL_SECRETS = {"percept-secrets"}

Obj = dict[str, Any]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is required to render the manifests (scripts/setup.sh installs it)")
    return found


@cache
def render(path: str) -> tuple[Obj, ...]:
    out = subprocess.run(
        [kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone", path],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def overlay(name: str) -> tuple[Obj, ...]:
    return render(str(K8S / "overlays" / name))


def of_kind(objs: tuple[Obj, ...], *kinds: str) -> list[Obj]:
    return [o for o in objs if o["kind"] in kinds]


def pod_spec(workload: Obj) -> Obj:
    return workload["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def pod_labels(objs: tuple[Obj, ...]) -> list[dict[str, str]]:
    return [w["spec"]["template"]["metadata"]["labels"] for w in of_kind(objs, *WORKLOADS)]


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    match = (
        selector.get("matchLabels", {})
        if "matchLabels" in selector or "matchExpressions" in selector
        else selector
    )
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and value is None:
            return False
    return True


def component(workload: Obj) -> str:
    return str(workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"])


@pytest.mark.parametrize("name", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_strictly(name: str, version: str) -> None:
    objs = overlay(name)
    assert len(objs) > 20
    for obj in objs:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_long_running_container_has_probes_and_resources(name: str) -> None:
    for workload in of_kind(overlay(name), *WORKLOADS):
        for container in pod_spec(workload)["containers"]:
            where = f"{name}/{workload['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert "memory" in resources.get("limits", {}), where
            if workload["kind"] == "Job":
                continue
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{where} lacks {probe}"


@pytest.mark.parametrize("name", OVERLAYS)
def test_percept_containers_serve_their_component_with_grpc_probes(name: str) -> None:
    defaults = Settings()
    served = set()
    for workload in of_kind(overlay(name), "Deployment"):
        (container,) = pod_spec(workload)["containers"]
        service = component(workload)
        assert container["args"] == ["serve", service]
        if service == "console":  # HTTP, not gRPC: see the console's own test
            continue
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == defaults.port_for(service)
        assert ports["metrics"] == defaults.metrics_port_for(service)
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(ports["metrics"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == ports["grpc"]
        served.add(service)
    assert served == set(SERVICE_NAMES)


@pytest.mark.parametrize("name", OVERLAYS)
def test_everything_runs_locked_down(name: str) -> None:
    for workload in of_kind(overlay(name), *WORKLOADS):
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["capabilities"]["drop"] == ["ALL"]


def gpus(workload: Obj) -> tuple[str | None, str | None]:
    resources = pod_spec(workload)["containers"][0]["resources"]
    return (
        resources.get("requests", {}).get("nvidia.com/gpu"),
        resources.get("limits", {}).get("nvidia.com/gpu"),
    )


def test_gpu_overlay_puts_gpus_exactly_on_speech_vision_and_nlp() -> None:
    for workload in of_kind(overlay("gpu"), *WORKLOADS):
        spec = pod_spec(workload)
        if workload["kind"] == "Deployment" and component(workload) in GPU_SERVICES:
            assert gpus(workload) == ("1", "1")
            assert spec["runtimeClassName"] == "nvidia"
            assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
                "tolerations"
            ]
            assert workload["spec"]["template"]["spec"]["containers"][0]["image"].endswith("-cuda")
        else:
            assert gpus(workload) == (None, None), workload["metadata"]["name"]
            assert "runtimeClassName" not in spec


@pytest.mark.parametrize("name", ("cpu", "dev"))
def test_cpu_overlays_request_no_gpu(name: str) -> None:
    for workload in of_kind(overlay(name), *WORKLOADS):
        assert gpus(workload) == (None, None)
        assert "tolerations" not in pod_spec(workload)


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_selector_selects_pods(name: str) -> None:
    objs = overlay(name)
    labels = pod_labels(objs)
    for service in of_kind(objs, "Service"):
        assert any(selects(service["spec"]["selector"], pod) for pod in labels), service[
            "metadata"
        ]["name"]
    for policy in of_kind(objs, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]
        assert selector == {} or any(selects(selector, pod) for pod in labels), policy["metadata"][
            "name"
        ]
    for pdb in of_kind(objs, "PodDisruptionBudget"):
        assert any(selects(pdb["spec"]["selector"], pod) for pod in labels), pdb["metadata"]["name"]
    deployments = {d["metadata"]["name"] for d in of_kind(objs, "Deployment")}
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_reference_resolves(name: str) -> None:
    objs = overlay(name)
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    secrets = {n for k, n in names if k == "Secret"} | EXTERNAL_SECRETS
    for workload in of_kind(objs, *WORKLOADS):
        spec = pod_spec(workload)
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets
            mounted = {m["name"] for m in container.get("volumeMounts", [])}
            declared = {v["name"] for v in spec.get("volumes", [])}
            claims = {
                c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])
            }
            assert mounted <= declared | claims
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert (
                    "PersistentVolumeClaim",
                    volume["persistentVolumeClaim"]["claimName"],
                ) in names
    if name == "dev":  # everything a single-node cluster needs is in the render
        assert ("Secret", "percept-secrets") in names


def test_network_policies_wall_off_leads_and_the_database() -> None:
    objs = overlay("cpu")
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(objs, "NetworkPolicy")}
    assert policies["percept-default-deny"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }
    by_component = {
        component(w): w["spec"]["template"]["metadata"]["labels"] for w in of_kind(objs, *WORKLOADS)
    }

    def allowed_from(policy: str) -> set[str]:
        peers = [p["podSelector"] for rule in policies[policy]["ingress"] for p in rule["from"]]
        return {c for c, labels in by_component.items() if any(selects(s, labels) for s in peers)}

    assert allowed_from("percept-leads-ingress") == GPU_SERVICES | {"console"}
    # nlp: chat sessions; vision: the gallery of enrolled faces.
    assert allowed_from("percept-postgres-ingress") == {"leads", "nlp", "vision"}
    database_users = policies["percept-database-egress"]["podSelector"]
    assert {c for c, pod in by_component.items() if selects(database_users, pod)} == {
        "leads",
        "nlp",
        "vision",
    }
    egress_selector = policies["percept-perception-egress"]["podSelector"]
    callers = {c for c, pod in by_component.items() if selects(egress_selector, pod)}
    assert callers == GPU_SERVICES
    egress_to = [
        p["podSelector"] for r in policies["percept-perception-egress"]["egress"] for p in r["to"]
    ]
    assert [c for c, pod in by_component.items() if any(selects(s, pod) for s in egress_to)] == [
        "leads"
    ]


def test_only_the_model_job_reaches_out_and_only_over_https() -> None:
    objs = overlay("cpu")
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(objs, "NetworkPolicy")}
    outside = [
        (name, rule)
        for name, spec in policies.items()
        for rule in spec.get("egress", [])
        if any("ipBlock" in peer for peer in rule.get("to", []))
    ]
    assert sorted(name for name, _ in outside) == [
        "percept-models-egress",
        "percept-vision-cameras-egress",
    ]
    cameras = policies["percept-vision-cameras-egress"]
    assert cameras["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "vision"}}
    (camera_rule,) = cameras["egress"]  # private networks only, camera ports only
    assert {peer["ipBlock"]["cidr"] for peer in camera_rule["to"]} == {
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
    }
    assert {p["port"] for p in camera_rule["ports"]} == {554, 8554, 80, 443}
    outside = [(name, rule) for name, rule in outside if name == "percept-models-egress"]
    (_, rule), (job,) = outside[0], of_kind(objs, "Job")
    assert rule["ports"] == [{"protocol": "TCP", "port": 443}]
    assert set(rule["to"][0]["ipBlock"]["except"]) == {
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
    }
    assert selects(
        policies["percept-models-egress"]["podSelector"],
        job["spec"]["template"]["metadata"]["labels"],
    )


def test_leads_finds_vision_to_erase_faces() -> None:
    objs = overlay("cpu")
    (config,) = [o for o in of_kind(objs, "ConfigMap") if o["metadata"]["name"] == "percept-config"]
    host, port = config["data"]["PERCEPT_VISION_ADDRESS"].split(":")
    services = {s["metadata"]["name"]: s for s in of_kind(objs, "Service")}
    assert services[host]["spec"]["clusterIP"] == "None"  # headless: every vision pod
    assert services[host]["spec"]["ports"][0]["port"] == int(port)
    Settings(vision_address=config["data"]["PERCEPT_VISION_ADDRESS"])


def test_model_cache_is_filled_by_a_job_and_mounted_read_only() -> None:
    objs = overlay("cpu")
    (job,) = of_kind(objs, "Job")
    assert pod_spec(job)["containers"][0]["args"] == ["models", "pull", "--all"]
    for deployment in of_kind(objs, "Deployment"):
        for volume in pod_spec(deployment).get("volumes", []):
            if volume.get("persistentVolumeClaim", {}).get("claimName") == "percept-models":
                assert volume["persistentVolumeClaim"]["readOnly"] is True


def test_speech_vision_and_nlp_read_the_understanding_configmap_where_settings_point() -> None:
    objs = overlay("cpu")
    (config,) = [o for o in of_kind(objs, "ConfigMap") if o["metadata"]["name"] == "percept-config"]
    where = config["data"]["PERCEPT_UNDERSTANDING_DIR"]
    for deployment in of_kind(objs, "Deployment"):
        if component(deployment) not in ("speech", "vision", "nlp"):
            continue
        spec = pod_spec(deployment)
        volumes = {v["name"]: v for v in spec["volumes"]}
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == where]
        assert mount.get("readOnly") is True
        assert volumes[mount["name"]]["configMap"]["name"].startswith("percept-understanding")


def test_an_overlay_replaces_the_understanding_files_and_pods_follow(tmp_path: Path) -> None:
    rel = os.path.relpath(K8S, tmp_path)
    (tmp_path / "catalog.yaml").write_text("products:\n  printer: [printer]\n")
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{rel}/overlays/cpu]\nconfigMapGenerator:\n"
        "  - {name: percept-understanding, namespace: percept, behavior: replace,"
        " files: [catalog.yaml]}\n"
    )
    objs = render(str(tmp_path))
    (ours,) = [
        o
        for o in of_kind(objs, "ConfigMap")
        if o["metadata"]["name"].startswith("percept-understanding")
    ]
    assert ours["data"] == {"catalog.yaml": "products:\n  printer: [printer]\n"}
    mounted = {
        v["configMap"]["name"]
        for d in of_kind(objs, "Deployment")
        for v in pod_spec(d).get("volumes", [])
        if "configMap" in v
    }
    assert ours["metadata"]["name"] in mounted  # new content, new name: the pods roll


def test_inflight_autoscaling_component_adds_the_custom_metric(tmp_path: Path) -> None:
    rel = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{rel}/overlays/gpu]\ncomponents: [{rel}/components/inflight-autoscaling]\n"
    )
    hpas = of_kind(render(str(tmp_path)), "HorizontalPodAutoscaler")
    assert len(hpas) == 4  # speech, vision, nlp, and leads (on CPU alone)
    for hpa in hpas:
        if hpa["metadata"]["name"] == "percept-leads":
            assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]
            continue
        kubernetes_validate.validate(hpa, KUBERNETES_VERSIONS[-1], strict=True)
        metrics = [
            m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"
        ]
        assert metrics == ["percept_grpc_in_flight"]


def test_mtls_component_mounts_certificates_and_probes_the_plain_health_port(
    tmp_path: Path,
) -> None:
    rel = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{rel}/overlays/gpu]\ncomponents: [{rel}/components/mtls]\n"
    )
    objs = render(str(tmp_path))
    for obj in objs:
        kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)
    (config,) = [o for o in of_kind(objs, "ConfigMap") if o["metadata"]["name"] == "percept-config"]
    data = config["data"]
    assert data["PERCEPT_TLS_CLIENT_CA_FILE"] == "/etc/percept/tls/ca.crt"
    for deployment in of_kind(objs, "Deployment"):
        service = component(deployment)
        (container,) = pod_spec(deployment)["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if service != "console":  # the console serves HTTP; it calls the services over mTLS
            assert ports["health"] == int(data[f"PERCEPT_{service.upper()}_HEALTH_PORT"])
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"]["port"] == ports["health"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["tls"]["readOnly"] is True
        assert data["PERCEPT_TLS_CERT_FILE"].startswith(mounts["tls"]["mountPath"])
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        assert volumes["tls"]["secret"]["secretName"] == "percept-tls"


def test_nlp_replicas_share_chat_sessions_through_the_database() -> None:
    objs = overlay("cpu")
    (nlp,) = [d for d in of_kind(objs, "Deployment") if component(d) == "nlp"]
    env = {e["name"]: e for e in pod_spec(nlp)["containers"][0]["env"]}
    ref = env["PERCEPT_NLP_SESSION_STORE"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("percept-secrets", "database-url")


def test_vision_replicas_share_the_encrypted_face_gallery() -> None:
    for name in OVERLAYS:
        objs = overlay(name)
        (vision,) = [d for d in of_kind(objs, "Deployment") if component(d) == "vision"]
        env = {e["name"]: e for e in pod_spec(vision)["containers"][0]["env"]}
        store = env["PERCEPT_VISION_GALLERY_STORE"]["valueFrom"]["secretKeyRef"]
        key = env["PERCEPT_VISION_GALLERY_KEY"]["valueFrom"]["secretKeyRef"]
        assert (store["name"], store["key"]) == ("percept-secrets", "database-url")
        footfall = env["PERCEPT_VISION_FOOTFALL_STORE"]["valueFrom"]["secretKeyRef"]
        assert (footfall["name"], footfall["key"]) == ("percept-secrets", "database-url")
        assert (key["name"], key["key"], key.get("optional", False)) == (
            "percept-secrets",
            "vision-gallery-key",
            False,  # a shared gallery without a shared key would not start
        )
    dev = {s["metadata"]["name"]: s for s in of_kind(overlay("dev"), "Secret")}
    Settings(
        vision_gallery_key=base64.b64decode(
            dev["percept-secrets"]["data"]["vision-gallery-key"]
        ).decode()
    )


def test_the_gpu_overlay_runs_yolo_for_vision_and_pulls_its_weights() -> None:
    objs = overlay("gpu")
    (vision,) = [d for d in of_kind(objs, "Deployment") if component(d) == "vision"]
    env = {e["name"]: e.get("value") for e in pod_spec(vision)["containers"][0]["env"]}
    assert (env["PERCEPT_VISION_DETECTOR"], env["PERCEPT_VISION_YOLO_MODEL"]) == ("yolo", "yolo11n")
    (job,) = of_kind(objs, "Job")
    assert pod_spec(job)["containers"][0]["args"] == ["models", "pull", "--all", "yolo11n"]
    assert all(
        "PERCEPT_VISION_DETECTOR"
        not in {e["name"] for e in pod_spec(d)["containers"][0].get("env", [])}
        for d in of_kind(overlay("cpu"), "Deployment")
    )


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_console_serves_http_and_reaches_only_leads_nlp_vision_and_speech(name: str) -> None:
    objs = overlay(name)
    (console,) = [d for d in of_kind(objs, "Deployment") if component(d) == "console"]
    (container,) = pod_spec(console)["containers"]
    assert container["args"] == ["serve", "console"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": Settings().console_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PERCEPT_CONSOLE_HOST"] == "0.0.0.0"
    (config,) = [o for o in of_kind(objs, "ConfigMap") if o["metadata"]["name"] == "percept-config"]
    assert config["data"]["PERCEPT_NLP_ADDRESS"] == "percept-nlp-headless:50053"
    assert config["data"]["PERCEPT_SPEECH_ADDRESS"] == "percept-speech-headless:50051"
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(objs, "NetworkPolicy")}
    egress = policies["percept-console-egress"]["egress"]
    reached = {
        (peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"], port["port"])
        for rule in egress
        for peer in rule["to"]
        for port in rule["ports"]
    }
    assert reached == {("leads", 50054), ("nlp", 50053), ("vision", 50052), ("speech", 50051)}
    labels = console["spec"]["template"]["metadata"]["labels"]
    assert "percept.io/uses-database" not in labels  # no database for the console
    (service,) = [s for s in of_kind(objs, "Service") if s["metadata"]["name"] == "percept-console"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


@pytest.mark.parametrize("name", OVERLAYS)
def test_speech_exposes_its_telephony_gateway_to_the_platforms(name: str) -> None:
    objs = overlay(name)
    defaults = Settings()
    (speech,) = [d for d in of_kind(objs, "Deployment") if component(d) == "speech"]
    (container,) = pod_spec(speech)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["gateway"] == defaults.speech_gateway_port
    assert ports["audiosocket"] == defaults.speech_audiosocket_port
    (service,) = [s for s in of_kind(objs, "Service") if s["metadata"]["name"] == "percept-speech"]
    targets = {p["targetPort"] for p in service["spec"]["ports"]}
    assert {"gateway", "audiosocket"} <= targets
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(objs, "NetworkPolicy")}
    opened = {
        port["port"]
        for rule in policies["percept-perception-ingress"]["ingress"]
        for port in rule["ports"]
    }
    assert {defaults.speech_gateway_port, defaults.speech_audiosocket_port} <= opened


def test_leads_scales_out_on_the_shared_database() -> None:
    for name in ("cpu", "gpu"):
        objs = overlay(name)
        (leads,) = [d for d in of_kind(objs, "Deployment") if component(d) == "leads"]
        assert leads["spec"]["replicas"] >= 2
        hpas = {h["metadata"]["name"]: h["spec"] for h in of_kind(objs, "HorizontalPodAutoscaler")}
        assert hpas["percept-leads"]["minReplicas"] >= 2
        assert hpas["percept-leads"]["scaleTargetRef"]["name"] == leads["metadata"]["name"]
        pdbs = {p["metadata"]["name"]: p["spec"] for p in of_kind(objs, "PodDisruptionBudget")}
        assert pdbs["percept-leads"]["minAvailable"] == 1
        env = {e["name"] for e in pod_spec(leads)["containers"][0]["env"]}
        assert "PERCEPT_DATABASE_URL" in env  # replicas share PostgreSQL, never SQLite
