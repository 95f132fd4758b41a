package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// startKwok runs kwok against the API server and registers fake nodes that it
// keeps Ready; pods scheduled onto them become Running and Ready.
func (p *Processes) startKwok(ctx context.Context) error {
	serverPort, err := choosePort("127.0.0.1", 0)
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + p.kubeconfig,
		"--config=" + filepath.Join(p.cfg.BinDir, KwokStages),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
		// Without a lease longer than the heartbeat stage's period, nodes
		// turn NotReady after about a minute and pods never become ready.
		"--node-lease-duration-seconds=40",
		"--server-address=" + hostPort("127.0.0.1", serverPort),
		// The node-initialize stage writes these into each node's status
		// (InternalIP, daemonEndpoints.kubeletEndpoint.Port), so
		// kube-apiserver sends logs, exec, attach and port-forward to kwok's
		// server as it would to a kubelet. kwok serves HTTPS with a
		// self-signed certificate there, which kube-apiserver accepts because
		// it has no --kubelet-certificate-authority.
		"--node-ip=127.0.0.1",
		"--node-port=" + strconv.Itoa(serverPort),
	}
	if len(p.cfg.Components.KwokConfig) > 0 {
		path := filepath.Join(p.cfg.DataDir, "kwok-config.yaml")
		if err := os.WriteFile(path, p.cfg.Components.KwokConfig, 0o600); err != nil {
			return fmt.Errorf("writing kwok configuration: %w", err)
		}
		args = append(args, "--config="+path)
	}
	proc, err := p.launch(BinKwok, args)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(p.restConfig)
	if err != nil {
		return err
	}
	for i := range p.cfg.Components.KwokNodes {
		if err := createFakeNode(ctx, cs, "kwok-node-"+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	if err := waitReady(ctx, proc, 60*time.Second, func(ctx context.Context) error {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, n := range nodes.Items {
			if !nodeReady(&n) {
				return fmt.Errorf("node %s not ready yet", n.Name)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	// After a restart kwok's port may have changed, and nodes that are
	// already Ready only get it from the next heartbeat (10-20 minutes).
	for i := range p.cfg.Components.KwokNodes {
		if err := setKubeletEndpoint(ctx, cs, "kwok-node-"+strconv.Itoa(i), serverPort); err != nil {
			return err
		}
	}
	return nil
}

// setKubeletEndpoint points a fake node's kubelet address at kwok's server.
func setKubeletEndpoint(ctx context.Context, cs kubernetes.Interface, name string, port int) error {
	patch := fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}],"daemonEndpoints":{"kubeletEndpoint":{"Port":%d}}}}`, port)
	if _, err := cs.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("setting the kubelet endpoint of fake node %s: %w", name, err)
	}
	return nil
}

func createFakeNode(ctx context.Context, cs kubernetes.Interface, name string) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{kwokNodeAnnotation: "fake"},
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("32"),
				corev1.ResourceMemory: resource.MustParse("256Gi"),
				corev1.ResourcePods:   resource.MustParse("110"),
			},
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("32"),
				corev1.ResourceMemory: resource.MustParse("256Gi"),
				corev1.ResourcePods:   resource.MustParse("110"),
			},
		},
	}
	_, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating fake node %s: %w", name, err)
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
