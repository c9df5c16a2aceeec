{{/* Names, labels and the pieces every govsync pod shares. */}}

{{- define "govsync.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name: "govsync" for `helm install govsync`. */}}
{{- define "govsync.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "govsync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "govsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (processor, console, migrate). */}}
{{- define "govsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "govsync.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "govsync.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The processor's replica ceiling: min(maxReplicas or partitions, partitions). */}}
{{- define "govsync.maxReplicas" -}}
{{- $max := int .Values.partitions -}}
{{- if gt (int .Values.autoscaling.maxReplicas) 0 -}}
{{- $max = min $max (int .Values.autoscaling.maxReplicas) -}}
{{- end -}}
{{- $max -}}
{{- end -}}

{{/*
Pod-level settings every govsync pod shares. enableServiceLinks is off:
Kubernetes would otherwise add GOVSYNC_METRICS_PORT, GOVSYNC_REVIEW_SERVICE_HOST
and the like for this release's Services, and govsync refuses a GOVSYNC_
variable that looks like a misspelt override of a config section.
*/}}
{{- define "govsync.podCommon" -}}
enableServiceLinks: false
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* Environment every govsync container gets: Kafka values and secrets. */}}
{{- define "govsync.env" -}}
- name: GOVSYNC_KAFKA__BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: GOVSYNC_KAFKA__GROUP_ID
  value: {{ .Values.kafka.groupId | quote }}
- name: GOVSYNC_KAFKA__SOURCE_TOPIC
  value: {{ .Values.kafka.sourceTopic | quote }}
{{- with .Values.secrets.databasePassword }}
{{- if .name }}
- name: GOVSYNC_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- with .Values.secrets.kafkaSaslPassword }}
{{- if .name }}
- name: GOVSYNC_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
# Oracle Instant Client writes its diagnostics under $HOME: the writable /tmp.
- name: HOME
  value: /tmp
{{- end -}}

{{- define "govsync.volumeMounts" -}}
- name: config
  mountPath: /etc/govsync/govsync.toml
  subPath: govsync.toml
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.secrets.caBundle.name }}
- name: ca-bundle
  mountPath: /etc/govsync/tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* The volumes of govsync.volumeMounts; configMap names the ConfigMap. */}}
{{- define "govsync.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- with .root.Values.secrets.caBundle }}
{{- if .name }}
- name: ca-bundle
  secret:
    secretName: {{ .name }}
    items:
      - key: {{ .key }}
        path: ca.pem
{{- end }}
{{- end }}
{{- end -}}
