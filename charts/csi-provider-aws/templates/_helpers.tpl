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

{{/*
The image reference; a tag of the form sha256:... is used as a digest. No registry publishes
this provider's image, so there is no default: an unset repository, ASCP's image (copied with
an ASCP values file; it does not know this chart's flags) and this chart's former placeholder
are refused with what to do instead.
*/}}
{{- define "csi-provider-aws.image" -}}
{{- $repository := .Values.image.repository | default "" | trim }}
{{- $todo := "build the image from this repository's Dockerfile, push it to a registry your nodes can pull from, and set image.repository to it (docs/install.md, section \"The image\")" }}
{{- if not $repository }}
{{- fail (printf "image.repository is not set: no registry publishes csi-provider-aws, so %s." $todo) }}
{{- end }}
{{- if regexMatch "(^|/)secrets-store-csi-driver-provider-aws$" $repository }}
{{- fail (printf "image.repository %q is ASCP's image, which does not know this chart's flags (--metrics-addr, --log-format): do not copy image from an ASCP values file; %s." $repository $todo) }}
{{- end }}
{{- if eq $repository "ghcr.io/csi-provider-aws/csi-provider-aws" }}
{{- fail (printf "image.repository %q is a placeholder that no registry serves: %s." $repository $todo) }}
{{- end }}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if hasPrefix "sha256:" $tag }}
{{- printf "%s@%s" $repository $tag }}
{{- else }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{/*
The provider's flags: the chart's own, then extraArgs. A flag named in extraArgs replaces the
chart's rendering of it instead of being passed twice (the provider would take the last one,
as Go programs do, but a flag given once is what an operator expects to read).
*/}}
{{- define "csi-provider-aws.args" -}}
{{- $v := .Values }}
{{- $own := list (printf "--provider-volume=%s" $v.providerVolume) }}
{{- $own = append $own (printf "--driver-writes-secrets=%t" $v.driverWritesSecrets) }}
{{- $own = append $own (printf "--qps=%d" ($v.k8sThrottlingParams.qps | int64)) }}
{{- $own = append $own (printf "--burst=%d" ($v.k8sThrottlingParams.burst | int64)) }}
{{- $own = append $own (printf "--metrics-addr=0.0.0.0:%d" ($v.metrics.port | int64)) }}
{{- $own = append $own (printf "--log-format=%s" $v.logFormat) }}
{{- if not $v.shareIrsaIdentity }}
{{- $own = append $own "--share-irsa-identity=false" }}
{{- end }}
{{- with $v.cacheTTL }}
{{- $own = append $own (printf "--cache-ttl=%s" .) }}
{{- end }}
{{- with $v.podIdentityHttpTimeout }}
{{- $own = append $own (printf "--pod-identity-http-timeout=%s" .) }}
{{- end }}
{{- with $v.eksAddonVersion }}
{{- $own = append $own (printf "--eks-addon-version=%s" .) }}
{{- end }}
{{- $overridden := dict }}
{{- range $v.extraArgs }}
{{- $_ := set $overridden (regexReplaceAll "=.*$" . "") true }}
{{- end }}
{{- range $own }}
{{- if not (hasKey $overridden (regexReplaceAll "=.*$" . "")) }}
- {{ . | quote }}
{{- end }}
{{- end }}
{{- range $v.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
