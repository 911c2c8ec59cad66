{{- define "weightd.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "weightd.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "weightd.labels" -}}
{{ include "weightd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "weightd.grpcAddress" -}}
unix:{{ .Values.sockets.dir }}/{{ .Values.sockets.grpc }}
{{- end -}}

{{- define "weightd.probe" -}}
{{- if eq .Values.probes.mode "grpc" }}
grpc:
  port: {{ .Values.probes.grpcPort }}
{{- else if eq .Values.probes.mode "exec" }}
exec:
  command: ["/usr/local/bin/weightctl", "--address={{ include "weightd.grpcAddress" . }}", "status"]
{{- else }}
{{- fail "probes.mode must be exec or grpc" }}
{{- end }}
{{- end -}}
