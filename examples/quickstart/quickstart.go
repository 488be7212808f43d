// Package quickstart embeds the quickstart run, so that `ztcn up` without
// a directory works from any binary on a fresh machine.
package quickstart

import "embed"

// Files are pods.yaml, policy.yaml and README.md.
//
//go:embed pods.yaml policy.yaml README.md
var Files embed.FS
