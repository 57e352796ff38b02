{{/* The chart's name, or nameOverride. */}}
{{- define "modeldeploy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects: RELEASE-modeldeploy, or RELEASE when it already says so. */}}
{{- define "modeldeploy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "modeldeploy.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "modeldeploy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "modeldeploy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "modeldeploy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: modeldeploy
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "modeldeploy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modeldeploy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The leader-election Lease in the release namespace: one replica acts, the others stand by. */}}
{{- define "modeldeploy.leaseName" -}}
{{- default (include "modeldeploy.fullname" .) .Values.operator.leaderElection.leaseName -}}
{{- end -}}

{{/* Render monitoring objects only where the Prometheus Operator's API exists. */}}
{{- define "modeldeploy.hasMonitoring" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}true{{- end -}}
{{- end -}}

{{/*
The rules the operator needs on namespaced objects, for a ClusterRole (whole cluster) or a Role
per watched namespace. Each rule is proven necessary by tests/integration/test_rbac.py.
*/}}
{{- define "modeldeploy.namespacedRules" -}}
# ModelDeployments: kopf lists and watches them (no finalizer: the operator uses no kopf
# timers); the operator writes their status.
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments"]
  verbs: ["list", "watch"]
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments/status"]
  verbs: ["patch"]
# Events that `kubectl describe md` shows (kopf posts each as a new Event).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Children, written by server-side apply (a PATCH that creates what is missing) and watched
# into an index. Deployments of expired revisions, and an HPA, HTTPRoute, PodDisruptionBudget
# or role Service (NAME-canary, NAME-stable: only during a rollout) no longer wanted, are deleted.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Verification hooks (spec.rollout.hooks): one Job per run; the Job controller deletes it an
# hour after it finished (ttlSecondsAfterFinished), so no delete. No pod rights: the Job
# controller runs the pods, and the verdict is the Job's status.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "patch"]
# Objects a spec names (model claim, auth and TLS Secrets, env sources, Prometheus token):
# read to report a missing one as a condition instead of crash-looping pods. Also the Secrets
# holding webhook hooks' and notifications' URLs and headers, read when a call is made.
- apiGroups: [""]
  resources: ["secrets", "configmaps", "persistentvolumeclaims"]
  verbs: ["get"]
# The pods analysis provider: list a revision's ready pods, scrape /metrics through the proxy.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["pods/proxy"]
  verbs: ["get"]
{{- end -}}

{{/* Cluster-scoped reads: is Gateway API installed (get), and kopf notices CRDs appearing later
(list, watch). A namespaced operator's kopf also lists and then watches namespaces: without
list it retries for about a minute before it falls back to the names it was given; without
watch it logs nine refusals over the next minute and never notices a namespace re-created. */}}
{{- define "modeldeploy.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end -}}
