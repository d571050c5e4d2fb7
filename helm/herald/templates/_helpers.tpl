{{/* Chart name, truncated to the 63 characters Kubernetes allows in names. */}}
{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-herald, or the release name if it already contains it. */}}
{{- define "herald.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one service's resources: <fullname>-<service>. Call with (dict "root" $ "name" $name). */}}
{{- define "herald.componentName" -}}
{{- printf "%s-%s" (include "herald.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "herald.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels common to every resource of the release. */}}
{{- define "herald.labels" -}}
helm.sh/chart: {{ include "herald.chart" . }}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: herald
{{- end }}

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one service's resources. Call with (dict "root" $ "name" $name). */}}
{{- define "herald.componentLabels" -}}
{{ include "herald.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/* Selector of one service's pods. Call with (dict "root" $ "name" $name). */}}
{{- define "herald.componentSelectorLabels" -}}
{{ include "herald.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "herald.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "herald.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the pods read HERALD_DATABASE_URL, HERALD_SMTP_PASSWORD, HERALD_DEV_API_KEY from. */}}
{{- define "herald.secretName" -}}
{{- if .Values.secrets.create }}
{{- printf "%s-secrets" (include "herald.fullname" .) }}
{{- else }}
{{- required "set secrets.existingSecret to the name of a Secret holding HERALD_DATABASE_URL (or secrets.create=true)" .Values.secrets.existingSecret }}
{{- end }}
{{- end }}

{{/* Data of the chart-managed Secret (secrets.create=true). */}}
{{- define "herald.secretData" -}}
{{- $values := .Values.secrets.values | default dict }}
{{- $_ := required "secrets.create=true needs secrets.values.HERALD_DATABASE_URL" (get $values "HERALD_DATABASE_URL") }}
{{- range $key, $value := $values }}
{{- if not (hasPrefix "HERALD_" $key) }}
{{- fail (printf "secrets.values.%s: keys must be HERALD_* environment variable names" $key) }}
{{- end }}
{{ $key }}: {{ $value | toString | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
Non-secret HERALD_* environment, one `NAME: "value"` per line: the ConfigMap's data, and the hook
Job's env (the ConfigMap does not exist yet when a pre-install hook runs).
*/}}
{{- define "herald.configData" -}}
HERALD_KAFKA_BOOTSTRAP_SERVERS: {{ .Values.config.kafkaBootstrapServers | quote }}
HERALD_TOPIC_PREFIX: {{ .Values.config.topicPrefix | quote }}
HERALD_KAFKA_IDEMPOTENT_PRODUCER: {{ .Values.config.kafkaIdempotentProducer | toString | quote }}
HERALD_KAFKA_TOPIC_PARTITIONS: {{ .Values.config.kafkaTopicPartitions | toString | quote }}
{{- with .Values.config.kafkaTopicPartitionsByName }}
HERALD_KAFKA_TOPIC_PARTITIONS_BY_NAME: {{ toJson . | quote }}
{{- end }}
HERALD_KAFKA_REPLICATION_FACTOR: {{ .Values.config.kafkaReplicationFactor | toString | quote }}
HERALD_KAFKA_SECURITY_PROTOCOL: {{ .Values.config.kafkaSecurityProtocol | quote }}
HERALD_KAFKA_SSL_CHECK_HOSTNAME: {{ .Values.config.kafkaSslCheckHostname | toString | quote }}
{{- with .Values.config.kafkaSaslMechanism }}
HERALD_KAFKA_SASL_MECHANISM: {{ . | quote }}
{{- end }}
{{- with .Values.config.kafkaSaslUsername }}
HERALD_KAFKA_SASL_USERNAME: {{ . | quote }}
{{- end }}
{{- with .Values.config.kafkaOauthTokenUrl }}
HERALD_KAFKA_OAUTH_TOKEN_URL: {{ . | quote }}
{{- end }}
{{- with .Values.config.kafkaOauthClientId }}
HERALD_KAFKA_OAUTH_CLIENT_ID: {{ . | quote }}
{{- end }}
{{- with .Values.config.kafkaOauthScope }}
HERALD_KAFKA_OAUTH_SCOPE: {{ . | quote }}
{{- end }}
{{- if .Values.kafkaTls.secretName }}
{{- /* Every pod mounts the Secret there (herald.kafkaTlsVolume). */}}
HERALD_KAFKA_SSL_CA_FILE: "/etc/herald/kafka-tls/ca.crt"
{{- if .Values.kafkaTls.clientCertificate }}
HERALD_KAFKA_SSL_CERT_FILE: "/etc/herald/kafka-tls/tls.crt"
HERALD_KAFKA_SSL_KEY_FILE: "/etc/herald/kafka-tls/tls.key"
{{- end }}
{{- end }}
HERALD_REDIS_URL: {{ .Values.config.redisUrl | quote }}
HERALD_SMTP_HOST: {{ .Values.config.smtpHost | quote }}
HERALD_SMTP_PORT: {{ .Values.config.smtpPort | toString | quote }}
HERALD_SMTP_START_TLS: {{ .Values.config.smtpStartTls | toString | quote }}
HERALD_SMTP_USE_TLS: {{ .Values.config.smtpUseTls | toString | quote }}
{{- with .Values.config.smtpUsername }}
HERALD_SMTP_USERNAME: {{ . | quote }}
{{- end }}
HERALD_SMTP_FROM: {{ .Values.config.smtpFrom | quote }}
HERALD_GATEWAY_PORT: {{ .Values.gatewayPort | toString | quote }}
{{- if .Values.gatewayTls.secretName }}
{{- /* Only the gateway reads these; its pods mount the Secret there (deployment.yaml). */}}
HERALD_GATEWAY_TLS_CERT_FILE: "/etc/herald/tls/tls.crt"
HERALD_GATEWAY_TLS_KEY_FILE: "/etc/herald/tls/tls.key"
{{- end }}
HERALD_OPS_PORT: {{ .Values.opsPort | toString | quote }}
HERALD_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
{{- with .Values.config.otlpEndpoint }}
HERALD_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
HERALD_TRACE_SAMPLE_RATIO: {{ .Values.config.traceSampleRatio | toString | quote }}
{{- range $key, $value := .Values.extraEnv }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* The same configuration as a container `env:` list. */}}
{{- define "herald.configEnv" -}}
{{- range $key, $value := (include "herald.configData" . | fromYaml) }}
- name: {{ $key }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* The Kafka TLS Secret as a volume mount (nindent it under volumeMounts:), if kafkaTls.secretName is set. */}}
{{- define "herald.kafkaTlsMount" -}}
{{- if .Values.kafkaTls.secretName }}
- name: kafka-tls
  mountPath: /etc/herald/kafka-tls
  readOnly: true
{{- end }}
{{- end }}

{{/* The Kafka TLS Secret as a volume (nindent it under volumes:), if kafkaTls.secretName is set. */}}
{{- define "herald.kafkaTlsVolume" -}}
{{- if .Values.kafkaTls.secretName }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafkaTls.secretName }}
{{- end }}
{{- end }}

{{/*
"true" when KEDA scales this service on its consumer group's lag (keda.yaml): then neither its HPA nor a
replica count is rendered. Call with (dict "root" $ "svc" $svc).
*/}}
{{- define "herald.kedaScaled" -}}
{{- if and .root.Values.keda.enabled .svc.enabled (dig "keda" "enabled" false .svc) }}true{{ end }}
{{- end }}

{{/*
The topic a consuming service reads and its consumer group, as shared/topics.py names them:
<prefix>.<name>.v1 (v1: CONTRACT_VERSION there) and <prefix>.<service>. check_deploy.sh compares the
rendered names with shared/topics.py. Call with (dict "root" $ "name" $name).
*/}}
{{- /* The topics a service consumes, comma-separated: a prioritised stream's three lanes (shared/topics.py). */}}
{{- define "herald.consumedTopics" -}}
{{- $names := dict "ingest" "requests" "router" "routable" "sender-email" "send.email" "sender-sms" "send.sms" "sender-push" "send.push" "sender-webhook" "send.webhook" "retry" "delay" "status" "status" "dead-letters" "dlq" }}
{{- $name := required (printf "services.%s.keda: KEDA scales consumers of Herald's topics, and %s is none" .name .name) (get $names .name) }}
{{- $prefix := .root.Values.config.topicPrefix }}
{{- if has $name (list "delay" "status" "dlq") }}
{{- printf "%s.%s.v1" $prefix $name }}
{{- else }}
{{- printf "%s.%s.high.v1,%s.%s.v1,%s.%s.low.v1" $prefix $name $prefix $name $prefix $name }}
{{- end }}
{{- end }}

{{- define "herald.consumerGroup" -}}
{{- printf "%s.%s" .root.Values.config.topicPrefix .name }}
{{- end }}

{{/* KEDA's name for the SASL mechanism of config.kafkaSaslMechanism. */}}
{{- define "herald.kedaSasl" -}}
{{- get (dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512" "OAUTHBEARER" "oauthbearer") .Values.config.kafkaSaslMechanism }}
{{- end }}
