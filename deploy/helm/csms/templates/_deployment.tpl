{{/*
A Deployment of one role (the API and every processor), its PDB, its HPA and its metrics
Service: (dict "root" $ "w" <values> "component" "sessions" "key" "processors.sessions"
"roleEnv" <yaml env entries> "ports" <yaml container ports> "probePort" "metrics"
"preStop" <seconds> "cap" <HPA cap, 0 = none>).
*/}}
{{- define "csms.deployment" -}}
{{- $root := .root -}}
{{- $w := .w -}}
{{- $ctx := dict "root" $root "w" $w "component" .component }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "csms.fullname" $root }}-{{ .component }}
  labels:
    {{- include "csms.labels" $ctx | nindent 4 }}
spec:
  {{- if not $w.autoscaling.enabled }}
  replicas: {{ $w.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate: { maxUnavailable: 0, maxSurge: 1 }
  selector:
    matchLabels:
      {{- include "csms.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      {{- include "csms.podMetadata" $ctx | nindent 6 }}
    spec:
      {{- include "csms.podSpec" $ctx | nindent 6 }}
      terminationGracePeriodSeconds: {{ $w.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .component }}
          image: {{ include "csms.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [{{ .component | quote }}]
          env:
            {{- include "csms.env.common" $root | nindent 12 }}
            {{- with .roleEnv }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- include "csms.extraEnv" $ctx | nindent 12 }}
          {{- include "csms.envFrom" $ctx | nindent 10 }}
          ports:
            {{- with .ports }}
            {{- . | nindent 12 }}
            {{- end }}
            - { name: metrics, containerPort: {{ $root.Values.metricsPort }}, protocol: TCP }
          {{- include "csms.probes" (dict "port" .probePort "p" $root.Values.probes) | nindent 10 }}
          {{- if gt (int (.preStop | default 0)) 0 }}
          lifecycle:
            preStop:
              exec: { command: ["sleep", {{ .preStop | quote }}] }
          {{- end }}
          resources:
            {{- toYaml $w.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "csms.volumeMounts" $ctx | nindent 12 }}
            {{- with .mounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "csms.volumes" $ctx | nindent 8 }}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
{{- include "csms.pdb" $ctx }}
{{ include "csms.metricsService" $ctx }}
{{- include "csms.hpa" (dict "root" $root "w" $w "component" .component "key" .key "cap" .cap) }}
{{- end -}}
