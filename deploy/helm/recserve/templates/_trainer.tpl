{{/* The trainer's pod spec, shared by its Deployment and its CronJob. */}}
{{- define "recserve.trainerPodSpec" -}}
serviceAccountName: {{ include "recserve.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if eq .Values.trainer.mode "cronjob" }}
restartPolicy: OnFailure
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
containers:
  - name: trainer
    image: {{ include "recserve.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args:
      - trainer
      - -brokers=$(RECSERVE_KAFKA_BROKERS)
      - -topic=$(RECSERVE_KAFKA_TOPIC)
      - -registry=$(RECSERVE_REGISTRY)
      - -log-dir={{ .Values.trainer.eventLog.mountPath }}
      - -metrics-addr=:{{ .Values.trainer.metricsPort }}
      {{- with .Values.trainer.model }}
      - -model={{ . }}
      {{- end }}
      {{- range .Values.trainer.extraArgs }}
      - {{ . | quote }}
      {{- end }}
      {{- if eq .Values.trainer.mode "cronjob" }}
      {{- range .Values.trainer.cronjob.extraArgs }}
      - {{ . | quote }}
      {{- end }}
      {{- end }}
    ports:
      - name: metrics
        containerPort: {{ .Values.trainer.metricsPort }}
    envFrom:
      {{- include "recserve.envFrom" . | nindent 6 }}
    resources:
      {{- toYaml .Values.trainer.resources | nindent 6 }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    volumeMounts:
      {{- if not .Values.registry.s3.url }}
      - name: registry
        mountPath: {{ .Values.registry.mountPath }}
      {{- end }}
      - name: eventlog
        mountPath: {{ .Values.trainer.eventLog.mountPath }}
      - name: tmp
        mountPath: /tmp
volumes:
  {{- include "recserve.registryVolume" . | nindent 2 }}
  - name: eventlog
  {{- if or .Values.trainer.eventLog.existingClaim .Values.trainer.eventLog.persistence.enabled }}
    persistentVolumeClaim:
      claimName: {{ include "recserve.eventLogClaim" . }}
  {{- else }}
    emptyDir: {}
  {{- end }}
  - name: tmp
    emptyDir: {}
{{- with .Values.trainer.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.trainer.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.trainer.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The claim holding the trainer's event log. */}}
{{- define "recserve.eventLogClaim" -}}
{{- if .Values.trainer.eventLog.existingClaim }}
{{- .Values.trainer.eventLog.existingClaim }}
{{- else }}
{{- printf "%s-eventlog" (include "recserve.fullname" .) }}
{{- end }}
{{- end }}

{{- define "recserve.trainerPodMetadata" -}}
labels:
  {{- include "recserve.labels" . | nindent 2 }}
  app.kubernetes.io/component: trainer
annotations:
  checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
  {{- if .Values.metrics.annotations }}
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ .Values.trainer.metricsPort | quote }}
  prometheus.io/path: {{ .Values.metrics.path | quote }}
  prometheus.io/scheme: "http"
  {{- end }}
  {{- with .Values.trainer.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
