{{/*
Names, labels, the shared env block, volumes and the pod settings every workload shares.
Every object name starts with "csms.fullname" (two releases in one namespace never
collide); selectors use name + instance + component.
*/}}

{{- define "csms.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-csms, or the release name when it already contains the chart name.
Capped so that the longest derived name (<fullname>-smart-charging-metrics) stays a valid
63-character DNS label and the gateway StatefulSet name leaves room for its pods' hash label. */}}
{{- define "csms.fullname" -}}
{{- $name := "" -}}
{{- if .Values.fullnameOverride -}}
{{- $name = .Values.fullnameOverride -}}
{{- else -}}
{{- $base := default .Chart.Name .Values.nameOverride -}}
{{- if contains $base .Release.Name -}}
{{- $name = .Release.Name -}}
{{- else -}}
{{- $name = printf "%s-%s" .Release.Name $base -}}
{{- end -}}
{{- end -}}
{{- if gt (len $name) 38 -}}
{{- fail (printf "the chart's name prefix %q is %d characters; at most 38 fit every object name (<prefix>-smart-charging-metrics): use a shorter release name or set fullnameOverride" $name (len $name)) -}}
{{- end -}}
{{- $name | trimSuffix "-" -}}
{{- end -}}

{{- define "csms.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "api") */}}
{{- define "csms.selectorLabels" -}}
app.kubernetes.io/name: {{ include "csms.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of one component's objects */}}
{{- define "csms.labels" -}}
helm.sh/chart: {{ include "csms.chart" .root }}
{{ include "csms.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: csms
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{- define "csms.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{ printf "%s@%s" .Values.image.repository .Values.image.digest | quote }}
{{- else -}}
{{ printf "%s:%s" .Values.image.repository $tag | quote }}
{{- end -}}
{{- end -}}

{{- define "csms.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "csms.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The configuration every role shares: bus and store, partitions, Kafka and Cassandra
security (passwords from existing secrets, CA files from mounted secrets), readiness.
Only CSMS_* variables declared in services/common/config.py (check_chart.py verifies).
*/}}
{{- define "csms.env.engines" -}}
{{- $k := .Values.kafka -}}
{{- $c := .Values.cassandra -}}
- name: CSMS_BUS_URL
  value: {{ $k.url | quote }}
- name: CSMS_STORE_URL
  value: {{ $c.url | quote }}
- name: CSMS_EVENTS_PARTITIONS
  value: {{ .Values.eventsPartitions | quote }}
- name: CSMS_COMMANDS_PARTITIONS
  value: {{ .Values.commandsPartitions | quote }}
- name: CSMS_KAFKA_REPLICATION_FACTOR
  value: {{ $k.replicationFactor | quote }}
- name: CSMS_KAFKA_MIN_INSYNC_REPLICAS
  value: {{ $k.minInsyncReplicas | quote }}
- name: CSMS_KAFKA_SECURITY_PROTOCOL
  value: {{ $k.securityProtocol | quote }}
{{- if hasPrefix "SASL_" $k.securityProtocol }}
- name: CSMS_KAFKA_SASL_MECHANISM
  value: {{ $k.sasl.mechanism | quote }}
- name: CSMS_KAFKA_SASL_USERNAME
  value: {{ $k.sasl.username | quote }}
- name: CSMS_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: { name: {{ $k.sasl.passwordSecret.name | quote }}, key: {{ $k.sasl.passwordSecret.key | quote }} }
{{- end }}
{{- if or (eq $k.securityProtocol "SSL") (eq $k.securityProtocol "SASL_SSL") }}
- name: CSMS_KAFKA_SSL_CHECK_HOSTNAME
  value: {{ $k.tls.checkHostname | quote }}
{{- if $k.tls.caSecret.name }}
- name: CSMS_KAFKA_SSL_CAFILE
  value: /etc/csms/kafka-ca/ca.pem
{{- end }}
{{- if $k.tls.clientCertSecret.name }}
- name: CSMS_KAFKA_SSL_CERTFILE
  value: /etc/csms/kafka-client/tls.crt
- name: CSMS_KAFKA_SSL_KEYFILE
  value: /etc/csms/kafka-client/tls.key
{{- end }}
{{- end }}
{{- if $c.replicationFactor }}
- name: CSMS_CASSANDRA_REPLICATION_FACTOR
  value: {{ $c.replicationFactor | quote }}
{{- end }}
{{- if $c.localDc }}
- name: CSMS_CASSANDRA_LOCAL_DC
  value: {{ $c.localDc | quote }}
{{- end }}
{{- if $c.username }}
- name: CSMS_CASSANDRA_USERNAME
  value: {{ $c.username | quote }}
- name: CSMS_CASSANDRA_PASSWORD
  valueFrom:
    secretKeyRef: { name: {{ $c.passwordSecret.name | quote }}, key: {{ $c.passwordSecret.key | quote }} }
{{- end }}
- name: CSMS_CASSANDRA_SSL
  value: {{ $c.tls.enabled | quote }}
{{- if $c.tls.enabled }}
- name: CSMS_CASSANDRA_SSL_CHECK_HOSTNAME
  value: {{ $c.tls.checkHostname | quote }}
{{- if $c.tls.caSecret.name }}
- name: CSMS_CASSANDRA_SSL_CAFILE
  value: /etc/csms/cassandra-ca/ca.pem
{{- end }}
{{- if $c.tls.clientCertSecret.name }}
- name: CSMS_CASSANDRA_SSL_CERTFILE
  value: /etc/csms/cassandra-client/tls.crt
- name: CSMS_CASSANDRA_SSL_KEYFILE
  value: /etc/csms/cassandra-client/tls.key
{{- end }}
{{- end }}
- name: CSMS_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{/* What the long-running roles share on top of the engines: metrics, security, the pepper
(station passwords and API keys are fingerprinted with it: every pod needs the same one). */}}
{{- define "csms.env.common" -}}
{{- if not .Values.auth.existingSecret }}
{{- fail "auth.existingSecret is empty: create a secret with CSMS_AUTH_PEPPER (and CSMS_API_KEY) and name it here (docs/deploying.md)" }}
{{- end }}
{{ include "csms.env.engines" . }}
- name: CSMS_METRICS_PORT
  value: {{ .Values.metricsPort | quote }}
- name: CSMS_STATION_EVENTS_RETENTION_DAYS
  value: {{ .Values.stationEventsRetentionDays | quote }}
- name: CSMS_DEFAULT_SECURITY_PROFILE
  value: {{ .Values.security.defaultProfile | quote }}
- name: CSMS_READINESS_PROBE_INTERVAL_S
  value: {{ .Values.readiness.probeIntervalSeconds | quote }}
- name: CSMS_READINESS_PROBE_TIMEOUT_S
  value: {{ .Values.readiness.probeTimeoutSeconds | quote }}
- name: CSMS_AUTH_PEPPER
  valueFrom:
    secretKeyRef: { name: {{ .Values.auth.existingSecret | quote }}, key: {{ .Values.auth.pepperKey | quote }} }
{{- end -}}

{{/* Secret files of the engines (CA bundles, client certificates), as volumes and mounts. */}}
{{- define "csms.engineVolumes" -}}
{{- $k := .Values.kafka -}}
{{- $c := .Values.cassandra -}}
{{- if or (eq $k.securityProtocol "SSL") (eq $k.securityProtocol "SASL_SSL") }}
{{- if $k.tls.caSecret.name }}
- name: kafka-ca
  secret: { secretName: {{ $k.tls.caSecret.name | quote }}, defaultMode: 0440, items: [{ key: {{ $k.tls.caSecret.key | quote }}, path: ca.pem }] }
{{- end }}
{{- if $k.tls.clientCertSecret.name }}
- name: kafka-client
  secret:
    secretName: {{ $k.tls.clientCertSecret.name | quote }}
    defaultMode: 0440
    items: [{ key: {{ $k.tls.clientCertSecret.certKey | quote }}, path: tls.crt }, { key: {{ $k.tls.clientCertSecret.keyKey | quote }}, path: tls.key }]
{{- end }}
{{- end }}
{{- if $c.tls.enabled }}
{{- if $c.tls.caSecret.name }}
- name: cassandra-ca
  secret: { secretName: {{ $c.tls.caSecret.name | quote }}, defaultMode: 0440, items: [{ key: {{ $c.tls.caSecret.key | quote }}, path: ca.pem }] }
{{- end }}
{{- if $c.tls.clientCertSecret.name }}
- name: cassandra-client
  secret:
    secretName: {{ $c.tls.clientCertSecret.name | quote }}
    defaultMode: 0440
    items: [{ key: {{ $c.tls.clientCertSecret.certKey | quote }}, path: tls.crt }, { key: {{ $c.tls.clientCertSecret.keyKey | quote }}, path: tls.key }]
{{- end }}
{{- end }}
{{- end -}}

{{- define "csms.engineVolumeMounts" -}}
{{- $k := .Values.kafka -}}
{{- $c := .Values.cassandra -}}
{{- if or (eq $k.securityProtocol "SSL") (eq $k.securityProtocol "SASL_SSL") }}
{{- if $k.tls.caSecret.name }}
- { name: kafka-ca, mountPath: /etc/csms/kafka-ca, readOnly: true }
{{- end }}
{{- if $k.tls.clientCertSecret.name }}
- { name: kafka-client, mountPath: /etc/csms/kafka-client, readOnly: true }
{{- end }}
{{- end }}
{{- if $c.tls.enabled }}
{{- if $c.tls.caSecret.name }}
- { name: cassandra-ca, mountPath: /etc/csms/cassandra-ca, readOnly: true }
{{- end }}
{{- if $c.tls.clientCertSecret.name }}
- { name: cassandra-client, mountPath: /etc/csms/cassandra-client, readOnly: true }
{{- end }}
{{- end }}
{{- end -}}

{{/* extraEnv / extraEnvFrom: the global lists, then the workload's (later entries win). */}}
{{- define "csms.extraEnv" -}}
{{- with .root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .w.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "csms.envFrom" -}}
{{- $all := concat (.root.Values.extraEnvFrom | default list) (.w.extraEnvFrom | default list) -}}
{{- with $all }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Pod-level settings of one workload: (dict "root" $ "w" <workload values> "component" "api").
Service account, security context, scheduling (spread, anti-affinity, node selection).
*/}}
{{- define "csms.podSpec" -}}
{{- $root := .root -}}
{{- $w := .w -}}
serviceAccountName: {{ include "csms.serviceAccountName" $root }}
automountServiceAccountToken: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $w.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with $w.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $w.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $w.affinity }}
affinity:
  {{- toYaml $w.affinity | nindent 2 }}
{{- else if eq ($w.podAntiAffinity | default "") "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "csms.selectorLabels" . | nindent 12 }}
{{- else if eq ($w.podAntiAffinity | default "") "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "csms.selectorLabels" . | nindent 14 }}
{{- end }}
{{- if $root.Values.topologySpread.enabled }}
topologySpreadConstraints:
{{- range $root.Values.topologySpread.topologyKeys }}
  - maxSkew: {{ $root.Values.topologySpread.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "csms.selectorLabels" $ | nindent 8 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod template metadata: labels (selector + podLabels), annotations. */}}
{{- define "csms.podMetadata" -}}
labels:
  {{- include "csms.labels" . | nindent 2 }}
  {{- with .w.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $ann := merge (dict) (.w.podAnnotations | default dict) (.root.Values.podAnnotations | default dict) }}
{{- with $ann }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Probes on /healthz (startup, liveness) and /readyz (readiness): (dict "port" "metrics" "p" .Values.probes) */}}
{{- define "csms.probes" -}}
startupProbe:
  httpGet: { path: /healthz, port: {{ .port }} }
  periodSeconds: {{ .p.startup.periodSeconds }}
  timeoutSeconds: {{ .p.startup.timeoutSeconds }}
  failureThreshold: {{ .p.startup.failureThreshold }}
readinessProbe:
  httpGet: { path: /readyz, port: {{ .port }} }
  periodSeconds: {{ .p.readiness.periodSeconds }}
  timeoutSeconds: {{ .p.readiness.timeoutSeconds }}
  failureThreshold: {{ .p.readiness.failureThreshold }}
livenessProbe:
  httpGet: { path: /healthz, port: {{ .port }} }
  periodSeconds: {{ .p.liveness.periodSeconds }}
  timeoutSeconds: {{ .p.liveness.timeoutSeconds }}
  failureThreshold: {{ .p.liveness.failureThreshold }}
{{- end -}}

{{/* The container's writable places (read-only root filesystem): /tmp, and the workload's extra mounts. */}}
{{- define "csms.volumeMounts" -}}
- { name: tmp, mountPath: /tmp }
{{ include "csms.engineVolumeMounts" .root }}
{{- with .w.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "csms.volumes" -}}
- name: tmp
  emptyDir: { sizeLimit: {{ .root.Values.tmpSizeLimit | quote }} }
{{ include "csms.engineVolumes" .root }}
{{- with .w.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget for one workload: (dict "root" $ "w" <values> "component" "api") */}}
{{- define "csms.pdb" -}}
{{- if .w.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "csms.fullname" .root }}-{{ .component }}
  labels:
    {{- include "csms.labels" . | nindent 4 }}
spec:
  {{- if .w.pdb.minAvailable }}
  minAvailable: {{ .w.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .w.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "csms.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* A headless Service exposing only the metrics port (scraped through a ServiceMonitor). */}}
{{- define "csms.metricsService" -}}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "csms.fullname" .root }}-{{ .component }}-metrics
  labels:
    {{- include "csms.labels" . | nindent 4 }}
    csms/metrics: "true"
spec:
  clusterIP: None
  selector:
    {{- include "csms.selectorLabels" . | nindent 4 }}
  ports:
    - { name: metrics, port: {{ .root.Values.metricsPort }}, targetPort: metrics }
{{- end -}}

{{/* A HorizontalPodAutoscaler capped at `cap` (the partitions the workload consumes; 0 = none). */}}
{{- define "csms.hpa" -}}
{{- $a := .w.autoscaling -}}
{{- if $a.enabled }}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) }}
{{- fail (printf "%s.autoscaling: minReplicas (%d) > maxReplicas (%d)" .key (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- end }}
{{- if and (gt (int .cap) 0) (gt (int $a.maxReplicas) (int .cap)) }}
{{- fail (printf "%s.autoscaling.maxReplicas (%d) > eventsPartitions (%d): a consumer group never uses more pods than partitions; raise eventsPartitions or lower maxReplicas" .key (int $a.maxReplicas) (int .cap)) }}
{{- end }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "csms.fullname" .root }}-{{ .component }}
  labels:
    {{- include "csms.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "csms.fullname" .root }}-{{ .component }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: { type: Utilization, averageUtilization: {{ $a.targetCPUUtilizationPercentage }} }
    {{- if $a.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target: { type: Utilization, averageUtilization: {{ $a.targetMemoryUtilizationPercentage }} }
    {{- end }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}
