{{/* The release's full name. */}}
{{- define "operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flashsale
{{- end -}}

{{/* Selector labels. */}}
{{- define "operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The namespace of the FlashSales. */}}
{{- define "operator.watched" -}}
{{- .Values.flashsale.namespace | default .Release.Namespace -}}
{{- end -}}

{{/* The Role rules of operator/rbac.yaml (the one source), the sales Deployment's name put in its rule. */}}
{{- define "operator.rules" -}}
{{- $rules := list }}
{{- range $doc := splitList "\n---\n" (.Files.Get "files/rbac.yaml") }}
{{- $obj := fromYaml $doc }}
{{- if eq (get $obj "kind") "Role" }}
{{- $rules = $obj.rules }}
{{- end }}
{{- end }}
{{- $out := list }}
{{- range $rule := $rules }}
{{- if has "deployments" $rule.resources }}
{{- $rule = merge (dict "resourceNames" (list $.Values.flashsale.salesDeployment)) (omit $rule "resourceNames") }}
{{- end }}
{{- $out = append $out $rule }}
{{- end }}
{{- toYaml $out }}
{{- end -}}
