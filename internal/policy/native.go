package policy

// Placeholder: the native schema parser is being written (owner: native.go).
func nativeNetworks(d document, set *Set, diags *Diagnostics) {}

func nativePolicies(d document, set *Set, diags *Diagnostics) {}
