// Package deploy holds the deployment material; its test parses every
// Kubernetes manifest into the API's own types and holds them to the code:
// the images, ports, probes, paths and configuration keys must agree with
// what authzd serves and reads.
package deploy

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/crmauthz/crmauthz/internal/config"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// manifests are the objects of kubernetes/, decoded strictly (an unknown
// field fails) into their types.
type manifests struct {
	configMaps []corev1.ConfigMap
	secrets    []corev1.Secret
	deploy     []appsv1.Deployment
	services   []corev1.Service
	pdbs       []policyv1.PodDisruptionBudget
	hpas       []autoscalingv2.HorizontalPodAutoscaler
	jobs       []batchv1.Job
	policies   []networkingv1.NetworkPolicy
}

func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var m manifests
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(data), "\n---\n") {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			strict := func(v any) {
				if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
					t.Fatalf("%s document %d (%s): %v", f, i, tm.Kind, err)
				}
			}
			switch tm.APIVersion + " " + tm.Kind {
			case "v1 ConfigMap":
				var o corev1.ConfigMap
				strict(&o)
				m.configMaps = append(m.configMaps, o)
			case "v1 Secret":
				var o corev1.Secret
				strict(&o)
				m.secrets = append(m.secrets, o)
			case "apps/v1 Deployment":
				var o appsv1.Deployment
				strict(&o)
				m.deploy = append(m.deploy, o)
			case "v1 Service":
				var o corev1.Service
				strict(&o)
				m.services = append(m.services, o)
			case "policy/v1 PodDisruptionBudget":
				var o policyv1.PodDisruptionBudget
				strict(&o)
				m.pdbs = append(m.pdbs, o)
			case "autoscaling/v2 HorizontalPodAutoscaler":
				var o autoscalingv2.HorizontalPodAutoscaler
				strict(&o)
				m.hpas = append(m.hpas, o)
			case "batch/v1 Job":
				var o batchv1.Job
				strict(&o)
				m.jobs = append(m.jobs, o)
			case "networking.k8s.io/v1 NetworkPolicy":
				var o networkingv1.NetworkPolicy
				strict(&o)
				m.policies = append(m.policies, o)
			default:
				t.Fatalf("%s document %d: unexpected %s %s", f, i, tm.APIVersion, tm.Kind)
			}
		}
	}
	if len(m.configMaps) != 1 || len(m.deploy) != 1 || len(m.services) != 1 || len(m.pdbs) != 1 || len(m.hpas) != 1 ||
		len(m.jobs) != 1 || len(m.policies) != 1 || len(m.secrets) != 3 {
		t.Fatalf("want one of each object (three secrets), got %+v", m)
	}
	return m
}

// envNames returns every AUTHZ_* variable authzd serve reads.
func envNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	_, _ = config.Load("authzd serve", nil, func(k string) string { names[k] = true; return "" }, io.Discard)
	if !names["AUTHZ_DATABASE_URL"] || !names["AUTHZ_METRICS_ADDR"] {
		t.Fatalf("the configuration's variables were not read: %v", names)
	}
	return names
}

