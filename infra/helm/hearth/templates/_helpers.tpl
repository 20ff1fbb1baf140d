{{- define "hearth.labels" -}}
app.kubernetes.io/name: hearth
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "hearth.platformImage" -}}
{{ .Values.images.platform.repository }}:{{ .Values.images.platform.tag }}
{{- end }}

{{/* Environment of every Hearth container: every key of the existing Secret, then the plain values (env: comes last,
   so a template may append its own items). */}}
{{- define "hearth.env" -}}
envFrom:
  - secretRef:
      name: {{ .Values.existingSecret }}
env:
{{- range $k, $v := .Values.env }}
  - name: {{ $k }}
    value: {{ $v | quote }}
{{- end }}
{{- end }}

{{- define "hearth.securityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
{{- end }}

{{- define "hearth.adapterVolume" -}}
- name: adapters
{{- if .Values.adapterStore.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.adapterStore.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}
