#!/usr/bin/env bash
# One command from nothing to a working Flywheel on kind:
#   platform/kind-up.sh [--with-prometheus] [--cuda-trainer] [--with-selfplay] [--trainer-v2]
# creates the kind cluster from kind-config.yaml with the node image pinned in versions.env, builds
# the images the examples need from this checkout and loads them into kind (nothing is pulled from
# ghcr.io: nothing publishes there), installs (pinned, see versions.env) the Kubeflow Training
# Operator v1.9 (or, with --trainer-v2, Kubeflow Trainer v2 with JobSet, its stock runtimes and the
# chart's flywheel-torch runtime, for runs with spec.launcher: TrainJob), MinIO (artifact store and DVC remote), optionally kube-prometheus-stack, then the
# Flywheel chart with MinIO as the platform artifact store, publishes the example dataset in the
# cluster (example-data.yaml: a git repository served at
# http://example-data.flywheel-system.svc.cluster.local:8080/shuttle.git, its DVC data in
# s3://flywheel-dvc on MinIO) and applies the first example. Needs: kind, kubectl, helm, docker.
#
# Images (tag: the chart's appVersion), built from images/*/Dockerfile:
#   operator, serving, drift    python slim, always
#   trainer                     images/trainer-cpu (torch CPU, ~1 GB) by default; --cuda-trainer
#                               builds images/trainer (CUDA, NCCL, rdma-core; several GB) instead
#   selfplay                    CUDA, only with --with-selfplay (no example in the kind loop needs it)
# Artifacts live in the MinIO bucket s3://flywheel-artifacts (see artifacts.yaml for why not a PVC):
# workloads in `default` and the DriftMonitor operator in flywheel-system use the same bucket.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
# shellcheck source=versions.env
. "$here/versions.env"
with_prometheus=false
cuda_trainer=false
with_selfplay=false
trainer_v2=false
for arg in "$@"; do
  case "$arg" in
    --with-prometheus) with_prometheus=true ;;
    --cuda-trainer) cuda_trainer=true ;;
    --with-selfplay) with_selfplay=true ;;
    --trainer-v2) trainer_v2=true ;;
    --images-from-local-build) ;;   # the old flag: building is now what always happens
    *) echo "unknown argument: $arg (see the header of $0)" >&2; exit 2 ;;
  esac
done
for tool in kind kubectl helm docker; do
  command -v "$tool" >/dev/null || { echo "needs $tool on PATH" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "docker is on PATH but its engine does not answer: start it" >&2; exit 1; }

tag="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/helm/flywheel/Chart.yaml")"
registry=ghcr.io/flywheel-dev   # the chart's default names, so no --set is needed for the images

kind get clusters | grep -qx flywheel || kind create cluster --config "$root/kind-config.yaml" --image "$KIND_NODE_IMAGE"
kubectl config use-context kind-flywheel

# image name -> Dockerfile directory under images/
images=(operator:operator serving:serving drift:drift)
if $cuda_trainer; then images+=(trainer:trainer); else images+=(trainer:trainer-cpu); fi
if $with_selfplay; then images+=(selfplay:selfplay); fi
for entry in "${images[@]}"; do
  name="${entry%%:*}" dir="${entry#*:}"
  echo "Building $registry/$name:$tag from images/$dir and loading it into kind"
  docker build -t "$registry/$name:$tag" -f "$root/images/$dir/Dockerfile" "$root"
  kind load docker-image "$registry/$name:$tag" --name flywheel
done

if $trainer_v2; then
  echo "Installing Kubeflow Trainer ${TRAINER_V2_REF} (TrainJob, with JobSet)"
  kubectl apply --server-side -k "github.com/kubeflow/trainer.git/manifests/overlays/manager?ref=${TRAINER_V2_REF}"
  kubectl -n kubeflow-system rollout status deploy/kubeflow-trainer-controller-manager --timeout=300s
  # The runtimes go through Trainer's validating webhook: only once the manager serves it.
  kubectl apply --server-side -k "github.com/kubeflow/trainer.git/manifests/overlays/runtimes?ref=${TRAINER_V2_REF}"
else
  echo "Installing the Kubeflow Training Operator ${TRAINING_OPERATOR_REF} (PyTorchJob v1)"
  kubectl apply --server-side -k "github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=${TRAINING_OPERATOR_REF}"
  kubectl -n kubeflow rollout status deploy/training-operator --timeout=300s
fi

echo "Installing MinIO ${MINIO_CHART_VERSION} (artifacts and DVC remote)"
helm repo add minio https://charts.min.io/ >/dev/null
helm upgrade --install minio minio/minio --version "$MINIO_CHART_VERSION" -n flywheel-system --create-namespace \
  -f "$here/minio-values.yaml" --wait --wait-for-jobs   # the buckets exist before anything writes
kubectl apply -f "$here/artifacts.yaml"   # the S3 credentials Secret in flywheel-system and default

if $with_prometheus; then
  helm repo add prometheus-community https://prometheus-community.github.io/helm-charts >/dev/null
  helm upgrade --install kps prometheus-community/kube-prometheus-stack --version "$KUBE_PROMETHEUS_STACK_VERSION" \
    -n monitoring --create-namespace --set grafana.enabled=false --wait
fi

echo "Publishing the example dataset (git over HTTP, DVC data in s3://flywheel-dvc)"
kubectl apply -f "$here/example-data.yaml"   # builds while the chart installs

echo "Installing Flywheel"
chart_extra=()   # (the ${a[@]+...} form: bash 3.2, macOS's, calls an empty array unbound under set -u)
if $trainer_v2; then chart_extra+=(--set trainJob.runtime.install=true); fi   # the flywheel-torch runtime
helm upgrade --install flywheel "$root/helm/flywheel" -n flywheel-system --create-namespace \
  --set image.tag="$tag" \
  --set workloadImages.trainer="$registry/trainer:$tag" \
  --set workloadImages.serving="$registry/serving:$tag" \
  --set workloadImages.selfplay="$registry/selfplay:$tag" \
  --set workloadImages.drift="$registry/drift:$tag" \
  --set metrics.serviceMonitor.enabled="$with_prometheus" ${chart_extra[@]+"${chart_extra[@]}"} \
  --set artifacts.uri=s3://flywheel-artifacts \
  --set artifacts.s3CredentialsSecret=artifacts-s3-credentials --wait   # the platform store for resources that leave spec.artifacts at its default

# The examples' data.repo: ready only once its data is pushed and its git is served.
kubectl -n flywheel-system rollout status deploy/example-data --timeout=600s
if $trainer_v2; then   # the same example, launched as a TrainJob (no Training Operator v1 here)
  kubectl apply -f "$root/examples/trainingrun-trainjob.yaml"
else
  kubectl apply -f "$root/examples/trainingrun-minimal.yaml"
fi
echo "Done. Next: kubectl get flywheel -A; kubectl apply -k examples/ for the whole loop"
echo "(artifacts: s3://flywheel-artifacts on MinIO in flywheel-system; data: see platform/example-data.yaml)"
