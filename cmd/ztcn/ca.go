package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztcn/ztcn/internal/identity"
)

func newCACommand() *cobra.Command {
	ca := &cobra.Command{
		Use:   "ca",
		Short: "Create and inspect the trust domain's CA: root, node intermediates, trust bundle",
	}
	ca.AddCommand(newCAInitCommand(), newCAIssueNodeCommand(), newCAShowCommand(), newCABundleCommand())
	return ca
}

func newCAInitCommand() *cobra.Command {
	var (
		trustDomain, out, keyType string
		ttl                       time.Duration
		force                     bool
	)
	cmd := &cobra.Command{
		Use:   "init --trust-domain TD --out DIR",
		Short: "Create a trust domain's root CA (root.crt, root.key with mode 0600)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			td, err := identity.ParseTrustDomain(trustDomain)
			if err != nil {
				return err
			}
			kt, err := identity.ParseKeyType(keyType)
			if err != nil {
				return err
			}
			root, err := identity.NewRootCA(td, ttl, identity.WithKeyType(kt))
			if err != nil {
				return err
			}
			if err := identity.WriteRootCA(out, root, force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created root CA of trust domain %s in %s (%s, %s), valid until %s\n",
				td.Name(), out, identity.RootCertFile, identity.RootKeyFile, root.Certificate().NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&trustDomain, "trust-domain", "cluster.local", "trust domain name")
	cmd.Flags().StringVar(&out, "out", "", "directory to write root.crt and root.key to (required)")
	cmd.Flags().DurationVar(&ttl, "ttl", identity.DefaultRootTTL, "validity of the root certificate")
	cmd.Flags().StringVar(&keyType, "key-type", string(identity.KeyECDSAP256), "key type: ecdsa-p256 or ecdsa-p384")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing root")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func newCAIssueNodeCommand() *cobra.Command {
	var (
		caDir, node, out string
		ttl              time.Duration
		force            bool
	)
	cmd := &cobra.Command{
		Use:   "issue-node --ca DIR --node NAME --out DIR",
		Short: "Issue a node's intermediate CA (node.crt, node.key, and root.crt as its bundle)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root, err := identity.LoadCA(caDir)
			if err != nil {
				return err
			}
			nodeCA, err := root.NewNodeCA(node, ttl)
			if err != nil {
				return err
			}
			if err := identity.WriteNodeCA(out, nodeCA, force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issued node CA for %s in %s (%s, %s, %s), valid until %s\n",
				node, out, identity.NodeCertFile, identity.NodeKeyFile, identity.RootCertFile, nodeCA.Certificate().NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&caDir, "ca", "", "directory of the signing CA (from `ztcn ca init`) (required)")
	cmd.Flags().StringVar(&node, "node", "", "node name (required)")
	cmd.Flags().StringVar(&out, "out", "", "directory to write the node CA to (required)")
	cmd.Flags().DurationVar(&ttl, "ttl", identity.DefaultNodeTTL, "validity of the node certificate (capped at the root's)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing node CA")
	for _, f := range []string{"ca", "node", "out"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newCAShowCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show DIR_OR_CERT",
		Short: "Print subject, SPIFFE ID, validity, key type and SHA-256 fingerprint of CA or SVID certificates",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := certificateFiles(args[0])
			if err != nil {
				return err
			}
			var infos []identity.CertificateInfo
			for _, f := range files {
				certs, err := identity.LoadCertificates(f)
				if err != nil {
					return err
				}
				for _, c := range certs {
					infos = append(infos, identity.Describe(c))
				}
			}
			return printCertificates(cmd.OutOrStdout(), output, files, infos)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// certificateFiles resolves a CA directory to the certificate files in it
// (root first, then the node CA or SVID), or returns a single file as is.
func certificateFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	var files []string
	for _, name := range []string{identity.RootCertFile, identity.NodeCertFile, identity.SVIDCertFile} {
		p := filepath.Join(path, name)
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds none of %s, %s, %s", path, identity.RootCertFile, identity.NodeCertFile, identity.SVIDCertFile)
	}
	return files, nil
}

func printCertificates(w io.Writer, format string, files []string, infos []identity.CertificateInfo) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(infos)
	case "text":
		for i, info := range infos {
			if i > 0 {
				fmt.Fprintln(w)
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "Subject:\t%s\n", orNone(info.Subject))
			fmt.Fprintf(tw, "Issuer:\t%s\n", orNone(info.Issuer))
			fmt.Fprintf(tw, "SPIFFE ID:\t%s\n", orNone(info.SPIFFEID))
			fmt.Fprintf(tw, "CA:\t%t\n", info.IsCA)
			fmt.Fprintf(tw, "Serial:\t%s\n", info.Serial)
			fmt.Fprintf(tw, "Not before:\t%s\n", info.NotBefore.Format(time.RFC3339))
			fmt.Fprintf(tw, "Not after:\t%s\n", info.NotAfter.Format(time.RFC3339))
			fmt.Fprintf(tw, "Key type:\t%s\n", info.KeyType)
			fmt.Fprintf(tw, "SHA-256 fingerprint:\t%s\n", info.Fingerprint)
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("unknown output format %q (want text or json)", format)
	}
}

func orNone(s string) string {
	if strings.TrimSpace(s) == "" {
		return "(none)"
	}
	return s
}

func newCABundleCommand() *cobra.Command {
	var (
		refreshHint time.Duration
		sequence    uint64
	)
	cmd := &cobra.Command{
		Use:   "bundle DIR",
		Short: "Print the trust bundle of a CA directory in the SPIFFE bundle JSON format",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			roots, err := identity.LoadCertificates(filepath.Join(args[0], identity.RootCertFile))
			if err != nil {
				return err
			}
			td, err := trustDomainOf(roots[0].URIs)
			if err != nil {
				return fmt.Errorf("%s: %w", filepath.Join(args[0], identity.RootCertFile), err)
			}
			data, err := identity.NewSPIFFEBundle(td, roots, sequence, refreshHint).Marshal()
			if err != nil {
				return err
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, data, "", "  "); err != nil {
				return err
			}
			pretty.WriteByte('\n')
			_, err = cmd.OutOrStdout().Write(pretty.Bytes())
			return err
		},
	}
	cmd.Flags().DurationVar(&refreshHint, "refresh-hint", 5*time.Minute, "spiffe_refresh_hint: how often consumers should re-fetch the bundle")
	cmd.Flags().Uint64Var(&sequence, "sequence", 1, "spiffe_sequence number of this bundle")
	return cmd
}
