{{/* Name of the chart, or nameOverride. */}}
{{- define "csi-provider-aws.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: fullnameOverride, else the release name when it already contains the
chart's name, else <release>-<name>. 63 characters at most (DNS label).
*/}}
{{- define "csi-provider-aws.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "csi-provider-aws.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: never change them in an upgrade (a DaemonSet's selector is immutable). */}}
{{- define "csi-provider-aws.selectorLabels" -}}
app.kubernetes.io/name: {{ include "csi-provider-aws.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "csi-provider-aws.labels" -}}
helm.sh/chart: {{ include "csi-provider-aws.chart" . }}
{{ include "csi-provider-aws.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: secrets-store-csi-provider
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "csi-provider-aws.serviceAccountName" -}}
{{- default (include "csi-provider-aws.fullname" .) .Values.rbac.serviceAccountName }}
{{- end }}

{{/* The image reference; a tag of the form sha256:... is used as a digest. */}}
{{- define "csi-provider-aws.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if hasPrefix "sha256:" $tag }}
{{- printf "%s@%s" .Values.image.repository $tag }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}
