package policy

// Placeholder: the NetworkPolicy parser is being written (owner: kube.go).
func kubeNetworkPolicy(d document, set *Set, diags *Diagnostics) {}
