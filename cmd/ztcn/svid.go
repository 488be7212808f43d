package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztcn/ztcn/internal/identity"
)

func newSVIDCommand() *cobra.Command {
	svid := &cobra.Command{
		Use:   "svid",
		Short: "Issue X.509-SVIDs by hand, for operators and tests (the agent never writes workload keys)",
	}
	svid.AddCommand(newSVIDIssueCommand())
	return svid
}

func newSVIDIssueCommand() *cobra.Command {
	var (
		caDir, id, out, workloadUID string
		labels                      []string
		ttl                         time.Duration
		force                       bool
	)
	cmd := &cobra.Command{
		Use:   "issue --ca DIR --id spiffe://TD/ns/NS/sa/SA --out DIR",
		Short: "Issue an X.509-SVID: svid.crt (leaf then intermediates), svid.key (0600), bundle.crt",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spiffeID, err := identity.ParseWorkloadID(id)
			if err != nil {
				return err
			}
			labelMap, err := parseLabels(labels)
			if err != nil {
				return err
			}
			ca, err := identity.LoadCA(caDir)
			if err != nil {
				return err
			}
			svid, err := ca.IssueSVID(identity.SVIDRequest{
				ID: spiffeID, TTL: ttl,
				Claims: identity.Claims{WorkloadUID: workloadUID, Labels: labelMap},
			})
			if err != nil {
				return err
			}
			if err := identity.WriteSVID(out, svid, ca.Roots(), force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issued %s in %s (%s, %s, %s), valid until %s\n",
				svid.ID, out, identity.SVIDCertFile, identity.SVIDKeyFile, identity.BundleCertFile, svid.NotAfter().UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&caDir, "ca", "", "directory of the signing CA: a root (ztcn ca init) or a node CA (ztcn ca issue-node) (required)")
	cmd.Flags().StringVar(&id, "id", "", "SPIFFE ID, e.g. spiffe://cluster.local/ns/default/sa/web (required)")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "workload label key=value, carried in the certificate (repeatable)")
	cmd.Flags().StringVar(&workloadUID, "workload-uid", "", "pod UID or container ID to bind the SVID to")
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "validity of the SVID")
	cmd.Flags().StringVar(&out, "out", "", "directory to write the SVID to (required)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	for _, f := range []string{"ca", "id", "out"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func parseLabels(kvs []string) (map[string]string, error) {
	labels := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--label %q: want key=value", kv)
		}
		if _, dup := labels[k]; dup {
			return nil, fmt.Errorf("--label %q: key %q given twice", kv, k)
		}
		labels[k] = v
	}
	return labels, nil
}

// trustDomainOf reads the trust domain from a CA certificate's URI SAN.
func trustDomainOf(uris []*url.URL) (spiffeid.TrustDomain, error) {
	if len(uris) != 1 {
		return spiffeid.TrustDomain{}, fmt.Errorf("CA certificate must carry exactly one SPIFFE URI SAN, has %d", len(uris))
	}
	id, err := spiffeid.FromURI(uris[0])
	if err != nil {
		return spiffeid.TrustDomain{}, err
	}
	return id.TrustDomain(), nil
}
