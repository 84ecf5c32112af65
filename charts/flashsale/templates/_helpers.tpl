{{/* The release's full name: <release>, or <release>-flashsale when the release name does not hold the chart's. */}}
{{- define "flashsale.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "flashsale.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flashsale
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "sales"). */}}
{{- define "flashsale.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Name of a component's objects: <fullname>-<component>. */}}
{{- define "flashsale.componentName" -}}
{{- printf "%s-%s" (include "flashsale.fullname" .root) .component -}}
{{- end -}}

{{/* The image reference: registry/repository@digest, or :tag (the appVersion by default). */}}
{{- define "flashsale.image" -}}
{{- $registry := .Values.global.imageRegistry | default .Values.image.registry -}}
{{- $ref := printf "%s/%s" $registry .Values.image.repository | trimPrefix "/" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $ref .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The Kafka cluster's name. */}}
{{- define "flashsale.kafkaCluster" -}}
{{- .Values.kafka.clusterName | default (printf "%s-kafka" (include "flashsale.fullname" .)) -}}
{{- end -}}

{{/* The namespace of the Kafka cluster and its KafkaTopics. */}}
{{- define "flashsale.kafkaNamespace" -}}
{{- .Values.kafka.namespace | default .Release.Namespace -}}
{{- end -}}

{{/* The Kafka bootstrap address: the cluster's plain internal listener, or its TLS one for the KafkaUser. */}}
{{- define "flashsale.kafkaBootstrap" -}}
{{- $port := ternary 9093 9092 .Values.kafka.user.enabled -}}
{{- printf "%s-kafka-bootstrap.%s.svc:%d" (include "flashsale.kafkaCluster" .) (include "flashsale.kafkaNamespace" .) $port -}}
{{- end -}}

{{/* The KafkaUser's name (and its password Secret's); fails when the Kafka cluster is in another namespace. */}}
{{- define "flashsale.kafkaUser" -}}
{{- if ne (include "flashsale.kafkaNamespace" .) .Release.Namespace -}}
{{- fail "kafka.user needs the Kafka cluster in the release's namespace: its user and cluster CA Secrets are mounted by the pods" -}}
{{- end -}}
{{- .Values.kafka.user.name | default (include "flashsale.fullname" .) -}}
{{- end -}}

{{/* The CloudNativePG cluster's name. */}}
{{- define "flashsale.postgresCluster" -}}
{{- printf "%s-db" (include "flashsale.fullname" .) -}}
{{- end -}}

{{/* The Secret holding the JWT and admin keys. */}}
{{- define "flashsale.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-keys" (include "flashsale.fullname" .)) -}}
{{- end -}}

{{/* The ServiceAccount of the pods. */}}
{{- define "flashsale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "flashsale.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* A service's settings: podDefaults overlaid with services.<name>. (dict "root" $ "name" "sales") */}}
{{- define "flashsale.serviceValues" -}}
{{- $svc := index .root.Values.services .name -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.podDefaults) (deepCopy $svc)) -}}
{{- end -}}