func port(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, ok := strings.Cut(addr, ":")
	if !ok {
		t.Fatalf("address %q has no port", addr)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return int32(n)
}

func TestManifestsAgreeWithTheCode(t *testing.T) {
	m := load(t)
	known := envNames(t)
	cm := m.configMaps[0]
	for k := range cm.Data {
		if !known[k] {
			t.Errorf("ConfigMap sets %s, which authzd does not read", k)
		}
	}
	for _, s := range m.secrets {
		for k := range s.StringData {
			if strings.HasPrefix(k, "AUTHZ_") && !known[k] {
				t.Errorf("Secret %s sets %s, which authzd does not read", s.Name, k)
			}
		}
	}

	d := m.deploy[0]
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for name, key := range map[string]string{"grpc": "AUTHZ_LISTEN_ADDR", "authzen": "AUTHZ_HTTP_ADDR", "ops": "AUTHZ_METRICS_ADDR"} {
		if ports[name] == 0 || ports[name] != port(t, cm.Data[key]) {
			t.Errorf("container port %s is %d, the ConfigMap's %s %q", name, ports[name], key, cm.Data[key])
		}
	}
	for _, probe := range []*corev1.Probe{c.ReadinessProbe, c.StartupProbe} {
		if probe == nil || probe.GRPC == nil || probe.GRPC.Port != ports["grpc"] || probe.GRPC.Service == nil ||
			*probe.GRPC.Service != pb.AuthorizationService_ServiceDesc.ServiceName {
			t.Errorf("readiness and startup must probe gRPC health of %s on the gRPC port: %+v", pb.AuthorizationService_ServiceDesc.ServiceName, probe)
		}
	}
	if l := c.LivenessProbe; l == nil || l.HTTPGet == nil || l.HTTPGet.Path != "/metrics" || l.HTTPGet.Port.String() != "ops" {
		t.Errorf("liveness must get /metrics on the ops port: %+v", l)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources: %+v", c.Resources)
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil {
		t.Error("the pod must run as a non-root user")
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("the container's root filesystem must be read-only")
	}
	// The paths the ConfigMap names are mounted.
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm.MountPath
	}
	for volume, key := range map[string]string{"spool": "AUTHZ_DECISION_SPOOL_DIR", "audit-keys": "AUTHZ_AUDIT_KEY_FILE", "tls": "AUTHZ_TLS_CERT"} {
		if p := cm.Data[key]; mounts[volume] == "" || !strings.HasPrefix(p, mounts[volume]) {
			t.Errorf("%s %q lies outside the %s volume's mount %q", key, p, volume, mounts[volume])
		}
	}
	refs := map[string]bool{}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			refs[v.Secret.SecretName] = true
		}
	}
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil {
			refs[e.SecretRef.Name] = true
		}
	}
	for _, s := range m.secrets {
		if !refs[s.Name] {
			t.Errorf("Secret %s is used by nothing", s.Name)
		}
	}

	// One image, as the Dockerfile builds it, for the server and the migration.
	job := m.jobs[0].Spec.Template.Spec.Containers[0]
	if job.Image != c.Image || !slices.Equal(job.Args, []string{"migrate"}) || !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("the migration Job runs %s %v, the Deployment %s %v", job.Image, job.Args, c.Image, c.Args)
	}
	docker, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int32{ports["grpc"], ports["authzen"], ports["ops"]} {
		if !regexp.MustCompile(`(?m)^EXPOSE .*\b` + strconv.Itoa(int(p)) + `\b`).Match(docker) {
			t.Errorf("the Dockerfile does not EXPOSE %d", p)
		}
	}
	if !regexp.MustCompile(`(?m)^USER 65532`).Match(docker) || *pod.SecurityContext.RunAsUser != 65532 {
		t.Error("the image's user and the pod's must be the same non-root user, 65532")
	}

	// The Service, PodDisruptionBudget, HPA and NetworkPolicy reach the pods.
	labels := d.Spec.Template.Labels
	selects := func(sel map[string]string) bool {
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	svc := m.services[0]
	if !selects(svc.Spec.Selector) {
		t.Errorf("the Service selects %v, the pods are %v", svc.Spec.Selector, labels)
	}
	for _, p := range svc.Spec.Ports {
		if ports[p.TargetPort.String()] == 0 {
			t.Errorf("the Service targets %s, which the container does not name", p.TargetPort.String())
		}
	}
	if !selects(m.pdbs[0].Spec.Selector.MatchLabels) || !selects(m.policies[0].Spec.PodSelector.MatchLabels) {
		t.Error("the PodDisruptionBudget and the NetworkPolicy must select the pods")
	}
	if h := m.hpas[0].Spec; h.ScaleTargetRef.Kind != "Deployment" || h.ScaleTargetRef.Name != d.Name || h.MinReplicas == nil || *h.MinReplicas < 2 {
		t.Errorf("the HPA scales %+v", h.ScaleTargetRef)
	}
	if m.pdbs[0].Spec.MinAvailable == nil || m.pdbs[0].Spec.MinAvailable.IntValue() >= int(*m.hpas[0].Spec.MinReplicas) {
		t.Error("the PodDisruptionBudget must leave room to evict one pod at the HPA's minimum")
	}
	var open []int32
	for _, rule := range m.policies[0].Spec.Ingress {
		for _, p := range rule.Ports {
			open = append(open, int32(p.Port.IntValue()))
		}
	}
	slices.Sort(open)
	if want := []int32{ports["authzen"], ports["ops"], ports["grpc"]}; !slices.Equal(open, sortInts(want)) {
		t.Errorf("the NetworkPolicy opens %v, the container serves %v", open, want)
	}

	// Every manifest is listed by the kustomization.
	kust, err := os.ReadFile("kubernetes/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(kust, &k); err != nil {
		t.Fatal(err)
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join("kubernetes", r)); err != nil {
			t.Errorf("the kustomization lists %s: %v", r, err)
		}
	}
}

func sortInts(s []int32) []int32 { s = slices.Clone(s); slices.Sort(s); return s }
