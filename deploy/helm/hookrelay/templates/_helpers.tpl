{{/* Names and labels. */}}
{{- define "hookrelay.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hookrelay.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The selector of one process's pods: (dict "root" $ "process" "receiver"). */}}
{{- define "hookrelay.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .process }}
{{- end -}}

{{/* The ports of each process: its admin port (/healthz, /readyz, /metrics) and its own. */}}
{{- define "hookrelay.adminPort" -}}
{{- get (dict "receiver" 9082 "worker" 9083 "reconciler" 9084 "console" 9085) . -}}
{{- end -}}

{{/* Where each secret is mounted, and the secrets each process mounts. */}}
{{- define "hookrelay.secretDir" -}}/run/secrets/hookrelay/{{ . | kebabcase }}{{- end -}}

{{- define "hookrelay.secretsOf" -}}
{{- $of := dict "receiver" (list "hook" "natsCredentials" "natsTls") "worker" (list "natsCredentials" "natsTls") "reconciler" (list "natsCredentials" "natsTls" "oktaApiToken" "oktaPrivateKey") "console" (list "natsCredentials" "natsTls" "oktaApiToken" "oktaPrivateKey" "consoleClientSecret") -}}
{{- get $of . | toJson -}}
{{- end -}}

{{/*
The configuration file every process reads: `config` from the values, with what a pod needs
laid over it (listen addresses on the pod's interfaces, the mounted secrets' paths, tracing).
Keys it leaves out keep the binaries' defaults.
*/}}
{{- define "hookrelay.config" -}}
{{- $v := .Values -}}
{{- $s := $v.secrets -}}
{{- $pod := dict
  "receiver" (dict "listen" "0.0.0.0:8082" "admin_listen" "0.0.0.0:9082")
  "worker" (dict "admin_listen" "0.0.0.0:9083")
  "reconciler" (dict "admin_listen" "0.0.0.0:9084")
  "console" (dict "listen" "0.0.0.0:8090" "admin_listen" "0.0.0.0:9085")
  "nats" (dict)
  "okta" (dict)
  "telemetry" (dict)
-}}
{{- if $s.hook.existingSecret -}}
{{- $_ := set $pod.receiver "auth" (dict "secret_file" (printf "%s/%s" (include "hookrelay.secretDir" "hook") $s.hook.key)) -}}
{{- end -}}
{{- if $s.natsCredentials.existingSecret -}}
{{- $_ := set $pod.nats "credentials_file" (printf "%s/%s" (include "hookrelay.secretDir" "natsCredentials") $s.natsCredentials.key) -}}
{{- end -}}
{{- if $s.natsTls.existingSecret -}}
{{- $tls := dict -}}
{{- $dir := include "hookrelay.secretDir" "natsTls" -}}
{{- if $s.natsTls.caKey }}{{ $_ := set $tls "ca_file" (printf "%s/%s" $dir $s.natsTls.caKey) }}{{ end -}}
{{- if $s.natsTls.certKey }}{{ $_ := set $tls "cert_file" (printf "%s/%s" $dir $s.natsTls.certKey) }}{{ end -}}
{{- if $s.natsTls.keyKey }}{{ $_ := set $tls "key_file" (printf "%s/%s" $dir $s.natsTls.keyKey) }}{{ end -}}
{{- $_ := set $tls "required" true -}}
{{- $_ := set $pod.nats "tls" $tls -}}
{{- end -}}
{{- if $s.oktaApiToken.existingSecret -}}
{{- $_ := set $pod.okta "api_token_file" (printf "%s/%s" (include "hookrelay.secretDir" "oktaApiToken") $s.oktaApiToken.key) -}}
{{- end -}}
{{- if $s.oktaPrivateKey.existingSecret -}}
{{- $_ := set $pod.okta "private_key_file" (printf "%s/%s" (include "hookrelay.secretDir" "oktaPrivateKey") $s.oktaPrivateKey.key) -}}
{{- end -}}
{{- if and $s.consoleClientSecret.existingSecret (dig "console" "oidc" nil $v.config) -}}
{{- $_ := set $pod.console "oidc" (dict "client_secret_file" (printf "%s/%s" (include "hookrelay.secretDir" "consoleClientSecret") $s.consoleClientSecret.key)) -}}
{{- end -}}
{{- if $v.tracing.endpoint -}}
{{- $_ := set $pod.telemetry "endpoint" $v.tracing.endpoint -}}
{{- if $v.tracing.sampler }}{{ $_ := set $pod.telemetry "sampler" $v.tracing.sampler }}{{ end -}}
{{- if $v.tracing.samplerArg }}{{ $_ := set $pod.telemetry "sampler_arg" (toString $v.tracing.samplerArg) }}{{ end -}}
{{- end -}}
{{- $config := mustMergeOverwrite (deepCopy $v.config) $pod -}}
{{- range $section := list "nats" "okta" "telemetry" -}}
{{- if empty (get $config $section) }}{{ $_ := unset $config $section }}{{ end -}}
{{- end -}}
{{- toToml $config -}}
{{- end -}}

{{/*
One process's Deployment: (dict "root" $ "process" "worker" "values" .Values.worker
"ports" (list (dict "name" "http" "port" 8082))).
*/}}
{{- define "hookrelay.deployment" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $name := printf "%s-%s" (include "hookrelay.fullname" $root) .process -}}
{{- $secrets := include "hookrelay.secretsOf" .process | fromJsonArray -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "hookrelay.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .process }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- include "hookrelay.selector" (dict "root" $root "process" .process) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "hookrelay.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .process }}
      annotations:
        # A changed configuration rolls the pods.
        checksum/config: {{ include "hookrelay.config" $root | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile:
          type: RuntimeDefault
      {{- if $root.Values.topologySpread.enabled }}
      topologySpreadConstraints:
        {{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
        - maxSkew: 1
          topologyKey: {{ $key }}
          whenUnsatisfiable: {{ $root.Values.topologySpread.whenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- include "hookrelay.selector" (dict "root" $root "process" $.process) | nindent 14 }}
        {{- end }}
      {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .process }}
          image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag | default $root.Chart.AppVersion }}"
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: [{{ .process | quote }}]
          args: ["--config", "/etc/hookrelay/hookrelay.toml"]
          env:
            - name: RUST_LOG
              value: ""
            {{- if $root.Values.tracing.endpoint }}
            # Which pod a span came from, in OpenTelemetry's Kubernetes resource attributes.
            - name: K8S_POD_NAME
              valueFrom:
                fieldRef: {fieldPath: metadata.name}
            - name: K8S_NAMESPACE_NAME
              valueFrom:
                fieldRef: {fieldPath: metadata.namespace}
            - name: OTEL_RESOURCE_ATTRIBUTES
              value: {{ list "k8s.pod.name=$(K8S_POD_NAME)" "k8s.namespace.name=$(K8S_NAMESPACE_NAME)" (printf "k8s.deployment.name=%s" $name) (dig "telemetry" "resource_attributes" "" $root.Values.config) | compact | join "," | quote }}
            {{- end }}
            {{- with $root.Values.secrets.otlpHeaders }}
            {{- if and .existingSecret $root.Values.tracing.endpoint }}
            - name: OTEL_EXPORTER_OTLP_HEADERS
              valueFrom:
                secretKeyRef:
                  name: {{ .existingSecret }}
                  key: {{ .key }}
            {{- end }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
            - name: admin
              containerPort: {{ include "hookrelay.adminPort" .process }}
              protocol: TCP
          startupProbe:
            httpGet: {path: /healthz, port: admin}
            periodSeconds: 2
            failureThreshold: 30
          livenessProbe:
            httpGet: {path: /healthz, port: admin}
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: /readyz, port: admin}
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          {{- if has .process (list "receiver" "console") }}
          # Kubernetes stops sending new connections a moment after SIGTERM, not at it: the pod
          # keeps listening that moment, then drains what it has (no distroless shell: the
          # sleep action, Kubernetes 1.30).
          lifecycle:
            preStop:
              sleep:
                seconds: 5
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            capabilities:
              drop: [ALL]
            seccompProfile:
              type: RuntimeDefault
          volumeMounts:
            - name: config
              mountPath: /etc/hookrelay
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- range $secret := $secrets }}
            {{- if (get $root.Values.secrets $secret).existingSecret }}
            - name: secret-{{ $secret | kebabcase }}
              mountPath: {{ include "hookrelay.secretDir" $secret }}
              readOnly: true
            {{- end }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "hookrelay.fullname" $root }}-config
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- range $secret := $secrets }}
        {{- with (get $root.Values.secrets $secret) }}
        {{- if .existingSecret }}
        - name: secret-{{ $secret | kebabcase }}
          secret:
            secretName: {{ .existingSecret }}
            defaultMode: 0440
        {{- end }}
        {{- end }}
        {{- end }}
{{- end -}}

{{/* A PodDisruptionBudget for one process: (dict "root" $ "process" "receiver" "values" .Values.receiver). */}}
{{- define "hookrelay.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "hookrelay.fullname" .root }}-{{ .process }}
  labels:
    {{- include "hookrelay.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .process }}
spec:
  {{- toYaml .values.podDisruptionBudget | nindent 2 }}
  selector:
    matchLabels:
      {{- include "hookrelay.selector" . | nindent 6 }}
{{- end -}}
