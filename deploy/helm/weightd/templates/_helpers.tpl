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

{{- /* The headless Service that lists every daemon pod for peer discovery. */ -}}
{{- define "weightd.peersService" -}}
{{- printf "%s-peers" (include "weightd.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{- define "weightd.peersServerName" -}}
{{- .Values.peers.tls.serverName | default (printf "%s.%s.svc" (include "weightd.peersService" .) .Release.Namespace) -}}
{{- end -}}

{{- define "weightd.peersTlsDir" -}}
/etc/weightd/peer-tls
{{- end -}}

{{- /* Large numbers in values arrive as floats (1.073741824e+09): print them whole. */ -}}
{{- define "weightd.peersServeBandwidth" -}}
{{- $bw := .Values.peers.serveBandwidth -}}
{{- if or (kindIs "float64" $bw) (kindIs "int64" $bw) (kindIs "int" $bw) -}}
{{- int64 $bw -}}
{{- else -}}
{{- $bw -}}
{{- end -}}
{{- end -}}

{{- define "weightd.peersCheck" -}}
{{- if .Values.peers.enabled -}}
{{- if not .Values.peers.tls.secretName -}}
{{- fail "peers.enabled requires peers.tls.secretName: weightd peers speak only mutual TLS; name a Secret with ca.crt, tls.crt and tls.key (e.g. from a cert-manager Certificate)" -}}
{{- end -}}
{{- $port := int .Values.peers.port -}}
{{- if or (eq $port (int .Values.metricsPort)) (and (eq .Values.probes.mode "grpc") (eq $port (int .Values.probes.grpcPort))) -}}
{{- fail "peers.port must differ from metricsPort and probes.grpcPort" -}}
{{- end -}}
{{- end -}}
{{- end -}}
