{{- define "csms.labels" -}}
app.kubernetes.io/name: csms
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "csms.env" -}}
- name: CSMS_BUS_URL
  value: {{ .Values.kafka.url | quote }}
- name: CSMS_STORE_URL
  value: {{ .Values.cassandra.url | quote }}
- name: CSMS_EVENTS_PARTITIONS
  value: {{ .Values.eventsPartitions | quote }}
- name: CSMS_COMMANDS_PARTITIONS
  value: {{ .Values.commandsPartitions | quote }}
- name: CSMS_STATION_EVENTS_RETENTION_DAYS
  value: {{ .Values.stationEventsRetentionDays | quote }}
- name: CSMS_METRICS_PORT
  value: {{ .Values.metricsPort | quote }}
- name: CSMS_DEFAULT_SECURITY_PROFILE
  value: {{ .Values.security.defaultProfile | quote }}
- name: CSMS_API_KEY
  valueFrom: { secretKeyRef: { name: {{ .Values.secretName }}, key: CSMS_API_KEY } }
- name: CSMS_AUTH_PEPPER
  valueFrom: { secretKeyRef: { name: {{ .Values.secretName }}, key: CSMS_AUTH_PEPPER } }
{{- end -}}

{{- define "csms.probes" -}}
readinessProbe:
  httpGet: { path: /readyz, port: {{ .port }} }
  periodSeconds: 5
  failureThreshold: 2
livenessProbe:
  httpGet: { path: /healthz, port: {{ .port }} }
  periodSeconds: 10
  failureThreshold: 6
{{- end -}}
