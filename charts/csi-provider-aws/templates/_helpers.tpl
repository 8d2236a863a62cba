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

{{/* Labels of every object. */}}
{{- define "csi-provider-aws.labels" -}}
helm.sh/chart: {{ include "csi-provider-aws.chart" . }}
{{ include "csi-provider-aws.podLabels" . }}
{{- end }}

{{/*
Labels of the pods: the objects' labels without helm.sh/chart, so that a chart release that
changes nothing in the pods does not restart every node's provider (a new appVersion, that is
a new image, still does). ASCP's `app` label is kept, outside the selector, for what targets
ASCP's pods by it (NetworkPolicies, `kubectl -l`, policy exemptions): ASCP's chart sets it
to its nameOverride or "secrets-store-csi-driver-provider-aws"; podLabels.app overrides it
(ASCP's static manifest used "csi-secrets-store-provider-aws").
*/}}
{{- define "csi-provider-aws.podLabels" -}}
{{ include "csi-provider-aws.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: secrets-store-csi-provider
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- if not (hasKey .Values.podLabels "app") }}
app: {{ default "secrets-store-csi-driver-provider-aws" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}
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
{{- /* Both address families (IPv4 as mapped addresses): kubelet probes the pod's IPv6 address on IPv6 clusters. */}}
{{- $own = append $own (printf "--metrics-addr=[::]:%d" ($v.metrics.port | int64)) }}
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

{{/*
Refusals that protect a node, checked before anything is rendered:
- ASCP's bundled CSI driver (secrets-store-csi-driver.install): this chart does not install
  the driver, so values asking for it come from ASCP's chart, most likely an upgrade of ASCP's
  release, which would delete the driver (and its CSIDriver object) with it.
- An upgrade of a release that is not this chart's: a DaemonSet of this release name in the
  namespace that this chart does not render (ASCP's provider or its bundled driver), or this
  chart's DaemonSet name with another selector (a DaemonSet's selector is immutable). Helm
  would delete the driver, and ASCP's pods, as they exit, remove the socket this provider
  serves. `lookup` sees the cluster on install and upgrade; `helm template` sees nothing.
*/}}
{{- define "csi-provider-aws.refusals" -}}
{{- $todo := "install csi-provider-aws as a new release next to it (e.g. helm install -n kube-system csi-provider-aws ./charts/csi-provider-aws ...), never as an upgrade of ASCP's release: docs/install.md, section \"Switching over from ASCP\"" }}
{{- $driver := index .Values "secrets-store-csi-driver" | default dict }}
{{- if eq (toString (index $driver "install")) "true" }}
{{- fail (printf "secrets-store-csi-driver.install is true, but this chart does not install the Secrets Store CSI driver: these are ASCP's values. Upgrading ASCP's release to this chart would delete the driver it bundles; %s. (Copied values: drop the secrets-store-csi-driver block.)" $todo) }}
{{- end }}
{{- $fullname := include "csi-provider-aws.fullname" . }}
{{- $selector := include "csi-provider-aws.selectorLabels" . | fromYaml }}
{{- $existing := lookup "apps/v1" "DaemonSet" .Release.Namespace "" }}
{{- range ($existing.items | default list) }}
{{- $annotations := .metadata.annotations | default dict }}
{{- $ours := eq (index $annotations "meta.helm.sh/release-name" | default "") $.Release.Name }}
{{- if eq .metadata.name $fullname }}
{{- if not (deepEqual (.spec.selector.matchLabels | default dict) $selector) }}
{{- fail (printf "DaemonSet %s/%s exists with the selector %s, not this chart's %s, and a DaemonSet's selector cannot change. If it is ASCP's (fullnameOverride carried over), %s." $.Release.Namespace .metadata.name (toJson .spec.selector.matchLabels) (toJson $selector) $todo) }}
{{- end }}
{{- else if $ours }}
{{- fail (printf "release %s owns DaemonSet %s/%s, which this chart does not render: the release is another chart's (ASCP's provider or its bundled CSI driver), and upgrading it to this chart would delete that DaemonSet; %s." $.Release.Name $.Release.Namespace .metadata.name $todo) }}
{{- end }}
{{- end }}
{{- end }}
