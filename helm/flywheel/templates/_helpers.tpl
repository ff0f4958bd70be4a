{{/* Common labels. */}}
{{- define "flywheel.labels" -}}
app.kubernetes.io/name: flywheel
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The operator image: repository@digest when image.digest is set (pinned), else repository:tag. */}}
{{- define "flywheel.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/* Rules on namespaced resources: the operator's own kind, events, and what it creates or reads.
In the ClusterRole when every namespace is watched, in a Role per namespace otherwise. */}}
{{- define "flywheel.namespacedRules" -}}
# Framework: kopf watches its own resource and writes its status.
- apiGroups: [flywheel.dev]
  resources: [{{ .plural }}]
  verbs: [get, list, watch, patch, update]
- apiGroups: [flywheel.dev]
  resources: [{{ .plural }}/status]
  verbs: [get, patch, update]
# Framework: events for people.
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- include "flywheel.appRules" (dict "kind" .kind) | nindent 0 }}
{{- end }}

{{/* The ClusterTrainingRuntime TrainJobs run against: the chart's own when it installs one. */}}
{{- define "flywheel.trainJobRuntime" -}}
{{- if .Values.trainJob.runtime.install }}{{ .Values.trainJob.runtime.name }}{{ else }}{{ .Values.trainJob.runtimeName }}{{ end }}
{{- end }}

{{/* Application rules per kind: what each operator creates or reads besides its own resource. */}}
{{- define "flywheel.appRules" -}}
{{- if eq .kind "trainingrun" }}
# Application: the PyTorchJob and its config, and the Master pod's termination message (results).
- apiGroups: [kubeflow.org]
  resources: [pytorchjobs]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [trainer.kubeflow.org]  # spec.launcher: TrainJob (Kubeflow Trainer v2)
  resources: [trainjobs]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
{{- else if eq .kind "selfplayrun" }}
# Application: the PyTorchJob, its config, the egress-denying NetworkPolicy, the Master pod's result
# (termination message) and per-step progress (the tail of its log).
- apiGroups: [kubeflow.org]
  resources: [pytorchjobs]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [trainer.kubeflow.org]  # spec.launcher: TrainJob (Kubeflow Trainer v2)
  resources: [trainjobs]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, update, delete]
{{- else if eq .kind "deployment" }}
# Application: the serving Deployment, Service, HPA and PDB; TrainingRuns are read for their models.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [flywheel.dev]
  resources: [trainingruns]
  verbs: [get, list, watch]
{{- else if eq .kind "driftmonitor" }}
# Application: challenger TrainingRuns it owns, and the champion of the Deployment it watches.
- apiGroups: [flywheel.dev]
  resources: [trainingruns]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [flywheel.dev]
  resources: [deployments]
  verbs: [get, list, watch, patch]
# Application: the check Jobs (drift image) and their ConfigMaps; their pods' termination messages.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
{{- end }}
{{- end }}
