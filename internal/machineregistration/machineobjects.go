package machineregistration

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
)

// The per-machine objects: the registration endpoint creates them when a
// machine registers, the MachineInventory controller re-creates them when
// they go missing. Both build them here so they cannot drift apart.

// PlanName is the name of inv's plan Secret.
func PlanName(inv *machinesv1.MachineInventory) string { return planName(inv) }

// PlanSecret is a new, empty plan Secret for inv.
func PlanSecret(inv *machinesv1.MachineInventory) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: planName(inv), Namespace: inv.Namespace}, Type: PlanSecretType, Data: map[string][]byte{"plan": []byte("{}")}}
}

// RBACObjects are the machine's ServiceAccount, and a Role and RoleBinding
// giving it read access to its own plan Secret and write access to its own
// inventory's status, by resourceNames: nothing else, and nothing shared
// with other machines.
func RBACObjects(inv *machinesv1.MachineInventory, plan string) []client.Object {
	meta := func() metav1.ObjectMeta { return metav1.ObjectMeta{Name: inv.Name, Namespace: inv.Namespace} }
	return []client.Object{
		&corev1.ServiceAccount{ObjectMeta: meta()},
		&rbacv1.Role{ObjectMeta: meta(), Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{plan}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{machinesv1.GroupVersion.Group}, Resources: []string{"machineinventories"}, ResourceNames: []string{inv.Name}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{machinesv1.GroupVersion.Group}, Resources: []string{"machineinventories/status"}, ResourceNames: []string{inv.Name}, Verbs: []string{"get", "update", "patch"}},
		}},
		&rbacv1.RoleBinding{ObjectMeta: meta(),
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: inv.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: inv.Name, Namespace: inv.Namespace}},
		},
	}
}

// MachineObjects are all of inv's per-machine objects, plan Secret first.
func MachineObjects(inv *machinesv1.MachineInventory) []client.Object {
	return append([]client.Object{PlanSecret(inv)}, RBACObjects(inv, planName(inv))...)
}

// OwnFor makes want one of inv's objects: controlled by inv (what proves
// ownership, by UID) and labelled LabelInventory (to select them).
func OwnFor(inv *machinesv1.MachineInventory, want client.Object, scheme *runtime.Scheme) error {
	if err := controllerutil.SetControllerReference(inv, want, scheme); err != nil {
		return err
	}
	labels := want.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelInventory] = inv.Name
	want.SetLabels(labels)
	return nil
}
