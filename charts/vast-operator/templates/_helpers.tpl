{{/* The release's full name, at most 63 characters. */}}
{{- define "vast-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vast-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vast-operator.labels" -}}
{{ include "vast-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "vast-operator.serviceAccountName" -}}
{{- default (include "vast-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The rules on WorkerGroups, Secrets, Services, EndpointSlices and Events: exactly what
the operator does, in every namespace it watches. */}}
{{- define "vast-operator.watchRules" -}}
- apiGroups: ["vast.ai"]
  resources: ["workergroups"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["vast.ai"]
  resources: ["workergroups/status"]
  verbs: ["patch"]
# Watched as metadata only; the referenced key is read with a GET.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# Created by POST, replaced by PUT with uid and resourceVersion preconditions.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
# The event recorder creates events and patches their series.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* --metrics-secure: the operator asks who a scraper's token is (TokenReview) and
whether it may get /metrics (SubjectAccessReview). */}}
{{- define "vast-operator.metricsAuthRules" -}}
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- end -}}
