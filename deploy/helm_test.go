package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/recserve"

// kinds are the objects the chart may render, as "apiVersion kind". Anything else
// fails the test: a new kind is added here, with the checks it needs.
var kinds = map[string]func() object{
	"v1 ConfigMap":                           func() object { return &corev1.ConfigMap{} },
	"v1 PersistentVolumeClaim":               func() object { return &corev1.PersistentVolumeClaim{} },
	"v1 Service":                             func() object { return &corev1.Service{} },
	"v1 ServiceAccount":                      func() object { return &corev1.ServiceAccount{} },
	"apps/v1 Deployment":                     func() object { return &appsv1.Deployment{} },
	"autoscaling/v2 HorizontalPodAutoscaler": func() object { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1 PodDisruptionBudget":          func() object { return &policyv1.PodDisruptionBudget{} },
	"batch/v1 CronJob":                       func() object { return &batchv1.CronJob{} },
}

type object interface {
	GetName() string
	GetLabels() map[string]string
}

// manifest is one rendered object.
type manifest struct {
	source string // the template, from helm's "# Source:" comment
	kind   string // "apiVersion kind"
	obj    object
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeManifests splits a multi-document YAML stream and decodes each document
// strictly into its Kubernetes API type: duplicate keys, unknown fields, bad
// quantities and kinds outside the kinds table are errors.
func decodeManifests(stream []byte) ([]manifest, error) {
	var out []manifest
	for _, doc := range docSeparator.Split(string(stream), -1) {
		var source string
		empty := true
		for _, line := range strings.Split(doc, "\n") {
			trimmed := strings.TrimSpace(line)
			if s, ok := strings.CutPrefix(trimmed, "# Source: "); ok {
				source = s
			}
			if trimmed != "" && !strings.HasPrefix(trimmed, "#") {
				empty = false
			}
		}
		if empty {
			continue
		}
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(js, &tm); err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		kind := tm.APIVersion + " " + tm.Kind
		newObj, ok := kinds[kind]
		if !ok {
			return nil, fmt.Errorf("%s: unexpected kind %q", source, kind)
		}
		obj := newObj()
		if err := decodeJSONStrict(js, obj); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", source, kind, err)
		}
		out = append(out, manifest{source: source, kind: kind, obj: obj})
	}
	return out, nil
}

func TestDecodeManifestsIsStrict(t *testing.T) {
	const svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n    - port: 9090\n"
	tests := []struct {
		name, doc, err string
	}{
		{"valid", "# Source: x\n" + svc + "---\n# only a comment\n", ""},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n", `unexpected kind "v1 Pod"`},
		{"unknown version", "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\n", "unexpected kind"},
		{"unknown field", svc + "  clusterIp: None\n", `unknown field "spec.clusterIp"`},
		{"duplicate key", svc + "  ports: []\n", "already set"},
		{"bad quantity", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: c\nspec:\n  resources:\n    requests:\n      storage: 20GB!\n", "quantities must match"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  replicas: two\n", "cannot unmarshal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := decodeManifests([]byte(tc.doc))
			if tc.err == "" {
				if err != nil || len(ms) != 1 || ms[0].obj.GetName() != "s" || ms[0].source != "x" {
					t.Fatalf("got %v, %v", ms, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want one containing %q", err, tc.err)
			}
		})
	}
}

// helm returns the helm binary. In CI (CI=true) a missing helm fails the test;
// elsewhere it skips it.
func helm(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if p := filepath.Join(build.Default.GOPATH, "bin", "helm"); fileExists(p) {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("helm is not installed: .ci/tools.sh installs it")
	}
	t.Skip("helm is not installed (bash .ci/tools.sh installs it)")
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// helmTemplate renders the chart with the given extra arguments.
func helmTemplate(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin := helm(t)
	home := t.TempDir()
	cmd := exec.Command(bin, append([]string{"template", "rel", chartDir, "--namespace", "recs", "--kube-version", "1.31.0"}, args...)...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm template %v: %v: %s", args, err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// rendered is a rendered chart, decoded.
type rendered struct {
	all          []manifest
	configMap    *corev1.ConfigMap
	server       *appsv1.Deployment
	trainer      *corev1.PodTemplateSpec
	trainerDepl  *appsv1.Deployment
	trainerCron  *batchv1.CronJob
	services     []*corev1.Service
	pvcs         []*corev1.PersistentVolumeClaim
	hpa          *autoscalingv2.HorizontalPodAutoscaler
	pdb          *policyv1.PodDisruptionBudget
	kindsCounted map[string]int
}

func render(t *testing.T, args ...string) rendered {
	t.Helper()
	out, err := helmTemplate(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := decodeManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	r := rendered{all: ms, kindsCounted: map[string]int{}}
	for _, m := range ms {
		r.kindsCounted[m.kind]++
		component := m.obj.GetLabels()["app.kubernetes.io/component"]
		switch o := m.obj.(type) {
		case *corev1.ConfigMap:
			r.configMap = o
		case *appsv1.Deployment:
			switch component {
			case "server":
				r.server = o
			case "trainer":
				r.trainerDepl, r.trainer = o, &o.Spec.Template
			default:
				t.Fatalf("deployment %s: component %q", o.Name, component)
			}
		case *batchv1.CronJob:
			r.trainerCron, r.trainer = o, &o.Spec.JobTemplate.Spec.Template
		case *corev1.Service:
			r.services = append(r.services, o)
		case *corev1.PersistentVolumeClaim:
			r.pvcs = append(r.pvcs, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.hpa = o
		case *policyv1.PodDisruptionBudget:
			r.pdb = o
		}
	}
	if r.server == nil || r.configMap == nil {
		t.Fatalf("no server Deployment or ConfigMap among %v", r.kindsCounted)
	}
	return r
}

func TestHelmChart(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		kinds map[string]int
		check func(t *testing.T, r rendered)
	}{
		{
			name: "default values",
			kinds: map[string]int{
				"v1 ConfigMap": 1, "v1 PersistentVolumeClaim": 2, "v1 Service": 2, "v1 ServiceAccount": 1,
				"apps/v1 Deployment": 2, "autoscaling/v2 HorizontalPodAutoscaler": 1, "policy/v1 PodDisruptionBudget": 1,
			},
			check: func(t *testing.T, r rendered) {
				c := container(t, &r.server.Spec.Template, "server")
				for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
					if p == nil || p.GRPC == nil || p.GRPC.Port != 9090 {
						t.Errorf("%s probe %+v: want grpc on 9090", name, p)
					}
				}
				if r.server.Spec.Replicas != nil {
					t.Error("replicas set although the HPA owns them")
				}
				if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
					t.Error("no preStop sleep")
				}
				if hasVolume(&r.server.Spec.Template, "tls") || !slices.Contains(c.Args, "-plaintext") {
					t.Error("without tls.enabled: want no tls volume, and -plaintext (the server requires TLS otherwise)")
				}
				claim := claimOf(t, &r.server.Spec.Template, "registry")
				pvc := findPVC(t, r, claim)
				if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
					t.Errorf("registry claim %s is %v: servers on several nodes and the trainer share it", claim, pvc.Spec.AccessModes)
				}
				findPVC(t, r, claimOf(t, r.trainer, "eventlog"))
				if r.trainerDepl == nil || r.trainerDepl.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || *r.trainerDepl.Spec.Replicas != 1 {
					t.Errorf("trainer deployment %+v: want 1 replica, Recreate", r.trainerDepl)
				}
				if r.hpa.Spec.MinReplicas == nil || *r.hpa.Spec.MinReplicas > r.hpa.Spec.MaxReplicas {
					t.Errorf("hpa replicas %v..%d", r.hpa.Spec.MinReplicas, r.hpa.Spec.MaxReplicas)
				}
				var headless bool
				for _, s := range r.services {
					headless = headless || s.Spec.ClusterIP == corev1.ClusterIPNone
				}
				if !headless {
					t.Error("no headless Service for client-side balancing")
				}
			},
		},
		{
			name: "tls, cronjob trainer, existing claim",
			args: []string{"-f", filepath.Join(chartDir, "ci", "tls-cronjob-values.yaml")},
			kinds: map[string]int{
				"v1 ConfigMap": 1, "v1 PersistentVolumeClaim": 1, "v1 Service": 1, "v1 ServiceAccount": 1,
				"apps/v1 Deployment": 1, "batch/v1 CronJob": 1, "policy/v1 PodDisruptionBudget": 1,
			},
			check: func(t *testing.T, r rendered) {
				pod := &r.server.Spec.Template
				c := container(t, pod, "server")
				// The kubelet's gRPC probes speak plaintext: with TLS they check TCP.
				for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
					if p == nil || p.GRPC != nil || p.TCPSocket == nil || p.TCPSocket.Port.String() != "grpc" {
						t.Errorf("%s probe %+v: want tcpSocket on grpc", name, p)
					}
				}
				var secret string
				for _, v := range pod.Spec.Volumes {
					if v.Name == "tls" && v.Secret != nil {
						secret = v.Secret.SecretName
					}
				}
				if secret != "recserve-tls" {
					t.Errorf("tls secret volume %q", secret)
				}
				mount := mountOf(c, "tls")
				if mount == nil || !mount.ReadOnly {
					t.Fatalf("tls mount %+v: want read-only", mount)
				}
				if slices.Contains(c.Args, "-plaintext") {
					t.Error("-plaintext with TLS")
				}
				if pod.Annotations["prometheus.io/scheme"] != "https" {
					t.Errorf("scrape scheme %q: the HTTP port serves TLS", pod.Annotations["prometheus.io/scheme"])
				}
				for _, f := range []string{"tls-cert", "tls-key", "tls-ca"} {
					v, ok := flagValue(c.Args, f)
					if !ok || !strings.HasPrefix(v, mount.MountPath+"/") {
						t.Errorf("-%s %q: want a file under %s", f, v, mount.MountPath)
					}
				}
				if claimOf(t, pod, "registry") != "shared-models" || claimOf(t, r.trainer, "registry") != "shared-models" {
					t.Error("existingClaim not used for the registry")
				}
				for _, pvc := range r.pvcs {
					if pvc.Name == "shared-models" {
						t.Error("the chart created the existing claim")
					}
				}
				if r.server.Spec.Replicas == nil || *r.server.Spec.Replicas != 3 {
					t.Errorf("replicas %v, want 3", r.server.Spec.Replicas)
				}
				if r.pdb.Spec.MinAvailable == nil || r.pdb.Spec.MinAvailable.IntValue() != 2 || r.pdb.Spec.MaxUnavailable != nil {
					t.Errorf("pdb %+v", r.pdb.Spec)
				}
				cj := r.trainerCron
				if cj.Spec.Schedule != "30 2 * * *" || cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
					t.Errorf("cronjob schedule %q, concurrency %q", cj.Spec.Schedule, cj.Spec.ConcurrencyPolicy)
				}
				if r.trainer.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
					t.Errorf("job restartPolicy %q", r.trainer.Spec.RestartPolicy)
				}
				if v, _ := flagValue(container(t, r.trainer, "trainer").Args, "model"); v != "shop" {
					t.Errorf("trainer -model %q", v)
				}
				if r.configMap.Data["RECSERVE_MODELS"] != "shop,news" {
					t.Errorf("RECSERVE_MODELS %q", r.configMap.Data["RECSERVE_MODELS"])
				}
			},
		},
		{
			name: "registry in object storage",
			args: []string{"-f", filepath.Join(chartDir, "ci", "s3-values.yaml")},
			kinds: map[string]int{
				"v1 ConfigMap": 1, "v1 PersistentVolumeClaim": 1, "v1 Service": 2, "v1 ServiceAccount": 1,
				"apps/v1 Deployment": 2, "autoscaling/v2 HorizontalPodAutoscaler": 1, "policy/v1 PodDisruptionBudget": 1,
			},
			check: func(t *testing.T, r rendered) {
				for _, pvc := range r.pvcs {
					if strings.HasSuffix(pvc.Name, "-registry") {
						t.Errorf("claimed a registry volume %s with the registry in S3", pvc.Name)
					}
				}
				d := r.configMap.Data
				if d["RECSERVE_REGISTRY"] != "s3://recserve-models/prod" || d["RECSERVE_S3_ENDPOINT"] != "http://minio.storage:9000" ||
					d["RECSERVE_S3_PATH_STYLE"] != "true" || d["AWS_REGION"] != "us-east-1" {
					t.Errorf("S3 settings in the ConfigMap: %v", d)
				}
				for name, pod := range map[string]*corev1.PodTemplateSpec{"server": &r.server.Spec.Template, "trainer": r.trainer} {
					c := pod.Spec.Containers[0]
					if !slices.ContainsFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool { return e.SecretRef != nil && e.SecretRef.Name == "recserve-s3" }) {
						t.Errorf("%s: no credentials from the secret: %+v", name, c.EnvFrom)
					}
					if v, _ := flagValue(c.Args, "registry"); v != "$(RECSERVE_REGISTRY)" {
						t.Errorf("%s -registry %q", name, v)
					}
				}
			},
		},
	}
	flags := commandFlags(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.args...)
			if !mapsEqual(r.kindsCounted, tc.kinds) {
				t.Errorf("rendered %v, want %v", r.kindsCounted, tc.kinds)
			}
			checkCommon(t, r, flags)
			tc.check(t, r)
		})
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkCommon checks what holds for every configuration.
func checkCommon(t *testing.T, r rendered, flags map[string]map[string]bool) {
	t.Helper()
	for _, m := range r.all {
		l := m.obj.GetLabels()
		if l["app.kubernetes.io/name"] != "recserve" || l["app.kubernetes.io/instance"] != "rel" {
			t.Errorf("%s %s: labels %v", m.kind, m.obj.GetName(), l)
		}
	}
	if r.trainer == nil {
		t.Fatal("no trainer")
	}
	serverPod, trainerPod := &r.server.Spec.Template, r.trainer
	pods := map[string]*corev1.PodTemplateSpec{"server": serverPod, "trainer": trainerPod}

	for name, pod := range pods {
		checkPodSecurity(t, name, pod)
		c := container(t, pod, name)
		// $(VAR) in args must come from the ConfigMap the container reads;
		// secrets (S3 credentials) may follow it.
		if len(c.EnvFrom) < 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != r.configMap.Name ||
			slices.ContainsFunc(c.EnvFrom[1:], func(e corev1.EnvFromSource) bool { return e.SecretRef == nil }) {
			t.Errorf("%s: envFrom %+v, want ConfigMap %s, then secrets", name, c.EnvFrom, r.configMap.Name)
		}
		args := expandArgs(t, name, c.Args, r.configMap.Data)
		checkArgs(t, flags, args, []string{"once"}, nil)
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: resources %+v: want cpu and memory requests and a memory limit", name, c.Resources)
		}
		if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
			t.Errorf("%s: service account token mounted", name)
		}
	}

	// The registry: in object storage (no volume), or one claim, mounted by
	// servers and trainer where -registry points.
	if strings.HasPrefix(r.configMap.Data["RECSERVE_REGISTRY"], "s3://") {
		for name, pod := range pods {
			if m := mountOf(container(t, pod, name), "registry"); m != nil {
				t.Errorf("%s: a registry volume is mounted with the registry in S3", name)
			}
		}
	} else {
		serverClaim, trainerClaim := claimOf(t, serverPod, "registry"), claimOf(t, trainerPod, "registry")
		if serverClaim == "" || serverClaim != trainerClaim {
			t.Errorf("registry claims: server %q, trainer %q; want one shared claim", serverClaim, trainerClaim)
		}
		for name, pod := range pods {
			c := container(t, pod, name)
			m := mountOf(c, "registry")
			reg, _ := flagValue(expandArgs(t, name, c.Args, r.configMap.Data), "registry")
			if m == nil || m.ReadOnly || reg != m.MountPath {
				t.Errorf("%s: registry mounted %+v, -registry %q (servers write rollout state, the trainer publishes)", name, m, reg)
			}
		}
		if claimOf(t, trainerPod, "eventlog") == serverClaim {
			t.Error("the trainer's event log shares the registry claim")
		}
	}
	tc := container(t, trainerPod, "trainer")
	if m, dir := mountOf(tc, "eventlog"), flagOr(tc.Args, "log-dir"); m == nil || m.MountPath != dir {
		t.Errorf("trainer -log-dir %q, eventlog mount %+v", dir, m)
	}

	// The server listens where its ports, probes and Services say.
	sc := container(t, serverPod, "server")
	ports := map[string]int32{}
	for _, p := range sc.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["grpc"] != 9090 || ports["http"] != 8080 {
		t.Errorf("server ports %v", ports)
	}
	for flag, port := range map[string]string{"grpc-addr": "0.0.0.0:9090", "http-addr": "0.0.0.0:8080"} {
		if v, _ := flagValue(sc.Args, flag); v != port {
			t.Errorf("server -%s %q, want %s", flag, v, port)
		}
	}
	if a := serverPod.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != "8080" || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v", a)
	}
	if serverPod.Annotations["checksum/config"] == "" || trainerPod.Annotations["checksum/config"] == "" {
		t.Error("no checksum/config annotation: a ConfigMap change would not roll the pods")
	}

	// Selectors pick the server pods and never the trainer's.
	selects := func(sel map[string]string, pod *corev1.PodTemplateSpec) bool {
		for k, v := range sel {
			if pod.Labels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	if !selects(r.server.Spec.Selector.MatchLabels, serverPod) {
		t.Error("server Deployment selector does not match its pods")
	}
	for _, s := range r.services {
		if !selects(s.Spec.Selector, serverPod) || selects(s.Spec.Selector, trainerPod) {
			t.Errorf("service %s selector %v", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			if _, ok := ports[p.TargetPort.String()]; !ok {
				t.Errorf("service %s port %s targets %s, not a server port", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	if r.pdb != nil && (!selects(r.pdb.Spec.Selector.MatchLabels, serverPod) || selects(r.pdb.Spec.Selector.MatchLabels, trainerPod)) {
		t.Errorf("pdb selector %v", r.pdb.Spec.Selector.MatchLabels)
	}
	if r.hpa != nil {
		ref := r.hpa.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != r.server.Name {
			t.Errorf("hpa targets %+v, want the server Deployment %s", ref, r.server.Name)
		}
	}
	if r.trainerDepl != nil && selects(r.trainerDepl.Spec.Selector.MatchLabels, serverPod) {
		t.Error("trainer Deployment selector matches server pods")
	}
}

func checkPodSecurity(t *testing.T, name string, pod *corev1.PodTemplateSpec) {
	t.Helper()
	psc := pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", name, psc)
	}
	if psc != nil && (psc.FSGroup == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
		t.Errorf("%s: pod securityContext %+v: want fsGroup (writable volumes) and the RuntimeDefault seccomp profile", name, psc)
	}
	for _, c := range pod.Spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s/%s: securityContext %+v", name, c.Name, sc)
		}
	}
}

var varRef = regexp.MustCompile(`\$\(([A-Z0-9_]+)\)`)

// expandArgs replaces $(VAR) as the kubelet does, failing on a variable the
// ConfigMap does not define.
func expandArgs(t *testing.T, name string, args []string, env map[string]string) []string {
	t.Helper()
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = varRef.ReplaceAllStringFunc(a, func(ref string) string {
			v, ok := env[varRef.FindStringSubmatch(ref)[1]]
			if !ok {
				t.Errorf("%s: %s refers to %s, which the ConfigMap does not define", name, a, ref)
			}
			return v
		})
	}
	return out
}

func flagOr(args []string, name string) string {
	v, _ := flagValue(args, name)
	return v
}

func container(t *testing.T, pod *corev1.PodTemplateSpec, name string) *corev1.Container {
	t.Helper()
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

func mountOf(c *corev1.Container, volume string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == volume {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func hasVolume(pod *corev1.PodTemplateSpec, name string) bool {
	return slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
}

// claimOf returns the PersistentVolumeClaim behind the pod's volume.
func claimOf(t *testing.T, pod *corev1.PodTemplateSpec, volume string) string {
	t.Helper()
	for _, v := range pod.Spec.Volumes {
		if v.Name == volume {
			if v.PersistentVolumeClaim == nil {
				t.Errorf("volume %s is not a claim: %+v", volume, v.VolumeSource)
				return ""
			}
			return v.PersistentVolumeClaim.ClaimName
		}
	}
	t.Errorf("no volume %s", volume)
	return ""
}

func findPVC(t *testing.T, r rendered, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	for _, p := range r.pvcs {
		if p.Name == name {
			if p.Spec.Resources.Requests.Storage().IsZero() {
				t.Errorf("claim %s requests no storage", name)
			}
			return p
		}
	}
	t.Fatalf("claim %s is not rendered", name)
	return nil
}

func TestHelmChartRejectsBadValues(t *testing.T) {
	tests := []struct {
		name string
		set  []string
		want string
	}{
		{"tls without a secret", []string{"tls.enabled=true"}, "tls.enabled needs tls.secretName"},
		{"unknown trainer mode", []string{"trainer.mode=daemonset"}, `trainer.mode "daemonset"`},
		{"trainer without kafka", []string{"kafka.brokers="}, "trainer.enabled needs kafka.brokers"},
		{"both pdb bounds", []string{"podDisruptionBudget.minAvailable=1"}, "exactly one of minAvailable and maxUnavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			_, err := helmTemplate(t, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
