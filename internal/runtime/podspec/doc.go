// Package podspec parses and validates the pods file of the local runtime
// (`ztcn up DIR` reads DIR/pods.yaml):
//
//	pods:
//	  - name: web                     # required; DNS-1123 label, unique
//	    namespace: shop               # default "default"
//	    serviceAccount: web           # default "default"
//	    node: node-1                  # optional; the runtime chooses if omitted
//	    labels: {app: web, tier: "1"}
//	    ports: {http: 8080}           # name: number, TCP
//	    command: python3 -m http.server 8080   # a string runs under /bin/sh -c
//	    env: {LOG_LEVEL: debug}
//	  - name: db
//	    ports:                        # or a list, for UDP, SCTP or unnamed ports
//	      - {name: pg, port: 5432, protocol: TCP}
//	    command: [postgres, -D, /data]
//	externals:                        # optional; outside the mesh
//	  - name: collector
//	    address: 203.0.113.10         # required; unicast IPv4
//	    ports: {otlp: 4317}
//	    command: [otelcol]
//
// The parser walks yaml.Node trees rather than decoding into structs so that
// every problem carries the line and column of the node at fault, and it
// reports every problem of a file at once (see Error).
//
// Choices a writer of pods files should know:
//   - Field names are camelCase only, as in Kubernetes (serviceAccount, not
//     service_account); any other field is an error.
//   - Text must be written as YAML strings: labels, env values and command
//     arguments that YAML reads as numbers or booleans (80, true) are refused
//     with a hint to quote them, as Kubernetes refuses them.
//   - An optional field that is present but empty (`labels:`) counts as
//     omitted; a required one (name, command, address) is an error.
//   - YAML aliases (*name) and merge keys (<<) are refused: a pods file is
//     small, and refusing them keeps one node from standing for many places,
//     which would make positions ambiguous and expansion unbounded.
//   - The file holds one YAML document.
//   - Ports 15000–15099 are reserved in pods for the ztcn agent, which
//     listens inside every pod; externals have no agent and may use them.
package podspec
