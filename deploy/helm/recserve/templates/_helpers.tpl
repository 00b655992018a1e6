{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "recserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; room is left for the "-headless" and "-trainer" suffixes. */}}
{{- define "recserve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "recserve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "recserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: recserve
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "server"). */}}
{{- define "recserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recserve.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "recserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "recserve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "recserve.image" -}}
{{ printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The claim holding the registry. */}}
{{- define "recserve.registryClaim" -}}
{{- if .Values.registry.existingClaim }}
{{- .Values.registry.existingClaim }}
{{- else }}
{{- printf "%s-registry" (include "recserve.fullname" .) }}
{{- end }}
{{- end }}

{{/* The registry volume, the same in every pod that mounts it; none when the
registry is in object storage. */}}
{{- define "recserve.registryVolume" -}}
{{- if not .Values.registry.s3.url }}
- name: registry
{{- if or .Values.registry.existingClaim .Values.registry.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "recserve.registryClaim" . }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}
{{- end }}

{{/* Shared configuration as environment variables from the ConfigMap. */}}
{{- define "recserve.envFrom" -}}
- configMapRef:
    name: {{ include "recserve.fullname" . }}
{{- with .Values.registry.s3.existingSecret }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end }}
