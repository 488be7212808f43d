// Package identity issues, rotates, revokes and verifies SPIFFE X.509-SVIDs.
//
// The hierarchy is flat: a trust-domain root signs one intermediate per node,
// and a node intermediate signs the leaves of the workloads on that node.
// Any node verifies any other node's leaves with the shared root bundle.
//
// Pieces, each in its own file:
//   - CA (ca.go): a certificate authority whose key sits behind crypto.Signer
//     so that a PKCS#11 or TPM signer can replace the in-memory key.
//   - SVID (svid.go): a leaf certificate chain and its in-memory private key.
//   - Claims (claims.go): workload labels and pod/container ID carried in a
//     private, non-critical X.509 extension, readable only through Verifier.
//   - Verifier (verify.go): checks a peer chain against the bundle of the
//     peer's own trust domain, expiry and the revocation set.
//   - Bundles (bundle.go): trust bundles per trust domain, never merged, with
//     federated bundles reloaded from SPIFFE bundle files.
//   - Manager (manager.go): the lifecycle of workload identities — issue at
//     start, rotate before expiry, re-issue on label change, revoke at stop.
//   - Store (store.go): reading and writing CA material on disk for the
//     operator commands (`ztcn ca …`, `ztcn svid issue`). Workload keys are
//     never written by the agent.
package identity
