"""The contract shared by operators and workloads: env names, paths, ports, label keys.

Both sides import these names, so a rename cannot silently break the link between what the
operator renders and what the workload reads.
"""

from __future__ import annotations

import datetime

from flywheel.api.common import GROUP

# --- Labels and annotations -----------------------------------------------------------------------
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
PART_OF = "flywheel"
MANAGED_BY = "flywheel-operator"
LABEL_OWNER_KIND = f"{GROUP}/owner-kind"
LABEL_OWNER_NAME = f"{GROUP}/owner-name"
LABEL_ROLE = f"{GROUP}/role"  # champion | challenger on serving pods
ANNOTATION_PREFIX = GROUP  # kopf progress and diff-base live under flywheel.dev/*
ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MULTUS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"

# --- Workload environment -------------------------------------------------------------------------
ENV_CONFIG = "FLYWHEEL_CONFIG"  # path of the resolved config (JSON) the workload reads once
ENV_ARTIFACTS_URI = "FLYWHEEL_ARTIFACTS_URI"
ENV_RUN_NAME = "FLYWHEEL_RUN_NAME"
ENV_NAMESPACE = "FLYWHEEL_NAMESPACE"
ENV_RESULT_PATH = "FLYWHEEL_RESULT_PATH"  # where the trainer writes result.json
# Kubernetes reporting route: rank 0 writes a compact JSON summary (metrics, model URIs, data hash,
# checkpoint; < 4 KiB) to the container's termination message; the operator reads it from the
# Master pod's status. No write RBAC for workloads, no artifact-store access for the operator.
TERMINATION_LOG = "/dev/termination-log"
ENV_TERMINATION_LOG = "FLYWHEEL_TERMINATION_LOG"
ENV_CHAMPION_URI = "FLYWHEEL_CHAMPION_URI"
ENV_CHALLENGER_URI = "FLYWHEEL_CHALLENGER_URI"
ENV_SERVING_CONFIG = "FLYWHEEL_SERVING_CONFIG"
# Operand images, set on the operator Deployment from Helm values.
ENV_TRAINER_IMAGE = "FLYWHEEL_TRAINER_IMAGE"
ENV_SELFPLAY_IMAGE = "FLYWHEEL_SELFPLAY_IMAGE"
ENV_SERVING_IMAGE = "FLYWHEEL_SERVING_IMAGE"
ENV_DRIFT_IMAGE = "FLYWHEEL_DRIFT_IMAGE"
DEFAULT_TRAINER_IMAGE = "ghcr.io/flywheel-dev/trainer:0.1.0"
DEFAULT_SELFPLAY_IMAGE = "ghcr.io/flywheel-dev/selfplay:0.1.0"
DEFAULT_SERVING_IMAGE = "ghcr.io/flywheel-dev/serving:0.1.0"
DEFAULT_DRIFT_IMAGE = "ghcr.io/flywheel-dev/drift:0.1.0"

# --- Paths inside pods ----------------------------------------------------------------------------
CONFIG_MOUNT = "/etc/flywheel"
CONFIG_FILE = "config.json"
CONFIG_PATH = f"{CONFIG_MOUNT}/{CONFIG_FILE}"
WORK_DIR = "/var/lib/flywheel"
ARTIFACTS_MOUNT = "/var/lib/flywheel/artifacts"  # pvc:// artifact stores are mounted here
# A SelfPlayRun's pvc://claim/path policy model: the claim is mounted here read-only, so the
# model is at MODELS_MOUNT/path (FLYWHEEL_MODELS_ROOT overrides it, as FLYWHEEL_PVC_ROOT does).
MODELS_MOUNT = "/var/lib/flywheel/models"
ENV_MODELS_ROOT = "FLYWHEEL_MODELS_ROOT"
SHM_PATH = "/dev/shm"

# --- Artifact layout (relative to the artifact root) ----------------------------------------------
# <root>/<namespace>/<kind plural>/<name>/{checkpoints,model,result.json,reports}
CHECKPOINTS_DIR = "checkpoints"
MODEL_DIR = "model"
MODEL_CARD = "model_card.json"
FP32_FILE = "model_fp32.pt"
QUANTIZED_FILE = "model_int8.onnx"  # ONNX Runtime static int8, chosen by bench/quantization.py
PREPROCESSOR_FILE = "preprocessor.json"
HOLDOUT_FILE = "holdout.parquet"  # the holdout rows (features + target) the DriftMonitor scores on
RESULT_FILE = "result.json"
TRAFFIC_DIR = "traffic"


def run_root(artifacts_uri: str, namespace: str, plural: str, name: str) -> str:
    """<root>/<namespace>/<plural>/<name>: the URI under which one run's artifacts live (its
    config's artifactsUri), on Kubernetes and on the local backend alike."""
    return "/".join([artifacts_uri.rstrip("/"), *[p.strip("/") for p in (namespace, plural, name) if p]])


def traffic_sink(artifacts_uri: str, deployment: str) -> str:
    """A Deployment's traffic log when spec.logging.sink is empty: <artifacts>/traffic/<name>, on
    Kubernetes and on the local backend alike (what the DriftMonitor reads)."""
    return "/".join([artifacts_uri.rstrip("/"), TRAFFIC_DIR, deployment])


# --- Ports ----------------------------------------------------------------------------------------
SERVING_PORT = 3000
METRICS_PORT = 8080  # operator metrics (FLYWHEEL_METRICS_PORT overrides; 0 turns them off)
HEALTH_PORT = 8081  # kopf liveness endpoint
TORCH_MASTER_PORT = 23456  # the Training Operator's default pytorchjob-port

# --- Trainer entry points -------------------------------------------------------------------------
TRAINER_MODULE = "flywheel.training"
SELFPLAY_MODULE = "flywheel.selfplay"
SERVING_SERVICE = "flywheel.serving.service:FlywheelService"
# After SIGTERM a server finishes in-flight requests for this long, then cancels what is left
# (a stalled client's half-sent body kept it alive for good), flushes its traffic log and exits:
# well inside a pod's default terminationGracePeriodSeconds (30).
SERVING_SHUTDOWN_GRACE_S = 10


def serving_args(host: str, port: int) -> list[str]:
    """`bentoml` arguments that serve a Deployment (after `bentoml` or `python -m bentoml`)."""
    return [
        "serve",
        SERVING_SERVICE,
        "--host",
        host,
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        str(SERVING_SHUTDOWN_GRACE_S),
    ]


def log_time() -> str:
    """The "time" of a workload's JSON progress line (UTC, milliseconds, Z), which `flywheel logs`
    prints as `time level message key=value`; the trainer and the self-play trainer both stamp it."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
